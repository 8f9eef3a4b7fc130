//! The embedded store's schema: every change since the first, applied in
//! order at open.

use rusqlite::Connection;

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
    r#"
CREATE TABLE shards (
    batch_id TEXT NOT NULL REFERENCES batches (batch_id),
    shard_index INTEGER NOT NULL,
    namespace_id TEXT NOT NULL,
    status TEXT NOT NULL,
    objects INTEGER NOT NULL,
    row_start INTEGER NOT NULL,
    first_object_id TEXT NOT NULL,
    last_object_id TEXT NOT NULL,
    processed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    error_summary TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_ms INTEGER,
    live TEXT,
    error_message TEXT,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    PRIMARY KEY (batch_id, shard_index)
) WITHOUT ROWID;
CREATE INDEX shards_by_status ON shards (status, batch_id, shard_index);
CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL
);
-- Batches submitted before shards existed become one shard each; one
-- that was running is queued again (its worker's lease is gone).
INSERT INTO shards (batch_id, shard_index, namespace_id, status, objects, row_start,
    first_object_id, last_object_id, processed, failed, error_summary, attempts,
    error_message, updated_at, started_at, finished_at)
SELECT b.batch_id, 0, b.namespace_id,
    CASE b.status WHEN 'PROCESSING' THEN 'QUEUED' ELSE b.status END,
    b.total, 0,
    coalesce((SELECT min(object_id) FROM batch_objects o WHERE o.batch_id = b.batch_id), ''),
    coalesce((SELECT max(object_id) FROM batch_objects o WHERE o.batch_id = b.batch_id), ''),
    b.processed, b.failed, b.error_summary, b.attempts,
    json_extract(b.body, '$.error_message'), coalesce(b.updated_at, b.created_at),
    json_extract(b.body, '$.started_at'), json_extract(b.body, '$.finished_at')
FROM batches b WHERE b.status != 'DRAFT';
UPDATE batches SET status = 'QUEUED' WHERE status = 'PROCESSING';
"#,
];

/// Brings the schema of `conn` up to date, in one transaction. An
/// up-to-date database is only read: opening it never waits for another
/// process's write.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if applied >= MIGRATIONS.len() {
        return Ok(());
    }
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the changes up to the `version`th, in one transaction.
fn migrate_to(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().take(version).skip(applied) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        BatchId, BatchRecord, BatchStatus, BatchStore as _, ShardStatus, SqliteStore,
    };

    /// Writes a batch as the version before shards did: its counters and
    /// lease on the batch row, its objects in `batch_objects`.
    fn older_batch(
        conn: &Connection,
        id: &str,
        status: BatchStatus,
        objects: &[(&str, &str)],
    ) -> rusqlite::Result<()> {
        let mut batch = BatchRecord::draft(&"ns_1".into(), &"bkt_1".into(), None, None);
        batch.batch_id = id.into();
        batch.task_id = format!("task_{id}").into();
        batch.status = status;
        batch.started_at = Some("2026-01-01T00:00:01.000Z".parse().expect("time"));
        batch.error_message = (status == BatchStatus::Failed).then(|| "workers kept dying".into());
        let body = serde_json::to_string(&batch).expect("body");
        let failed = objects.iter().filter(|(_, s)| *s == "failed").count();
        let processed = objects.iter().filter(|(_, s)| *s != "pending").count();
        conn.execute(
            "INSERT INTO batches (batch_id, namespace_id, bucket_id, task_id, status, body,
                 lease_owner, lease_token, lease_expires_ms, created_at, total, processed,
                 failed, attempts, error_summary, updated_at)
             VALUES (?1, 'ns_1', 'bkt_1', ?2, ?3, ?4, 'gone-worker', 'tok', 1, ?5, ?6, ?7, ?8,
                 2, '{\"extractor\":1}', ?5)",
            rusqlite::params![
                id,
                batch.task_id,
                status.as_str(),
                body,
                batch.created_at,
                objects.len() as i64,
                processed as i64,
                failed as i64,
            ],
        )?;
        for (object, state) in objects {
            conn.execute(
                "INSERT INTO batch_objects (batch_id, object_id, status) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, object, state],
            )?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn batches_from_before_shards_get_one_shard_each() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("strata.db");
        {
            let mut conn = Connection::open(&path).expect("open");
            migrate_to(&mut conn, MIGRATIONS.len() - 1).expect("older schema");
            conn.execute_batch(
                "INSERT INTO namespaces VALUES ('ns_1', 'default', '2026-01-01T00:00:00.000Z');
                 INSERT INTO buckets VALUES ('bkt_1', 'ns_1', 'b', NULL,
                     '2026-01-01T00:00:00.000Z');",
            )
            .expect("namespace and bucket");
            let objects = [("obj_a", "done"), ("obj_b", "failed"), ("obj_c", "pending")];
            older_batch(&conn, "btch_run", BatchStatus::Processing, &objects).expect("running");
            older_batch(&conn, "btch_failed", BatchStatus::Failed, &objects[..2]).expect("failed");
            older_batch(&conn, "btch_draft", BatchStatus::Draft, &[]).expect("draft");
        }
        let store = SqliteStore::open(&path).expect("migrate");
        // Opening again changes nothing.
        drop(SqliteStore::open(&path).expect("open again"));
        let ids = ["btch_draft", "btch_failed", "btch_run"].map(BatchId::from);
        let shards = store.shards(&ids).await.expect("shards");
        let summary: Vec<_> = shards
            .iter()
            .map(|s| {
                (
                    s.batch_id.as_str(),
                    s.shard_index,
                    s.status,
                    s.objects,
                    (s.processed, s.failed, s.attempts),
                    (s.first_object_id.as_str(), s.last_object_id.as_str()),
                    s.error_message.as_deref(),
                    s.lease.is_none(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "btch_failed",
                    0,
                    ShardStatus::Failed,
                    2,
                    (2, 1, 2),
                    ("obj_a", "obj_b"),
                    Some("workers kept dying"),
                    true
                ),
                (
                    "btch_run",
                    0,
                    ShardStatus::Queued,
                    3,
                    (2, 1, 2),
                    ("obj_a", "obj_c"),
                    None,
                    true
                ),
            ]
        );
        let running = crate::batches::read(&store, &"bkt_1".into(), &"btch_run".into()).await;
        let running = running.expect("read").expect("the running batch");
        assert_eq!(running.status, BatchStatus::Queued, "its worker is gone");
        assert_eq!(
            (running.total, running.processed, running.failed),
            (3, 2, 1)
        );
        assert_eq!(running.error_summary.get("extractor"), Some(&1));
        let draft = store
            .batch_by_id(&BatchId::from("btch_draft"))
            .await
            .expect("read");
        assert_eq!(draft.expect("the draft").status, BatchStatus::Draft);
        // The re-queued shard resumes at its pending object.
        let pending = store
            .pending_objects(&shards[1], 0)
            .await
            .expect("pending objects");
        assert_eq!(pending, ["obj_c"]);
    }
}
