//! `broker card …`: virtual cards (issue, renew, import, sign) and the card helper (login,
//! approve).

use super::load_config;
use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum CardCmd {
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

/// Run a `broker card` subcommand.
pub async fn run(config: Option<&Path>, cmd: CardCmd) -> anyhow::Result<()> {
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
                crate::pki::demo::DemoPki::load_or_create(&c.data_dir.join("demo-pki"), now)?;
            let birthdate = time::Date::parse(
                &birthdate,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .with_context(|| format!("--birthdate `{birthdate}` is not YYYY-MM-DD"))?;
            if !(1..=3).contains(&gender) {
                anyhow::bail!("--gender must be 1, 2 or 3");
            }
            let name = name.replacen(' ', "\u{3000}", 1);
            let issued = pki.issue_card(&crate::pki::demo::CardRequest {
                name_substituted: None,
                name,
                birthdate,
                gender,
                address,
                address_substituted: None,
                not_before: now - time::Duration::minutes(5),
                not_after: now + time::Duration::days(valid_days),
            })?;
            crate::card::VirtualCard::create(&out, &issued, &auth_pin, &sign_pin)?;
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
            use crate::pki::{CertKind, RevocationReason};
            let c = load_config(config)?;
            if !c.demo {
                anyhow::bail!("card renew needs demo mode (it signs with the demo PKI)");
            }
            let dir = c.data_dir.join("demo-pki");
            let ca = crate::pki::demo::ca::DemoCa::open(&dir)?;
            let now = time::OffsetDateTime::now_utc();
            let der = |f: &str| -> anyhow::Result<Vec<u8>> {
                let b = std::fs::read(card.join(f))
                    .with_context(|| format!("cannot read {}", card.join(f).display()))?;
                Ok(pem::parse(&b)?.into_contents())
            };
            let (old_auth, old_sign) = (der("auth.crt.pem")?, der("sign.crt.pem")?);
            let store = ca.pki().trust_store()?;
            let signed = crate::pki::validate(&old_sign, &store, CertKind::Signature, now)?;
            let b4 = signed
                .basic4
                .clone()
                .context("the old signature certificate has no basic information")?;
            let birthdate = time::Date::parse(
                &b4.birthdate,
                time::macros::format_description!("[year]-[month]-[day]"),
            )?;
            let issued = ca.pki().issue_card(&crate::pki::demo::CardRequest {
                name: b4.name.clone(),
                name_substituted: Some(b4.name_substituted.clone()),
                birthdate,
                gender: b4.gender.parse().unwrap_or(3),
                address: b4.address.clone(),
                address_substituted: Some(b4.address_substituted.clone()),
                not_before: now - time::Duration::minutes(5),
                not_after: now + time::Duration::days(valid_days),
            })?;
            let new = crate::card::VirtualCard::create(&out, &issued, &auth_pin, &sign_pin)?;
            let new_auth = new.auth_certificate_der()?;
            let new_sign = pem::parse(&issued.sign_cert_pem)?.into_contents();
            for (kind, old, newc) in [
                (CertKind::UserAuth, &old_auth, &new_auth),
                (CertKind::Signature, &old_sign, &new_sign),
            ] {
                let serial = |d: &[u8]| -> anyhow::Result<Vec<u8>> {
                    Ok(hex::decode(crate::pki::inspect(d)?.serial_hex)?)
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
            crate::card::VirtualCard::create_from_pem(
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
            let mut vc = crate::card::VirtualCard::open(&card)?;
            let cms = crate::signatures::sign(
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
                crate::cli::helper::login(&card, &pin, sign_pin.as_deref(), consent, &url).await?;
            println!("{to}");
            Ok(())
        }
        CardCmd::Approve {
            card,
            pin,
            sign_pin,
            link,
        } => crate::cli::helper::approve_cmd(&card, &pin, sign_pin.as_deref(), &link).await,
    }
}
