//! The production store: MongoDB (any server speaking its wire protocol
//! with transactions, i.e. a replica set or a sharded cluster).
//!
//! One MongoDB collection per kind of record, each record kept as its
//! serde document with `_id` set to its id (objects and batch objects use
//! `<parent>/<id>`), plus the fields queries need. Documents of every
//! Strata collection share one MongoDB collection under compound indexes
//! led by `collection_id`: Strata collections come and go through the API,
//! and the same indexes serve every list and filter. Indexes are created at
//! start (idempotently). Lists page by an indexed id field (`$gt` the last
//! one), never by skip; compound indexes name that field rather than `_id`,
//! which some wire-compatible servers cannot index with other fields. Changes spanning several records run in a transaction; claims are
//! `findOneAndUpdate`s; every worker write is filtered by its lease token.

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt as _;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{ClientSession, Collection, Database, IndexModel};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    ApiKey, BatchEnd, BatchObject, BatchRecord, BatchStatus, BatchStore, Bucket, BucketStore,
    ChunkOutcome, CollectionRecord, CollectionStore, DocumentFilter, DocumentRecord, DocumentSink,
    Lease, LeaseHolder, LiveProgress, Namespace, NamespaceStore, ObjectRecord, Page, PageRequest,
    PinnedCollection, Pipelines, Removal, Result, ShardChange, ShardExpect, ShardRecord,
    ShardStatus, Store, StoreError, Timestamp, WorkerRecord, check_revoke, now, of_one_collection,
    outcome,
};
use crate::store::{BatchId, BucketId, ObjectId};

/// Runs `$body` in a transaction on `$store`, with the session bound to
/// `$s`, retrying the whole on transient errors. A macro rather than a
/// function taking an async closure: the futures must stay `Send`.
macro_rules! transaction {
    ($store:expr, $s:ident => $body:block) => {{
        let _one_at_a_time = match &$store.serial {
            Some(serial) => Some(serial.turn().await?),
            None => None,
        };
        let mut session = $store
            .client
            .start_session()
            .await
            .map_err($crate::store::mongo::backend)?;
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let again = started.elapsed() < $crate::store::mongo::TRANSACTION_RETRY_WINDOW;
            session
                .start_transaction()
                .await
                .map_err($crate::store::mongo::backend)?;
            let result = {
                let $s = &mut session;
                async { $body }.await
            };
            let outcome = match result {
                Ok(value) => {
                    // An unknown commit result is retried as a commit only
                    // (the server makes that idempotent), never by running
                    // the body again: the first commit may have landed.
                    let committed = loop {
                        match session.commit_transaction().await {
                            Err(e)
                                if e.contains_label(
                                    mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT,
                                ) && started.elapsed()
                                    < $crate::store::mongo::TRANSACTION_RETRY_WINDOW =>
                            {
                                continue;
                            }
                            other => break other,
                        }
                    };
                    match committed {
                        Ok(()) => break Ok(value),
                        Err(e)
                            if again
                                && e.contains_label(
                                    mongodb::error::TRANSIENT_TRANSACTION_ERROR,
                                ) =>
                        {
                            continue;
                        }
                        Err(e) => Err($crate::store::mongo::backend(e)),
                    }
                }
                Err(e) => Err(e),
            };
            let _ = session.abort_transaction().await;
            match outcome {
                Err($crate::store::StoreError::Backend(source))
                    if again && $crate::store::mongo::transient(source.as_ref()) =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10 << attempt.min(6)))
                        .await;
                }
                other => break other,
            }
        }
    }};
}

mod batches;
mod buckets;
mod collections;
mod documents;
mod migrations;
mod namespaces;
mod registry;
mod standin;
mod webhooks;

/// How long a transaction is retried on transient errors (write conflicts,
/// elections), as the driver's own `with_transaction` does. A dead worker's
/// open transaction holds its documents until the server aborts it
/// (`transactionLifetimeLimitSeconds`, 60 s by default).
const TRANSACTION_RETRY_WINDOW: Duration = Duration::from_secs(120);

/// The MongoDB store.
#[derive(Clone)]
pub struct MongoStore {
    client: mongodb::Client,
    db: Database,
    /// The URL without credentials, for logs.
    shown: String,
    /// Set when the server is neither a replica set nor a sharded cluster
    /// yet takes transactions (a wire-compatible stand-in): such servers
    /// cannot run two transactions side by side, so this process runs its
    /// transactions one at a time (one lock for every such connection).
    serial: Option<std::sync::Arc<standin::OneAtATime>>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("url", &self.shown)
            .finish()
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::backend(e)
}

/// Whether `e` broke a unique index.
fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|w| w.code == 11000)),
        _ => e.to_string().contains("E11000"),
    }
}

fn write_error(e: mongodb::error::Error, kind: &'static str, name: &str) -> StoreError {
    if is_duplicate(&e) {
        StoreError::taken(kind, name)
    } else {
        backend(e)
    }
}

fn to_doc<T: Serialize>(value: &T) -> Result<Document> {
    bson::to_document(value).map_err(backend)
}

fn from_doc<T: DeserializeOwned>(doc: Document) -> Result<T> {
    bson::from_document(doc).map_err(backend)
}

/// A record's document with its `_id`.
fn record<T: Serialize>(id: &str, value: &T) -> Result<Document> {
    let mut doc = to_doc(value)?;
    doc.insert("_id", id);
    Ok(doc)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `{ "$in": [...] }` of `statuses`, named by `name`.
fn names_in<S: Copy>(statuses: &[S], name: fn(S) -> &'static str) -> Document {
    let names: Vec<&str> = statuses.iter().map(|s| name(*s)).collect();
    doc! { "$in": names }
}

/// `{ "$in": [...] }` of batch `statuses`.
fn status_in(statuses: &[BatchStatus]) -> Document {
    names_in(statuses, BatchStatus::as_str)
}

impl MongoStore {
    /// Connects to `url` (`mongodb://…/database`, default database
    /// `strata`) and creates the indexes.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = mongodb::options::ClientOptions::parse(url)
            .await
            .map_err(backend)?;
        let hosts = options
            .hosts
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let shown = {
            let db = options
                .default_database
                .clone()
                .unwrap_or_else(|| "strata".into());
            format!("mongodb://{hosts}/{db}")
        };
        let db_name = options
            .default_database
            .clone()
            .unwrap_or_else(|| "strata".into());
        let mut options = options;
        options.server_selection_timeout = options
            .server_selection_timeout
            .or(Some(Duration::from_secs(10)));
        let client = mongodb::Client::with_options(options).map_err(backend)?;
        let mut store = MongoStore {
            db: client.database(&db_name),
            client,
            shown,
            serial: None,
        };
        store.ping().await?;
        let hello = store
            .db
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(backend)?;
        if !hello.contains_key("setName") && hello.get_str("msg") != Ok("isdbgrid") {
            tracing::warn!(
                store = %store.shown,
                "the MongoDB server is neither a replica set nor a sharded cluster; \
                 transactions run one at a time on this machine"
            );
            store.serial = Some(std::sync::Arc::new(standin::OneAtATime::new(&hosts)));
        }
        store.create_indexes().await?;
        if store.serial.is_some() {
            store.flags_as_booleans().await?;
        }
        store.shard_older_batches().await?;
        Ok(store)
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    async fn create_indexes(&self) -> Result<()> {
        let unique = || IndexOptions::builder().unique(true).build();
        let indexes: [(&str, Document, bool); 27] = [
            ("namespaces", doc! { "name": 1 }, true),
            // Creates the collection before a transaction writes to it (some
            // servers cannot create one inside a transaction).
            ("extractor_names", doc! { "owner.namespace_id": 1 }, false),
            ("extractor_versions", doc! { "seq": 1 }, true),
            ("extractor_versions", doc! { "name": 1, "seq": 1 }, false),
            (
                "webhooks",
                doc! { "namespace_id": 1, "webhook_id": 1 },
                false,
            ),
            (
                "deliveries",
                doc! { "webhook_id": 1, "delivery_id": 1 },
                false,
            ),
            (
                "deliveries",
                doc! { "state": 1, "next_attempt_ms": 1 },
                false,
            ),
            ("api_keys", doc! { "secret_hash": 1 }, true),
            (
                "buckets",
                doc! { "namespace_id": 1, "bucket_name": 1 },
                true,
            ),
            ("buckets", doc! { "namespace_id": 1, "bucket_id": 1 }, false),
            ("objects", doc! { "bucket_id": 1, "object_id": 1 }, true),
            (
                "collections",
                doc! { "namespace_id": 1, "collection_name": 1 },
                true,
            ),
            (
                "collections",
                doc! { "namespace_id": 1, "collection_id": 1 },
                false,
            ),
            ("collections", doc! { "source.bucket_id": 1 }, false),
            ("batches", doc! { "status": 1, "batch_id": 1 }, false),
            ("shards", doc! { "batch_id": 1, "shard_index": 1 }, true),
            (
                "shards",
                doc! { "status": 1, "batch_id": 1, "shard_index": 1 },
                false,
            ),
            ("workers", doc! { "heartbeat_ms": 1 }, false),
            ("workers", doc! { "worker_id": 1 }, false),
            ("batches", doc! { "bucket_id": 1, "batch_id": 1 }, false),
            ("batches", doc! { "namespace_id": 1, "task_id": 1 }, false),
            (
                "batch_objects",
                doc! { "batch_id": 1, "status": 1, "done": 1, "object_id": 1 },
                false,
            ),
            (
                "batch_objects",
                doc! { "batch_id": 1, "object_id": 1 },
                true,
            ),
            (
                "batch_objects",
                doc! { "batch_id": 1, "status": 1, "object_id": 1 },
                false,
            ),
            (
                "documents",
                doc! { "collection_id": 1, "object_id": 1 },
                true,
            ),
            (
                "documents",
                doc! { "collection_id": 1, "document_id": 1 },
                false,
            ),
            (
                "documents",
                doc! { "collection_id": 1, "batch_id": 1, "document_id": 1 },
                false,
            ),
        ];
        for (collection, keys, is_unique) in indexes {
            let mut model = IndexModel::builder().keys(keys).build();
            if is_unique {
                model.options = Some(unique());
            }
            self.coll(collection)
                .create_index(model)
                .await
                .map_err(backend)?;
        }
        // A batch's Idempotency-Key is unique in its bucket, when given.
        let partial = IndexOptions::builder()
            .unique(true)
            .partial_filter_expression(doc! { "idempotency_key": { "$type": "string" } })
            .build();
        self.coll("batches")
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "bucket_id": 1, "idempotency_key": 1 })
                    .options(partial)
                    .build(),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn one<T: DeserializeOwned>(&self, coll: &str, filter: Document) -> Result<Option<T>> {
        self.coll(coll)
            .find_one(filter)
            .await
            .map_err(backend)?
            .map(from_doc)
            .transpose()
    }

    /// One page of `coll` under `filter`, in the order of the id field
    /// `field` (which `key` reads back from a record).
    async fn page<T: DeserializeOwned>(
        &self,
        coll: &str,
        filter: Document,
        (field, key): (&str, fn(&T) -> String),
        page: &PageRequest,
    ) -> Result<Page<T>> {
        let after = page.after.clone().map(Bson::String);
        self.page_after(coll, filter, (field, key), after, page.limit)
            .await
    }

    /// [`Self::page`] where the id field's values are `after`'s type.
    async fn page_after<T: DeserializeOwned>(
        &self,
        coll: &str,
        mut filter: Document,
        (field, key): (&str, fn(&T) -> String),
        after: Option<Bson>,
        limit: usize,
    ) -> Result<Page<T>> {
        if let Some(after) = after {
            filter.insert(field, doc! { "$gt": after });
        }
        let limit = limit.max(1);
        let docs: Vec<Document> = self
            .coll(coll)
            .find(filter)
            .sort(doc! { field: 1 })
            .limit(limit as i64 + 1)
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        let items = docs.into_iter().map(from_doc).collect::<Result<Vec<T>>>()?;
        Ok(Page::from_overfetch(items, limit, key))
    }

    /// Every record of `coll` under `filter`, in the order of `sort`.
    async fn sorted<T: DeserializeOwned>(
        &self,
        coll: &str,
        filter: Document,
        sort: Document,
    ) -> Result<Vec<T>> {
        let docs: Vec<Document> = self
            .coll(coll)
            .find(filter)
            .sort(sort)
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        docs.into_iter().map(from_doc).collect()
    }

    /// Every record of `coll` under `filter`, read in the session `s`.
    async fn find_in(
        &self,
        s: &mut ClientSession,
        coll: &str,
        filter: Document,
    ) -> Result<Vec<Document>> {
        self.coll(coll)
            .find(filter)
            .session(&mut *s)
            .await
            .map_err(backend)?
            .stream(&mut *s)
            .try_collect()
            .await
            .map_err(backend)
    }

    /// One `update` command of `updates` (`{q, u, upsert?}`) on `coll`,
    /// in the session `s`; its answer, after checking for write errors.
    async fn bulk_update(
        &self,
        s: &mut ClientSession,
        coll: &str,
        updates: Vec<Document>,
    ) -> Result<Document> {
        let answer = self
            .db
            .run_command(doc! { "update": coll, "updates": updates, "ordered": true })
            .session(&mut *s)
            .await
            .map_err(backend)?;
        if let Ok(errors) = answer.get_array("writeErrors") {
            return Err(StoreError::backend(std::io::Error::other(format!(
                "writing {coll}: {errors:?}"
            ))));
        }
        Ok(answer)
    }

    /// The batch, which moved to a new status in the transaction of `s`,
    /// with the event of that status written to the outbox.
    async fn transition_in(
        &self,
        s: &mut ClientSession,
        batch_id: &BatchId,
    ) -> Result<BatchRecord> {
        let batch = self.batch_in(s, batch_id).await?;
        self.announce(s, batch).await
    }

    /// The batch, its progress summed from its shards read in the session
    /// `s`, after writing the event of its status to the outbox.
    async fn announce(&self, s: &mut ClientSession, mut batch: BatchRecord) -> Result<BatchRecord> {
        let shards = self
            .find_in(s, "shards", doc! { "batch_id": &batch.batch_id })
            .await?
            .into_iter()
            .map(from_doc)
            .collect::<Result<Vec<ShardRecord>>>()?;
        crate::batches::shards::sum_into(&mut batch, &shards);
        self.emit(s, crate::store::events::Event::batch(&batch))
            .await?;
        Ok(batch)
    }

    /// `findOneAndUpdate` of one batch in the transaction of `s`, with the
    /// event of its new status; `None` when `filter` matches nothing.
    async fn transition(
        &self,
        s: &mut ClientSession,
        filter: Document,
        update: Document,
    ) -> Result<Option<BatchRecord>> {
        let updated = self
            .coll("batches")
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After)
            .session(&mut *s)
            .await
            .map_err(backend)?;
        let Some(doc) = updated else {
            return Ok(None);
        };
        let batch: BatchRecord = from_doc(doc)?;
        self.announce(s, batch).await.map(Some)
    }

    /// The record of `coll` under `filter`, read in the session `s`.
    async fn one_in<T: DeserializeOwned>(
        &self,
        s: &mut ClientSession,
        coll: &str,
        filter: Document,
    ) -> Result<Option<T>> {
        self.coll(coll)
            .find_one(filter)
            .session(&mut *s)
            .await
            .map_err(backend)?
            .map(from_doc)
            .transpose()
    }

    async fn batch_in(&self, s: &mut ClientSession, batch_id: &BatchId) -> Result<BatchRecord> {
        self.one_in(s, "batches", doc! { "_id": batch_id })
            .await?
            .ok_or_else(|| StoreError::not_found("batch", batch_id))
    }

    async fn insert_batch_objects(
        &self,
        s: &mut ClientSession,
        batch_id: &BatchId,
        ids: &[ObjectId],
    ) -> Result<u64> {
        let mut seen = std::collections::HashSet::new();
        let mut added = 0;
        for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
            let result = self
                .coll("batch_objects")
                .update_one(
                    doc! { "_id": format!("{batch_id}/{id}") },
                    doc! { "$setOnInsert": {
                        "batch_id": batch_id, "object_id": id, "status": "pending",
                        "error": Bson::Null, "done": 0_i64,
                    } },
                )
                .upsert(true)
                .session(&mut *s)
                .await
                .map_err(backend)?;
            added += u64::from(result.upserted_id.is_some());
        }
        Ok(added)
    }

    /// The shard `lease` holds, running; `LeaseLost` otherwise. A write,
    /// not a read: a cancel or a rescue of the shard in a concurrent
    /// transaction conflicts with it, so the two never both commit.
    async fn fence(&self, s: &mut ClientSession, lease: &Lease) -> Result<ShardRecord> {
        self.coll("shards")
            .find_one_and_update(held(lease), doc! { "$set": { "fenced_at": now() } })
            .return_document(ReturnDocument::After)
            .session(&mut *s)
            .await
            .map_err(backend)?
            .map(from_doc)
            .transpose()?
            .ok_or_else(|| StoreError::LeaseLost(lease.batch_id.to_string()))
    }

    /// Ends every shard of the batch with work left, in the session `s`:
    /// `status`, lease dropped.
    async fn end_shards(
        &self,
        s: &mut ClientSession,
        batch_id: &BatchId,
        status: ShardStatus,
        now: &Timestamp,
    ) -> Result<()> {
        self.coll("shards")
            .update_many(
                doc! { "batch_id": batch_id, "status": shard_status_in(&ShardStatus::ACTIVE) },
                doc! { "$set": {
                    "status": status.as_str(), "lease": Bson::Null, "lease_token": Bson::Null,
                    "live": Bson::Null, "updated_at": now, "finished_at": now,
                } },
            )
            .session(&mut *s)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// The collection takes the plan a batch ran, unless it was configured
    /// otherwise meanwhile; in the session `s`.
    async fn write_plan_back(
        &self,
        s: &mut ClientSession,
        pinned: &PinnedCollection,
        now: &Timestamp,
    ) -> Result<()> {
        let current = self
            .one_in::<CollectionRecord>(s, "collections", doc! { "_id": &pinned.collection_id })
            .await?;
        if !current.is_some_and(|c| pinned.still_configured(&c.extractors)) {
            return Ok(());
        }
        self.coll("collections")
            .update_one(
                doc! { "_id": &pinned.collection_id },
                doc! { "$set": {
                    "index_signature": &pinned.index_signature,
                    "output_schema": to_doc(&pinned.output_schema)?,
                    "tiers": bson::to_bson(&pinned.tiers).map_err(backend)?,
                    "updated_at": now,
                } },
            )
            .session(&mut *s)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Ids of the batches of `bucket_id` in one of `statuses`, in the
    /// session `s`.
    async fn batches_in(
        &self,
        s: &mut ClientSession,
        bucket_id: &BucketId,
        statuses: &[BatchStatus],
    ) -> Result<Vec<BatchId>> {
        let filter = doc! { "bucket_id": bucket_id, "status": status_in(statuses) };
        let mut ids: Vec<BatchId> = self
            .find_in(s, "batches", filter)
            .await?
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(BatchId::from))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    async fn count(&self, coll: &str, filter: Document) -> Result<u64> {
        self.coll(coll)
            .count_documents(filter)
            .await
            .map_err(backend)
    }

    async fn ids<T: From<String>>(
        &self,
        coll: &str,
        filter: Document,
        field: &str,
    ) -> Result<Vec<T>> {
        let docs: Vec<Document> = self
            .coll(coll)
            .find(filter)
            .sort(doc! { field: 1 })
            .projection(doc! { field: 1 })
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_str(field).ok().map(|id| T::from(id.to_owned())))
            .collect())
    }
}

/// Whether a failure inside a transaction is worth running it again.
fn transient(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.downcast_ref::<mongodb::error::Error>()
        .is_some_and(|e| e.contains_label(TRANSIENT_TRANSACTION_ERROR))
}

fn batch_record(batch: &BatchRecord) -> Result<Document> {
    let mut doc = record(&batch.batch_id, batch)?;
    doc.insert(
        "idempotency_key",
        batch
            .idempotency
            .as_ref()
            .map_or(Bson::Null, |(k, _)| Bson::String(k.clone())),
    );
    Ok(doc)
}

/// The `_id` of a shard: its batch and index, sorting in index order.
fn shard_key(batch_id: &BatchId, shard_index: u32) -> String {
    format!("{batch_id}/{shard_index:06}")
}

/// A new shard's document.
fn shard_record(shard: &ShardRecord) -> Result<Document> {
    let mut doc = record(&shard_key(&shard.batch_id, shard.shard_index), shard)?;
    doc.insert("lease_token", Bson::Null);
    Ok(doc)
}

/// The filter of a shard held under `lease`, running.
fn held(lease: &Lease) -> Document {
    doc! {
        "_id": shard_key(&lease.batch_id, lease.shard_index),
        "lease_token": &lease.token,
        "status": ShardStatus::Processing.as_str(),
    }
}

/// `{ "$in": [...] }` of shard `statuses`.
fn shard_status_in(statuses: &[ShardStatus]) -> Document {
    names_in(statuses, ShardStatus::as_str)
}

#[async_trait]
impl Store for MongoStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    async fn ping(&self) -> Result<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(backend)
    }
}
