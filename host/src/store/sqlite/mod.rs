//! The embedded store: one SQLite database in WAL mode.
//!
//! Every call runs on tokio's blocking pool against one connection; writes
//! that must be atomic run in one `BEGIN IMMEDIATE` transaction, so several
//! processes may share the database file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod registry;
mod webhooks;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    ApiKey, BatchObject, BatchRecord, BatchStatus, Bucket, ChunkOutcome, Claim, CollectionRecord,
    DocumentFilter, DocumentRecord, DocumentSink, Lease, LiveProgress, Namespace, ObjectRecord,
    Page, PageRequest, PinnedCollection, Removal, Result, Store, StoreError, check_revoke, now,
    outcome,
};
use crate::store::events::Event;

/// Schema changes, applied in order; `PRAGMA user_version` counts the
/// applied ones.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE namespaces (
    namespace_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    name TEXT,
    admin INTEGER NOT NULL,
    namespace_id TEXT REFERENCES namespaces (namespace_id),
    created_at TEXT NOT NULL
);
CREATE TABLE buckets (
    bucket_id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL REFERENCES namespaces (namespace_id),
    bucket_name TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (namespace_id, bucket_name)
);
CREATE TABLE objects (
    bucket_id TEXT NOT NULL REFERENCES buckets (bucket_id),
    object_id TEXT NOT NULL,
    namespace_id TEXT NOT NULL,
    key TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    metadata TEXT,
    blob_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (bucket_id, object_id)
) WITHOUT ROWID;
CREATE TABLE collections (
    collection_id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL REFERENCES namespaces (namespace_id),
    collection_name TEXT NOT NULL,
    bucket_id TEXT NOT NULL REFERENCES buckets (bucket_id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (namespace_id, collection_name)
);
CREATE INDEX collections_by_bucket ON collections (bucket_id);
CREATE TABLE batches (
    batch_id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL REFERENCES namespaces (namespace_id),
    bucket_id TEXT NOT NULL REFERENCES buckets (bucket_id),
    task_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    idempotency_key TEXT,
    body TEXT NOT NULL,
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_ms INTEGER,
    created_at TEXT NOT NULL,
    UNIQUE (bucket_id, idempotency_key)
);
CREATE INDEX batches_by_status ON batches (status, lease_expires_ms);
CREATE TABLE batch_objects (
    batch_id TEXT NOT NULL REFERENCES batches (batch_id),
    object_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (batch_id, object_id)
) WITHOUT ROWID;
CREATE TABLE documents (
    document_id TEXT PRIMARY KEY,
    collection_id TEXT NOT NULL,
    namespace_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX documents_by_collection ON documents (collection_id, document_id);
"#,
    r#"
ALTER TABLE batches ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN processed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN error_summary TEXT;
ALTER TABLE batches ADD COLUMN live TEXT;
ALTER TABLE batches ADD COLUMN updated_at TEXT;
CREATE INDEX batches_by_bucket ON batches (bucket_id, batch_id);
CREATE INDEX batches_by_task ON batches (namespace_id, task_id);
ALTER TABLE batch_objects ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
CREATE INDEX batch_objects_by_status ON batch_objects (batch_id, status, done, object_id);
CREATE UNIQUE INDEX documents_by_object ON documents (collection_id, object_id);
CREATE INDEX documents_by_batch ON documents (collection_id, batch_id, document_id);
"#,
    r#"
CREATE TABLE webhooks (
    webhook_id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL REFERENCES namespaces (namespace_id),
    body TEXT NOT NULL
);
CREATE INDEX webhooks_by_namespace ON webhooks (namespace_id, webhook_id);
CREATE TABLE deliveries (
    delivery_id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    state TEXT NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    lease_token TEXT,
    lease_expires_ms INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, delivery_id);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_ms);
"#,
    r#"
CREATE TABLE extractor_versions (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    body TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
"#,
    r#"
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE api_keys ADD COLUMN publish INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
ALTER TABLE api_keys ADD COLUMN last_used_at TEXT;
ALTER TABLE api_keys ADD COLUMN from_env INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
CREATE TABLE extractor_names (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
"#,
    r#"
CREATE INDEX batches_in_flight ON batches (namespace_id, status);
"#,
];

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
        migrate(&mut conn).map_err(StoreError::backend)?;
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

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()
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
fn strings(c: &Connection, sql: &str, id: &str) -> Result<Vec<String>> {
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

/// `status IN (…)` of `statuses` (names of a closed enum, never input).
fn status_in(statuses: &[BatchStatus]) -> String {
    let names: Vec<String> = statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("status IN ({})", names.join(", "))
}

/// Batches of `bucket_id` in one of `statuses`.
fn batches_in(c: &Connection, bucket_id: &str, statuses: &[BatchStatus]) -> Result<Vec<String>> {
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
fn status_among(c: &Connection, batch_id: &str, from: &[BatchStatus]) -> Result<bool> {
    let status = read_batch(c, batch_id)?.status;
    Ok(from.contains(&status))
}

const BATCH_COLUMNS: &str = "body, status, total, processed, failed, attempts, error_summary, live, lease_owner, lease_expires_ms, updated_at";

/// A batch: its body, with the columns workers update in place laid over.
fn batch_row(r: &Row<'_>) -> rusqlite::Result<BatchRecord> {
    let mut b: BatchRecord = body_column(r.get(0)?)?;
    let status: String = r.get(1)?;
    b.status = BatchStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Text,
            format!("unknown batch status `{status}`").into(),
        )
    })?;
    b.total = r.get(2)?;
    b.processed = r.get(3)?;
    b.failed = r.get(4)?;
    b.attempts = r.get(5)?;
    b.error_summary = json_column(r.get(6)?)?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, e.into())
        })?
        .unwrap_or_default();
    b.live = json_column(r.get(7)?)?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into())
        })?;
    let owner: Option<String> = r.get(8)?;
    let expires: Option<i64> = r.get(9)?;
    b.lease = owner.zip(expires);
    if let Some(updated) = r.get::<_, Option<String>>(10)? {
        b.updated_at = updated;
    }
    Ok(b)
}

fn read_batch(c: &Connection, batch_id: &str) -> Result<BatchRecord> {
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
fn commit_batch(tx: rusqlite::Transaction<'_>, batch_id: &str) -> Result<BatchRecord> {
    let batch = read_batch(&tx, batch_id)?;
    tx.commit().map_err(backend)?;
    Ok(batch)
}

/// Commits `tx`, which moved the batch to a new status, with the event of
/// that status; returns the batch as it now is.
fn commit_transition(tx: rusqlite::Transaction<'_>, batch_id: &str) -> Result<BatchRecord> {
    let batch = read_batch(&tx, batch_id)?;
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
fn insert_batch_objects(c: &Connection, batch_id: &str, ids: &[String]) -> Result<u64> {
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

/// Checks that `lease` still holds its batch; returns the batch's namespace.
fn fence(c: &Connection, lease: &Lease) -> Result<String> {
    c.query_row(
        "SELECT namespace_id FROM batches WHERE batch_id = ?1 AND lease_token = ?2 AND status = 'PROCESSING'",
        params![lease.batch_id, lease.token],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)?
    .ok_or_else(|| StoreError::LeaseLost(lease.batch_id.clone()))
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

    async fn create_namespace(&self, ns: &Namespace) -> Result<()> {
        let ns = ns.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO namespaces (namespace_id, name, created_at) VALUES (?1, ?2, ?3)",
                params![ns.namespace_id, ns.name, ns.created_at],
            )
            .map_err(|e| write_error(e, "namespace", &ns.name))?;
            Ok(())
        })
        .await
    }

    async fn namespace(&self, id_or_name: &str) -> Result<Option<Namespace>> {
        let id = id_or_name.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT namespace_id, name, created_at FROM namespaces
                 WHERE namespace_id = ?1 OR name = ?1 ORDER BY namespace_id = ?1 DESC LIMIT 1",
                [id],
                namespace_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn list_namespaces(&self, page: &PageRequest) -> Result<Page<Namespace>> {
        let page = page.clone();
        self.call(move |c| {
            select_page(
                c,
                "SELECT namespace_id, name, created_at FROM namespaces
                 WHERE ?1 IS NULL OR namespace_id > ?1 ORDER BY namespace_id LIMIT ?2",
                &[],
                &page,
                namespace_row,
                |n| n.namespace_id.clone(),
            )
        })
        .await
    }

    async fn create_key(&self, key: &ApiKey, secret_hash: &str) -> Result<()> {
        let (key, hash) = (key.clone(), secret_hash.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO api_keys (key_id, secret_hash, name, admin, namespace_id, created_at, publish, from_env)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    key.key_id,
                    hash,
                    key.name,
                    key.admin,
                    key.namespace_id,
                    key.created_at,
                    key.publish,
                    key.from_env
                ],
            )
            .map_err(|e| write_error(e, "key", "this key"))?;
            Ok(())
        })
        .await
    }

    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        let hash = secret_hash.to_owned();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?1"),
                [hash],
                key_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn has_admin_key(&self) -> Result<bool> {
        self.call(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE admin)",
                [],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn count_batches(&self, namespace_id: &str, statuses: &[BatchStatus]) -> Result<u64> {
        let namespace_id = namespace_id.to_owned();
        let sql = format!(
            "SELECT count(*) FROM batches WHERE namespace_id = ?1 AND {}",
            status_in(statuses)
        );
        self.call(move |c| {
            c.query_row(&sql, [namespace_id], |r| r.get(0))
                .map_err(backend)
        })
        .await
    }

    async fn list_keys(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
        let (limit, after) = (page.limit, page.after.clone().unwrap_or_default());
        let keys = self
            .call(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id > ?1 ORDER BY key_id LIMIT ?2"
                ))
                .and_then(|mut s| {
                    s.query_map(params![after, limit as i64 + 1], key_row)?
                        .collect()
                })
                .map_err(backend)
            })
            .await?;
        Ok(Page::from_overfetch(keys, limit, |k| k.key_id.clone()))
    }

    async fn delete_key(&self, key_id: &str) -> Result<()> {
        let key_id = key_id.to_owned();
        self.call(move |c| {
            let tx = immediate(c)?;
            let key = tx
                .query_row(
                    &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?1"),
                    [&key_id],
                    key_row,
                )
                .optional()
                .map_err(backend)?
                .ok_or_else(|| StoreError::not_found("API key", &key_id))?;
            let admins: u64 = tx
                .query_row("SELECT count(*) FROM api_keys WHERE admin", [], |r| {
                    r.get(0)
                })
                .map_err(backend)?;
            check_revoke(&key, admins)?;
            tx.execute("DELETE FROM api_keys WHERE key_id = ?1", [&key_id])
                .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn touch_key(&self, key_id: &str, at: &str) -> Result<()> {
        let (key_id, at) = (key_id.to_owned(), at.to_owned());
        self.call(move |c| {
            c.execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE key_id = ?1",
                [&key_id, &at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn create_bucket(&self, bucket: &Bucket) -> Result<()> {
        let b = bucket.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO buckets (bucket_id, namespace_id, bucket_name, description, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![b.bucket_id, b.namespace_id, b.bucket_name, b.description, b.created_at],
            )
            .map_err(|e| write_error(e, "bucket", &b.bucket_name))?;
            Ok(())
        })
        .await
    }

    async fn bucket(&self, namespace_id: &str, id_or_name: &str) -> Result<Option<Bucket>> {
        self.optional(
            "SELECT bucket_id, namespace_id, bucket_name, description, created_at FROM buckets
                 WHERE namespace_id = ?1 AND (bucket_id = ?2 OR bucket_name = ?2)
                 ORDER BY bucket_id = ?2 DESC LIMIT 1"
                .to_owned(),
            vec![namespace_id.to_owned(), id_or_name.to_owned()],
            bucket_row,
        )
        .await
    }

    async fn list_buckets(&self, namespace_id: &str, page: &PageRequest) -> Result<Page<Bucket>> {
        let (ns, page) = (namespace_id.to_owned(), page.clone());
        self.call(move |c| {
            select_page(
                c,
                "SELECT bucket_id, namespace_id, bucket_name, description, created_at
                 FROM buckets WHERE namespace_id = ?1 AND (?2 IS NULL OR bucket_id > ?2)
                 ORDER BY bucket_id LIMIT ?3",
                &[&ns],
                &page,
                bucket_row,
                |b| b.bucket_id.clone(),
            )
        })
        .await
    }

    async fn delete_bucket(
        &self,
        namespace_id: &str,
        bucket_id: &str,
        active: &[BatchStatus],
    ) -> Result<Removal<Vec<String>>> {
        let (ns, id, active) = (
            namespace_id.to_owned(),
            bucket_id.to_owned(),
            active.to_vec(),
        );
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM buckets WHERE bucket_id = ?1 AND namespace_id = ?2)",
                    params![id, ns],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if !exists {
                return Err(StoreError::not_found("bucket", id));
            }
            let batches = batches_in(&tx, &id, &active)?;
            let collections = strings(
                &tx,
                "SELECT collection_name FROM collections WHERE bucket_id = ?1 ORDER BY collection_name",
                &id,
            )?;
            if !(batches.is_empty() && collections.is_empty()) {
                return Ok(Removal::Busy { batches, collections });
            }
            let mut blobs = strings(&tx, "SELECT blob_key FROM objects WHERE bucket_id = ?1", &id)?;
            blobs.extend(batch_artifacts(&tx, "SELECT body FROM batches WHERE bucket_id = ?1", &id)?);
            for sql in [
                "DELETE FROM batch_objects WHERE batch_id IN (SELECT batch_id FROM batches WHERE bucket_id = ?1)",
                "DELETE FROM batches WHERE bucket_id = ?1",
                "DELETE FROM objects WHERE bucket_id = ?1",
                "DELETE FROM buckets WHERE bucket_id = ?1",
            ] {
                tx.execute(sql, [&id]).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Removal::Removed(blobs))
        })
        .await
    }

    async fn create_object(&self, object: &ObjectRecord) -> Result<()> {
        let o = object.clone();
        self.call(move |c| {
            let metadata = o.metadata.as_ref().map(|m| m.to_string());
            c.execute(
                &format!("INSERT INTO objects ({OBJECT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    o.object_id, o.bucket_id, o.namespace_id, o.key, o.mime_type, o.size_bytes,
                    o.sha256, metadata, o.blob_key, o.created_at
                ],
            )
            .map_err(|e| {
                write_error(e, "object", &o.object_id)
            })?;
            Ok(())
        })
        .await
    }

    async fn object(&self, bucket_id: &str, object_id: &str) -> Result<Option<ObjectRecord>> {
        self.optional(
            format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket_id = ?1 AND object_id = ?2"),
            vec![bucket_id.to_owned(), object_id.to_owned()],
            object_row,
        )
        .await
    }

    async fn list_objects(
        &self,
        bucket_id: &str,
        page: &PageRequest,
    ) -> Result<Page<ObjectRecord>> {
        let (b, page) = (bucket_id.to_owned(), page.clone());
        self.call(move |c| {
            select_page(
                c,
                &format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket_id = ?1
                     AND (?2 IS NULL OR object_id > ?2) ORDER BY object_id LIMIT ?3"
                ),
                &[&b],
                &page,
                object_row,
                |o| o.object_id.clone(),
            )
        })
        .await
    }

    async fn delete_object(&self, bucket_id: &str, object_id: &str) -> Result<String> {
        let (b, o) = (bucket_id.to_owned(), object_id.to_owned());
        self.call(move |c| {
            c.query_row(
                "DELETE FROM objects WHERE bucket_id = ?1 AND object_id = ?2 RETURNING blob_key",
                params![b, o],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?
            .ok_or_else(|| StoreError::not_found("object", o))
        })
        .await
    }

    async fn create_collection(&self, collection: &CollectionRecord) -> Result<()> {
        let body = body_text(collection)?;
        let col = collection.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO collections (collection_id, namespace_id, collection_name, bucket_id, body, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![col.collection_id, col.namespace_id, col.collection_name, col.source.bucket_id, body, col.created_at],
            )
            .map_err(|e| write_error(e, "collection", &col.collection_name))?;
            Ok(())
        })
        .await
    }

    async fn collection(
        &self,
        namespace_id: &str,
        id_or_name: &str,
    ) -> Result<Option<CollectionRecord>> {
        self.optional(
            "SELECT body FROM collections WHERE namespace_id = ?1
                 AND (collection_id = ?2 OR collection_name = ?2)
                 ORDER BY collection_id = ?2 DESC LIMIT 1"
                .to_owned(),
            vec![namespace_id.to_owned(), id_or_name.to_owned()],
            collection_row,
        )
        .await
    }

    async fn list_collections(
        &self,
        namespace_id: &str,
        page: &PageRequest,
    ) -> Result<Page<CollectionRecord>> {
        let (ns, page) = (namespace_id.to_owned(), page.clone());
        self.call(move |c| {
            select_page(
                c,
                "SELECT body FROM collections WHERE namespace_id = ?1
                 AND (?2 IS NULL OR collection_id > ?2) ORDER BY collection_id LIMIT ?3",
                &[&ns],
                &page,
                collection_row,
                |c| c.collection_id.clone(),
            )
        })
        .await
    }

    async fn collections_of_bucket(&self, bucket_id: &str) -> Result<Vec<CollectionRecord>> {
        let bucket = bucket_id.to_owned();
        self.call(move |c| {
            c.prepare_cached(
                "SELECT body FROM collections WHERE bucket_id = ?1 ORDER BY collection_id",
            )
            .and_then(|mut s| s.query_map([bucket], collection_row)?.collect())
            .map_err(backend)
        })
        .await
    }

    async fn update_collection(&self, collection: &CollectionRecord) -> Result<()> {
        let col = collection.clone();
        let (extractors, tiers, schema) = (
            body_text(&col.extractors)?,
            body_text(&col.tiers)?,
            body_text(&col.output_schema)?,
        );
        self.call(move |c| {
            let changed = c
                .execute(
                    "UPDATE collections SET body = json_set(body, '$.description', ?3,
                       '$.extractors', json(?4), '$.tiers', json(?5), '$.output_schema', json(?6),
                       '$.index_signature', ?7, '$.updated_at', ?8)
                     WHERE collection_id = ?1 AND namespace_id = ?2",
                    params![
                        col.collection_id,
                        col.namespace_id,
                        col.description,
                        extractors,
                        tiers,
                        schema,
                        col.index_signature,
                        col.updated_at
                    ],
                )
                .map_err(backend)?;
            if changed == 0 {
                return Err(StoreError::not_found("collection", col.collection_id));
            }
            Ok(())
        })
        .await
    }

    async fn delete_collection(
        &self,
        namespace_id: &str,
        collection_id: &str,
        active: &[BatchStatus],
    ) -> Result<Removal<()>> {
        let (ns, id, active) = (
            namespace_id.to_owned(),
            collection_id.to_owned(),
            active.to_vec(),
        );
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let bucket: String = tx
                .query_row(
                    "SELECT bucket_id FROM collections WHERE collection_id = ?1 AND namespace_id = ?2",
                    params![id, ns],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?
                .ok_or_else(|| StoreError::not_found("collection", id.clone()))?;
            let batches = batches_in(&tx, &bucket, &active)?;
            if !batches.is_empty() {
                return Ok(Removal::Busy { batches, collections: Vec::new() });
            }
            tx.execute("DELETE FROM collections WHERE collection_id = ?1", [&id])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Removal::Removed(()))
        })
        .await
    }

    async fn missing_objects(&self, bucket_id: &str, object_ids: &[String]) -> Result<Vec<String>> {
        let (bucket, ids) = (bucket_id.to_owned(), object_ids.to_vec());
        self.call(move |c| {
            let mut exists = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM objects WHERE bucket_id = ?1 AND object_id = ?2)",
                )
                .map_err(backend)?;
            let mut missing = Vec::new();
            for id in ids {
                let found: bool = exists
                    .query_row(params![bucket, id], |r| r.get(0))
                    .map_err(backend)?;
                if !found && !missing.contains(&id) {
                    missing.push(id);
                }
            }
            Ok(missing)
        })
        .await
    }

    async fn create_batch(
        &self,
        batch: &BatchRecord,
        object_ids: &[String],
    ) -> Result<std::result::Result<BatchRecord, BatchRecord>> {
        let (b, ids) = (batch.clone(), object_ids.to_vec());
        let body = body_text(batch)?;
        self.call(move |c| {
            let tx = immediate(c)?;
            let key = b.idempotency.as_ref().map(|(k, _)| k.clone());
            if let Some(key) = &key {
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT batch_id FROM batches WHERE bucket_id = ?1 AND idempotency_key = ?2",
                        params![b.bucket_id, key],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(id) = existing {
                    return Ok(Err(read_batch(&tx, &id)?));
                }
            }
            tx.execute(
                "INSERT INTO batches (batch_id, namespace_id, bucket_id, task_id, status, idempotency_key, body, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'DRAFT', ?5, ?6, ?7, ?7)",
                params![b.batch_id, b.namespace_id, b.bucket_id, b.task_id, key, body, b.created_at],
            )
            .map_err(|e| write_error(e, "batch", &b.batch_id))?;
            let total = insert_batch_objects(&tx, &b.batch_id, &ids)?;
            tx.execute(
                "UPDATE batches SET total = ?2 WHERE batch_id = ?1",
                params![b.batch_id, total],
            )
            .map_err(backend)?;
            let created = read_batch(&tx, &b.batch_id)?;
            tx.commit().map_err(backend)?;
            Ok(Ok(created))
        })
        .await
    }

    async fn add_batch_objects(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
        object_ids: &[String],
    ) -> Result<Option<BatchRecord>> {
        let (id, ids, from) = (batch_id.to_owned(), object_ids.to_vec(), from.to_vec());
        self.call(move |c| {
            let tx = immediate(c)?;
            if !status_among(&tx, &id, &from)? {
                return Ok(None);
            }
            let added = insert_batch_objects(&tx, &id, &ids)?;
            tx.execute(
                "UPDATE batches SET total = total + ?2, updated_at = ?3 WHERE batch_id = ?1",
                params![id, added, now()],
            )
            .map_err(backend)?;
            commit_batch(tx, &id).map(Some)
        })
        .await
    }

    async fn batch(&self, bucket_id: &str, batch_id: &str) -> Result<Option<BatchRecord>> {
        self.optional(
            format!("SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = ?1 AND bucket_id = ?2"),
            vec![batch_id.to_owned(), bucket_id.to_owned()],
            batch_row,
        )
        .await
    }

    async fn batch_by_idempotency_key(
        &self,
        bucket_id: &str,
        key: &str,
    ) -> Result<Option<BatchRecord>> {
        self.optional(
            format!(
                "SELECT {BATCH_COLUMNS} FROM batches WHERE bucket_id = ?1 AND idempotency_key = ?2"
            ),
            vec![bucket_id.to_owned(), key.to_owned()],
            batch_row,
        )
        .await
    }

    async fn batch_by_task(
        &self,
        namespace_id: &str,
        task_id: &str,
    ) -> Result<Option<BatchRecord>> {
        self.optional(
            format!(
                "SELECT {BATCH_COLUMNS} FROM batches
                     WHERE namespace_id = ?1 AND task_id = ?2 AND status != 'DRAFT'"
            ),
            vec![namespace_id.to_owned(), task_id.to_owned()],
            batch_row,
        )
        .await
    }

    async fn list_batches(
        &self,
        bucket_id: &str,
        status: Option<BatchStatus>,
        page: &PageRequest,
    ) -> Result<Page<BatchRecord>> {
        let (bucket, page) = (bucket_id.to_owned(), page.clone());
        let status = status.map(BatchStatus::as_str);
        self.call(move |c| {
            select_page(
                c,
                &format!(
                    "SELECT {BATCH_COLUMNS} FROM batches WHERE bucket_id = ?1
                     AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR batch_id > ?3)
                     ORDER BY batch_id LIMIT ?4"
                ),
                &[&bucket, &status],
                &page,
                batch_row,
                |b| b.batch_id.clone(),
            )
        })
        .await
    }

    async fn batch_object_records(
        &self,
        batch_id: &str,
        page: &PageRequest,
    ) -> Result<Page<(String, Option<ObjectRecord>)>> {
        let (id, page) = (batch_id.to_owned(), page.clone());
        self.call(move |c| {
            let columns = OBJECT_COLUMNS
                .split(", ")
                .map(|col| format!("o.{col}"))
                .collect::<Vec<_>>()
                .join(", ");
            select_page(
                c,
                &format!(
                    "SELECT bo.object_id, o.object_id IS NOT NULL, {columns} FROM batch_objects bo
                     JOIN batches b ON b.batch_id = bo.batch_id
                     LEFT JOIN objects o ON o.bucket_id = b.bucket_id AND o.object_id = bo.object_id
                     WHERE bo.batch_id = ?1 AND (?2 IS NULL OR bo.object_id > ?2)
                     ORDER BY bo.object_id LIMIT ?3"
                ),
                &[&id],
                &page,
                |r| {
                    let found: bool = r.get(1)?;
                    let record = if found {
                        Some(object_row_at(r, 2)?)
                    } else {
                        None
                    };
                    Ok((r.get::<_, String>(0)?, record))
                },
                |(id, _)| id.clone(),
            )
        })
        .await
    }

    async fn list_batch_objects(
        &self,
        batch_id: &str,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<BatchObject>> {
        let (id, status, page) = (batch_id.to_owned(), status.map(str::to_owned), page.clone());
        self.call(move |c| {
            select_page(
                c,
                "SELECT object_id, status, error FROM batch_objects WHERE batch_id = ?1
                 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR object_id > ?3)
                 ORDER BY object_id LIMIT ?4",
                &[&id, &status],
                &page,
                batch_object_row,
                |o| o.object_id.clone(),
            )
        })
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
        let (id, from) = (batch_id.to_owned(), from.to_vec());
        let collections = serde_json::to_string(collections).map_err(StoreError::backend)?;
        self.call(move |c| {
            let tx = immediate(c)?;
            let batch = read_batch(&tx, &id)?;
            if !from.contains(&batch.status) || batch.total != object_count {
                return Ok(None);
            }
            let now = now();
            tx.execute(
                "UPDATE batches SET status = 'QUEUED', updated_at = ?2,
                 body = json_set(body, '$.collections', json(?3), '$.include_processing_history', json(?4), '$.submitted_at', ?2)
                 WHERE batch_id = ?1",
                params![id, now, collections, include_processing_history.to_string()],
            )
            .map_err(backend)?;
            commit_transition(tx, &id).map(Some)
        })
        .await
    }

    async fn cancel_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        let (id, from) = (batch_id.to_owned(), from.to_vec());
        self.call(move |c| {
            let tx = immediate(c)?;
            if !status_among(&tx, &id, &from)? {
                return Ok(None);
            }
            tx.execute(
                "UPDATE batches SET status = 'CANCELED', lease_owner = NULL, lease_token = NULL,
                 lease_expires_ms = NULL, updated_at = ?2, body = json_set(body, '$.finished_at', ?2)
                 WHERE batch_id = ?1",
                params![id, now()],
            )
            .map_err(backend)?;
            commit_transition(tx, &id).map(Some)
        })
        .await
    }

    async fn unfinished_objects(&self, batch_id: &str) -> Result<u64> {
        let id = batch_id.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT count(*) FROM batch_objects WHERE batch_id = ?1 AND status != 'completed'",
                [id],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn retry_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        let (id, from) = (batch_id.to_owned(), from.to_vec());
        self.call(move |c| {
            let tx = immediate(c)?;
            if !status_among(&tx, &id, &from)? {
                return Ok(None);
            }
            tx.execute(
                "UPDATE batch_objects SET status = 'pending', error = NULL, done = 0
                 WHERE batch_id = ?1 AND status != 'completed'",
                [&id],
            )
            .map_err(backend)?;
            tx.execute(
                "UPDATE batches SET status = 'QUEUED', failed = 0, attempts = 0, error_summary = NULL,
                 live = NULL, lease_owner = NULL, lease_token = NULL, lease_expires_ms = NULL, updated_at = ?2,
                 processed = (SELECT COUNT(*) FROM batch_objects WHERE batch_id = ?1 AND status = 'completed'),
                 body = json_set(body, '$.error_message', NULL, '$.finished_at', NULL, '$.submitted_at', ?2)
                 WHERE batch_id = ?1",
                params![id, now()],
            )
            .map_err(backend)?;
            commit_transition(tx, &id).map(Some)
        })
        .await
    }

    async fn delete_batch(
        &self,
        batch_id: &str,
        from: &[BatchStatus],
    ) -> Result<Option<Vec<String>>> {
        let (id, from) = (batch_id.to_owned(), from.to_vec());
        self.call(move |c| {
            let tx = immediate(c)?;
            if !status_among(&tx, &id, &from)? {
                return Ok(None);
            }
            let keys = batch_artifacts(&tx, "SELECT body FROM batches WHERE batch_id = ?1", &id)?;
            tx.execute("DELETE FROM batch_objects WHERE batch_id = ?1", [&id])
                .map_err(backend)?;
            tx.execute("DELETE FROM batches WHERE batch_id = ?1", [&id])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Some(keys))
        })
        .await
    }

    async fn claim_batch(
        &self,
        owner: &str,
        lease_ms: i64,
        max_attempts: u32,
    ) -> Result<Option<Claim>> {
        let owner = owner.to_owned();
        self.call(move |c| {
            let tx = immediate(c)?;
            let now_ms = now_ms();
            let found: Option<(String, u32, String)> = tx
                .query_row(
                    "SELECT batch_id, attempts, status FROM batches
                     WHERE status = 'QUEUED' OR (status = 'PROCESSING' AND lease_expires_ms < ?1)
                     ORDER BY batch_id LIMIT 1",
                    [now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((id, attempts, status)) = found else {
                return Ok(None);
            };
            let now = now();
            if status == "PROCESSING" && attempts >= max_attempts {
                let previous: Option<String> = tx
                    .query_row("SELECT lease_owner FROM batches WHERE batch_id = ?1", [&id], |r| r.get(0))
                    .map_err(backend)?;
                let reason = crate::batches::lifecycle::workers_lost(attempts, previous.as_deref());
                tx.execute(
                    "UPDATE batches SET status = 'FAILED', lease_owner = NULL, lease_token = NULL,
                     lease_expires_ms = NULL, updated_at = ?2,
                     body = json_set(body, '$.error_message', ?3, '$.finished_at', ?2)
                     WHERE batch_id = ?1",
                    params![id, now, reason],
                )
                .map_err(backend)?;
                let batch = commit_transition(tx, &id)?;
                return Ok(Some(Claim::Exhausted(Box::new(batch))));
            }
            let token = crate::keys::random_token();
            tx.execute(
                "UPDATE batches SET status = 'PROCESSING', lease_owner = ?2, lease_token = ?3,
                 lease_expires_ms = ?4, attempts = attempts + 1, updated_at = ?5,
                 body = json_set(body, '$.started_at', coalesce(json_extract(body, '$.started_at'), ?5))
                 WHERE batch_id = ?1",
                params![id, owner, token, now_ms + lease_ms, now],
            )
            .map_err(backend)?;
            // A takeover of a batch already PROCESSING is no news.
            let batch = if status == "QUEUED" {
                commit_transition(tx, &id)?
            } else {
                commit_batch(tx, &id)?
            };
            let lease = Lease {
                batch_id: id,
                owner,
                token,
            };
            Ok(Some(Claim::Batch(Box::new(batch), lease)))
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease, lease_ms: i64, live: &LiveProgress) -> Result<bool> {
        let lease = lease.clone();
        let live = serde_json::to_string(live).map_err(StoreError::backend)?;
        self.call(move |c| {
            let changed = c
                .execute(
                    "UPDATE batches SET lease_expires_ms = ?3, live = ?4, updated_at = ?5
                     WHERE batch_id = ?1 AND lease_token = ?2 AND status = 'PROCESSING'",
                    params![
                        lease.batch_id,
                        lease.token,
                        now_ms() + lease_ms,
                        live,
                        now()
                    ],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release_batch(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        self.call(move |c| {
            c.execute(
                "UPDATE batches SET status = 'QUEUED', lease_owner = NULL, lease_token = NULL,
                 lease_expires_ms = NULL, live = NULL, attempts = max(attempts - 1, 0), updated_at = ?3
                 WHERE batch_id = ?1 AND lease_token = ?2 AND status = 'PROCESSING'",
                params![lease.batch_id, lease.token, now()],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn pending_objects(&self, batch_id: &str, stage: u32) -> Result<Vec<String>> {
        let id = batch_id.to_owned();
        self.call(move |c| {
            c.prepare_cached(
                "SELECT object_id FROM batch_objects
                 WHERE batch_id = ?1 AND status = 'pending' AND done = ?2 ORDER BY object_id",
            )
            .and_then(|mut s| s.query_map(params![id, stage], |r| r.get(0))?.collect())
            .map_err(backend)
        })
        .await
    }

    async fn record_chunk(&self, lease: &Lease, chunk: &ChunkOutcome) -> Result<(u64, u64)> {
        let (lease, chunk) = (lease.clone(), chunk.clone());
        let summary = serde_json::to_string(&chunk.error_summary).map_err(StoreError::backend)?;
        self.call(move |c| {
            let tx = immediate(c)?;
            fence(&tx, &lease)?;
            let (mut processed, mut failed) = (0u64, 0u64);
            {
                let mut current = tx
                    .prepare_cached(
                        "SELECT error FROM batch_objects
                         WHERE batch_id = ?1 AND object_id = ?2 AND status = 'pending' AND done = ?3",
                    )
                    .map_err(backend)?;
                let mut update = tx
                    .prepare_cached(
                        "UPDATE batch_objects SET done = done + 1, status = ?3, error = ?4
                         WHERE batch_id = ?1 AND object_id = ?2",
                    )
                    .map_err(backend)?;
                for (object_id, error) in &chunk.outcomes {
                    let Some(earlier) = current
                        .query_row(params![lease.batch_id, object_id, chunk.stage], |r| {
                            r.get::<_, Option<String>>(0)
                        })
                        .optional()
                        .map_err(backend)?
                    else {
                        // Already recorded by an earlier attempt.
                        continue;
                    };
                    let (error, status) = outcome(earlier, error.as_deref(), chunk.last);
                    if chunk.last {
                        processed += 1;
                        failed += u64::from(error.is_some());
                    }
                    update
                        .execute(params![lease.batch_id, object_id, status, error])
                        .map_err(backend)?;
                }
            }
            tx.execute(
                "UPDATE batches SET processed = processed + ?2, failed = failed + ?3, error_summary = ?4, updated_at = ?5
                 WHERE batch_id = ?1",
                params![lease.batch_id, processed, failed, summary, now()],
            )
            .map_err(backend)?;
            let counts = tx
                .query_row(
                    "SELECT processed, failed FROM batches WHERE batch_id = ?1",
                    [&lease.batch_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(counts)
        })
        .await
    }

    async fn finish_collection(&self, lease: &Lease, pinned: &PinnedCollection) -> Result<()> {
        let (lease, pinned) = (lease.clone(), pinned.clone());
        let schema = serde_json::to_string(&pinned.output_schema).map_err(StoreError::backend)?;
        let tiers = serde_json::to_string(&pinned.tiers).map_err(StoreError::backend)?;
        self.call(move |c| {
            let tx = immediate(c)?;
            fence(&tx, &lease)?;
            let current = tx
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
            tx.execute(
                "UPDATE collections SET body = json_set(body,
                   '$.index_signature', ?2, '$.output_schema', json(?3), '$.tiers', json(?4), '$.updated_at', ?5)
                 WHERE collection_id = ?1",
                params![pinned.collection_id, pinned.index_signature, schema, tiers, now()],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn finish_batch(
        &self,
        lease: &Lease,
        status: BatchStatus,
        error_message: Option<&str>,
    ) -> Result<()> {
        let (lease, message) = (lease.clone(), error_message.map(str::to_owned));
        self.call(move |c| {
            let tx = immediate(c)?;
            fence(&tx, &lease)?;
            tx.execute(
                "UPDATE batches SET status = ?2, lease_owner = NULL, lease_token = NULL,
                 lease_expires_ms = NULL, updated_at = ?3,
                 body = json_set(body, '$.error_message', ?4, '$.finished_at', ?3)
                 WHERE batch_id = ?1",
                params![lease.batch_id, status.as_str(), now(), message],
            )
            .map_err(backend)?;
            commit_transition(tx, &lease.batch_id).map(drop)
        })
        .await
    }
}

#[async_trait]
impl DocumentSink for SqliteStore {
    async fn upsert_documents(
        &self,
        namespace_id: &str,
        collection_id: &str,
        documents: &[DocumentRecord],
        lease: Option<&Lease>,
    ) -> Result<u64> {
        let (namespace, collection) = (namespace_id.to_owned(), collection_id.to_owned());
        let lease = lease.cloned();
        let rows = documents
            .iter()
            .map(|d| Ok((d.clone(), body_text(d)?)))
            .collect::<Result<Vec<_>>>()?;
        let event = Event::documents_written(namespace_id, collection_id, documents);
        self.call(move |c| {
            let tx = immediate(c)?;
            if let Some(lease) = &lease {
                fence(&tx, lease)?;
            }
            let mut new_documents = 0u64;
            {
                let mut exists = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM documents WHERE document_id = ?1)")
                    .map_err(backend)?;
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO documents (document_id, collection_id, namespace_id, object_id, batch_id, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (document_id) DO UPDATE SET batch_id = excluded.batch_id,
                         body = json_set(excluded.body, '$.created_at', json_extract(documents.body, '$.created_at'))",
                    )
                    .map_err(backend)?;
                for (doc, body) in &rows {
                    if doc.collection_id != collection {
                        return Err(StoreError::Conflict(format!(
                            "document `{}` belongs to collection `{}`, not `{collection}`",
                            doc.document_id, doc.collection_id
                        )));
                    }
                    let existed: bool = exists
                        .query_row([&doc.document_id], |r| r.get(0))
                        .map_err(backend)?;
                    new_documents += u64::from(!existed);
                    upsert
                        .execute(params![
                            doc.document_id,
                            doc.collection_id,
                            namespace,
                            doc.object_id,
                            doc.batch_id,
                            body
                        ])
                        .map_err(backend)?;
                }
            }
            // The count moves with the documents, in the same transaction.
            let counted = tx
                .execute(
                    "UPDATE collections SET body = json_set(body, '$.document_count',
                     json_extract(body, '$.document_count') + ?2) WHERE collection_id = ?1",
                    params![collection, new_documents],
                )
                .map_err(backend)?;
            if counted == 0 {
                return Err(StoreError::not_found("collection", collection));
            }
            webhooks::emit(&tx, event)?;
            tx.commit().map_err(backend)?;
            Ok(new_documents)
        })
        .await
    }

    async fn list_documents(
        &self,
        collection_id: &str,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<DocumentRecord>> {
        let (id, filter, page) = (collection_id.to_owned(), filter.clone(), page.clone());
        self.call(move |c| {
            select_page(
                c,
                "SELECT body FROM documents WHERE collection_id = ?1
                 AND (?2 IS NULL OR batch_id = ?2) AND (?3 IS NULL OR object_id = ?3)
                 AND (?4 IS NULL OR document_id > ?4) ORDER BY document_id LIMIT ?5",
                &[&id, &filter.batch_id, &filter.object_id],
                &page,
                document_row,
                |d| d.document_id.clone(),
            )
        })
        .await
    }

    async fn document(
        &self,
        collection_id: &str,
        document_id: &str,
    ) -> Result<Option<DocumentRecord>> {
        self.optional(
            "SELECT body FROM documents WHERE collection_id = ?1 AND document_id = ?2".to_owned(),
            vec![collection_id.to_owned(), document_id.to_owned()],
            document_row,
        )
        .await
    }

    async fn delete_documents(&self, collection_id: &str) -> Result<()> {
        let id = collection_id.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM documents WHERE collection_id = ?1", [id])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
}
