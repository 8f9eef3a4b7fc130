//! Pollers: claim queued shards under a lease and run them.
//!
//! A poller claims a shard (a range of a batch's objects) with a lease
//! (owner, random token, expiry) by the fairness rule of
//! `crate::batches::shards`, renews it every
//! [`WorkerConfig::report_interval`] together with the live progress, and
//! makes every write conditional on the token: a canceled batch or a
//! taken-over shard stops at its next write. Each of the batch's pinned
//! collections runs in turn: the shard's objects still pending for it
//! stream from the shard's row groups of its Parquet manifest through the
//! engine, and each finished chunk is written at once (documents upserted,
//! outcomes recorded). A shard whose worker died is rescued after its
//! lease expires and resumes elsewhere with the objects not yet written;
//! the worker that ends a batch's last shard ends the batch.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, warn};

use crate::artifacts::{self, BlobSource, ManifestRow};
use crate::batches::shards::Fairness;
use crate::batches::{Claimed, Policy, work};
use crate::blob::BlobStore;
use crate::catalog::Catalog;
use crate::engine::executor::{
    ExecOptions, Finished, ObjectInput, RowError, TierProgress, execute,
};
use crate::engine::planner::Plan;
use crate::pipeline;
use crate::store::{
    BatchRecord, ChunkOutcome, DocumentRecord, DocumentSink, InternalMetadata, Lease, LiveProgress,
    ObjectId, PinnedCollection, ShardRecord, Stage, Store, StoreError, WorkerId, WorkerRecord,
    document_id, now,
};

/// How pollers behave.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker in leases and logs.
    pub owner: WorkerId,
    /// How often to look for queued shards (a local submit wakes at once).
    pub poll_interval: Duration,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// How often the lease is renewed and progress reported.
    pub report_interval: Duration,
    /// Shards run at once by this process.
    pub max_shards: usize,
    /// Claims of one shard before it fails (its workers keep dying).
    pub max_attempts: u32,
    /// Share of failed objects past which a batch fails.
    pub error_budget: f64,
    /// How shards are shared out among batches and namespaces.
    pub fairness: Fairness,
    /// Objects per chunk: the unit of writing and of progress.
    pub chunk_objects: usize,
    /// Bytes of content per chunk: a chunk also ends once it holds this
    /// much, so memory stays bounded whatever the objects' sizes.
    pub chunk_bytes: usize,
    /// Largest object read: a larger one (uploaded before the limit was
    /// lowered) fails alone, unread.
    pub max_object_bytes: u64,
    /// Timeouts after which an extractor is disabled for the run.
    pub max_timeouts: u32,
    /// Chunks each tier runs at once within one shard.
    pub threads_per_tier: usize,
}

impl WorkerConfig {
    /// Objects per chunk unless configured: enough that a chunk's fixed
    /// costs (one instance per extractor, two transactions) stay small
    /// beside its objects' (`make bench`, section 5: 128 runs the text
    /// pipeline 1.2× faster than 32), few enough that progress moves often.
    pub const DEFAULT_CHUNK_OBJECTS: usize = 128;

    /// Defaults for a worker named `owner`.
    pub fn new(owner: WorkerId) -> Self {
        WorkerConfig {
            owner,
            poll_interval: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            report_interval: Duration::from_secs(1),
            max_shards: 2,
            max_attempts: 3,
            error_budget: 0.5,
            fairness: Fairness::default(),
            chunk_objects: Self::DEFAULT_CHUNK_OBJECTS,
            chunk_bytes: 64 << 20,
            max_object_bytes: 512 << 20,
            max_timeouts: 3,
            threads_per_tier: crate::engine::executor::available_cores(),
        }
    }

    /// The rules shards are claimed and rescued by.
    pub fn policy(&self) -> Policy {
        Policy {
            lease_ms: self.lease.as_millis() as i64,
            max_attempts: self.max_attempts,
            error_budget: self.error_budget,
            fairness: self.fairness,
        }
    }
}

/// What a worker reads and writes.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Batches.
    pub store: Arc<dyn Store>,
    /// Documents.
    pub documents: Arc<dyn DocumentSink>,
    /// Object contents, manifests.
    pub blobs: Arc<dyn BlobStore>,
    /// Installed extractors.
    pub catalog: Arc<Catalog>,
    /// Who owns each extractor name and who may use it.
    pub registry: Arc<dyn crate::store::Registry>,
    /// Installs published versions this process has not seen yet.
    pub follower: Option<crate::catalog::Follower>,
}

/// A worker name unique to this process: host, pid and a random suffix.
pub fn default_owner() -> WorkerId {
    let suffix = &crate::keys::random_token()[..6];
    WorkerId::from(format!("{}-{}-{suffix}", host_name(), std::process::id()))
}

/// This machine's name.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Polls for shards until `shutdown`, running up to `max_shards` at once;
/// `wake` makes it look at once. Each look first rescues expired shards
/// and ends batches whose last shard ended (any worker may). On shutdown,
/// running shards give their lease back so that another worker takes them
/// over without waiting.
pub async fn run_pollers(
    deps: Deps,
    config: WorkerConfig,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    if config.max_shards == 0 {
        return;
    }
    let permits = Arc::new(Semaphore::new(config.max_shards));
    let mut running = tokio::task::JoinSet::new();
    let policy = config.policy();
    let me = WorkerRecord {
        worker_id: config.owner.clone(),
        host: host_name(),
        pid: std::process::id(),
        slots: config.max_shards as u32,
        started_at: now(),
        heartbeat_at: now(),
    };
    info!(owner = %config.owner, max_shards = config.max_shards, "pollers started");
    loop {
        while running.try_join_next().is_some() {}
        let heartbeat = WorkerRecord {
            heartbeat_at: now(),
            ..me.clone()
        };
        if let Err(e) = deps
            .store
            .heartbeat(&heartbeat, chrono::Utc::now().timestamp_millis())
            .await
        {
            warn!(error = %e, "recording a heartbeat failed");
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        match work::claim(deps.store.as_ref(), &config.owner, &policy).await {
            Ok(Some(claimed)) => {
                let (deps, config, shutdown) = (deps.clone(), config.clone(), shutdown.clone());
                let span = tracing::info_span!(
                    "shard",
                    batch_id = %claimed.batch.batch_id,
                    shard = claimed.shard.shard_index
                );
                running.spawn(
                    async move {
                        run_shard(&deps, &config, claimed, shutdown).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
                continue;
            }
            Ok(None) => drop(permit),
            Err(e) => {
                warn!(error = %e, "claiming a shard failed");
                drop(permit);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.poll_interval) => {}
            () = wake.notified() => {}
            () = shutdown.cancelled() => break,
        }
    }
    while running.join_next().await.is_some() {}
    info!("pollers stopped");
}

/// Why a run stopped before the end.
#[derive(Debug)]
enum Stop {
    /// Canceled, or the lease was taken over: someone else owns the shard.
    LeaseLost,
    /// This process is shutting down.
    Shutdown,
    /// The pipeline cannot run: the batch fails with this reason.
    Failed(String),
    /// The store failed: the shard goes back to the queue.
    Store(StoreError),
    /// An extractor could not be loaded just now: the shard goes back to
    /// the queue.
    Unavailable(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost(_) => Stop::LeaseLost,
            e => Stop::Store(e),
        }
    }
}

const RUNNING: u8 = 0;
const LOST: u8 = 1;
const SHUTDOWN: u8 = 2;

/// What the feeding, writing and reporting sides of a run share.
struct Shared {
    state: AtomicU8,
    processed: AtomicU64,
    stage: Mutex<Option<StageState>>,
    last_progress: Mutex<Instant>,
    /// Asks for a report now (the stage changed).
    kick: Notify,
    /// Ends the engine's calls in progress once the run has stopped.
    interrupt: CancellationToken,
    /// When the last renewal that succeeded was sent (the claim, at
    /// first): the lease holds until at least then plus its length.
    renewed: Mutex<Instant>,
}

struct StageState {
    /// Index of the collection in the batch.
    collection: usize,
    /// Objects this run sends through it.
    objects: u64,
    tiers: Arc<TierProgress>,
}

impl Shared {
    fn running(&self) -> bool {
        self.state.load(Ordering::SeqCst) == RUNNING
    }

    /// Stops the run: the state first, so that whatever an interrupted
    /// call produces is never written.
    fn stop(&self, why: u8) {
        let _ = self
            .state
            .compare_exchange(RUNNING, why, Ordering::SeqCst, Ordering::SeqCst);
        self.interrupt.cancel();
    }

    /// Takes the shard's counters as the store has them after a write.
    fn counted(&self, (processed, failed): (u64, u64), failed_before: &AtomicU64) {
        let before = self.processed.swap(processed, Ordering::Relaxed);
        let failed_was = failed_before.swap(failed, Ordering::Relaxed);
        if processed > before {
            *lock(&self.last_progress) = Instant::now();
            let newly_failed = failed.saturating_sub(failed_was);
            metrics::counter!("strata_objects_processed_total", "outcome" => "completed")
                .increment((processed - before).saturating_sub(newly_failed));
            metrics::counter!("strata_objects_processed_total", "outcome" => "failed")
                .increment(newly_failed);
        }
    }

    /// Whether the lease may have expired in the store: no renewal has
    /// succeeded for its length (less a report interval, for the clocks).
    /// Past that another worker may hold the shard, so this one writes
    /// nothing more: it fences itself by time when the store cannot.
    fn lease_expired(&self, config: &WorkerConfig) -> bool {
        lock(&self.renewed).elapsed() + config.report_interval >= config.lease
    }

    fn stopped(&self) -> Option<Stop> {
        match self.state.load(Ordering::SeqCst) {
            LOST => Some(Stop::LeaseLost),
            SHUTDOWN => Some(Stop::Shutdown),
            _ => None,
        }
    }
}

async fn run_shard(
    deps: &Deps,
    config: &WorkerConfig,
    claimed: Claimed,
    shutdown: CancellationToken,
) {
    let Claimed {
        batch,
        shard,
        lease,
    } = claimed;
    info!(
        attempt = shard.attempts,
        objects = shard.objects,
        "shard claimed"
    );
    metrics::gauge!("strata_shards_running").increment(1.0);
    let shared = Arc::new(Shared {
        state: AtomicU8::new(RUNNING),
        processed: AtomicU64::new(shard.processed),
        stage: Mutex::new(None),
        last_progress: Mutex::new(Instant::now()),
        kick: Notify::new(),
        interrupt: CancellationToken::new(),
        renewed: Mutex::new(Instant::now()),
    });
    let reporter = tokio::spawn(report_progress(
        deps.store.clone(),
        config.clone(),
        batch.clone(),
        lease.clone(),
        shared.clone(),
        shutdown.clone(),
    ));
    let result = process(deps, config, &batch, &shard, &lease, &shared).await;
    reporter.abort();
    let store = deps.store.as_ref();
    let outcome = match result {
        Ok(()) => work::finish_shard(store, &lease, config.error_budget)
            .await
            .map(drop),
        Err(Stop::Failed(reason)) => work::fail(store, &batch.batch_id, &reason).await.map(drop),
        Err(Stop::LeaseLost) => {
            info!("batch canceled or ended, or shard taken over; stopped");
            Ok(())
        }
        Err(Stop::Shutdown) => {
            info!("shutting down; giving the shard back to the queue");
            give_back(store, &lease, None).await;
            Ok(())
        }
        // Transient failures give the shard back counting the claim, with
        // the reason: one that keeps failing ends after its last claim. If
        // even that fails, its lease expires.
        Err(Stop::Store(e)) => {
            warn!(error = %e, "the store failed; giving the shard back");
            give_back(store, &lease, Some(&format!("the store failed: {e}"))).await;
            back_off(config, &shutdown).await;
            Ok(())
        }
        Err(Stop::Unavailable(reason)) => {
            warn!(%reason, "the shard cannot run just now; giving it back");
            give_back(store, &lease, Some(&reason)).await;
            back_off(config, &shutdown).await;
            Ok(())
        }
    };
    match outcome {
        Ok(()) => {}
        Err(StoreError::LeaseLost(_)) => info!("the shard was canceled or taken over at its end"),
        Err(e) => warn!(error = %e, "recording the shard's end failed; its lease will expire"),
    }
    metrics::gauge!("strata_shards_running").decrement(1.0);
}

/// Hands a shard back to the queue (see [`work::give_back`]).
async fn give_back(store: &dyn Store, lease: &Lease, failure: Option<&str>) {
    if let Err(e) = work::give_back(store, lease, failure).await {
        warn!(error = %e, "giving the shard back failed; its lease will expire");
    }
}

/// Keeps this poller's slot for a poll interval after giving a shard back
/// for a transient failure, so that it is not claimed again at once.
async fn back_off(config: &WorkerConfig, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(config.poll_interval) => {}
        () = shutdown.cancelled() => {}
    }
}

async fn process(
    deps: &Deps,
    config: &WorkerConfig,
    batch: &BatchRecord,
    shard: &ShardRecord,
    lease: &Lease,
    shared: &Arc<Shared>,
) -> Result<(), Stop> {
    let mut plans = Vec::with_capacity(batch.collections.len());
    for pinned in &batch.collections {
        let plan_now = || {
            pipeline::plan_in(
                &deps.catalog,
                deps.registry.as_ref(),
                &batch.namespace_id,
                &pinned.extractors,
            )
        };
        let mut planned = plan_now().await;
        // A version published on another host moments ago may not be
        // installed here yet: install what the registry has, then retry.
        if let (Err(_), Some(follower)) = (&planned, &deps.follower) {
            follower.catch_up(0).await;
            planned = plan_now().await;
        }
        let plan = planned.map_err(|e| {
            let reason = format!("collection `{}` cannot run: {e}", pinned.collection_name);
            if e.unavailable {
                Stop::Unavailable(reason)
            } else {
                Stop::Failed(reason)
            }
        })?;
        plans.push(plan);
    }
    let summary = Arc::new(Mutex::new(shard.error_summary.clone()));
    let failed = Arc::new(AtomicU64::new(shard.failed));
    let last = batch.collections.len().saturating_sub(1);
    let rows = shard.row_start..shard.row_start + shard.objects;
    for (i, (pinned, plan)) in batch.collections.iter().zip(plans).enumerate() {
        let pending: HashSet<ObjectId> = deps
            .store
            .pending_objects(shard, i as u32)
            .await?
            .into_iter()
            .collect();
        if !pending.is_empty() {
            let Some(manifest) = pinned.manifests.values().next().cloned() else {
                return Err(Stop::Failed(format!(
                    "collection `{}` has no manifest",
                    pinned.collection_name
                )));
            };
            let tiers = Arc::new(TierProgress::new(plan.tiers.len()));
            *lock(&shared.stage) = Some(StageState {
                collection: i,
                objects: pending.len() as u64,
                tiers: tiers.clone(),
            });
            shared.kick.notify_one();
            let run = CollectionRun {
                deps: deps.clone(),
                config: config.clone(),
                batch: batch.clone(),
                lease: lease.clone(),
                pinned: pinned.clone(),
                stage: i as u32,
                last: i == last,
                shared: shared.clone(),
                summary: summary.clone(),
                failed: failed.clone(),
            };
            let handle = tokio::runtime::Handle::current();
            let range = rows.clone();
            let missing = tokio::task::spawn_blocking(move || {
                run.execute(&handle, &plan, &manifest, range, pending, tiers)
            })
            .await
            .map_err(|e| Stop::Failed(format!("the engine failed: {e}")))??;
            if !missing.is_empty() && shared.stopped().is_none() {
                // Only a batch changed behind the submit's back gets here;
                // its stray objects fail rather than stay pending forever.
                let chunk = ChunkOutcome {
                    stage: i as u32,
                    last: i == last,
                    collection_id: pinned.collection_id.clone(),
                    outcomes: missing
                        .into_iter()
                        .map(|id| (id, Some("object: not in the batch's manifest".to_owned())))
                        .collect(),
                    error_summary: lock(&summary).clone(),
                };
                let counts = deps.store.record_chunk(lease, &chunk).await?;
                shared.counted(counts, &failed);
            }
        }
        if let Some(stop) = shared.stopped() {
            return Err(stop);
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One collection of a batch, run on the blocking pool.
struct CollectionRun {
    deps: Deps,
    config: WorkerConfig,
    batch: BatchRecord,
    lease: Lease,
    pinned: PinnedCollection,
    stage: u32,
    last: bool,
    shared: Arc<Shared>,
    summary: Arc<Mutex<BTreeMap<String, u64>>>,
    /// The shard's failed objects, as the store last said.
    failed: Arc<AtomicU64>,
}

impl CollectionRun {
    /// Streams the pending objects of the manifest's `rows` (the shard's)
    /// through `plan`; returns the pending objects they did not list.
    fn execute(
        self,
        handle: &tokio::runtime::Handle,
        plan: &Plan,
        manifest: &str,
        rows: std::ops::Range<u64>,
        pending: HashSet<ObjectId>,
        tiers: Arc<TierProgress>,
    ) -> Result<Vec<ObjectId>, Stop> {
        // A manifest that is gone or malformed fails the batch; one the
        // blob store could not read just now hands it back.
        let unreadable = |e: &dyn std::fmt::Display, transient: bool| {
            let reason = format!("the manifest `{manifest}` cannot be read: {e}");
            if transient {
                Stop::Unavailable(reason)
            } else {
                Stop::Failed(reason)
            }
        };
        let source = BlobSource::open(self.deps.blobs.clone(), manifest, handle.clone())
            .map_err(|e| unreadable(&e, !matches!(e, crate::blob::BlobError::NotFound(_))))?;
        let read_failed = source.read_failed();
        let transient = move || read_failed.load(std::sync::atomic::Ordering::Relaxed);
        let rows = artifacts::stream_manifest(manifest, source, Some(rows))
            .map_err(|e| unreadable(&e, transient()))?;
        let options = ExecOptions {
            chunk_objects: self.config.chunk_objects.max(1),
            chunk_bytes: self.config.chunk_bytes.max(1),
            include_processing_history: self.batch.include_processing_history,
            max_timeouts: self.config.max_timeouts,
            threads_per_tier: self.config.threads_per_tier,
            tier_progress: Some(tiers),
            interrupt: self.shared.interrupt.clone(),
            ..ExecOptions::default()
        };
        // What the feeding thread learns as it reads the manifest: the
        // objects still unseen, each in-flight object's hash, and the
        // first read error.
        let unseen = Arc::new(Mutex::new(pending));
        let hashes: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let inputs = {
            let (shared, blobs) = (self.shared.clone(), self.deps.blobs.clone());
            let (unseen, hashes, failure) = (unseen.clone(), hashes.clone(), failure.clone());
            let max_object_bytes = self.config.max_object_bytes;
            rows.map_while(move |row| match row {
                Ok(row) => Some(row),
                Err(e) => {
                    *lock(&failure) = Some(e.to_string());
                    None
                }
            })
            .filter(move |row| lock(&unseen).remove(row.object_id.as_str()))
            .take_while(move |_| shared.running())
            .map(move |row| {
                lock(&hashes).insert(row.object_id.clone(), row.sha256.clone());
                read_object(handle, blobs.as_ref(), row, max_object_bytes)
            })
        };
        execute(plan, &options, inputs, |finished| {
            self.write(handle, &finished, &hashes)
        })?;
        if let Some(e) = lock(&failure).take() {
            return Err(unreadable(&e, transient()));
        }
        let mut missing: Vec<ObjectId> = lock(&unseen).drain().collect();
        missing.sort();
        Ok(missing)
    }

    /// Writes one finished chunk, fenced by the lease.
    fn write(
        &self,
        handle: &tokio::runtime::Handle,
        finished: &Finished<'_>,
        hashes: &Mutex<HashMap<String, String>>,
    ) -> Result<(), Stop> {
        if let Some(stop) = self.shared.stopped() {
            return Err(stop);
        }
        if self.shared.lease_expired(&self.config) {
            warn!("no lease renewal succeeded for the lease's length; writing nothing more");
            self.shared.stop(LOST);
            return Err(Stop::LeaseLost);
        }
        let now = now();
        let mut documents = Vec::with_capacity(finished.len());
        let mut outcomes = Vec::with_capacity(finished.len());
        let mut summary = lock(&self.summary).clone();
        for doc in finished.documents() {
            for e in &doc.errors {
                *summary.entry(category(e)).or_default() += 1;
            }
            let error = (!doc.errors.is_empty()).then(|| {
                doc.errors
                    .iter()
                    .map(|e| format!("{}: {}", e.extractor, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            outcomes.push((ObjectId::from(doc.object_id.as_str()), error));
            documents.push(DocumentRecord {
                document_id: document_id(&self.pinned.collection_id, &doc.object_id),
                collection_id: self.pinned.collection_id.clone(),
                bucket_id: self.batch.bucket_id.clone(),
                batch_id: self.batch.batch_id.clone(),
                features: doc.features,
                errors: doc
                    .errors
                    .iter()
                    .map(|e| serde_json::json!({"extractor": e.extractor, "message": e.message}))
                    .collect(),
                metadata: doc.metadata,
                internal_metadata: InternalMetadata {
                    extractors: doc.extractors,
                    content_hash: lock(hashes).remove(&doc.object_id).unwrap_or_default(),
                    index_signature: self.pinned.index_signature.clone(),
                    processing_history: doc
                        .processing_history
                        .and_then(|h| serde_json::to_value(h).ok()),
                },
                object_id: doc.object_id.into(),
                created_at: now,
                updated_at: now,
            });
        }
        // Documents first (idempotent, and fenced by the lease in their
        // transaction), then the outcomes under the lease.
        handle.block_on(self.deps.documents.upsert_documents(
            &self.batch.namespace_id,
            &self.pinned.collection_id,
            &documents,
            Some(&self.lease),
        ))?;
        metrics::counter!("strata_documents_written_total").increment(documents.len() as u64);
        let chunk = ChunkOutcome {
            stage: self.stage,
            last: self.last,
            collection_id: self.pinned.collection_id.clone(),
            outcomes,
            error_summary: summary.clone(),
        };
        let counts = handle.block_on(self.deps.store.record_chunk(&self.lease, &chunk))?;
        *lock(&self.summary) = summary;
        self.shared.counted(counts, &self.failed);
        Ok(())
    }
}

/// An object's content from the blob store, checked against its hash;
/// one over `max_bytes` fails alone, unread.
fn read_object(
    handle: &tokio::runtime::Handle,
    blobs: &dyn BlobStore,
    row: ManifestRow,
    max_bytes: u64,
) -> ObjectInput {
    let content = if row.blob_key.is_empty() {
        Err(format!(
            "object `{}` was deleted before the batch was submitted",
            row.object_id
        ))
    } else if row.size_bytes > max_bytes {
        Err(format!(
            "object `{}` holds {} bytes, over the {max_bytes} a worker reads (--max-object-mb)",
            row.object_id, row.size_bytes
        ))
    } else {
        match blobs.read_blocking(handle, &row.blob_key) {
            Ok(bytes) if hex::encode(Sha256::digest(&bytes)) == row.sha256 => Ok(bytes),
            Ok(_) => Err(format!(
                "the content of object `{}` does not match its SHA-256",
                row.object_id
            )),
            Err(e) => Err(format!("cannot read object `{}`: {e}", row.object_id)),
        }
    };
    ObjectInput {
        object_id: row.object_id,
        key: row.key,
        mime_type: row.mime_type,
        metadata: row.metadata.and_then(|m| serde_json::from_str(&m).ok()),
        content,
    }
}

/// The error-summary category of a row error: `extractor.kind`.
pub fn category(e: &RowError) -> String {
    if e.extractor == "object" {
        return "object.unreadable".to_owned();
    }
    let m = e.message.as_str();
    let kind = if m.starts_with("timed out") {
        "timeout"
    } else if m.starts_with("out of memory") {
        "out_of_memory"
    } else if m.starts_with("trapped") {
        "trap"
    } else if m.starts_with("broke the contract") {
        "contract"
    } else if m.starts_with("skipped") || m.contains("disabled") {
        "disabled"
    } else {
        "error"
    };
    format!("{}.{kind}", e.extractor)
}

/// Renews the lease and reports progress every `report_interval` until
/// aborted; flags the run when the lease is lost or shutdown begins.
async fn report_progress(
    store: Arc<dyn Store>,
    config: WorkerConfig,
    batch: BatchRecord,
    lease: Lease,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let lease_ms = config.lease.as_millis() as i64;
    let mut window: VecDeque<(Instant, u64)> = VecDeque::new();
    let window_span = Duration::from_secs(30);
    let stage_offsets: Vec<u32> = batch
        .collections
        .iter()
        .scan(0u32, |acc, c| {
            let offset = *acc;
            *acc += c.tiers.len() as u32;
            Some(offset)
        })
        .collect();
    let total_tiers: u32 = batch.collections.iter().map(|c| c.tiers.len() as u32).sum();
    let mut ticker = tokio::time::interval(config.report_interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shared.kick.notified() => {}
            () = shutdown.cancelled() => {
                shared.stop(SHUTDOWN);
                return;
            }
        }
        let now_instant = Instant::now();
        let processed = shared.processed.load(Ordering::Relaxed);
        window.push_back((now_instant, processed));
        while window
            .front()
            .is_some_and(|(t, _)| now_instant.duration_since(*t) > window_span)
        {
            window.pop_front();
        }
        let items_per_second = match (window.front(), window.back()) {
            (Some((t0, p0)), Some((t1, p1)))
                if t1.duration_since(*t0) >= Duration::from_secs(1) =>
            {
                (p1 - p0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let current_stage = lock(&shared.stage).as_ref().map(|s| {
            let pinned = &batch.collections[s.collection];
            let tier = (0..pinned.tiers.len())
                .find(|&t| s.tiers.rows(t) < s.objects)
                .unwrap_or(pinned.tiers.len().saturating_sub(1));
            let names = pinned
                .tiers
                .get(tier)
                .map(|t| t.join(", "))
                .unwrap_or_default();
            Stage {
                name: if batch.collections.len() > 1 {
                    format!("{}: {names}", pinned.collection_name)
                } else {
                    names
                },
                index: stage_offsets[s.collection] + tier as u32 + 1,
                total: total_tiers,
            }
        });
        let since_progress = lock(&shared.last_progress).elapsed();
        let last_progress_at =
            chrono::Utc::now() - chrono::Duration::from_std(since_progress).unwrap_or_default();
        let live = LiveProgress {
            items_per_second,
            current_stage,
            reported_at: now(),
            last_progress_at: last_progress_at.into(),
        };
        let sent = Instant::now();
        let expires_ms = chrono::Utc::now().timestamp_millis() + lease_ms;
        match store.renew_shard(&lease, expires_ms, &live).await {
            Ok(true) => {
                *lock(&shared.renewed) = sent;
                // A batch past its error budget fails now, whichever of
                // its shards sees it first; every shard of it stops.
                match work::check_budget(store.as_ref(), &batch, config.error_budget).await {
                    Ok(Some(_)) => {
                        shared.stop(LOST);
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "checking the error budget failed"),
                }
            }
            Ok(false) => {
                shared.stop(LOST);
                return;
            }
            Err(e) if shared.lease_expired(&config) => {
                warn!(error = %e, "renewing the lease has failed for the lease's length; stopping");
                shared.stop(LOST);
                return;
            }
            Err(e) => warn!(error = %e, "renewing the lease failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_fall_into_categories() {
        let e = |extractor: &str, message: &str| RowError {
            extractor: extractor.into(),
            message: message.into(),
        };
        assert_eq!(category(&e("object", "cannot read")), "object.unreadable");
        assert_eq!(category(&e("kw", "timed out after 5s")), "kw.timeout");
        assert_eq!(
            category(&e("kw", "out of memory (limit 64 MiB)")),
            "kw.out_of_memory"
        );
        assert_eq!(category(&e("kw", "trapped: unreachable")), "kw.trap");
        assert_eq!(
            category(&e("kw", "broke the contract: 3 rows")),
            "kw.contract"
        );
        assert_eq!(category(&e("kw", "empty text")), "kw.error");
    }
}
