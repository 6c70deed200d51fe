//! The broker: an OpenID Connect identity provider for the My Number card (JPKI).
//! See docs/ARCHITECTURE.md for the code map.

pub mod card;
pub mod pki;
