//! Shared test fixtures: RSA-2048 generation is slow, so one demo PKI and one card are made once.

use crate::pki::demo::{CardRequest, DemoPki, IssuedCard};
use std::sync::OnceLock;
use time::{Duration, OffsetDateTime};

/// The instant every shared fixture is built around.
pub(crate) fn fixture_now() -> OffsetDateTime {
    static NOW: OnceLock<OffsetDateTime> = OnceLock::new();
    *NOW.get_or_init(|| {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    })
}

/// The shared demo PKI.
pub(crate) fn demo_pki() -> &'static DemoPki {
    static PKI: OnceLock<DemoPki> = OnceLock::new();
    PKI.get_or_init(|| DemoPki::generate(fixture_now()).expect("generate demo PKI"))
}

/// A second demo PKI: same DNs, other keys (another CA generation).
pub(crate) fn other_demo_pki() -> &'static DemoPki {
    static PKI: OnceLock<DemoPki> = OnceLock::new();
    PKI.get_or_init(|| DemoPki::generate(fixture_now()).expect("generate demo PKI"))
}

/// The request behind [`demo_card`].
pub(crate) fn card_request() -> CardRequest {
    let now = fixture_now();
    CardRequest {
        name: "山田\u{3000}太郎".into(),
        name_substituted: Some("00010".into()),
        birthdate: time::macros::date!(1989 - 01 - 07),
        gender: 1,
        address: "東京都千代田区千代田一番一号".into(),
        address_substituted: Some("00000010000000".into()),
        not_before: now - Duration::days(1),
        not_after: now + Duration::days(5 * 365),
    }
}

/// A card issued by [`demo_pki`] from [`card_request`].
pub(crate) fn demo_card() -> &'static IssuedCard {
    static CARD: OnceLock<IssuedCard> = OnceLock::new();
    CARD.get_or_init(|| {
        demo_pki()
            .issue_card(&card_request())
            .expect("issue demo card")
    })
}

/// DER of a PEM certificate.
pub(crate) fn pem_to_der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).expect("PEM").into_contents()
}
