//! [`decode_cms`]: the transfer encodings a bank may use for a CMS.

use super::{Failure, code};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// PEM labels accepted for a CMS.
const PEM_LABELS: [&str; 3] = ["PKCS7", "CMS", "PKCS7 SIGNED DATA"];

/// What the error names as the accepted forms.
const ACCEPTED: &str = "expected DER/BER bytes (an ASN.1 SEQUENCE, first byte 0x30), standard \
     base64 of them (line breaks allowed), or PEM (-----BEGIN PKCS7----- / CMS / PKCS7 SIGNED DATA)";

/// Standard alphabet; padding optional (some clients strip it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a CMS given as DER/BER, base64 (standard, with or without line breaks), or PEM
/// (`-----BEGIN PKCS7-----` / `CMS` / `PKCS7 SIGNED DATA`) to its DER/BER bytes.
///
/// Binary is recognised by its first two bytes (SEQUENCE with a long-form or indefinite
/// length: every CMS with an RSA signature is longer than 127 bytes), so text that starts with
/// `0` is not mistaken for DER. Only the transfer encoding is checked here; whether the bytes
/// are a SignedData is [`super::verify`]'s job. The error (`malformed`) names what the input
/// was not.
pub fn decode_cms(body: &[u8]) -> Result<Vec<u8>, Failure> {
    if is_binary(body) {
        return Ok(body.to_vec());
    }
    let text = body.trim_ascii();
    if text.starts_with(b"-----BEGIN ") {
        let block = pem::parse(text).map_err(|e| {
            Failure::new(
                code::MALFORMED,
                format!("not a CMS: unreadable PEM ({e}); {ACCEPTED}"),
            )
        })?;
        if !PEM_LABELS.contains(&block.tag()) {
            return Err(Failure::new(
                code::MALFORMED,
                format!(
                    "not a CMS: PEM block labelled {:?}; {ACCEPTED}",
                    block.tag()
                ),
            ));
        }
        let der = block.into_contents();
        if der.first() != Some(&0x30) {
            return Err(Failure::new(
                code::MALFORMED,
                "not a CMS: the PEM block does not hold an ASN.1 SEQUENCE",
            ));
        }
        return Ok(der);
    }
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    match BASE64.decode(&compact) {
        Ok(der) if is_binary(&der) => Ok(der),
        Ok(_) => Err(Failure::new(
            code::MALFORMED,
            format!("not a CMS: base64 that does not decode to DER/BER; {ACCEPTED}"),
        )),
        Err(_) => Err(Failure::new(
            code::MALFORMED,
            format!("not a CMS: neither binary DER/BER, base64 nor PEM; {ACCEPTED}"),
        )),
    }
}

/// A SEQUENCE with a long-form or indefinite length.
fn is_binary(bytes: &[u8]) -> bool {
    matches!(bytes, [0x30, len, ..] if *len >= 0x80)
}
