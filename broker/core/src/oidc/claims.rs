//! Which personal claims leave, and in what form: the standard claims (name, birthdate,
//! gender, address) and OpenID Connect for Identity Assurance 1.0 `verified_claims`.
//!
//! A claim leaves only when (1) the RP's registration allows it, (2) the request asks for it
//! (scope, or the `claims` parameter), (3) the person consented to that request, and (4) the
//! account's verified claims are current (not stale). Pure functions: the caller loads the data.

use super::authorize::AuthRequest;
use crate::authn::proofing::{IdentityClaims, ProofingEvidence};
use crate::registry::Client;
use serde_json::{Map, Value, json};

/// The identity claims a scope stands for.
pub fn scope_claims(scope: &str) -> &'static [&'static str] {
    match scope {
        "profile" => &["name", "birthdate", "gender"],
        "name" => &["name"],
        "birthdate" => &["birthdate"],
        "gender" => &["gender"],
        "address" => &["address"],
        _ => &[],
    }
}

/// Where claims are going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Userinfo,
    IdToken,
}

impl Target {
    fn member(self) -> &'static str {
        match self {
            Target::Userinfo => "userinfo",
            Target::IdToken => "id_token",
        }
    }
}

/// Claim names asked for `target` (scopes count for userinfo only, as OIDC Core §5.4 says for
/// the code flow), limited to what the client may receive.
pub fn requested(
    client: &Client,
    scope: &[String],
    claims: Option<&Value>,
    target: Target,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |c: &str| {
        if client.claims.contains(c) && !out.iter().any(|x| x == c) {
            out.push(c.to_string());
        }
    };
    if target == Target::Userinfo {
        for s in scope {
            for c in scope_claims(s) {
                add(c);
            }
        }
    }
    if let Some(Value::Object(m)) = claims.and_then(|c| c.get(target.member())) {
        for k in m.keys() {
            add(k);
        }
    }
    out
}

/// Does the request ask for any personal data (so the account must be proofed)?
pub fn wants_identity(client: &Client, req: &AuthRequest) -> bool {
    [Target::Userinfo, Target::IdToken]
        .iter()
        .any(|t| !requested(client, &req.scope, req.claims.as_ref(), *t).is_empty())
}

/// The items a person consents to for this request: the granted scopes other than `openid`,
/// and `claim:NAME` for each claim asked for through the `claims` parameter. Sorted. Empty
/// means nothing beyond a pairwise identifier leaves, and no consent page is shown.
pub fn consent_items(client: &Client, req: &AuthRequest) -> Vec<String> {
    let mut items: Vec<String> = req
        .scope
        .iter()
        .filter(|s| *s != "openid")
        .cloned()
        .collect();
    for t in [Target::Userinfo, Target::IdToken] {
        if let Some(Value::Object(m)) = req.claims.as_ref().and_then(|c| c.get(t.member())) {
            for k in m.keys() {
                let item = format!("claim:{k}");
                if client.claims.contains(k.as_str()) && !items.contains(&item) {
                    items.push(item);
                }
            }
        }
    }
    items.sort();
    items.dedup();
    items
}

/// The stored identity of an account, as released.
pub struct Identity<'a> {
    pub claims: &'a IdentityClaims,
    pub evidence: &'a ProofingEvidence,
    /// When the verification happened (unix seconds).
    pub verified_at: i64,
}

fn standard(id: &IdentityClaims, name: &str) -> Option<Vec<(String, Value)>> {
    Some(match name {
        "name" => vec![
            ("name".into(), json!(id.name)),
            // The substitute-character map travels with the name it describes.
            ("name_substituted".into(), json!(id.name_substituted)),
        ],
        "birthdate" => vec![("birthdate".into(), json!(id.birthdate))],
        "gender" => vec![("gender".into(), json!(id.gender()))],
        "address" => vec![
            (
                "address".into(),
                json!({ "formatted": id.address, "country": "JP" }),
            ),
            ("address_substituted".into(), json!(id.address_substituted)),
        ],
        _ => return None,
    })
}

/// Does a `verification` request's constraint on `trust_framework` accept `ours`?
/// (OIDC4IDA §6: an unmet constraint omits `verified_claims`, it is not an error.)
fn framework_accepted(request: &Value, ours: &str) -> bool {
    let Some(tf) = request.pointer("/verification/trust_framework") else {
        return true;
    };
    if let Some(v) = tf.get("value") {
        return v.as_str() == Some(ours);
    }
    if let Some(Value::Array(vs)) = tf.get("values") {
        return vs.iter().any(|v| v.as_str() == Some(ours));
    }
    true
}

/// Does a claim request's `value` / `values` constraint (OIDC Core §5.5.1) accept `actual`?
fn value_accepted(request: &Value, actual: &Value) -> bool {
    if let Some(v) = request.get("value") {
        return v == actual;
    }
    if let Some(Value::Array(vs)) = request.get("values") {
        return vs.contains(actual);
    }
    true
}

/// The claims to put into `target` for this grant.
pub fn release(
    client: &Client,
    scope: &[String],
    claims_param: Option<&Value>,
    identity: Option<&Identity<'_>>,
    trust_framework: &str,
    target: Target,
) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(id) = identity else { return out };
    for name in requested(client, scope, claims_param, target) {
        if let Some(pairs) = standard(id.claims, &name) {
            out.extend(pairs);
        }
    }
    let vc_request = claims_param
        .and_then(|c| c.get(target.member()))
        .and_then(|m| m.get("verified_claims"));
    if let Some(vreq) = vc_request
        && client.claims.contains("verified_claims")
        && framework_accepted(vreq, trust_framework)
    {
        let wanted: Vec<(String, Value)> = match vreq.get("claims") {
            Some(Value::Object(m)) if !m.is_empty() => {
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            _ => ["name", "birthdate", "gender", "address"]
                .map(|n| (n.to_string(), Value::Null))
                .to_vec(),
        };
        let mut claims = Map::new();
        for (name, constraint) in wanted {
            // Only claims the registration allows leave, inside verified_claims too; a claim
            // whose `value`/`values` constraint the person's data does not meet is omitted
            // (OpenID Connect for Identity Assurance §6: never a value that was not asked for).
            if client.claims.contains(name.as_str())
                && let Some(pairs) = standard(id.claims, &name)
                && value_accepted(&constraint, &pairs[0].1)
            {
                claims.extend(pairs);
            }
        }
        if !claims.is_empty() {
            let time = time::OffsetDateTime::from_unix_timestamp(id.verified_at)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            out.insert(
                "verified_claims".into(),
                json!({
                    "verification": {
                        "trust_framework": trust_framework,
                        "time": time,
                        "evidence": [id.evidence],
                    },
                    "claims": claims,
                }),
            );
        }
    }
    out
}
