//! The broker's signing keys: created at first start, kept in the store, published as JWKS.
//! ES256 (P-256) signs access tokens and, by default, ID tokens; one RSA-2048 key serves RP
//! registrations that ask for RS256 or PS256 ID tokens.

use crate::clock::{b64url, random_id};
use crate::registry::SigAlg;
use crate::store::{SigningKeyRecord, Store, StoreError};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

enum Material {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

struct SigningKey {
    kid: String,
    material: Material,
    jwk: Value,
}

/// The active signing keys and the published JWK Set.
pub struct KeySet {
    ec: SigningKey,
    rsa: SigningKey,
    jwks: Value,
    /// Decoding key for our own ES256 access tokens.
    ec_decoding: jsonwebtoken::DecodingKey,
    rng: SystemRandom,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("key material: {0}")]
    Bad(String),
}

const EC_ALG: &str = "EC-P256";
const RSA_ALG: &str = "RSA-2048";

impl KeySet {
    /// Load the active keys, generating and storing any that are missing.
    pub async fn load_or_create(store: &dyn Store, now: i64) -> Result<KeySet, KeyError> {
        for (alg, make) in [
            (EC_ALG, generate_ec as fn() -> Result<String, KeyError>),
            (RSA_ALG, generate_rsa),
        ] {
            let have = store
                .signing_keys()
                .await?
                .iter()
                .any(|k| k.alg == alg && k.status == "active");
            if !have {
                store
                    .insert_signing_key(&SigningKeyRecord {
                        kid: random_id(),
                        alg: alg.into(),
                        private_pem: make()?,
                        created_at: now,
                        status: "active".into(),
                    })
                    .await?;
            }
        }
        let recs = store.signing_keys().await?;
        let newest = |alg: &str| {
            recs.iter()
                .rev()
                .find(|k| k.alg == alg && k.status == "active")
                .ok_or_else(|| KeyError::Bad(format!("no active {alg} key")))
        };
        let ec = load_key(newest(EC_ALG)?)?;
        let rsa = load_key(newest(RSA_ALG)?)?;
        let ec_decoding = match &ec.material {
            Material::Ec(k) => {
                let p = k.public_key().as_ref();
                jsonwebtoken::DecodingKey::from_ec_components(
                    &b64url(&p[1..33]),
                    &b64url(&p[33..65]),
                )
                .map_err(|e| KeyError::Bad(e.to_string()))?
            }
            Material::Rsa(_) => unreachable!("EC slot holds an EC key"),
        };
        let jwks = json!({ "keys": [ec.jwk, rsa.jwk] });
        Ok(KeySet {
            ec,
            rsa,
            jwks,
            ec_decoding,
            rng: SystemRandom::new(),
        })
    }

    /// The JWK Set to publish.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// kid of the ES256 key (access tokens).
    pub fn ec_kid(&self) -> &str {
        &self.ec.kid
    }

    /// Compact JWS of `claims` with `alg`, header `typ` if given.
    pub fn sign(&self, alg: SigAlg, typ: Option<&str>, claims: &Value) -> String {
        let key = match alg {
            SigAlg::ES256 => &self.ec,
            SigAlg::RS256 | SigAlg::PS256 => &self.rsa,
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
            (Material::Ec(k), _) => k
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

    /// Verify one of our own ES256 access tokens (`typ` at+jwt) and return its claims.
    /// Checks the signature, `typ`, `iss`, `exp`; audience is checked by the caller.
    pub fn verify_access_token(&self, token: &str, issuer: &str) -> Option<Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != jsonwebtoken::Algorithm::ES256
            || header.typ.as_deref() != Some("at+jwt")
            || header.kid.as_deref() != Some(self.ec.kid.as_str())
        {
            return None;
        }
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_issuer(&[issuer]);
        v.validate_aud = false;
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<Value>(token, &self.ec_decoding, &v)
            .ok()
            .map(|d| d.claims)
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
    match rec.alg.as_str() {
        EC_ALG => {
            let k =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, p.contents())
                    .map_err(|_| bad("not a P-256 PKCS#8 key"))?;
            let pt = k.public_key().as_ref();
            let jwk = json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": rec.kid,
                "x": b64url(&pt[1..33]), "y": b64url(&pt[33..65]),
            });
            Ok(SigningKey {
                kid: rec.kid.clone(),
                material: Material::Ec(k),
                jwk,
            })
        }
        RSA_ALG => {
            let k =
                RsaKeyPair::from_pkcs8(p.contents()).map_err(|_| bad("not an RSA PKCS#8 key"))?;
            let pk = k.public_key();
            let jwk = json!({
                "kty": "RSA", "use": "sig", "kid": rec.kid,
                "n": b64url(pk.modulus().big_endian_without_leading_zero()),
                "e": b64url(pk.exponent().big_endian_without_leading_zero()),
            });
            Ok(SigningKey {
                kid: rec.kid.clone(),
                material: Material::Rsa(k),
                jwk,
            })
        }
        other => Err(bad(&format!("unknown algorithm {other}"))),
    }
}

/// `at_hash` / `c_hash`: base64url of the left half of SHA-256 of the ASCII token.
pub fn half_hash(token: &str) -> String {
    let h = crate::clock::sha256(token.as_bytes());
    b64url(&h[..16])
}
