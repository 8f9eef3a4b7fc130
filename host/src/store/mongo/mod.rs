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
    ApiKey, BatchObject, BatchRecord, BatchStatus, Bucket, ChunkOutcome, Claim, CollectionRecord,
    DocumentFilter, DocumentRecord, DocumentSink, Lease, LiveProgress, Namespace, ObjectRecord,
    Page, PageRequest, PinnedCollection, Removal, Result, Store, StoreError, check_revoke, now,
    outcome,
};

/// Runs `$body` in a transaction on `$store`, with the session bound to
/// `$s`, retrying the whole on transient errors. A macro rather than a
/// function taking an async closure: the futures must stay `Send`.
macro_rules! transaction {
    ($store:expr, $s:ident => $body:block) => {{
        let _one_at_a_time = match &$store.serial {
            Some(lock) => Some(lock.lock().await),
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

mod registry;
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
    serial: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
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

/// `{ "$in": [...] }` of `statuses`.
fn status_in(statuses: &[BatchStatus]) -> Document {
    let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    doc! { "$in": names }
}

impl MongoStore {
    /// Connects to `url` (`mongodb://…/database`, default database
    /// `strata`) and creates the indexes.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = mongodb::options::ClientOptions::parse(url)
            .await
            .map_err(backend)?;
        let shown = {
            let hosts: Vec<String> = options.hosts.iter().map(|h| h.to_string()).collect();
            let db = options
                .default_database
                .clone()
                .unwrap_or_else(|| "strata".into());
            format!("mongodb://{}/{db}", hosts.join(","))
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
                 transactions run one at a time in this process"
            );
            static SERIAL: std::sync::OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
                std::sync::OnceLock::new();
            store.serial = Some(SERIAL.get_or_init(Default::default).clone());
        }
        store.create_indexes().await?;
        Ok(store)
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    async fn create_indexes(&self) -> Result<()> {
        let unique = || IndexOptions::builder().unique(true).build();
        let indexes: [(&str, Document, bool); 23] = [
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
            (
                "batches",
                doc! { "status": 1, "lease_expires_ms": 1 },
                false,
            ),
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
        mut filter: Document,
        (field, key): (&str, fn(&T) -> String),
        page: &PageRequest,
    ) -> Result<Page<T>> {
        if let Some(after) = &page.after {
            filter.insert(field, doc! { "$gt": after });
        }
        let limit = page.limit.max(1);
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
    async fn transition_in(&self, s: &mut ClientSession, batch_id: &str) -> Result<BatchRecord> {
        let batch = self.batch_in(s, batch_id).await?;
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
        self.emit(s, crate::store::events::Event::batch(&batch))
            .await?;
        Ok(Some(batch))
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

    async fn batch_in(&self, s: &mut ClientSession, batch_id: &str) -> Result<BatchRecord> {
        self.one_in(s, "batches", doc! { "_id": batch_id })
            .await?
            .ok_or_else(|| StoreError::not_found("batch", batch_id))
    }

    async fn insert_batch_objects(
        &self,
        s: &mut ClientSession,
        batch_id: &str,
        ids: &[String],
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

    /// Fails with `LeaseLost` unless `lease` still holds its batch.
    async fn fence(&self, s: &mut ClientSession, lease: &Lease) -> Result<()> {
        let held = self
            .coll("batches")
            .find_one(doc! { "_id": &lease.batch_id, "lease_token": &lease.token, "status": "PROCESSING" })
            .session(&mut *s)
            .await
            .map_err(backend)?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::LeaseLost(lease.batch_id.clone())),
        }
    }

    /// Recounts a retaken batch's counters, and the document counts of its
    /// collections, from the records they count. MongoDB aborts a dead
    /// worker's open transaction, so this changes nothing there; a server
    /// that keeps such a transaction's writes (the loopback stand-in does,
    /// see ARCHITECTURE.md) would otherwise leave counts off by one chunk.
    /// The new lease holder is the batch's only writer; a collection's
    /// count is set only if no other batch moved it meanwhile.
    async fn recount(&self, batch: &mut BatchRecord, lease: &Lease) -> Result<()> {
        let id = &batch.batch_id;
        let processed = self
            .count(
                "batch_objects",
                doc! { "batch_id": id, "status": { "$ne": "pending" } },
            )
            .await?;
        let failed = self
            .count("batch_objects", doc! { "batch_id": id, "status": "failed" })
            .await?;
        self.coll("batches")
            .update_one(
                doc! { "_id": id, "lease_token": &lease.token },
                doc! { "$set": { "processed": processed as i64, "failed": failed as i64 } },
            )
            .await
            .map_err(backend)?;
        batch.processed = processed;
        batch.failed = failed;
        for pinned in &batch.collections {
            let collection = doc! { "_id": &pinned.collection_id };
            for _ in 0..10 {
                let Some(current) = self
                    .coll("collections")
                    .find_one(collection.clone())
                    .await
                    .map_err(backend)?
                else {
                    break;
                };
                let before = current.get("document_count").cloned().unwrap_or(Bson::Null);
                let documents = self
                    .count("documents", doc! { "collection_id": &pinned.collection_id })
                    .await?;
                let mut unchanged = collection.clone();
                unchanged.insert("document_count", before);
                let set = doc! { "$set": { "document_count": documents as i64 } };
                let result = self
                    .coll("collections")
                    .update_one(unchanged, set)
                    .await
                    .map_err(backend)?;
                if result.matched_count == 1 {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ids of the batches of `bucket_id` in one of `statuses`, in the
    /// session `s`.
    async fn batches_in(
        &self,
        s: &mut ClientSession,
        bucket_id: &str,
        statuses: &[BatchStatus],
    ) -> Result<Vec<String>> {
        let filter = doc! { "bucket_id": bucket_id, "status": status_in(statuses) };
        let mut ids: Vec<String> = self
            .find_in(s, "batches", filter)
            .await?
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
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

    async fn ids(&self, coll: &str, filter: Document, field: &str) -> Result<Vec<String>> {
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
            .filter_map(|d| d.get_str(field).ok().map(str::to_owned))
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
    doc.insert("lease_token", Bson::Null);
    doc.insert("lease_expires_ms", Bson::Null);
    Ok(doc)
}

fn no_lease() -> Document {
    doc! { "lease": Bson::Null, "lease_token": Bson::Null, "lease_expires_ms": Bson::Null }
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

    async fn create_namespace(&self, ns: &Namespace) -> Result<()> {
        self.coll("namespaces")
            .insert_one(record(&ns.namespace_id, ns)?)
            .await
            .map_err(|e| write_error(e, "namespace", &ns.name))?;
        Ok(())
    }

    async fn namespace(&self, id_or_name: &str) -> Result<Option<Namespace>> {
        match self.one("namespaces", doc! { "_id": id_or_name }).await? {
            Some(ns) => Ok(Some(ns)),
            None => self.one("namespaces", doc! { "name": id_or_name }).await,
        }
    }

    async fn list_namespaces(&self, page: &PageRequest) -> Result<Page<Namespace>> {
        let key = |n: &Namespace| n.namespace_id.clone();
        self.page("namespaces", doc! {}, ("_id", key), page).await
    }

    async fn create_key(&self, key: &ApiKey, secret_hash: &str) -> Result<()> {
        let mut doc = record(&key.key_id, key)?;
        doc.insert("secret_hash", secret_hash);
        self.coll("api_keys")
            .insert_one(doc)
            .await
            .map_err(|e| write_error(e, "key", "this key"))?;
        Ok(())
    }

    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        self.one("api_keys", doc! { "secret_hash": secret_hash })
            .await
    }

    async fn has_admin_key(&self) -> Result<bool> {
        Ok(self.count("api_keys", doc! { "admin": true }).await? > 0)
    }

    async fn count_batches(&self, namespace_id: &str, statuses: &[BatchStatus]) -> Result<u64> {
        self.count(
            "batches",
            doc! { "namespace_id": namespace_id, "status": status_in(statuses) },
        )
        .await
    }

    async fn list_keys(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
        let key: fn(&ApiKey) -> String = |k| k.key_id.clone();
        self.page("api_keys", doc! {}, ("_id", key), page).await
    }

    async fn delete_key(&self, key_id: &str) -> Result<()> {
        transaction!(self, s => {
            let key = self
                .one_in::<ApiKey>(s, "api_keys", doc! { "_id": key_id })
                .await?
                .ok_or_else(|| StoreError::not_found("API key", key_id))?;
            let admins = self
                .find_in(s, "api_keys", doc! { "admin": true })
                .await?
                .len() as u64;
            check_revoke(&key, admins)?;
            self.coll("api_keys")
                .delete_one(doc! { "_id": key_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    async fn touch_key(&self, key_id: &str, at: &str) -> Result<()> {
        self.coll("api_keys")
            .update_one(
                doc! { "_id": key_id },
                doc! { "$set": { "last_used_at": at } },
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_bucket(&self, bucket: &Bucket) -> Result<()> {
        self.coll("buckets")
            .insert_one(record(&bucket.bucket_id, bucket)?)
            .await
            .map_err(|e| write_error(e, "bucket", &bucket.bucket_name))?;
        Ok(())
    }

    async fn bucket(&self, namespace_id: &str, id_or_name: &str) -> Result<Option<Bucket>> {
        match self
            .one(
                "buckets",
                doc! { "_id": id_or_name, "namespace_id": namespace_id },
            )
            .await?
        {
            Some(b) => Ok(Some(b)),
            None => {
                self.one(
                    "buckets",
                    doc! { "bucket_name": id_or_name, "namespace_id": namespace_id },
                )
                .await
            }
        }
    }

    async fn list_buckets(&self, namespace_id: &str, page: &PageRequest) -> Result<Page<Bucket>> {
        let key = |b: &Bucket| b.bucket_id.clone();
        let filter = doc! { "namespace_id": namespace_id };
        self.page("buckets", filter, ("bucket_id", key), page).await
    }

    async fn delete_bucket(
        &self,
        namespace_id: &str,
        bucket_id: &str,
        active: &[BatchStatus],
    ) -> Result<Removal<Vec<String>>> {
        transaction!(self, s => {
            let exists = self
                .coll("buckets")
                .find_one(doc! { "_id": bucket_id, "namespace_id": namespace_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            if exists.is_none() {
                return Err(StoreError::not_found("bucket", bucket_id));
            }
            let batches = self.batches_in(s, bucket_id, active).await?;
            let collections: Vec<Document> = self.find_in(s, "collections", doc! { "source.bucket_id": bucket_id }).await?;
            let mut collections: Vec<String> = collections
                .iter()
                .filter_map(|d| d.get_str("collection_name").ok().map(str::to_owned))
                .collect();
            collections.sort_unstable();
            if !(batches.is_empty() && collections.is_empty()) {
                return Ok(Removal::Busy { batches, collections });
            }
            let objects: Vec<Document> = self.find_in(s, "objects", doc! { "bucket_id": bucket_id }).await?;
            let mut keys: Vec<String> = objects
                .iter()
                .filter_map(|d| d.get_str("blob_key").ok().map(str::to_owned))
                .collect();
            let batches: Vec<Document> = self.find_in(s, "batches", doc! { "bucket_id": bucket_id }).await?;
            let mut batch_ids = Vec::new();
            for doc in batches {
                let batch: BatchRecord = from_doc(doc)?;
                keys.extend(batch.collections.into_iter().flat_map(|c| c.manifests.into_values()));
                batch_ids.push(batch.batch_id);
            }
            for (coll, filter) in [
                ("batch_objects", doc! { "batch_id": { "$in": &batch_ids } }),
                ("batches", doc! { "bucket_id": bucket_id }),
                ("objects", doc! { "bucket_id": bucket_id }),
                ("buckets", doc! { "_id": bucket_id }),
            ] {
                self.coll(coll)
                    .delete_many(filter)
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
            }
            Ok(Removal::Removed(keys))
        })
    }

    async fn create_object(&self, object: &ObjectRecord) -> Result<()> {
        let mut doc = record(
            &format!("{}/{}", object.bucket_id, object.object_id),
            object,
        )?;
        doc.insert("blob_key", &object.blob_key);
        self.coll("objects")
            .insert_one(doc)
            .await
            .map_err(|e| write_error(e, "object", &object.object_id))?;
        Ok(())
    }

    async fn object(&self, bucket_id: &str, object_id: &str) -> Result<Option<ObjectRecord>> {
        self.one(
            "objects",
            doc! { "_id": format!("{bucket_id}/{object_id}") },
        )
        .await
    }

    async fn list_objects(
        &self,
        bucket_id: &str,
        page: &PageRequest,
    ) -> Result<Page<ObjectRecord>> {
        let key = |o: &ObjectRecord| o.object_id.clone();
        let filter = doc! { "bucket_id": bucket_id };
        self.page("objects", filter, ("object_id", key), page).await
    }

    async fn delete_object(&self, bucket_id: &str, object_id: &str) -> Result<String> {
        let deleted = self
            .coll("objects")
            .find_one_and_delete(doc! { "_id": format!("{bucket_id}/{object_id}") })
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::not_found("object", object_id))?;
        deleted
            .get_str("blob_key")
            .map(str::to_owned)
            .map_err(backend)
    }

    async fn create_collection(&self, collection: &CollectionRecord) -> Result<()> {
        self.coll("collections")
            .insert_one(record(&collection.collection_id, collection)?)
            .await
            .map_err(|e| write_error(e, "collection", &collection.collection_name))?;
        Ok(())
    }

    async fn collection(
        &self,
        namespace_id: &str,
        id_or_name: &str,
    ) -> Result<Option<CollectionRecord>> {
        match self
            .one(
                "collections",
                doc! { "_id": id_or_name, "namespace_id": namespace_id },
            )
            .await?
        {
            Some(c) => Ok(Some(c)),
            None => {
                self.one(
                    "collections",
                    doc! { "collection_name": id_or_name, "namespace_id": namespace_id },
                )
                .await
            }
        }
    }

    async fn list_collections(
        &self,
        namespace_id: &str,
        page: &PageRequest,
    ) -> Result<Page<CollectionRecord>> {
        let key = |c: &CollectionRecord| c.collection_id.clone();
        let filter = doc! { "namespace_id": namespace_id };
        self.page("collections", filter, ("collection_id", key), page)
            .await
    }

    async fn collections_of_bucket(&self, bucket_id: &str) -> Result<Vec<CollectionRecord>> {
        self.sorted(
            "collections",
            doc! { "source.bucket_id": bucket_id },
            doc! { "_id": 1 },
        )
        .await
    }

    async fn update_collection(&self, collection: &CollectionRecord) -> Result<()> {
        let updated = self
            .coll("collections")
            .update_one(
                doc! { "_id": &collection.collection_id, "namespace_id": &collection.namespace_id },
                doc! { "$set": {
                    "description": &collection.description,
                    "extractors": bson::to_bson(&collection.extractors).map_err(backend)?,
                    "tiers": bson::to_bson(&collection.tiers).map_err(backend)?,
                    "output_schema": to_doc(&collection.output_schema)?,
                    "index_signature": &collection.index_signature,
                    "updated_at": &collection.updated_at,
                } },
            )
            .await
            .map_err(backend)?;
        if updated.matched_count == 0 {
            return Err(StoreError::not_found(
                "collection",
                collection.collection_id.as_str(),
            ));
        }
        Ok(())
    }

    async fn delete_collection(
        &self,
        namespace_id: &str,
        collection_id: &str,
        active: &[BatchStatus],
    ) -> Result<Removal<()>> {
        transaction!(self, s => {
            let found = self
                .coll("collections")
                .find_one(doc! { "_id": collection_id, "namespace_id": namespace_id })
                .session(&mut *s)
                .await
                .map_err(backend)?
                .ok_or_else(|| StoreError::not_found("collection", collection_id))?;
            let collection: CollectionRecord = from_doc(found)?;
            let batches = self.batches_in(s, &collection.source.bucket_id, active).await?;
            if !batches.is_empty() {
                return Ok(Removal::Busy { batches, collections: Vec::new() });
            }
            self.coll("collections")
                .delete_one(doc! { "_id": collection_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            Ok(Removal::Removed(()))
        })
    }

    async fn missing_objects(&self, bucket_id: &str, object_ids: &[String]) -> Result<Vec<String>> {
        let keys: Vec<String> = object_ids
            .iter()
            .map(|id| format!("{bucket_id}/{id}"))
            .collect();
        let mut found = std::collections::HashSet::new();
        for part in keys.chunks(10_000) {
            let ids = self
                .ids("objects", doc! { "_id": { "$in": part } }, "object_id")
                .await?;
            found.extend(ids);
        }
        let mut missing = Vec::new();
        for id in object_ids {
            if !found.contains(id) && !missing.contains(id) {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }

    async fn create_batch(
        &self,
        batch: &BatchRecord,
        object_ids: &[String],
    ) -> Result<std::result::Result<BatchRecord, BatchRecord>> {
        let doc = batch_record(batch)?;
        transaction!(self, s => {
            if let Some((key, _)) = &batch.idempotency {
                let existing = self
                    .coll("batches")
                    .find_one(doc! { "bucket_id": &batch.bucket_id, "idempotency_key": key })
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
                if let Some(existing) = existing {
                    return Ok(Err(from_doc(existing)?));
                }
            }
            self.coll("batches")
                .insert_one(doc.clone())
                .session(&mut *s)
                .await
                .map_err(|e| write_error(e, "batch", &batch.batch_id))?;
            let total = self.insert_batch_objects(s, &batch.batch_id, object_ids).await?;
            self.coll("batches")
                .update_one(doc! { "_id": &batch.batch_id }, doc! { "$set": { "total": total as i64 } })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            Ok(Ok(self.batch_in(s, &batch.batch_id).await?))
        })
    }

    async fn add_batch_objects(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
        object_ids: &[String],
    ) -> Result<Option<BatchRecord>> {
        transaction!(self, s => {
            let batch = self.batch_in(s, batch_id).await?;
            if !from.contains(&batch.status) {
                return Ok(None);
            }
            let added = self.insert_batch_objects(s, batch_id, object_ids).await?;
            self.coll("batches")
                .update_one(
                    doc! { "_id": batch_id },
                    doc! { "$inc": { "total": added as i64 }, "$set": { "updated_at": now() } },
                )
                .session(&mut *s)
                .await
                .map_err(backend)?;
            self.batch_in(s, batch_id).await.map(Some)
        })
    }

    async fn batch(&self, bucket_id: &str, batch_id: &str) -> Result<Option<BatchRecord>> {
        self.one("batches", doc! { "_id": batch_id, "bucket_id": bucket_id })
            .await
    }

    async fn batch_by_idempotency_key(
        &self,
        bucket_id: &str,
        key: &str,
    ) -> Result<Option<BatchRecord>> {
        self.one(
            "batches",
            doc! { "bucket_id": bucket_id, "idempotency_key": key },
        )
        .await
    }

    async fn batch_by_task(
        &self,
        namespace_id: &str,
        task_id: &str,
    ) -> Result<Option<BatchRecord>> {
        self.one(
            "batches",
            doc! { "namespace_id": namespace_id, "task_id": task_id, "status": { "$ne": "DRAFT" } },
        )
        .await
    }

    async fn list_batches(
        &self,
        bucket_id: &str,
        status: Option<BatchStatus>,
        page: &PageRequest,
    ) -> Result<Page<BatchRecord>> {
        let mut filter = doc! { "bucket_id": bucket_id };
        if let Some(status) = status {
            filter.insert("status", status.as_str());
        }
        let key = |b: &BatchRecord| b.batch_id.clone();
        self.page("batches", filter, ("batch_id", key), page).await
    }

    async fn batch_object_records(
        &self,
        batch_id: &str,
        page: &PageRequest,
    ) -> Result<Page<(String, Option<ObjectRecord>)>> {
        let objects = self.list_batch_objects(batch_id, None, page).await?;
        let Some(batch) = self
            .one::<BatchRecord>("batches", doc! { "_id": batch_id })
            .await?
        else {
            return Err(StoreError::not_found("batch", batch_id));
        };
        let keys: Vec<String> = objects
            .items
            .iter()
            .map(|o| format!("{}/{}", batch.bucket_id, o.object_id))
            .collect();
        let docs: Vec<Document> = self
            .coll("objects")
            .find(doc! { "_id": { "$in": keys } })
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        let mut records = std::collections::HashMap::new();
        for doc in docs {
            let record: ObjectRecord = from_doc(doc)?;
            records.insert(record.object_id.clone(), record);
        }
        Ok(Page {
            items: objects
                .items
                .into_iter()
                .map(|o| {
                    let record = records.remove(&o.object_id);
                    (o.object_id, record)
                })
                .collect(),
            next: objects.next,
        })
    }

    async fn list_batch_objects(
        &self,
        batch_id: &str,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<BatchObject>> {
        let mut filter = doc! { "batch_id": batch_id };
        if let Some(status) = status {
            filter.insert("status", status);
        }
        let key = |o: &BatchObject| o.object_id.clone();
        self.page("batch_objects", filter, ("object_id", key), page)
            .await
    }

    async fn submit_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
        collections: &[PinnedCollection],
        include_processing_history: bool,
        object_count: u64,
    ) -> Result<Option<BatchRecord>> {
        let pinned = bson::to_bson(collections).map_err(backend)?;
        let now = now();
        transaction!(self, s => {
            self.transition(
                s,
                doc! { "_id": batch_id, "status": status_in(from), "total": object_count as i64 },
                doc! { "$set": {
                    "status": "QUEUED", "collections": pinned.clone(),
                    "include_processing_history": include_processing_history,
                    "submitted_at": &now, "updated_at": &now,
                } },
            )
            .await
        })
    }

    async fn cancel_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        let now = now();
        let mut set = no_lease();
        set.insert("status", "CANCELED");
        set.insert("updated_at", &now);
        set.insert("finished_at", &now);
        transaction!(self, s => {
            self.transition(
                s,
                doc! { "_id": batch_id, "status": status_in(from) },
                doc! { "$set": set.clone() },
            )
            .await
        })
    }

    async fn unfinished_objects(&self, batch_id: &str) -> Result<u64> {
        self.count(
            "batch_objects",
            doc! { "batch_id": batch_id, "status": { "$ne": "completed" } },
        )
        .await
    }

    async fn retry_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        transaction!(self, s => {
            let batch = self.batch_in(s, batch_id).await?;
            if !from.contains(&batch.status) {
                return Ok(None);
            }
            self.coll("batch_objects")
                .update_many(
                    doc! { "batch_id": batch_id, "status": { "$ne": "completed" } },
                    doc! { "$set": { "status": "pending", "error": Bson::Null, "done": 0_i64 } },
                )
                .session(&mut *s)
                .await
                .map_err(backend)?;
            let completed = self
                .coll("batch_objects")
                .count_documents(doc! { "batch_id": batch_id, "status": "completed" })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            let now = now();
            let mut set = no_lease();
            for (k, v) in doc! {
                "status": "QUEUED", "failed": 0_i64, "attempts": 0_i64,
                "error_summary": {}, "live": Bson::Null, "processed": completed as i64,
                "error_message": Bson::Null, "finished_at": Bson::Null,
                "submitted_at": &now, "updated_at": &now,
            } {
                set.insert(k, v);
            }
            self.coll("batches")
                .update_one(doc! { "_id": batch_id }, doc! { "$set": set })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            self.transition_in(s, batch_id).await.map(Some)
        })
    }

    async fn delete_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
    ) -> Result<Option<Vec<String>>> {
        transaction!(self, s => {
            let batch = self.batch_in(s, batch_id).await?;
            if !from.contains(&batch.status) {
                return Ok(None);
            }
            self.coll("batch_objects")
                .delete_many(doc! { "batch_id": batch_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            self.coll("batches")
                .delete_one(doc! { "_id": batch_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            Ok(Some(batch
                .collections
                .into_iter()
                .flat_map(|c| c.manifests.into_values())
                .collect()))
        })
    }

    async fn claim_batch(
        &self,
        owner: &str,
        lease_ms: i64,
        max_attempts: u32,
    ) -> Result<Option<Claim>> {
        let now_ms = now_ms();
        let now = now();
        let expired = doc! { "status": "PROCESSING", "lease_expires_ms": { "$lt": now_ms } };
        // A batch whose workers keep dying fails instead of being claimed.
        let mut exhausted = expired.clone();
        exhausted.insert("attempts", doc! { "$gte": max_attempts as i64 });
        if let Some(doc) = self
            .coll("batches")
            .find_one(exhausted.clone())
            .sort(doc! { "_id": 1 })
            .await
            .map_err(backend)?
        {
            let batch: BatchRecord = from_doc(doc)?;
            let previous = batch.lease.as_ref().map(|(o, _)| o.as_str());
            let reason = crate::batches::lifecycle::workers_lost(batch.attempts, previous);
            let mut set = no_lease();
            set.insert("status", "FAILED");
            set.insert("error_message", reason);
            set.insert("finished_at", &now);
            set.insert("updated_at", &now);
            let mut filter = exhausted;
            filter.insert("_id", &batch.batch_id);
            let failed = transaction!(self, s => {
                self.transition(s, filter.clone(), doc! { "$set": set.clone() }).await
            })?;
            if let Some(batch) = failed {
                return Ok(Some(Claim::Exhausted(Box::new(batch))));
            }
        }
        let token = crate::keys::random_token();
        let expires = now_ms + lease_ms;
        let update = doc! {
            "$set": {
                "status": "PROCESSING",
                "lease": [owner, expires],
                "lease_token": &token,
                "lease_expires_ms": expires,
                "updated_at": &now,
            },
            "$inc": { "attempts": 1_i64 },
        };
        // The oldest claimable batch, then a claim conditional on what was
        // read: a queued batch starts (an event), an expired lease is
        // taken over (no news). Another worker may win the race; then the
        // next candidate is tried.
        let mut claimed = None;
        for _ in 0..5 {
            let candidate = self
                .coll("batches")
                .find_one(doc! { "$or": [ { "status": "QUEUED" }, expired.clone() ] })
                .sort(doc! { "_id": 1 })
                .projection(doc! { "status": 1 })
                .await
                .map_err(backend)?;
            let Some(candidate) = candidate else {
                return Ok(None);
            };
            let id = candidate.get_str("_id").map_err(backend)?;
            claimed = if candidate.get_str("status") == Ok("QUEUED") {
                let filter = doc! { "_id": id, "status": "QUEUED" };
                transaction!(self, s => {
                    self.transition(s, filter.clone(), update.clone()).await
                })?
            } else {
                let mut filter = expired.clone();
                filter.insert("_id", id);
                self.coll("batches")
                    .find_one_and_update(filter, update.clone())
                    .return_document(ReturnDocument::After)
                    .await
                    .map_err(backend)?
                    .map(from_doc)
                    .transpose()?
            };
            if claimed.is_some() {
                break;
            }
        }
        let Some(mut batch) = claimed else {
            return Ok(None);
        };
        if batch.started_at.is_none() {
            self.coll("batches")
                .update_one(
                    doc! { "_id": &batch.batch_id, "started_at": Bson::Null },
                    doc! { "$set": { "started_at": &now } },
                )
                .await
                .map_err(backend)?;
            batch.started_at = Some(now);
        }
        let lease = Lease {
            batch_id: batch.batch_id.clone(),
            owner: owner.to_owned(),
            token,
        };
        if batch.attempts > 1 {
            self.recount(&mut batch, &lease).await?;
        }
        Ok(Some(Claim::Batch(Box::new(batch), lease)))
    }

    async fn renew_lease(&self, lease: &Lease, lease_ms: i64, live: &LiveProgress) -> Result<bool> {
        let expires = now_ms() + lease_ms;
        let result = self
            .coll("batches")
            .update_one(
                doc! { "_id": &lease.batch_id, "lease_token": &lease.token, "status": "PROCESSING" },
                doc! { "$set": {
                    "lease_expires_ms": expires,
                    "lease": [&lease.owner, expires],
                    "live": to_doc(live)?,
                    "updated_at": now(),
                } },
            )
            .await
            .map_err(backend)?;
        Ok(result.matched_count == 1)
    }

    async fn release_batch(&self, lease: &Lease) -> Result<()> {
        let mut set = no_lease();
        set.insert("status", "QUEUED");
        set.insert("live", Bson::Null);
        set.insert("updated_at", now());
        // A claim counted this attempt; giving the batch back is no failure.
        self.coll("batches")
            .update_one(
                doc! { "_id": &lease.batch_id, "lease_token": &lease.token, "status": "PROCESSING" },
                doc! { "$set": set, "$inc": { "attempts": -1_i64 } },
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn pending_objects(&self, batch_id: &str, stage: u32) -> Result<Vec<String>> {
        self.ids(
            "batch_objects",
            doc! { "batch_id": batch_id, "status": "pending", "done": stage as i64 },
            "object_id",
        )
        .await
    }

    async fn record_chunk(&self, lease: &Lease, chunk: &ChunkOutcome) -> Result<(u64, u64)> {
        let summary = to_doc(&chunk.error_summary)?;
        let ids: Vec<String> = chunk
            .outcomes
            .iter()
            .map(|(object_id, _)| format!("{}/{object_id}", lease.batch_id))
            .collect();
        // Only objects still pending at this stage change: a repeated
        // outcome is not counted twice.
        let pending = doc! { "status": "pending", "done": chunk.stage as i64 };
        transaction!(self, s => {
            let (mut processed, mut failed) = (0i64, 0i64);
            let mut filter = pending.clone();
            filter.insert("_id", doc! { "$in": &ids });
            let current: std::collections::HashMap<String, Option<String>> = self
                .find_in(s, "batch_objects", filter)
                .await?
                .into_iter()
                .filter_map(|d| {
                    let id = d.get_str("_id").ok()?.to_owned();
                    Some((id, d.get_str("error").ok().map(str::to_owned)))
                })
                .collect();
            let mut updates = Vec::new();
            for (id, (_, error)) in ids.iter().zip(&chunk.outcomes) {
                let Some(earlier) = current.get(id) else {
                    continue;
                };
                let (error, status) = outcome(earlier.clone(), error.as_deref(), chunk.last);
                if chunk.last {
                    processed += 1;
                    failed += i64::from(error.is_some());
                }
                let mut q = pending.clone();
                q.insert("_id", id);
                updates.push(doc! {
                    "q": q,
                    "u": { "$set": { "status": status, "error": error }, "$inc": { "done": 1_i64 } },
                });
            }
            if !updates.is_empty() {
                self.bulk_update(s, "batch_objects", updates).await?;
            }
            // The fence: the batch changes only under this lease.
            let updated = self
                .coll("batches")
                .find_one_and_update(
                    doc! { "_id": &lease.batch_id, "lease_token": &lease.token, "status": "PROCESSING" },
                    doc! {
                        "$inc": { "processed": processed, "failed": failed },
                        "$set": { "error_summary": summary.clone(), "updated_at": now() },
                    },
                )
                .return_document(ReturnDocument::After)
                .session(&mut *s)
                .await
                .map_err(backend)?
                .ok_or_else(|| StoreError::LeaseLost(lease.batch_id.clone()))?;
            let batch: BatchRecord = from_doc(updated)?;
            Ok((batch.processed, batch.failed))
        })
    }

    async fn finish_collection(&self, lease: &Lease, pinned: &PinnedCollection) -> Result<()> {
        let schema = to_doc(&pinned.output_schema)?;
        let tiers = bson::to_bson(&pinned.tiers).map_err(backend)?;
        transaction!(self, s => {
            self.fence(s, lease).await?;
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
                        "output_schema": schema.clone(),
                        "tiers": tiers.clone(),
                        "updated_at": now(),
                    } },
                )
                .session(&mut *s)
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    async fn finish_batch(
        &self,
        lease: &Lease,
        status: BatchStatus,
        error_message: Option<&str>,
    ) -> Result<()> {
        let now = now();
        let mut set = no_lease();
        set.insert("status", status.as_str());
        set.insert("error_message", error_message);
        set.insert("finished_at", &now);
        set.insert("updated_at", &now);
        let filter =
            doc! { "_id": &lease.batch_id, "lease_token": &lease.token, "status": "PROCESSING" };
        let finished = transaction!(self, s => {
            self.transition(s, filter.clone(), doc! { "$set": set.clone() }).await
        })?;
        match finished {
            Some(_) => Ok(()),
            None => Err(StoreError::LeaseLost(lease.batch_id.clone())),
        }
    }
}

#[async_trait]
impl DocumentSink for MongoStore {
    async fn upsert_documents(
        &self,
        namespace_id: &str,
        collection_id: &str,
        documents: &[DocumentRecord],
        lease: Option<&Lease>,
    ) -> Result<u64> {
        if let Some(doc) = documents.iter().find(|d| d.collection_id != collection_id) {
            return Err(StoreError::Conflict(format!(
                "document `{}` belongs to collection `{}`, not `{collection_id}`",
                doc.document_id, doc.collection_id
            )));
        }
        let mut updates = Vec::with_capacity(documents.len());
        for d in documents {
            let mut set = record(&d.document_id, d)?;
            set.remove("_id");
            let created_at = set.remove("created_at").unwrap_or(Bson::Null);
            set.insert("namespace_id", namespace_id);
            updates.push(doc! {
                "q": { "_id": &d.document_id },
                "u": { "$set": set, "$setOnInsert": { "created_at": created_at } },
                "upsert": true,
            });
        }
        let event =
            crate::store::events::Event::documents_written(namespace_id, collection_id, documents);
        transaction!(self, s => {
            if let Some(lease) = lease {
                self.fence(s, lease).await?;
            }
            // One bulk upsert for the chunk.
            let answer = self.bulk_update(s, "documents", updates.clone()).await?;
            let new = answer.get_array("upserted").map_or(0, |u| u.len()) as i64;
            let counted = self
                .coll("collections")
                .update_one(doc! { "_id": collection_id }, doc! { "$inc": { "document_count": new } })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            if counted.matched_count == 0 {
                return Err(StoreError::not_found("collection", collection_id));
            }
            self.emit(s, event.clone()).await?;
            Ok(new as u64)
        })
    }

    async fn list_documents(
        &self,
        collection_id: &str,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<DocumentRecord>> {
        let mut query = doc! { "collection_id": collection_id };
        if let Some(batch) = &filter.batch_id {
            query.insert("batch_id", batch);
        }
        if let Some(object) = &filter.object_id {
            query.insert("object_id", object);
        }
        let key = |d: &DocumentRecord| d.document_id.clone();
        self.page("documents", query, ("document_id", key), page)
            .await
    }

    async fn document(
        &self,
        collection_id: &str,
        document_id: &str,
    ) -> Result<Option<DocumentRecord>> {
        self.one(
            "documents",
            doc! { "_id": document_id, "collection_id": collection_id },
        )
        .await
    }

    async fn delete_documents(&self, collection_id: &str) -> Result<()> {
        self.coll("documents")
            .delete_many(doc! { "collection_id": collection_id })
            .await
            .map_err(backend)?;
        Ok(())
    }
}
