//! The embedded store: one SQLite database in WAL mode.
//!
//! Every call runs on tokio's blocking pool against one connection; writes
//! that must be atomic run in one `BEGIN IMMEDIATE` transaction, so several
//! processes may share the database file.

use crate::store::{BatchId, BucketId, ObjectId, WorkerId};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod batches;
mod buckets;
mod collections;
mod documents;
mod namespaces;
mod registry;
mod schema;
mod webhooks;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Timestamp;
use super::{
    ApiKey, BatchEnd, BatchObject, BatchRecord, BatchStatus, Bucket, ChunkOutcome,
    CollectionRecord, DocumentFilter, DocumentRecord, DocumentSink, Lease, LeaseHolder,
    LiveProgress, Namespace, ObjectRecord, Page, PageRequest, PinnedCollection, Pipelines, Removal,
    Result, ShardChange, ShardExpect, ShardRecord, ShardStatus, Store, StoreError, WorkerRecord,
    check_revoke, now, outcome,
};
use super::{BatchStore, BucketStore, CollectionStore, NamespaceStore, of_one_collection};
use crate::store::events::Event;

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path).map_err(StoreError::backend)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(StoreError::backend)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(StoreError::backend)?;
        schema::migrate(&mut conn).map_err(StoreError::backend)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction open:
            // rusqlite rolls back when the `Transaction` drops.
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(StoreError::backend)?
    }

    /// Runs `write` in one `BEGIN IMMEDIATE` transaction, which it commits,
    /// while the batch is in one of `from` (`None`, nothing written,
    /// otherwise): the conditional write every batch transition is.
    async fn while_in<T: Send + 'static>(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        write: impl FnOnce(rusqlite::Transaction<'_>, &BatchId) -> Result<T> + Send + 'static,
    ) -> Result<Option<T>> {
        let (id, from) = (batch_id.to_owned(), from.to_vec());
        self.call(move |c| {
            let tx = immediate(c)?;
            if !status_among(&tx, &id, &from)? {
                return Ok(None);
            }
            write(tx, &id).map(Some)
        })
        .await
    }
}

impl SqliteStore {
    /// The first row `sql` selects with `params`, if any.
    async fn optional<T: Send + 'static>(
        &self,
        sql: String,
        params: Vec<String>,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        self.call(move |c| {
            c.query_row(&sql, rusqlite::params_from_iter(params), row)
                .optional()
                .map_err(backend)
        })
        .await
    }
}

/// Maps a failed write: a broken uniqueness rule becomes `conflict`.
fn write_error(e: rusqlite::Error, kind: &'static str, name: &str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::taken(kind, name)
        }
        e => StoreError::backend(e),
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::backend(e)
}

/// Page size plus one: the extra row says whether another page follows.
fn overfetch(page: &PageRequest) -> i64 {
    page.limit.max(1) as i64 + 1
}

/// The first column of every row `sql` selects for `id`.
fn strings<T: rusqlite::types::FromSql>(c: &Connection, sql: &str, id: &str) -> Result<Vec<T>> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
        .map_err(backend)
}

/// One page of the rows `sql` selects; `sql` takes `params` and then the
/// page's `after` key and row limit as its last two parameters.
fn select_page<T>(
    c: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
    page: &PageRequest,
    row: fn(&Row<'_>) -> rusqlite::Result<T>,
    key: fn(&T) -> String,
) -> Result<Page<T>> {
    let limit = overfetch(page);
    let mut all: Vec<&dyn rusqlite::ToSql> = params.to_vec();
    all.push(&page.after);
    all.push(&limit);
    let items = c
        .prepare_cached(sql)
        .and_then(|mut s| s.query_map(all.as_slice(), row)?.collect())
        .map_err(backend)?;
    Ok(Page::from_overfetch(items, page.limit, key))
}

fn json_column(text: Option<String>) -> rusqlite::Result<Option<serde_json::Value>> {
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
}

fn namespace_row(r: &Row<'_>) -> rusqlite::Result<Namespace> {
    Ok(Namespace {
        namespace_id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
    })
}

fn key_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        key_id: r.get(0)?,
        name: r.get(1)?,
        admin: r.get(2)?,
        namespace_id: r.get(3)?,
        created_at: r.get(4)?,
        publish: r.get(5)?,
        last_used_at: r.get(6)?,
        from_env: r.get(7)?,
    })
}

const KEY_COLUMNS: &str =
    "key_id, name, admin, namespace_id, created_at, publish, last_used_at, from_env";

fn bucket_row(r: &Row<'_>) -> rusqlite::Result<Bucket> {
    Ok(Bucket {
        bucket_id: r.get(0)?,
        namespace_id: r.get(1)?,
        bucket_name: r.get(2)?,
        description: r.get(3)?,
        created_at: r.get(4)?,
    })
}

const OBJECT_COLUMNS: &str = "object_id, bucket_id, namespace_id, key, mime_type, size_bytes, sha256, metadata, blob_key, created_at";

fn object_row(r: &Row<'_>) -> rusqlite::Result<ObjectRecord> {
    object_row_at(r, 0)
}

/// An object whose [`OBJECT_COLUMNS`] start at column `at`.
fn object_row_at(r: &Row<'_>, at: usize) -> rusqlite::Result<ObjectRecord> {
    Ok(ObjectRecord {
        object_id: r.get(at)?,
        bucket_id: r.get(at + 1)?,
        namespace_id: r.get(at + 2)?,
        key: r.get(at + 3)?,
        mime_type: r.get(at + 4)?,
        size_bytes: r.get(at + 5)?,
        sha256: r.get(at + 6)?,
        metadata: json_column(r.get(at + 7)?)?,
        blob_key: r.get(at + 8)?,
        created_at: r.get(at + 9)?,
    })
}

fn collection_row(r: &Row<'_>) -> rusqlite::Result<CollectionRecord> {
    body_column(r.get(0)?)
}

/// A record kept whole as JSON text.
fn body_column<T: serde::de::DeserializeOwned>(text: String) -> rusqlite::Result<T> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

fn body_text<T: serde::Serialize>(record: &T) -> Result<String> {
    serde_json::to_string(record).map_err(StoreError::backend)
}

/// `status IN (…)` of `statuses`, named by `name` (a closed enum's names,
/// never input).
fn names_in<S: Copy>(statuses: &[S], name: fn(S) -> &'static str) -> String {
    let names: Vec<String> = statuses.iter().map(|s| format!("'{}'", name(*s))).collect();
    format!("status IN ({})", names.join(", "))
}

/// `status IN (…)` of batch `statuses`.
fn status_in(statuses: &[BatchStatus]) -> String {
    names_in(statuses, BatchStatus::as_str)
}

/// `status IN (…)` of shard `statuses`.
fn shard_status_in(statuses: &[ShardStatus]) -> String {
    names_in(statuses, ShardStatus::as_str)
}

/// Batches of `bucket_id` in one of `statuses`.
fn batches_in(
    c: &Connection,
    bucket_id: &BucketId,
    statuses: &[BatchStatus],
) -> Result<Vec<BatchId>> {
    strings(
        c,
        &format!(
            "SELECT batch_id FROM batches WHERE bucket_id = ?1 AND {} ORDER BY batch_id",
            status_in(statuses)
        ),
        bucket_id,
    )
}

/// The batch's status when it is one of `from`.
fn status_among(c: &Connection, batch_id: &BatchId, from: &[BatchStatus]) -> Result<bool> {
    let status = read_batch(c, batch_id)?.status;
    Ok(from.contains(&status))
}

const BATCH_COLUMNS: &str = "body, status, total, updated_at";

/// A batch: its body, with the columns written in place laid over.
fn batch_row(r: &Row<'_>) -> rusqlite::Result<BatchRecord> {
    let mut b: BatchRecord = body_column(r.get(0)?)?;
    b.status = parsed(r, 1, BatchStatus::parse)?;
    b.total = r.get(2)?;
    if let Some(updated) = r.get::<_, Option<Timestamp>>(3)? {
        b.updated_at = updated;
    }
    Ok(b)
}

/// Column `at`, a status name, parsed.
fn parsed<T>(r: &Row<'_>, at: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let name: String = r.get(at)?;
    parse(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            at,
            rusqlite::types::Type::Text,
            format!("unknown status `{name}`").into(),
        )
    })
}

/// Column `at`, JSON text, decoded (`None` when NULL).
fn decoded<T: serde::de::DeserializeOwned>(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<T>> {
    json_column(r.get(at)?)?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, e.into())
        })
}

/// `lease_owner` is the worker that claimed the shard last; the lease
/// itself is its token and expiry, set while it runs.
const SHARD_COLUMNS: &str = "batch_id, shard_index, namespace_id, status, objects, row_start, first_object_id, last_object_id, processed, failed, error_summary, attempts, lease_owner, lease_expires_ms, live, error_message, updated_at, started_at, finished_at";
const SHARD_COLUMN_COUNT: usize = 19;

/// `columns` (a list like [`SHARD_COLUMNS`]) of the table aliased `alias`.
fn columns_of(columns: &str, alias: &str) -> String {
    columns
        .split(", ")
        .map(|col| format!("{alias}.{col}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn shard_row(r: &Row<'_>) -> rusqlite::Result<ShardRecord> {
    let worker: Option<WorkerId> = r.get(12)?;
    let expires: Option<i64> = r.get(13)?;
    Ok(ShardRecord {
        batch_id: r.get(0)?,
        shard_index: r.get(1)?,
        namespace_id: r.get(2)?,
        status: parsed(r, 3, ShardStatus::parse)?,
        objects: r.get(4)?,
        row_start: r.get(5)?,
        first_object_id: r.get(6)?,
        last_object_id: r.get(7)?,
        processed: r.get(8)?,
        failed: r.get(9)?,
        error_summary: decoded(r, 10)?.unwrap_or_default(),
        attempts: r.get(11)?,
        lease: worker
            .clone()
            .zip(expires)
            .map(|(owner, expires_ms)| LeaseHolder { owner, expires_ms }),
        worker,
        live: decoded(r, 14)?,
        error_message: r.get(15)?,
        updated_at: r.get(16)?,
        started_at: r.get(17)?,
        finished_at: r.get(18)?,
    })
}

fn insert_shard(c: &Connection, s: &ShardRecord) -> Result<()> {
    c.execute(
        "INSERT INTO shards (batch_id, shard_index, namespace_id, status, objects, row_start,
           first_object_id, last_object_id, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            s.batch_id,
            s.shard_index,
            s.namespace_id,
            s.status.as_str(),
            s.objects,
            s.row_start,
            s.first_object_id,
            s.last_object_id,
            s.updated_at
        ],
    )
    .map_err(backend)?;
    Ok(())
}

/// Ends every shard of the batch with work left: `status`, lease dropped.
fn end_shards(
    c: &Connection,
    batch_id: &BatchId,
    status: ShardStatus,
    now: &Timestamp,
) -> Result<()> {
    c.execute(
        &format!(
            "UPDATE shards SET status = ?2, lease_token = NULL,
               lease_expires_ms = NULL, live = NULL, updated_at = ?3, finished_at = ?3
             WHERE batch_id = ?1 AND {}",
            shard_status_in(&ShardStatus::ACTIVE)
        ),
        params![batch_id, status.as_str(), now],
    )
    .map_err(backend)?;
    Ok(())
}

/// The collection takes the plan a batch ran, unless it was configured
/// otherwise meanwhile.
fn write_plan_back(c: &Connection, pinned: &PinnedCollection, now: &Timestamp) -> Result<()> {
    let current = c
        .query_row(
            "SELECT body FROM collections WHERE collection_id = ?1",
            [&pinned.collection_id],
            collection_row,
        )
        .optional()
        .map_err(backend)?;
    if !current.is_some_and(|c| pinned.still_configured(&c.extractors)) {
        return Ok(());
    }
    let schema = serde_json::to_string(&pinned.output_schema).map_err(StoreError::backend)?;
    let tiers = serde_json::to_string(&pinned.tiers).map_err(StoreError::backend)?;
    c.execute(
        "UPDATE collections SET body = json_set(body,
           '$.index_signature', ?2, '$.output_schema', json(?3), '$.tiers', json(?4), '$.updated_at', ?5)
         WHERE collection_id = ?1",
        params![pinned.collection_id, pinned.index_signature, schema, tiers, now],
    )
    .map_err(backend)?;
    Ok(())
}

fn read_batch(c: &Connection, batch_id: &BatchId) -> Result<BatchRecord> {
    c.query_row(
        &format!("SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = ?1"),
        [batch_id],
        batch_row,
    )
    .optional()
    .map_err(backend)?
    .ok_or_else(|| StoreError::not_found("batch", batch_id))
}

/// Commits `tx` and returns the batch as it now is.
fn commit_batch(tx: rusqlite::Transaction<'_>, batch_id: &BatchId) -> Result<BatchRecord> {
    let batch = read_batch(&tx, batch_id)?;
    tx.commit().map_err(backend)?;
    Ok(batch)
}

/// Commits `tx`, which moved the batch to a new status, with the event of
/// that status; returns the batch as it now is, its progress summed.
fn commit_transition(tx: rusqlite::Transaction<'_>, batch_id: &BatchId) -> Result<BatchRecord> {
    let mut batch = read_batch(&tx, batch_id)?;
    let shards: Vec<ShardRecord> = tx
        .prepare_cached(&format!(
            "SELECT {SHARD_COLUMNS} FROM shards WHERE batch_id = ?1 ORDER BY shard_index"
        ))
        .and_then(|mut s| s.query_map([batch_id], shard_row)?.collect())
        .map_err(backend)?;
    crate::batches::shards::sum_into(&mut batch, &shards);
    webhooks::emit(&tx, Event::batch(&batch))?;
    tx.commit().map_err(backend)?;
    Ok(batch)
}

fn batch_object_row(r: &Row<'_>) -> rusqlite::Result<BatchObject> {
    Ok(BatchObject {
        object_id: r.get(0)?,
        status: r.get(1)?,
        error: r.get(2)?,
    })
}

fn document_row(r: &Row<'_>) -> rusqlite::Result<DocumentRecord> {
    body_column(r.get(0)?)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn immediate(c: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)
}

/// Adds `ids` to a batch, ignoring those it holds; returns how many were new.
fn insert_batch_objects(c: &Connection, batch_id: &BatchId, ids: &[ObjectId]) -> Result<u64> {
    let mut insert = c
        .prepare_cached(
            "INSERT OR IGNORE INTO batch_objects (batch_id, object_id, status) VALUES (?1, ?2, 'pending')",
        )
        .map_err(backend)?;
    let mut added = 0;
    for id in ids {
        added += insert.execute(params![batch_id, id]).map_err(backend)? as u64;
    }
    Ok(added)
}

/// Checks that `lease` still holds its shard, running; returns the shard.
fn fence(c: &Connection, lease: &Lease) -> Result<ShardRecord> {
    c.query_row(
        &format!(
            "SELECT {SHARD_COLUMNS} FROM shards
             WHERE batch_id = ?1 AND shard_index = ?2 AND lease_token = ?3 AND status = 'PROCESSING'"
        ),
        params![lease.batch_id, lease.shard_index, lease.token],
        shard_row,
    )
    .optional()
    .map_err(backend)?
    .ok_or_else(|| StoreError::LeaseLost(lease.batch_id.to_string()))
}

/// Blob keys of the artifacts of the batches `sql` selects for `id`.
fn batch_artifacts(c: &Connection, sql: &str, id: &str) -> Result<Vec<String>> {
    let bodies = strings(c, sql, id)?;
    let mut keys = Vec::new();
    for body in bodies {
        let batch: BatchRecord = body_column(body).map_err(backend)?;
        keys.extend(
            batch
                .collections
                .into_iter()
                .flat_map(|c| c.manifests.into_values()),
        );
    }
    Ok(keys)
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn ping(&self) -> Result<()> {
        self.call(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }
}
