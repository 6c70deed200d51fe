//! `broker`: the server and its operator and card-helper commands.

use anyhow::Context;
use broker::app::Broker;
use broker::clock::SystemClock;
use broker::config::Config;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

#[derive(Subcommand)]
enum KeysCmd {
    /// Publish a next signing key now; it signs after the lead time, and the key it replaces
    /// stays published for the grace period after that. Every process follows without restart.
    Rotate {
        /// Which keys: ec (ES256: access tokens, most ID tokens), rsa (RS256/PS256), or all.
        #[arg(long, default_value = "all")]
        alg: String,
        /// Seconds until the new key signs (default: cluster.key_rotation_lead).
        #[arg(long)]
        lead: Option<i64>,
        /// Seconds the replaced key stays published after that (default:
        /// cluster.key_retire_grace).
        #[arg(long)]
        grace: Option<i64>,
        /// Accept a lead or grace below the safe minimum (tests and emergencies: RPs holding
        /// a cached JWKS, or tokens still in flight, may then fail to verify).
        #[arg(long)]
        danger_allow_short: bool,
    },
    /// List the stored keys and when each signs and retires.
    List,
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Validate policies/ and relying-parties/ and print what was loaded (or file:line: reason).
    Check,
}

#[derive(Subcommand)]
enum RpCmd {
    /// Make a client secret and the SHA-256 to put in the RP file as client_secret_sha256.
    Secret,
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Revoke a virtual card's certificates in the demo PKI (both, or with
    /// --reason affiliationChanged only the signature certificate, as J-LIS does on a move).
    Revoke {
        #[arg(long)]
        card: PathBuf,
        /// RFC 5280 reason: keyCompromise, affiliationChanged, superseded, cessationOfOperation, …
        #[arg(long, default_value = "keyCompromise")]
        reason: String,
    },
    /// Run the demo PKI's OCSP responder and CRL publisher alone (HTTP, POST and GET forms).
    OcspResponder {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
    },
    /// Write a fresh CRL of a demo CA.
    Crl {
        /// user_auth or signature
        #[arg(long, default_value = "user_auth")]
        kind: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make the running broker forget a cached revocation status at once.
    Purge {
        /// The virtual card whose certificates to purge (demo), or --anchor with --serial.
        #[arg(long, conflicts_with_all = ["anchor", "all"])]
        card: Option<PathBuf>,
        #[arg(long, requires = "serial")]
        anchor: Option<String>,
        #[arg(long, requires = "anchor")]
        serial: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum CardCmd {
    /// Issue a virtual card from the demo PKI (data_dir/demo-pki).
    Issue {
        #[arg(long)]
        out: PathBuf,
        /// Family and given name, separated by a space (stored with a full-width space).
        #[arg(long, default_value = "デモ 太郎")]
        name: String,
        /// YYYY-MM-DD
        #[arg(long, default_value = "1990-04-01")]
        birthdate: String,
        /// 1 male, 2 female, 3 not stated
        #[arg(long, default_value_t = 3)]
        gender: u8,
        #[arg(long, default_value = "東京都千代田区サンプル町一丁目1番1号")]
        address: String,
        /// 4 digits
        #[arg(long, default_value = "1234")]
        auth_pin: String,
        /// 6–16 characters of A–Z and 0–9
        #[arg(long, default_value = "ABC123")]
        sign_pin: String,
        /// Validity in days from now.
        #[arg(long, default_value_t = 1825)]
        valid_days: i64,
    },
    /// Renew a virtual card (demo PKI): new certificates with the same basic information, the
    /// old ones revoked as superseded, and the renewal recorded as link information.
    Renew {
        /// The old card.
        #[arg(long)]
        card: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "1234")]
        auth_pin: String,
        #[arg(long, default_value = "ABC123")]
        sign_pin: String,
        #[arg(long, default_value_t = 1825)]
        valid_days: i64,
    },
    /// Make a virtual card from certificates and keys made by another tool (e.g. openssl).
    Import {
        #[arg(long)]
        out: PathBuf,
        /// User-authentication certificate (PEM).
        #[arg(long)]
        auth_cert: PathBuf,
        /// Its private key (PEM, PKCS#8 or PKCS#1).
        #[arg(long)]
        auth_key: PathBuf,
        /// Signature certificate and key (PEM), optional.
        #[arg(long, requires = "sign_key")]
        sign_cert: Option<PathBuf>,
        #[arg(long, requires = "sign_cert")]
        sign_key: Option<PathBuf>,
        #[arg(long, default_value = "1234")]
        auth_pin: String,
        #[arg(long, default_value = "ABC123")]
        sign_pin: String,
    },
    /// Sign a file with the card's signature key, as a phone app would: writes a CMS SignedData
    /// (DER) to --out, or base64 to stdout.
    Sign {
        #[arg(long)]
        card: PathBuf,
        /// The signature PIN (6–16 of A–Z, 0–9).
        #[arg(long)]
        pin: String,
        /// Leave the content out of the CMS (detached signature).
        #[arg(long)]
        detached: bool,
        #[arg(long)]
        out: Option<PathBuf>,
        file: PathBuf,
    },
    /// Play browser and card helper from an authorization URL; print the final redirect.
    Login {
        #[arg(long)]
        card: PathBuf,
        /// The user-authentication PIN (4 digits).
        #[arg(long)]
        pin: String,
        /// The signature PIN, used if the broker asks for identity proofing.
        #[arg(long)]
        sign_pin: Option<String>,
        /// Give consent if the relying party asks for it.
        #[arg(long)]
        consent: bool,
        url: String,
    },
    /// Be the card helper for a login a browser started (the link on the login page).
    Approve {
        #[arg(long)]
        card: PathBuf,
        /// The user-authentication PIN (4 digits).
        #[arg(long)]
        pin: String,
        /// The signature PIN, used if the broker asks for identity proofing.
        #[arg(long)]
        sign_pin: Option<String>,
        link: String,
    },
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let default = Path::new("broker.toml");
    let path = path.or(default.exists().then_some(default));
    Ok(Config::load(path, |k| std::env::var(k).ok())?)
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
    match cli.cmd {
        Cmd::Serve => serve(load_config(cli.config.as_deref())?).await,
        Cmd::Policy {
            cmd: PolicyCmd::Check,
        } => {
            let c = load_config(cli.config.as_deref())?;
            let mut reg = broker::registry::Registry::load_dir(&c.relying_parties_dir)?;
            let pol = broker::registry::policy::Policy::load_dir(&c.policies_dir)?;
            reg.check_against(&pol)?;
            reg.restrict_claims(&pol);
            // The trust anchors as `serve` would load them (the demo PKI's by label: checking
            // does not create it), against the revocation sources.
            let anchors = broker::app::configured_anchors(&c)?;
            broker::pki::TrustStore::new(anchors.clone())
                .map_err(|e| anyhow::anyhow!("trust anchors: {e}"))?;
            let mut labels: Vec<&str> = anchors.iter().map(|a| a.label.as_str()).collect();
            if c.demo {
                labels.extend([
                    broker::pki::demo::AUTH_CA_LABEL,
                    broker::pki::demo::SIGN_CA_LABEL,
                ]);
            }
            if !c.demo
                && !anchors
                    .iter()
                    .any(|a| a.kind == broker::pki::CertKind::UserAuth)
            {
                anyhow::bail!(
                    "no user-authentication trust anchor: configure [[trust_anchors]] with kind = \"user_auth\" (or run in demo mode)"
                );
            }
            for w in broker::revocation::source_warnings(&pol.revocation, &labels) {
                println!("warning: {w}");
            }
            println!(
                "ok: {} relying parties ({}), {} levels ({})",
                reg.len(),
                {
                    let mut ids: Vec<_> = reg.clients().map(|c| c.client_id.clone()).collect();
                    ids.sort();
                    ids.join(", ")
                },
                pol.levels.len(),
                pol.acr_values().join(", ")
            );
            Ok(())
        }
        Cmd::Rp { cmd: RpCmd::Secret } => {
            let s = broker::clock::random_token();
            println!("client_secret = {s}");
            println!(
                "client_secret_sha256 = \"{}\"",
                hex::encode(broker::clock::sha256(s.as_bytes()))
            );
            Ok(())
        }
        Cmd::Card { cmd } => card(cli.config.as_deref(), cmd).await,
        Cmd::Certs { cmd } => certs(load_config(cli.config.as_deref())?, cmd).await,
        Cmd::Keys { cmd } => keys(load_config(cli.config.as_deref())?, cmd).await,
    }
}

async fn card(config: Option<&Path>, cmd: CardCmd) -> anyhow::Result<()> {
    match cmd {
        CardCmd::Issue {
            out,
            name,
            birthdate,
            gender,
            address,
            auth_pin,
            sign_pin,
            valid_days,
        } => {
            let c = load_config(config)?;
            if !c.demo {
                anyhow::bail!("card issue needs demo mode (it signs with the demo PKI)");
            }
            let now = time::OffsetDateTime::now_utc();
            let (pki, _) =
                broker::pki::demo::DemoPki::load_or_create(&c.data_dir.join("demo-pki"), now)?;
            let birthdate = time::Date::parse(
                &birthdate,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .with_context(|| format!("--birthdate `{birthdate}` is not YYYY-MM-DD"))?;
            if !(1..=3).contains(&gender) {
                anyhow::bail!("--gender must be 1, 2 or 3");
            }
            let name = name.replacen(' ', "\u{3000}", 1);
            let issued = pki.issue_card(&broker::pki::demo::CardRequest {
                name_substituted: None,
                name,
                birthdate,
                gender,
                address,
                address_substituted: None,
                not_before: now - time::Duration::minutes(5),
                not_after: now + time::Duration::days(valid_days),
            })?;
            broker::card::VirtualCard::create(&out, &issued, &auth_pin, &sign_pin)?;
            println!("issued a virtual card in {}", out.display());
            Ok(())
        }
        CardCmd::Renew {
            card,
            out,
            auth_pin,
            sign_pin,
            valid_days,
        } => {
            use broker::pki::{CertKind, RevocationReason};
            let c = load_config(config)?;
            if !c.demo {
                anyhow::bail!("card renew needs demo mode (it signs with the demo PKI)");
            }
            let dir = c.data_dir.join("demo-pki");
            let ca = broker::revocation::demo_ca::DemoCa::open(&dir)?;
            let now = time::OffsetDateTime::now_utc();
            let der = |f: &str| -> anyhow::Result<Vec<u8>> {
                let b = std::fs::read(card.join(f))
                    .with_context(|| format!("cannot read {}", card.join(f).display()))?;
                Ok(pem::parse(&b)?.into_contents())
            };
            let (old_auth, old_sign) = (der("auth.crt.pem")?, der("sign.crt.pem")?);
            let store = ca.pki().trust_store()?;
            let signed = broker::pki::validate(&old_sign, &store, CertKind::Signature, now)?;
            let b4 = signed
                .basic4
                .clone()
                .context("the old signature certificate has no basic information")?;
            let birthdate = time::Date::parse(
                &b4.birthdate,
                time::macros::format_description!("[year]-[month]-[day]"),
            )?;
            let issued = ca.pki().issue_card(&broker::pki::demo::CardRequest {
                name: b4.name.clone(),
                name_substituted: Some(b4.name_substituted.clone()),
                birthdate,
                gender: b4.gender.parse().unwrap_or(3),
                address: b4.address.clone(),
                address_substituted: Some(b4.address_substituted.clone()),
                not_before: now - time::Duration::minutes(5),
                not_after: now + time::Duration::days(valid_days),
            })?;
            let new = broker::card::VirtualCard::create(&out, &issued, &auth_pin, &sign_pin)?;
            let new_auth = new.auth_certificate_der()?;
            let new_sign = pem::parse(&issued.sign_cert_pem)?.into_contents();
            for (kind, old, newc) in [
                (CertKind::UserAuth, &old_auth, &new_auth),
                (CertKind::Signature, &old_sign, &new_sign),
            ] {
                let serial = |d: &[u8]| -> anyhow::Result<Vec<u8>> {
                    Ok(hex::decode(broker::pki::inspect(d)?.serial_hex)?)
                };
                let (o, n) = (serial(old)?, serial(newc)?);
                ca.record_renewal(kind, &o, &n)?;
                ca.revoke(kind, &o, RevocationReason::Superseded, now)?;
            }
            println!(
                "renewed into {}; the old certificates are revoked (superseded)",
                out.display()
            );
            Ok(())
        }
        CardCmd::Import {
            out,
            auth_cert,
            auth_key,
            sign_cert,
            sign_key,
            auth_pin,
            sign_pin,
        } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let sign = match (sign_cert, sign_key) {
                (Some(c), Some(k)) => Some((read(&c)?, read(&k)?)),
                _ => None,
            };
            broker::card::VirtualCard::create_from_pem(
                &out,
                &read(&auth_cert)?,
                &read(&auth_key)?,
                sign.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
                &auth_pin,
                &sign_pin,
            )?;
            println!("imported a virtual card into {}", out.display());
            Ok(())
        }
        CardCmd::Sign {
            card,
            pin,
            detached,
            out,
            file,
        } => {
            let content =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut vc = broker::card::VirtualCard::open(&card)?;
            let cms = broker::signatures::sign(
                &mut vc,
                &pin,
                &content,
                detached,
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            match out {
                Some(o) => {
                    std::fs::write(&o, &cms)
                        .with_context(|| format!("cannot write {}", o.display()))?;
                    eprintln!(
                        "wrote {} ({} bytes, {})",
                        o.display(),
                        cms.len(),
                        if detached { "detached" } else { "attached" }
                    );
                }
                None => {
                    use base64::Engine;
                    println!("{}", base64::engine::general_purpose::STANDARD.encode(&cms));
                }
            }
            Ok(())
        }
        CardCmd::Login {
            card,
            pin,
            sign_pin,
            consent,
            url,
        } => {
            let to =
                broker::cli::helper::login(&card, &pin, sign_pin.as_deref(), consent, &url).await?;
            println!("{to}");
            Ok(())
        }
        CardCmd::Approve {
            card,
            pin,
            sign_pin,
            link,
        } => broker::cli::helper::approve_cmd(&card, &pin, sign_pin.as_deref(), &link).await,
    }
}

fn cert_kind(s: &str) -> anyhow::Result<broker::pki::CertKind> {
    match s {
        "user_auth" => Ok(broker::pki::CertKind::UserAuth),
        "signature" => Ok(broker::pki::CertKind::Signature),
        other => anyhow::bail!("--kind `{other}`: expected user_auth or signature"),
    }
}

/// DER of a PEM or DER certificate file.
fn cert_der(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(pem::parse(&bytes)
        .map(|p| p.into_contents())
        .unwrap_or(bytes))
}

/// Serial (minimal big-endian bytes) of a PEM or DER certificate file.
fn cert_serial(path: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(hex::decode(
        broker::pki::inspect(&cert_der(path)?)?.serial_hex,
    )?)
}

async fn certs(c: Config, cmd: CertsCmd) -> anyhow::Result<()> {
    use broker::pki::{CertKind, RevocationReason};
    use broker::revocation::demo_ca::DemoCa;
    let demo_dir = c.data_dir.join("demo-pki");
    match cmd {
        CertsCmd::Revoke { card, reason } => {
            let reason = RevocationReason::parse(&reason)
                .with_context(|| format!("--reason `{reason}` is not an RFC 5280 reason"))?;
            let ca = DemoCa::open(&demo_dir)?;
            let now = time::OffsetDateTime::now_utc();
            let mut which = vec![(CertKind::Signature, card.join("sign.crt.pem"))];
            if reason != RevocationReason::AffiliationChanged {
                which.push((CertKind::UserAuth, card.join("auth.crt.pem")));
            }
            for (kind, file) in which {
                if !file.exists() {
                    continue;
                }
                let serial = cert_serial(&file)?;
                let new = ca.revoke(kind, &serial, reason, now)?;
                println!(
                    "{} {kind} certificate {} ({})",
                    if new { "revoked" } else { "already revoked:" },
                    hex::encode(&serial),
                    reason.as_str()
                );
            }
            Ok(())
        }
        CertsCmd::OcspResponder { listen } => {
            let ca = std::sync::Arc::new(DemoCa::open(&demo_dir)?);
            let app =
                broker::http::revocation::demo_routes(broker::http::revocation::DemoResponder {
                    ca,
                    clock: Arc::new(SystemClock),
                });
            let l = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!(
                "demo OCSP responder on http://{listen}/demo-pki/ocsp/{{user_auth|signature}}, CRLs at /demo-pki/crl/{{user_auth|signature}}"
            );
            broker::http::serve(l, app, c.limits, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
            Ok(())
        }
        CertsCmd::Crl { kind, out } => {
            let ca = DemoCa::open(&demo_dir)?;
            let der = ca.crl(cert_kind(&kind)?, time::OffsetDateTime::now_utc())?;
            std::fs::write(&out, der).with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        CertsCmd::Purge {
            card,
            anchor,
            serial,
            all,
        } => {
            let token = std::fs::read_to_string(broker::app::admin_token_path(&c.data_dir))
                .context("cannot read the admin token (is this the broker's data_dir?)")?;
            let mut bodies = Vec::new();
            if all {
                bodies.push(serde_json::json!({"all": true}));
            } else if let (Some(a), Some(s)) = (anchor, serial) {
                bodies.push(serde_json::json!({"anchor": a, "serial": s}));
            } else if let Some(card) = card {
                // Each certificate is named by the anchor whose key signed it — the demo CAs or
                // any configured one (an imported card from an operator's own test PKI).
                let trust = broker::app::load_trust(&c, None)?;
                for file in ["auth.crt.pem", "sign.crt.pem"] {
                    let path = card.join(file);
                    if !path.exists() {
                        continue;
                    }
                    let der = cert_der(&path)?;
                    let label = broker::pki::issuing_anchor(&der, &trust).with_context(|| {
                        format!(
                            "{}: no configured trust anchor issued this certificate",
                            path.display()
                        )
                    })?;
                    let s = broker::pki::inspect(&der)?.serial_hex;
                    bodies.push(serde_json::json!({"anchor": label, "serial": s}));
                }
            } else {
                anyhow::bail!("say what to purge: --card DIR, --anchor L --serial HEX, or --all");
            }
            let http = reqwest::Client::new();
            for b in bodies {
                let r = http
                    .post(format!("{}/admin/revocation/purge", c.issuer_str()))
                    .bearer_auth(token.trim())
                    .json(&b)
                    .send()
                    .await
                    .context("cannot reach the broker")?;
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if !status.is_success() {
                    anyhow::bail!("purge refused ({status}): {text}");
                }
                println!("{b} → {text}");
            }
            Ok(())
        }
    }
}

async fn keys(c: Config, cmd: KeysCmd) -> anyhow::Result<()> {
    use broker::oidc::keys::{EC_ALG, RSA_ALG};
    let store = broker::app::open_store(&c).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let when = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| t.to_string())
    };
    match cmd {
        KeysCmd::Rotate {
            alg,
            lead,
            grace,
            danger_allow_short,
        } => {
            let algs: &[&str] = match alg.as_str() {
                "ec" => &[EC_ALG],
                "rsa" => &[RSA_ALG],
                "all" => &[EC_ALG, RSA_ALG],
                other => anyhow::bail!("--alg `{other}`: expected ec, rsa or all"),
            };
            let lead = lead.unwrap_or(c.cluster.key_rotation_lead);
            let grace = grace.unwrap_or(c.cluster.key_retire_grace);
            if lead < 0 || grace < 0 {
                anyhow::bail!("--lead and --grace are seconds, not negative");
            }
            if !danger_allow_short && lead < c.min_rotation_lead() {
                anyhow::bail!(
                    "--lead {lead} is shorter than {} seconds (2 × cluster.sync_interval + the 300 s JWKS cache lifetime): RPs could meet tokens signed by a key they have not fetched; pass --danger-allow-short to do it anyway",
                    c.min_rotation_lead()
                );
            }
            if !danger_allow_short && grace < c.min_retire_grace() {
                anyhow::bail!(
                    "--grace {grace} is shorter than {} seconds (the longest token lifetime + 300 s): tokens signed by the old key would stop verifying; pass --danger-allow-short to do it anyway",
                    c.min_retire_grace()
                );
            }
            if danger_allow_short {
                tracing::warn!(
                    lead,
                    grace,
                    "danger_allow_short: key rotation below the safe minimum"
                );
            }
            // All or nothing: check every algorithm before rotating any.
            let recs = store.signing_keys().await?;
            for a in algs {
                broker::oidc::keys::check_rotatable(&recs, a, now)?;
            }
            for a in algs {
                let kid =
                    broker::service::keys::rotate(store.as_ref(), a, now, lead, grace).await?;
                println!(
                    "{a}: new key {kid} published now, signs from {}; the keys it replaces retire at {}",
                    when(now + lead),
                    when(now + lead + grace)
                );
            }
            Ok(())
        }
        KeysCmd::List => {
            let recs = store.signing_keys().await?;
            let live = |k: &&broker::store::SigningKeyRecord| k.retire_at.is_none_or(|r| r > now);
            // Per algorithm, the latest activated live key signs (as in KeySet::signing_key).
            let signing: Vec<&str> = [EC_ALG, RSA_ALG]
                .iter()
                .filter_map(|a| {
                    recs.iter()
                        .filter(live)
                        .filter(|k| k.alg == *a && k.activate_at <= now)
                        .max_by_key(|k| k.activate_at)
                        .map(|k| k.kid.as_str())
                })
                .collect();
            for k in &recs {
                let state = if !live(&k) {
                    "retired"
                } else if k.activate_at > now {
                    "next"
                } else if signing.contains(&k.kid.as_str()) {
                    "signing"
                } else {
                    "replaced"
                };
                println!(
                    "{}\t{}\t{state}\tsigns from {}\tretires {}",
                    k.kid,
                    k.alg,
                    when(k.activate_at),
                    k.retire_at.map(when).unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if config.demo {
        tracing::warn!("DEMO mode: demo JPKI trust anchors are trusted; never use in production");
    }
    if config.danger_allow_http_issuer {
        tracing::warn!("danger_allow_http_issuer: the issuer may be plain http");
    }
    let listen = config.listen;
    let broker = Broker::start(config, Arc::new(SystemClock)).await?;
    let app = broker::http::app(broker.clone());
    // Policy and relying-party files reload on SIGHUP and when they change.
    tokio::spawn(broker::service::reload::watch(broker.clone()));
    let refresher = broker.clone();
    tokio::spawn(async move {
        // CRLs are reloaded before their nextUpdate, so logins never wait on a CRL download.
        let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            every.tick().await;
            refresher
                .checker()
                .refresh_crls(|label| refresher.anchor_der(label))
                .await;
        }
    });
    let follower = broker.clone();
    tokio::spawn(async move {
        // Follow the other processes on the same database: key rotations, cache purges.
        let mut every = tokio::time::interval(std::time::Duration::from_secs(
            follower.config.cluster.sync_interval,
        ));
        let mut state = broker::service::cluster::SyncState::default();
        loop {
            every.tick().await;
            if let Err(e) = broker::service::cluster::sync(&follower, &mut state).await {
                tracing::warn!(error = %e, "cluster sync failed; retrying");
            }
        }
    });
    let purger = broker.clone();
    tokio::spawn(async move {
        // Login transactions go when they expire; codes, sessions and refresh tokens an hour
        // later (a replay still meets its record); see `Store::purge_expired`.
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            if let Err(e) = purger.store.purge_verifications(purger.now()).await {
                tracing::warn!(error = %e, "purging expired verification records failed");
            }
            match purger.store.purge_expired(purger.now()).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired records"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired records failed"),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let reg = broker.registry();
    eprintln!(
        "broker listening on {listen}\n  issuer:    {}\n  discovery: {}/.well-known/openid-configuration\n  relying parties: {}\n  demo: {}",
        broker.issuer(),
        broker.issuer(),
        reg.len(),
        broker.demo(),
    );
    if broker.demo() {
        eprintln!(
            "  log in: open {}/ in a browser, or issue a virtual card:\n    broker card issue --out mycard && broker card login --card mycard --pin 1234 --sign-pin ABC123 --consent '<authorization URL>'",
            broker.issuer()
        );
    }
    let limits = broker.config.limits;
    broker::http::serve(listener, app, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
