//! `broker`: the server and its operator and card-helper commands — the command line's parse and
//! dispatch; each subcommand is in `cli/`.

use broker::cli::{
    self,
    card::CardCmd,
    certs::CertsCmd,
    keys::KeysCmd,
    policy::{PolicyCmd, RpCmd},
};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "broker",
    version,
    about = "OpenID Connect identity provider for the My Number card"
)]
struct Cli {
    /// Configuration file (default: ./broker.toml if present, else the embedded default).
    #[arg(long, global = true, env = "BROKER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the broker.
    Serve,
    /// Operator policy and relying-party files.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Virtual My Number cards and the card helper.
    Card {
        #[command(subcommand)]
        cmd: CardCmd,
    },
    /// Demo PKI revocation (revoke, responder, CRL) and the revocation cache.
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// Relying-party registration helpers.
    Rp {
        #[command(subcommand)]
        cmd: RpCmd,
    },
    /// Signing keys (shared by every broker process on the database).
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
}

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // On one core (a container limit, or `taskset` as bench/run pins it) a current-thread
    // runtime does the same work without the multi-thread scheduler's cross-thread machinery;
    // blocking work still goes to the blocking pool either way.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.cmd {
        Cmd::Serve => cli::serve::run(cli::load_config(config)?).await,
        Cmd::Policy {
            cmd: PolicyCmd::Check,
        } => cli::policy::check(config),
        Cmd::Rp { cmd: RpCmd::Secret } => cli::policy::secret(),
        Cmd::Card { cmd } => cli::card::run(config, cmd).await,
        Cmd::Certs { cmd } => cli::certs::run(cli::load_config(config)?, cmd).await,
        Cmd::Keys { cmd } => cli::keys::run(cli::load_config(config)?, cmd).await,
    }
}
