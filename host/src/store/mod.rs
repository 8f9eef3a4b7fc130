//! The metadata store: namespaces, keys, buckets, objects, collections,
//! batches, tasks and documents.
//!
//! [`Store`] is the one seam every backend implements; the API, the pollers
//! and the engine see nothing else. [`sqlite`] is the embedded default.

pub mod events;
pub mod mongo;
pub mod registry;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use events::Webhooks;
pub use mongo::MongoStore;
pub use registry::Registry;
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
    /// A unique name or id is taken.
    #[error("{kind} `{name}` already exists")]
    Taken {
        /// What was written, e.g. `bucket`.
        kind: &'static str,
        /// The name or id.
        name: String,
    },
    /// The write would break a state rule.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this (e.g. publish under a name another
    /// namespace owns).
    #[error("{0}")]
    Forbidden(String),
    /// A batch rule refused the request.
    #[error(transparent)]
    Batch(#[from] crate::batches::BatchError),
    /// The worker's lease on the batch is gone: canceled or taken over.
    #[error("the lease on batch `{0}` is lost")]
    LeaseLost(String),
    /// The backend failed. The message carries the cause in full (it is
    /// not chained again as a `source`, so reports do not repeat it).
    #[error("storage backend: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A backend failure.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }

    /// A taken name or id.
    pub fn taken(kind: &'static str, name: impl Into<String>) -> Self {
        StoreError::Taken {
            kind,
            name: name.into(),
        }
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
    /// May publish extractor versions, and deprecate those of names its
    /// namespace owns (admin keys always may).
    #[serde(default)]
    pub publish: bool,
    /// RFC 3339: when the key was last used, to the minute.
    #[serde(default)]
    pub last_used_at: Option<String>,
    /// Made from `STRATA_ADMIN_KEY`: revoked when a start finds another
    /// value there.
    #[serde(default)]
    pub from_env: bool,
}

impl ApiKey {
    /// A new key with a fresh id: an admin key, or one that acts in
    /// `namespace_id`.
    pub fn new(name: Option<String>, admin: bool, namespace_id: Option<String>) -> ApiKey {
        ApiKey {
            key_id: new_id("key"),
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

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchStatus {
    /// Created, objects may still be added.
    Draft,
    /// Submitted, waiting for a poller.
    Queued,
    /// A poller holds its lease and runs it.
    Processing,
    /// Every object went through every tier (some may have failed).
    Completed,
    /// The pipeline could not run, or too many objects failed.
    Failed,
    /// Canceled by a client.
    Canceled,
}

impl BatchStatus {
    /// Every status, in life order.
    pub const ALL: [BatchStatus; 6] = [
        BatchStatus::Draft,
        BatchStatus::Queued,
        BatchStatus::Processing,
        BatchStatus::Completed,
        BatchStatus::Failed,
        BatchStatus::Canceled,
    ];

    /// The name stored and shown, e.g. `QUEUED`.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Draft => "DRAFT",
            BatchStatus::Queued => "QUEUED",
            BatchStatus::Processing => "PROCESSING",
            BatchStatus::Completed => "COMPLETED",
            BatchStatus::Failed => "FAILED",
            BatchStatus::Canceled => "CANCELED",
        }
    }

    /// The status named `name` (as stored).
    pub fn parse(name: &str) -> Option<BatchStatus> {
        BatchStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether nothing more happens to the batch unless it is retried.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BatchStatus::Completed | BatchStatus::Failed | BatchStatus::Canceled
        )
    }
}

impl std::fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One collection's pipeline as a batch runs it, pinned at submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PinnedCollection {
    /// The collection.
    pub collection_id: String,
    /// Its name at submit.
    pub collection_name: String,
    /// The extractors with their versions resolved.
    pub extractors: Vec<crate::pipeline::ExtractorRef>,
    /// Tiers as `name@version`.
    pub tiers: Vec<Vec<String>>,
    /// Output columns, `extractor.column` to Arrow type.
    pub output_schema: std::collections::BTreeMap<String, String>,
    /// Signature of this pipeline.
    pub index_signature: String,
    /// Blob key of each extractor's Parquet manifest, by extractor name.
    pub manifests: std::collections::BTreeMap<String, String>,
}

impl PinnedCollection {
    /// Whether this is still what the collection's `configured` extractors
    /// ask for: the same names and parameters, and each version the
    /// collection names. A batch that finishes after the pipeline was
    /// changed must not write its plan back over the new one.
    pub fn still_configured(&self, configured: &[crate::pipeline::ExtractorRef]) -> bool {
        let bare = |v: &Option<String>| v.as_deref().map(|v| v.trim_start_matches('v').to_owned());
        configured.len() == self.extractors.len()
            && configured.iter().zip(&self.extractors).all(|(c, p)| {
                c.name == p.name
                    && c.params == p.params
                    && (c.version.is_none() || bare(&c.version) == bare(&p.version))
            })
    }
}

/// A batch's current stage: the earliest tier with unfinished work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stage {
    /// The extractors of the tier (with the collection when there are several).
    pub name: String,
    /// From 1.
    pub index: u32,
    /// Tiers over every collection of the batch.
    pub total: u32,
}

/// What the worker running a batch last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveProgress {
    /// Objects per second over the recent window.
    pub items_per_second: f64,
    /// The earliest tier with unfinished work.
    pub current_stage: Option<Stage>,
    /// When the worker reported (RFC 3339).
    pub reported_at: String,
    /// When `processed` last grew (RFC 3339).
    pub last_progress_at: String,
}

/// A batch: objects of one bucket to run through every collection of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// `btch_…`
    pub batch_id: String,
    /// Owning namespace.
    pub namespace_id: String,
    /// The bucket whose objects it holds.
    pub bucket_id: String,
    /// Free text.
    pub batch_name: Option<String>,
    /// `task_…`: the handle shown once the batch is submitted.
    pub task_id: String,
    /// Where the batch is.
    pub status: BatchStatus,
    /// Objects in the batch.
    pub total: u64,
    /// Objects that finished every tier of every collection.
    pub processed: u64,
    /// Of those, objects with at least one error.
    pub failed: u64,
    /// Times a poller claimed it.
    pub attempts: u32,
    /// Record each enrichment in the documents.
    #[serde(deserialize_with = "flag")]
    pub include_processing_history: bool,
    /// The pipelines, pinned at submit.
    pub collections: Vec<PinnedCollection>,
    /// Failed objects by error category.
    pub error_summary: std::collections::BTreeMap<String, u64>,
    /// Why the batch failed.
    pub error_message: Option<String>,
    /// The running worker's last report.
    pub live: Option<LiveProgress>,
    /// The worker holding the lease, and until when (ms since the epoch).
    pub lease: Option<(String, i64)>,
    /// `Idempotency-Key` of the create request and the hash of its body.
    pub idempotency: Option<(String, String)>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339, once submitted.
    pub submitted_at: Option<String>,
    /// RFC 3339, when first claimed.
    pub started_at: Option<String>,
    /// RFC 3339, when it reached a terminal status.
    pub finished_at: Option<String>,
}

impl BatchRecord {
    /// A new DRAFT batch of a bucket, without objects yet.
    pub fn draft(
        namespace_id: &str,
        bucket_id: &str,
        batch_name: Option<String>,
        idempotency: Option<(String, String)>,
    ) -> Self {
        let now = now();
        BatchRecord {
            batch_id: new_id("btch"),
            namespace_id: namespace_id.to_owned(),
            bucket_id: bucket_id.to_owned(),
            batch_name,
            task_id: new_id("task"),
            status: BatchStatus::Draft,
            total: 0,
            processed: 0,
            failed: 0,
            attempts: 0,
            include_processing_history: false,
            collections: Vec::new(),
            error_summary: std::collections::BTreeMap::new(),
            error_message: None,
            live: None,
            lease: None,
            idempotency,
            created_at: now.clone(),
            updated_at: now,
            submitted_at: None,
            started_at: None,
            finished_at: None,
        }
    }
}

/// One object's state in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchObject {
    /// The object.
    pub object_id: String,
    /// `pending`, `completed` or `failed`.
    pub status: String,
    /// What went wrong, when it failed.
    pub error: Option<String>,
}

/// A batch's lease, as its worker holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The batch.
    pub batch_id: String,
    /// The worker.
    pub owner: String,
    /// Random: every worker write must carry it.
    pub token: String,
}

/// The outcomes of one chunk of finished objects of one collection.
#[derive(Debug, Clone)]
pub struct ChunkOutcome {
    /// Index of the collection in the batch.
    pub stage: u32,
    /// Whether it is the batch's last collection: objects finish then.
    pub last: bool,
    /// The collection.
    pub collection_id: String,
    /// Each object's error, if any.
    pub outcomes: Vec<(String, Option<String>)>,
    /// The batch's error summary after this chunk.
    pub error_summary: std::collections::BTreeMap<String, u64>,
}

/// Internal facts of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InternalMetadata {
    /// `name@version` of every extractor that produced features.
    pub extractors: Vec<String>,
    /// Hex SHA-256 of the object content processed.
    pub content_hash: String,
    /// Signature of the pipeline that wrote it.
    pub index_signature: String,
    /// Each enrichment, when the batch asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub processing_history: Option<Value>,
}

/// A document: what one collection's pipeline produced for one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DocumentRecord {
    /// `doc_…`, derived from the collection and the object.
    pub document_id: String,
    /// The collection.
    pub collection_id: String,
    /// The object's bucket.
    pub bucket_id: String,
    /// The object.
    pub object_id: String,
    /// The batch that wrote it last.
    pub batch_id: String,
    /// Outputs by extractor, then column.
    #[schema(value_type = Object)]
    pub features: serde_json::Map<String, Value>,
    /// Row errors: `{extractor, message}`.
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
    /// The object's metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Versions, content hash, signature, history.
    pub internal_metadata: InternalMetadata,
    /// RFC 3339, first written.
    pub created_at: String,
    /// RFC 3339, last written.
    pub updated_at: String,
}

/// A boolean written as a boolean, or as 0/1 by MongoDB-protocol servers
/// that keep a `$set` boolean as an integer (see ARCHITECTURE.md).
fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    match Flag::deserialize(deserializer)? {
        Flag::Bool(b) => Ok(b),
        Flag::Int(0) => Ok(false),
        Flag::Int(1) => Ok(true),
        Flag::Int(n) => Err(serde::de::Error::custom(format!(
            "expected a boolean, found {n}"
        ))),
    }
}

/// The id of the document of `object_id` in `collection_id`: the same
/// every time, so reprocessing replaces it.
pub fn document_id(collection_id: &str, object_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{collection_id}\n{object_id}").as_bytes());
    format!("doc_{}", &hex::encode(digest)[..26])
}

/// An object's error and status after one more collection ran it:
/// `earlier` is its error so far, `error` this collection's, and `last`
/// whether this was the batch's last collection (the object finishes).
pub fn outcome(
    earlier: Option<String>,
    error: Option<&str>,
    last: bool,
) -> (Option<String>, &'static str) {
    let error = match (earlier, error) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or_else(|| b.map(str::to_owned)),
    };
    let status = match (last, &error) {
        (false, _) => "pending",
        (true, None) => "completed",
        (true, Some(_)) => "failed",
    };
    (error, status)
}

/// Filters of a document list.
#[derive(Debug, Clone, Default)]
pub struct DocumentFilter {
    /// Only documents last written by this batch.
    pub batch_id: Option<String>,
    /// Only the document of this object.
    pub object_id: Option<String>,
}

/// What a conditional delete found: it removed the record, or batches (by
/// id) or collections (by name) still use it.
#[derive(Debug, Clone, PartialEq)]
pub enum Removal<T> {
    /// Deleted; what is left to clean up.
    Removed(T),
    /// Nothing deleted.
    Busy {
        /// Active batches of it.
        batches: Vec<String>,
        /// Collections reading from it.
        collections: Vec<String>,
    },
}

/// What a claim found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// A batch to run, now leased.
    Batch(Box<BatchRecord>, Lease),
    /// A batch whose lease expired too often, now failed.
    Exhausted(Box<BatchRecord>),
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
    /// Batches of a namespace in one of `statuses`.
    async fn count_batches(&self, namespace_id: &str, statuses: &[BatchStatus]) -> Result<u64>;
    /// Keys by id (never their secrets).
    async fn list_keys(&self, page: &PageRequest) -> Result<Page<ApiKey>>;
    /// Revokes a key: its secret no longer authenticates. The last admin
    /// key is never revoked ([`check_revoke`]).
    async fn delete_key(&self, key_id: &str) -> Result<()>;
    /// Records that a key was used at `at` (RFC 3339).
    async fn touch_key(&self, key_id: &str, at: &str) -> Result<()>;

    /// Creates a bucket; a taken name in the namespace is a conflict.
    async fn create_bucket(&self, bucket: &Bucket) -> Result<()>;
    /// A bucket of the namespace by id or name.
    async fn bucket(&self, namespace_id: &str, id_or_name: &str) -> Result<Option<Bucket>>;
    /// Buckets of the namespace by id.
    async fn list_buckets(&self, namespace_id: &str, page: &PageRequest) -> Result<Page<Bucket>>;
    /// Deletes a bucket with its objects and batches, returning the blob
    /// keys to remove; only when no batch of it is in one of `active` and
    /// no collection reads from it (`Busy` names them otherwise).
    async fn delete_bucket(
        &self,
        namespace_id: &str,
        bucket_id: &str,
        active: &[BatchStatus],
    ) -> Result<Removal<Vec<String>>>;

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
    /// Replaces a collection's description, extractors and resolved plan
    /// (tiers, output schema, index signature) and sets `updated_at`; the
    /// rest (its name, source and document count) stays. Not found when
    /// the collection is gone.
    async fn update_collection(&self, collection: &CollectionRecord) -> Result<()>;
    /// Collections whose source is the bucket.
    async fn collections_of_bucket(&self, bucket_id: &str) -> Result<Vec<CollectionRecord>>;
    /// Deletes a collection (its documents go through the
    /// [`DocumentSink`]); only when no batch of its bucket is in one of
    /// `active` (`Busy` names them otherwise).
    async fn delete_collection(
        &self,
        namespace_id: &str,
        collection_id: &str,
        active: &[BatchStatus],
    ) -> Result<Removal<()>>;

    /// The ids among `object_ids` that are not objects of the bucket.
    async fn missing_objects(&self, bucket_id: &str, object_ids: &[String]) -> Result<Vec<String>>;

    /// Creates a DRAFT batch holding `object_ids` (duplicates ignored).
    /// When the batch carries an idempotency key already used in its
    /// bucket, nothing is written and the earlier batch is returned as
    /// `Err(existing)`.
    async fn create_batch(
        &self,
        batch: &BatchRecord,
        object_ids: &[String],
    ) -> Result<std::result::Result<BatchRecord, BatchRecord>>;
    /// Adds objects to the batch while it is in one of `from`, ignoring
    /// those it holds; returns the batch (`None` when it was not).
    async fn add_batch_objects(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
        object_ids: &[String],
    ) -> Result<Option<BatchRecord>>;
    /// A batch of the bucket.
    async fn batch(&self, bucket_id: &str, batch_id: &str) -> Result<Option<BatchRecord>>;
    /// The batch of the bucket created with `Idempotency-Key` `key`.
    async fn batch_by_idempotency_key(
        &self,
        bucket_id: &str,
        key: &str,
    ) -> Result<Option<BatchRecord>>;
    /// The batch of a task, in the namespace.
    async fn batch_by_task(&self, namespace_id: &str, task_id: &str)
    -> Result<Option<BatchRecord>>;
    /// Batches of the bucket by id, optionally of one status.
    async fn list_batches(
        &self,
        bucket_id: &str,
        status: Option<BatchStatus>,
        page: &PageRequest,
    ) -> Result<Page<BatchRecord>>;
    /// Objects of a batch by id, each with its record (`None` when the
    /// object was deleted since it was added).
    async fn batch_object_records(
        &self,
        batch_id: &str,
        page: &PageRequest,
    ) -> Result<Page<(String, Option<ObjectRecord>)>>;
    /// Objects of a batch by id, optionally of one status.
    async fn list_batch_objects(
        &self,
        batch_id: &str,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<BatchObject>>;
    /// QUEUED with the pinned pipelines, only while in one of `from` and
    /// holding `object_count` objects (`None` otherwise), with its event.
    async fn submit_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
        collections: &[PinnedCollection],
        include_processing_history: bool,
        object_count: u64,
    ) -> Result<Option<BatchRecord>>;
    /// CANCELED, lease dropped, while in one of `from` (`None` otherwise),
    /// with its event: the worker's next write fails.
    async fn cancel_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>>;
    /// Objects of the batch that did not complete.
    async fn unfinished_objects(&self, batch_id: &str) -> Result<u64>;
    /// While in one of `from` (`None` otherwise): QUEUED again with its
    /// objects that did not complete pending from the first collection,
    /// counters and error recounted from those that did, with its event.
    async fn retry_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>>;
    /// Deletes the batch while in one of `from` (`None` otherwise),
    /// returning its artifacts' blob keys.
    async fn delete_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
    ) -> Result<Option<Vec<String>>>;

    /// Leases the oldest QUEUED batch, or one whose lease expired, to
    /// `owner` until `lease_ms` from now. A batch already claimed
    /// `max_attempts` times is failed instead.
    async fn claim_batch(
        &self,
        owner: &str,
        lease_ms: i64,
        max_attempts: u32,
    ) -> Result<Option<Claim>>;
    /// Extends the lease and records the worker's report; `false` when the
    /// lease is lost (canceled, or taken over).
    async fn renew_lease(&self, lease: &Lease, lease_ms: i64, live: &LiveProgress) -> Result<bool>;
    /// Gives the batch back to the queue (the worker is stopping).
    async fn release_batch(&self, lease: &Lease) -> Result<()>;
    /// Objects of the batch still to run through collection `stage`.
    async fn pending_objects(&self, batch_id: &str, stage: u32) -> Result<Vec<String>>;
    /// Records a chunk's outcomes (its documents are written already) in
    /// one write fenced by the lease; returns the batch's `processed` and
    /// `failed` after it. `LeaseLost` when the lease is gone.
    async fn record_chunk(&self, lease: &Lease, chunk: &ChunkOutcome) -> Result<(u64, u64)>;
    /// Records that the batch ran `pinned` to the end: the collection takes
    /// its signature, tiers and output schema.
    async fn finish_collection(&self, lease: &Lease, pinned: &PinnedCollection) -> Result<()>;
    /// PROCESSING → COMPLETED or FAILED, fenced by the lease.
    async fn finish_batch(
        &self,
        lease: &Lease,
        status: BatchStatus,
        error_message: Option<&str>,
    ) -> Result<()>;
}

/// Where documents live: workers upsert them, the API reads them.
///
/// Upserts are idempotent (the id is derived from the collection and the
/// object), so a worker writes a chunk's documents first and then records
/// the chunk's outcomes under its lease: a crash in between only means the
/// chunk is done again and its documents replaced by equal ones.
#[async_trait]
pub trait DocumentSink: Send + Sync + std::fmt::Debug {
    /// Writes documents of one collection by id (one written again keeps
    /// its `created_at`) and keeps the collection's `document_count` in
    /// step. Returns how many did not exist before; `NotFound` when the
    /// collection is gone. With a `lease`, the write happens only while it
    /// holds its batch, in the same transaction (`LeaseLost` otherwise).
    async fn upsert_documents(
        &self,
        namespace_id: &str,
        collection_id: &str,
        documents: &[DocumentRecord],
        lease: Option<&Lease>,
    ) -> Result<u64>;
    /// Documents of a collection by id.
    async fn list_documents(
        &self,
        collection_id: &str,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<DocumentRecord>>;
    /// A document of a collection.
    async fn document(
        &self,
        collection_id: &str,
        document_id: &str,
    ) -> Result<Option<DocumentRecord>>;

    /// Deletes every document of a collection.
    async fn delete_documents(&self, collection_id: &str) -> Result<()>;
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

/// A new id: `prefix` + `_` + a ULID (time-ordered, lower case).
pub fn new_id(prefix: &str) -> String {
    // Monotonic within this process: ids made in the same millisecond
    // still sort in the order they were made.
    static IDS: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let id = IDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new());
    format!("{prefix}_{}", id.to_string().to_lowercase())
}

/// Now, as RFC 3339 with milliseconds in UTC.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ExtractorRef;
    use std::collections::BTreeMap;

    fn r(name: &str, version: Option<&str>, k: u64) -> ExtractorRef {
        ExtractorRef {
            name: name.into(),
            version: version.map(Into::into),
            params: Some(serde_json::json!({ "k": k })),
        }
    }

    #[test]
    fn a_batch_writes_its_plan_back_only_over_the_pipeline_it_ran() {
        let pinned = PinnedCollection {
            collection_id: "col".into(),
            collection_name: "c".into(),
            extractors: vec![r("keywords", Some("1.2.0"), 5)],
            tiers: Vec::new(),
            output_schema: BTreeMap::new(),
            index_signature: "sig".into(),
            manifests: BTreeMap::new(),
        };
        assert!(pinned.still_configured(&[r("keywords", None, 5)]));
        assert!(pinned.still_configured(&[r("keywords", Some("v1.2.0"), 5)]));
        assert!(!pinned.still_configured(&[r("keywords", Some("1.1.0"), 5)]));
        assert!(!pinned.still_configured(&[r("keywords", None, 6)]));
        assert!(!pinned.still_configured(&[r("entities", None, 5)]));
        assert!(!pinned.still_configured(&[r("keywords", None, 5), r("entities", None, 5)]));
    }
}
