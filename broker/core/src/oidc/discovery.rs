//! OpenID Provider metadata (OIDC Discovery 1.0 §3, RFC 8414, RFC 9207, and OpenID Connect for
//! Identity Assurance 1.0 §8).

use crate::registry::{SUPPORTED_CLAIMS, SUPPORTED_SCOPES};
use serde_json::{Map, Value, json};

/// Evidence types the broker puts into `verification.evidence`: the signature certificate
/// (`authn::proofing::ProofingEvidence`, type `electronic_signature`).
pub const EVIDENCE_SUPPORTED: &[&str] = &["electronic_signature"];

/// Claims that can appear inside `verified_claims.claims` (what `oidc::claims` puts there: the
/// basic four, each substitute-character map travelling with its name/address).
/// OIDC4IDA §8: claims not listed here shall not be returned within `verified_claims`.
pub const CLAIMS_IN_VERIFIED_CLAIMS: &[&str] = &[
    "name",
    "name_substituted",
    "birthdate",
    "gender",
    "address",
    "address_substituted",
];

/// The OpenID Connect for Identity Assurance 1.0 (final, 2024) OP metadata, §8 "OP metadata":
///
/// - `trust_frameworks_supported` — Required, at least one member: the policy's
///   `[proofing] trust_framework` (the only framework `verified_claims` is issued under).
/// - `claims_in_verified_claims_supported` — Required, at least one member.
/// - `evidence_supported` — Required when any evidence type is supported; members are the
///   evidence types of the Schema Definition 1.0 (`electronic_signature` here).
///
/// §8 defines per-type companion metadata only for `document` (`documents_supported`, required;
/// `documents_methods_supported`, `documents_check_methods_supported`, optional) and
/// `electronic_record` (`electronic_records_supported`, required). It defines none for
/// `electronic_signature` — there is no "signature types supported" member — so none is
/// published. `verified_claims_supported` (a boolean of earlier drafts) is not in the final
/// text. `claims_parameter_supported`, which §8 also asks for, is in [`metadata`]; aggregated
/// and distributed claims are not supported, so no `claim_types_supported`.
pub fn ida_metadata(trust_framework: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "trust_frameworks_supported".into(),
        json!([trust_framework]),
    );
    m.insert("evidence_supported".into(), json!(EVIDENCE_SUPPORTED));
    m.insert(
        "claims_in_verified_claims_supported".into(),
        json!(CLAIMS_IN_VERIFIED_CLAIMS),
    );
    m
}

/// `claims_supported` (Discovery §3: the claims the OP may be able to supply values for): the
/// ID token claims, then the personal claims, each substitute-character map after the claim
/// it travels with (they are released together, top level and inside `verified_claims`).
///
/// `verified_claims` is not listed: it is a container, not a value-bearing claim one can ask
/// for with `null`; OIDC4IDA §8 advertises support for it through its own members above, and
/// RPs (and the OpenID eKYC conformance tests) treat `claims_supported` entries that are not in
/// `claims_in_verified_claims_supported` as plain claims to request.
pub fn claims_supported() -> Vec<&'static str> {
    let mut claims: Vec<&str> = vec![
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "at_hash",
    ];
    for c in SUPPORTED_CLAIMS.iter().filter(|c| **c != "verified_claims") {
        claims.push(c);
        match *c {
            "name" => claims.push("name_substituted"),
            "address" => claims.push("address_substituted"),
            _ => {}
        }
    }
    claims
}

/// The provider's metadata for `iss` under `policy`.
pub fn metadata(iss: &str, policy: &crate::registry::policy::Policy) -> Value {
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ];
    let mut meta = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "device_authorization_endpoint": format!("{iss}/device_authorization"),
        "pushed_authorization_request_endpoint": format!("{iss}/par"),
        // Per client in its RP file (always for fapi2); not for every client.
        "require_pushed_authorization_requests": false,
        "end_session_endpoint": format!("{iss}/logout"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "revocation_endpoint": format!("{iss}/revoke"),
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", super::device::GRANT_TYPE],
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256", "PS256"],
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "PS256", "RS256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": &auth_methods[..3],
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims_supported(),
        "claims_parameter_supported": true,
        "acr_values_supported": policy.acr_values(),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": ["ja", "en"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": true,
        "request_object_signing_alg_values_supported": super::jar::ALGS,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
    });
    if let Value::Object(m) = &mut meta {
        m.extend(ida_metadata(&policy.proofing.trust_framework));
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::proofing::{IdentityClaims, ProofingEvidence};
    use crate::oidc::claims::{Identity, Target, release};

    const TF: &str = "https://jpki-broker.example/trust-framework/jpki-signature";

    #[test]
    fn ida_metadata_has_the_required_members_of_oidc4ida_section_8() {
        let m = ida_metadata(TF);
        assert_eq!(m["trust_frameworks_supported"], json!([TF]));
        assert_eq!(m["evidence_supported"], json!(["electronic_signature"]));
        assert_eq!(
            m["claims_in_verified_claims_supported"],
            json!([
                "name",
                "name_substituted",
                "birthdate",
                "gender",
                "address",
                "address_substituted"
            ])
        );
        // Only the final spec's members: no draft-era boolean, no invented per-type list.
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(!m.contains_key("verified_claims_supported"));
        // Every list has at least one member (§8 "shall have at least one member").
        for (k, v) in &m {
            assert!(!v.as_array().unwrap().is_empty(), "{k} is empty");
        }
        // A different policy framework is what is advertised.
        assert_eq!(
            ida_metadata("jp_aml")["trust_frameworks_supported"],
            json!(["jp_aml"])
        );
    }

    #[test]
    fn claims_supported_lists_substitute_maps_but_not_the_container() {
        let c = claims_supported();
        for want in [
            "sub",
            "name",
            "name_substituted",
            "address",
            "address_substituted",
        ] {
            assert!(c.contains(&want), "{want} missing from {c:?}");
        }
        assert!(!c.contains(&"verified_claims"));
        let pos = |n: &str| c.iter().position(|x| *x == n).unwrap();
        assert_eq!(pos("name_substituted"), pos("name") + 1);
        assert_eq!(pos("address_substituted"), pos("address") + 1);
        let mut dedup = c.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), c.len(), "duplicates in {c:?}");
        // Everything that may appear in verified_claims is also a claim the OP can supply.
        for v in CLAIMS_IN_VERIFIED_CLAIMS {
            assert!(c.contains(v), "{v}");
        }
    }

    /// What `oidc::claims::release` actually puts into `verified_claims` stays inside what
    /// discovery advertises (§8: claims not in the list shall not be returned there).
    #[test]
    fn advertised_lists_cover_what_claims_release_emits() {
        let client = crate::registry::parse_client(
            std::path::Path::new("t.toml"),
            r#"client_id = "t"
display_name = "T"
kind = "other"
redirect_uris = ["https://rp.example/cb"]
token_endpoint_auth_method = "none"
scopes = ["openid", "profile", "address"]
claims = ["name", "birthdate", "gender", "address", "verified_claims"]
"#,
        )
        .unwrap();
        let ids = IdentityClaims {
            name: "山田\u{3000}太郎".into(),
            name_substituted: "00000".into(),
            birthdate: "1990-01-02".into(),
            birthdate_era: 4,
            gender_code: "1".into(),
            address: "東京都千代田区".into(),
            address_substituted: "0000000".into(),
        };
        let evidence = ProofingEvidence {
            kind: "electronic_signature".into(),
            signature_type: "jpki_signature_certificate".into(),
            issuer: "CN=Demo".into(),
            serial_number: "01".into(),
            created_at: "2024-01-01T00:00:00Z".into(),
        };
        let id = Identity {
            claims: &ids,
            evidence: &evidence,
            verified_at: 1_700_000_000,
        };
        // No `claims` member: the broker's default set (all four).
        let param =
            json!({"userinfo": {"verified_claims": {"verification": {"trust_framework": null}}}});
        let out = release(&client, &[], Some(&param), Some(&id), TF, Target::Userinfo);
        let vc = &out["verified_claims"];
        let meta = ida_metadata(TF);
        assert_eq!(
            vc["verification"]["trust_framework"],
            meta["trust_frameworks_supported"][0]
        );
        let claims = vc["claims"].as_object().unwrap();
        assert!(!claims.is_empty());
        for k in claims.keys() {
            assert!(
                CLAIMS_IN_VERIFIED_CLAIMS.contains(&k.as_str()),
                "`{k}` is released in verified_claims but not advertised"
            );
        }
        for e in vc["verification"]["evidence"].as_array().unwrap() {
            let t = e["type"].as_str().unwrap();
            assert!(EVIDENCE_SUPPORTED.contains(&t), "{t}");
        }
    }
}
