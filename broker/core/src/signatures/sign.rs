//! [`sign`]: a CMS SignedData made with a virtual card, as a phone app would make it.

use super::cms::oid;
use super::der::{self, tag};
use super::{Failure, code};
use crate::card::{CardError, Key, VirtualCard};
use aws_lc_rs::digest;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

/// Makes a CMS SignedData (DER) over `content` with the card's signature key.
///
/// Signed attributes: contentType (id-data), signingTime (`at`, to the second), messageDigest
/// (SHA-256 of `content`). The DER `SET OF Attribute` is signed by the card
/// ([`VirtualCard::sign`] with [`Key::Sign`]: RSASSA-PKCS1-v1_5 SHA-256, like COMPUTE DIGITAL
/// SIGNATURE over its DigestInfo); the signature certificate (read from the card with the same
/// PIN) is included and named by issuer and serial number. `detached` omits eContent.
///
/// Errors: `card` (wrong PIN — which costs a try —, locked PIN, no signature key),
/// `malformed` (the card's certificate cannot be parsed, or `at` is outside years 0–9999).
pub fn sign(
    card: &mut VirtualCard,
    pin: &str,
    content: &[u8],
    detached: bool,
    at: OffsetDateTime,
) -> Result<Vec<u8>, Failure> {
    let cert_der = card.sign_certificate_der(pin).map_err(card_failure)?;
    build(
        &cert_der,
        content,
        detached,
        Some(at),
        &Options::default(),
        |signed_attributes| {
            card.sign(Key::Sign, pin, signed_attributes)
                .map_err(card_failure)
        },
    )
}

fn card_failure(e: CardError) -> Failure {
    Failure::new(code::CARD, e.to_string())
}

/// Variations for tests (a producer that gets things wrong, or uses the other signer identifier).
#[derive(Default)]
pub(super) struct Options<'a> {
    /// eContentType instead of id-data (DER contents of the OID).
    pub econtent_type: Option<&'a [u8]>,
    /// contentType signed attribute instead of the eContentType.
    pub content_type_attribute: Option<&'a [u8]>,
    /// Name the signer by subjectKeyIdentifier (SignerInfo version 3).
    pub by_key_id: bool,
}

/// Builds the SignedData; `sign` gets the DER signed attributes and returns the RSASSA-PKCS1-v1_5
/// SHA-256 signature made with the key of `cert_der`.
///
/// Long, and kept so: it writes RFC 5652's SignedData from the inside out, one DER element after
/// another, as the structure nests.
pub(super) fn build(
    cert_der: &[u8],
    content: &[u8],
    detached: bool,
    at: Option<OffsetDateTime>,
    options: &Options<'_>,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, Failure>,
) -> Result<Vec<u8>, Failure> {
    let cert = match X509Certificate::from_der(cert_der) {
        Ok(([], cert)) => cert,
        _ => {
            return Err(Failure::new(
                code::MALFORMED,
                "the signer certificate is not a DER X.509 certificate",
            ));
        }
    };
    let econtent_type = options.econtent_type.unwrap_or(oid::ID_DATA);
    let content_type_attribute = options.content_type_attribute.unwrap_or(econtent_type);

    // SignerIdentifier.
    let (version, sid) = if options.by_key_id {
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
                _ => None,
            })
            .ok_or_else(|| {
                Failure::new(
                    code::MALFORMED,
                    "the signer certificate has no subjectKeyIdentifier",
                )
            })?;
        // [0] IMPLICIT SubjectKeyIdentifier (an OCTET STRING, primitive).
        (3u8, der::tlv_of(0x80, &[ski]))
    } else {
        let serial = der::tlv_of(tag::INTEGER, &[cert.raw_serial()]);
        (
            1u8,
            der::tlv_of(tag::SEQUENCE, &[cert.issuer().as_raw(), &serial]),
        )
    };

    // Signed attributes, in DER order (SET OF sorts by encoding).
    let attribute = |type_oid: &[u8], value: &[u8]| {
        der::tlv_of(
            tag::SEQUENCE,
            &[
                &der::tlv_of(tag::OID, &[type_oid]),
                &der::tlv_of(tag::SET, &[value]),
            ],
        )
    };
    let message_digest = digest::digest(&digest::SHA256, content);
    let mut attributes = vec![
        attribute(
            oid::CONTENT_TYPE,
            &der::tlv_of(tag::OID, &[content_type_attribute]),
        ),
        attribute(
            oid::MESSAGE_DIGEST,
            &der::tlv_of(tag::OCTET_STRING, &[message_digest.as_ref()]),
        ),
    ];
    if let Some(at) = at {
        let time = der::encode_time(at)
            .map_err(|_| Failure::new(code::MALFORMED, "signing time outside the years 0–9999"))?;
        attributes.push(attribute(oid::SIGNING_TIME, &time));
    }
    attributes.sort();
    let attributes: Vec<&[u8]> = attributes.iter().map(Vec::as_slice).collect();
    let signed_attributes_set = der::tlv_of(tag::SET, &attributes);
    let signature = sign(&signed_attributes_set)?;

    let signer_info = der::tlv_of(
        tag::SEQUENCE,
        &[
            &der::tlv_of(tag::INTEGER, &[&[version]]),
            &sid,
            &der::algorithm(oid::SHA256, false),
            // [0] IMPLICIT SignedAttributes: same content as the SET that was signed.
            &der::tlv_of(tag::CONTEXT_0, &attributes),
            &der::algorithm(oid::RSA_ENCRYPTION, true),
            &der::tlv_of(tag::OCTET_STRING, &[&signature]),
        ],
    );
    let econtent = (!detached).then(|| {
        der::tlv_of(
            tag::CONTEXT_0,
            &[&der::tlv_of(tag::OCTET_STRING, &[content])],
        )
    });
    let econtent_info = der::tlv_of(
        tag::SEQUENCE,
        &[
            &der::tlv_of(tag::OID, &[econtent_type]),
            econtent.as_deref().unwrap_or_default(),
        ],
    );
    // RFC 5652 §5.1: version 3 when a SignerInfo is version 3 or eContentType is not id-data.
    let signed_data_version = if version == 3 || econtent_type != oid::ID_DATA {
        3u8
    } else {
        1
    };
    let signed_data = der::tlv_of(
        tag::SEQUENCE,
        &[
            &der::tlv_of(tag::INTEGER, &[&[signed_data_version]]),
            &der::tlv_of(tag::SET, &[&der::algorithm(oid::SHA256, false)]),
            &econtent_info,
            // [0] IMPLICIT CertificateSet.
            &der::tlv_of(tag::CONTEXT_0, &[cert_der]),
            &der::tlv_of(tag::SET, &[&signer_info]),
        ],
    );
    Ok(der::tlv_of(
        tag::SEQUENCE,
        &[
            &der::tlv_of(tag::OID, &[oid::ID_SIGNED_DATA]),
            &der::tlv_of(tag::CONTEXT_0, &[&signed_data]),
        ],
    ))
}
