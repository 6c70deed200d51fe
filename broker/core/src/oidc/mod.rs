//! OpenID Connect protocol logic: authorization, tokens, userinfo, discovery, keys.

pub mod authorize;
pub mod claims;
pub mod device;
pub mod discovery;
pub mod error;
pub mod jar;
pub mod keys;
pub mod login;
pub mod par;
pub mod token;

pub use error::{ErrorCode, OAuthError};
