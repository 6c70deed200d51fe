//! The card-helper ceremony: the broker issues a challenge bound to its issuer, the
//! transaction and the relying party; the card signs it with the user-authentication key; the
//! broker checks the certificate and the signature. Protocol: docs/card-helper-protocol.md.

use crate::pki::{self, CertKind, PkiError, TrustStore, ValidatedCert};
use time::OffsetDateTime;

/// Version tag at the head of every challenge message.
pub const CHALLENGE_TAG: &str = "jpki-broker-login-v1";

/// The exact bytes the card signs. Every field that binds the signature is in it, one per line,
/// so a signature for one broker, transaction, relying party or purpose is useless for another.
/// `purpose` is `login` (user-authentication key) or `proofing` (signature key).
pub fn challenge_message(c: &IssuedChallenge<'_>) -> Vec<u8> {
    let purpose = match c.kind {
        CertKind::UserAuth => "login",
        CertKind::Signature => "proofing",
    };
    format!(
        "{CHALLENGE_TAG}\nissuer={}\ntransaction={}\nclient_id={}\npurpose={purpose}\nnonce={}\nexpires_at={}\n",
        c.issuer, c.transaction, c.client_id, c.nonce, c.expires_at
    )
    .into_bytes()
}

/// Why a card response was refused. Each names what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CardLoginError {
    /// No such transaction (or the helper link is wrong).
    #[error("unknown or finished login transaction")]
    UnknownTransaction,
    /// The challenge's lifetime has passed.
    #[error("the challenge expired; start the login again")]
    ChallengeExpired,
    /// The challenge was answered before.
    #[error("the challenge was already used")]
    ChallengeUsed,
    /// The request body is not what the protocol says.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The certificate failed validation.
    #[error("certificate rejected: {0}")]
    Certificate(PkiError),
    /// The signature does not verify over this challenge with the certificate's key.
    #[error("the signature does not match this challenge and certificate")]
    BadSignature,
    /// The certificate is revoked (reason-aware message).
    #[error("the certificate is revoked ({}): {}", reason.map_or("unspecified", |r| r.as_str()), crate::pki::RevocationReason::meaning(*reason))]
    Revoked {
        reason: Option<crate::pki::RevocationReason>,
    },
    /// The revocation responder does not know the certificate.
    #[error("the revocation responder does not know this certificate")]
    RevocationUnknown,
    /// No revocation answer could be had and the policy does not allow logging in without one.
    /// The text says what failed (no answer from the revocation sources, or the policy), never
    /// a responder URL or file path.
    #[error("cannot confirm that the certificate is not revoked ({0}); try again later")]
    RevocationUnavailable(&'static str),
    /// The signature certificate carries no basic information (not a JPKI signature certificate).
    #[error(
        "the signature certificate carries no basic information (name, birth date, gender, address)"
    )]
    NoBasicInformation,
    /// The two certificates of a proofing may not be linked (see
    /// [`crate::authn::proofing::decide_link`]); nothing was stored.
    #[error("{0}")]
    LinkRefused(crate::authn::proofing::LinkRefusal),
    /// A certificate was linked to another account at the same moment by another login;
    /// nothing was stored and the same answer may be posted again.
    #[error("another login linked this card's certificate at the same moment; try again")]
    LinkConflict,
    /// The broker failed (database); the detail is in its log.
    #[error("internal error")]
    Internal,
    /// The broker's database is briefly unavailable; the same response may be posted again.
    #[error("the broker is briefly unavailable; try again in a moment")]
    Unavailable,
}

/// What the helper posts back.
#[derive(Debug, Clone)]
pub struct CardResponse {
    pub certificate_der: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The state of the challenge as stored.
#[derive(Debug, Clone)]
pub struct IssuedChallenge<'a> {
    /// Which certificate (and key) the challenge asks for.
    pub kind: CertKind,
    pub issuer: &'a str,
    pub transaction: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub expires_at: i64,
    pub used: bool,
}

/// Check a card response against the issued challenge at `now`: fresh and unused, the
/// certificate a valid JPKI certificate of the challenge's kind, the signature over exactly
/// this challenge. Pure: the caller marks the challenge used atomically afterwards.
pub fn verify_response(
    challenge: &IssuedChallenge<'_>,
    response: &CardResponse,
    trust: &TrustStore,
    now: OffsetDateTime,
) -> Result<ValidatedCert, CardLoginError> {
    if challenge.used {
        return Err(CardLoginError::ChallengeUsed);
    }
    if now.unix_timestamp() > challenge.expires_at {
        return Err(CardLoginError::ChallengeExpired);
    }
    let cert = pki::validate(&response.certificate_der, trust, challenge.kind, now)
        .map_err(CardLoginError::Certificate)?;
    let msg = challenge_message(challenge);
    pki::verify_rsa_pkcs1_sha256(&cert.public_key_pkcs1, &msg, &response.signature)
        .map_err(|_| CardLoginError::BadSignature)?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{Key, VirtualCard};
    use crate::pki::test_support::{demo_card, demo_pki, fixture_now, other_demo_pki, pem_to_der};
    use time::Duration;

    const AUTH_PIN: &str = "1234";
    const SIGN_PIN: &str = "ABC123";
    const AUTH_CA_DN: &str = "C=JP, O=JPKI-DEMO, OU=JPKI for user authentication, \
                              OU=Japan Agency for Local Authority Information Systems";

    /// A fresh, unused challenge of `kind` for the city portal, valid five minutes from the
    /// fixture instant.
    fn challenge(kind: CertKind) -> IssuedChallenge<'static> {
        IssuedChallenge {
            kind,
            issuer: "https://broker.example.jp",
            transaction: "Qm9Q3vT7xw",
            client_id: "city-portal",
            nonce: "n0nce-43-characters-of-256-random-bits-xxxx",
            expires_at: fixture_now().unix_timestamp() + 300,
            used: false,
        }
    }

    /// The demo card in a virtual card (the tempdir holds its files).
    fn card() -> (tempfile::TempDir, VirtualCard) {
        let tmp = tempfile::tempdir().unwrap();
        let card = VirtualCard::create(&tmp.path().join("card"), demo_card(), AUTH_PIN, SIGN_PIN)
            .expect("create card");
        (tmp, card)
    }

    /// What the helper posts: the certificate of `kind` and that key's signature over `message`.
    fn answer_with(card: &mut VirtualCard, kind: CertKind, message: &[u8]) -> CardResponse {
        let (certificate_der, signature) = match kind {
            CertKind::UserAuth => (
                card.auth_certificate_der().unwrap(),
                card.sign(Key::Auth, AUTH_PIN, message).unwrap(),
            ),
            CertKind::Signature => (
                card.sign_certificate_der(SIGN_PIN).unwrap(),
                card.sign(Key::Sign, SIGN_PIN, message).unwrap(),
            ),
        };
        CardResponse {
            certificate_der,
            signature,
        }
    }

    /// The card's honest answer to `c`.
    fn answer(card: &mut VirtualCard, c: &IssuedChallenge<'_>) -> CardResponse {
        answer_with(card, c.kind, &challenge_message(c))
    }

    fn store() -> TrustStore {
        demo_pki().trust_store().unwrap()
    }

    /// The message as docs/card-helper-protocol.md describes it.
    #[test]
    fn challenge_message_is_the_tagged_lines_in_order() {
        let c = IssuedChallenge {
            expires_at: 1_700_000_300,
            ..challenge(CertKind::UserAuth)
        };
        assert_eq!(
            String::from_utf8(challenge_message(&c)).unwrap(),
            "jpki-broker-login-v1\n\
             issuer=https://broker.example.jp\n\
             transaction=Qm9Q3vT7xw\n\
             client_id=city-portal\n\
             purpose=login\n\
             nonce=n0nce-43-characters-of-256-random-bits-xxxx\n\
             expires_at=1700000300\n"
        );
        let p = IssuedChallenge {
            kind: CertKind::Signature,
            ..c
        };
        assert!(
            String::from_utf8(challenge_message(&p))
                .unwrap()
                .contains("\npurpose=proofing\n")
        );
    }

    /// A signature for one broker, transaction, relying party, nonce, lifetime or purpose is
    /// useless for another: each field changes the signed bytes. `used` is state, not binding.
    #[test]
    fn every_binding_field_changes_the_signed_bytes() {
        let base = challenge(CertKind::UserAuth);
        let variants = [
            IssuedChallenge {
                issuer: "https://evil.example.jp",
                ..base.clone()
            },
            IssuedChallenge {
                transaction: "other-transaction",
                ..base.clone()
            },
            IssuedChallenge {
                client_id: "bank",
                ..base.clone()
            },
            IssuedChallenge {
                nonce: "another-nonce",
                ..base.clone()
            },
            IssuedChallenge {
                expires_at: base.expires_at + 1,
                ..base.clone()
            },
            IssuedChallenge {
                kind: CertKind::Signature,
                ..base.clone()
            },
        ];
        let mut seen = vec![challenge_message(&base)];
        for v in &variants {
            let m = challenge_message(v);
            assert!(!seen.contains(&m), "{v:?} signs the same bytes as another");
            seen.push(m);
        }
        let used = IssuedChallenge {
            used: true,
            ..base.clone()
        };
        assert_eq!(challenge_message(&used), challenge_message(&base));
    }

    #[test]
    fn a_demo_card_answer_to_a_login_challenge_verifies() {
        let (_tmp, mut card) = card();
        let c = challenge(CertKind::UserAuth);
        let r = answer(&mut card, &c);
        let cert = verify_response(&c, &r, &store(), fixture_now()).expect("verifies");
        assert_eq!(cert.kind, CertKind::UserAuth);
        assert_eq!(cert.issuer, AUTH_CA_DN);
        assert_eq!(cert.der, pem_to_der(&demo_card().auth_cert_pem));
        assert!(
            cert.basic4.is_none(),
            "user-auth certificates carry no basic four"
        );
        // Still good at the last second of its lifetime.
        let last = OffsetDateTime::from_unix_timestamp(c.expires_at).unwrap();
        assert!(verify_response(&c, &r, &store(), last).is_ok());
    }

    #[test]
    fn a_proofing_challenge_is_answered_with_the_signature_key_and_certificate() {
        let (_tmp, mut card) = card();
        let c = challenge(CertKind::Signature);
        let r = answer(&mut card, &c);
        let cert = verify_response(&c, &r, &store(), fixture_now()).expect("verifies");
        assert_eq!(cert.kind, CertKind::Signature);
        let basic4 = cert
            .basic4
            .expect("signature certificates carry the basic four");
        assert_eq!(basic4.name, "山田\u{3000}太郎");
        assert_eq!(basic4.birthdate, "1989-01-07");
    }

    /// Expiry is checked first: an expired challenge is refused whatever was posted.
    #[test]
    fn an_expired_challenge_is_refused() {
        let (_tmp, mut card) = card();
        let c = challenge(CertKind::UserAuth);
        let r = answer(&mut card, &c);
        let late = OffsetDateTime::from_unix_timestamp(c.expires_at + 1).unwrap();
        assert_eq!(
            verify_response(&c, &r, &store(), late).unwrap_err(),
            CardLoginError::ChallengeExpired
        );
        let garbage = CardResponse {
            certificate_der: b"not a certificate".to_vec(),
            signature: vec![],
        };
        assert_eq!(
            verify_response(&c, &garbage, &store(), late).unwrap_err(),
            CardLoginError::ChallengeExpired
        );
    }

    #[test]
    fn a_used_challenge_is_refused_even_with_a_good_answer() {
        let (_tmp, mut card) = card();
        let c = challenge(CertKind::UserAuth);
        let r = answer(&mut card, &c);
        let used = IssuedChallenge { used: true, ..c };
        assert_eq!(
            verify_response(&used, &r, &store(), fixture_now()).unwrap_err(),
            CardLoginError::ChallengeUsed
        );
    }

    /// The other certificate of the same card, with its own key's signature over the right
    /// bytes, is the wrong kind for the challenge.
    #[test]
    fn the_cards_other_certificate_is_the_wrong_kind() {
        let (_tmp, mut card) = card();
        let login = challenge(CertKind::UserAuth);
        let r = answer_with(&mut card, CertKind::Signature, &challenge_message(&login));
        assert_eq!(
            verify_response(&login, &r, &store(), fixture_now()).unwrap_err(),
            CardLoginError::Certificate(PkiError::WrongKind {
                expected: CertKind::UserAuth,
                found: CertKind::Signature,
            })
        );
        let proofing = challenge(CertKind::Signature);
        let r = answer_with(&mut card, CertKind::UserAuth, &challenge_message(&proofing));
        assert_eq!(
            verify_response(&proofing, &r, &store(), fixture_now()).unwrap_err(),
            CardLoginError::Certificate(PkiError::WrongKind {
                expected: CertKind::Signature,
                found: CertKind::UserAuth,
            })
        );
    }

    #[test]
    fn a_signature_over_other_bytes_is_a_bad_signature() {
        let (_tmp, mut card) = card();
        let c = challenge(CertKind::UserAuth);
        let other_nonce = IssuedChallenge {
            nonce: "another-nonce",
            ..c.clone()
        };
        let other_rp = IssuedChallenge {
            client_id: "bank",
            ..c.clone()
        };
        for other in [&other_nonce, &other_rp] {
            let r = answer(&mut card, other);
            assert_eq!(
                verify_response(&c, &r, &store(), fixture_now()).unwrap_err(),
                CardLoginError::BadSignature,
                "an answer to {other:?}"
            );
        }
        let r = answer_with(&mut card, CertKind::UserAuth, b"hello");
        assert_eq!(
            verify_response(&c, &r, &store(), fixture_now()).unwrap_err(),
            CardLoginError::BadSignature
        );
    }

    #[test]
    fn a_signature_by_another_key_or_tampered_is_a_bad_signature() {
        let (_tmp, mut card) = card();
        let c = challenge(CertKind::UserAuth);
        let good = answer(&mut card, &c);
        // The signature key's signature over the right bytes, with the user-auth certificate.
        let other_key = CardResponse {
            signature: card
                .sign(Key::Sign, SIGN_PIN, &challenge_message(&c))
                .unwrap(),
            ..good.clone()
        };
        let mut flipped = good.clone();
        flipped.signature[17] ^= 1;
        let mut truncated = good.clone();
        truncated.signature.pop();
        let empty = CardResponse {
            signature: vec![],
            ..good.clone()
        };
        for (what, r) in [
            ("other key", other_key),
            ("flipped", flipped),
            ("truncated", truncated),
            ("empty", empty),
        ] {
            assert_eq!(
                verify_response(&c, &r, &store(), fixture_now()).unwrap_err(),
                CardLoginError::BadSignature,
                "{what}"
            );
        }
    }

    #[test]
    fn a_card_from_a_ca_not_trusted_is_refused() {
        let (_tmp, mut card) = card();
        let c = challenge(CertKind::UserAuth);
        let r = answer(&mut card, &c);
        // Another CA generation with the same DNs: only the keys differ.
        let other_store = other_demo_pki().trust_store().unwrap();
        assert_eq!(
            verify_response(&c, &r, &other_store, fixture_now()).unwrap_err(),
            CardLoginError::Certificate(PkiError::UntrustedIssuer {
                issuer: AUTH_CA_DN.into()
            })
        );
    }

    /// Bytes that are not a certificate are refused by the validator. (The HTTP layer refuses
    /// a body that is not base64 or JSON with [`CardLoginError::Malformed`] before this.)
    #[test]
    fn bytes_that_are_not_a_certificate_are_refused_as_malformed() {
        let (_tmp, mut card) = card();
        let c = challenge(CertKind::UserAuth);
        let good = answer(&mut card, &c);
        let der = good.certificate_der.clone();
        for (what, bytes) in [
            ("empty", vec![]),
            ("garbage", b"definitely not a certificate".to_vec()),
            ("truncated", der[..der.len() / 2].to_vec()),
            ("trailing", [der.clone(), vec![0]].concat()),
        ] {
            let r = CardResponse {
                certificate_der: bytes,
                ..good.clone()
            };
            let err = verify_response(&c, &r, &store(), fixture_now()).unwrap_err();
            assert!(
                matches!(err, CardLoginError::Certificate(PkiError::Malformed(_))),
                "{what}: {err:?}"
            );
        }
    }

    /// A challenge still open when the card's certificate has expired (a clock far ahead).
    #[test]
    fn an_expired_certificate_is_refused() {
        let (_tmp, mut card) = card();
        let later = fixture_now() + Duration::days(6 * 365);
        let c = IssuedChallenge {
            expires_at: later.unix_timestamp() + 300,
            ..challenge(CertKind::UserAuth)
        };
        let r = answer(&mut card, &c);
        let err = verify_response(&c, &r, &store(), later).unwrap_err();
        assert!(
            matches!(err, CardLoginError::Certificate(PkiError::Expired { .. })),
            "{err:?}"
        );
    }
}
