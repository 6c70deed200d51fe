//! [`verify`]: decode → structure → content/digest → signature → certificate.

use super::cms::{self, Digest, Padding, SigAlg, SignerId, SignerInfo, oid};
use super::der::{self, tag};
use super::{Failure, Input, RawAlgorithm, Verified, code};
use crate::pki::{self, CertKind, PkiError, TrustStore};
use aws_lc_rs::{digest, signature};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

/// Verifies a CMS SignedData or a raw card signature at `now` against `trust`
/// ([`CertKind::Signature`] anchors).
///
/// CMS, in this order, each failure with its own [`code`]: decode (`malformed`) → structure: one
/// signer, SHA-256/384/512, RSA PKCS#1 v1.5 or PSS (`unsupported`), signed attributes
/// (`malformed`), eContentType id-data and equal to the contentType attribute
/// (`wrong_content_type`) → content: attached xor given (`content_conflict`, `content_missing`),
/// messageDigest (`digest_mismatch`) → signer certificate in the CMS by issuerAndSerialNumber or
/// subjectKeyIdentifier (`no_certificate`) → signature over the signed attributes (or over the
/// content when there are none) with that certificate's key (`bad_signature`; a key outside
/// 2048–8192 bits is `certificate`) → the certificate:
/// [`pki::validate`] as a signature certificate at `now` (`wrong_certificate_kind` for a
/// user-authentication certificate, else `certificate` with the `PkiError` text), then validity at
/// the signingTime, if any (`certificate_not_valid_at_signing_time`).
///
/// Raw: signature over `data` with the key of `certificate_der` (`malformed` when that is not a
/// certificate, `bad_signature`) → certificate as above (without a signing time).
///
/// The trust store is used as parsed ([`TrustStore`] holds the anchors' keys); the certificate
/// is parsed once on the way to success (validation first, whose key then checks the signature;
/// failures are still reported in the order above).
///
/// Revocation is not checked here.
pub fn verify(input: &Input, trust: &TrustStore, now: OffsetDateTime) -> Result<Verified, Failure> {
    match input {
        Input::Cms {
            cms,
            detached_content,
        } => verify_cms(cms, detached_content.as_deref(), trust, now),
        Input::Raw {
            data,
            signature,
            certificate_der,
            algorithm,
        } => verify_raw(data, signature, certificate_der, *algorithm, trust, now),
    }
}

/// Long, and kept so: decode → structure → content and digest → signature → the signer's
/// certificate, each stage commented and each with its own `Failure`; the stages share the
/// decoded SignedData, and the order is what a reviewer checks.
fn verify_cms(
    cms: &[u8],
    detached_content: Option<&[u8]>,
    trust: &TrustStore,
    now: OffsetDateTime,
) -> Result<Verified, Failure> {
    // Decode.
    let signed_data = cms::parse(cms)?;

    // Structure.
    let signer = match signed_data.signer_infos.as_slice() {
        [one] => one,
        [] => {
            return Err(Failure::new(
                code::UNSUPPORTED,
                "the SignedData has no signer (a certificates-only message)",
            ));
        }
        many => {
            return Err(Failure::new(
                code::UNSUPPORTED,
                format!(
                    "the SignedData has {} signers; exactly one is supported",
                    many.len()
                ),
            ));
        }
    };
    let alg = cms::resolve_algorithms(signer)?;
    let attributes = cms::signed_attributes(signer)?;
    let econtent_type = signed_data.econtent_type.as_ref();
    if econtent_type != oid::ID_DATA {
        return Err(Failure::new(
            code::WRONG_CONTENT_TYPE,
            format!(
                "eContentType is {}; only id-data (1.2.840.113549.1.7.1) is accepted",
                signed_data.econtent_type
            ),
        ));
    }
    if let Some(attrs) = &attributes
        && attrs.content_type != econtent_type
    {
        return Err(Failure::new(
            code::WRONG_CONTENT_TYPE,
            format!(
                "the contentType signed attribute ({}) differs from eContentType ({})",
                bcder::Oid(attrs.content_type),
                signed_data.econtent_type
            ),
        ));
    }

    // Content and digest.
    let (content, detached): (&[u8], bool) = match (&signed_data.econtent, detached_content) {
        (Some(_), Some(_)) => {
            return Err(Failure::new(
                code::CONTENT_CONFLICT,
                "the CMS carries its content and content was given separately too",
            ));
        }
        (None, None) => {
            return Err(Failure::new(
                code::CONTENT_MISSING,
                "the CMS is detached (no eContent) and no content was given",
            ));
        }
        (Some(attached), None) => (attached, false),
        (None, Some(given)) => (given, true),
    };
    let content_digest = digest::digest(alg.digest.algorithm(), content);
    if let Some(attrs) = &attributes
        && attrs.message_digest != content_digest.as_ref()
    {
        return Err(Failure::new(
            code::DIGEST_MISMATCH,
            format!(
                "the messageDigest signed attribute is not the {} of the content (content altered, \
                 or not the signed document)",
                alg.digest.name()
            ),
        ));
    }
    let content_sha256 = if alg.digest == Digest::Sha256 {
        hex::encode(content_digest.as_ref())
    } else {
        hex::encode(digest::digest(&digest::SHA256, content).as_ref())
    };

    // Signature, with the certificate the SignerInfo names; then the certificate.
    let cert_der = signer_certificate(&signed_data.certificates, signer)?;
    let signed_bytes = attributes.as_ref().map_or(content, |a| a.der.as_slice());
    let signer =
        signature_then_certificate(cert_der, alg, signed_bytes, &signer.signature, trust, now)?;
    let signing_time = attributes.and_then(|a| a.signing_time);
    if let Some(at) = signing_time
        && (at < signer.not_before || at > signer.not_after)
    {
        return Err(Failure::new(
            code::CERTIFICATE_NOT_VALID_AT_SIGNING_TIME,
            format!(
                "the signature claims signingTime {} but the certificate is valid {} to {}",
                rfc3339(at),
                rfc3339(signer.not_before),
                rfc3339(signer.not_after)
            ),
        ));
    }
    Ok(Verified {
        signer,
        signing_time,
        content_sha256,
        content_type: signed_data.econtent_type.to_string(),
        signature_algorithm: alg.name(),
        detached,
    })
}

fn verify_raw(
    data: &[u8],
    signature: &[u8],
    certificate_der: &[u8],
    algorithm: RawAlgorithm,
    trust: &TrustStore,
    now: OffsetDateTime,
) -> Result<Verified, Failure> {
    let alg = SigAlg {
        digest: Digest::Sha256,
        padding: match algorithm {
            RawAlgorithm::RsaPkcs1Sha256 => Padding::Pkcs1,
            RawAlgorithm::RsaPssSha256 => Padding::Pss { salt_len: 32 },
        },
    };
    let signer = signature_then_certificate(certificate_der, alg, data, signature, trust, now)?;
    Ok(Verified {
        signer,
        signing_time: None,
        content_sha256: hex::encode(digest::digest(&digest::SHA256, data).as_ref()),
        content_type: "1.2.840.113549.1.7.1".into(),
        signature_algorithm: alg.name(),
        detached: true,
    })
}

/// The DER of the certificate `signer` names: issuerAndSerialNumber (issuer byte-equal, as
/// every CMS implementation copies it from the certificate) or subjectKeyIdentifier.
fn signer_certificate<'c>(
    certificates: &'c [bcder::Captured],
    signer: &SignerInfo,
) -> Result<&'c [u8], Failure> {
    let by = match &signer.sid {
        SignerId::IssuerSerial { issuer, serial } => {
            let wanted = (issuer.as_slice(), serial.as_slice());
            // A DER walk to the issuer and serial, not a full parse: validation parses the one
            // that matches.
            let found = certificates
                .iter()
                .map(|c| c.as_slice())
                .find(|der| issuer_and_serial(der) == Some(wanted));
            if let Some(der) = found {
                return Ok(der);
            }
            "issuer and serial number"
        }
        SignerId::KeyId(key_id) => {
            let found = certificates.iter().map(|c| c.as_slice()).find(|der| {
                let Ok(([], cert)) = X509Certificate::from_der(der) else {
                    return false;
                };
                cert.extensions().iter().any(|e| {
                    matches!(
                        e.parsed_extension(),
                        ParsedExtension::SubjectKeyIdentifier(k) if k.0 == key_id.as_ref()
                    )
                })
            });
            if let Some(der) = found {
                return Ok(der);
            }
            "subjectKeyIdentifier"
        }
    };
    Err(Failure::new(
        code::NO_CERTIFICATE,
        format!(
            "the signer's certificate (by {by}) is not among the {} certificate(s) in the CMS",
            certificates.len()
        ),
    ))
}

/// The issuer Name TLV and the serial INTEGER contents of a DER certificate.
fn issuer_and_serial(cert_der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag::SEQUENCE, cert, []) = der::split(cert_der)? else {
        return None;
    };
    let (tag::SEQUENCE, tbs, _) = der::split(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if let Some((tag::CONTEXT_0, _, after)) = der::split(rest) {
        rest = after; // version
    }
    let (tag::INTEGER, serial, rest) = der::split(rest)? else {
        return None;
    };
    let (tag::SEQUENCE, _, issuer_and_more) = der::split(rest)? else {
        return None; // signature AlgorithmIdentifier
    };
    let (tag::SEQUENCE, _, after_issuer) = der::split(issuer_and_more)? else {
        return None;
    };
    let issuer = issuer_and_more.get(..issuer_and_more.len() - after_issuer.len())?;
    Some((issuer, serial))
}

/// Checks the signature, then validates the certificate, reporting in that order. Validation
/// runs first because its parse yields the key (one certificate parse on the way to success);
/// only when it fails is the certificate parsed again here for the key, so that a signature
/// that does not verify is still reported as such before any certificate problem.
fn signature_then_certificate(
    cert_der: &[u8],
    alg: SigAlg,
    message: &[u8],
    sig: &[u8],
    trust: &TrustStore,
    now: OffsetDateTime,
) -> Result<pki::ValidatedCert, Failure> {
    let validated = validate_signer(cert_der, trust, now);
    match &validated {
        Ok(cert) => verify_with_key(&cert.public_key_pkcs1, alg, message, sig)?,
        Err(_) => {
            let Ok(([], cert)) = X509Certificate::from_der(cert_der) else {
                return Err(Failure::new(
                    code::MALFORMED,
                    "the signer certificate is not a DER X.509 certificate",
                ));
            };
            let spki = cert.public_key();
            if spki.algorithm.algorithm.as_bytes() != oid::RSA_ENCRYPTION {
                return Err(Failure::new(
                    code::BAD_SIGNATURE,
                    format!(
                        "the signer certificate's key is {}, not RSA: it cannot have made this \
                         RSA signature",
                        spki.algorithm.algorithm
                    ),
                ));
            }
            verify_with_key(&spki.subject_public_key.data, alg, message, sig)?;
        }
    }
    validated
}

/// Verifies `sig` over `message` with a DER RSAPublicKey.
fn verify_with_key(key: &[u8], alg: SigAlg, message: &[u8], sig: &[u8]) -> Result<(), Failure> {
    let modulus_bits = || {
        signature::RsaParameters::public_modulus_len(key).map_err(|_| {
            Failure::new(
                code::MALFORMED,
                "the signer certificate's RSA key cannot be parsed",
            )
        })
    };
    let params = alg.parameters(modulus_bits)?;
    let verified = signature::UnparsedPublicKey::new(params, key).verify(message, sig);
    if verified.is_ok() {
        return Ok(());
    }
    let bits = modulus_bits()?;
    if !(2048..=8192).contains(&bits) {
        return Err(Failure::new(
            code::CERTIFICATE,
            format!("unacceptable subject key: RSA key of {bits} bits (2048–8192 accepted)"),
        ));
    }
    Err(Failure::new(
        code::BAD_SIGNATURE,
        format!(
            "the {} signature does not verify with the signer certificate's key (signed data \
             altered, or signed with another key)",
            alg.name()
        ),
    ))
}

/// [`pki::validate`] as a signature certificate; a user-authentication certificate gets its own
/// code.
fn validate_signer(
    cert_der: &[u8],
    trust: &TrustStore,
    now: OffsetDateTime,
) -> Result<pki::ValidatedCert, Failure> {
    pki::validate(cert_der, trust, CertKind::Signature, now).map_err(|e| match e {
        PkiError::WrongKind { .. } => Failure::new(code::WRONG_CERTIFICATE_KIND, e.to_string()),
        other => Failure::new(code::CERTIFICATE, other.to_string()),
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
