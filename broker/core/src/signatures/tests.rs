//! Tests with the virtual card and the demo PKI (openssl-made fixtures are in `tests_openssl.rs`).

use super::sign::{Options, build};
use super::*;
use crate::card::{Key, VirtualCard};
use crate::pki::demo::{CardRequest, IssuedCard};
use crate::pki::test_support::{card_request, demo_card, demo_pki, fixture_now, pem_to_der};
use crate::pki::{CertKind, TrustStore};
use aws_lc_rs::digest;
use std::sync::OnceLock;
use time::{Duration, OffsetDateTime};

pub(super) const AUTH_PIN: &str = "1234";
pub(super) const SIGN_PIN: &str = "ABC123";

/// Distinctive bytes, binary (NUL, 0xFF, CR LF) so that any text-mode conversion would show.
pub(super) const DOCUMENT: &[u8] =
    b"Furikomi: 1,000,000 JPY to account 7654321\r\n\x00\xff\xfe signed by the holder\n";

pub(super) fn trust() -> &'static TrustStore {
    static STORE: OnceLock<TrustStore> = OnceLock::new();
    STORE.get_or_init(|| demo_pki().trust_store().expect("demo trust store"))
}

/// Verification instant of the card tests: a minute after the fixtures were made.
pub(super) fn now() -> OffsetDateTime {
    fixture_now() + Duration::minutes(1)
}

/// The signing time the card tests use (whole seconds, inside the demo card's validity).
fn signed_at() -> OffsetDateTime {
    fixture_now() - Duration::hours(1)
}

pub(super) fn new_card(issued: &IssuedCard) -> (tempfile::TempDir, VirtualCard) {
    let tmp = tempfile::tempdir().unwrap();
    let card = VirtualCard::create(&tmp.path().join("card"), issued, AUTH_PIN, SIGN_PIN)
        .expect("create card");
    (tmp, card)
}

/// A second card of another person's keys (same request) from the same CA.
fn other_card() -> &'static IssuedCard {
    static CARD: OnceLock<IssuedCard> = OnceLock::new();
    CARD.get_or_init(|| demo_pki().issue_card(&card_request()).expect("issue"))
}

/// A card whose certificates expired yesterday (valid for the 30 days before).
fn expired_card() -> &'static IssuedCard {
    static CARD: OnceLock<IssuedCard> = OnceLock::new();
    CARD.get_or_init(|| {
        let req = CardRequest {
            not_before: fixture_now() - Duration::days(31),
            not_after: fixture_now() - Duration::days(1),
            ..card_request()
        };
        demo_pki().issue_card(&req).expect("issue expired card")
    })
}

fn cms(cms: Vec<u8>, detached_content: Option<&[u8]>) -> Input {
    Input::Cms {
        cms,
        detached_content: detached_content.map(<[u8]>::to_vec),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

/// Position of `needle` in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

#[track_caller]
pub(super) fn assert_code(result: Result<Verified, Failure>, code: &str) -> Failure {
    match result {
        Ok(v) => panic!(
            "expected {code}, got a verified signature by {}",
            v.signer.subject
        ),
        Err(f) => {
            assert_eq!(f.code, code, "{f}");
            f
        }
    }
}

#[test]
fn card_signed_attached_cms_verifies_with_every_field() {
    let (_tmp, mut card) = new_card(demo_card());
    let der = sign(&mut card, SIGN_PIN, DOCUMENT, false, signed_at()).expect("sign");
    assert_eq!(
        decode_cms(&der).unwrap(),
        der,
        "DER passes decode_cms unchanged"
    );
    let v = verify(&cms(der, None), trust(), now()).expect("verifies");

    let expected_cert = pem_to_der(&demo_card().sign_cert_pem);
    assert_eq!(v.signer.der, expected_cert);
    assert_eq!(v.signer.kind, CertKind::Signature);
    assert_eq!(v.signer.anchor_label, "demo-sign-ca");
    assert!(v.signer.anchor_demo);
    let b4 = v.signer.basic4.as_ref().expect("basic four");
    assert_eq!(b4.name, "山田\u{3000}太郎");
    assert_eq!(b4.birthdate, "1989-01-07");
    assert_eq!(b4.gender, "1");
    assert_eq!(b4.address, "東京都千代田区千代田一番一号");
    assert_eq!(v.signing_time, Some(signed_at()));
    assert_eq!(v.content_sha256, sha256_hex(DOCUMENT));
    assert_eq!(v.content_type, "1.2.840.113549.1.7.1");
    assert_eq!(v.signature_algorithm, "rsa-pkcs1-sha256");
    assert!(!v.detached);

    // The audit record's JSON: RFC 3339 signing time, the basic four, no DER.
    let json = serde_json::to_value(&v).unwrap();
    let expected_time = signed_at()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(json["signing_time"], expected_time.as_str());
    assert_eq!(json["signer"]["basic4"]["name"], "山田\u{3000}太郎");
    assert_eq!(json["detached"], false);
    assert!(json["signer"].get("der").is_none());
}

#[test]
fn card_signed_detached_cms_verifies_with_the_content() {
    let (_tmp, mut card) = new_card(demo_card());
    let der = sign(&mut card, SIGN_PIN, DOCUMENT, true, signed_at()).expect("sign");
    // No eContent: the document is nowhere in the CMS.
    assert!(!der.windows(DOCUMENT.len()).any(|w| w == DOCUMENT));
    let v = verify(&cms(der, Some(DOCUMENT)), trust(), now()).expect("verifies");
    assert!(v.detached);
    assert_eq!(v.content_sha256, sha256_hex(DOCUMENT));
    assert_eq!(v.signing_time, Some(signed_at()));
    assert_eq!(
        v.signer.basic4.as_ref().map(|b| b.name.as_str()),
        Some("山田\u{3000}太郎")
    );
}

#[test]
fn signer_named_by_subject_key_identifier_verifies() {
    let (_tmp, mut card) = new_card(demo_card());
    let cert = card.sign_certificate_der(SIGN_PIN).unwrap();
    let options = Options {
        by_key_id: true,
        ..Options::default()
    };
    let der = build(&cert, DOCUMENT, false, None, &options, |m| {
        Ok(card.sign(Key::Sign, SIGN_PIN, m).unwrap())
    })
    .unwrap();
    let v = verify(&cms(der, None), trust(), now()).expect("verifies");
    assert_eq!(v.signing_time, None);
    assert_eq!(v.signer.der, cert);
}

#[test]
fn altered_content_is_digest_mismatch() {
    let (_tmp, mut card) = new_card(demo_card());
    let mut der = sign(&mut card, SIGN_PIN, DOCUMENT, false, signed_at()).unwrap();
    let at = find(&der, DOCUMENT) + 20;
    der[at] ^= 0x01;
    let f = assert_code(
        verify(&cms(der, None), trust(), now()),
        code::DIGEST_MISMATCH,
    );
    assert!(f.message.contains("messageDigest"), "{f}");

    let detached = sign(&mut card, SIGN_PIN, DOCUMENT, true, signed_at()).unwrap();
    let mut other = DOCUMENT.to_vec();
    other[20] ^= 0x01;
    assert_code(
        verify(&cms(detached, Some(&other)), trust(), now()),
        code::DIGEST_MISMATCH,
    );
}

#[test]
fn altered_signed_attributes_are_bad_signature() {
    let (_tmp, mut card) = new_card(demo_card());
    let der = sign(&mut card, SIGN_PIN, DOCUMENT, false, signed_at()).unwrap();
    // signingTime attribute: OID, SET { UTCTime "YYMMDDHHMMSSZ" }; change the seconds' last digit.
    let oid_at = find(&der, &[0x06, 0x09, 42, 134, 72, 134, 247, 13, 1, 9, 5]);
    let text_at = oid_at + 11 + 4;
    assert_eq!(&der[oid_at + 11..text_at], &[0x31, 0x0f, 0x17, 0x0d]);
    let mut tampered = der.clone();
    let digit = text_at + 11;
    tampered[digit] = if tampered[digit] == b'0' { b'1' } else { b'0' };
    let f = assert_code(
        verify(&cms(tampered, None), trust(), now()),
        code::BAD_SIGNATURE,
    );
    assert!(f.message.contains("does not verify"), "{f}");

    // Re-encoded with an earlier signingTime and the card's signature transplanted (backdating).
    let cert = card.sign_certificate_der(SIGN_PIN).unwrap();
    let backdated = build(
        &cert,
        DOCUMENT,
        false,
        Some(signed_at() - Duration::days(1)),
        &Options::default(),
        |_| Ok(signature_of(&der)),
    )
    .unwrap();
    assert_code(
        verify(&cms(backdated, None), trust(), now()),
        code::BAD_SIGNATURE,
    );
    // The untouched original verifies (so the change is what failed).
    verify(&cms(der, None), trust(), now()).expect("original verifies");
}

/// The signature value (last OCTET STRING of 256 bytes) of a CMS made by `build`.
fn signature_of(der: &[u8]) -> Vec<u8> {
    let at = der
        .windows(4)
        .rposition(|w| w == [0x04, 0x82, 0x01, 0x00])
        .expect("signature OCTET STRING");
    der[at + 4..at + 4 + 256].to_vec()
}

#[test]
fn signature_by_another_cards_key_is_bad_signature() {
    // Card A signs, card B's certificate is embedded and named as the signer.
    let (_tmp, mut card) = new_card(demo_card());
    let other_cert = pem_to_der(&other_card().sign_cert_pem);
    let der = build(
        &other_cert,
        DOCUMENT,
        false,
        Some(signed_at()),
        &Options::default(),
        |m| Ok(card.sign(Key::Sign, SIGN_PIN, m).unwrap()),
    )
    .unwrap();
    assert_code(verify(&cms(der, None), trust(), now()), code::BAD_SIGNATURE);
}

#[test]
fn user_authentication_certificate_is_wrong_certificate_kind() {
    let (_tmp, mut card) = new_card(demo_card());
    let auth_cert = card.auth_certificate_der().unwrap();
    let der = build(
        &auth_cert,
        DOCUMENT,
        false,
        Some(signed_at()),
        &Options::default(),
        |m| Ok(card.sign(Key::Auth, AUTH_PIN, m).unwrap()),
    )
    .unwrap();
    let f = assert_code(
        verify(&cms(der, None), trust(), now()),
        code::WRONG_CERTIFICATE_KIND,
    );
    assert!(f.message.contains("user-authentication"), "{f}");
}

#[test]
fn expired_certificate_is_certificate() {
    let (_tmp, mut card) = new_card(expired_card());
    // Signed while the certificate was valid, verified after it expired.
    let at = fixture_now() - Duration::days(10);
    let der = sign(&mut card, SIGN_PIN, DOCUMENT, false, at).unwrap();
    let f = assert_code(
        verify(&cms(der.clone(), None), trust(), now()),
        code::CERTIFICATE,
    );
    assert!(f.message.contains("expired"), "{f}");
    // At a time it was valid, the same CMS verifies: the expiry is what failed.
    let v = verify(&cms(der, None), trust(), at).expect("valid then");
    assert_eq!(v.signing_time, Some(at));
}

#[test]
fn signing_time_outside_the_certificate_validity_is_refused() {
    let (_tmp, mut card) = new_card(demo_card());
    // The demo card is valid from a day before the fixtures; claim three days before.
    let der = sign(
        &mut card,
        SIGN_PIN,
        DOCUMENT,
        false,
        fixture_now() - Duration::days(3),
    )
    .unwrap();
    let f = assert_code(
        verify(&cms(der, None), trust(), now()),
        code::CERTIFICATE_NOT_VALID_AT_SIGNING_TIME,
    );
    assert!(f.message.contains("signingTime"), "{f}");
}

#[test]
fn truncated_and_garbage_input_is_malformed() {
    let (_tmp, mut card) = new_card(demo_card());
    let der = sign(&mut card, SIGN_PIN, DOCUMENT, false, signed_at()).unwrap();
    for cut in [der.len() - 1, der.len() / 2, 10, 1, 0] {
        assert_code(
            verify(&cms(der[..cut].to_vec(), None), trust(), now()),
            code::MALFORMED,
        );
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert_code(
        verify(&cms(trailing, None), trust(), now()),
        code::MALFORMED,
    );
    let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert_code(verify(&cms(garbage, None), trust(), now()), code::MALFORMED);
    assert_code(
        verify(&cms(b"hello".to_vec(), None), trust(), now()),
        code::MALFORMED,
    );
    // Well-formed DER that is not a SignedData: a certificate.
    let f = assert_code(
        verify(
            &cms(pem_to_der(&demo_card().sign_cert_pem), None),
            trust(),
            now(),
        ),
        code::MALFORMED,
    );
    assert!(f.message.contains("SignedData"), "{f}");
    // Every prefix and every single-byte flip of a valid CMS: an error or (for flips in the
    // unsigned parts) a verification, never a panic.
    for cut in 0..der.len() {
        assert!(verify(&cms(der[..cut].to_vec(), None), trust(), now()).is_err());
    }
    for i in (0..der.len()).step_by(7) {
        let mut flipped = der.clone();
        flipped[i] ^= 0x80;
        let _ = verify(&cms(flipped, None), trust(), now());
    }
}

#[test]
fn content_type_mismatches_are_wrong_content_type() {
    let (_tmp, mut card) = new_card(demo_card());
    let cert = card.sign_certificate_der(SIGN_PIN).unwrap();
    let other_type = [42u8, 3, 4]; // 1.2.3.4
    // The contentType attribute differs from eContentType (id-data).
    let options = Options {
        content_type_attribute: Some(&other_type),
        ..Options::default()
    };
    let der = build(&cert, DOCUMENT, false, None, &options, |m| {
        Ok(card.sign(Key::Sign, SIGN_PIN, m).unwrap())
    })
    .unwrap();
    let f = assert_code(
        verify(&cms(der, None), trust(), now()),
        code::WRONG_CONTENT_TYPE,
    );
    assert!(f.message.contains("1.2.3.4"), "{f}");
    // Consistent, but not id-data.
    let options = Options {
        econtent_type: Some(&other_type),
        ..Options::default()
    };
    let der = build(&cert, DOCUMENT, false, None, &options, |m| {
        Ok(card.sign(Key::Sign, SIGN_PIN, m).unwrap())
    })
    .unwrap();
    let f = assert_code(
        verify(&cms(der, None), trust(), now()),
        code::WRONG_CONTENT_TYPE,
    );
    assert!(f.message.contains("id-data"), "{f}");
}

#[test]
fn detached_without_content_and_attached_with_content() {
    let (_tmp, mut card) = new_card(demo_card());
    let detached = sign(&mut card, SIGN_PIN, DOCUMENT, true, signed_at()).unwrap();
    assert_code(
        verify(&cms(detached, None), trust(), now()),
        code::CONTENT_MISSING,
    );
    let attached = sign(&mut card, SIGN_PIN, DOCUMENT, false, signed_at()).unwrap();
    // Even the very same content given twice is refused: which one was meant is ambiguous.
    assert_code(
        verify(&cms(attached, Some(DOCUMENT)), trust(), now()),
        code::CONTENT_CONFLICT,
    );
}

#[test]
fn wrong_pin_is_a_card_failure_and_costs_a_try() {
    let (_tmp, mut card) = new_card(demo_card());
    let f = sign(&mut card, "WRONG1", DOCUMENT, false, signed_at()).unwrap_err();
    assert_eq!(f.code, code::CARD);
    assert!(f.message.contains("4 tries left"), "{f}");
    assert_eq!(card.tries_left(Key::Sign), 4);
}

#[test]
fn raw_card_signature_verifies() {
    let (_tmp, mut card) = new_card(demo_card());
    let signature = card.sign(Key::Sign, SIGN_PIN, DOCUMENT).unwrap();
    let certificate_der = card.sign_certificate_der(SIGN_PIN).unwrap();
    let raw = |data: &[u8], certificate_der: &[u8]| Input::Raw {
        data: data.to_vec(),
        signature: signature.clone(),
        certificate_der: certificate_der.to_vec(),
        algorithm: RawAlgorithm::RsaPkcs1Sha256,
    };
    let v = verify(&raw(DOCUMENT, &certificate_der), trust(), now()).expect("verifies");
    assert_eq!(v.signature_algorithm, "rsa-pkcs1-sha256");
    assert_eq!(v.content_sha256, sha256_hex(DOCUMENT));
    assert_eq!(v.signing_time, None);
    assert!(v.detached);
    assert_eq!(v.signer.basic4.as_ref().unwrap().gender, "1");

    assert_code(
        verify(&raw(b"other data", &certificate_der), trust(), now()),
        code::BAD_SIGNATURE,
    );
    // Another card's certificate: its key did not make the signature.
    let other = pem_to_der(&other_card().sign_cert_pem);
    assert_code(
        verify(&raw(DOCUMENT, &other), trust(), now()),
        code::BAD_SIGNATURE,
    );
    // As PSS it does not verify either (the padding is part of the signature).
    let pss = Input::Raw {
        data: DOCUMENT.to_vec(),
        signature: signature.clone(),
        certificate_der: certificate_der.clone(),
        algorithm: RawAlgorithm::RsaPssSha256,
    };
    assert_code(verify(&pss, trust(), now()), code::BAD_SIGNATURE);
    assert_code(
        verify(&raw(DOCUMENT, b"junk"), trust(), now()),
        code::MALFORMED,
    );

    // A raw signature with the user-authentication key and certificate.
    let auth_sig = card.sign(Key::Auth, AUTH_PIN, DOCUMENT).unwrap();
    let auth = Input::Raw {
        data: DOCUMENT.to_vec(),
        signature: auth_sig,
        certificate_der: card.auth_certificate_der().unwrap(),
        algorithm: RawAlgorithm::RsaPkcs1Sha256,
    };
    assert_code(verify(&auth, trust(), now()), code::WRONG_CERTIFICATE_KIND);
}

#[test]
fn raw_algorithm_serializes_kebab_case() {
    assert_eq!(
        serde_json::to_string(&RawAlgorithm::RsaPssSha256).unwrap(),
        "\"rsa-pss-sha256\""
    );
    assert_eq!(
        serde_json::from_str::<RawAlgorithm>("\"rsa-pkcs1-sha256\"").unwrap(),
        RawAlgorithm::RsaPkcs1Sha256
    );
}

#[test]
fn decode_cms_accepts_der_base64_and_pem() {
    use base64::Engine as _;
    let (_tmp, mut card) = new_card(demo_card());
    let der = sign(&mut card, SIGN_PIN, DOCUMENT, false, signed_at()).unwrap();
    assert_eq!(decode_cms(&der).unwrap(), der);

    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    assert_eq!(decode_cms(b64.as_bytes()).unwrap(), der);
    // Wrapped at 64 and at 76 columns, LF and CRLF, surrounding blank lines.
    for (width, eol) in [(64, "\n"), (76, "\r\n")] {
        let wrapped: Vec<&str> = b64
            .as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let text = format!("\n{}{eol}", wrapped.join(eol));
        assert_eq!(decode_cms(text.as_bytes()).unwrap(), der);
    }
    // Padding stripped.
    assert_eq!(
        decode_cms(b64.trim_end_matches('=').as_bytes()).unwrap(),
        der
    );

    for label in ["PKCS7", "CMS", "PKCS7 SIGNED DATA"] {
        let pem_text = pem::encode(&pem::Pem::new(label, der.clone()));
        assert!(pem_text.starts_with(&format!("-----BEGIN {label}-----")));
        assert_eq!(decode_cms(pem_text.as_bytes()).unwrap(), der, "{label}");
    }
    // The decoded bytes verify.
    let pem_text = pem::encode(&pem::Pem::new("CMS", der.clone()));
    verify(
        &cms(decode_cms(pem_text.as_bytes()).unwrap(), None),
        trust(),
        now(),
    )
    .unwrap();
}

#[test]
fn decode_cms_names_what_the_input_was_not() {
    let f = decode_cms(b"hello").unwrap_err();
    assert_eq!(f.code, code::MALFORMED);
    for form in [
        "DER/BER",
        "base64",
        "PEM",
        "PKCS7",
        "CMS",
        "PKCS7 SIGNED DATA",
    ] {
        assert!(f.message.contains(form), "{form}: {f}");
    }
    // A PEM certificate is not a CMS.
    let f = decode_cms(demo_card().sign_cert_pem.as_bytes()).unwrap_err();
    assert!(f.message.contains("\"CERTIFICATE\""), "{f}");
    // Base64 of something that is not DER; text that starts with '0' is not taken for DER.
    let f = decode_cms(b"aGVsbG8gd29ybGQ=").unwrap_err();
    assert!(f.message.contains("does not decode to DER"), "{f}");
    assert_eq!(
        decode_cms(b"0 is not DER").unwrap_err().code,
        code::MALFORMED
    );
    assert_eq!(decode_cms(b"").unwrap_err().code, code::MALFORMED);
    assert_eq!(decode_cms(&[0xff; 300]).unwrap_err().code, code::MALFORMED);
}

#[test]
fn deeply_nested_ber_does_not_overflow_the_stack() {
    // ContentInfo { signedData, [0] { SEQUENCE { 1, SET {}, eci, [certs], SET {} } } }, all
    // indefinite, with 200 000 nested indefinite-length values in eContent (a constructed
    // OCTET STRING) or in the certificates set. Well-formed: it decodes, and has no signer.
    let attached_eci_open = [
        0x30, 0x80, 0x06, 0x09, 42, 134, 72, 134, 247, 13, 1, 7, 1, 0xA0, 0x80,
    ];
    let detached_eci = [0x30, 0x0B, 0x06, 0x09, 42, 134, 72, 134, 247, 13, 1, 7, 1];
    // (ECI or ECI + certificates opening, the nested value's header, EOCs closing after the nest.)
    let cases: [(&[u8], [u8; 2], usize); 3] = [
        (&attached_eci_open, [0x24, 0x80], 2),
        (
            &[&detached_eci[..], &[0xA0, 0x80]].concat(),
            [0x30, 0x80],
            1,
        ),
        (
            &[&detached_eci[..], &[0xA0, 0x80]].concat(),
            [0xA1, 0x80],
            1,
        ),
    ];
    let depth = 200_000;
    for (opening, nested, closers) in cases {
        let mut body = vec![0x30, 0x80, 0x06, 0x09, 42, 134, 72, 134, 247, 13, 1, 7, 2];
        body.extend([0xA0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0x31, 0x00]);
        body.extend(opening);
        for _ in 0..depth {
            body.extend(nested);
        }
        body.extend(std::iter::repeat_n(0u8, 2 * (depth + closers)));
        body.extend([0x31, 0x00]);
        body.extend([0u8; 6]);
        let f = assert_code(verify(&cms(body, None), trust(), now()), code::UNSUPPORTED);
        assert!(f.message.contains("no signer"), "{f}");
    }
}

/// Re-encodes the outer layers of a DER CMS made by `sign` with indefinite lengths, the way a
/// streaming BER encoder may: ContentInfo, its [0], SignedData, digestAlgorithms, the
/// encapsulated content info and its [0], the certificates set, signerInfos and the SignerInfo;
/// eContent becomes a constructed OCTET STRING of two segments. Certificates, algorithm
/// identifiers and signed attributes stay DER.
fn to_indefinite_ber(der: &[u8]) -> Vec<u8> {
    fn children(value: &[u8]) -> Vec<(u8, &[u8], &[u8])> {
        let mut out = Vec::new();
        let mut rest = value;
        while !rest.is_empty() {
            let (tag, inner, after) = super::der::split(rest).expect("DER");
            out.push((tag, inner, &rest[..rest.len() - after.len()]));
            rest = after;
        }
        out
    }
    fn indefinite(tag: u8, parts: Vec<Vec<u8>>) -> Vec<u8> {
        let mut out = vec![tag, 0x80];
        out.extend(parts.concat());
        out.extend([0, 0]);
        out
    }
    // path: how deep, and whether the children are to be converted too.
    fn convert(tag: u8, value: &[u8], whole: &[u8], depth: usize, parent: u8) -> Vec<u8> {
        let descend = match depth {
            0..=2 => true,
            // digestAlgorithms, encapContentInfo, certificates, signerInfos.
            3 => true,
            // eContent [0] inside encapContentInfo; the SignerInfo inside signerInfos.
            4 => (parent == 0x30 && tag == 0xA0) || (parent == 0x31 && tag == 0x30),
            _ => false,
        };
        if tag == 0x04 && parent == 0xA0 && depth == 5 {
            let (a, b) = value.split_at(value.len() / 2);
            return indefinite(
                0x24,
                vec![
                    super::der::tlv_of(0x04, &[a]),
                    super::der::tlv_of(0x04, &[b]),
                ],
            );
        }
        if !descend || tag & 0x20 == 0 {
            return whole.to_vec();
        }
        let parts = children(value)
            .into_iter()
            .map(|(t, v, w)| {
                // Below digestAlgorithms, certificates and the SignerInfo: keep DER.
                let algorithm = depth == 3 && tag == 0x31 && t == 0x30 && v.len() < 20;
                let certificate = depth >= 3 && tag == 0xA0 && t == 0x30 && v.len() > 500;
                let signer_info_field = depth == 4 && tag == 0x30 && parent == 0x31;
                if algorithm || certificate || signer_info_field {
                    w.to_vec()
                } else {
                    convert(t, v, w, depth + 1, tag)
                }
            })
            .collect();
        indefinite(tag, parts)
    }
    let (tag, value, rest) = super::der::split(der).expect("DER");
    assert!(rest.is_empty());
    convert(tag, value, der, 0, 0)
}

#[test]
fn indefinite_length_ber_everywhere_it_is_allowed_verifies() {
    let (_tmp, mut card) = new_card(demo_card());
    for detached in [false, true] {
        let der = sign(&mut card, SIGN_PIN, DOCUMENT, detached, signed_at()).unwrap();
        let ber = to_indefinite_ber(&der);
        assert_ne!(ber, der);
        assert_eq!(&ber[..2], &[0x30, 0x80]);
        // Every SET/SEQUENCE/[0] of the SignedData level is indefinite.
        // Byte-pattern counts are lower bounds: the same two bytes can occur by chance inside
        // signatures and keys.
        let indefinite_sets = ber.windows(2).filter(|w| *w == [0x31, 0x80]).count();
        assert!(indefinite_sets >= 2, "digestAlgorithms and signerInfos");
        let count = |header: [u8; 2]| ber.windows(2).filter(|w| *w == header).count();
        // ContentInfo, SignedData, encapContentInfo, SignerInfo.
        assert!(count([0x30, 0x80]) >= 4);
        // ContentInfo's [0], certificates, eContent's [0] when attached.
        assert!(count([0xA0, 0x80]) >= if detached { 2 } else { 3 });
        assert!(count([0x24, 0x80]) >= usize::from(!detached));
        let content = detached.then_some(DOCUMENT);
        let v = verify(&cms(ber, content), trust(), now()).expect("BER verifies");
        assert_eq!(v.detached, detached);
        assert_eq!(v.content_sha256, sha256_hex(DOCUMENT));
        assert_eq!(v.signing_time, Some(signed_at()));
    }
}
