//! Tests of the virtual card: PIN rules, persistence, signatures.

use super::*;
use crate::pki::test_support::{demo_card, demo_pki, fixture_now, pem_to_der};
use crate::pki::{CertKind, PkiError, validate, verify_rsa_pkcs1_sha256};

const AUTH_PIN: &str = "1234";
const SIGN_PIN: &str = "ABC123";

fn new_card() -> (tempfile::TempDir, VirtualCard) {
    let tmp = tempfile::tempdir().unwrap();
    let card = VirtualCard::create(&tmp.path().join("card"), demo_card(), AUTH_PIN, SIGN_PIN)
        .expect("create card");
    (tmp, card)
}

/// The public key of a certificate the card holds, through the validator.
fn validated_key(der: &[u8], kind: CertKind) -> Vec<u8> {
    let store = demo_pki().trust_store().unwrap();
    validate(der, &store, kind, fixture_now())
        .expect("card certificate validates")
        .public_key_pkcs1
}

#[test]
fn right_pin_signs_and_the_signature_verifies() {
    let (_tmp, mut card) = new_card();
    let cert = card.auth_certificate_der().unwrap();
    assert_eq!(cert, pem_to_der(&demo_card().auth_cert_pem));
    let key = validated_key(&cert, CertKind::UserAuth);

    let message = b"challenge 1";
    let sig = card.sign(Key::Auth, AUTH_PIN, message).expect("sign");
    assert_eq!(sig.len(), 256);
    verify_rsa_pkcs1_sha256(&key, message, &sig).expect("verifies");
    // Another message, or the other key, does not verify.
    assert_eq!(
        verify_rsa_pkcs1_sha256(&key, b"challenge 2", &sig),
        Err(PkiError::BadSignature)
    );
    let sign_sig = card
        .sign(Key::Sign, SIGN_PIN, message)
        .expect("sign with sign key");
    assert_eq!(
        verify_rsa_pkcs1_sha256(&key, message, &sign_sig),
        Err(PkiError::BadSignature)
    );
    let sign_cert = card.sign_certificate_der(SIGN_PIN).unwrap();
    let sign_key = validated_key(&sign_cert, CertKind::Signature);
    verify_rsa_pkcs1_sha256(&sign_key, message, &sign_sig).expect("signature key verifies");
    assert_eq!(card.tries_left(Key::Auth), 3);
    assert_eq!(card.tries_left(Key::Sign), 5);
}

#[test]
fn card_signature_is_pkcs1_padding_of_the_sha256_digest_info() {
    // What a physical card does: the host sends the DigestInfo, the card pads and signs it.
    // openssl pkeyutl without a digest does exactly that raw PKCS#1 v1.5 operation.
    let (tmp, mut card) = new_card();
    let dir = tmp.path().join("card");
    let message = b"document to sign";
    let sig = card.sign(Key::Auth, AUTH_PIN, message).unwrap();
    std::fs::write(
        tmp.path().join("di.bin"),
        crate::pki::sha256_digest_info(message),
    )
    .unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkeyutl", "-sign", "-inkey"])
        .arg(dir.join("auth.key.pem"))
        .arg("-in")
        .arg(tmp.path().join("di.bin"))
        .arg("-out")
        .arg(tmp.path().join("sig.bin"))
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(tmp.path().join("sig.bin")).unwrap(), sig);
}

#[test]
fn wrong_pins_count_down_then_lock_for_good() {
    let (tmp, mut card) = new_card();
    let dir = tmp.path().join("card");
    assert!(matches!(
        card.sign(Key::Auth, "0000", b"m"),
        Err(CardError::WrongPin {
            key: Key::Auth,
            tries_left: 2
        })
    ));
    assert_eq!(card.tries_left(Key::Auth), 2);
    // The count is on disk: another handle sees it.
    assert_eq!(VirtualCard::open(&dir).unwrap().tries_left(Key::Auth), 2);
    assert!(matches!(
        card.sign(Key::Auth, "0001", b"m"),
        Err(CardError::WrongPin {
            key: Key::Auth,
            tries_left: 1
        })
    ));
    assert!(matches!(
        card.sign(Key::Auth, "0002", b"m"),
        Err(CardError::Locked(Key::Auth))
    ));
    assert_eq!(card.tries_left(Key::Auth), 0);
    // Locked even for the right PIN, and after reopening.
    assert!(matches!(
        card.sign(Key::Auth, AUTH_PIN, b"m"),
        Err(CardError::Locked(Key::Auth))
    ));
    let mut reopened = VirtualCard::open(&dir).unwrap();
    assert_eq!(reopened.tries_left(Key::Auth), 0);
    assert!(matches!(
        reopened.sign(Key::Auth, AUTH_PIN, b"m"),
        Err(CardError::Locked(Key::Auth))
    ));
    // The signature PIN is independent.
    assert!(reopened.sign(Key::Sign, SIGN_PIN, b"m").is_ok());
}

#[test]
fn a_right_pin_resets_the_counter() {
    let (tmp, mut card) = new_card();
    assert!(matches!(
        card.sign(Key::Sign, "WRONG1", b"m"),
        Err(CardError::WrongPin {
            key: Key::Sign,
            tries_left: 4
        })
    ));
    assert!(matches!(
        card.sign(Key::Sign, "WRONG2", b"m"),
        Err(CardError::WrongPin {
            key: Key::Sign,
            tries_left: 3
        })
    ));
    card.sign(Key::Sign, SIGN_PIN, b"m").expect("right PIN");
    assert_eq!(card.tries_left(Key::Sign), 5);
    assert_eq!(
        VirtualCard::open(&tmp.path().join("card"))
            .unwrap()
            .tries_left(Key::Sign),
        5
    );
}

#[test]
fn tries_used_by_another_handle_count() {
    let (tmp, mut a) = new_card();
    let mut b = VirtualCard::open(&tmp.path().join("card")).unwrap();
    assert!(a.sign(Key::Auth, "9999", b"m").is_err());
    assert!(b.sign(Key::Auth, "9998", b"m").is_err());
    // Third wrong try through `a` locks, although `a` itself only saw one failure.
    assert!(matches!(
        a.sign(Key::Auth, "9997", b"m"),
        Err(CardError::Locked(Key::Auth))
    ));
}

#[test]
fn bad_pin_formats_are_refused_without_using_a_try() {
    let (_tmp, mut card) = new_card();
    for pin in ["123", "12345", "12a4", "", "１２３４"] {
        assert!(
            matches!(
                card.sign(Key::Auth, pin, b"m"),
                Err(CardError::BadPinFormat(_))
            ),
            "auth PIN {pin:?}"
        );
    }
    for pin in ["abc123", "ABCDE", "ABCDEFGHIJKLMNOPQ", "ABC-123"] {
        assert!(
            matches!(
                card.sign(Key::Sign, pin, b"m"),
                Err(CardError::BadPinFormat(_))
            ),
            "sign PIN {pin:?}"
        );
    }
    assert_eq!(card.tries_left(Key::Auth), 3);
    assert_eq!(card.tries_left(Key::Sign), 5);

    // And at creation.
    let tmp = tempfile::tempdir().unwrap();
    for (auth, sign) in [
        ("123", SIGN_PIN),
        ("12a4", SIGN_PIN),
        (AUTH_PIN, "abcdef"),
        (AUTH_PIN, "ABCDE"),
    ] {
        let err = VirtualCard::create(&tmp.path().join("c"), demo_card(), auth, sign).unwrap_err();
        assert!(
            matches!(err, CardError::BadPinFormat(_)),
            "{auth:?}/{sign:?}: {err:?}"
        );
    }
    assert!(
        !tmp.path().join("c").exists(),
        "nothing written for a refused PIN"
    );
}

#[test]
fn signature_certificate_needs_the_signature_pin() {
    let (_tmp, mut card) = new_card();
    assert!(matches!(
        card.sign_certificate_der(AUTH_PIN),
        Err(CardError::BadPinFormat(_))
    ));
    assert!(matches!(
        card.sign_certificate_der("ZZZ999"),
        Err(CardError::WrongPin {
            key: Key::Sign,
            tries_left: 4
        })
    ));
    let der = card.sign_certificate_der(SIGN_PIN).expect("right PIN");
    assert_eq!(der, pem_to_der(&demo_card().sign_cert_pem));
    assert_eq!(card.tries_left(Key::Sign), 5);
}

#[test]
fn state_holds_no_pin_and_files_are_private() {
    let (tmp, _card) = new_card();
    let dir = tmp.path().join("card");
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(
        !state.contains(AUTH_PIN) && !state.contains(SIGN_PIN),
        "{state}"
    );
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(v["auth"]["tries_left"], 3);
    assert_eq!(v["sign"]["tries_left"], 5);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["auth.key.pem", "sign.key.pem", "state.json"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert_eq!(names.len(), 5);
}

#[test]
fn create_refuses_a_non_empty_directory_and_mismatched_keys() {
    let (tmp, _card) = new_card();
    let err =
        VirtualCard::create(&tmp.path().join("card"), demo_card(), AUTH_PIN, SIGN_PIN).unwrap_err();
    assert!(matches!(err, CardError::AlreadyExists(_)), "{err:?}");

    // An existing empty directory is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    VirtualCard::create(&empty, demo_card(), AUTH_PIN, SIGN_PIN).expect("empty dir");

    // The auth certificate with the signature key.
    let issued = demo_card();
    let err = VirtualCard::create_from_pem(
        &tmp.path().join("mismatch"),
        &issued.auth_cert_pem,
        &issued.sign_key_pem,
        None,
        AUTH_PIN,
        "",
    )
    .unwrap_err();
    assert!(
        matches!(&err, CardError::Malformed(m) if m.contains("does not match")),
        "{err:?}"
    );
    let err = VirtualCard::create_from_pem(
        &tmp.path().join("garbage"),
        "not pem",
        &issued.auth_key_pem,
        None,
        AUTH_PIN,
        "",
    )
    .unwrap_err();
    assert!(matches!(err, CardError::Malformed(_)), "{err:?}");
}

#[test]
fn card_without_signature_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("card");
    let issued = demo_card();
    let mut card = VirtualCard::create_from_pem(
        &dir,
        &issued.auth_cert_pem,
        &issued.auth_key_pem,
        None,
        AUTH_PIN,
        "",
    )
    .unwrap();
    assert!(!card.has_signature_key());
    assert_eq!(card.tries_left(Key::Sign), 0);
    assert!(matches!(
        card.sign(Key::Sign, SIGN_PIN, b"m"),
        Err(CardError::NoSignatureKey)
    ));
    assert!(matches!(
        card.sign_certificate_der(SIGN_PIN),
        Err(CardError::NoSignatureKey)
    ));
    let mut reopened = VirtualCard::open(&dir).unwrap();
    assert!(reopened.sign(Key::Auth, AUTH_PIN, b"m").is_ok());
    assert!(!dir.join("sign.key.pem").exists());
}

#[test]
fn open_reports_broken_directories() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        VirtualCard::open(tmp.path()),
        Err(CardError::Io(_))
    ));

    let (tmp, _card) = new_card();
    let dir = tmp.path().join("card");
    std::fs::write(dir.join("state.json"), b"{not json").unwrap();
    assert!(matches!(
        VirtualCard::open(&dir),
        Err(CardError::Malformed(_))
    ));

    let (tmp, card) = new_card();
    let dir = tmp.path().join("card");
    drop(card);
    std::fs::remove_file(dir.join("sign.key.pem")).unwrap();
    let err = VirtualCard::open(&dir).unwrap_err();
    assert!(
        matches!(&err, CardError::Malformed(m) if m.contains("all present")),
        "{err:?}"
    );

    let (tmp, _card) = new_card();
    let dir = tmp.path().join("card");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    state["auth"]["tries_left"] = serde_json::json!(9);
    std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    assert!(matches!(
        VirtualCard::open(&dir),
        Err(CardError::Malformed(_))
    ));
}
