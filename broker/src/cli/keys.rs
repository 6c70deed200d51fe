//! `broker keys …`: rotate and list the signing keys every process shares.

use crate::config::Config;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeysCmd {
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

/// Run a `broker keys` subcommand.
pub async fn run(c: Config, cmd: KeysCmd) -> anyhow::Result<()> {
    use crate::oidc::keys::{EC_ALG, RSA_ALG};
    let store = crate::app::open_store(&c).await?;
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
                crate::oidc::keys::check_rotatable(&recs, a, now)?;
            }
            for a in algs {
                let kid = crate::service::keys::rotate(store.as_ref(), a, now, lead, grace).await?;
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
            let live = |k: &&crate::store::SigningKeyRecord| k.retire_at.is_none_or(|r| r > now);
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
