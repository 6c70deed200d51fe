//! The conductor: the one place, besides start-up, that holds the store and the running broker.
//! Each step loads what it needs, calls the pure cores (`oidc`, `authn`, `assurance`, `pki`,
//! `registry`), and writes once. The HTTP handlers parse, call a step here, and serialize.

use crate::oidc::OAuthError;

pub mod authorize;
pub mod card;
pub mod claims;
pub mod cluster;
pub mod device;
pub mod keys;
pub mod login;
pub mod logout;
pub mod par;
pub mod passkey;
pub mod reload;
pub mod signals;
pub mod signatures;
pub mod token;

/// The store failing, as an OAuth error: `temporarily_unavailable` when the database is away
/// (a retry may succeed), else `server_error` (the detail is logged, never sent).
impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        match e {
            crate::store::StoreError::Unavailable(_) => OAuthError::temporarily_unavailable(
                "the broker's database is unavailable; retry shortly",
            ),
            _ => OAuthError::server_error("internal error"),
        }
    }
}
