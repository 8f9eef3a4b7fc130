//! The metadata store: namespaces, keys, buckets, objects, collections,
//! batches, tasks and documents.
//!
//! [`Store`] is the one seam every backend implements; the API, the pollers
//! and the engine see nothing else. [`sqlite`] is the embedded default.

pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use sqlite::SqliteStore;

/// A store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such record (in this namespace).
    #[error("{kind} `{id}` not found")]
    NotFound {
        /// What was looked for, e.g. `bucket`.
        kind: &'static str,
        /// The id or name given.
        id: String,
    },
    /// The write would break a uniqueness or state rule.
    #[error("{0}")]
    Conflict(String),
    /// The backend failed.
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A backend failure.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }

    /// A missing record.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// One page of a list, in a stable order.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The records of this page.
    pub items: Vec<T>,
    /// Sort key of the last record, when more may follow.
    pub next: Option<String>,
}

/// Which page of a list to read.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Most records to return (at least 1).
    pub limit: usize,
    /// Return records whose sort key follows this one.
    pub after: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` records read in order: the extra
    /// one only says that another page follows.
    pub fn from_overfetch(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(key)
        } else {
            None
        };
        Page { items, next }
    }
}

/// A tenant: every resource belongs to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Namespace {
    /// `ns_…`
    pub namespace_id: String,
    /// Unique name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// An API key, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// `key_…`
    pub key_id: String,
    /// Free text.
    pub name: Option<String>,
    /// Admin keys act in every namespace and manage namespaces and keys.
    pub admin: bool,
    /// The one namespace a non-admin key may act in.
    pub namespace_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl ApiKey {
    /// Whether this key may act in `namespace_id`.
    pub fn allows(&self, namespace_id: &str) -> bool {
        self.admin || self.namespace_id.as_deref() == Some(namespace_id)
    }
}

/// A named set of objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bucket {
    /// `bkt_…`
    pub bucket_id: String,
    /// Owning namespace.
    pub namespace_id: String,
    /// Unique in the namespace.
    pub bucket_name: String,
    /// Free text.
    pub description: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// A stored object's record; its content lives in the blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectRecord {
    /// `obj_…`, unique in the bucket (a client may choose it).
    pub object_id: String,
    /// Owning bucket.
    pub bucket_id: String,
    /// Owning namespace.
    pub namespace_id: String,
    /// The object's name, e.g. a file path.
    pub key: String,
    /// Declared or sniffed MIME type.
    pub mime_type: String,
    /// Content size.
    pub size_bytes: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Client metadata (a JSON object).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Where the content lives in the blob store.
    #[serde(skip_serializing)]
    pub blob_key: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Where a collection's objects come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The bucket (id; the API also accepts its name).
    pub bucket_id: String,
}

/// A collection: a pipeline of extractors over a bucket's objects, and the
/// documents it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CollectionRecord {
    /// `col_…`
    pub collection_id: String,
    /// Owning namespace.
    pub namespace_id: String,
    /// Unique in the namespace.
    pub collection_name: String,
    /// Free text.
    pub description: Option<String>,
    /// The bucket whose objects it processes.
    pub source: Source,
    /// The extractors as chosen.
    pub extractors: Vec<crate::pipeline::ExtractorRef>,
    /// The resolved plan, tier by tier, as `name@version`.
    pub tiers: Vec<Vec<String>>,
    /// Output columns, `extractor.column` to Arrow type.
    pub output_schema: std::collections::BTreeMap<String, String>,
    /// Hash of the pinned versions, parameters and output schema.
    pub index_signature: String,
    /// Documents written.
    pub document_count: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// The metadata store.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A one-line description for logs and `/readyz`, without secrets.
    fn describe(&self) -> String;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;

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

    /// Creates a bucket; a taken name in the namespace is a conflict.
    async fn create_bucket(&self, bucket: &Bucket) -> Result<()>;
    /// A bucket of the namespace by id or name.
    async fn bucket(&self, namespace_id: &str, id_or_name: &str) -> Result<Option<Bucket>>;
    /// Buckets of the namespace by id.
    async fn list_buckets(&self, namespace_id: &str, page: &PageRequest) -> Result<Page<Bucket>>;
    /// Deletes a bucket with its objects and finished batches, returning the
    /// blob keys to remove. Refused while a batch of it is queued or
    /// processing, or a collection reads from it.
    async fn delete_bucket(&self, namespace_id: &str, bucket_id: &str) -> Result<Vec<String>>;

    /// Records an object; a taken id in the bucket is a conflict.
    async fn create_object(&self, object: &ObjectRecord) -> Result<()>;
    /// An object of the bucket.
    async fn object(&self, bucket_id: &str, object_id: &str) -> Result<Option<ObjectRecord>>;
    /// Objects of the bucket by id.
    async fn list_objects(&self, bucket_id: &str, page: &PageRequest)
    -> Result<Page<ObjectRecord>>;
    /// Deletes an object's record, returning its blob key.
    async fn delete_object(&self, bucket_id: &str, object_id: &str) -> Result<String>;

    /// Creates a collection; a taken name in the namespace is a conflict.
    async fn create_collection(&self, collection: &CollectionRecord) -> Result<()>;
    /// A collection of the namespace by id or name.
    async fn collection(
        &self,
        namespace_id: &str,
        id_or_name: &str,
    ) -> Result<Option<CollectionRecord>>;
    /// Collections of the namespace by id.
    async fn list_collections(
        &self,
        namespace_id: &str,
        page: &PageRequest,
    ) -> Result<Page<CollectionRecord>>;
    /// Collections whose source is the bucket.
    async fn collections_of_bucket(&self, bucket_id: &str) -> Result<Vec<CollectionRecord>>;
    /// Deletes a collection and its documents. Refused while a batch of its
    /// bucket is queued or processing.
    async fn delete_collection(&self, namespace_id: &str, collection_id: &str) -> Result<()>;
}

/// A new id: `prefix` + `_` + a ULID (time-ordered, lower case).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// Now, as RFC 3339 with milliseconds in UTC.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
