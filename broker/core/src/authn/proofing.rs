//! Identity proofing with the signature certificate: the basic four (with their
//! substitute-character maps) become the account's verified claims, with evidence.

use crate::pki::{Basic4, ValidatedCert};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The verified claims of an account. The My Number is not here: JPKI certificates do not
/// carry it and the broker never reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityClaims {
    /// Family and given name separated by U+3000, as in the certificate.
    pub name: String,
    /// One digit per character of `name`: `1` where a substitute glyph stands for a character
    /// outside JIS X 0208.
    pub name_substituted: String,
    /// ISO 8601 date.
    pub birthdate: String,
    /// Era digit of the certificate's date (1 明治 … 5 令和, 0 unknown).
    pub birthdate_era: u8,
    /// `1` male, `2` female, `3` not stated (the certificate's code).
    pub gender_code: String,
    pub address: String,
    pub address_substituted: String,
}

impl From<&Basic4> for IdentityClaims {
    fn from(b: &Basic4) -> Self {
        IdentityClaims {
            name: b.name.clone(),
            name_substituted: b.name_substituted.clone(),
            birthdate: b.birthdate.clone(),
            birthdate_era: b.birthdate_era,
            gender_code: b.gender.clone(),
            address: b.address.clone(),
            address_substituted: b.address_substituted.clone(),
        }
    }
}

impl IdentityClaims {
    /// OpenID Connect `gender`: `male`, `female`, or `not_stated` (a value OIDC allows when
    /// neither applies).
    pub fn gender(&self) -> &'static str {
        match self.gender_code.as_str() {
            "1" => "male",
            "2" => "female",
            _ => "not_stated",
        }
    }
}

/// Evidence of the verification (OpenID Connect for Identity Assurance, `electronic_signature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofingEvidence {
    #[serde(rename = "type")]
    pub kind: String,
    pub signature_type: String,
    /// Issuer DN of the signature certificate.
    pub issuer: String,
    /// Serial of the signature certificate (hex).
    pub serial_number: String,
    /// When the signature over the broker's challenge was made (RFC 3339).
    pub created_at: String,
}

impl ProofingEvidence {
    pub fn of(cert: &ValidatedCert, at: OffsetDateTime) -> ProofingEvidence {
        ProofingEvidence {
            kind: "electronic_signature".into(),
            signature_type: "jpki_signature_certificate".into(),
            issuer: cert.issuer.clone(),
            serial_number: cert.serial_hex.clone(),
            created_at: at
                .replace_nanosecond(0)
                .unwrap_or(at)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }
}

/// Where the two certificates of a proofing point, as the store and the link information
/// (J-LIS renewal links; the demo CA's `links.json`) say: the inputs of [`decide_link`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFacts {
    /// The account the user-authentication certificate is linked to.
    pub auth_linked: Option<String>,
    /// The account the signature certificate is linked to.
    pub sign_linked: Option<String>,
    /// The account of a certificate the user-authentication certificate renews.
    pub auth_renews: Option<String>,
    /// The account of a certificate the signature certificate renews.
    pub sign_renews: Option<String>,
}

impl LinkFacts {
    /// The one account the certificates point to (`None`: a person new to the broker), or
    /// [`LinkRefusal::DifferentAccounts`] when they point to more than one.
    pub fn target(&self) -> Result<Option<&str>, LinkRefusal> {
        let mut found: Option<&str> = None;
        for a in [
            &self.auth_linked,
            &self.sign_linked,
            &self.auth_renews,
            &self.sign_renews,
        ]
        .into_iter()
        .flatten()
        {
            match found {
                Some(f) if f != a => return Err(LinkRefusal::DifferentAccounts),
                _ => found = Some(a),
            }
        }
        Ok(found)
    }
}

/// How a certificate comes to belong to the account (recorded in the person's record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkReason {
    /// Linked before: nothing changes.
    AlreadyLinked,
    /// The first proofing of a person new to the broker: both certificates were presented in
    /// one login transaction, each signing its own challenge with its own PIN.
    NewAccount,
    /// Link information says it renews a certificate of the account.
    Renewal,
    /// A new signature certificate (say, after a move) presented after a login with the
    /// account's own user-authentication certificate, naming the same person (birth date).
    SamePerson,
}

/// What a proofing may link, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkPlan {
    /// A new account with both certificates.
    New,
    /// Both certificates belong to `account_id` (linking those not linked yet).
    Existing {
        account_id: String,
        auth: LinkReason,
        sign: LinkReason,
    },
}

/// Why a proofing's certificates were not linked. Nothing is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    /// The certificates (or the ones they renew) belong to different accounts.
    #[error(
        "the user-authentication certificate and the signature certificate belong to different accounts: use the two certificates of one card"
    )]
    DifferentAccounts,
    /// A user-authentication certificate new to the broker, with the signature certificate of
    /// an account that has its own card, and no link information connecting the two.
    #[error(
        "this signature certificate belongs to an account with another card, and nothing shows that this card's user-authentication certificate belongs to it: log in with that account's own card (a renewed card is recognised by its link information)"
    )]
    NotShownToBelong,
    /// A new signature certificate names another person than the account's verified identity.
    #[error(
        "the signature certificate names a different person (birth date) than this account's verified identity: use the signature certificate of your own card"
    )]
    IdentityMismatch,
}

/// May the user-authentication certificate and the signature certificate of a proofing be
/// linked, and to which account? `target_birthdate`: the birth date of the verified claims the
/// target account holds (stale ones too), if any; `new_birthdate`: the signature certificate's.
///
/// Both certificates of one card cannot be shown to belong together from the certificates
/// alone (JPKI puts nothing in common in them). So:
/// - a person new to the broker gets a new account with both (first proofing);
/// - a certificate joins an existing account only through a link the account already holds: its
///   own user-authentication certificate logging in (then a new signature certificate must name
///   the same person), or link information saying it renews one of the account's;
/// - a user-authentication certificate new to the broker never joins an account through the
///   signature certificate alone — else a stranger's card plus someone's signature certificate
///   would log in as that someone from then on.
pub fn decide_link(
    f: &LinkFacts,
    target_birthdate: Option<&str>,
    new_birthdate: &str,
) -> Result<LinkPlan, LinkRefusal> {
    let Some(target) = f.target()? else {
        return Ok(LinkPlan::New);
    };
    let is_target = |a: &Option<String>| a.as_deref() == Some(target);
    let auth = if is_target(&f.auth_linked) {
        LinkReason::AlreadyLinked
    } else if is_target(&f.auth_renews) {
        LinkReason::Renewal
    } else {
        return Err(LinkRefusal::NotShownToBelong);
    };
    let sign = if is_target(&f.sign_linked) {
        LinkReason::AlreadyLinked
    } else if is_target(&f.sign_renews) {
        LinkReason::Renewal
    } else if target_birthdate.is_some_and(|b| b != new_birthdate) {
        return Err(LinkRefusal::IdentityMismatch);
    } else {
        LinkReason::SamePerson
    };
    Ok(LinkPlan::Existing {
        account_id: target.to_string(),
        auth,
        sign,
    })
}

#[cfg(test)]
mod link_tests {
    use super::*;

    fn a(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn a_person_new_to_the_broker_gets_a_new_account() {
        assert_eq!(
            decide_link(&LinkFacts::default(), None, "1985-06-15"),
            Ok(LinkPlan::New)
        );
    }

    /// The reported attack: card B's user-authentication certificate (never seen) with card A's
    /// signature certificate (A proofed): refused, whatever the birth dates.
    #[test]
    fn a_strangers_card_never_joins_through_a_signature_certificate() {
        let f = LinkFacts {
            sign_linked: a("A"),
            ..Default::default()
        };
        assert_eq!(
            decide_link(&f, Some("1985-06-15"), "1985-06-15"),
            Err(LinkRefusal::NotShownToBelong)
        );
        // Nor through the account a renewed signature certificate leads to.
        let f = LinkFacts {
            sign_renews: a("A"),
            ..Default::default()
        };
        assert_eq!(
            decide_link(&f, Some("1985-06-15"), "1985-06-15"),
            Err(LinkRefusal::NotShownToBelong)
        );
    }

    /// The converse: a proofed card B re-proofing with someone else's signature certificate.
    #[test]
    fn certificates_of_two_accounts_are_refused() {
        let f = LinkFacts {
            auth_linked: a("B"),
            sign_linked: a("A"),
            ..Default::default()
        };
        assert_eq!(
            decide_link(&f, None, "x"),
            Err(LinkRefusal::DifferentAccounts)
        );
        let f = LinkFacts {
            auth_renews: a("B"),
            sign_renews: a("A"),
            ..Default::default()
        };
        assert_eq!(f.target(), Err(LinkRefusal::DifferentAccounts));
    }

    #[test]
    fn a_new_signature_certificate_must_name_the_same_person() {
        let f = LinkFacts {
            auth_linked: a("A"),
            ..Default::default()
        };
        assert_eq!(
            decide_link(&f, Some("1985-06-15"), "1990-01-01"),
            Err(LinkRefusal::IdentityMismatch)
        );
        assert_eq!(
            decide_link(&f, Some("1985-06-15"), "1985-06-15"),
            Ok(LinkPlan::Existing {
                account_id: "A".into(),
                auth: LinkReason::AlreadyLinked,
                sign: LinkReason::SamePerson,
            })
        );
        // An account proofed for the first time (created unproofed) has nothing to compare.
        assert!(decide_link(&f, None, "1990-01-01").is_ok());
    }

    #[test]
    fn renewals_and_re_proofing_join_the_account() {
        let f = LinkFacts {
            auth_renews: a("A"),
            sign_renews: a("A"),
            ..Default::default()
        };
        assert_eq!(
            decide_link(&f, Some("1985-06-15"), "1985-06-15"),
            Ok(LinkPlan::Existing {
                account_id: "A".into(),
                auth: LinkReason::Renewal,
                sign: LinkReason::Renewal,
            })
        );
        // A renewed signature certificate may even change what it says (a corrected date).
        assert!(decide_link(&f, Some("1985-06-15"), "1985-06-16").is_ok());
        let f = LinkFacts {
            auth_linked: a("A"),
            sign_linked: a("A"),
            ..Default::default()
        };
        assert_eq!(
            decide_link(&f, Some("1985-06-15"), "1985-06-15"),
            Ok(LinkPlan::Existing {
                account_id: "A".into(),
                auth: LinkReason::AlreadyLinked,
                sign: LinkReason::AlreadyLinked,
            })
        );
    }
}
