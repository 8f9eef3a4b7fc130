//! The embedded store: one SQLite database in WAL mode.
//!
//! Every call runs on tokio's blocking pool against one connection; writes
//! that must be atomic run in one `BEGIN IMMEDIATE` transaction, so several
//! processes may share the database file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    ApiKey, Bucket, CollectionRecord, Namespace, ObjectRecord, Page, PageRequest, Result, Store,
    StoreError,
};

/// Schema changes, applied in order; `PRAGMA user_version` counts the
/// applied ones.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

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
fn write_error(e: rusqlite::Error, conflict: impl FnOnce() -> String) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict(conflict())
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
    })
}

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
    Ok(ObjectRecord {
        object_id: r.get(0)?,
        bucket_id: r.get(1)?,
        namespace_id: r.get(2)?,
        key: r.get(3)?,
        mime_type: r.get(4)?,
        size_bytes: r.get(5)?,
        sha256: r.get(6)?,
        metadata: json_column(r.get(7)?)?,
        blob_key: r.get(8)?,
        created_at: r.get(9)?,
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

/// Batches of `bucket_id` that are queued or processing.
fn active_batches(c: &Connection, bucket_id: &str) -> Result<Vec<String>> {
    strings(
        c,
        "SELECT batch_id FROM batches WHERE bucket_id = ?1 AND status IN ('QUEUED', 'PROCESSING') ORDER BY batch_id",
        bucket_id,
    )
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
            .map_err(|e| write_error(e, || format!("namespace `{}` already exists", ns.name)))?;
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
                "INSERT INTO api_keys (key_id, secret_hash, name, admin, namespace_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.key_id,
                    hash,
                    key.name,
                    key.admin,
                    key.namespace_id,
                    key.created_at
                ],
            )
            .map_err(|e| write_error(e, || "this key already exists".to_owned()))?;
            Ok(())
        })
        .await
    }

    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        let hash = secret_hash.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT key_id, name, admin, namespace_id, created_at FROM api_keys
                 WHERE secret_hash = ?1",
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

    async fn create_bucket(&self, bucket: &Bucket) -> Result<()> {
        let b = bucket.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO buckets (bucket_id, namespace_id, bucket_name, description, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![b.bucket_id, b.namespace_id, b.bucket_name, b.description, b.created_at],
            )
            .map_err(|e| write_error(e, || format!("bucket `{}` already exists", b.bucket_name)))?;
            Ok(())
        })
        .await
    }

    async fn bucket(&self, namespace_id: &str, id_or_name: &str) -> Result<Option<Bucket>> {
        let (ns, id) = (namespace_id.to_owned(), id_or_name.to_owned());
        self.call(move |c| {
            c.query_row(
                "SELECT bucket_id, namespace_id, bucket_name, description, created_at FROM buckets
                 WHERE namespace_id = ?1 AND (bucket_id = ?2 OR bucket_name = ?2)
                 ORDER BY bucket_id = ?2 DESC LIMIT 1",
                params![ns, id],
                bucket_row,
            )
            .optional()
            .map_err(backend)
        })
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

    async fn delete_bucket(&self, namespace_id: &str, bucket_id: &str) -> Result<Vec<String>> {
        let (ns, id) = (namespace_id.to_owned(), bucket_id.to_owned());
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
            let active = active_batches(&tx, &id)?;
            if !active.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "bucket `{id}` has batches queued or processing: {}",
                    active.join(", ")
                )));
            }
            let collections = strings(
                &tx,
                "SELECT collection_name FROM collections WHERE bucket_id = ?1 ORDER BY collection_name",
                &id,
            )?;
            if !collections.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "bucket `{id}` is the source of collections {}; delete them first",
                    collections.join(", ")
                )));
            }
            let blobs = strings(&tx, "SELECT blob_key FROM objects WHERE bucket_id = ?1", &id)?;
            for sql in [
                "DELETE FROM batch_objects WHERE batch_id IN (SELECT batch_id FROM batches WHERE bucket_id = ?1)",
                "DELETE FROM batches WHERE bucket_id = ?1",
                "DELETE FROM objects WHERE bucket_id = ?1",
                "DELETE FROM buckets WHERE bucket_id = ?1",
            ] {
                tx.execute(sql, [&id]).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(blobs)
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
                write_error(e, || {
                    format!("object `{}` already exists in bucket `{}`", o.object_id, o.bucket_id)
                })
            })?;
            Ok(())
        })
        .await
    }

    async fn object(&self, bucket_id: &str, object_id: &str) -> Result<Option<ObjectRecord>> {
        let (b, o) = (bucket_id.to_owned(), object_id.to_owned());
        self.call(move |c| {
            c.query_row(
                &format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket_id = ?1 AND object_id = ?2"
                ),
                params![b, o],
                object_row,
            )
            .optional()
            .map_err(backend)
        })
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
            .map_err(|e| write_error(e, || format!("collection `{}` already exists", col.collection_name)))?;
            Ok(())
        })
        .await
    }

    async fn collection(
        &self,
        namespace_id: &str,
        id_or_name: &str,
    ) -> Result<Option<CollectionRecord>> {
        let (ns, id) = (namespace_id.to_owned(), id_or_name.to_owned());
        self.call(move |c| {
            c.query_row(
                "SELECT body FROM collections WHERE namespace_id = ?1
                 AND (collection_id = ?2 OR collection_name = ?2)
                 ORDER BY collection_id = ?2 DESC LIMIT 1",
                params![ns, id],
                collection_row,
            )
            .optional()
            .map_err(backend)
        })
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

    async fn delete_collection(&self, namespace_id: &str, collection_id: &str) -> Result<()> {
        let (ns, id) = (namespace_id.to_owned(), collection_id.to_owned());
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
            let active = active_batches(&tx, &bucket)?;
            if !active.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "collection `{id}` has batches queued or processing: {}",
                    active.join(", ")
                )));
            }
            tx.execute("DELETE FROM documents WHERE collection_id = ?1", [&id])
                .map_err(backend)?;
            tx.execute("DELETE FROM collections WHERE collection_id = ?1", [&id])
                .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }
}
