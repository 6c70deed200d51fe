//! Signature verification: the card's COMPUTE DIGITAL SIGNATURE output, certificates signed by
//! an anchor, and signed data (OCSP responses, CRLs) by the algorithms accepted for them.

use super::PkiError;
use super::der;
use aws_lc_rs::signature::UnparsedPublicKey;
use aws_lc_rs::{digest, signature};
use x509_parser::prelude::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Certificate, X509Error};

pub(crate) const OID_SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
pub(crate) const OID_ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";

/// DER prefix of a SHA-256 DigestInfo: `SEQUENCE { AlgorithmIdentifier sha256 NULL, OCTET STRING (32) }`.
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// RSASSA-PKCS1-v1_5 with SHA-256 over `message`: what the card produces when the host sends it
/// the SHA-256 DigestInfo of `message` ([`sha256_digest_info`]).
///
/// `public_key_pkcs1` is a DER RSAPublicKey of 2048–8192 bits
/// ([`super::ValidatedCert::public_key_pkcs1`]).
pub fn verify_rsa_pkcs1_sha256(
    public_key_pkcs1: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), PkiError> {
    let bits = rsa_modulus_bits(public_key_pkcs1).map_err(PkiError::BadPublicKey)?;
    if !(2048..=8192).contains(&bits) {
        return Err(PkiError::BadPublicKey(format!(
            "RSA key of {bits} bits (2048–8192 accepted)"
        )));
    }
    signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_pkcs1)
        .verify(message, signature)
        .map_err(|_| PkiError::BadSignature)
}

/// DER DigestInfo for SHA-256 of `message` (what the host sends to the card to be signed).
pub fn sha256_digest_info(message: &[u8]) -> Vec<u8> {
    let hash = digest::digest(&digest::SHA256, message);
    let mut out = Vec::with_capacity(SHA256_DIGEST_INFO_PREFIX.len() + 32);
    out.extend_from_slice(&SHA256_DIGEST_INFO_PREFIX);
    out.extend_from_slice(hash.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_info_layout() {
        let di = sha256_digest_info(b"abc");
        assert_eq!(di.len(), 51);
        assert_eq!(
            hex::encode(&di),
            "3031300d060960864801650304020105000420\
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(matches!(
            verify_rsa_pkcs1_sha256(b"not a key", b"m", &[0; 256]),
            Err(PkiError::BadPublicKey(_))
        ));
        // A 1024-bit-ish modulus.
        let mut key = vec![0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00];
        key.extend(std::iter::repeat_n(0xC1, 128));
        key.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
        let err = verify_rsa_pkcs1_sha256(&key, b"m", &[0; 128]).unwrap_err();
        assert!(err.to_string().contains("1024 bits"), "{err}");
    }
}

/// Public key of an anchor, in the form aws-lc-rs verifies with.
#[derive(Debug, Clone)]
pub(crate) enum AnchorKey {
    /// DER RSAPublicKey (PKCS#1).
    Rsa(Vec<u8>),
    /// Uncompressed P-256 point.
    EcP256(Vec<u8>),
}

/// Why a certificate signature check failed.
pub(crate) enum SigCheck {
    /// Algorithm other than sha256WithRSA / ecdsa-with-SHA256.
    Unsupported(String),
    /// Wrong key type or the signature does not verify.
    Invalid,
}

/// Verifies the certificate's signature with `key` (sha256WithRSA or ECDSA P-256/SHA-256).
pub(crate) fn verify_signed_by(
    cert: &X509Certificate<'_>,
    key: &AnchorKey,
) -> Result<(), SigCheck> {
    let alg = cert.signature_algorithm.algorithm.to_id_string();
    let tbs = cert.tbs_certificate.as_ref();
    let sig = cert.signature_value.data.as_ref();
    let result = match (alg.as_str(), key) {
        (OID_SHA256_WITH_RSA, AnchorKey::Rsa(k)) => {
            UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, k).verify(tbs, sig)
        }
        (OID_ECDSA_WITH_SHA256, AnchorKey::EcP256(k)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, k).verify(tbs, sig)
        }
        (OID_SHA256_WITH_RSA | OID_ECDSA_WITH_SHA256, _) => return Err(SigCheck::Invalid),
        _ => return Err(SigCheck::Unsupported(alg)),
    };
    result.map_err(|_| SigCheck::Invalid)
}

/// Size in bits of the modulus of a DER RSAPublicKey.
pub(crate) fn rsa_modulus_bits(pkcs1: &[u8]) -> Result<usize, String> {
    let body = der::read_single(pkcs1, der::tag::SEQUENCE, "RSAPublicKey")?;
    let (modulus, rest) = der::read_tlv(body).map_err(|e| format!("RSA modulus: {e}"))?;
    if modulus.tag != der::tag::INTEGER {
        return Err("RSA modulus is not an INTEGER".into());
    }
    let (exponent, rest) = der::read_tlv(rest).map_err(|e| format!("RSA exponent: {e}"))?;
    if exponent.tag != der::tag::INTEGER || !rest.is_empty() {
        return Err("RSAPublicKey is not SEQUENCE { INTEGER, INTEGER }".into());
    }
    if modulus.value.first().is_some_and(|b| b & 0x80 != 0) {
        return Err("RSA modulus is negative".into());
    }
    let significant: Vec<u8> = modulus
        .value
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    match significant.first() {
        None => Err("RSA modulus is zero".into()),
        Some(first) => Ok(significant.len() * 8 - first.leading_zeros() as usize),
    }
}

/// Signature algorithms accepted on OCSP responses, responder certificates and CRLs, by OID.
/// SHA-1 based algorithms are deliberately absent.
const DATA_SIGNATURE_ALGORITHMS: [&str; 6] = [
    OID_SHA256_WITH_RSA,
    "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
    "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
    "1.2.840.113549.1.1.10", // RSASSA-PSS (SHA-256/384/512 per its parameters)
    OID_ECDSA_WITH_SHA256,
    "1.2.840.10045.4.3.3", // ecdsa-with-SHA384
];

/// A signature algorithm OID with its name when it is a well-known one, for error messages.
pub(crate) fn signature_algorithm_name(oid: &str) -> String {
    let name = match oid {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => "sha1WithRSAEncryption",
        OID_SHA256_WITH_RSA => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        OID_ECDSA_WITH_SHA256 => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.3.101.112" => "Ed25519",
        _ => return oid.to_owned(),
    };
    format!("{name} ({oid})")
}

/// `Err(name)` when `algorithm` is not one [`verify_signed_data`] accepts.
pub(crate) fn accepted_signature_algorithm(
    algorithm: &AlgorithmIdentifier<'_>,
) -> Result<(), String> {
    let oid = algorithm.algorithm.to_id_string();
    if DATA_SIGNATURE_ALGORITHMS.contains(&oid.as_str()) {
        Ok(())
    } else {
        Err(signature_algorithm_name(&oid))
    }
}

/// Verifies `signature` over `data` (raw bytes as received) with the key `spki`, for the
/// algorithms of [`DATA_SIGNATURE_ALGORITHMS`]: sha256/384/512WithRSA, RSASSA-PSS with a SHA-2
/// hash, ECDSA with SHA-256/384 (P-256 or P-384 keys). RSA keys must have at least 2048 bits.
pub(crate) fn verify_signed_data(
    spki: &SubjectPublicKeyInfo<'_>,
    algorithm: &AlgorithmIdentifier<'_>,
    signature: &[u8],
    data: &[u8],
) -> Result<(), SigCheck> {
    accepted_signature_algorithm(algorithm).map_err(SigCheck::Unsupported)?;
    let oid = algorithm.algorithm.to_id_string();
    let value = x509_parser::der_parser::asn1_rs::BitString::new(0, signature);
    match x509_parser::verify::verify_signature(spki, algorithm, &value, data) {
        Ok(()) => Ok(()),
        Err(X509Error::SignatureUnsupportedAlgorithm) => Err(SigCheck::Unsupported(format!(
            "{} with these parameters or this key",
            signature_algorithm_name(&oid)
        ))),
        Err(_) => Err(SigCheck::Invalid),
    }
}
