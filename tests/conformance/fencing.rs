//! Fencing by time: a worker whose lease renewals fail (the store answers
//! with errors, not "lost") for longer than the lease writes nothing more,
//! so nothing it writes can land after another worker took its batch over.
//! The store here is the real SQLite store behind a wrapper whose renewals
//! fail on demand; the second worker is a real `strata serve`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use strata_host::store::*;

use super::support::flow::*;
use super::support::{Options, Server};

/// The real store, but `renew_shard` and `active_shards` (claims) fail while
/// `failing` is set: the store is away for this worker, though its other
/// writes still land.
#[derive(Debug)]
struct FailingRenewals {
    inner: Arc<SqliteStore>,
    failing: AtomicBool,
}

#[async_trait]
impl Store for FailingRenewals {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

#[async_trait]
impl NamespaceStore for FailingRenewals {
    async fn create_namespace(&self, ns: &Namespace) -> Result<()> {
        self.inner.create_namespace(ns).await
    }

    async fn namespace(&self, id_or_name: &str) -> Result<Option<Namespace>> {
        self.inner.namespace(id_or_name).await
    }

    async fn list_namespaces(&self, page: &PageRequest) -> Result<Page<Namespace>> {
        self.inner.list_namespaces(page).await
    }

    async fn create_key(&self, key: &ApiKey, secret_hash: &str) -> Result<()> {
        self.inner.create_key(key, secret_hash).await
    }

    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        self.inner.key_by_hash(secret_hash).await
    }

    async fn has_admin_key(&self) -> Result<bool> {
        self.inner.has_admin_key().await
    }

    async fn list_keys(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
        self.inner.list_keys(page).await
    }

    async fn delete_key(&self, key_id: &KeyId) -> Result<()> {
        self.inner.delete_key(key_id).await
    }

    async fn touch_key(&self, key_id: &KeyId, at: &Timestamp) -> Result<()> {
        self.inner.touch_key(key_id, at).await
    }
}

#[async_trait]
impl BucketStore for FailingRenewals {
    async fn create_bucket(&self, bucket: &Bucket) -> Result<()> {
        self.inner.create_bucket(bucket).await
    }

    async fn bucket(&self, namespace_id: &NamespaceId, id_or_name: &str) -> Result<Option<Bucket>> {
        self.inner.bucket(namespace_id, id_or_name).await
    }

    async fn list_buckets(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<Bucket>> {
        self.inner.list_buckets(namespace_id, page).await
    }

    async fn delete_bucket(
        &self,
        namespace_id: &NamespaceId,
        bucket_id: &BucketId,
        active: &[BatchStatus],
    ) -> Result<Removal<Vec<String>>> {
        self.inner
            .delete_bucket(namespace_id, bucket_id, active)
            .await
    }

    async fn create_object(&self, object: &ObjectRecord) -> Result<()> {
        self.inner.create_object(object).await
    }

    async fn object(
        &self,
        bucket_id: &BucketId,
        object_id: &ObjectId,
    ) -> Result<Option<ObjectRecord>> {
        self.inner.object(bucket_id, object_id).await
    }

    async fn list_objects(
        &self,
        bucket_id: &BucketId,
        page: &PageRequest,
    ) -> Result<Page<ObjectRecord>> {
        self.inner.list_objects(bucket_id, page).await
    }

    async fn delete_object(&self, bucket_id: &BucketId, object_id: &ObjectId) -> Result<String> {
        self.inner.delete_object(bucket_id, object_id).await
    }

    async fn missing_objects(
        &self,
        bucket_id: &BucketId,
        object_ids: &[ObjectId],
    ) -> Result<Vec<ObjectId>> {
        self.inner.missing_objects(bucket_id, object_ids).await
    }
}

#[async_trait]
impl CollectionStore for FailingRenewals {
    async fn create_collection(&self, collection: &CollectionRecord) -> Result<()> {
        self.inner.create_collection(collection).await
    }

    async fn collection(
        &self,
        namespace_id: &NamespaceId,
        id_or_name: &str,
    ) -> Result<Option<CollectionRecord>> {
        self.inner.collection(namespace_id, id_or_name).await
    }

    async fn list_collections(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<CollectionRecord>> {
        self.inner.list_collections(namespace_id, page).await
    }

    async fn update_collection(&self, collection: &CollectionRecord) -> Result<()> {
        self.inner.update_collection(collection).await
    }

    async fn collections_of_bucket(&self, bucket_id: &BucketId) -> Result<Vec<CollectionRecord>> {
        self.inner.collections_of_bucket(bucket_id).await
    }

    async fn delete_collection(
        &self,
        namespace_id: &NamespaceId,
        collection_id: &CollectionId,
        active: &[BatchStatus],
    ) -> Result<Removal<()>> {
        self.inner
            .delete_collection(namespace_id, collection_id, active)
            .await
    }
}

#[async_trait]
impl BatchStore for FailingRenewals {
    async fn count_batches(
        &self,
        namespace_id: &NamespaceId,
        statuses: &[BatchStatus],
    ) -> Result<u64> {
        self.inner.count_batches(namespace_id, statuses).await
    }

    async fn create_batch(
        &self,
        batch: &BatchRecord,
        object_ids: &[ObjectId],
    ) -> Result<std::result::Result<BatchRecord, BatchRecord>> {
        self.inner.create_batch(batch, object_ids).await
    }

    async fn add_batch_objects(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        object_ids: &[ObjectId],
    ) -> Result<Option<BatchRecord>> {
        self.inner
            .add_batch_objects(batch_id, from, object_ids)
            .await
    }

    async fn batch(&self, bucket_id: &BucketId, batch_id: &BatchId) -> Result<Option<BatchRecord>> {
        self.inner.batch(bucket_id, batch_id).await
    }

    async fn batch_by_id(&self, batch_id: &BatchId) -> Result<Option<BatchRecord>> {
        self.inner.batch_by_id(batch_id).await
    }

    async fn batch_by_idempotency_key(
        &self,
        bucket_id: &BucketId,
        key: &str,
    ) -> Result<Option<BatchRecord>> {
        self.inner.batch_by_idempotency_key(bucket_id, key).await
    }

    async fn batch_by_task(
        &self,
        namespace_id: &NamespaceId,
        task_id: &TaskId,
    ) -> Result<Option<BatchRecord>> {
        self.inner.batch_by_task(namespace_id, task_id).await
    }

    async fn list_batches(
        &self,
        bucket_id: &BucketId,
        status: Option<BatchStatus>,
        page: &PageRequest,
    ) -> Result<Page<BatchRecord>> {
        self.inner.list_batches(bucket_id, status, page).await
    }

    async fn batch_object_records(
        &self,
        batch_id: &BatchId,
        page: &PageRequest,
    ) -> Result<Page<(ObjectId, Option<ObjectRecord>)>> {
        self.inner.batch_object_records(batch_id, page).await
    }

    async fn list_batch_objects(
        &self,
        batch_id: &BatchId,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<BatchObject>> {
        self.inner.list_batch_objects(batch_id, status, page).await
    }

    async fn submit_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        pipelines: &Pipelines,
        object_count: u64,
        shards: &[ShardRecord],
    ) -> Result<Option<BatchRecord>> {
        self.inner
            .submit_batch(batch_id, from, pipelines, object_count, shards)
            .await
    }

    async fn cancel_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        self.inner.cancel_batch(batch_id, from).await
    }

    async fn unfinished_objects(&self, batch_id: &BatchId) -> Result<u64> {
        self.inner.unfinished_objects(batch_id).await
    }

    async fn retry_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        self.inner.retry_batch(batch_id, from).await
    }

    async fn delete_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<Vec<String>>> {
        self.inner.delete_batch(batch_id, from).await
    }

    async fn pending_objects(&self, shard: &ShardRecord, stage: u32) -> Result<Vec<ObjectId>> {
        self.inner.pending_objects(shard, stage).await
    }

    async fn record_chunk(&self, lease: &Lease, chunk: &ChunkOutcome) -> Result<(u64, u64)> {
        self.inner.record_chunk(lease, chunk).await
    }

    async fn start_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        self.inner.start_batch(batch_id, from).await
    }

    async fn finish_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        end: &BatchEnd,
    ) -> Result<Option<BatchRecord>> {
        self.inner.finish_batch(batch_id, from, end).await
    }

    async fn stalled_batches(
        &self,
        statuses: &[BatchStatus],
        shard_statuses: &[ShardStatus],
    ) -> Result<Vec<BatchRecord>> {
        self.inner.stalled_batches(statuses, shard_statuses).await
    }

    async fn shards(&self, batch_ids: &[BatchId]) -> Result<Vec<ShardRecord>> {
        self.inner.shards(batch_ids).await
    }

    async fn list_shards(
        &self,
        batch_id: &BatchId,
        page: &PageRequest,
    ) -> Result<Page<ShardRecord>> {
        self.inner.list_shards(batch_id, page).await
    }

    async fn shards_in(&self, statuses: &[BatchStatus]) -> Result<Vec<ShardRecord>> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::backend(std::io::Error::other(
                "claims fail here",
            )));
        }
        self.inner.shards_in(statuses).await
    }

    async fn active_shards(
        &self,
        statuses: &[ShardStatus],
    ) -> Result<Vec<(ShardRecord, BatchStatus)>> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::backend(std::io::Error::other(
                "claims fail here",
            )));
        }
        self.inner.active_shards(statuses).await
    }

    async fn update_shard(
        &self,
        batch_id: &BatchId,
        shard_index: u32,
        expect: &ShardExpect,
        change: &ShardChange,
    ) -> Result<Option<ShardRecord>> {
        self.inner
            .update_shard(batch_id, shard_index, expect, change)
            .await
    }

    async fn renew_shard(
        &self,
        lease: &Lease,
        expires_ms: i64,
        live: &LiveProgress,
    ) -> Result<bool> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::backend(std::io::Error::other(
                "renewals fail here",
            )));
        }
        self.inner.renew_shard(lease, expires_ms, live).await
    }

    async fn heartbeat(&self, worker: &WorkerRecord, at_ms: i64) -> Result<()> {
        self.inner.heartbeat(worker, at_ms).await
    }

    async fn workers(&self, since_ms: i64) -> Result<Vec<WorkerRecord>> {
        self.inner.workers(since_ms).await
    }
}

/// The real document sink; remembers when each of its writes succeeded.
#[derive(Debug)]
struct TimedDocuments {
    inner: Arc<SqliteStore>,
    written: std::sync::Mutex<Vec<Instant>>,
}

#[async_trait]
impl DocumentSink for TimedDocuments {
    async fn upsert_documents(
        &self,
        namespace_id: &NamespaceId,
        collection_id: &CollectionId,
        documents: &[DocumentRecord],
        lease: Option<&Lease>,
    ) -> Result<u64> {
        let written = self
            .inner
            .upsert_documents(namespace_id, collection_id, documents, lease)
            .await?;
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
        Ok(written)
    }

    async fn list_documents(
        &self,
        collection_id: &CollectionId,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<DocumentRecord>> {
        self.inner.list_documents(collection_id, filter, page).await
    }

    async fn document(
        &self,
        collection_id: &CollectionId,
        document_id: &DocumentId,
    ) -> Result<Option<DocumentRecord>> {
        self.inner.document(collection_id, document_id).await
    }

    async fn delete_documents(&self, collection_id: &CollectionId) -> Result<()> {
        self.inner.delete_documents(collection_id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_renewals_fail_writes_nothing_once_its_lease_may_have_expired() {
    let plugins = plugins_with_hostile();
    let plugins_dir = plugins.path().to_str().expect("utf-8 path").to_owned();
    // The API alone; the batch is run by the worker below, then by a
    // second server.
    let api = Server::start_with(Options {
        args: vec![
            "--plugins".into(),
            plugins_dir.clone(),
            "--max-shards".into(),
            "0".into(),
        ],
        ..Options::default()
    });
    // 20 objects that take half a second each: ten seconds of work.
    let batch = hostile_batch(&api, 40, |i| i % 2 == 0).await;

    let sqlite = Arc::new(SqliteStore::open(&api.data_dir.join("strata.db")).expect("store"));
    let store = Arc::new(FailingRenewals {
        inner: sqlite.clone(),
        failing: AtomicBool::new(false),
    });
    let documents = Arc::new(TimedDocuments {
        inner: sqlite.clone(),
        written: std::sync::Mutex::default(),
    });
    let blobs =
        Arc::new(strata_host::blob::LocalBlobs::open(&api.data_dir.join("blobs")).expect("blobs"));
    let engine = strata_host::Engine::new(strata_host::EngineConfig {
        cache_dir: Some(super::support::compile_cache()),
        call_timeout: Duration::from_millis(500),
        ..strata_host::EngineConfig::default()
    })
    .expect("engine");
    let catalog = tokio::task::spawn_blocking({
        let dir = plugins.path().to_owned();
        move || strata_host::catalog::Catalog::load_dir(&engine, &dir)
    })
    .await
    .expect("join")
    .expect("catalog");
    let mut config = strata_host::worker::WorkerConfig::new("failing-worker".into());
    config.lease = Duration::from_secs(2);
    config.report_interval = Duration::from_millis(250);
    config.poll_interval = Duration::from_millis(200);
    config.chunk_objects = 1;
    config.max_timeouts = 0;
    config.max_shards = 1;
    config.error_budget = 1.0;
    let lease = config.lease;
    let deps = strata_host::worker::Deps {
        store: store.clone(),
        documents: documents.clone(),
        blobs,
        catalog: Arc::new(catalog),
        registry: sqlite.clone(),
        follower: None,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(strata_host::worker::run_pollers(
        deps,
        config,
        Arc::new(tokio::sync::Notify::new()),
        shutdown.clone(),
    ));
    poll_until(&api, &batch.path, |b| {
        b["progress"]["processed"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    // From now on every renewal fails: by `lease` from now the lease may
    // have expired in the store, and another worker may hold the batch.
    let failing_since = Instant::now();
    store.failing.store(true, Ordering::SeqCst);
    // Nobody takes the batch over for twice the lease: a worker that
    // wrote on meanwhile would write under a lease that may have expired.
    tokio::time::sleep(2 * lease).await;
    let second = Server::start_in(
        &api.data_dir,
        &slow_options(plugins.path(), "0.5", &["--error-budget", "1"]),
    );
    let done = poll_until(&second, &batch.path, terminal).await;
    let done = done.last().expect("final");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["attempts"], 2, "taken over once: {done}");
    assert_eq!(done["progress"]["processed"], 40, "{done}");
    let written = documents
        .written
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        written.len() >= 2,
        "the first worker wrote its first chunks"
    );
    let late: Vec<Duration> = written
        .iter()
        .filter(|at| **at >= failing_since + lease)
        .map(|at| at.duration_since(failing_since))
        .collect();
    assert!(
        late.is_empty(),
        "the first worker wrote documents {late:?} after its renewals began to fail"
    );
    let (_, documents_listed) = second
        .get(&format!(
            "/v1/collections/{}/documents?limit=100",
            batch.collection_id
        ))
        .await;
    assert_eq!(
        documents_listed["results"].as_array().map(Vec::len),
        Some(40),
        "{documents_listed}"
    );
    shutdown.cancel();
    worker.await.expect("the first worker stops");
}
