//! A software passkey authenticator, as a browser and a platform authenticator answer
//! `navigator.credentials.create()` and `.get()` together: P-256 keys (ES256), discoverable
//! credentials that return their user handle, attestation format `none`, a signature counter,
//! and flags the test chooses (user verification, backup eligibility and state). The JSON it
//! returns is what the broker's pages post (base64url binary fields).
//!
//! webauthn-authenticator-rs's `SoftPasskey` was tried first: it cannot answer without an
//! allow list (no discoverable login), returns no user handle, and refuses to answer without
//! user verification instead of answering without the flag — the cases these tests need.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ciborium::Value as Cbor;
use serde_json::{Value, json};

struct Credential {
    id: Vec<u8>,
    rp_id: String,
    user_handle: Vec<u8>,
    key: EcdsaKeyPair,
    counter: u32,
}

/// One authenticator (a phone, a laptop) holding any number of passkeys.
pub struct SoftAuthenticator {
    creds: Vec<Credential>,
    /// Set the UV flag (the person passed a PIN or biometric).
    pub user_verified: bool,
    /// BE: the credential may be synced (a synced passkey), else device-bound.
    pub backup_eligible: bool,
    /// BS: it is synced now.
    pub backup_state: bool,
    /// Added to a credential's counter at each use (0: a passkey without a counter).
    pub counter_step: u32,
}

impl Default for SoftAuthenticator {
    fn default() -> Self {
        SoftAuthenticator {
            creds: Vec::new(),
            user_verified: true,
            backup_eligible: false,
            backup_state: false,
            counter_step: 1,
        }
    }
}

fn sha256(d: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, d)
        .as_ref()
        .to_vec()
}

fn b64(d: &[u8]) -> String {
    B64.encode(d)
}

fn unb64(s: &str) -> Vec<u8> {
    B64.decode(s.trim_end_matches('='))
        .expect("base64url in the options")
}

fn cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("CBOR encodes");
    out
}

impl SoftAuthenticator {
    pub fn new() -> Self {
        Self::default()
    }

    fn flags(&self, attested: bool) -> u8 {
        let mut f = 0x01; // UP
        if self.user_verified {
            f |= 0x04;
        }
        if self.backup_eligible {
            f |= 0x08;
        }
        if self.backup_state {
            f |= 0x10;
        }
        if attested {
            f |= 0x40;
        }
        f
    }

    /// Answer `navigator.credentials.create({publicKey})` from `origin`, making a new passkey
    /// for `publicKey.rp.id` (or `rp_id` when given: a wrong one, for a test).
    pub fn register(&mut self, origin: &str, public_key: &Value, rp_id: Option<&str>) -> Value {
        let rp_id = rp_id
            .or(public_key["rp"]["id"].as_str())
            .expect("rp.id")
            .to_string();
        let challenge = public_key["challenge"].as_str().expect("challenge");
        let user_handle = unb64(public_key["user"]["id"].as_str().expect("user.id"));
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let id = aws_lc_rs::rand::generate::<[u8; 16]>(&rng)
            .unwrap()
            .expose()
            .to_vec();
        let point = key.public_key().as_ref(); // 0x04 ‖ x ‖ y
        let cose = Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(2.into())),
            (Cbor::Integer(3.into()), Cbor::Integer((-7).into())),
            (Cbor::Integer((-1).into()), Cbor::Integer(1.into())),
            (
                Cbor::Integer((-2).into()),
                Cbor::Bytes(point[1..33].to_vec()),
            ),
            (
                Cbor::Integer((-3).into()),
                Cbor::Bytes(point[33..65].to_vec()),
            ),
        ]);
        let counter: u32 = 0;
        let mut auth_data = sha256(rp_id.as_bytes());
        auth_data.push(self.flags(true));
        auth_data.extend_from_slice(&counter.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID: none
        auth_data.extend_from_slice(&(id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&id);
        auth_data.extend_from_slice(&cbor(&cose));
        let att = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]);
        let client_data = json!({
            "type": "webauthn.create", "challenge": challenge, "origin": origin,
            "crossOrigin": false,
        })
        .to_string();
        self.creds.push(Credential {
            id: id.clone(),
            rp_id,
            user_handle,
            key,
            counter,
        });
        json!({
            "id": b64(&id), "rawId": b64(&id), "type": "public-key", "extensions": {},
            "response": {
                "attestationObject": b64(&cbor(&att)),
                "clientDataJSON": b64(client_data.as_bytes()),
                "transports": ["internal"],
            },
        })
    }

    /// Answer `navigator.credentials.get({publicKey})` from `origin` with the newest passkey
    /// of `publicKey.rpId` (as a person picks one from the list), returning its user handle.
    pub fn assert(&mut self, origin: &str, public_key: &Value) -> Value {
        let rp_id = public_key["rpId"].as_str().expect("rpId").to_string();
        self.assert_as(origin, public_key, &rp_id)
    }

    /// As [`assert`](Self::assert), signing for `rp_id` whatever the options say.
    pub fn assert_as(&mut self, origin: &str, public_key: &Value, rp_id: &str) -> Value {
        let challenge = public_key["challenge"].as_str().expect("challenge");
        let flags = self.flags(false);
        let step = self.counter_step;
        let c = self
            .creds
            .iter_mut()
            .rev()
            .find(|c| c.rp_id == rp_id || c.rp_id == public_key["rpId"])
            .expect("a passkey for this RP");
        c.counter += step;
        let mut auth_data = sha256(rp_id.as_bytes());
        auth_data.push(flags);
        auth_data.extend_from_slice(&c.counter.to_be_bytes());
        let client_data = json!({
            "type": "webauthn.get", "challenge": challenge, "origin": origin,
            "crossOrigin": false,
        })
        .to_string();
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&sha256(client_data.as_bytes()));
        let sig = c
            .key
            .sign(&SystemRandom::new(), &signed)
            .expect("ES256 signs");
        json!({
            "id": b64(&c.id), "rawId": b64(&c.id), "type": "public-key", "extensions": {},
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(client_data.as_bytes()),
                "signature": b64(sig.as_ref()),
                "userHandle": b64(&c.user_handle),
            },
        })
    }

    /// An answer with a passkey made here and never registered with the broker.
    pub fn assert_unknown(&mut self, origin: &str, public_key: &Value) -> Value {
        let options = json!({
            "rp": {"id": public_key["rpId"]},
            "challenge": public_key["challenge"],
            "user": {"id": b64(&[7u8; 16])},
        });
        self.register(origin, &options, None);
        self.assert(origin, public_key)
    }

    /// The newest passkey's counter (to make another authenticator "fall behind").
    pub fn set_counter(&mut self, counter: u32) {
        if let Some(c) = self.creds.last_mut() {
            c.counter = counter;
        }
    }
}
