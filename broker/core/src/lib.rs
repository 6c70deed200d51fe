//! The broker's pure cores: each takes typed inputs and returns typed decisions, with no store,
//! no running broker, no web framework and no HTTP client (this crate depends on none of
//! them). The server crate (`broker`) loads, calls these, and writes. docs/ARCHITECTURE.md has
//! the code map.

pub mod assurance;
pub mod authn;
pub mod card;
pub mod clock;
mod der;
pub mod oidc;
pub mod pki;
pub mod registry;
pub mod signatures;
