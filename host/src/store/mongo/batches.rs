//! Batches, their objects' outcomes, claims and leases on MongoDB: conditional
//! writes and queries; what may happen is decided in `crate::batches`.

use super::*;

#[async_trait]
impl BatchStore for MongoStore {
    async fn count_batches(&self, namespace_id: &str, statuses: &[BatchStatus]) -> Result<u64> {
        self.count(
            "batches",
            doc! { "namespace_id": namespace_id, "status": status_in(statuses) },
        )
        .await
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
