//! The demo PKI's revocation side: a small database of revoked demo certificates
//! (`data_dir/demo-pki/revoked.json`), an OCSP responder and a CRL publisher over it.
//! `broker certs revoke` writes the database; the embedded responder reads it on every
//! request, so a revocation is visible upstream at once (the broker's cache bound still applies).

use crate::pki::crl;
use crate::pki::demo::DemoPki;
use crate::pki::ocsp::{self, CertId, ResponseStatusCode};
use crate::pki::{CertKind, CertStatus, PkiError, RevocationReason};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// How long the demo responder's answers say they are good for.
pub const OCSP_VALIDITY: time::Duration = time::Duration::minutes(10);
/// How long demo CRLs say they are good for.
pub const CRL_VALIDITY: time::Duration = time::Duration::hours(24);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedEntry {
    pub kind: CertKind,
    pub serial_hex: String,
    pub revoked_at: i64,
    pub reason: RevocationReason,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoCaError {
    #[error("demo PKI: {0}")]
    Pki(#[from] PkiError),
    #[error("revocation database {path}: {msg}")]
    Db { path: String, msg: String },
    #[error("{0}")]
    Codec(String),
}

/// A renewal: the new certificate of a person replaces the old one (J-LIS link information).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalLink {
    pub kind: CertKind,
    pub old_serial_hex: String,
    pub new_serial_hex: String,
}

/// The demo CAs, their revocation database and their renewal links.
pub struct DemoCa {
    pki: DemoPki,
    db: PathBuf,
    links: PathBuf,
}

impl DemoCa {
    /// Open the demo PKI in `dir` (`data_dir/demo-pki`).
    pub fn open(dir: &Path) -> Result<DemoCa, DemoCaError> {
        Ok(DemoCa {
            pki: DemoPki::load(dir)?,
            db: dir.join("revoked.json"),
            links: dir.join("links.json"),
        })
    }

    pub fn pki(&self) -> &DemoPki {
        &self.pki
    }

    fn db_err(&self, msg: impl std::fmt::Display) -> DemoCaError {
        DemoCaError::Db {
            path: self.db.display().to_string(),
            msg: msg.to_string(),
        }
    }

    /// Every revoked demo certificate.
    pub fn entries(&self) -> Result<Vec<RevokedEntry>, DemoCaError> {
        match std::fs::read(&self.db) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| self.db_err(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(self.db_err(e)),
        }
    }

    /// Record a revocation (idempotent per serial: the first reason stands).
    pub fn revoke(
        &self,
        kind: CertKind,
        serial: &[u8],
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> Result<bool, DemoCaError> {
        let mut all = self.entries()?;
        let serial_hex = hex::encode(serial);
        if all
            .iter()
            .any(|e| e.kind == kind && e.serial_hex == serial_hex)
        {
            return Ok(false);
        }
        all.push(RevokedEntry {
            kind,
            serial_hex,
            revoked_at: at.unix_timestamp(),
            reason,
        });
        let tmp = self.db.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&all).map_err(|e| self.db_err(e))?;
        std::fs::write(&tmp, text).map_err(|e| self.db_err(e))?;
        std::fs::rename(&tmp, &self.db).map_err(|e| self.db_err(e))?;
        Ok(true)
    }

    /// Every recorded renewal.
    pub fn renewals(&self) -> Result<Vec<RenewalLink>, DemoCaError> {
        match std::fs::read(&self.links) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| self.db_err(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(self.db_err(e)),
        }
    }

    /// Record that `new` (serial) renews `old` for certificates of `kind`.
    pub fn record_renewal(
        &self,
        kind: CertKind,
        old: &[u8],
        new: &[u8],
    ) -> Result<(), DemoCaError> {
        let mut all = self.renewals()?;
        all.push(RenewalLink {
            kind,
            old_serial_hex: hex::encode(old),
            new_serial_hex: hex::encode(new),
        });
        let tmp = self.links.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&all).map_err(|e| self.db_err(e))?;
        std::fs::write(&tmp, text).map_err(|e| self.db_err(e))?;
        std::fs::rename(&tmp, &self.links).map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// The serial the certificate `serial_hex` of `kind` renewed, if any.
    pub fn predecessor(&self, kind: CertKind, serial_hex: &str) -> Option<String> {
        self.renewals()
            .ok()?
            .into_iter()
            .find(|l| l.kind == kind && l.new_serial_hex == serial_hex)
            .map(|l| l.old_serial_hex)
    }

    fn status_of(&self, entries: &[RevokedEntry], kind: CertKind, serial: &[u8]) -> CertStatus {
        let hex = hex::encode(serial);
        match entries
            .iter()
            .find(|e| e.kind == kind && e.serial_hex == hex)
        {
            Some(e) => CertStatus::Revoked {
                revoked_at: OffsetDateTime::from_unix_timestamp(e.revoked_at)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                reason: Some(e.reason),
            },
            None => CertStatus::Good,
        }
    }

    /// Answer a DER OCSPRequest for the CA of `kind`. Certificates of another CA are `unknown`.
    pub fn ocsp_response(&self, kind: CertKind, request: &[u8], now: OffsetDateTime) -> Vec<u8> {
        let Ok(req) = ocsp::parse_request(request) else {
            return ocsp::build_error_response(ResponseStatusCode::MalformedRequest);
        };
        let entries = match self.entries() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "demo OCSP responder");
                return ocsp::build_error_response(ResponseStatusCode::InternalError);
            }
        };
        let ca = self.pki.ca_cert_der(kind);
        let answers: Vec<(CertId, CertStatus)> = req
            .ids
            .iter()
            .map(|id| {
                let ours = CertId::new(&ca, &id.serial).is_ok_and(|mine| {
                    mine.issuer_key_hash == id.issuer_key_hash
                        && mine.issuer_name_hash == id.issuer_name_hash
                });
                let st = if ours {
                    self.status_of(&entries, kind, &id.serial)
                } else {
                    CertStatus::Unknown
                };
                (id.clone(), st)
            })
            .collect();
        match ocsp::build_response(
            &self.pki.ca_signer(kind),
            &answers,
            req.nonce.as_deref(),
            now,
            now,
            Some(now + OCSP_VALIDITY),
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "demo OCSP responder");
                ocsp::build_error_response(ResponseStatusCode::InternalError)
            }
        }
    }

    /// A fresh CRL of the CA of `kind`.
    pub fn crl(&self, kind: CertKind, now: OffsetDateTime) -> Result<Vec<u8>, DemoCaError> {
        let entries = self.entries()?;
        let list: Vec<(Vec<u8>, OffsetDateTime, Option<RevocationReason>)> = entries
            .iter()
            .filter(|e| e.kind == kind)
            .filter_map(|e| {
                Some((
                    hex::decode(&e.serial_hex).ok()?,
                    OffsetDateTime::from_unix_timestamp(e.revoked_at).ok()?,
                    Some(e.reason),
                ))
            })
            .collect();
        crl::build_crl(
            &self.pki.ca_cert_der(kind),
            &self.pki.ca_key_pkcs8(kind),
            &list,
            now,
            now + CRL_VALIDITY,
            list.len() as u64 + 1,
        )
        .map_err(|e| DemoCaError::Codec(e.to_string()))
    }
}
