//! The conductor's side of the signing keys: loading the published set, rotation (`broker keys
//! rotate`). The first keys are made at start (`app::load_or_create_keys`). The keys themselves, their JWKS
//! and signing, are `oidc::keys`.

use crate::oidc::keys::{KeyError, KeySet, check_rotatable, new_record};
use crate::store::{RotateOutcome, Store, StoreError};

/// Why the keys could not be loaded or rotated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Load the keys published at `now` (stored and not retired).
pub async fn load(store: &dyn Store, now: i64) -> Result<KeySet, Error> {
    Ok(KeySet::from_records(&store.signing_keys().await?, now)?)
}

/// Rotate the keys of `alg`: a new key, published now, signs from `now + lead`; the current
/// ones retire at `now + lead + grace`. Returns the new key's kid.
pub async fn rotate(
    store: &dyn Store,
    alg: &str,
    now: i64,
    lead: i64,
    grace: i64,
) -> Result<String, Error> {
    check_rotatable(&store.signing_keys().await?, alg, now)?;
    let rec = new_record(alg, now, now + lead)?;
    match store
        .rotate_signing_key(&rec, now + lead + grace, now)
        .await?
    {
        RotateOutcome::Rotated => Ok(rec.kid),
        RotateOutcome::AlreadyPending { kid, activate_at } => Err(KeyError::Pending {
            alg: alg.into(),
            kid,
            activate_at,
        }
        .into()),
    }
}
