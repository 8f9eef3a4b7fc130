//! Batch records as stored: status, pinned pipelines, the outcome of each
//! object, and the shards that split the work. What may happen to them is decided in
//! `crate::batches`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::*;

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

/// One collection's pipeline as a batch runs it, pinned at submit. The
/// API shows it as `api::batches::PinnedView`, without its manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinnedCollection {
    /// The collection.
    pub collection_id: CollectionId,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The extractors of the tier (with the collection when there are several).
    pub name: String,
    /// From 1.
    pub index: u32,
    /// Tiers over every collection of the batch.
    pub total: u32,
}

/// What the worker running a batch last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveProgress {
    /// Objects per second over the recent window.
    pub items_per_second: f64,
    /// The earliest tier with unfinished work.
    pub current_stage: Option<Stage>,
    /// When the worker reported (RFC 3339).
    pub reported_at: Timestamp,
    /// When `processed` last grew (RFC 3339).
    pub last_progress_at: Timestamp,
}

/// A batch: objects of one bucket to run through every collection of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// `btch_…`
    pub batch_id: BatchId,
    /// Owning namespace.
    pub namespace_id: NamespaceId,
    /// The bucket whose objects it holds.
    pub bucket_id: BucketId,
    /// Free text.
    pub batch_name: Option<String>,
    /// `task_…`: the handle shown once the batch is submitted.
    pub task_id: TaskId,
    /// Where the batch is.
    pub status: BatchStatus,
    /// Objects in the batch.
    pub total: u64,
    /// Objects that finished every tier of every collection: the sum
    /// over its shards, filled when read through `crate::batches` (never
    /// stored, like the other progress fields below).
    #[serde(skip)]
    pub processed: u64,
    /// Of those, objects with at least one error.
    #[serde(skip)]
    pub failed: u64,
    /// Claims of its most claimed shard.
    #[serde(skip)]
    pub attempts: u32,
    /// Record each enrichment in the documents.
    pub include_processing_history: bool,
    /// The pipelines, pinned at submit.
    pub collections: Vec<PinnedCollection>,
    /// Failed objects by error category.
    #[serde(skip)]
    pub error_summary: std::collections::BTreeMap<String, u64>,
    /// Why the batch failed.
    pub error_message: Option<String>,
    /// Its running workers' reports, together.
    #[serde(skip)]
    pub live: Option<LiveProgress>,
    /// The lease of its running shards that expires first: the worker
    /// and until when (ms since the epoch).
    #[serde(skip)]
    pub lease: Option<LeaseHolder>,
    /// Its shards, by status.
    #[serde(skip)]
    pub shards: std::collections::BTreeMap<ShardStatus, u32>,
    /// `Idempotency-Key` of the create request and the hash of its body.
    pub idempotency: Option<(String, String)>,
    /// RFC 3339.
    pub created_at: Timestamp,
    /// RFC 3339.
    pub updated_at: Timestamp,
    /// RFC 3339, once submitted.
    pub submitted_at: Option<Timestamp>,
    /// RFC 3339, when first claimed.
    pub started_at: Option<Timestamp>,
    /// RFC 3339, when it reached a terminal status.
    pub finished_at: Option<Timestamp>,
}

impl BatchRecord {
    /// A new DRAFT batch of a bucket, without objects yet.
    pub fn draft(
        namespace_id: &NamespaceId,
        bucket_id: &BucketId,
        batch_name: Option<String>,
        idempotency: Option<(String, String)>,
    ) -> Self {
        let now = now();
        BatchRecord {
            batch_id: BatchId::generate(),
            namespace_id: namespace_id.to_owned(),
            bucket_id: bucket_id.to_owned(),
            batch_name,
            task_id: TaskId::generate(),
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
            shards: std::collections::BTreeMap::new(),
            idempotency,
            created_at: now,
            updated_at: now,
            submitted_at: None,
            started_at: None,
            finished_at: None,
        }
    }
}

/// One object's state in a batch. The API shows it as
/// `api::batches::BatchObjectView`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchObject {
    /// The object.
    pub object_id: ObjectId,
    /// `pending`, `completed` or `failed`.
    pub status: String,
    /// What went wrong, when it failed.
    pub error: Option<String>,
}

/// What a submit pins: every collection's pipeline, and whether documents
/// record each enrichment.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipelines {
    /// The collections, versions resolved.
    pub collections: Vec<PinnedCollection>,
    /// Record each enrichment in the documents.
    pub include_processing_history: bool,
}

/// How a batch ends.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchEnd {
    /// A terminal status.
    pub status: BatchStatus,
    /// Why it failed.
    pub error_message: Option<String>,
    /// The pipelines whose plans go back to their collections.
    pub write_back: Vec<PinnedCollection>,
    /// Write only while no shard has work left (`None` otherwise): a
    /// batch ended by its last shard, not one failed or canceled early.
    pub only_when_settled: bool,
}

/// The outcomes of one chunk of finished objects of one collection.
#[derive(Debug, Clone)]
pub struct ChunkOutcome {
    /// Index of the collection in the batch.
    pub stage: u32,
    /// Whether it is the batch's last collection: objects finish then.
    pub last: bool,
    /// The collection.
    pub collection_id: CollectionId,
    /// Each object's error, if any.
    pub outcomes: Vec<(ObjectId, Option<String>)>,
    /// The shard's error summary after this chunk.
    pub error_summary: std::collections::BTreeMap<String, u64>,
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

/// What a conditional delete found: it removed the record, or batches (by
/// id) or collections (by name) still use it.
#[derive(Debug, Clone, PartialEq)]
pub enum Removal<T> {
    /// Deleted; what is left to clean up.
    Removed(T),
    /// Nothing deleted.
    Busy {
        /// Active batches of it.
        batches: Vec<BatchId>,
        /// Names of the collections reading from it.
        collections: Vec<String>,
    },
}

/// Batches, their objects' outcomes, claims and leases: storage only; the rules are in `crate::batches`.
#[async_trait]
pub trait BatchStore: Send + Sync {
    /// Batches of a namespace in one of `statuses`.
    async fn count_batches(
        &self,
        namespace_id: &NamespaceId,
        statuses: &[BatchStatus],
    ) -> Result<u64>;
    /// Creates a DRAFT batch holding `object_ids` (duplicates ignored).
    /// When the batch carries an idempotency key already used in its
    /// bucket, nothing is written and the earlier batch is returned as
    /// `Err(existing)`.
    async fn create_batch(
        &self,
        batch: &BatchRecord,
        object_ids: &[ObjectId],
    ) -> Result<std::result::Result<BatchRecord, BatchRecord>>;
    /// Adds objects to the batch while it is in one of `from`, ignoring
    /// those it holds; returns the batch (`None` when it was not).
    async fn add_batch_objects(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        object_ids: &[ObjectId],
    ) -> Result<Option<BatchRecord>>;
    /// A batch of the bucket.
    async fn batch(&self, bucket_id: &BucketId, batch_id: &BatchId) -> Result<Option<BatchRecord>>;
    /// A batch, whatever its bucket (for workers).
    async fn batch_by_id(&self, batch_id: &BatchId) -> Result<Option<BatchRecord>>;
    /// The batch of the bucket created with `Idempotency-Key` `key`.
    async fn batch_by_idempotency_key(
        &self,
        bucket_id: &BucketId,
        key: &str,
    ) -> Result<Option<BatchRecord>>;
    /// The batch of a task, in the namespace.
    async fn batch_by_task(
        &self,
        namespace_id: &NamespaceId,
        task_id: &TaskId,
    ) -> Result<Option<BatchRecord>>;
    /// Batches of the bucket by id, optionally of one status.
    async fn list_batches(
        &self,
        bucket_id: &BucketId,
        status: Option<BatchStatus>,
        page: &PageRequest,
    ) -> Result<Page<BatchRecord>>;
    /// Objects of a batch by id, each with its record (`None` when the
    /// object was deleted since it was added).
    async fn batch_object_records(
        &self,
        batch_id: &BatchId,
        page: &PageRequest,
    ) -> Result<Page<(ObjectId, Option<ObjectRecord>)>>;
    /// Objects of a batch by id, optionally of one status.
    async fn list_batch_objects(
        &self,
        batch_id: &BatchId,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<BatchObject>>;
    /// QUEUED with the pinned pipelines and its `shards`, only while in
    /// one of `from` and holding `object_count` objects (`None`
    /// otherwise), with its event.
    async fn submit_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        pipelines: &Pipelines,
        object_count: u64,
        shards: &[ShardRecord],
    ) -> Result<Option<BatchRecord>>;
    /// CANCELED with its event while in one of `from` (`None` otherwise);
    /// its shards with work left are canceled, so their workers' next
    /// writes fail.
    async fn cancel_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>>;
    /// Objects of the batch that did not complete.
    async fn unfinished_objects(&self, batch_id: &BatchId) -> Result<u64>;
    /// While in one of `from` (`None` otherwise): QUEUED again with its
    /// objects that did not complete pending from the first collection,
    /// with its event; each shard holding such objects is queued again
    /// (no attempts, counters recounted), the others are COMPLETED.
    async fn retry_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>>;
    /// Deletes the batch while in one of `from` (`None` otherwise),
    /// returning its artifacts' blob keys.
    async fn delete_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<Vec<String>>>;
    /// Objects of the shard still to run through collection `stage`, in
    /// id order.
    async fn pending_objects(&self, shard: &ShardRecord, stage: u32) -> Result<Vec<ObjectId>>;
    /// Records a chunk's outcomes (its documents are written already) in
    /// one write fenced by the lease; returns the shard's `processed` and
    /// `failed` after it. `LeaseLost` when the lease is gone.
    async fn record_chunk(&self, lease: &Lease, chunk: &ChunkOutcome) -> Result<(u64, u64)>;
    /// PROCESSING, with its event, while in one of `from` (`None`
    /// otherwise); `started_at` is set once.
    async fn start_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>>;
    /// Ends the batch as `end` says, with its event, while in one of
    /// `from` (`None` otherwise): its shards with work left are canceled,
    /// and each collection of `end.write_back` still configured as the
    /// batch ran it takes the batch's signature, tiers and output schema.
    async fn finish_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        end: &BatchEnd,
    ) -> Result<Option<BatchRecord>>;
    /// Batches in one of `statuses` none of whose shards is in one of
    /// `shard_statuses`.
    async fn stalled_batches(
        &self,
        statuses: &[BatchStatus],
        shard_statuses: &[ShardStatus],
    ) -> Result<Vec<BatchRecord>>;

    /// The shards of these batches, by batch and index.
    async fn shards(&self, batch_ids: &[BatchId]) -> Result<Vec<ShardRecord>>;
    /// Shards of a batch by index.
    async fn list_shards(
        &self,
        batch_id: &BatchId,
        page: &PageRequest,
    ) -> Result<Page<ShardRecord>>;
    /// Every shard of the batches in one of `statuses` (whatever the
    /// shard's own status), by batch and index.
    async fn shards_in(&self, statuses: &[BatchStatus]) -> Result<Vec<ShardRecord>>;
    /// Every shard in one of `statuses`, with the status of its batch.
    async fn active_shards(
        &self,
        statuses: &[ShardStatus],
    ) -> Result<Vec<(ShardRecord, BatchStatus)>>;
    /// Changes a shard while it is as `expect` says (`None` otherwise).
    async fn update_shard(
        &self,
        batch_id: &BatchId,
        shard_index: u32,
        expect: &ShardExpect,
        change: &ShardChange,
    ) -> Result<Option<ShardRecord>>;
    /// Extends the lease to `expires_ms` and records the worker's report;
    /// `false` when the lease is lost (canceled, or taken over).
    async fn renew_shard(
        &self,
        lease: &Lease,
        expires_ms: i64,
        live: &LiveProgress,
    ) -> Result<bool>;

    /// Records a worker's heartbeat.
    async fn heartbeat(&self, worker: &WorkerRecord, at_ms: i64) -> Result<()>;
    /// Workers heard from since `since_ms`, by id.
    async fn workers(&self, since_ms: i64) -> Result<Vec<WorkerRecord>>;
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
