//! Users and bearer tokens. A token is shown once when made; only its SHA-256 is stored.

use rand::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::core::model::UserRecord;
use crate::core::ports::store::{Store, StoreError};

#[derive(Debug, Error)]
pub enum AuthError {
    #[error(transparent)]
    Name(#[from] noid::names::NameError),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("missing or malformed authorization header (expected \"Bearer <token>\")")]
    MissingToken,
    #[error("invalid token")]
    InvalidToken,
    #[error(transparent)]
    Store(StoreError),
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn new_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("noid_{}", hex::encode(bytes))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a user and returns their token.
pub fn add_user(store: &dyn Store, name: &str) -> Result<String, AuthError> {
    noid::names::validate_name("user", name)?;
    let token = new_token();
    let user = UserRecord {
        name: name.to_string(),
        token_sha256: token_hash(&token),
        created_at: now(),
    };
    store.insert_user(&user).map_err(|e| match e {
        StoreError::Conflict(_) => AuthError::UserExists(name.to_string()),
        other => AuthError::Store(other),
    })?;
    Ok(token)
}

/// Replaces a user's token; the old one stops working at once.
pub fn rotate_token(store: &dyn Store, name: &str) -> Result<String, AuthError> {
    let mut user = store
        .get_user(name)
        .map_err(AuthError::Store)?
        .ok_or_else(|| AuthError::NoSuchUser(name.to_string()))?;
    let token = new_token();
    user.token_sha256 = token_hash(&token);
    store.update_user(&user).map_err(AuthError::Store)?;
    Ok(token)
}

/// The user a request's `authorization` header value belongs to.
pub fn authenticate(store: &dyn Store, header: Option<&str>) -> Result<String, AuthError> {
    let token = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::MissingToken)?;
    store
        .user_by_token_hash(&token_hash(token))
        .map_err(AuthError::Store)?
        .map(|u| u.name)
        .ok_or(AuthError::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn tokens_authenticate_until_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let t1 = add_user(&store, "alice").unwrap();
        assert!(t1.starts_with("noid_"));
        let h = format!("Bearer {t1}");
        assert_eq!(authenticate(&store, Some(&h)).unwrap(), "alice");
        assert!(matches!(
            authenticate(&store, Some("Bearer nope")),
            Err(AuthError::InvalidToken)
        ));
        assert!(matches!(
            authenticate(&store, None),
            Err(AuthError::MissingToken)
        ));
        let t2 = rotate_token(&store, "alice").unwrap();
        assert!(authenticate(&store, Some(&h)).is_err());
        assert_eq!(
            authenticate(&store, Some(&format!("Bearer {t2}"))).unwrap(),
            "alice"
        );
        assert!(matches!(
            add_user(&store, "alice"),
            Err(AuthError::UserExists(_))
        ));
        assert!(matches!(add_user(&store, "Al"), Err(AuthError::Name(_))));
    }
}
