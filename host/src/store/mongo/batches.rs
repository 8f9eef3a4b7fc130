//! Batches, their objects' outcomes, claims and leases on MongoDB: conditional
//! writes and queries; what may happen is decided in `crate::batches`.

use super::*;
use crate::store::{BatchId, BucketId, NamespaceId, ObjectId, TaskId};

#[async_trait]
impl BatchStore for MongoStore {
    async fn count_batches(
        &self,
        namespace_id: &NamespaceId,
        statuses: &[BatchStatus],
    ) -> Result<u64> {
        self.count(
            "batches",
            doc! { "namespace_id": namespace_id, "status": status_in(statuses) },
        )
        .await
    }

    async fn create_batch(
        &self,
        batch: &BatchRecord,
        object_ids: &[ObjectId],
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
        batch_id: &BatchId,
        from: &[BatchStatus],
        object_ids: &[ObjectId],
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

    async fn batch(&self, bucket_id: &BucketId, batch_id: &BatchId) -> Result<Option<BatchRecord>> {
        self.one("batches", doc! { "_id": batch_id, "bucket_id": bucket_id })
            .await
    }

    async fn batch_by_id(&self, batch_id: &BatchId) -> Result<Option<BatchRecord>> {
        self.one("batches", doc! { "_id": batch_id }).await
    }

    async fn batch_by_idempotency_key(
        &self,
        bucket_id: &BucketId,
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
        namespace_id: &NamespaceId,
        task_id: &TaskId,
    ) -> Result<Option<BatchRecord>> {
        self.one(
            "batches",
            doc! { "namespace_id": namespace_id, "task_id": task_id, "status": { "$ne": "DRAFT" } },
        )
        .await
    }

    async fn list_batches(
        &self,
        bucket_id: &BucketId,
        status: Option<BatchStatus>,
        page: &PageRequest,
    ) -> Result<Page<BatchRecord>> {
        let mut filter = doc! { "bucket_id": bucket_id };
        if let Some(status) = status {
            filter.insert("status", status.as_str());
        }
        let key = |b: &BatchRecord| b.batch_id.to_string();
        self.page("batches", filter, ("batch_id", key), page).await
    }

    async fn batch_object_records(
        &self,
        batch_id: &BatchId,
        page: &PageRequest,
    ) -> Result<Page<(ObjectId, Option<ObjectRecord>)>> {
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
        batch_id: &BatchId,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<BatchObject>> {
        let mut filter = doc! { "batch_id": batch_id };
        if let Some(status) = status {
            filter.insert("status", status);
        }
        let key = |o: &BatchObject| o.object_id.to_string();
        self.page("batch_objects", filter, ("object_id", key), page)
            .await
    }

    async fn submit_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        pipelines: &Pipelines,
        object_count: u64,
        shards: &[ShardRecord],
    ) -> Result<Option<BatchRecord>> {
        let pinned = bson::to_bson(&pipelines.collections).map_err(backend)?;
        let history = pipelines.include_processing_history;
        let shard_docs = shards
            .iter()
            .map(shard_record)
            .collect::<Result<Vec<_>>>()?;
        let now = now();
        let filter =
            doc! { "_id": batch_id, "status": status_in(from), "total": object_count as i64 };
        transaction!(self, s => {
            let mut set = doc! {
                "status": "QUEUED", "collections": pinned.clone(),
                "submitted_at": &now, "updated_at": &now,
            };
            match &self.serial {
                Some(standin) => {
                    standin
                        .set_boolean(self, s, filter.clone(), "include_processing_history", history)
                        .await?
                }
                None => {
                    set.insert("include_processing_history", history);
                }
            }
            let queued = self
                .transition(s, filter.clone(), doc! { "$set": set })
                .await?;
            if queued.is_some() && !shard_docs.is_empty() {
                self.coll("shards")
                    .insert_many(shard_docs.clone())
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
            }
            Ok(queued)
        })
    }

    async fn cancel_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        let now = now();
        let set = doc! { "status": "CANCELED", "updated_at": &now, "finished_at": &now };
        transaction!(self, s => {
            let canceled = self.transition(
                s,
                doc! { "_id": batch_id, "status": status_in(from) },
                doc! { "$set": set.clone() },
            )
            .await?;
            if canceled.is_some() {
                self.end_shards(s, batch_id, ShardStatus::Canceled, &now).await?;
            }
            Ok(canceled)
        })
    }

    async fn unfinished_objects(&self, batch_id: &BatchId) -> Result<u64> {
        self.count(
            "batch_objects",
            doc! { "batch_id": batch_id, "status": { "$ne": "completed" } },
        )
        .await
    }

    async fn retry_batch(
        &self,
        batch_id: &BatchId,
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
            let now = now();
            let set = doc! {
                "status": "QUEUED", "error_message": Bson::Null, "finished_at": Bson::Null,
                "submitted_at": &now, "updated_at": &now,
            };
            self.coll("batches")
                .update_one(doc! { "_id": batch_id }, doc! { "$set": set })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            // Each shard recounted from its objects: queued again when
            // some did not complete, completed otherwise.
            for shard in self.find_in(s, "shards", doc! { "batch_id": batch_id }).await? {
                let shard: ShardRecord = from_doc(shard)?;
                let completed = self
                    .coll("batch_objects")
                    .count_documents(doc! {
                        "batch_id": batch_id, "status": "completed",
                        "object_id": { "$gte": &shard.first_object_id, "$lte": &shard.last_object_id },
                    })
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
                let done = completed >= shard.objects;
                let status = if done { ShardStatus::Completed } else { ShardStatus::Queued };
                let finished = if done { Bson::from(now) } else { Bson::Null };
                self.coll("shards")
                    .update_one(
                        doc! { "_id": shard_key(batch_id, shard.shard_index) },
                        doc! { "$set": {
                            "status": status.as_str(), "processed": completed as i64, "failed": 0_i64,
                            "error_summary": {}, "attempts": 0_i32, "lease": Bson::Null, "worker": Bson::Null,
                            "lease_token": Bson::Null, "live": Bson::Null, "error_message": Bson::Null,
                            "finished_at": finished, "updated_at": &now,
                        } },
                    )
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
            }
            self.transition_in(s, batch_id).await.map(Some)
        })
    }

    async fn delete_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<Vec<String>>> {
        transaction!(self, s => {
            let batch = self.batch_in(s, batch_id).await?;
            if !from.contains(&batch.status) {
                return Ok(None);
            }
            for coll in ["batch_objects", "shards"] {
                self.coll(coll)
                    .delete_many(doc! { "batch_id": batch_id })
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
            }
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

    async fn pending_objects(&self, shard: &ShardRecord, stage: u32) -> Result<Vec<ObjectId>> {
        self.ids(
            "batch_objects",
            doc! {
                "batch_id": &shard.batch_id, "status": "pending", "done": stage as i64,
                "object_id": { "$gte": &shard.first_object_id, "$lte": &shard.last_object_id },
            },
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
            let shard = self.fence(s, lease).await?;
            let (mut processed, mut failed) = (0i64, 0i64);
            let mut filter = pending.clone();
            filter.insert("_id", doc! { "$in": &ids });
            filter.insert(
                "object_id",
                doc! { "$gte": &shard.first_object_id, "$lte": &shard.last_object_id },
            );
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
            // The fence again: the shard changes only under this lease.
            let updated = self
                .coll("shards")
                .find_one_and_update(
                    held(lease),
                    doc! {
                        "$inc": { "processed": processed, "failed": failed },
                        "$set": { "error_summary": summary.clone(), "updated_at": now() },
                    },
                )
                .return_document(ReturnDocument::After)
                .session(&mut *s)
                .await
                .map_err(backend)?
                .ok_or_else(|| StoreError::LeaseLost(lease.batch_id.to_string()))?;
            let shard: ShardRecord = from_doc(updated)?;
            Ok((shard.processed, shard.failed))
        })
    }

    async fn start_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        let now = now();
        transaction!(self, s => {
            let started = self
                .coll("batches")
                .update_one(
                    doc! { "_id": batch_id, "status": status_in(from) },
                    doc! { "$set": { "status": "PROCESSING", "updated_at": &now } },
                )
                .session(&mut *s)
                .await
                .map_err(backend)?;
            if started.matched_count == 0 {
                return Ok(None);
            }
            self.coll("batches")
                .update_one(
                    doc! { "_id": batch_id, "started_at": Bson::Null },
                    doc! { "$set": { "started_at": &now } },
                )
                .session(&mut *s)
                .await
                .map_err(backend)?;
            self.transition_in(s, batch_id).await.map(Some)
        })
    }

    async fn finish_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        end: &BatchEnd,
    ) -> Result<Option<BatchRecord>> {
        let now = now();
        let set = doc! {
            "status": end.status.as_str(), "error_message": end.error_message.as_deref(),
            "finished_at": &now, "updated_at": &now,
        };
        let working =
            doc! { "batch_id": batch_id, "status": shard_status_in(&ShardStatus::ACTIVE) };
        transaction!(self, s => {
            if end.only_when_settled
                && !self.find_in(s, "shards", working.clone()).await?.is_empty()
            {
                return Ok(None);
            }
            let ended = self
                .transition(s, doc! { "_id": batch_id, "status": status_in(from) }, doc! { "$set": set.clone() })
                .await?;
            if ended.is_some() {
                self.end_shards(s, batch_id, ShardStatus::Canceled, &now).await?;
                for pinned in &end.write_back {
                    self.write_plan_back(s, pinned, &now).await?;
                }
            }
            Ok(ended)
        })
    }

    async fn stalled_batches(
        &self,
        statuses: &[BatchStatus],
        shard_statuses: &[ShardStatus],
    ) -> Result<Vec<BatchRecord>> {
        let candidates: Vec<BatchRecord> = self
            .sorted(
                "batches",
                doc! { "status": status_in(statuses) },
                doc! { "_id": 1 },
            )
            .await?;
        let mut stalled = Vec::new();
        for batch in candidates {
            let working = self
                .count(
                    "shards",
                    doc! { "batch_id": &batch.batch_id, "status": shard_status_in(shard_statuses) },
                )
                .await?;
            if working == 0 {
                stalled.push(batch);
            }
        }
        Ok(stalled)
    }

    async fn shards(&self, batch_ids: &[BatchId]) -> Result<Vec<ShardRecord>> {
        self.sorted(
            "shards",
            doc! { "batch_id": { "$in": batch_ids } },
            doc! { "batch_id": 1, "shard_index": 1 },
        )
        .await
    }

    async fn list_shards(
        &self,
        batch_id: &BatchId,
        page: &PageRequest,
    ) -> Result<Page<ShardRecord>> {
        // A key that is not a number (a forged token) reads past the end.
        let after = page
            .after
            .as_ref()
            .map(|after| Bson::Int64(after.parse().unwrap_or(i64::MAX)));
        let key = |s: &ShardRecord| s.shard_index.to_string();
        self.page_after(
            "shards",
            doc! { "batch_id": batch_id },
            ("shard_index", key),
            after,
            page.limit,
        )
        .await
    }

    async fn shards_in(&self, statuses: &[BatchStatus]) -> Result<Vec<ShardRecord>> {
        let ids: Vec<BatchId> = self
            .ids(
                "batches",
                doc! { "status": status_in(statuses) },
                "batch_id",
            )
            .await?;
        self.shards(&ids).await
    }

    async fn active_shards(
        &self,
        statuses: &[ShardStatus],
    ) -> Result<Vec<(ShardRecord, BatchStatus)>> {
        let shards: Vec<ShardRecord> = self
            .sorted(
                "shards",
                doc! { "status": shard_status_in(statuses) },
                doc! { "batch_id": 1, "shard_index": 1 },
            )
            .await?;
        let mut ids: Vec<&str> = shards.iter().map(|s| s.batch_id.as_str()).collect();
        ids.dedup();
        let batches: Vec<BatchRecord> = self
            .sorted(
                "batches",
                doc! { "_id": { "$in": &ids } },
                doc! { "_id": 1 },
            )
            .await?;
        let status: std::collections::HashMap<BatchId, BatchStatus> = batches
            .into_iter()
            .map(|b| (b.batch_id, b.status))
            .collect();
        Ok(shards
            .into_iter()
            .filter_map(|s| {
                let batch = status.get(&s.batch_id).copied()?;
                Some((s, batch))
            })
            .collect())
    }

    async fn update_shard(
        &self,
        batch_id: &BatchId,
        shard_index: u32,
        expect: &ShardExpect,
        change: &ShardChange,
    ) -> Result<Option<ShardRecord>> {
        let now = now();
        let mut filter = doc! {
            "_id": shard_key(batch_id, shard_index),
            "status": shard_status_in(&expect.statuses),
        };
        if let Some(token) = &expect.token {
            filter.insert("lease_token", token);
        }
        if let Some(by) = expect.expired_by {
            filter.insert("lease.expires_ms", doc! { "$lt": by });
        }
        let (lease, token) = match &change.lease {
            Some((holder, token)) => (to_doc(holder)?.into(), Bson::String(token.clone())),
            None => (Bson::Null, Bson::Null),
        };
        let mut set = doc! {
            "status": change.status.as_str(),
            "lease": lease,
            "lease_token": token.clone(),
            "error_message": change.error_message.as_deref(),
            "updated_at": &now,
            "finished_at": if change.status.is_terminal() { Bson::from(now) } else { Bson::Null },
        };
        match &change.lease {
            Some((holder, _)) => {
                set.insert("worker", &holder.owner);
            }
            None => {
                set.insert("live", Bson::Null);
            }
        }
        let updated = self
            .coll("shards")
            .find_one_and_update(
                filter,
                doc! { "$set": set, "$inc": { "attempts": change.attempts } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend)?;
        let Some(updated) = updated else {
            return Ok(None);
        };
        let mut shard: ShardRecord = from_doc(updated)?;
        if change.status == ShardStatus::Processing && shard.started_at.is_none() {
            self.coll("shards")
                .update_one(
                    doc! { "_id": shard_key(batch_id, shard_index), "started_at": Bson::Null },
                    doc! { "$set": { "started_at": &now } },
                )
                .await
                .map_err(backend)?;
            shard.started_at = Some(now);
        }
        if change.status == ShardStatus::Processing && shard.attempts > 1 && self.serial.is_some() {
            self.recount(&mut shard).await?;
        }
        Ok(Some(shard))
    }

    async fn renew_shard(
        &self,
        lease: &Lease,
        expires_ms: i64,
        live: &LiveProgress,
    ) -> Result<bool> {
        let holder = LeaseHolder {
            owner: lease.owner.clone(),
            expires_ms,
        };
        let result = self
            .coll("shards")
            .update_one(
                held(lease),
                doc! { "$set": { "lease": to_doc(&holder)?, "live": to_doc(live)?, "updated_at": now() } },
            )
            .await
            .map_err(backend)?;
        Ok(result.matched_count == 1)
    }

    async fn heartbeat(&self, worker: &WorkerRecord, at_ms: i64) -> Result<()> {
        let mut set = to_doc(worker)?;
        set.insert("heartbeat_ms", at_ms);
        self.coll("workers")
            .update_one(doc! { "_id": &worker.worker_id }, doc! { "$set": set })
            .upsert(true)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn workers(&self, since_ms: i64) -> Result<Vec<WorkerRecord>> {
        self.sorted(
            "workers",
            doc! { "heartbeat_ms": { "$gte": since_ms } },
            doc! { "worker_id": 1 },
        )
        .await
    }
}
