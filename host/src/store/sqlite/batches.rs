//! Batches, their objects' outcomes, claims and leases on SQLite: conditional
//! writes and queries; what may happen is decided in `crate::batches`.

use super::*;

#[async_trait]
impl BatchStore for SqliteStore {
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
