//! Data written by earlier versions, brought up to date at connect.

use super::*;
use crate::store::ObjectId;

impl MongoStore {
    /// Whether the pass `name` ran to its end before.
    pub(super) async fn migrated(&self, name: &str) -> Result<bool> {
        Ok(self
            .coll("migrations")
            .find_one(doc! { "_id": name })
            .await
            .map_err(backend)?
            .is_some())
    }

    /// Records that the pass `name` ran to its end.
    pub(super) async fn mark_migrated(&self, name: &str) -> Result<()> {
        self.coll("migrations")
            .update_one(doc! { "_id": name }, doc! { "$set": { "at": now() } })
            .upsert(true)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Gives every batch submitted before shards existed one shard, with
    /// the counters the batch kept then (a running one is queued again:
    /// its worker's lease is gone). Idempotent: a batch with shards is
    /// left alone, the shard's id is fixed, and once done the pass is
    /// recorded in `migrations` and never runs again.
    pub(super) async fn shard_older_batches(&self) -> Result<()> {
        const DONE: &str = "batches-have-shards";
        if self.migrated(DONE).await? {
            return Ok(());
        }
        let older: Vec<Document> = self
            .coll("batches")
            .find(doc! { "status": { "$ne": "DRAFT" } })
            .projection(doc! {
                "namespace_id": 1, "status": 1, "total": 1, "processed": 1, "failed": 1,
                "attempts": 1, "error_summary": 1, "error_message": 1, "started_at": 1,
                "finished_at": 1, "updated_at": 1,
            })
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        for batch in older {
            let id = batch.get_str("_id").map_err(backend)?;
            if self.count("shards", doc! { "batch_id": id }).await? > 0 {
                continue;
            }
            let ids: Vec<ObjectId> = self
                .ids("batch_objects", doc! { "batch_id": id }, "object_id")
                .await?;
            let number = |field: &str| match batch.get(field) {
                Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
                Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            let text = |field: &str| batch.get_str(field).ok().map(str::to_owned);
            let time = |field: &str| batch.get_str(field).ok().and_then(|t| t.parse().ok());
            let status = match batch.get_str("status").map_err(backend)? {
                "PROCESSING" | "QUEUED" => ShardStatus::Queued,
                "COMPLETED" => ShardStatus::Completed,
                "FAILED" => ShardStatus::Failed,
                _ => ShardStatus::Canceled,
            };
            let shard = ShardRecord {
                batch_id: id.into(),
                shard_index: 0,
                namespace_id: text("namespace_id").unwrap_or_default().into(),
                status,
                objects: number("total"),
                row_start: 0,
                first_object_id: ids.first().cloned().unwrap_or_default(),
                last_object_id: ids.last().cloned().unwrap_or_default(),
                processed: number("processed"),
                failed: number("failed"),
                error_summary: batch
                    .get_document("error_summary")
                    .ok()
                    .and_then(|d| bson::from_document(d.clone()).ok())
                    .unwrap_or_default(),
                attempts: u32::try_from(number("attempts")).unwrap_or(u32::MAX),
                lease: None,
                worker: None,
                live: None,
                error_message: text("error_message"),
                updated_at: time("updated_at").unwrap_or_else(now),
                started_at: time("started_at"),
                finished_at: time("finished_at"),
            };
            // The shard and the batch's return to the queue in one
            // transaction: a worker never claims the shard of a batch
            // another process then sends back to the queue.
            let record = shard_record(&shard)?;
            transaction!(self, s => {
                if !self.find_in(s, "shards", doc! { "batch_id": id }).await?.is_empty() {
                    // Another process did it first.
                    return Ok(());
                }
                self.coll("shards")
                    .insert_one(record.clone())
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
                self.coll("batches")
                    .update_one(
                        doc! { "_id": id, "status": "PROCESSING" },
                        doc! { "$set": { "status": "QUEUED" } },
                    )
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
                Ok(())
            })?;
        }
        self.mark_migrated(DONE).await?;
        Ok(())
    }
}
