//! HTTP: the router, request parsing, and the one mapping from errors to responses.
//! Handlers parse, call the protocol functions, and serialize; no protocol logic here.

use crate::app::Broker;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use std::sync::Arc;

mod card;
pub mod demo;
mod device;
mod error;
mod login;
mod logout;
mod oauth;
pub mod pages;
mod passkey;
pub mod revocation;
mod serve;
mod signatures;

pub use error::ApiError;
pub use serve::serve;

/// Shared state of every handler: the running broker, and what only the HTTP layer keeps (the
/// APIs' per-client rate limits).
#[derive(Clone)]
pub struct AppState {
    broker: Arc<Broker>,
    pub(crate) rate_limits: Arc<signatures::RateLimits>,
}

impl std::ops::Deref for AppState {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        &self.broker
    }
}

/// The whole router.
pub fn app(broker: Arc<Broker>) -> Router {
    // In demo mode the broker is also the demo PKI's OCSP responder and CRL publisher.
    let demo = match (broker.demo(), broker.demo_ca()) {
        (true, Some(ca)) => demo::demo_routes(demo::DemoResponder {
            ca,
            clock: broker.clock.clone(),
        }),
        _ => Router::new(),
    };
    let state = AppState {
        broker: broker.clone(),
        rate_limits: Arc::default(),
    };
    // The signature API takes larger bodies (batches) than the OAuth endpoints.
    let api = Router::new()
        .route(
            "/api/v1/signatures/verify",
            axum::routing::post(signatures::verify),
        )
        .route(
            "/api/v1/signatures/verify-batch",
            axum::routing::post(signatures::verify_batch),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            broker.policy().signatures.max_body_bytes,
        ))
        .with_state(state.clone());
    Router::new()
        .route("/", get(login::index))
        .route("/healthz", get(|| async { "ok" }))
        .route("/favicon.svg", get(pages::favicon))
        .route(
            "/.well-known/apple-app-site-association",
            get(card::apple_app_site_association),
        )
        .route("/.well-known/assetlinks.json", get(card::assetlinks))
        .route("/.well-known/openid-configuration", get(oauth::discovery))
        .route("/jwks", get(oauth::jwks))
        .route(
            "/authorize",
            get(oauth::authorize_get).post(oauth::authorize_post),
        )
        .route(
            "/token",
            axum::routing::post(oauth::token).layer(axum::middleware::map_response(write_together)),
        )
        .route(
            "/userinfo",
            get(oauth::userinfo_get).post(oauth::userinfo_post),
        )
        .route("/par", axum::routing::post(oauth::par))
        .route(
            "/device_authorization",
            axum::routing::post(device::device_authorization),
        )
        .route(
            "/device",
            get(device::device_page).post(device::device_post),
        )
        .route("/device/callback", get(device::device_callback))
        .route("/logout", get(logout::logout_get).post(logout::logout_post))
        .route("/introspect", axum::routing::post(oauth::introspect))
        .route("/revoke", axum::routing::post(oauth::revoke))
        .route("/login/{tx}", get(login::login_page))
        .route("/login/{tx}/status", get(login::status))
        .route("/login/{tx}/continue", get(login::continue_login))
        .route(
            "/login/{tx}/passkey/begin",
            axum::routing::post(passkey::login_begin),
        )
        .route(
            "/login/{tx}/passkey/finish",
            axum::routing::post(passkey::login_finish),
        )
        .route("/account", get(passkey::account_page))
        .route("/account/login", get(passkey::account_login))
        .route("/account/callback", get(passkey::account_callback))
        .route(
            "/account/passkeys/begin",
            axum::routing::post(passkey::enrol_begin),
        )
        .route(
            "/account/passkeys/finish",
            axum::routing::post(passkey::enrol_finish),
        )
        .route(
            "/account/passkeys/{id}/{action}",
            axum::routing::post(passkey::passkey_action),
        )
        .route(
            "/consent/{tx}",
            get(login::consent_page).post(login::consent_post),
        )
        .route(
            "/card/v1/tx/{secret}",
            get(card::challenge).post(card::respond),
        )
        .route("/metrics", get(revocation::metrics))
        .route("/api/v1/openapi.json", get(signatures::openapi))
        .route(
            "/admin/revocation/purge",
            axum::routing::post(revocation::purge),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
        .merge(api)
        .merge(demo)
        .layer(axum::middleware::map_response(security_headers))
}

/// Under sustained load, lets the other requests that are ready run before this response is
/// written, so that responses leave in bursts rather than one between every two requests' work.
///
/// Each write to a client that is asleep waiting for it wakes that client's thread, and
/// waking a thread on another core costs this core an inter-processor interrupt (a VM exit
/// on virtual machines; a reverse proxy on the same host is such a client). Written
/// together, the first response wakes the client and the ones after it find it awake.
/// Only once the runtime is saturated (see [`saturated`]): a response then waits at most for
/// the work of the requests that were ready with it, and a lone request is written at once.
/// Used on the token endpoint, where a response costs a signature (~25 µs, several wake-ups'
/// worth); on cheap responses (discovery, JWKS, userinfo) the extra turn of the runtime costs
/// more than the wake-ups it saves. Measured in docs/benchmarks.md.
async fn write_together(res: Response) -> Response {
    if saturated() {
        tokio::task::yield_now().await;
    }
    res
}

/// True once this thread's (current-thread) runtime has written [`SATURATED_AFTER`] responses
/// without parking (waiting for the network) in between.
fn saturated() -> bool {
    thread_local! {
        /// The runtime's park count when last seen, and responses written since it changed.
        static SINCE_PARK: std::cell::Cell<(u64, u32)> = const { std::cell::Cell::new((u64::MAX, 0)) };
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    if rt.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        return false;
    }
    let parks = rt.metrics().worker_park_count(0);
    SINCE_PARK.with(|c| {
        let (seen, n) = c.get();
        let n = if seen == parks {
            n.saturating_add(1)
        } else {
            0
        };
        c.set((parks, n));
        n >= SATURATED_AFTER
    })
}

/// Responses written back to back, without the runtime once waiting for work, that mark it
/// saturated.
const SATURATED_AFTER: u32 = 32;

async fn security_headers(mut res: Response) -> Response {
    let unavailable = res.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE;
    let h = res.headers_mut();
    if unavailable {
        // Every 503 (database away, revocation source down) may be retried shortly.
        h.entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static("2"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
    {
        // Pages set their own policy with a nonce (`pages::render`); any other HTML gets one
        // that runs nothing.
        h.entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    res
}

/// Value of cookie `name`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure when the issuer is https.
pub(crate) fn set_cookie(b: &Broker, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if b.config.issuer.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

pub(crate) const SESSION_COOKIE: &str = "broker_session";

/// The transaction cookie of `tx_id` (one per transaction, so two tabs can log in at once).
pub(crate) fn tx_cookie_name(tx_id: &str) -> String {
    format!("broker_tx_{tx_id}")
}

/// Decode an `application/x-www-form-urlencoded` body or query into pairs. Every name and
/// value must be UTF-8 once percent-decoded: a parameter that is not is refused (naming it),
/// never altered — a `state` changed by lossy decoding would come back to the relying party as
/// something it never sent.
pub(crate) fn form_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, crate::oidc::OAuthError> {
    fn decode(part: &[u8]) -> Result<String, Vec<u8>> {
        let plus_as_space: Vec<u8> = part
            .iter()
            .map(|&c| if c == b'+' { b' ' } else { c })
            .collect();
        let raw: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
        String::from_utf8(raw).map_err(|e| e.into_bytes())
    }
    let mut out = Vec::new();
    for pair in bytes.split(|&c| c == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|&c| c == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        let name = decode(k).map_err(|raw| {
            crate::oidc::OAuthError::invalid_request(format!(
                "a parameter name (`{}`) is not valid UTF-8",
                String::from_utf8_lossy(&raw)
            ))
        })?;
        let value = decode(v).map_err(|_| {
            crate::oidc::OAuthError::invalid_request(format!(
                "parameter `{name}` is not valid UTF-8 once percent-decoded"
            ))
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// The credentials of an `Authorization` header in `scheme` (compared case-insensitively, as
/// RFC 9110 §11.1 says auth schemes are), trimmed.
pub(crate) fn auth_credentials<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (s, rest) = v.trim_start().split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// The address a request came from: the connection's peer (put into the request by
/// [`serve`]), or — with `limits.trust_forwarded_for`, behind a reverse proxy — the last
/// address of `X-Forwarded-For`. None when neither is known (requests made in-process).
pub(crate) fn source_addr(
    b: &Broker,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
) -> Option<std::net::IpAddr> {
    if b.config.limits.trust_forwarded_for {
        // Only the last entry is the proxy's own; the ones before it are the client's to
        // choose. One that does not parse is not skipped for an earlier one.
        let last = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok());
        if last.is_some() {
            return last;
        }
    }
    peer.map(|p| p.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Responses written back to back mark the runtime saturated after `SATURATED_AFTER` of
    /// them; one wait for work (a park) starts the count over.
    #[test]
    fn saturated_after_responses_without_a_park_and_not_after_a_park() {
        assert!(!saturated(), "outside a runtime, never saturated");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let first: Vec<bool> = (0..=SATURATED_AFTER + 2).map(|_| saturated()).collect();
            // The first call records the park count; SATURATED_AFTER more find it unchanged.
            let at = first.iter().position(|&s| s).expect("never saturated");
            assert_eq!(at, SATURATED_AFTER as usize);
            assert!(first[at..].iter().all(|&s| s));
            // Nothing else is ready: sleeping parks the runtime.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            assert!(!saturated(), "a park must end saturation");
            assert!(!saturated(), "the count starts over after a park");
        });
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        multi.block_on(async {
            assert!((0..SATURATED_AFTER * 2).all(|_| !saturated()));
        });
    }
}
