//! OCSP (RFC 6960) codecs, no I/O.
//!
//! Client side: [`CertId::new`], [`build_request`] and [`verify_response`], which checks a
//! response completely (status, signer authorisation, signature over the tbsResponseData bytes
//! exactly as received, CertID, freshness, nonce). Responder side, for the demo responder and
//! tests: [`parse_request`], [`build_response`], [`build_error_response`].
//!
//! Messages are decoded with x509-ocsp's strict DER types: GeneralizedTime values must be
//! `YYYYMMDDHHMMSSZ` without fractional seconds, as RFC 6960 (through RFC 5280) requires.
//! Requests and responses are written with x509-ocsp's types and builder.

use super::der as tlv;
use super::trust::same_name;
use super::validate::{minimal_serial, rfc3339};
use super::verify::{SigCheck, accepted_signature_algorithm, verify_signed_data};
use super::{CertStatus, RevocationReason};
use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use der::asn1::{BitString, GeneralizedTime, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Tagged};
use std::fmt;
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp as xo;
use x509_parser::prelude::{AlgorithmIdentifier, FromDer, X509Certificate, X509Name};

const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const OID_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const OID_SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// CertID with SHA-1 hashes (what responders universally accept; RFC 6960 §4.1.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertId {
    /// SHA-1 of the DER of the issuer CA's subject DN.
    pub issuer_name_hash: [u8; 20],
    /// SHA-1 of the issuer CA's subjectPublicKey BIT STRING contents (without the unused-bits
    /// octet).
    pub issuer_key_hash: [u8; 20],
    /// The certificate's serial, minimal big-endian bytes.
    pub serial: Vec<u8>,
}

impl CertId {
    /// From the issuer CA certificate (hash of its subject DN DER and of its subjectPublicKey
    /// BIT STRING contents) and the serial (big-endian; leading zero bytes are ignored).
    pub fn new(issuer_cert_der: &[u8], serial: &[u8]) -> Result<CertId, OcspError> {
        let issuer = parse_issuer(issuer_cert_der)?;
        let serial = minimal_serial(serial);
        if serial.is_empty() {
            return Err(OcspError::Malformed("serial number is empty".into()));
        }
        SerialNumber::<x509_cert::certificate::Rfc5280>::new(serial).map_err(|_| {
            OcspError::Malformed("serial number is longer than 20 octets (RFC 5280)".into())
        })?;
        let (issuer_name_hash, issuer_key_hash) = issuer_hashes_sha1(&issuer);
        Ok(CertId {
            issuer_name_hash,
            issuer_key_hash,
            serial: serial.to_vec(),
        })
    }
}

/// DER OCSPRequest for `ids`, with the nonce extension (id-pkix-ocsp-nonce, value an OCTET
/// STRING, not critical) when given. Unsigned, version v1 (omitted), no requestorName. Written
/// by x509-ocsp's builder; fails only for a serial longer than the 20 octets RFC 5280 allows.
pub fn build_request(ids: &[CertId], nonce: Option<&[u8]>) -> Result<Vec<u8>, OcspError> {
    let mut builder = xo::builder::OcspRequestBuilder::default();
    for id in ids {
        builder = builder.with_request(xo::Request {
            req_cert: to_x509_cert_id(id)?,
            single_request_extensions: None,
        });
    }
    if let Some(nonce) = nonce {
        let nonce =
            xo::ext::Nonce::new(nonce).map_err(|e| OcspError::Build(format!("nonce: {e}")))?;
        builder = builder
            .with_extension(nonce)
            .map_err(|e| OcspError::Build(format!("nonce extension: {e}")))?;
    }
    builder
        .build()
        .to_der()
        .map_err(|e| OcspError::Build(format!("OCSPRequest: {e}")))
}

/// How the nonce of a request must come back in the response.
#[derive(Clone, Copy, Debug)]
pub enum NonceCheck<'a> {
    /// No nonce was sent; any nonce in the response is ignored.
    NotSent,
    /// Sent; a response without a nonce is accepted (pre-produced responses), a different one
    /// is not.
    Sent(&'a [u8]),
    /// Sent and the response must echo it.
    Required(&'a [u8]),
}

/// Time tolerances of [`verify_response`].
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    /// Clock skew allowed between the responder and us, on thisUpdate and nextUpdate.
    pub max_skew: Duration,
    /// When a response has no nextUpdate, how old thisUpdate may be.
    pub max_age_without_next_update: Duration,
}

/// What a verified response says about the certificate asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspAnswer {
    /// good / revoked (time, reason) / unknown.
    pub status: CertStatus,
    /// thisUpdate of the SingleResponse.
    pub this_update: OffsetDateTime,
    /// nextUpdate of the SingleResponse, if any.
    pub next_update: Option<OffsetDateTime>,
    /// producedAt of the response.
    pub produced_at: OffsetDateTime,
    /// "issuer" when the CA signed, else the delegated responder certificate's subject DN.
    pub signer: String,
}

/// Everything that can be wrong with an OCSP request or response (or with building one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspError {
    /// The bytes are not a well-formed OCSP message (DER, structure, times, extensions).
    #[error("malformed OCSP message: {0}")]
    Malformed(String),
    /// The responder answered with a responseStatus other than successful, named
    /// (malformedRequest, internalError, tryLater, sigRequired, unauthorized).
    #[error("OCSP responder answered {0} instead of a response")]
    ResponseStatus(String),
    /// A signature or CertID hash algorithm this codec does not accept (SHA-1 signatures are
    /// refused).
    #[error("unsupported OCSP algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The response's signature does not verify with the key of its signer (tampered with, or
    /// signed by a key that is neither the issuer CA's nor an authorised responder's).
    #[error("OCSP response signature does not verify")]
    BadSignature,
    /// The signer is not authorised for the issuer CA: a delegated responder certificate not
    /// issued by that CA, without EKU id-kp-OCSPSigning or not valid now, or a responderID
    /// that does not match the signer.
    #[error("OCSP responder not authorised: {0}")]
    UnauthorizedResponder(String),
    /// The response has no SingleResponse for the certificate asked about.
    #[error("OCSP response does not cover the certificate asked about (no matching CertID)")]
    CertIdMismatch,
    /// The response carries a nonce other than the one sent.
    #[error("OCSP response nonce differs from the request's")]
    NonceMismatch,
    /// A nonce was required but the response has none.
    #[error("OCSP response has no nonce but one was required")]
    MissingNonce,
    /// thisUpdate is in the future beyond the allowed clock skew.
    #[error("OCSP response is not yet valid (thisUpdate {this_update})")]
    NotYetValid {
        /// thisUpdate, RFC 3339.
        this_update: String,
    },
    /// nextUpdate has passed beyond the allowed skew (or, without nextUpdate, thisUpdate is
    /// older than allowed).
    #[error("OCSP response is stale (nextUpdate {next_update})")]
    Stale {
        /// nextUpdate, RFC 3339, or why the response counts as stale without one.
        next_update: String,
    },
    /// The issuer CA certificate given to the codec cannot be parsed.
    #[error("issuer CA certificate: {0}")]
    BadIssuer(String),
    /// A response could not be built (responder side): unusable signer certificate or key,
    /// or a value out of range.
    #[error("cannot build OCSP response: {0}")]
    Build(String),
}

/// Verify a DER OCSPResponse for `id` at `now`.
///
/// Checks, in order, each failure its own [`OcspError`]: responseStatus successful
/// (`ResponseStatus`) and a BasicOCSPResponse (`Malformed`); the signature algorithm
/// (sha256/384/512WithRSA, RSASSA-PSS, ecdsa-with-SHA256/384; `UnsupportedAlgorithm`); the
/// signer: the issuer CA's key, or a delegated responder certificate included in the response
/// that the issuer CA signed, with EKU id-kp-OCSPSigning, valid at `now`
/// (`UnauthorizedResponder`), the responderID (byName or byKey) naming that signer, and the
/// signature over the raw tbsResponseData bytes (`BadSignature`); a SingleResponse whose CertID
/// equals `id` (SHA-1, or SHA-256 computed from the issuer; `CertIdMismatch`); thisUpdate ≤
/// now + max_skew (`NotYetValid`); nextUpdate ≥ now − max_skew, or without nextUpdate
/// thisUpdate ≥ now − max_age_without_next_update (`Stale`); the nonce (`NonceMismatch`,
/// `MissingNonce`). Unknown critical extensions are `Malformed`.
///
/// Long, and kept so: RFC 6960's checks in the order above, each with its own error.
pub fn verify_response(
    der: &[u8],
    issuer_cert_der: &[u8],
    id: &CertId,
    nonce: NonceCheck<'_>,
    now: OffsetDateTime,
    freshness: Freshness,
) -> Result<OcspAnswer, OcspError> {
    let issuer = parse_issuer(issuer_cert_der)?;
    let response = xo::OcspResponse::from_der(der)
        .map_err(|e| OcspError::Malformed(format!("OCSPResponse: {e}")))?;
    if response.response_status != xo::OcspResponseStatus::Successful {
        return Err(OcspError::ResponseStatus(
            status_name(response.response_status).into(),
        ));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| OcspError::Malformed("successful response without responseBytes".into()))?;
    if bytes.response_type != OID_BASIC {
        return Err(OcspError::Malformed(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let basic_der = bytes.response.as_bytes();
    let basic = xo::BasicOcspResponse::from_der(basic_der)
        .map_err(|e| OcspError::Malformed(format!("BasicOCSPResponse: {e}")))?;
    let raw = split_basic(basic_der).map_err(OcspError::Malformed)?;
    let (_, algorithm) = AlgorithmIdentifier::from_der(raw.algorithm)
        .map_err(|e| OcspError::Malformed(format!("signatureAlgorithm: {e}")))?;
    accepted_signature_algorithm(&algorithm).map_err(OcspError::UnsupportedAlgorithm)?;

    // The signer, and the signature over tbsResponseData as received.
    let data = &basic.tbs_response_data;
    let signer = find_signer(&data.responder_id, &issuer, &raw, &algorithm, now)?;

    // The SingleResponse about `id`.
    let id_is_for_issuer = issuer_hashes_sha1(&issuer) == (id.issuer_name_hash, id.issuer_key_hash);
    let issuer_sha256 = (
        sha256(issuer.subject().as_raw()),
        sha256(&issuer.public_key().subject_public_key.data),
    );
    let mut single = None;
    for candidate in &data.responses {
        if cert_id_matches(&candidate.cert_id, id, id_is_for_issuer, &issuer_sha256)? {
            single = Some(candidate);
            break;
        }
    }
    let single = single.ok_or(OcspError::CertIdMismatch)?;
    check_critical(data.response_extensions.as_deref(), "response")?;
    check_critical(single.single_extensions.as_deref(), "singleResponse")?;

    // Freshness.
    let this_update = from_generalized(&single.this_update, "thisUpdate")?;
    let next_update = single
        .next_update
        .as_ref()
        .map(|t| from_generalized(t, "nextUpdate"))
        .transpose()?;
    let produced_at = from_generalized(&data.produced_at, "producedAt")?;
    if this_update > now.saturating_add(freshness.max_skew) {
        return Err(OcspError::NotYetValid {
            this_update: rfc3339(this_update),
        });
    }
    match next_update {
        Some(next) if next < now.saturating_sub(freshness.max_skew) => {
            return Err(OcspError::Stale {
                next_update: rfc3339(next),
            });
        }
        Some(_) => {}
        None => {
            if this_update < now.saturating_sub(freshness.max_age_without_next_update) {
                return Err(OcspError::Stale {
                    next_update: format!(
                        "absent, and thisUpdate {} is older than {}",
                        rfc3339(this_update),
                        freshness.max_age_without_next_update
                    ),
                });
            }
        }
    }

    // Nonce.
    let echoed = data.response_extensions.as_ref().and_then(|exts| {
        exts.iter()
            .find(|e| e.extn_id == OID_NONCE)
            .map(|e| e.extn_value.as_bytes())
    });
    match (nonce, echoed) {
        (NonceCheck::NotSent, _) | (NonceCheck::Sent(_), None) => {}
        (NonceCheck::Required(_), None) => return Err(OcspError::MissingNonce),
        (NonceCheck::Sent(sent) | NonceCheck::Required(sent), Some(value)) => {
            if !nonce_matches(value, sent) {
                return Err(OcspError::NonceMismatch);
            }
        }
    }

    let status = match single.cert_status {
        xo::CertStatus::Good(_) => CertStatus::Good,
        xo::CertStatus::Unknown(_) => CertStatus::Unknown,
        xo::CertStatus::Revoked(info) => CertStatus::Revoked {
            revoked_at: from_generalized(&info.revocation_time, "revocationTime")?,
            reason: info.revocation_reason.map(reason_from_x509),
        },
    };
    Ok(OcspAnswer {
        status,
        this_update,
        next_update,
        produced_at,
        signer,
    })
}

/// What a request asks about (responder side).
#[derive(Clone, Debug)]
pub struct OcspRequestInfo {
    /// The certificates asked about, in request order.
    pub ids: Vec<CertId>,
    /// The nonce extension's value (the OCTET STRING's contents), if present.
    pub nonce: Option<Vec<u8>>,
}

/// Parses a DER OCSPRequest. Only SHA-1 CertIDs are accepted (`UnsupportedAlgorithm`
/// otherwise); a request signature, if any, is ignored.
pub fn parse_request(der: &[u8]) -> Result<OcspRequestInfo, OcspError> {
    let request = xo::OcspRequest::from_der(der)
        .map_err(|e| OcspError::Malformed(format!("OCSPRequest: {e}")))?;
    let tbs = &request.tbs_request;
    if tbs.request_list.is_empty() {
        return Err(OcspError::Malformed(
            "OCSPRequest: requestList is empty".into(),
        ));
    }
    check_critical(tbs.request_extensions.as_deref(), "request")?;
    let ids = tbs
        .request_list
        .iter()
        .map(|r| cert_id_from_sha1(&r.req_cert))
        .collect::<Result<Vec<_>, _>>()?;
    let nonce = tbs.request_extensions.as_ref().and_then(|exts| {
        exts.iter().find(|e| e.extn_id == OID_NONCE).map(|e| {
            let value = e.extn_value.as_bytes();
            // RFC 8954: the value is an OCTET STRING; some old clients put the raw bytes.
            OctetString::from_der(value)
                .map(|o| o.as_bytes().to_vec())
                .unwrap_or_else(|_| value.to_vec())
        })
    });
    Ok(OcspRequestInfo { ids, nonce })
}

/// The certificate and key that sign responses.
#[derive(Clone)]
pub struct ResponderSigner {
    /// DER of the signer's certificate (the CA itself, or a delegated responder).
    pub cert_der: Vec<u8>,
    /// RSA PKCS#8 DER of its key.
    pub key_pkcs8: Vec<u8>,
    /// True: a delegated responder; its certificate is included in responses.
    pub delegated: bool,
}

impl fmt::Debug for ResponderSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponderSigner")
            .field("cert_der_len", &self.cert_der.len())
            .field("key_pkcs8", &"<redacted>")
            .field("delegated", &self.delegated)
            .finish()
    }
}

/// A successful BasicOCSPResponse signed sha256WithRSA by `signer`, responderID byKey, one
/// SingleResponse per entry (revocationReason when a reason is given), the nonce echoed when
/// given.
///
/// Long, and kept so: RFC 6960's ResponseData written field by field as it nests (the demo
/// responder's and the tests' only use).
pub fn build_response(
    signer: &ResponderSigner,
    entries: &[(CertId, CertStatus)],
    nonce: Option<&[u8]>,
    produced_at: OffsetDateTime,
    this_update: OffsetDateTime,
    next_update: Option<OffsetDateTime>,
) -> Result<Vec<u8>, OcspError> {
    let build = |what: &str| {
        let what = what.to_owned();
        move |e: der::Error| OcspError::Build(format!("{what}: {e}"))
    };
    let (_, signer_cert) = X509Certificate::from_der(&signer.cert_der)
        .map_err(|e| OcspError::Build(format!("signer certificate: {e}")))?;
    let key = RsaKeyPair::from_pkcs8(&signer.key_pkcs8)
        .map_err(|e| OcspError::Build(format!("signer key is not an RSA PKCS#8 key: {e}")))?;
    let signer_key_bits = signer_cert.public_key().subject_public_key.data.as_ref();
    if key.public_key().as_ref() != signer_key_bits {
        return Err(OcspError::Build(
            "signer key does not match the signer certificate".into(),
        ));
    }

    let this_update = to_generalized(this_update, "thisUpdate")?;
    let next_update = next_update
        .map(|t| to_generalized(t, "nextUpdate"))
        .transpose()?;
    let mut responses = Vec::with_capacity(entries.len());
    for (id, status) in entries {
        let cert_status = match status {
            CertStatus::Good => xo::CertStatus::good(),
            CertStatus::Unknown => xo::CertStatus::unknown(),
            CertStatus::Revoked { revoked_at, reason } => {
                xo::CertStatus::Revoked(xo::RevokedInfo {
                    revocation_time: to_generalized(*revoked_at, "revocationTime")?,
                    revocation_reason: reason.map(reason_to_x509),
                })
            }
        };
        responses.push(xo::SingleResponse {
            cert_id: to_x509_cert_id(id)?,
            cert_status,
            this_update,
            next_update,
            single_extensions: None,
        });
    }
    let response_extensions = match nonce {
        None => None,
        Some(n) => {
            let value = OctetString::new(n)
                .and_then(|o| o.to_der())
                .and_then(OctetString::new)
                .map_err(build("nonce"))?;
            Some(vec![Extension {
                extn_id: OID_NONCE,
                critical: false,
                extn_value: value,
            }])
        }
    };
    let key_hash = OctetString::new(sha1(signer_key_bits).to_vec()).map_err(build("keyHash"))?;
    let tbs_response_data = xo::ResponseData {
        version: xo::Version::V1,
        responder_id: xo::ResponderId::ByKey(key_hash),
        produced_at: to_generalized(produced_at, "producedAt")?,
        responses,
        response_extensions,
    };
    let tbs = tbs_response_data
        .to_der()
        .map_err(build("tbsResponseData"))?;
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        &tbs,
        &mut sig,
    )
    .map_err(|_| OcspError::Build("RSA signing failed".into()))?;
    let certs = if signer.delegated {
        Some(vec![
            Certificate::from_der(&signer.cert_der).map_err(build("signer certificate"))?,
        ])
    } else {
        None
    };
    let basic = xo::BasicOcspResponse {
        tbs_response_data,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: OID_SHA256_WITH_RSA,
            parameters: Some(Null.into()),
        },
        signature: BitString::from_bytes(&sig).map_err(build("signature"))?,
        certs,
    };
    xo::OcspResponse::successful(basic)
        .and_then(|r| r.to_der())
        .map_err(build("OCSPResponse"))
}

/// The unsuccessful responseStatus values of an OCSPResponse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseStatusCode {
    /// Illegal confirmation request.
    MalformedRequest = 1,
    /// Internal error in the responder.
    InternalError = 2,
    /// Try again later.
    TryLater = 3,
    /// The request must be signed.
    SigRequired = 5,
    /// The request is unauthorised.
    Unauthorized = 6,
}

/// An OCSPResponse with an unsuccessful responseStatus and no responseBytes.
pub fn build_error_response(status: ResponseStatusCode) -> Vec<u8> {
    // SEQUENCE { ENUMERATED status }
    vec![0x30, 0x03, 0x0A, 0x01, status as u8]
}

// ---------------------------------------------------------------------------------------------

/// The issuer CA certificate, parsed.
fn parse_issuer(der: &[u8]) -> Result<X509Certificate<'_>, OcspError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| OcspError::BadIssuer(format!("not a DER X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(OcspError::BadIssuer(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    Ok(cert)
}

pub(super) fn sha1(data: &[u8]) -> [u8; 20] {
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    <[u8; 20]>::try_from(d.as_ref()).unwrap_or_default()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    <[u8; 32]>::try_from(d.as_ref()).unwrap_or_default()
}

/// (SHA-1 of the subject DN DER, SHA-1 of the subjectPublicKey bits).
fn issuer_hashes_sha1(issuer: &X509Certificate<'_>) -> ([u8; 20], [u8; 20]) {
    (
        sha1(issuer.subject().as_raw()),
        sha1(&issuer.public_key().subject_public_key.data),
    )
}

/// DER INTEGER of a non-negative big-endian magnitude.
pub(super) fn integer_der(magnitude: &[u8]) -> Vec<u8> {
    let m: &[u8] = match magnitude.iter().position(|b| *b != 0) {
        Some(first) => magnitude.get(first..).unwrap_or_default(),
        None => &[],
    };
    let mut value = Vec::with_capacity(m.len() + 1);
    if m.first().is_none_or(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(m);
    tlv::tlv(tlv::tag::INTEGER, &value)
}

fn to_x509_cert_id(id: &CertId) -> Result<xo::CertId, OcspError> {
    let e = |e: der::Error| OcspError::Build(format!("CertID: {e}"));
    Ok(xo::CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: OID_SHA1,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(id.issuer_name_hash.to_vec()).map_err(e)?,
        issuer_key_hash: OctetString::new(id.issuer_key_hash.to_vec()).map_err(e)?,
        serial_number: SerialNumber::new(minimal_serial(&id.serial)).map_err(e)?,
    })
}

/// Hash algorithm parameters must be absent or NULL.
fn hash_params_ok(alg: &AlgorithmIdentifierOwned) -> bool {
    alg.parameters
        .as_ref()
        .is_none_or(|p| p.tag() == der::Tag::Null && p.value().is_empty())
}

fn cert_id_from_sha1(x: &xo::CertId) -> Result<CertId, OcspError> {
    if x.hash_algorithm.oid != OID_SHA1 || !hash_params_ok(&x.hash_algorithm) {
        return Err(OcspError::UnsupportedAlgorithm(format!(
            "CertID hash algorithm {} (only SHA-1 CertIDs are supported)",
            x.hash_algorithm.oid
        )));
    }
    let hash = |o: &OctetString, what: &str| {
        <[u8; 20]>::try_from(o.as_bytes()).map_err(|_| {
            OcspError::Malformed(format!(
                "CertID {what} is {} bytes, not a SHA-1 hash",
                o.as_bytes().len()
            ))
        })
    };
    Ok(CertId {
        issuer_name_hash: hash(&x.issuer_name_hash, "issuerNameHash")?,
        issuer_key_hash: hash(&x.issuer_key_hash, "issuerKeyHash")?,
        serial: minimal_serial(x.serial_number.as_bytes()).to_vec(),
    })
}

/// Whether a response's CertID denotes `id`: SHA-1 hashes compared with `id`'s; SHA-256 hashes
/// compared with the issuer's (only when `id` is for that issuer).
fn cert_id_matches(
    x: &xo::CertId,
    id: &CertId,
    id_is_for_issuer: bool,
    issuer_sha256: &([u8; 32], [u8; 32]),
) -> Result<bool, OcspError> {
    if minimal_serial(x.serial_number.as_bytes()) != minimal_serial(&id.serial) {
        return Ok(false);
    }
    let name = x.issuer_name_hash.as_bytes();
    let key = x.issuer_key_hash.as_bytes();
    let alg = &x.hash_algorithm;
    if alg.oid == OID_SHA1 && hash_params_ok(alg) {
        Ok(name == id.issuer_name_hash && key == id.issuer_key_hash)
    } else if alg.oid == OID_SHA256 && hash_params_ok(alg) {
        Ok(id_is_for_issuer && name == issuer_sha256.0 && key == issuer_sha256.1)
    } else {
        Err(OcspError::UnsupportedAlgorithm(format!(
            "CertID hash algorithm {} (SHA-1 or SHA-256 expected)",
            alg.oid
        )))
    }
}

/// The raw parts of a BasicOCSPResponse, as received.
struct RawBasic<'a> {
    /// tbsResponseData TLV.
    tbs: &'a [u8],
    /// signatureAlgorithm TLV.
    algorithm: &'a [u8],
    /// The signature bits (BIT STRING contents after the unused-bits octet).
    signature: &'a [u8],
    /// Each certificate of `certs`, TLV.
    certs: Vec<&'a [u8]>,
}

/// Takes one TLV with tag `tag` off the front of `input`: (its raw bytes, the rest).
pub(super) fn take_raw<'a>(
    input: &'a [u8],
    tag: u8,
    what: &str,
) -> Result<(&'a [u8], &'a [u8]), String> {
    let (t, rest) = tlv::read_tlv(input).map_err(|e| format!("{what}: {e}"))?;
    if t.tag != tag {
        return Err(format!(
            "{what}: expected tag {tag:#04x}, found {:#04x}",
            t.tag
        ));
    }
    let raw = input
        .get(..input.len() - rest.len())
        .ok_or_else(|| format!("{what}: length out of range"))?;
    Ok((raw, rest))
}

fn split_basic(der: &[u8]) -> Result<RawBasic<'_>, String> {
    let body = tlv::read_single(der, tlv::tag::SEQUENCE, "BasicOCSPResponse")?;
    let (tbs, rest) = take_raw(body, tlv::tag::SEQUENCE, "tbsResponseData")?;
    let (algorithm, rest) = take_raw(rest, tlv::tag::SEQUENCE, "signatureAlgorithm")?;
    let (sig, rest) = tlv::read_tlv(rest).map_err(|e| format!("signature: {e}"))?;
    if sig.tag != tlv::tag::BIT_STRING {
        return Err("signature is not a BIT STRING".into());
    }
    let signature = match sig.value.split_first() {
        Some((0, bits)) => bits,
        _ => return Err("signature BIT STRING has unused bits or is empty".into()),
    };
    let mut certs = Vec::new();
    if !rest.is_empty() {
        let (wrapper, rest) = tlv::read_tlv(rest).map_err(|e| format!("certs: {e}"))?;
        if wrapper.tag != tlv::tag::CONTEXT_0 || !rest.is_empty() {
            return Err("unexpected element after the signature".into());
        }
        let mut list = tlv::read_single(wrapper.value, tlv::tag::SEQUENCE, "certs")?;
        while !list.is_empty() {
            let (cert, rest) = take_raw(list, tlv::tag::SEQUENCE, "certs")?;
            certs.push(cert);
            list = rest;
        }
    }
    Ok(RawBasic {
        tbs,
        algorithm,
        signature,
        certs,
    })
}

/// Whether the responderID names `cert` (byKey: SHA-1 of its key bits; byName: its subject).
fn responder_id_names(rid: &xo::ResponderId, cert: &X509Certificate<'_>) -> bool {
    match rid {
        xo::ResponderId::ByKey(hash) => {
            hash.as_bytes() == sha1(&cert.public_key().subject_public_key.data)
        }
        xo::ResponderId::ByName(name) => match name.to_der() {
            Ok(der) => match X509Name::from_der(&der) {
                Ok((_, parsed)) => same_name(&parsed, cert.subject()),
                Err(_) => false,
            },
            Err(_) => false,
        },
    }
}

fn describe_responder_id(rid: &xo::ResponderId) -> String {
    match rid {
        xo::ResponderId::ByKey(hash) => format!("byKey {}", hex::encode(hash.as_bytes())),
        xo::ResponderId::ByName(name) => format!("byName `{name}`"),
    }
}

/// Verifies the response signature with `cert`'s key.
fn signature_ok(
    cert: &X509Certificate<'_>,
    raw: &RawBasic<'_>,
    algorithm: &AlgorithmIdentifier<'_>,
) -> Result<bool, OcspError> {
    match verify_signed_data(cert.public_key(), algorithm, raw.signature, raw.tbs) {
        Ok(()) => Ok(true),
        Err(SigCheck::Invalid) => Ok(false),
        Err(SigCheck::Unsupported(alg)) => Err(OcspError::UnsupportedAlgorithm(alg)),
    }
}

/// Finds who signed and checks the signature; returns [`OcspAnswer::signer`].
fn find_signer(
    rid: &xo::ResponderId,
    issuer: &X509Certificate<'_>,
    raw: &RawBasic<'_>,
    algorithm: &AlgorithmIdentifier<'_>,
    now: OffsetDateTime,
) -> Result<String, OcspError> {
    let included: Vec<X509Certificate<'_>> = raw
        .certs
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
        .collect();
    let candidates: Vec<&X509Certificate<'_>> = included
        .iter()
        .filter(|c| responder_id_names(rid, c))
        .collect();

    // 1. The CA signed the response itself.
    if responder_id_names(rid, issuer) {
        if signature_ok(issuer, raw, algorithm)? {
            return Ok("issuer".into());
        }
        if candidates.is_empty() {
            return Err(OcspError::BadSignature);
        }
    }

    // 2. A delegated responder whose certificate is included.
    let mut first_error = None;
    for cert in candidates {
        let outcome = authorize_responder(cert, issuer, now).and_then(|()| {
            if signature_ok(cert, raw, algorithm)? {
                Ok(cert.subject().to_string())
            } else {
                Err(OcspError::BadSignature)
            }
        });
        match outcome {
            Ok(subject) => return Ok(subject),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    // 3. The responderID names nobody we know: say whether a known key signed nonetheless.
    for cert in included.iter().chain(std::iter::once(issuer)) {
        if signature_ok(cert, raw, algorithm)? {
            return Err(OcspError::UnauthorizedResponder(format!(
                "responderID {} does not name the signer `{}`",
                describe_responder_id(rid),
                cert.subject()
            )));
        }
    }
    Err(OcspError::BadSignature)
}

/// A delegated responder certificate must be issued (signed) by the issuer CA, carry EKU
/// id-kp-OCSPSigning, allow digitalSignature if it has keyUsage, and be valid at `now`.
fn authorize_responder(
    cert: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    now: OffsetDateTime,
) -> Result<(), OcspError> {
    let subject = cert.subject().to_string();
    let deny = |why: String| {
        Err(OcspError::UnauthorizedResponder(format!(
            "`{subject}` {why}"
        )))
    };
    if !same_name(cert.issuer(), issuer.subject()) {
        return deny(format!(
            "was issued by `{}`, not by the certificate's issuer CA `{}`",
            cert.issuer(),
            issuer.subject()
        ));
    }
    if cert.tbs_certificate.signature != cert.signature_algorithm {
        return deny("has inconsistent signature algorithms".into());
    }
    match verify_signed_data(
        issuer.public_key(),
        &cert.signature_algorithm,
        &cert.signature_value.data,
        cert.tbs_certificate.as_ref(),
    ) {
        Ok(()) => {}
        Err(SigCheck::Invalid) => return deny("is not signed by the issuer CA's key".into()),
        Err(SigCheck::Unsupported(alg)) => {
            return deny(format!("is signed with unsupported algorithm {alg}"));
        }
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.ocsp_signing => {}
        Ok(_) => return deny("lacks extendedKeyUsage id-kp-OCSPSigning".into()),
        Err(e) => return deny(format!("has an unreadable extendedKeyUsage: {e}")),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => {
            return deny("has keyUsage without digitalSignature".into());
        }
        Ok(_) => {}
        Err(e) => return deny(format!("has an unreadable keyUsage: {e}")),
    }
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if now < not_before {
        return deny(format!(
            "is not yet valid (notBefore {})",
            rfc3339(not_before)
        ));
    }
    if now > not_after {
        return deny(format!("has expired (notAfter {})", rfc3339(not_after)));
    }
    Ok(())
}

/// Refuses critical extensions other than the nonce.
fn check_critical(exts: Option<&[Extension]>, what: &str) -> Result<(), OcspError> {
    match exts
        .unwrap_or_default()
        .iter()
        .find(|e| e.critical && e.extn_id != OID_NONCE)
    {
        Some(e) => Err(OcspError::Malformed(format!(
            "unsupported critical {what} extension {}",
            e.extn_id
        ))),
        None => Ok(()),
    }
}

/// The nonce extension value holds an OCTET STRING (RFC 8954); old responders echo raw bytes.
fn nonce_matches(extn_value: &[u8], sent: &[u8]) -> bool {
    OctetString::from_der(extn_value).is_ok_and(|o| o.as_bytes() == sent) || extn_value == sent
}

fn status_name(status: xo::OcspResponseStatus) -> &'static str {
    match status {
        xo::OcspResponseStatus::Successful => "successful",
        xo::OcspResponseStatus::MalformedRequest => "malformedRequest",
        xo::OcspResponseStatus::InternalError => "internalError",
        xo::OcspResponseStatus::TryLater => "tryLater",
        xo::OcspResponseStatus::SigRequired => "sigRequired",
        xo::OcspResponseStatus::Unauthorized => "unauthorized",
    }
}

fn reason_from_x509(reason: CrlReason) -> RevocationReason {
    match reason {
        CrlReason::Unspecified => RevocationReason::Unspecified,
        CrlReason::KeyCompromise => RevocationReason::KeyCompromise,
        CrlReason::CaCompromise => RevocationReason::CaCompromise,
        CrlReason::AffiliationChanged => RevocationReason::AffiliationChanged,
        CrlReason::Superseded => RevocationReason::Superseded,
        CrlReason::CessationOfOperation => RevocationReason::CessationOfOperation,
        CrlReason::CertificateHold => RevocationReason::CertificateHold,
        CrlReason::RemoveFromCRL => RevocationReason::RemoveFromCrl,
        CrlReason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        CrlReason::AaCompromise => RevocationReason::AaCompromise,
    }
}

fn reason_to_x509(reason: RevocationReason) -> CrlReason {
    match reason {
        RevocationReason::Unspecified => CrlReason::Unspecified,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::CertificateHold => CrlReason::CertificateHold,
        RevocationReason::RemoveFromCrl => CrlReason::RemoveFromCRL,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => CrlReason::AaCompromise,
    }
}

fn to_generalized(t: OffsetDateTime, what: &str) -> Result<xo::OcspGeneralizedTime, OcspError> {
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| OcspError::Build(format!("{what} {} is before 1970", rfc3339(t))))?;
    GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map(xo::OcspGeneralizedTime)
        .map_err(|e| OcspError::Build(format!("{what} {}: {e}", rfc3339(t))))
}

fn from_generalized(t: &xo::OcspGeneralizedTime, what: &str) -> Result<OffsetDateTime, OcspError> {
    i64::try_from(t.0.to_unix_duration().as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| OcspError::Malformed(format!("{what} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::CertKind;
    use crate::pki::test_support::{demo_card, demo_pki, fixture_now, other_demo_pki, pem_to_der};
    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;
    use time::macros::datetime;

    const KIND: CertKind = CertKind::UserAuth;
    const NONCE: &[u8] = b"0123456789abcdef";

    fn ca_der() -> Vec<u8> {
        demo_pki().ca_cert_der(KIND)
    }

    fn id(serial: &[u8]) -> CertId {
        CertId::new(&ca_der(), serial).expect("CertId")
    }

    fn freshness() -> Freshness {
        Freshness {
            max_skew: Duration::minutes(5),
            max_age_without_next_update: Duration::hours(1),
        }
    }

    /// A delegated responder of the demo user-authentication CA, valid around the fixture time.
    fn delegated() -> &'static ResponderSigner {
        static SIGNER: OnceLock<ResponderSigner> = OnceLock::new();
        SIGNER.get_or_init(|| {
            let now = fixture_now();
            demo_pki()
                .issue_ocsp_responder(KIND, now - Duration::days(1), now + Duration::days(30))
                .expect("issue responder")
        })
    }

    /// Signed by `signer` at the fixture time: thisUpdate an hour ago, nextUpdate in a day.
    fn respond(
        signer: &ResponderSigner,
        entries: &[(CertId, CertStatus)],
        nonce: Option<&[u8]>,
    ) -> Vec<u8> {
        let now = fixture_now();
        build_response(
            signer,
            entries,
            nonce,
            now,
            now - Duration::hours(1),
            Some(now + Duration::days(1)),
        )
        .expect("build response")
    }

    fn check(der: &[u8], id: &CertId, nonce: NonceCheck<'_>) -> Result<OcspAnswer, OcspError> {
        verify_response(der, &ca_der(), id, nonce, fixture_now(), freshness())
    }

    fn revoked(at: OffsetDateTime, reason: Option<RevocationReason>) -> CertStatus {
        CertStatus::Revoked {
            revoked_at: at,
            reason,
        }
    }

    /// The demo card's user-authentication certificate serial.
    fn card_serial() -> Vec<u8> {
        let store = demo_pki().trust_store().unwrap();
        let der = pem_to_der(&demo_card().auth_cert_pem);
        let v = crate::pki::validate(&der, &store, KIND, fixture_now()).unwrap();
        assert_eq!(&*v.issuer_cert_der, ca_der().as_slice());
        assert_eq!(hex::encode(&v.serial), v.serial_hex);
        v.serial
    }

    /// The builder writes RFC 6960's layout byte for byte: OCSPRequest { TBSRequest {
    /// requestList { Request { CertID { sha1 with NULL, name hash, key hash, serial } } },
    /// [2] { Extensions { Extension { id-pkix-ocsp-nonce, OCTET STRING { OCTET STRING } } } } } }
    /// — no version (v1 is the default), no criticality (FALSE is the default).
    #[test]
    fn request_is_rfc6960s_layout() {
        let id = CertId {
            issuer_name_hash: [0x11; 20],
            issuer_key_hash: [0x22; 20],
            serial: vec![0x80, 0x01],
        };
        let cert_id = tlv::sequence(&[
            tlv::sequence(&[tlv::oid("1.3.14.3.2.26").unwrap(), vec![0x05, 0x00]]),
            tlv::tlv(tlv::tag::OCTET_STRING, &[0x11; 20]),
            tlv::tlv(tlv::tag::OCTET_STRING, &[0x22; 20]),
            integer_der(&[0x80, 0x01]),
        ]);
        let request_list = tlv::sequence(&[tlv::sequence(&[cert_id])]);
        let nonce = tlv::sequence(&[
            tlv::oid("1.3.6.1.5.5.7.48.1.2").unwrap(),
            tlv::tlv(
                tlv::tag::OCTET_STRING,
                &tlv::tlv(tlv::tag::OCTET_STRING, NONCE),
            ),
        ]);
        let extensions = tlv::constructed(0xA2, &[tlv::sequence(&[nonce])]);
        assert_eq!(
            build_request(std::slice::from_ref(&id), Some(NONCE)).unwrap(),
            tlv::sequence(&[tlv::sequence(&[request_list.clone(), extensions])])
        );
        assert_eq!(
            build_request(std::slice::from_ref(&id), None).unwrap(),
            tlv::sequence(&[tlv::sequence(&[request_list])])
        );
        // A serial longer than RFC 5280's 20 octets is refused when the CertID is made.
        assert!(matches!(
            CertId::new(&ca_der(), &[0x7F; 21]),
            Err(OcspError::Malformed(m)) if m.contains("20 octets")
        ));
        assert!(CertId::new(&ca_der(), &[0x7F; 20]).is_ok());
        assert_eq!(integer_der(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer_der(&[0x00, 0x00, 0x7F]), [0x02, 0x01, 0x7F]);
        assert_eq!(integer_der(&[]), [0x02, 0x01, 0x00]);
    }

    #[test]
    fn cert_id_hashes_issuer_name_and_key() {
        let ca = ca_der();
        let (_, cert) = X509Certificate::from_der(&ca).unwrap();
        let id = CertId::new(&ca, &[0x00, 0x00, 0x12, 0x34]).unwrap();
        assert_eq!(id.serial, [0x12, 0x34], "leading zeros dropped");
        assert_eq!(id.issuer_name_hash, sha1(cert.subject().as_raw()));
        assert_eq!(
            id.issuer_key_hash,
            sha1(&cert.public_key().subject_public_key.data)
        );
        // Another generation of the CA: same DN, other key.
        let other = CertId::new(&other_demo_pki().ca_cert_der(KIND), &[0x12, 0x34]).unwrap();
        assert_eq!(other.issuer_name_hash, id.issuer_name_hash);
        assert_ne!(other.issuer_key_hash, id.issuer_key_hash);
        assert!(matches!(
            CertId::new(b"junk", &[1]),
            Err(OcspError::BadIssuer(m)) if m.contains("not a DER X.509")
        ));
        assert!(matches!(
            CertId::new(&ca, &[]),
            Err(OcspError::Malformed(m)) if m.contains("empty")
        ));
    }

    #[test]
    fn request_round_trip_preserves_ids_and_nonce() {
        let ids = vec![id(&card_serial()), id(&[0x80, 0x01]), id(&[0x05])];
        let parsed = parse_request(&build_request(&ids, Some(NONCE)).unwrap()).expect("parse");
        assert_eq!(parsed.ids, ids);
        assert_eq!(parsed.nonce.as_deref(), Some(NONCE));

        let parsed = parse_request(&build_request(&ids[..1], None).unwrap()).expect("parse");
        assert_eq!(parsed.ids, ids[..1]);
        assert_eq!(parsed.nonce, None);

        assert!(matches!(
            parse_request(&build_request(&[], None).unwrap()),
            Err(OcspError::Malformed(m)) if m.contains("requestList is empty")
        ));
        let req = build_request(&ids, Some(NONCE)).unwrap();
        assert!(matches!(
            parse_request(&req[..req.len() - 1]),
            Err(OcspError::Malformed(_))
        ));
    }

    #[test]
    fn ca_signed_response_reports_each_status() {
        let now = fixture_now();
        let at = datetime!(2025-03-04 05:06:07 UTC);
        let good = id(&card_serial());
        let key_compromise = id(&[0x11]);
        let affiliation = id(&[0x12]);
        let superseded = id(&[0x13]);
        let no_reason = id(&[0x14]);
        let unknown = id(&[0x15]);
        let entries = vec![
            (good.clone(), CertStatus::Good),
            (
                key_compromise.clone(),
                revoked(at, Some(RevocationReason::KeyCompromise)),
            ),
            (
                affiliation.clone(),
                revoked(at, Some(RevocationReason::AffiliationChanged)),
            ),
            (
                superseded.clone(),
                revoked(at, Some(RevocationReason::Superseded)),
            ),
            (no_reason.clone(), revoked(at, None)),
            (unknown.clone(), CertStatus::Unknown),
        ];
        let der = respond(&demo_pki().ca_signer(KIND), &entries, Some(NONCE));
        for (id, status) in &entries {
            let answer = check(&der, id, NonceCheck::Required(NONCE)).expect("verifies");
            assert_eq!(&answer.status, status);
            assert_eq!(answer.signer, "issuer");
            assert_eq!(answer.produced_at, now);
            assert_eq!(answer.this_update, now - Duration::hours(1));
            assert_eq!(answer.next_update, Some(now + Duration::days(1)));
        }
        // No certificate is included when the CA signs.
        let basic = basic_of(&der);
        assert!(basic.certs.is_none());
        assert!(matches!(
            basic.tbs_response_data.responder_id,
            xo::ResponderId::ByKey(_)
        ));
    }

    fn basic_of(der: &[u8]) -> xo::BasicOcspResponse {
        let r = xo::OcspResponse::from_der(der).unwrap();
        xo::BasicOcspResponse::from_der(r.response_bytes.unwrap().response.as_bytes()).unwrap()
    }

    #[test]
    fn delegated_responder_response_verifies() {
        let signer = delegated();
        assert!(signer.delegated);
        let (_, cert) = X509Certificate::from_der(&signer.cert_der).unwrap();
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .ocsp_signing
        );
        assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
        assert!(
            cert.extensions()
                .iter()
                .any(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5"),
            "id-pkix-ocsp-nocheck"
        );
        assert_eq!(
            crate::pki::verify::rsa_modulus_bits(&cert.public_key().subject_public_key.data),
            Ok(2048)
        );

        let serial = card_serial();
        let at = datetime!(2026-01-02 03:04:05 UTC);
        let der = respond(
            signer,
            &[(
                id(&serial),
                revoked(at, Some(RevocationReason::AffiliationChanged)),
            )],
            None,
        );
        assert_eq!(basic_of(&der).certs.map(|c| c.len()), Some(1));
        let answer = check(&der, &id(&serial), NonceCheck::NotSent).expect("verifies");
        assert_eq!(
            answer.status,
            revoked(at, Some(RevocationReason::AffiliationChanged))
        );
        assert_eq!(answer.signer, cert.subject().to_string());
        assert!(answer.signer.contains("OCSP Responder"));
    }

    #[test]
    fn response_signed_by_another_ca_key_is_bad_signature() {
        // Same DN as our CA (another generation), other key; the CA itself signs.
        let der = respond(
            &other_demo_pki().ca_signer(KIND),
            &[(id(&[0x42]), CertStatus::Good)],
            None,
        );
        assert_eq!(
            check(&der, &id(&[0x42]), NonceCheck::NotSent),
            Err(OcspError::BadSignature)
        );
    }

    #[test]
    fn unauthorized_responders_are_refused() {
        let now = fixture_now();
        let entries = [(id(&[0x42]), CertStatus::Good)];
        let refused = |signer: &ResponderSigner| match check(
            &respond(signer, &entries, None),
            &id(&[0x42]),
            NonceCheck::NotSent,
        ) {
            Err(OcspError::UnauthorizedResponder(m)) => m,
            other => panic!("expected UnauthorizedResponder, got {other:?}"),
        };

        let no_eku = demo_pki()
            .issue_responder_without_eku(KIND, now - Duration::days(1), now + Duration::days(1))
            .unwrap();
        assert!(refused(&no_eku).contains("lacks extendedKeyUsage id-kp-OCSPSigning"));

        let foreign = other_demo_pki()
            .issue_ocsp_responder(KIND, now - Duration::days(1), now + Duration::days(1))
            .unwrap();
        assert!(refused(&foreign).contains("is not signed by the issuer CA's key"));

        let other_kind = demo_pki()
            .issue_ocsp_responder(
                KIND.other(),
                now - Duration::days(1),
                now + Duration::days(1),
            )
            .unwrap();
        assert!(refused(&other_kind).contains("not by the certificate's issuer CA"));

        let expired = demo_pki()
            .issue_ocsp_responder(KIND, now - Duration::days(10), now - Duration::days(1))
            .unwrap();
        assert!(refused(&expired).contains("has expired"));
    }

    #[test]
    fn response_for_another_certificate_is_cert_id_mismatch() {
        let der = respond(
            &demo_pki().ca_signer(KIND),
            &[(id(&[0x42]), CertStatus::Good)],
            None,
        );
        assert_eq!(
            check(&der, &id(&[0x43]), NonceCheck::NotSent),
            Err(OcspError::CertIdMismatch)
        );
        // Same serial, other issuer (the signature CA).
        let other_issuer = CertId::new(&demo_pki().ca_cert_der(KIND.other()), &[0x42]).unwrap();
        assert_eq!(
            check(&der, &other_issuer, NonceCheck::NotSent),
            Err(OcspError::CertIdMismatch)
        );
        // Leading zeros in the caller's serial do not matter.
        let padded = CertId {
            serial: vec![0x00, 0x42],
            ..id(&[0x42])
        };
        assert!(check(&der, &padded, NonceCheck::NotSent).is_ok());
    }

    #[test]
    fn freshness_limits() {
        let now = fixture_now();
        let signer = demo_pki().ca_signer(KIND);
        let id42 = id(&[0x42]);
        let entries = [(id42.clone(), CertStatus::Good)];
        let at = |this: OffsetDateTime, next: Option<OffsetDateTime>| {
            let der = build_response(&signer, &entries, None, this, this, next).unwrap();
            check(&der, &id42, NonceCheck::NotSent)
        };
        // nextUpdate passed, beyond the 5-minute skew.
        let next = now - Duration::minutes(10);
        assert_eq!(
            at(now - Duration::days(1), Some(next)),
            Err(OcspError::Stale {
                next_update: rfc3339(next)
            })
        );
        // Within the skew.
        assert!(at(now - Duration::days(1), Some(now - Duration::minutes(2))).is_ok());
        // thisUpdate in the future beyond the skew.
        let this = now + Duration::minutes(10);
        assert_eq!(
            at(this, Some(now + Duration::days(1))),
            Err(OcspError::NotYetValid {
                this_update: rfc3339(this)
            })
        );
        assert!(at(now + Duration::minutes(2), Some(now + Duration::days(1))).is_ok());
        // No nextUpdate: thisUpdate may be at most an hour old.
        assert!(at(now - Duration::minutes(30), None).is_ok());
        assert!(matches!(
            at(now - Duration::hours(2), None),
            Err(OcspError::Stale { next_update }) if next_update.starts_with("absent")
        ));
    }

    #[test]
    fn nonce_checks() {
        let signer = demo_pki().ca_signer(KIND);
        let id42 = id(&[0x42]);
        let entries = [(id42.clone(), CertStatus::Good)];
        let with = respond(&signer, &entries, Some(NONCE));
        let without = respond(&signer, &entries, None);
        let other: &[u8] = b"fedcba9876543210";

        assert!(check(&with, &id42, NonceCheck::Required(NONCE)).is_ok());
        assert!(check(&with, &id42, NonceCheck::Sent(NONCE)).is_ok());
        assert!(check(&with, &id42, NonceCheck::NotSent).is_ok());
        assert_eq!(
            check(&with, &id42, NonceCheck::Sent(other)),
            Err(OcspError::NonceMismatch)
        );
        assert_eq!(
            check(&with, &id42, NonceCheck::Required(other)),
            Err(OcspError::NonceMismatch)
        );
        assert!(check(&without, &id42, NonceCheck::Sent(NONCE)).is_ok());
        assert_eq!(
            check(&without, &id42, NonceCheck::Required(NONCE)),
            Err(OcspError::MissingNonce)
        );
    }

    #[test]
    fn malformed_responses_are_malformed() {
        let id42 = id(&[0x42]);
        let der = respond(
            &demo_pki().ca_signer(KIND),
            &[(id42.clone(), CertStatus::Good)],
            None,
        );
        let malformed = |bytes: &[u8]| {
            matches!(
                check(bytes, &id42, NonceCheck::NotSent),
                Err(OcspError::Malformed(_))
            )
        };
        assert!(malformed(b""));
        assert!(malformed(b"not DER at all"));
        assert!(malformed(&der[..der.len() / 2]));
        assert!(malformed(&der[..der.len() - 1]));
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(malformed(&trailing));
        // A certificate where a response belongs.
        assert!(malformed(&ca_der()));
    }

    #[test]
    fn error_responses_name_their_status() {
        for (code, name) in [
            (ResponseStatusCode::MalformedRequest, "malformedRequest"),
            (ResponseStatusCode::InternalError, "internalError"),
            (ResponseStatusCode::TryLater, "tryLater"),
            (ResponseStatusCode::SigRequired, "sigRequired"),
            (ResponseStatusCode::Unauthorized, "unauthorized"),
        ] {
            let der = build_error_response(code);
            let parsed = xo::OcspResponse::from_der(&der).expect("x509-ocsp parses it");
            assert!(parsed.response_bytes.is_none());
            assert_eq!(
                check(&der, &id(&[1]), NonceCheck::NotSent),
                Err(OcspError::ResponseStatus(name.into()))
            );
        }
    }

    #[test]
    fn tampered_response_is_bad_signature() {
        let serial = [0x42, 0x42, 0x42, 0x42, 0x42, 0x42];
        let id = id(&serial);
        let der = respond(
            &demo_pki().ca_signer(KIND),
            &[(id.clone(), CertStatus::Good)],
            None,
        );
        assert!(check(&der, &id, NonceCheck::NotSent).is_ok());
        // Change the serial inside tbsResponseData: the signature fails before the CertID check.
        let at = der
            .windows(serial.len())
            .position(|w| w == serial)
            .expect("serial in the response");
        let mut tampered = der.clone();
        tampered[at + serial.len() - 1] ^= 0x01;
        assert_eq!(
            check(&tampered, &id, NonceCheck::NotSent),
            Err(OcspError::BadSignature)
        );
        // A bit of the signature itself.
        let mut tampered = der.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        assert_eq!(
            check(&tampered, &id, NonceCheck::NotSent),
            Err(OcspError::BadSignature)
        );
    }

    #[test]
    fn sha1_signature_algorithm_is_refused() {
        let der = respond(
            &demo_pki().ca_signer(KIND),
            &[(id(&[0x42]), CertStatus::Good)],
            None,
        );
        // The outer signatureAlgorithm's OID 1.2.840.113549.1.1.11 → .5 (sha1WithRSAEncryption).
        let oid = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0B];
        let at = der.windows(oid.len()).rposition(|w| w == oid).unwrap();
        let mut sha1 = der.clone();
        sha1[at + oid.len() - 1] = 0x05;
        assert!(matches!(
            check(&sha1, &id(&[0x42]), NonceCheck::NotSent),
            Err(OcspError::UnsupportedAlgorithm(m)) if m.contains("sha1WithRSAEncryption")
        ));
    }

    #[test]
    fn build_response_checks_the_signer() {
        let mismatched = ResponderSigner {
            cert_der: demo_pki().ca_cert_der(KIND),
            key_pkcs8: other_demo_pki().ca_key_pkcs8(KIND),
            delegated: false,
        };
        let now = fixture_now();
        assert!(matches!(
            build_response(&mismatched, &[], None, now, now, None),
            Err(OcspError::Build(m)) if m.contains("does not match")
        ));
        let before_1970 = datetime!(1969-12-31 23:59:59 UTC);
        assert!(matches!(
            build_response(&demo_pki().ca_signer(KIND), &[], None, now, before_1970, None),
            Err(OcspError::Build(m)) if m.contains("before 1970")
        ));
    }

    // -----------------------------------------------------------------------------------------
    // Interoperability with the openssl CLI.

    /// Runs openssl in `dir`; returns stdout and stderr together.
    fn openssl(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "openssl {args:?} failed: {text}");
        text
    }

    #[test]
    fn openssl_request_parses_with_matching_cert_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("ca.pem"), demo_pki().auth_ca_cert_pem()).unwrap();
        openssl(
            dir,
            &[
                "ocsp",
                "-issuer",
                "ca.pem",
                "-serial",
                "0x0123ABCD",
                "-serial",
                "0x80F1",
                "-reqout",
                "req.der",
            ],
        );
        let req = parse_request(&std::fs::read(dir.join("req.der")).unwrap()).expect("parses");
        assert_eq!(
            req.ids,
            vec![id(&[0x01, 0x23, 0xAB, 0xCD]), id(&[0x80, 0xF1])]
        );
        assert_eq!(
            req.nonce.map(|n| n.len()),
            Some(16),
            "openssl's default nonce"
        );
    }

    /// An openssl CA with an index listing 0x1001 revoked (keyCompromise) and 0x1002 valid.
    fn openssl_ca(dir: &Path) -> Vec<u8> {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/C=JP/O=OSSL-OCSP/CN=OpenSSL OCSP test CA",
                "-days",
                "30",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let index = "R\t351231235959Z\t250601000000Z,keyCompromise\t1001\tunknown\t/CN=revoked\n\
                     V\t351231235959Z\t\t1002\tunknown\t/CN=valid\n";
        std::fs::write(dir.join("index.txt"), index).unwrap();
        pem_to_der(&std::fs::read_to_string(dir.join("ca.pem")).unwrap())
    }

    #[test]
    fn openssl_responder_response_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let ca = openssl_ca(dir);
        let respond_to = |extra: &[&str]| {
            let mut args = vec![
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                "ca.pem",
                "-rkey",
                "ca.key",
                "-CA",
                "ca.pem",
                "-reqin",
                "req.der",
                "-respout",
                "resp.der",
                "-ndays",
                "1",
            ];
            args.extend_from_slice(extra);
            openssl(dir, &args);
            std::fs::read(dir.join("resp.der")).unwrap()
        };
        let ids: Vec<CertId> = [&[0x10, 0x01][..], &[0x10, 0x02], &[0x10, 0x03]]
            .iter()
            .map(|s| CertId::new(&ca, s).unwrap())
            .collect();
        let now = OffsetDateTime::now_utc();
        let verify =
            |der: &[u8], id: &CertId, nonce| verify_response(der, &ca, id, nonce, now, freshness());

        // Our request (three serials, nonce); openssl answers byName and includes its cert.
        std::fs::write(
            dir.join("req.der"),
            build_request(&ids, Some(NONCE)).unwrap(),
        )
        .unwrap();
        let der = respond_to(&[]);
        assert!(matches!(
            basic_of(&der).tbs_response_data.responder_id,
            xo::ResponderId::ByName(_)
        ));
        let revoked_answer = verify(&der, &ids[0], NonceCheck::Required(NONCE)).expect("verifies");
        assert_eq!(
            revoked_answer.status,
            revoked(
                datetime!(2025-06-01 00:00:00 UTC),
                Some(RevocationReason::KeyCompromise)
            )
        );
        assert_eq!(revoked_answer.signer, "issuer");
        let next = revoked_answer.next_update.expect("-ndays gives nextUpdate");
        assert!(next > now + Duration::hours(23));
        assert_eq!(
            verify(&der, &ids[1], NonceCheck::Required(NONCE))
                .unwrap()
                .status,
            CertStatus::Good
        );
        assert_eq!(
            verify(&der, &ids[2], NonceCheck::Required(NONCE))
                .unwrap()
                .status,
            CertStatus::Unknown
        );

        // openssl's own request with SHA-256 CertIDs, answered byKey: matched through SHA-256.
        openssl(
            dir,
            &[
                "ocsp", "-sha256", "-issuer", "ca.pem", "-serial", "0x1001", "-reqout", "req.der",
            ],
        );
        let der = respond_to(&["-resp_key_id"]);
        assert!(matches!(
            basic_of(&der).tbs_response_data.responder_id,
            xo::ResponderId::ByKey(_)
        ));
        let cert_id = &basic_of(&der).tbs_response_data.responses[0].cert_id;
        assert_eq!(cert_id.hash_algorithm.oid, OID_SHA256);
        let answer = verify(&der, &ids[0], NonceCheck::NotSent).expect("verifies");
        assert!(matches!(answer.status, CertStatus::Revoked { .. }));
        assert_eq!(
            verify(&der, &ids[1], NonceCheck::NotSent),
            Err(OcspError::CertIdMismatch)
        );
    }

    #[test]
    fn our_request_is_accepted_by_openssl() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let req = build_request(&[id(&[0x01, 0x23, 0xAB, 0xCD])], Some(NONCE)).unwrap();
        std::fs::write(dir.join("ours.der"), req).unwrap();
        let text = openssl(dir, &["ocsp", "-reqin", "ours.der", "-req_text"]);
        assert!(text.contains("Serial Number: 0123ABCD"), "{text}");
        assert!(text.contains("OCSP Nonce"), "{text}");
        assert!(text.contains(&hex::encode_upper(NONCE)), "{text}");
    }

    #[test]
    fn our_response_verifies_with_openssl() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("ca.pem"), demo_pki().auth_ca_cert_pem()).unwrap();
        let id = id(&[0x01, 0x23, 0xAB, 0xCD]);
        let at = datetime!(2025-03-04 05:06:07 UTC);
        let status = revoked(at, Some(RevocationReason::KeyCompromise));
        let check_with = |signer: &ResponderSigner, trust: &[&str]| {
            std::fs::write(
                dir.join("resp.der"),
                respond(signer, &[(id.clone(), status.clone())], None),
            )
            .unwrap();
            let mut args = vec![
                "ocsp",
                "-respin",
                "resp.der",
                "-issuer",
                "ca.pem",
                "-serial",
                "0x0123ABCD",
                "-resp_text",
            ];
            args.extend_from_slice(trust);
            openssl(dir, &args)
        };

        // CA-signed: the CA is the explicitly trusted responder.
        let text = check_with(&demo_pki().ca_signer(KIND), &["-VAfile", "ca.pem"]);
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains("0x0123ABCD: revoked"), "{text}");
        assert!(text.contains("Reason: keyCompromise"), "{text}");
        assert!(
            text.contains("Revocation Time: Mar  4 05:06:07 2025 GMT"),
            "{text}"
        );

        // Delegated: openssl chains the included responder certificate to the CA and checks
        // its OCSPSigning EKU.
        let text = check_with(delegated(), &["-CAfile", "ca.pem"]);
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains("0x0123ABCD: revoked"), "{text}");
    }
}
