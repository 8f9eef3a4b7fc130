//! API keys: random secrets, stored only as their SHA-256.

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::store::{self, ApiKey, Store};

/// A new key secret: `sk_` + 32 random bytes, base64url.
pub fn new_secret() -> String {
    format!("sk_{}", random_token())
}

/// 32 random bytes, base64url: unguessable tokens such as lease tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Stores `key` for `secret`.
pub async fn store_key(store: &dyn Store, secret: &str, key: ApiKey) -> store::Result<ApiKey> {
    store.create_key(&key, &hash_secret(secret)).await?;
    tracing::info!(key = %key.key_id, admin = key.admin, publish = key.publish, "API key created");
    Ok(key)
}

/// Every key, page by page.
pub async fn all(store: &dyn Store) -> store::Result<Vec<ApiKey>> {
    let mut keys = Vec::new();
    let mut page = store::PageRequest {
        limit: 500,
        after: None,
    };
    loop {
        let listed = store.list_keys(&page).await?;
        keys.extend(listed.items);
        match listed.next {
            Some(next) => page.after = Some(next),
            None => return Ok(keys),
        }
    }
}

/// Stores `key` with a new secret; returns the key and its secret.
pub async fn create(store: &dyn Store, key: ApiKey) -> store::Result<(ApiKey, String)> {
    let secret = new_secret();
    let key = store_key(store, &secret, key).await?;
    Ok((key, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashed_to_hex() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("sk_") && a.len() == 46, "{a}");
        assert_eq!(hash_secret(&a).len(), 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
    }
}
