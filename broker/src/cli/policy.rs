//! `broker policy check` and `broker rp secret`: the operator's files and registrations.

use super::load_config;
use clap::Subcommand;
use std::path::Path;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Validate policies/ and relying-parties/ and print what was loaded (or file:line: reason).
    Check,
}

#[derive(Subcommand)]
pub enum RpCmd {
    /// Make a client secret and the SHA-256 to put in the RP file as client_secret_sha256.
    Secret,
}

/// `broker policy check`: validate the policy, relying-party and trust-anchor files as `serve`
/// would load them; print what was loaded and what an operator should hear.
pub fn check(config: Option<&Path>) -> anyhow::Result<()> {
    let c = load_config(config)?;
    let mut reg = crate::registry::Registry::load_dir(&c.relying_parties_dir)?;
    let pol = crate::registry::policy::Policy::load_dir(&c.policies_dir)?;
    reg.check_against(&pol)?;
    reg.restrict_claims(&pol);
    // The trust anchors as `serve` would load them (the demo PKI's by label: checking
    // does not create it), against the revocation sources.
    let anchors = crate::app::configured_anchors(&c)?;
    crate::pki::TrustStore::new(anchors.clone())
        .map_err(|e| anyhow::anyhow!("trust anchors: {e}"))?;
    let mut labels: Vec<&str> = anchors.iter().map(|a| a.label.as_str()).collect();
    if c.demo {
        labels.extend([
            crate::pki::demo::AUTH_CA_LABEL,
            crate::pki::demo::SIGN_CA_LABEL,
        ]);
    }
    if !c.demo
        && !anchors
            .iter()
            .any(|a| a.kind == crate::pki::CertKind::UserAuth)
    {
        anyhow::bail!(
            "no user-authentication trust anchor: configure [[trust_anchors]] with kind = \"user_auth\" (or run in demo mode)"
        );
    }
    for w in crate::revocation::source_warnings(&pol.revocation, &labels) {
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

/// `broker rp secret`: a new client secret and its SHA-256 for the RP file.
pub fn secret() -> anyhow::Result<()> {
    let s = crate::clock::random_token();
    println!("client_secret = {s}");
    println!(
        "client_secret_sha256 = \"{}\"",
        hex::encode(crate::clock::sha256(s.as_bytes()))
    );
    Ok(())
}
