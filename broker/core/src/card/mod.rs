//! Virtual My Number card.
//!
//! A virtual card is a directory:
//!
//! | file | content |
//! |---|---|
//! | `auth.crt.pem`, `auth.key.pem` | user-authentication certificate and its PKCS#8 key |
//! | `sign.crt.pem`, `sign.key.pem` | signature certificate and key (optional for cards made by other tools) |
//! | `state.json` | PIN state: salted SHA-256 of each PIN and the tries left |
//!
//! It behaves like the card's JPKI application: the user-authentication certificate is readable
//! without a PIN (EF 000A); the signature certificate needs the signature PIN (EF 0001); COMPUTE
//! DIGITAL SIGNATURE needs the PIN of the key. The user-authentication PIN is 4 digits with 3
//! tries, the signature PIN 6–16 characters of A–Z 0–9 with 5 tries. A wrong PIN costs a try
//! (persisted before the error is returned), a right one restores all tries, and at zero the PIN
//! is locked for good. The PINs themselves are never stored.

use crate::pki::demo::{IssuedCard, write_file_atomic};
use aws_lc_rs::{digest, rand, signature};
use std::fmt;
use std::path::{Path, PathBuf};
use x509_parser::prelude::{FromDer, X509Certificate};

const AUTH_CERT_FILE: &str = "auth.crt.pem";
const AUTH_KEY_FILE: &str = "auth.key.pem";
const SIGN_CERT_FILE: &str = "sign.crt.pem";
const SIGN_KEY_FILE: &str = "sign.key.pem";
const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;
const SALT_LEN: usize = 16;

/// One of the card's two private keys (and its PIN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// User-authentication key, 4-digit PIN, 3 tries.
    Auth,
    /// Digital-signature key, 6–16 character PIN, 5 tries.
    Sign,
}

impl Key {
    /// Tries a fresh (or just verified) PIN has.
    pub fn max_tries(self) -> u8 {
        match self {
            Key::Auth => 3,
            Key::Sign => 5,
        }
    }

    /// Checks the PIN format the card enforces for this key.
    pub fn check_pin_format(self, pin: &str) -> Result<(), CardError> {
        match self {
            Key::Auth => {
                if pin.len() != 4 || !pin.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CardError::BadPinFormat(
                        "the user-authentication PIN is exactly 4 digits".into(),
                    ));
                }
            }
            Key::Sign => {
                if !(6..=16).contains(&pin.len())
                    || !pin
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
                {
                    return Err(CardError::BadPinFormat(
                        "the signature PIN is 6 to 16 characters of A-Z and 0-9".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Key::Auth => "user-authentication",
            Key::Sign => "signature",
        })
    }
}

/// What can go wrong with a virtual card.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// The PIN does not have the format of this key's PIN (no try is used).
    #[error("bad PIN format: {0}")]
    BadPinFormat(String),
    /// Wrong PIN; one try fewer.
    #[error("wrong {key} PIN: {tries_left} tries left")]
    WrongPin {
        /// Which PIN.
        key: Key,
        /// Tries left after this attempt.
        tries_left: u8,
    },
    /// No tries left: the PIN is locked for good (on a real card, until reset at the municipal office).
    #[error("the {0} PIN is locked (no tries left)")]
    Locked(Key),
    /// The card has no signature certificate and key.
    #[error("this card has no signature certificate and key")]
    NoSignatureKey,
    /// `create` was given a directory that exists and is not empty.
    #[error("{0} already exists and is not empty")]
    AlreadyExists(String),
    /// A file could not be read or written.
    #[error("card I/O: {0}")]
    Io(String),
    /// A card file or an input certificate/key is malformed.
    #[error("malformed card data: {0}")]
    Malformed(String),
}

/// PIN state of one key, as stored in `state.json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PinState {
    /// Hex, 16 random bytes.
    salt: String,
    /// Hex SHA-256(salt || PIN).
    pin_sha256: String,
    tries_left: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct CardState {
    version: u32,
    auth: PinState,
    /// Absent when the card has no signature key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sign: Option<PinState>,
}

/// A private key of the card.
enum CardKey {
    Rsa(signature::RsaKeyPair),
    EcP256(signature::EcdsaKeyPair),
}

impl CardKey {
    fn public_key(&self) -> &[u8] {
        use aws_lc_rs::signature::KeyPair as _;
        match self {
            CardKey::Rsa(k) => k.public_key().as_ref(),
            CardKey::EcP256(k) => k.public_key().as_ref(),
        }
    }

    /// RSASSA-PKCS1-v1_5 SHA-256 (ECDSA P-256 SHA-256, DER, for non-JPKI EC keys).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CardError> {
        let rng = rand::SystemRandom::new();
        match self {
            CardKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| CardError::Malformed("RSA signing failed".into()))?;
                Ok(sig)
            }
            CardKey::EcP256(k) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| CardError::Malformed("ECDSA signing failed".into())),
        }
    }
}

/// A virtual My Number card (a directory; see the module documentation).
pub struct VirtualCard {
    dir: PathBuf,
    state: CardState,
    auth_cert_der: Vec<u8>,
    auth_key: CardKey,
    sign: Option<(Vec<u8>, CardKey)>,
}

impl fmt::Debug for VirtualCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualCard")
            .field("dir", &self.dir)
            .field("auth_tries_left", &self.state.auth.tries_left)
            .field(
                "sign_tries_left",
                &self.state.sign.as_ref().map(|s| s.tries_left),
            )
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> CardError + '_ {
    move |e| CardError::Io(format!("{}: {e}", path.display()))
}

impl VirtualCard {
    /// Writes a new card directory from a demo-PKI issuance (fails if `dir` exists and is not
    /// empty). Checks both PIN formats.
    pub fn create(
        dir: &Path,
        issued: &IssuedCard,
        auth_pin: &str,
        sign_pin: &str,
    ) -> Result<VirtualCard, CardError> {
        VirtualCard::create_from_pem(
            dir,
            &issued.auth_cert_pem,
            &issued.auth_key_pem,
            Some((&issued.sign_cert_pem, &issued.sign_key_pem)),
            auth_pin,
            sign_pin,
        )
    }

    /// Same from PEM strings made by any tool (e.g. openssl). `sign` is the signature
    /// certificate and key, optional; without it `sign_pin` is ignored. Keys are PKCS#8
    /// (`PRIVATE KEY`, RSA or EC P-256) or PKCS#1 (`RSA PRIVATE KEY`), and must match their
    /// certificate.
    pub fn create_from_pem(
        dir: &Path,
        auth_cert_pem: &str,
        auth_key_pem: &str,
        sign: Option<(&str, &str)>,
        auth_pin: &str,
        sign_pin: &str,
    ) -> Result<VirtualCard, CardError> {
        Key::Auth.check_pin_format(auth_pin)?;
        if sign.is_some() {
            Key::Sign.check_pin_format(sign_pin)?;
        }
        let auth_cert_der = parse_cert_pem(auth_cert_pem, "user-authentication certificate")?;
        let auth_key = parse_key_pem(auth_key_pem, "user-authentication key")?;
        check_key_matches(&auth_cert_der, &auth_key, "user-authentication")?;
        let sign = match sign {
            Some((cert_pem, key_pem)) => {
                let der = parse_cert_pem(cert_pem, "signature certificate")?;
                let key = parse_key_pem(key_pem, "signature key")?;
                check_key_matches(&der, &key, "signature")?;
                Some((der, key, key_pem))
            }
            None => None,
        };

        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(CardError::AlreadyExists(dir.display().to_string()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            Err(e) => return Err(io_err(dir)(e)),
        }
        let state = CardState {
            version: STATE_VERSION,
            auth: new_pin_state(Key::Auth, auth_pin)?,
            sign: match sign {
                Some(_) => Some(new_pin_state(Key::Sign, sign_pin)?),
                None => None,
            },
        };
        let write = |name: &str, contents: &[u8], private: bool| {
            let path = dir.join(name);
            write_file_atomic(&path, contents, private).map_err(io_err(&path))
        };
        write(AUTH_CERT_FILE, cert_pem(&auth_cert_der).as_bytes(), false)?;
        write(AUTH_KEY_FILE, auth_key_pem.as_bytes(), true)?;
        if let Some((der, _, key_pem)) = &sign {
            write(SIGN_CERT_FILE, cert_pem(der).as_bytes(), false)?;
            write(SIGN_KEY_FILE, key_pem.as_bytes(), true)?;
        }
        let card = VirtualCard {
            dir: dir.to_path_buf(),
            state,
            auth_cert_der,
            auth_key,
            sign: sign.map(|(der, key, _)| (der, key)),
        };
        card.save_state()?;
        Ok(card)
    }

    /// Opens a card directory.
    pub fn open(dir: &Path) -> Result<VirtualCard, CardError> {
        let state = read_state(dir)?;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(io_err(&path))
        };
        let auth_cert_der = parse_cert_pem(&read(AUTH_CERT_FILE)?, AUTH_CERT_FILE)?;
        let auth_key = parse_key_pem(&read(AUTH_KEY_FILE)?, AUTH_KEY_FILE)?;
        check_key_matches(&auth_cert_der, &auth_key, "user-authentication")?;
        let has_cert = dir.join(SIGN_CERT_FILE).exists();
        let has_key = dir.join(SIGN_KEY_FILE).exists();
        let sign = match (has_cert, has_key, state.sign.is_some()) {
            (false, false, false) => None,
            (true, true, true) => {
                let der = parse_cert_pem(&read(SIGN_CERT_FILE)?, SIGN_CERT_FILE)?;
                let key = parse_key_pem(&read(SIGN_KEY_FILE)?, SIGN_KEY_FILE)?;
                check_key_matches(&der, &key, "signature")?;
                Some((der, key))
            }
            _ => {
                return Err(CardError::Malformed(format!(
                    "{}: {SIGN_CERT_FILE}, {SIGN_KEY_FILE} and the signature PIN in {STATE_FILE} \
                     must be all present or all absent",
                    dir.display()
                )));
            }
        };
        Ok(VirtualCard {
            dir: dir.to_path_buf(),
            state,
            auth_cert_der,
            auth_key,
            sign,
        })
    }

    /// The card directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the card has a signature certificate and key.
    pub fn has_signature_key(&self) -> bool {
        self.sign.is_some()
    }

    /// DER of the user-authentication certificate; readable without a PIN (EF 000A).
    pub fn auth_certificate_der(&self) -> Result<Vec<u8>, CardError> {
        Ok(self.auth_cert_der.clone())
    }

    /// DER of the signature certificate; needs the signature PIN (counts tries), like EF 0001.
    pub fn sign_certificate_der(&mut self, pin: &str) -> Result<Vec<u8>, CardError> {
        if self.sign.is_none() {
            return Err(CardError::NoSignatureKey);
        }
        self.verify_pin(Key::Sign, pin)?;
        self.sign
            .as_ref()
            .map(|(der, _)| der.clone())
            .ok_or(CardError::NoSignatureKey)
    }

    /// COMPUTE DIGITAL SIGNATURE: checks the PIN of `key`, then signs `message` with
    /// RSASSA-PKCS1-v1_5 SHA-256 — identical to the physical card signing the SHA-256
    /// DigestInfo of `message`. 256 bytes for an RSA-2048 key.
    pub fn sign(&mut self, key: Key, pin: &str, message: &[u8]) -> Result<Vec<u8>, CardError> {
        if key == Key::Sign && self.sign.is_none() {
            return Err(CardError::NoSignatureKey);
        }
        self.verify_pin(key, pin)?;
        match key {
            Key::Auth => self.auth_key.sign(message),
            Key::Sign => match &self.sign {
                Some((_, k)) => k.sign(message),
                None => Err(CardError::NoSignatureKey),
            },
        }
    }

    /// Tries left for the PIN of `key` (as last read or written by this handle); 0 for the
    /// signature PIN of a card without a signature key.
    pub fn tries_left(&self, key: Key) -> u8 {
        match key {
            Key::Auth => self.state.auth.tries_left,
            Key::Sign => self.state.sign.as_ref().map_or(0, |s| s.tries_left),
        }
    }

    /// VERIFY: re-reads the state (another process may have used a try), then checks the PIN.
    fn verify_pin(&mut self, key: Key, pin: &str) -> Result<(), CardError> {
        self.state = read_state(&self.dir)?;
        let st = self.pin_state_mut(key)?;
        if st.tries_left == 0 {
            return Err(CardError::Locked(key));
        }
        key.check_pin_format(pin)?;
        // `read_state` checked both are hex of the right length.
        let salt = hex::decode(&st.salt).unwrap_or_default();
        let stored = hex::decode(&st.pin_sha256).unwrap_or_default();
        let right =
            aws_lc_rs::constant_time::verify_slices_are_equal(&pin_hash(&salt, pin), &stored)
                .is_ok();
        let before = st.tries_left;
        st.tries_left = if right { key.max_tries() } else { before - 1 };
        let after = st.tries_left;
        if after != before {
            // Persisted before answering, like the card's retry counter.
            self.save_state()?;
        }
        match (right, after) {
            (true, _) => Ok(()),
            (false, 0) => Err(CardError::Locked(key)),
            (false, tries_left) => Err(CardError::WrongPin { key, tries_left }),
        }
    }

    fn pin_state_mut(&mut self, key: Key) -> Result<&mut PinState, CardError> {
        match key {
            Key::Auth => Ok(&mut self.state.auth),
            Key::Sign => self.state.sign.as_mut().ok_or(CardError::NoSignatureKey),
        }
    }

    fn save_state(&self) -> Result<(), CardError> {
        let json = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| CardError::Malformed(format!("{STATE_FILE}: {e}")))?;
        let path = self.dir.join(STATE_FILE);
        write_file_atomic(&path, &json, true).map_err(io_err(&path))
    }
}

fn read_state(dir: &Path) -> Result<CardState, CardError> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let state: CardState = serde_json::from_slice(&bytes)
        .map_err(|e| CardError::Malformed(format!("{}: {e}", path.display())))?;
    if state.version != STATE_VERSION {
        return Err(CardError::Malformed(format!(
            "{}: unsupported version {}",
            path.display(),
            state.version
        )));
    }
    for (key, st) in [
        (Key::Auth, Some(&state.auth)),
        (Key::Sign, state.sign.as_ref()),
    ] {
        let Some(st) = st else { continue };
        let ok = st.tries_left <= key.max_tries()
            && hex::decode(&st.salt).is_ok_and(|s| s.len() == SALT_LEN)
            && hex::decode(&st.pin_sha256).is_ok_and(|h| h.len() == 32);
        if !ok {
            return Err(CardError::Malformed(format!(
                "{}: bad {key} PIN state",
                path.display()
            )));
        }
    }
    Ok(state)
}

fn new_pin_state(key: Key, pin: &str) -> Result<PinState, CardError> {
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt).map_err(|_| CardError::Io("random generator failed".into()))?;
    Ok(PinState {
        salt: hex::encode(salt),
        pin_sha256: hex::encode(pin_hash(&salt, pin)),
        tries_left: key.max_tries(),
    })
}

fn pin_hash(salt: &[u8], pin: &str) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(salt);
    ctx.update(pin.as_bytes());
    ctx.finish().as_ref().to_vec()
}

fn cert_pem(der: &[u8]) -> String {
    crate::pki::demo::pem_lf(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// DER of the single CERTIFICATE block of `text`; checks it parses as X.509.
fn parse_cert_pem(text: &str, what: &str) -> Result<Vec<u8>, CardError> {
    let block =
        pem::parse(text).map_err(|e| CardError::Malformed(format!("{what}: not PEM: {e}")))?;
    if block.tag() != "CERTIFICATE" {
        return Err(CardError::Malformed(format!(
            "{what}: PEM block is {:?}, expected CERTIFICATE",
            block.tag()
        )));
    }
    let der = block.into_contents();
    match X509Certificate::from_der(&der) {
        Ok(([], _)) => Ok(der),
        Ok(_) => Err(CardError::Malformed(format!(
            "{what}: trailing bytes after the certificate"
        ))),
        Err(e) => Err(CardError::Malformed(format!(
            "{what}: not an X.509 certificate: {e}"
        ))),
    }
}

fn parse_key_pem(text: &str, what: &str) -> Result<CardKey, CardError> {
    let block =
        pem::parse(text).map_err(|e| CardError::Malformed(format!("{what}: not PEM: {e}")))?;
    let der = block.contents();
    match block.tag() {
        "PRIVATE KEY" => {
            if let Ok(k) = signature::RsaKeyPair::from_pkcs8(der) {
                return Ok(CardKey::Rsa(k));
            }
            signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der)
                .map(CardKey::EcP256)
                .map_err(|_| {
                    CardError::Malformed(format!(
                        "{what}: PKCS#8 key is neither RSA (2048-bit or more) nor EC P-256"
                    ))
                })
        }
        "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(der)
            .map(CardKey::Rsa)
            .map_err(|e| CardError::Malformed(format!("{what}: PKCS#1 RSA key: {e}"))),
        other => Err(CardError::Malformed(format!(
            "{what}: PEM block {other:?} is not PRIVATE KEY or RSA PRIVATE KEY"
        ))),
    }
}

fn check_key_matches(cert_der: &[u8], key: &CardKey, what: &str) -> Result<(), CardError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| CardError::Malformed(format!("{what} certificate: {e}")))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key() {
        return Err(CardError::Malformed(format!(
            "the {what} key does not match the {what} certificate"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
