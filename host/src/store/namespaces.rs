//! Namespaces (tenants) and API keys.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::*;

/// A tenant: every resource belongs to one. The API shows it as
/// `api::namespaces::NamespaceView`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    /// `ns_…`
    pub namespace_id: NamespaceId,
    /// Unique name.
    pub name: String,
    /// RFC 3339.
    pub created_at: Timestamp,
}

/// An API key, without its secret. The API shows it as
/// `api::namespaces::ApiKeyView`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// `key_…`
    pub key_id: KeyId,
    /// Free text.
    pub name: Option<String>,
    /// Admin keys act in every namespace and manage namespaces and keys.
    pub admin: bool,
    /// The one namespace a non-admin key may act in.
    pub namespace_id: Option<NamespaceId>,
    /// RFC 3339.
    pub created_at: Timestamp,
    /// May publish extractor versions, and deprecate those of names its
    /// namespace owns (admin keys always may).
    #[serde(default)]
    pub publish: bool,
    /// RFC 3339: when the key was last used, to the minute.
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
    /// Made from `STRATA_ADMIN_KEY`: revoked when a start finds another
    /// value there.
    #[serde(default)]
    pub from_env: bool,
}

impl ApiKey {
    /// A new key with a fresh id: an admin key, or one that acts in
    /// `namespace_id`.
    pub fn new(name: Option<String>, admin: bool, namespace_id: Option<NamespaceId>) -> ApiKey {
        ApiKey {
            key_id: KeyId::generate(),
            name,
            admin,
            namespace_id,
            created_at: now(),
            publish: false,
            last_used_at: None,
            from_env: false,
        }
    }

    /// Whether this key may publish and deprecate extractor versions.
    pub fn may_publish(&self) -> bool {
        self.admin || self.publish
    }

    /// Whether this key may act in `namespace_id`.
    pub fn allows(&self, namespace_id: &NamespaceId) -> bool {
        self.admin || self.namespace_id.as_deref() == Some(namespace_id)
    }
}

/// Whether `key` may be revoked while `admins` admin keys exist: never the
/// last one, which would leave no one to manage namespaces and keys.
pub fn check_revoke(key: &ApiKey, admins: u64) -> Result<()> {
    if key.admin && admins <= 1 {
        return Err(StoreError::Conflict(format!(
            "key `{}` is the last admin key; create another admin key before revoking it",
            key.key_id
        )));
    }
    Ok(())
}

/// Namespaces and their API keys.
#[async_trait]
pub trait NamespaceStore: Send + Sync {
    /// Creates a namespace; a taken name is a conflict.
    async fn create_namespace(&self, ns: &Namespace) -> Result<()>;
    /// A namespace by id or name.
    async fn namespace(&self, id_or_name: &str) -> Result<Option<Namespace>>;
    /// Namespaces by id.
    async fn list_namespaces(&self, page: &PageRequest) -> Result<Page<Namespace>>;
    /// Stores a key under the hash of its secret.
    async fn create_key(&self, key: &ApiKey, secret_hash: &str) -> Result<()>;
    /// The key whose secret hashes to `secret_hash`.
    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>>;
    /// Whether any admin key exists.
    async fn has_admin_key(&self) -> Result<bool>;
    /// Keys by id (never their secrets).
    async fn list_keys(&self, page: &PageRequest) -> Result<Page<ApiKey>>;
    /// Revokes a key: its secret no longer authenticates. The last admin
    /// key is never revoked ([`check_revoke`]).
    async fn delete_key(&self, key_id: &KeyId) -> Result<()>;
    /// Records that a key was used at `at`.
    async fn touch_key(&self, key_id: &KeyId, at: &Timestamp) -> Result<()>;
}
