//! Back-channel logout delivery (OpenID Connect Back-Channel Logout 1.0 §2.5–2.8): the logout
//! tokens `service::logout` queued with the session's end are POSTed to each relying party's
//! `backchannel_logout_uri` by whichever broker process leases them first (`Store::lease_logouts`:
//! one process per token), signed at the moment of sending (a token waits in the outbox as its
//! claims, so a retry hours later is not an expired token), retried with backoff while the
//! receiver is away — across restarts, since the outbox is in the database — and given up on
//! after a day. An HTTP client at the edge, like the revocation fetcher.

use crate::app::Broker;
use crate::store::{OutboxRecord, StoreError};
use serde_json::json;

/// The event a logout token carries.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Seconds one process holds a leased token before another may try it.
const LEASE: i64 = 30;
/// Tokens leased per round.
const BATCH: i64 = 20;
/// Seconds after which an undelivered token is given up on.
const GIVE_UP_AFTER: i64 = 24 * 3600;
/// Seconds a logout token is valid from its sending (§2.4: short).
const TOKEN_LIFETIME: i64 = 120;

/// The client that sends logout tokens: short timeouts, no redirects (a receiver answers
/// itself, §2.8), no cookies.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// The logout token of `rec`, signed now with the client's ID-token algorithm (§2.4: `iss`,
/// `aud`, `iat`, `exp`, `jti`, `events`, `sub`, `sid`; never a `nonce`; `typ` logout+jwt).
pub fn logout_token(b: &Broker, rec: &OutboxRecord, now: i64) -> Option<String> {
    let client = b.registry().get(&rec.client_id).cloned()?;
    let mut claims = json!({
        "iss": b.issuer(),
        "aud": rec.client_id,
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
        "jti": rec.id,
        "events": { EVENT: {} },
        "sub": rec.sub,
    });
    if let Some(sid) = &rec.sid {
        claims["sid"] = json!(sid);
    }
    Some(
        b.keys()
            .sign(client.id_token_alg, Some("logout+jwt"), &claims, now),
    )
}

/// The Security Event Token of `rec` (RFC 8417): `typ` secevent+jwt; `iss`, `aud`, `iat`,
/// `jti`, `sub_id` and the stored `events`. The subject (OpenID SSF 1.0 §3) is the person as
/// that relying party knows them (format `iss_sub`), or — for an event about one session —
/// format `complex` with that `user` and the `session` (format `opaque`, the ID token's `sid`).
pub fn security_event_token(b: &Broker, rec: &OutboxRecord, now: i64) -> Option<String> {
    let client = b.registry().get(&rec.client_id).cloned()?;
    let events: serde_json::Value = serde_json::from_str(rec.event_json.as_deref()?).ok()?;
    let user = json!({ "format": "iss_sub", "iss": b.issuer(), "sub": rec.sub });
    let sub_id = match &rec.sid {
        Some(sid) => json!({
            "format": "complex",
            "user": user,
            "session": { "format": "opaque", "id": sid },
        }),
        None => user,
    };
    let claims = json!({
        "iss": b.issuer(),
        "aud": rec.client_id,
        "iat": now,
        "jti": rec.id,
        "sub_id": sub_id,
        "events": events,
    });
    Some(
        b.keys()
            .sign(client.id_token_alg, Some("secevent+jwt"), &claims, now),
    )
}

/// Seconds to wait after the `attempts`-th failure: 5 s, doubling, at most an hour.
pub fn backoff(attempts: i64) -> i64 {
    (5i64 << attempts.clamp(1, 20).saturating_sub(1)).min(3600)
}

/// Deliver the tokens due now (one round); how many were delivered.
pub async fn deliver_due(b: &Broker, http: &reqwest::Client) -> Result<usize, StoreError> {
    let now = b.now();
    let leased = b.store.lease_logouts(now, now + LEASE, BATCH).await?;
    let mut delivered = 0;
    for rec in leased {
        let sent = if rec.kind == "set" {
            // RFC 8935 §2: the SET as the body; 202 Accepted.
            security_event_token(b, &rec, b.now()).map(|set| {
                http.post(&rec.uri)
                    .header(reqwest::header::CONTENT_TYPE, "application/secevent+jwt")
                    .header(reqwest::header::ACCEPT, "application/json")
                    .body(set)
            })
        } else {
            logout_token(b, &rec, b.now()).map(|token| {
                http.post(&rec.uri)
                    .form(&[("logout_token", token.as_str())])
                    .header(reqwest::header::CACHE_CONTROL, "no-store")
            })
        };
        let outcome = match sent {
            None => Err("the relying party is no longer registered".to_string()),
            Some(request) => match request.send().await {
                Ok(r) if matches!(r.status().as_u16(), 200 | 202 | 204) => Ok(()),
                Ok(r) => Err(format!("the receiver answered {}", r.status().as_u16())),
                Err(e) => Err(if e.is_timeout() {
                    "the receiver did not answer in time".to_string()
                } else {
                    "the receiver could not be reached".to_string()
                }),
            },
        };
        let now = b.now();
        // Logout tokens and SETs share the outbox; the metrics tell them apart by `kind`.
        let kind = if rec.kind == "set" { "set" } else { "logout" };
        let what = if kind == "set" {
            "security event token"
        } else {
            "logout token"
        };
        match outcome {
            Ok(()) => {
                delivered += 1;
                metrics::counter!("broker_backchannel_logout_delivered_total", "kind" => kind)
                    .increment(1);
                tracing::info!(client = %rec.client_id, jti = %rec.id, "{what} delivered");
                b.store.settle_logout(&rec.id, now, Ok(())).await?;
            }
            Err(why) if now - rec.created_at >= GIVE_UP_AFTER => {
                metrics::counter!("broker_backchannel_logout_failed_total", "kind" => kind)
                    .increment(1);
                tracing::warn!(client = %rec.client_id, jti = %rec.id, attempts = rec.attempts, error = %why, "{what} given up on");
                b.store
                    .settle_logout(&rec.id, now, Err((&why, None)))
                    .await?;
            }
            Err(why) => {
                metrics::counter!("broker_backchannel_logout_retries_total", "kind" => kind)
                    .increment(1);
                let next = now + backoff(rec.attempts);
                tracing::info!(client = %rec.client_id, jti = %rec.id, attempts = rec.attempts, error = %why, retry_in = next - now, "{what} not delivered; retrying");
                b.store
                    .settle_logout(&rec.id, now, Err((&why, Some(next))))
                    .await?;
            }
        }
    }
    metrics::gauge!("broker_backchannel_logout_pending")
        .set(b.store.pending_logouts().await? as f64);
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour() {
        let b: Vec<i64> = (1..=12).map(super::backoff).collect();
        assert_eq!(&b[..5], &[5, 10, 20, 40, 80]);
        assert_eq!(b[11], 3600);
        assert_eq!(super::backoff(0), 5);
        assert_eq!(super::backoff(1000), 3600);
    }
}
