//! The broker: an OpenID Connect identity provider for the My Number card (JPKI).
//! See docs/ARCHITECTURE.md for the code map.

pub use broker_core::{assurance, authn, card, clock, oidc, pki, registry, signatures};

pub mod app;
pub mod cli;
pub mod config;
pub mod http;
pub mod outbox;
pub mod revocation;
pub mod service;
pub mod store;
