//! Verification of the card's COMPUTE DIGITAL SIGNATURE output.

use super::{PkiError, validate::rsa_modulus_bits};
use aws_lc_rs::{digest, signature};

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
