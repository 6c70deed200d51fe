//! `broker certs …`: the demo PKI's revocations, responder and CRLs; purging the running
//! broker's revocation cache.

use crate::clock::SystemClock;
use crate::config::Config;
use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum CertsCmd {
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

fn cert_kind(s: &str) -> anyhow::Result<crate::pki::CertKind> {
    match s {
        "user_auth" => Ok(crate::pki::CertKind::UserAuth),
        "signature" => Ok(crate::pki::CertKind::Signature),
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
        crate::pki::inspect(&cert_der(path)?)?.serial_hex,
    )?)
}

/// Run a `broker certs` subcommand.
pub async fn run(c: Config, cmd: CertsCmd) -> anyhow::Result<()> {
    use crate::pki::demo::ca::DemoCa;
    use crate::pki::{CertKind, RevocationReason};
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
            let app = crate::http::demo::demo_routes(crate::http::demo::DemoResponder {
                ca,
                clock: Arc::new(SystemClock),
            });
            let l = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!(
                "demo OCSP responder on http://{listen}/demo-pki/ocsp/{{user_auth|signature}}, CRLs at /demo-pki/crl/{{user_auth|signature}}"
            );
            crate::http::serve(l, app, c.limits, async {
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
            let token = std::fs::read_to_string(crate::app::admin_token_path(&c.data_dir))
                .context("cannot read the admin token (is this the broker's data_dir?)")?;
            let mut bodies = Vec::new();
            if all {
                bodies.push(serde_json::json!({"all": true}));
            } else if let (Some(a), Some(s)) = (anchor, serial) {
                bodies.push(serde_json::json!({"anchor": a, "serial": s}));
            } else if let Some(card) = card {
                // Each certificate is named by the anchor whose key signed it — the demo CAs or
                // any configured one (an imported card from an operator's own test PKI).
                let trust = crate::app::load_trust(&c, None)?;
                for file in ["auth.crt.pem", "sign.crt.pem"] {
                    let path = card.join(file);
                    if !path.exists() {
                        continue;
                    }
                    let der = cert_der(&path)?;
                    let label = crate::pki::issuing_anchor(&der, &trust).with_context(|| {
                        format!(
                            "{}: no configured trust anchor issued this certificate",
                            path.display()
                        )
                    })?;
                    let s = crate::pki::inspect(&der)?.serial_hex;
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
