//! The device authorization grant (RFC 8628), for devices without a browser such as a cable-TV
//! set-top box: what a device may ask, its user code, and how a poll at the token endpoint is
//! answered. The person's approval itself is an ordinary login (card or passkey, consent) that
//! the broker runs as its own authorization request on the phone or computer where the user
//! code is entered.

use super::OAuthError;
use super::authorize::{STORED_BOUNDS, bad_purpose};
use crate::registry::{Client, GrantType, SUPPORTED_SCOPES};
use serde::{Deserialize, Serialize};

/// The grant type a device polls the token endpoint with.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The letters of a user code: consonants only (no 0/O, 1/I, no vowel to spell words, RFC 8628
/// §6.1), easy to read off a TV and to type on a phone.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Letters in a user code: 20^8 ≈ 2^34.6 codes, against guessing bounded per source.
pub const USER_CODE_LEN: usize = 8;

/// Seconds a device waits between polls (RFC 8628 §3.2 default).
pub const INTERVAL: i64 = 5;

/// Where the approval's authorization request returns (the broker's own page).
pub fn callback_uri(issuer: &str) -> String {
    format!("{issuer}/device/callback")
}

/// The PKCE verifier of a grant's approval: derived from the grant with the server key, never
/// stored or sent (its challenge goes into the approval's authorization request).
pub fn approval_verifier(key: &crate::clock::ServerKey, grant_id: &str) -> String {
    key.mac("device-pkce", grant_id.as_bytes())
}

/// What a device asked for (stored with its grant; the approval's authorization request is
/// made from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRequest {
    /// Granted scopes: requested ∩ registered ∩ supported.
    pub scope: Vec<String>,
    pub acr_values: Vec<String>,
    pub claims: Option<serde_json::Value>,
}

/// Validate a device authorization request (RFC 8628 §3.1) of an authenticated `client`.
pub fn validate(client: &Client, params: &[(String, String)]) -> Result<DeviceRequest, OAuthError> {
    if !client.allows_grant(GrantType::DeviceCode) {
        return Err(OAuthError::unauthorized_client(format!(
            "client `{}` is not registered for the device grant ({GRANT_TYPE})",
            client.client_id
        )));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    for k in ["scope", "acr_values", "claims"] {
        if params.iter().filter(|(n, _)| n == k).count() > 1 {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{k}` is repeated"
            )));
        }
    }
    for (name, max) in STORED_BOUNDS {
        if let Some(v) = get(name)
            && v.len() > *max
        {
            return Err(OAuthError::invalid_request(format!(
                "{name} is longer than {max} bytes"
            )));
        }
    }
    let requested: Vec<&str> = get("scope").unwrap_or("").split_whitespace().collect();
    if !requested.contains(&"openid") {
        return Err(OAuthError::invalid_scope("scope must include `openid`"));
    }
    let mut scope: Vec<String> = Vec::new();
    for s in requested {
        if SUPPORTED_SCOPES.contains(&s)
            && client.scopes.contains(s)
            && !scope.iter().any(|x| x == s)
        {
            scope.push(s.to_string());
        }
    }
    let claims = match get("claims") {
        None => None,
        Some(s) => {
            let v: serde_json::Value = serde_json::from_str(s).map_err(|e| {
                OAuthError::invalid_request(format!("claims is not valid JSON: {e}"))
            })?;
            if !v.is_object() {
                return Err(OAuthError::invalid_request("claims must be a JSON object"));
            }
            if let Some(bad) = bad_purpose(&v) {
                return Err(OAuthError::invalid_request(format!(
                    "the purpose of claim `{bad}` must be 3 to 300 characters (OpenID Connect for Identity Assurance §6)"
                )));
            }
            Some(v)
        }
    };
    Ok(DeviceRequest {
        scope,
        acr_values: get("acr_values")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        claims,
    })
}

/// A user code from 64 random bits: eight letters of [`USER_CODE_ALPHABET`] (the bias of the
/// reduction is below 2^-29).
pub fn user_code(random: u64) -> String {
    let mut n = random;
    (0..USER_CODE_LEN)
        .map(|_| {
            let c = USER_CODE_ALPHABET[(n % 20) as usize] as char;
            n /= 20;
            c
        })
        .collect()
}

/// A user code as shown: `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len().min(USER_CODE_LEN / 2));
    format!("{a}-{b}")
}

/// A user code as typed: case, dashes and spaces do not matter; anything else that is not a
/// letter of the alphabet makes it no user code.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\u{3000}' | 'ー' | '－'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// Where a device grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Redeemed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Redeemed => "redeemed",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Approved,
            Status::Denied,
            Status::Redeemed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// What a poll of the token endpoint gets (RFC 8628 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The tokens: the approval's code is redeemed now.
    Redeem,
    /// `authorization_pending` (the poll is recorded).
    Pending,
    /// `slow_down`: sooner than the interval after the last poll; the interval grows by 5 s.
    SlowDown,
    Expired,
    Denied,
    /// The tokens were fetched already.
    Used,
}

/// How to answer a poll of a grant in `status`, expiring at `expires_at`, last polled at
/// `last_poll`, with the current `interval`.
pub fn poll(
    status: Status,
    expires_at: i64,
    last_poll: Option<i64>,
    interval: i64,
    now: i64,
) -> Poll {
    match status {
        Status::Redeemed => Poll::Used,
        _ if now >= expires_at => Poll::Expired,
        Status::Denied => Poll::Denied,
        Status::Approved => Poll::Redeem,
        Status::Pending if last_poll.is_some_and(|t| now - t < interval) => Poll::SlowDown,
        Status::Pending => Poll::Pending,
    }
}

/// The error a poll answers with, when it is not the tokens.
pub fn poll_error(p: Poll) -> Option<OAuthError> {
    match p {
        Poll::Redeem => None,
        Poll::Pending => Some(OAuthError::authorization_pending(
            "the person has not approved the request yet",
        )),
        Poll::SlowDown => Some(OAuthError::slow_down(
            "polled sooner than the interval; wait 5 seconds longer from now on",
        )),
        Poll::Expired => Some(OAuthError::expired_token(
            "the device code expired; start again with /device_authorization",
        )),
        Poll::Denied => Some(OAuthError::access_denied("the person declined the request")),
        Poll::Used => Some(OAuthError::invalid_grant(
            "the device code was used already",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::ErrorCode;

    fn client(grants: &str) -> Client {
        let text = format!(
            "client_id = \"tv\"\ndisplay_name = \"TV\"\nkind = \"catv\"\ntoken_endpoint_auth_method = \"none\"\nscopes = [\"openid\", \"profile\"]\nsector_identifier = \"tv.example.jp\"\ngrant_types = {grants}\n"
        );
        crate::registry::parse_client(std::path::Path::new("tv.toml"), &text).unwrap()
    }

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_a_client_registered_for_the_grant_may_ask_and_scopes_are_narrowed() {
        let tv = client(&format!("[\"{GRANT_TYPE}\", \"refresh_token\"]"));
        let r = validate(&tv, &params(&[("scope", "openid profile address")])).unwrap();
        assert_eq!(r.scope, ["openid", "profile"]);
        let e = validate(&tv, &params(&[("scope", "profile")])).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        let e = validate(&tv, &params(&[("scope", "openid"), ("scope", "openid")])).unwrap_err();
        assert_eq!(e.description, "parameter `scope` is repeated");
        let e = validate(&tv, &params(&[("scope", "openid"), ("claims", "[1]")])).unwrap_err();
        assert_eq!(e.description, "claims must be a JSON object");
        let long = "a".repeat(1025);
        let e = validate(&tv, &params(&[("scope", "openid"), ("acr_values", &long)])).unwrap_err();
        assert_eq!(e.description, "acr_values is longer than 1024 bytes");
        let web =
            client("[\"authorization_code\"]\nredirect_uris = [\"https://tv.example.jp/cb\"]");
        let e = validate(&web, &params(&[("scope", "openid")])).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnauthorizedClient);
        assert!(
            e.description
                .contains("not registered for the device grant"),
            "{e}"
        );
    }

    #[test]
    fn user_codes_are_unambiguous_and_typed_loosely() {
        let c = user_code(u64::MAX);
        assert_eq!(c.len(), 8);
        assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        for bad in [b'0', b'O', b'1', b'I', b'A', b'E', b'U'] {
            assert!(!USER_CODE_ALPHABET.contains(&bad), "{}", bad as char);
        }
        assert_ne!(user_code(1), user_code(2));
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code(" BCDF GHJK ").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(normalize_user_code("BCDF-GHJ0"), None);
        assert_eq!(normalize_user_code("BCDF-GHJKL"), None);
    }

    #[test]
    fn polls_are_answered_as_rfc_8628_says() {
        use Poll::*;
        let p = |s, last, now| poll(s, 100, last, 5, now);
        assert_eq!(p(Status::Pending, None, 10), Pending);
        assert_eq!(p(Status::Pending, Some(10), 14), SlowDown);
        assert_eq!(p(Status::Pending, Some(10), 15), Pending);
        assert_eq!(p(Status::Pending, Some(10), 100), Expired);
        assert_eq!(p(Status::Denied, None, 20), Denied);
        assert_eq!(
            p(Status::Approved, Some(19), 20),
            Redeem,
            "an approval is not slowed"
        );
        assert_eq!(p(Status::Approved, None, 100), Expired);
        assert_eq!(p(Status::Redeemed, None, 200), Used);
        let code = |x| poll_error(x).unwrap().code;
        assert_eq!(code(Pending), ErrorCode::AuthorizationPending);
        assert_eq!(code(SlowDown), ErrorCode::SlowDown);
        assert_eq!(code(Expired), ErrorCode::ExpiredToken);
        assert_eq!(code(Denied), ErrorCode::AccessDenied);
        assert_eq!(code(Used), ErrorCode::InvalidGrant);
        assert!(poll_error(Redeem).is_none());
        assert_eq!(ErrorCode::SlowDown.as_str(), "slow_down");
        assert_eq!(Status::parse("approved"), Some(Status::Approved));
        assert_eq!(Status::parse("other"), None);
    }
}
