//! Who is calling, and in which namespace.
//!
//! Every `/v1` call carries `Authorization: Bearer <key>`. Keys are stored as
//! the SHA-256 of their secret; the secret is shown once, on creation.
//! `X-Namespace` (id or name) selects the namespace; without it a key acts
//! in its own namespace, and an admin key in `default`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::keys::hash_secret;
use crate::serve::DEFAULT_NAMESPACE;
use crate::store::{ApiKey, KeyId, Namespace, NamespaceId};

/// An authenticated caller acting in one namespace.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key used.
    pub key: ApiKey,
    /// The namespace acted in.
    pub namespace: Namespace,
}

/// An authenticated caller holding an admin key.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

/// An authenticated caller whose key may publish extractors: an admin key
/// or one with the publish right.
#[derive(Debug, Clone)]
pub struct MayPublish(pub Caller);

/// When this process last recorded each key's use: a key's `last_used_at`
/// is written at most once a minute, off the request's path.
#[derive(Debug, Default)]
pub struct KeyUses(Mutex<HashMap<KeyId, Instant>>);

impl KeyUses {
    /// How stale a key's `last_used_at` may get.
    const EVERY: Duration = Duration::from_secs(60);

    /// Whether the use of `key_id` now should be recorded.
    fn due(&self, key_id: &KeyId) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match seen.get(key_id) {
            Some(at) if now.duration_since(*at) < Self::EVERY => false,
            _ => {
                seen.insert(key_id.to_owned(), now);
                true
            }
        }
    }
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing `Authorization: Bearer <key>` header"))?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthorized("the `Authorization` header must be `Bearer <key>`"))?;
        let key = state
            .store
            .key_by_hash(&hash_secret(secret))
            .await?
            .ok_or_else(|| unauthorized("unknown API key"))?;
        if state.key_uses.due(&key.key_id) {
            let (store, key_id) = (state.store.clone(), key.key_id.clone());
            tokio::spawn(async move {
                if let Err(e) = store.touch_key(&key_id, &crate::store::now()).await {
                    tracing::warn!(key = %key_id, error = %e, "recording a key's use failed");
                }
            });
        }
        let wanted = match parts.headers.get("x-namespace") {
            Some(v) => v
                .to_str()
                .map_err(|_| ApiError::bad_request("`X-Namespace` must be text"))?
                .trim()
                .to_owned(),
            None => key
                .namespace_id
                .as_ref()
                .map_or_else(|| DEFAULT_NAMESPACE.to_owned(), NamespaceId::to_string),
        };
        let forbidden =
            || ApiError::forbidden(format!("this key may not act in namespace `{wanted}`"));
        let namespace = match state.store.namespace(&wanted).await? {
            Some(ns) if key.allows(&ns.namespace_id) => ns,
            Some(_) => return Err(forbidden()),
            None if key.admin => return Err(ApiError::not_found("namespace", &wanted)),
            None => return Err(forbidden()),
        };
        Ok(Caller { key, namespace })
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.key.admin {
            Ok(Admin(caller))
        } else {
            Err(ApiError::forbidden("this call needs an admin key"))
        }
    }
}

impl FromRequestParts<AppState> for MayPublish {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.key.may_publish() {
            Ok(MayPublish(caller))
        } else {
            Err(ApiError::forbidden(
                "this call needs an admin key or a key with the publish right",
            ))
        }
    }
}
