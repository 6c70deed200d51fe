//! The conductor of the verification API behind `POST /api/v1/signatures/verify`: verify (pure), check the
//! signer certificate's revocation now (fail closed), shape the answer, keep the record.

use crate::app::Broker;
use crate::pki::CertStatus;
use crate::registry::Client;
use crate::revocation::Evidence;
use crate::signatures::{Failure, Input, RawAlgorithm, Verified, decode_cms, verify};
use crate::store::VerificationRecord;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// One item as the JSON API takes it: a CMS (attached, or detached with `content`), or a raw
/// card signature with its data and certificate. Binary values are base64 (standard or
/// url-safe); `cms` and `certificate` may also be PEM.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    pub cms: Option<String>,
    pub content: Option<String>,
    pub data: Option<String>,
    pub signature: Option<String>,
    pub certificate: Option<String>,
    pub signature_algorithm: Option<RawAlgorithm>,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, Failure> {
    crate::clock::b64_any(s).ok_or_else(|| Failure {
        code: "malformed",
        message: format!("`{what}` is not base64"),
    })
}

fn cert_bytes(s: &str) -> Result<Vec<u8>, Failure> {
    if s.trim_start().starts_with("-----BEGIN") {
        return pem::parse(s.as_bytes())
            .map(|p| p.into_contents())
            .map_err(|e| Failure {
                code: "malformed",
                message: format!("`certificate` is not PEM: {e}"),
            });
    }
    b64(s, "certificate")
}

impl ItemRequest {
    /// The typed input, or what is wrong with the request.
    pub fn into_input(self) -> Result<Input, Failure> {
        let bad = |m: &str| Failure {
            code: "invalid_request",
            message: m.to_string(),
        };
        match (self.cms, self.data, self.signature, self.certificate) {
            (Some(cms), None, None, None) => {
                if self.signature_algorithm.is_some() {
                    return Err(bad("signature_algorithm belongs to the raw form"));
                }
                Ok(Input::Cms {
                    cms: decode_cms(cms.as_bytes())?,
                    detached_content: self
                        .content
                        .as_deref()
                        .map(|c| b64(c, "content"))
                        .transpose()?,
                })
            }
            (None, Some(d), Some(sig), Some(cert)) => {
                if self.content.is_some() {
                    return Err(bad("content belongs to the CMS form (detached)"));
                }
                Ok(Input::Raw {
                    data: b64(&d, "data")?,
                    signature: b64(&sig, "signature")?,
                    certificate_der: cert_bytes(&cert)?,
                    algorithm: self
                        .signature_algorithm
                        .unwrap_or(RawAlgorithm::RsaPkcs1Sha256),
                })
            }
            _ => Err(bad(
                "give either `cms` (and `content` when detached) or `data`, `signature` and `certificate`",
            )),
        }
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The signer's basic four, as far as the client's registration allows.
fn signer_claims(client: &Client, v: &Verified) -> Option<Value> {
    let b = v.signer.basic4.as_ref()?;
    let id = crate::authn::proofing::IdentityClaims::from(b);
    let mut m = Map::new();
    if client.claims.contains("name") {
        m.insert("name".into(), json!(id.name));
        m.insert("name_substituted".into(), json!(id.name_substituted));
    }
    if client.claims.contains("birthdate") {
        m.insert("birthdate".into(), json!(id.birthdate));
    }
    if client.claims.contains("gender") {
        m.insert("gender".into(), json!(id.gender()));
    }
    if client.claims.contains("address") {
        m.insert(
            "address".into(),
            json!({"formatted": id.address, "country": "JP"}),
        );
        m.insert("address_substituted".into(), json!(id.address_substituted));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

fn revocation_json(ev: Result<&Evidence, &str>) -> Value {
    match ev {
        Ok(e) => {
            let (status, reason) = match &e.status {
                CertStatus::Good => ("good", None),
                CertStatus::Revoked { reason, .. } => ("revoked", Some(*reason)),
                CertStatus::Unknown => ("unknown", None),
            };
            let mut v = json!({
                "status": status,
                "source": e.source,
                "location": e.public_location(),
                "this_update": rfc3339(e.this_update),
                "next_update": e.next_update.map(rfc3339),
                "checked_at": rfc3339(e.checked_at),
            });
            if let CertStatus::Revoked { revoked_at, .. } = &e.status {
                v["revoked_at"] = json!(rfc3339(*revoked_at));
                v["reason"] = json!(reason.flatten().map_or("unspecified", |r| r.as_str()));
                v["meaning"] = json!(crate::pki::RevocationReason::meaning(reason.flatten()));
            }
            v
        }
        Err(msg) => json!({"status": "unavailable", "error": msg}),
    }
}

/// Verify one item for `client` at the broker's now; returns the answer and its record.
///
/// Long, and kept so: load (trust, revocation now) → the pure verification → the answer's
/// fields in the order the API documents them.
pub async fn verify_one(
    b: &Broker,
    client: &Client,
    item: Result<Input, Failure>,
) -> (Value, VerificationRecord) {
    let now = b.clock.now();
    let id = uuid::Uuid::new_v4().to_string();
    let retain_until = now.unix_timestamp() + b.policy().signatures.retention_days * 86_400;
    let mut reasons: Vec<Value> = Vec::new();
    let mut out = Map::new();
    let mut record = VerificationRecord {
        id: id.clone(),
        client_id: client.client_id.clone(),
        document_sha256: None,
        verdict: "invalid".into(),
        reasons_json: "[]".into(),
        cert_issuer: None,
        cert_serial: None,
        revocation_json: None,
        created_at: now.unix_timestamp(),
        retain_until,
    };
    match item.and_then(|i| verify(&i, &b.trust, now)) {
        Err(f) => reasons.push(json!({"code": f.code, "message": f.message})),
        Ok(v) => {
            record.document_sha256 = Some(v.content_sha256.clone());
            record.cert_issuer = Some(v.signer.issuer.clone());
            record.cert_serial = Some(v.signer.serial_hex.clone());
            out.insert(
                "certificate".into(),
                json!({
                    "issuer": v.signer.issuer,
                    "subject": v.signer.subject,
                    "serial": v.signer.serial_hex,
                    "not_before": rfc3339(v.signer.not_before),
                    "not_after": rfc3339(v.signer.not_after),
                    "policy": crate::pki::oids::SIGNATURE_POLICY,
                    "anchor": v.signer.anchor_label,
                }),
            );
            out.insert("document_sha256".into(), json!(v.content_sha256));
            out.insert("signing_time".into(), json!(v.signing_time.map(rfc3339)));
            out.insert("signature_algorithm".into(), json!(v.signature_algorithm));
            out.insert("detached".into(), json!(v.detached));
            let checked = b.checker().check(&v.signer).await;
            if let Err(e) = &checked {
                tracing::warn!(serial = %v.signer.serial_hex, error = %e, "signature API: revocation status unavailable");
            }
            let rev = revocation_json(checked.as_deref().map_err(|e| e.public_message()));
            match checked.as_deref() {
                Ok(e) => match &e.status {
                    CertStatus::Good => {}
                    CertStatus::Revoked { reason, .. } => reasons.push(json!({
                        "code": "revoked",
                        "message": format!(
                            "the certificate is revoked ({}): {}",
                            reason.map_or("unspecified", |r| r.as_str()),
                            crate::pki::RevocationReason::meaning(*reason)
                        ),
                    })),
                    CertStatus::Unknown => reasons.push(json!({
                        "code": "revocation_unknown",
                        "message": "the revocation responder does not know this certificate",
                    })),
                },
                Err(e) => reasons.push(json!({
                    "code": "revocation_unavailable",
                    "message": format!("cannot confirm that the certificate is not revoked: {}", e.public_message()),
                })),
            }
            record.revocation_json = Some(rev.to_string());
            out.insert("revocation".into(), rev);
            if let Some(s) = signer_claims(client, &v) {
                out.insert("signer".into(), s);
            }
        }
    }
    let valid = reasons.is_empty();
    record.verdict = if valid { "valid" } else { "invalid" }.into();
    record.reasons_json = Value::Array(reasons.clone()).to_string();
    out.insert("verdict".into(), json!(record.verdict));
    out.insert("reasons".into(), Value::Array(reasons));
    out.insert("audit_id".into(), json!(id));
    (Value::Object(out), record)
}
