//! The broker: an OpenID Connect identity provider for the My Number card (JPKI).
//! See docs/ARCHITECTURE.md for the code map.

pub mod app;
pub mod assurance;
pub mod authn;
pub mod card;
pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
pub mod oidc;
pub mod pki;
pub mod registry;
pub mod revocation;
pub mod service;
pub mod signatures;
pub mod store;
