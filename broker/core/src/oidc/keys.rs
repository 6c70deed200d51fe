//! The broker's signing keys: created at first start, kept in the store, published as JWKS,
//! rotated with `broker keys rotate`. ES256 (P-256) signs access tokens and, by default, ID
//! tokens; an RSA-2048 key serves RP registrations that ask for RS256 or PS256 ID tokens.
//!
//! Rotation is a schedule in the store that every process reads: a new key is published the
//! moment it is stored and signs from its `activate_at` (a lead time later, so every process and
//! every RP's JWKS cache has it first); the key it replaces stays published until `retire_at`
//! (a grace period covering the tokens it signed), then is deleted. A [`KeySet`] holds what was
//! loaded and picks the signing key by the time of signing, so processes switch at the same
//! moment without talking to each other.

use crate::clock::{b64url, random_id};
use crate::registry::SigAlg;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};

/// A signing key as stored.
#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    pub private_pem: String,
    pub created_at: i64,
    pub status: String,
    /// Signs from this time on; published from the moment it is stored.
    pub activate_at: i64,
    /// Unpublished (and deleted) from this time on; set when a newer key takes over.
    pub retire_at: Option<i64>,
}

enum Material {
    Ec(EcdsaKeyPair, jsonwebtoken::DecodingKey),
    Rsa(RsaKeyPair),
}

struct SigningKey {
    kid: String,
    alg: &'static str,
    activate_at: i64,
    /// Unpublished and no longer verifying from this time (also between two loads).
    retire_at: Option<i64>,
    material: Material,
    jwk: Value,
}

impl SigningKey {
    fn live(&self, now: i64) -> bool {
        self.retire_at.is_none_or(|r| r > now)
    }
}

/// Is `k` a key of `alg` that signs (or may sign) at `now`?
pub fn active_record(k: &SigningKeyRecord, alg: &str, now: i64) -> bool {
    k.alg == alg && k.activate_at <= now && k.retire_at.is_none_or(|r| r > now)
}

/// Why an `id_token_hint` was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintError {
    /// Not a JWS, not ours (bad signature, wrong iss/aud/typ), or not for this client.
    Invalid,
    /// Signed by a key this broker no longer publishes (retired after a rotation): it cannot
    /// be checked, so it is ignored rather than refused.
    UnknownKey,
}

/// The published keys, as loaded from the store at one moment.
pub struct KeySet {
    /// EC keys first, then RSA; each by activation, oldest first.
    keys: Vec<SigningKey>,
    rng: SystemRandom,
    /// The serialized JWKS and the span of time [from, until) it is right for (it changes
    /// only when a key retires): /jwks is served from here without serializing.
    jwks_doc: RwLock<Option<(i64, i64, Bytes)>>,
    /// Access tokens whose signature this set verified, by SHA-256 of the token: a token
    /// presented again (userinfo, the signature API) skips the ECDSA verification (~40 µs). The
    /// entry holds what the signature proved; expiry and the key's retirement are checked on
    /// every use (revocation is the conductor's, in the store, on every use).
    verified: moka::sync::Cache<[u8; 32], (Arc<str>, Arc<Value>)>,
}

/// Verified access tokens remembered (a few hundred bytes each), and for how long at most.
const VERIFIED_TOKENS_CAPACITY: u64 = 20_000;
const VERIFIED_TOKENS_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key material: {0}")]
    Bad(String),
    #[error("no {0} key is active: start the broker once before rotating its keys")]
    NoActiveKey(String),
    #[error(
        "a rotation of {alg} keys is already pending: key {kid} starts signing at unix time {activate_at}"
    )]
    Pending {
        alg: String,
        kid: String,
        activate_at: i64,
    },
}

pub const EC_ALG: &str = "EC-P256";
pub const RSA_ALG: &str = "RSA-2048";
/// Generates a private key, PEM.
pub type Generate = fn() -> Result<String, KeyError>;
pub const ALGS: [(&str, Generate); 2] = [(EC_ALG, generate_ec), (RSA_ALG, generate_rsa)];

/// A fresh key record of `alg` that signs from `activate_at`.
pub fn new_record(alg: &str, now: i64, activate_at: i64) -> Result<SigningKeyRecord, KeyError> {
    let make = ALGS
        .iter()
        .find(|(a, _)| *a == alg)
        .map(|(_, m)| m)
        .ok_or_else(|| KeyError::Bad(format!("unknown key algorithm {alg}")))?;
    Ok(SigningKeyRecord {
        kid: random_id(),
        alg: alg.into(),
        private_pem: make()?,
        created_at: now,
        status: "active".into(),
        activate_at,
        retire_at: None,
    })
}

/// May the keys of `alg` be rotated now? (An active key exists and no rotation is pending.)
pub fn check_rotatable(recs: &[SigningKeyRecord], alg: &str, now: i64) -> Result<(), KeyError> {
    if let Some(k) = recs.iter().find(|k| k.alg == alg && k.activate_at > now) {
        return Err(KeyError::Pending {
            alg: alg.into(),
            kid: k.kid.clone(),
            activate_at: k.activate_at,
        });
    }
    if !recs.iter().any(|k| active_record(k, alg, now)) {
        return Err(KeyError::NoActiveKey(alg.into()));
    }
    Ok(())
}

impl KeySet {
    /// The keys published at `now` among `recs` (stored and not retired), each algorithm with
    /// a key that signs now.
    pub fn from_records(recs: &[SigningKeyRecord], now: i64) -> Result<KeySet, KeyError> {
        let mut keys = recs
            .iter()
            .filter(|k| k.retire_at.is_none_or(|r| r > now))
            .map(load_key)
            .collect::<Result<Vec<_>, _>>()?;
        // EC keys first, each algorithm by activation (the JWKS order is stable).
        keys.sort_by_key(|k| (k.alg != EC_ALG, k.activate_at));
        for (alg, _) in ALGS {
            if !keys.iter().any(|k| k.alg == alg && k.activate_at <= now) {
                return Err(KeyError::Bad(format!("no {alg} key is active")));
            }
        }
        Ok(KeySet {
            jwks_doc: RwLock::new(None),
            keys,
            rng: SystemRandom::new(),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS_CAPACITY)
                .time_to_live(VERIFIED_TOKENS_TTL)
                .build(),
        })
    }

    /// The JWK Set to publish at `now`: every loaded key not retired, including the next one
    /// before it signs.
    pub fn jwks(&self, now: i64) -> Value {
        let keys: Vec<&Value> = self
            .keys
            .iter()
            .filter(|k| k.live(now))
            .map(|k| &k.jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// [`KeySet::jwks`] serialized, computed again only when a key has retired since.
    pub fn jwks_json(&self, now: i64) -> Bytes {
        if let Some((from, until, doc)) = &*self.jwks_doc.read().unwrap_or_else(|e| e.into_inner())
            && (*from..*until).contains(&now)
        {
            return doc.clone();
        }
        let doc = Bytes::from(serde_json::to_vec(&self.jwks(now)).unwrap_or_default());
        let until = self
            .keys
            .iter()
            .filter_map(|k| k.retire_at)
            .filter(|r| *r > now)
            .min()
            .unwrap_or(i64::MAX);
        *self.jwks_doc.write().unwrap_or_else(|e| e.into_inner()) = Some((now, until, doc.clone()));
        doc
    }

    /// kids of the loaded keys, oldest activation first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The key of `alg` that signs at `now`: the latest activated.
    fn signing_key(&self, alg: &str, now: i64) -> &SigningKey {
        self.keys
            .iter()
            .rev()
            .find(|k| k.alg == alg && k.activate_at <= now && k.live(now))
            .or_else(|| self.keys.iter().find(|k| k.alg == alg))
            .expect("a KeySet holds an active key of every algorithm")
    }

    /// kid of the ES256 key that signs at `now` (access tokens).
    pub fn ec_kid(&self, now: i64) -> &str {
        &self.signing_key(EC_ALG, now).kid
    }

    /// Compact JWS of `claims` with `alg`, header `typ` if given, by the key active at `now`.
    pub fn sign(&self, alg: SigAlg, typ: Option<&str>, claims: &Value, now: i64) -> String {
        let key = match alg {
            SigAlg::ES256 => self.signing_key(EC_ALG, now),
            SigAlg::RS256 | SigAlg::PS256 => self.signing_key(RSA_ALG, now),
        };
        let mut header = json!({ "alg": alg.as_str(), "kid": key.kid });
        if let Some(t) = typ {
            header["typ"] = Value::String(t.to_string());
        }
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = match (&key.material, alg) {
            (Material::Ec(k, _), _) => k
                .sign(&self.rng, signing_input.as_bytes())
                .expect("ECDSA signing with a valid key")
                .as_ref()
                .to_vec(),
            (Material::Rsa(k), a) => {
                let pad: &'static dyn signature::RsaEncoding = if a == SigAlg::PS256 {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut out = vec![0u8; k.public_modulus_len()];
                k.sign(pad, &self.rng, signing_input.as_bytes(), &mut out)
                    .expect("RSA signing with a valid key");
                out
            }
        };
        format!("{signing_input}.{}", b64url(&sig))
    }

    /// Verify an ID token this broker issued (any published key; ES256, RS256 or PS256) and
    /// return its claims if `iss` is `issuer` and `aud` names `client_id`. Expiry is not checked:
    /// an `id_token_hint` may be an expired ID token (OIDC Core 3.1.2.1).
    pub fn verify_own_id_token(
        &self,
        token: &str,
        issuer: &str,
        client_id: &str,
        now: i64,
    ) -> Result<Value, HintError> {
        use aws_lc_rs::signature::UnparsedPublicKey;
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bad = HintError::Invalid;
        let mut parts = token.split('.');
        let (h, c, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(c), Some(s), None) => (h, c, s),
            _ => return Err(bad),
        };
        let header: Value = b64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(bad)?;
        // Our access tokens are JWTs too (typ at+jwt): never an ID token.
        if header["typ"] != "JWT" {
            return Err(bad);
        }
        let Some(key) = self
            .keys
            .iter()
            .find(|k| header["kid"] == k.kid.as_str() && k.live(now))
        else {
            return Err(HintError::UnknownKey);
        };
        let sig = b64.decode(s).map_err(|_| bad)?;
        let input = &token.as_bytes()[..h.len() + 1 + c.len()];
        let ok = match (&key.material, header["alg"].as_str().unwrap_or("")) {
            (Material::Ec(kp, _), "ES256") => UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                kp.public_key().as_ref(),
            )
            .verify(input, &sig)
            .is_ok(),
            (Material::Rsa(kp), alg @ ("RS256" | "PS256")) => {
                let scheme: &'static dyn signature::VerificationAlgorithm = if alg == "PS256" {
                    &signature::RSA_PSS_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                };
                UnparsedPublicKey::new(scheme, kp.public_key().as_ref())
                    .verify(input, &sig)
                    .is_ok()
            }
            _ => false,
        };
        if !ok {
            return Err(bad);
        }
        let claims: Value = b64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(bad)?;
        let aud_ok = match &claims["aud"] {
            Value::String(a) => a == client_id,
            Value::Array(a) => a.iter().any(|x| x == client_id),
            _ => false,
        };
        if claims["iss"] == issuer && aud_ok && claims["sub"].is_string() {
            Ok(claims)
        } else {
            Err(bad)
        }
    }

    /// Verify one of our own ES256 access tokens (`typ` at+jwt) and return its claims.
    /// Checks the signature by any published EC key, `typ`, `iss`, `exp`; audience is checked
    /// by the caller.
    pub fn verify_access_token(&self, token: &str, issuer: &str, now: i64) -> Option<Value> {
        self.verify_access_token_kid(token, issuer, now)
            .map(|(_, c)| c)
    }

    /// An access token of this broker, verified (signature by a published key, issuer,
    /// unexpired) — or recognised as one this set verified before. Revocation is the caller's.
    pub fn verified_access_token(&self, token: &str, issuer: &str, now: i64) -> Option<Arc<Value>> {
        let h = crate::clock::sha256(token.as_bytes());
        if let Some((kid, claims)) = self.verified.get(&h) {
            if claims["exp"].as_i64().is_some_and(|e| e > now) && self.ec_kid_live(&kid, now) {
                return Some(claims);
            }
            self.verified.invalidate(&h);
            return None;
        }
        let (kid, claims) = self.verify_access_token_kid(token, issuer, now)?;
        let claims = Arc::new(claims);
        self.verified.insert(h, (Arc::from(kid), claims.clone()));
        Some(claims)
    }

    /// [`KeySet::verify_access_token`], also naming the key that verified it.
    pub fn verify_access_token_kid(
        &self,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Option<(String, Value)> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != jsonwebtoken::Algorithm::ES256 || header.typ.as_deref() != Some("at+jwt") {
            return None;
        }
        let kid = header.kid?;
        let decoding = self.keys.iter().find_map(|k| match &k.material {
            Material::Ec(_, d) if k.kid == kid && k.live(now) => Some(d),
            _ => None,
        })?;
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_issuer(&[issuer]);
        v.validate_aud = false;
        // Expiry is judged by the broker's clock (`now`), as on the cached path, not by the
        // library's reading of the system clock.
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, decoding, &v)
            .ok()?
            .claims;
        claims["exp"]
            .as_i64()
            .is_some_and(|exp| exp > now)
            .then_some((kid, claims))
    }

    /// Is `kid` a published (not retired) EC key at `now`?
    pub fn ec_kid_live(&self, kid: &str, now: i64) -> bool {
        self.keys
            .iter()
            .any(|k| k.kid == kid && matches!(k.material, Material::Ec(..)) && k.live(now))
    }
}

fn generate_ec() -> Result<String, KeyError> {
    let doc = EcdsaKeyPair::generate_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .map_err(|_| KeyError::Bad("EC key generation failed".into()))?;
    Ok(pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        doc.as_ref().to_vec(),
    )))
}

fn generate_rsa() -> Result<String, KeyError> {
    use aws_lc_rs::encoding::AsDer;
    let k = RsaKeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| KeyError::Bad("RSA key generation failed".into()))?;
    let der = k
        .as_der()
        .map_err(|_| KeyError::Bad("RSA key encoding failed".into()))?;
    Ok(pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        der.as_ref().to_vec(),
    )))
}

fn load_key(rec: &SigningKeyRecord) -> Result<SigningKey, KeyError> {
    let p = pem::parse(&rec.private_pem).map_err(|e| KeyError::Bad(e.to_string()))?;
    let bad = |what: &str| KeyError::Bad(format!("key {}: {what}", rec.kid));
    let (alg, material) = match rec.alg.as_str() {
        EC_ALG => {
            let k =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, p.contents())
                    .map_err(|_| bad("not a P-256 PKCS#8 key"))?;
            let pt = k.public_key().as_ref();
            let d = jsonwebtoken::DecodingKey::from_ec_components(
                &b64url(&pt[1..33]),
                &b64url(&pt[33..65]),
            )
            .map_err(|e| bad(&e.to_string()))?;
            (EC_ALG, Material::Ec(k, d))
        }
        RSA_ALG => {
            let k =
                RsaKeyPair::from_pkcs8(p.contents()).map_err(|_| bad("not an RSA PKCS#8 key"))?;
            (RSA_ALG, Material::Rsa(k))
        }
        other => return Err(bad(&format!("unknown algorithm {other}"))),
    };
    let jwk = jwk(&rec.kid, &material);
    Ok(SigningKey {
        kid: rec.kid.clone(),
        alg,
        activate_at: rec.activate_at,
        retire_at: rec.retire_at,
        material,
        jwk,
    })
}

fn jwk(kid: &str, material: &Material) -> Value {
    match material {
        Material::Ec(kp, _) => {
            let pt = kp.public_key().as_ref();
            json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64url(&pt[1..33]), "y": b64url(&pt[33..65]),
            })
        }
        Material::Rsa(kp) => {
            let pk = kp.public_key();
            json!({
                "kty": "RSA", "use": "sig", "kid": kid,
                "n": b64url(pk.modulus().big_endian_without_leading_zero()),
                "e": b64url(pk.exponent().big_endian_without_leading_zero()),
            })
        }
    }
}

/// `at_hash` / `c_hash`: base64url of the left half of SHA-256 of the ASCII token.
pub fn half_hash(token: &str) -> String {
    let h = crate::clock::sha256(token.as_bytes());
    b64url(&h[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://idp.example.jp";

    fn record(alg: &str, activate_at: i64, retire_at: Option<i64>) -> SigningKeyRecord {
        SigningKeyRecord {
            retire_at,
            ..new_record(alg, 0, activate_at).unwrap()
        }
    }

    fn kid_of(jws: &str) -> String {
        let header = jws.split('.').next().unwrap();
        let header: Value =
            serde_json::from_slice(&crate::clock::b64url_decode(header).unwrap()).unwrap();
        header["kid"].as_str().unwrap().to_string()
    }

    fn published(set: &KeySet, now: i64) -> Vec<String> {
        let doc: Value = serde_json::from_slice(&set.jwks_json(now)).unwrap();
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    /// A rotation as every process sees it from the store: the next key is published at once
    /// and signs from its activation; the old one stays published until it retires.
    #[test]
    fn the_next_key_is_published_first_signs_from_activation_and_the_old_one_retires() {
        let old = record(EC_ALG, 0, Some(200));
        let next = record(EC_ALG, 100, None);
        let rsa = record(RSA_ALG, 0, None);
        let set = KeySet::from_records(&[next.clone(), rsa.clone(), old.clone()], 50).unwrap();
        // EC keys first, by activation; then RSA.
        assert_eq!(set.kids(), [&old.kid, &next.kid, &rsa.kid]);
        assert_eq!(published(&set, 50), [&*old.kid, &*next.kid, &*rsa.kid]);
        let claims = json!({"sub": "s"});
        assert_eq!(kid_of(&set.sign(SigAlg::ES256, None, &claims, 99)), old.kid);
        assert_eq!(
            kid_of(&set.sign(SigAlg::ES256, None, &claims, 100)),
            next.kid
        );
        assert_eq!(
            kid_of(&set.sign(SigAlg::RS256, None, &claims, 100)),
            rsa.kid
        );
        assert_eq!(set.ec_kid(150), next.kid);
        // The cached document is served until the old key retires, then made again.
        assert_eq!(published(&set, 199).len(), 3);
        assert_eq!(published(&set, 200), [&*next.kid, &*rsa.kid]);
        // Loaded after the retirement, the old key is gone altogether.
        let later = KeySet::from_records(&[old, next.clone(), rsa.clone()], 300).unwrap();
        assert_eq!(later.kids(), [&next.kid, &rsa.kid]);
    }

    #[test]
    fn a_set_needs_a_signing_key_of_each_algorithm() {
        let ec = record(EC_ALG, 0, None);
        let err = KeySet::from_records(std::slice::from_ref(&ec), 10)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("no RSA-2048 key is active"),
            "{err}"
        );
        // A key that only signs later does not count yet.
        let err = KeySet::from_records(&[ec, record(RSA_ALG, 20, None)], 10)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("no RSA-2048 key is active"),
            "{err}"
        );
        let mut broken = record(EC_ALG, 0, None);
        broken.private_pem =
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        assert!(matches!(
            KeySet::from_records(&[broken, record(RSA_ALG, 0, None)], 10),
            Err(KeyError::Bad(m)) if m.contains("not a P-256 PKCS#8 key")
        ));
        assert!(matches!(new_record("DSA", 0, 0), Err(KeyError::Bad(m)) if m.contains("DSA")));
    }

    #[test]
    fn a_rotation_needs_an_active_key_and_none_pending() {
        let active = record(EC_ALG, 0, None);
        let pending = record(EC_ALG, 500, None);
        assert!(check_rotatable(std::slice::from_ref(&active), EC_ALG, 10).is_ok());
        assert!(matches!(
            check_rotatable(&[active.clone(), pending.clone()], EC_ALG, 10),
            Err(KeyError::Pending { kid, activate_at: 500, .. }) if kid == pending.kid
        ));
        assert!(matches!(
            check_rotatable(&[active], RSA_ALG, 10),
            Err(KeyError::NoActiveKey(a)) if a == RSA_ALG
        ));
        // Once the pending key signs, the next rotation may be scheduled.
        assert!(check_rotatable(&[pending], EC_ALG, 500).is_ok());
    }

    fn set_at(now: i64) -> (KeySet, SigningKeyRecord) {
        let ec = record(EC_ALG, 0, None);
        let set = KeySet::from_records(&[ec.clone(), record(RSA_ALG, 0, None)], now).unwrap();
        (set, ec)
    }

    /// An access token verified once is recognised by its hash — but its expiry and its key's
    /// retirement are checked on every use, and only our at+jwt tokens of our issuer pass.
    #[test]
    fn access_tokens_verify_once_and_expire_and_retire_on_every_use() {
        let (set, ec) = set_at(1_000);
        let at = set.sign(
            SigAlg::ES256,
            Some("at+jwt"),
            &json!({"iss": ISS, "sub": "s", "exp": 1_060}),
            1_000,
        );
        let first = set.verified_access_token(&at, ISS, 1_000).unwrap();
        assert_eq!(first["sub"], "s");
        assert!(set.verified_access_token(&at, ISS, 1_059).is_some());
        assert!(
            set.verified_access_token(&at, ISS, 1_060).is_none(),
            "expired"
        );
        assert!(
            set.verified_access_token(&at, "https://other.example", 1_000)
                .is_none()
        );
        let id_token = set.sign(
            SigAlg::ES256,
            Some("JWT"),
            &json!({"iss": ISS, "sub": "s", "exp": 1_060}),
            1_000,
        );
        assert!(
            set.verified_access_token(&id_token, ISS, 1_000).is_none(),
            "typ JWT"
        );
        let mut forged = at.clone();
        forged.pop();
        forged.push(if at.ends_with('A') { 'B' } else { 'A' });
        assert!(set.verify_access_token(&forged, ISS, 1_000).is_none());
        // The same key, retired at 1_030: its tokens stop verifying then, cached or not.
        let retired = SigningKeyRecord {
            retire_at: Some(1_030),
            ..ec
        };
        let set = KeySet::from_records(
            &[retired, record(EC_ALG, 0, None), record(RSA_ALG, 0, None)],
            1_000,
        )
        .unwrap();
        assert!(set.verified_access_token(&at, ISS, 1_010).is_some());
        assert!(set.verified_access_token(&at, ISS, 1_030).is_none());
        assert!(!set.ec_kid_live(&kid_of(&at), 1_030));
    }

    /// An id_token_hint: our ID token (any algorithm), for this client; an access token, another
    /// client's token or a forged one is invalid; one signed by a retired key cannot be checked.
    #[test]
    fn own_id_tokens_are_recognised_for_their_client_only() {
        let (set, _) = set_at(1_000);
        let claims = json!({"iss": ISS, "aud": "rp-a", "sub": "s", "exp": 1});
        for alg in [SigAlg::ES256, SigAlg::RS256, SigAlg::PS256] {
            let t = set.sign(alg, Some("JWT"), &claims, 1_000);
            // Expiry is not checked: a hint may be an expired ID token.
            assert_eq!(
                set.verify_own_id_token(&t, ISS, "rp-a", 5_000).unwrap()["sub"],
                "s"
            );
            assert_eq!(
                set.verify_own_id_token(&t, ISS, "rp-b", 1_000),
                Err(HintError::Invalid)
            );
            assert_eq!(
                set.verify_own_id_token(&t, "https://other.example", "rp-a", 1_000),
                Err(HintError::Invalid)
            );
        }
        let at = set.sign(SigAlg::ES256, Some("at+jwt"), &claims, 1_000);
        assert_eq!(
            set.verify_own_id_token(&at, ISS, "rp-a", 1_000),
            Err(HintError::Invalid)
        );
        let t = set.sign(SigAlg::ES256, Some("JWT"), &claims, 1_000);
        let (head, _) = t.rsplit_once('.').unwrap();
        let other = set.sign(SigAlg::ES256, Some("JWT"), &json!({"sub": "x"}), 1_000);
        let forged = format!("{head}.{}", other.rsplit_once('.').unwrap().1);
        assert_eq!(
            set.verify_own_id_token(&forged, ISS, "rp-a", 1_000),
            Err(HintError::Invalid)
        );
        assert_eq!(
            set.verify_own_id_token("a.b", ISS, "rp-a", 1_000),
            Err(HintError::Invalid)
        );
        let (other_set, _) = set_at(1_000);
        assert_eq!(
            other_set.verify_own_id_token(&t, ISS, "rp-a", 1_000),
            Err(HintError::UnknownKey)
        );
    }

    #[test]
    fn half_hash_is_the_left_half_of_sha256() {
        // OIDC Core 3.3.2.11: at_hash of "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y" (its
        // example access token) is "77QmUPtjPfzWtF2AnpK9RQ".
        assert_eq!(
            half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
