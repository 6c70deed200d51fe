//! The RFC 5280 subset JPKI needs: one self-signed CA, one end-entity certificate.

use super::trust::{ParsedAnchor, normalized_name};
use super::verify::{
    OID_ECDSA_WITH_SHA256, OID_SHA256_WITH_RSA, rsa_modulus_bits, verify_signed_by,
};
use super::{Basic4, CertKind, PkiError, TrustStore, basic4};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate, X509Extension, X509Version};

/// An end-entity JPKI certificate that passed [`validate`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct ValidatedCert {
    /// The kind it was validated as.
    pub kind: CertKind,
    /// Subject DN as x509-parser prints it (RFC 4514-ish, e.g. `C=JP, CN=897434E6BNBFHG01106003A`).
    pub subject: String,
    /// Issuer DN, same format.
    pub issuer: String,
    /// Lowercase hex of the serial's minimal big-endian bytes, e.g. `054cfcd8`.
    pub serial_hex: String,
    /// notBefore.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Label of the anchor whose key verified the signature.
    pub anchor_label: String,
    /// Whether that anchor is a demo CA.
    pub anchor_demo: bool,
    /// DER RSAPublicKey of the end-entity key (for [`super::verify_rsa_pkcs1_sha256`]).
    #[serde(skip)]
    pub public_key_pkcs1: Vec<u8>,
    /// Some only for signature certificates that carry the otherName SAN.
    pub basic4: Option<Basic4>,
    /// The certificate as given.
    #[serde(skip)]
    pub der: Vec<u8>,
    /// DER of the anchor (CA certificate) whose key verified the certificate: what OCSP CertIDs
    /// are built from and what OCSP responses and CRLs must be signed by.
    #[serde(skip)]
    pub issuer_cert_der: Arc<[u8]>,
    /// The serial's minimal big-endian bytes (the same value as [`ValidatedCert::serial_hex`]).
    #[serde(skip)]
    pub serial: Vec<u8>,
}

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

const EXT_SUBJECT_KEY_ID: &str = "2.5.29.14";
const EXT_KEY_USAGE: &str = "2.5.29.15";
const EXT_SUBJECT_ALT_NAME: &str = "2.5.29.17";
const EXT_ISSUER_ALT_NAME: &str = "2.5.29.18";
const EXT_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const EXT_CRL_DISTRIBUTION_POINTS: &str = "2.5.29.31";
const EXT_CERTIFICATE_POLICIES: &str = "2.5.29.32";
const EXT_AUTHORITY_KEY_ID: &str = "2.5.29.35";
const EXT_EXTENDED_KEY_USAGE: &str = "2.5.29.37";
const EXT_AUTHORITY_INFO_ACCESS: &str = "1.3.6.1.5.5.7.1.1";

/// Extensions this validator accepts when marked critical.
const UNDERSTOOD: [&str; 10] = [
    EXT_SUBJECT_KEY_ID,
    EXT_KEY_USAGE,
    EXT_SUBJECT_ALT_NAME,
    EXT_ISSUER_ALT_NAME,
    EXT_BASIC_CONSTRAINTS,
    EXT_CRL_DISTRIBUTION_POINTS,
    EXT_CERTIFICATE_POLICIES,
    EXT_AUTHORITY_KEY_ID,
    EXT_EXTENDED_KEY_USAGE,
    EXT_AUTHORITY_INFO_ACCESS,
];

/// Extensions whose content the validator relies on: they must parse.
const RELIED_ON: [&str; 4] = [
    EXT_KEY_USAGE,
    EXT_SUBJECT_ALT_NAME,
    EXT_BASIC_CONSTRAINTS,
    EXT_CERTIFICATE_POLICIES,
];

/// Validates an end-entity JPKI certificate at `now` against the trust store.
///
/// Order, each failure its own [`PkiError`] variant:
/// parse (`Malformed`) → policy of the other kind (`WrongKind`) → issuer chosen by signature among
/// anchors of `expected` kind whose subject matches the issuer DN (`UnsupportedAlgorithm`; a
/// certificate chaining to an anchor of the other kind gives `WrongKind`; a signature that fails
/// under the anchor its AKI names gives `BadSignature`; otherwise `UntrustedIssuer`) → validity
/// (`NotYetValid`/`Expired`) → keyUsage (`KeyUsage`) → certificatePolicies (`Policy`) →
/// RSA ≥ 2048 (`WeakKey`) → not a CA (`IsCa`) → no unknown critical extension
/// (`UnsupportedCriticalExtension`) → basic four of a signature certificate (`Basic4`).
///
/// Long, and kept so: that order is the contract (each step its own error), and it reads top to
/// bottom as the list above.
pub fn validate(
    cert_der: &[u8],
    store: &TrustStore,
    expected: CertKind,
    now: OffsetDateTime,
) -> Result<ValidatedCert, PkiError> {
    // 1. Parse.
    let (rest, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| PkiError::Malformed(format!("not a DER X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Malformed(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    if cert.version() != X509Version::V3 {
        return Err(PkiError::Malformed(format!(
            "version {} (v3 required)",
            cert.version().0.saturating_add(1)
        )));
    }
    if cert.tbs_certificate.signature != cert.signature_algorithm {
        return Err(PkiError::Malformed(
            "signature algorithm inside tbsCertificate differs from the outer one".into(),
        ));
    }
    let exts = collect_extensions(&cert)?;
    let policies = policy_oids(&exts)?;

    // 2. A certificate that declares the other kind's policy is refused as such, early, so that
    //    "the signature certificate presented for login" gets a clear message.
    let has_any = |kind: CertKind| {
        policies
            .iter()
            .any(|p| kind.policy_oids().contains(&p.as_str()))
    };
    if has_any(expected.other()) && !has_any(expected) {
        return Err(PkiError::WrongKind {
            expected,
            found: expected.other(),
        });
    }

    // 3. Issuer, chosen by signature.
    let alg = cert.signature_algorithm.algorithm.to_id_string();
    if alg != OID_SHA256_WITH_RSA && alg != OID_ECDSA_WITH_SHA256 {
        return Err(PkiError::UnsupportedAlgorithm(alg));
    }
    let aki = authority_key_id(&exts);
    let (anchor, parsed_anchor) = match find_issuer(&cert, store, expected, aki) {
        IssuerSearch::Found(anchor, parsed) => (anchor, parsed),
        IssuerSearch::NotFound { key_id_matched } => {
            if let IssuerSearch::Found(..) = find_issuer(&cert, store, expected.other(), aki) {
                return Err(PkiError::WrongKind {
                    expected,
                    found: expected.other(),
                });
            }
            if key_id_matched {
                return Err(PkiError::BadSignature);
            }
            return Err(PkiError::UntrustedIssuer {
                issuer: cert.issuer().to_string(),
            });
        }
    };

    // 4. Validity.
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if now < not_before {
        return Err(PkiError::NotYetValid {
            not_before: rfc3339(not_before),
        });
    }
    if now > not_after {
        return Err(PkiError::Expired {
            not_after: rfc3339(not_after),
        });
    }

    // 5. keyUsage, whether or not critical.
    let ku = match exts.get(EXT_KEY_USAGE).map(|e| e.parsed_extension()) {
        Some(ParsedExtension::KeyUsage(ku)) => ku,
        Some(_) => return Err(PkiError::Malformed("keyUsage cannot be parsed".into())),
        None => return Err(PkiError::KeyUsage("keyUsage extension is missing".into())),
    };
    if !ku.digital_signature() {
        return Err(PkiError::KeyUsage("keyUsage lacks digitalSignature".into()));
    }
    if expected == CertKind::Signature && !ku.non_repudiation() {
        return Err(PkiError::KeyUsage(
            "keyUsage lacks nonRepudiation (contentCommitment), required for a signature certificate"
                .into(),
        ));
    }

    // 6. Policy.
    if !has_any(expected) {
        return Err(PkiError::Policy { found: policies });
    }

    // 7. Key: RSA ≥ 2048.
    let spki = cert.public_key();
    let key_alg = spki.algorithm.algorithm.to_id_string();
    if key_alg != OID_RSA_ENCRYPTION {
        return Err(PkiError::WeakKey(format!(
            "subject key algorithm is {key_alg}; JPKI requires RSA"
        )));
    }
    let public_key_pkcs1 = spki.subject_public_key.data.to_vec();
    let bits = rsa_modulus_bits(&public_key_pkcs1)
        .map_err(|e| PkiError::Malformed(format!("subject public key: {e}")))?;
    if bits < 2048 {
        return Err(PkiError::WeakKey(format!(
            "RSA key of {bits} bits; at least 2048 required"
        )));
    }

    // 8. Not a CA.
    match exts
        .get(EXT_BASIC_CONSTRAINTS)
        .map(|e| e.parsed_extension())
    {
        Some(ParsedExtension::BasicConstraints(bc)) if bc.ca => return Err(PkiError::IsCa),
        Some(ParsedExtension::BasicConstraints(_)) | None => {}
        Some(_) => {
            return Err(PkiError::Malformed(
                "basicConstraints cannot be parsed".into(),
            ));
        }
    }

    // 9. Critical extensions we do not understand.
    if let Some(ext) = cert
        .extensions()
        .iter()
        .find(|e| e.critical && !UNDERSTOOD.contains(&e.oid.to_id_string().as_str()))
    {
        return Err(PkiError::UnsupportedCriticalExtension(
            ext.oid.to_id_string(),
        ));
    }

    // 10. Basic four (signature certificates only).
    let basic4 = match expected {
        CertKind::UserAuth => None,
        CertKind::Signature => match exts.get(EXT_SUBJECT_ALT_NAME).map(|e| e.parsed_extension()) {
            Some(ParsedExtension::SubjectAlternativeName(san)) => {
                basic4::from_general_names(&san.general_names)?
            }
            Some(_) => {
                return Err(PkiError::Malformed(
                    "subjectAltName cannot be parsed".into(),
                ));
            }
            None => None,
        },
    };

    Ok(ValidatedCert {
        kind: expected,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial_hex: serial_hex(cert.raw_serial()),
        not_before,
        not_after,
        anchor_label: anchor.label.clone(),
        anchor_demo: anchor.demo,
        public_key_pkcs1,
        basic4,
        der: cert_der.to_vec(),
        issuer_cert_der: Arc::clone(&parsed_anchor.cert_der),
        serial: minimal_serial(cert.raw_serial()).to_vec(),
    })
}

/// What a certificate says about itself, before any trust decision (for display, logs and
/// diagnostics; never a reason to trust it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// The kind its certificatePolicies declare, if it carries a JPKI policy.
    pub kind: Option<CertKind>,
    /// Subject DN, as in [`ValidatedCert::subject`].
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, as in [`ValidatedCert::serial_hex`].
    pub serial_hex: String,
    /// notBefore.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// certificatePolicies OIDs, in order.
    pub policies: Vec<String>,
    /// Whether certificatePolicies is marked critical (it is on JPKI certificates).
    pub policies_critical: bool,
    /// keyUsage bits by their RFC 5280 names; empty when the extension is absent.
    pub key_usage: Vec<&'static str>,
    /// Whether keyUsage is marked critical.
    pub key_usage_critical: bool,
    /// Modulus size of an RSA subject key; `None` for other key types.
    pub rsa_bits: Option<usize>,
}

/// Parses a certificate and reports its JPKI-relevant profile without checking trust, validity
/// or kind. Errors only when the bytes are not a well-formed certificate.
pub fn inspect(cert_der: &[u8]) -> Result<CertInfo, PkiError> {
    let (rest, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| PkiError::Malformed(format!("not a DER X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Malformed(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    let exts = collect_extensions(&cert)?;
    let policies = policy_oids(&exts)?;
    let kind = [CertKind::UserAuth, CertKind::Signature]
        .into_iter()
        .find(|k| {
            policies
                .iter()
                .any(|p| k.policy_oids().contains(&p.as_str()))
        });
    let (key_usage, key_usage_critical) = match exts
        .get(EXT_KEY_USAGE)
        .map(|e| (e.critical, e.parsed_extension()))
    {
        Some((critical, ParsedExtension::KeyUsage(ku))) => {
            let names = [
                (ku.digital_signature(), "digitalSignature"),
                (ku.non_repudiation(), "nonRepudiation"),
                (ku.key_encipherment(), "keyEncipherment"),
                (ku.data_encipherment(), "dataEncipherment"),
                (ku.key_agreement(), "keyAgreement"),
                (ku.key_cert_sign(), "keyCertSign"),
                (ku.crl_sign(), "cRLSign"),
                (ku.encipher_only(), "encipherOnly"),
                (ku.decipher_only(), "decipherOnly"),
            ];
            let set = names
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect();
            (set, critical)
        }
        _ => (Vec::new(), false),
    };
    let spki = cert.public_key();
    let rsa_bits = if spki.algorithm.algorithm.to_id_string() == OID_RSA_ENCRYPTION {
        rsa_modulus_bits(&spki.subject_public_key.data).ok()
    } else {
        None
    };
    Ok(CertInfo {
        kind,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial_hex: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        policies,
        policies_critical: exts
            .get(EXT_CERTIFICATE_POLICIES)
            .is_some_and(|e| e.critical),
        key_usage,
        key_usage_critical,
        rsa_bits,
    })
}

/// Extensions by dotted OID; duplicates and unparsable relied-on/critical extensions are errors.
fn collect_extensions<'c, 'a>(
    cert: &'c X509Certificate<'a>,
) -> Result<HashMap<String, &'c X509Extension<'a>>, PkiError> {
    let mut map = HashMap::new();
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if matches!(ext.parsed_extension(), ParsedExtension::ParseError { .. })
            && (ext.critical || RELIED_ON.contains(&oid.as_str()))
        {
            return Err(PkiError::Malformed(format!(
                "extension {oid} cannot be parsed"
            )));
        }
        if map.insert(oid.clone(), ext).is_some() {
            return Err(PkiError::Malformed(format!("duplicate extension {oid}")));
        }
    }
    Ok(map)
}

fn policy_oids(exts: &HashMap<String, &X509Extension<'_>>) -> Result<Vec<String>, PkiError> {
    match exts
        .get(EXT_CERTIFICATE_POLICIES)
        .map(|e| e.parsed_extension())
    {
        Some(ParsedExtension::CertificatePolicies(policies)) => Ok(policies
            .iter()
            .map(|p| p.policy_id.to_id_string())
            .collect()),
        Some(_) => Err(PkiError::Malformed(
            "certificatePolicies cannot be parsed".into(),
        )),
        None => Ok(Vec::new()),
    }
}

fn authority_key_id<'c>(exts: &HashMap<String, &'c X509Extension<'_>>) -> Option<&'c [u8]> {
    match exts.get(EXT_AUTHORITY_KEY_ID).map(|e| e.parsed_extension()) {
        Some(ParsedExtension::AuthorityKeyIdentifier(aki)) => {
            aki.key_identifier.as_ref().map(|k| k.0)
        }
        _ => None,
    }
}

enum IssuerSearch<'s> {
    Found(&'s super::TrustAnchor, &'s ParsedAnchor),
    /// No anchor of the kind verified the signature; `key_id_matched` is true when one of the
    /// anchors the certificate's AKI names was tried (so the signature itself is bad).
    NotFound {
        key_id_matched: bool,
    },
}

/// The label of the trust anchor whose key signed `cert_der` (of either kind), whatever the
/// certificate's validity period or revocation: what an operator's tool needs to name a
/// certificate to the revocation cache (`broker certs purge --card`).
pub fn issuing_anchor(cert_der: &[u8], store: &TrustStore) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let exts = collect_extensions(&cert).ok()?;
    let aki = authority_key_id(&exts);
    [CertKind::UserAuth, CertKind::Signature]
        .into_iter()
        .find_map(|kind| match find_issuer(&cert, store, kind, aki) {
            IssuerSearch::Found(anchor, _) => Some(anchor.label.clone()),
            IssuerSearch::NotFound { .. } => None,
        })
}

/// Tries every anchor of `kind` whose subject matches the certificate's issuer DN (JPKI CA
/// generations share one DN) and returns the first whose key verifies the signature.
fn find_issuer<'s>(
    cert: &X509Certificate<'_>,
    store: &'s TrustStore,
    kind: CertKind,
    aki: Option<&[u8]>,
) -> IssuerSearch<'s> {
    let issuer_raw = cert.issuer().as_raw();
    let issuer_norm = normalized_name(cert.issuer());
    let mut key_id_matched = false;
    for (anchor, parsed) in store.iter().filter(|(a, _)| a.kind == kind) {
        let name_matches = parsed.subject_raw == issuer_raw
            || (parsed.subject_norm.is_some() && parsed.subject_norm == issuer_norm);
        if !name_matches {
            continue;
        }
        if verify_signed_by(cert, &parsed.key).is_ok() {
            return IssuerSearch::Found(anchor, parsed);
        }
        if aki.is_some_and(|id| parsed.key_ids.iter().any(|k| k == id)) {
            key_id_matched = true;
        }
    }
    IssuerSearch::NotFound { key_id_matched }
}

/// Lowercase hex of the minimal big-endian bytes of a serial number.
fn serial_hex(raw: &[u8]) -> String {
    hex::encode(minimal_serial(raw))
}

/// The minimal big-endian bytes of a serial number given as DER INTEGER contents (or any
/// big-endian bytes): leading zero bytes removed, but at least one byte kept (`00` for zero).
pub(crate) fn minimal_serial(raw: &[u8]) -> &[u8] {
    let skip = raw
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(raw.len().saturating_sub(1));
    raw.get(skip..).unwrap_or_default()
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_is_minimal() {
        assert_eq!(serial_hex(&[0x05, 0x4C, 0xFC, 0xD8]), "054cfcd8");
        assert_eq!(serial_hex(&[0x00, 0x85, 0x01]), "8501");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "");
    }

    #[test]
    fn modulus_bits() {
        // SEQUENCE { INTEGER 0x00C0..(3 bytes), INTEGER 3 }
        let key = [
            0x30, 0x09, 0x02, 0x04, 0x00, 0xC0, 0x00, 0x01, 0x02, 0x01, 0x03,
        ];
        assert_eq!(rsa_modulus_bits(&key).unwrap(), 24);
        let key = [0x30, 0x07, 0x02, 0x02, 0x01, 0x00, 0x02, 0x01, 0x03];
        assert_eq!(rsa_modulus_bits(&key).unwrap(), 9);
        assert!(rsa_modulus_bits(&[0x30, 0x00]).is_err());
        assert!(rsa_modulus_bits(&[0x30, 0x03, 0x02, 0x01, 0x80]).is_err());
    }
}
