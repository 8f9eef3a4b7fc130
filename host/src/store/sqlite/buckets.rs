//! Buckets and object records on SQLite.

use super::*;
use crate::store::{BucketId, NamespaceId, ObjectId};

#[async_trait]
impl BucketStore for SqliteStore {
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

    async fn bucket(&self, namespace_id: &NamespaceId, id_or_name: &str) -> Result<Option<Bucket>> {
        self.optional(
            "SELECT bucket_id, namespace_id, bucket_name, description, created_at FROM buckets
                 WHERE namespace_id = ?1 AND (bucket_id = ?2 OR bucket_name = ?2)
                 ORDER BY bucket_id = ?2 DESC LIMIT 1"
                .to_owned(),
            vec![namespace_id.to_string(), id_or_name.to_owned()],
            bucket_row,
        )
        .await
    }

    async fn list_buckets(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<Bucket>> {
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
                |b| b.bucket_id.to_string(),
            )
        })
        .await
    }

    async fn delete_bucket(
        &self,
        namespace_id: &NamespaceId,
        bucket_id: &BucketId,
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
                "DELETE FROM shards WHERE batch_id IN (SELECT batch_id FROM batches WHERE bucket_id = ?1)",
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

    async fn object(
        &self,
        bucket_id: &BucketId,
        object_id: &ObjectId,
    ) -> Result<Option<ObjectRecord>> {
        self.optional(
            format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket_id = ?1 AND object_id = ?2"),
            vec![bucket_id.to_string(), object_id.to_string()],
            object_row,
        )
        .await
    }

    async fn list_objects(
        &self,
        bucket_id: &BucketId,
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
                |o| o.object_id.to_string(),
            )
        })
        .await
    }

    async fn delete_object(&self, bucket_id: &BucketId, object_id: &ObjectId) -> Result<String> {
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

    async fn missing_objects(
        &self,
        bucket_id: &BucketId,
        object_ids: &[ObjectId],
    ) -> Result<Vec<ObjectId>> {
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
}
