//! Batches, their objects' outcomes, claims and leases on SQLite: conditional
//! writes and queries; what may happen is decided in `crate::batches`.

use super::*;
use crate::store::{BatchId, BucketId, NamespaceId, ObjectId, TaskId};

#[async_trait]
impl BatchStore for SqliteStore {
    async fn count_batches(
        &self,
        namespace_id: &NamespaceId,
        statuses: &[BatchStatus],
    ) -> Result<u64> {
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
        object_ids: &[ObjectId],
    ) -> Result<std::result::Result<BatchRecord, BatchRecord>> {
        let (b, ids) = (batch.clone(), object_ids.to_vec());
        let body = body_text(batch)?;
        self.call(move |c| {
            let tx = immediate(c)?;
            let key = b.idempotency.as_ref().map(|(k, _)| k.clone());
            if let Some(key) = &key {
                let existing: Option<BatchId> = tx
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
        batch_id: &BatchId,
        from: &[BatchStatus],
        object_ids: &[ObjectId],
    ) -> Result<Option<BatchRecord>> {
        let ids = object_ids.to_vec();
        self.while_in(batch_id, from, move |tx, id| {
            let added = insert_batch_objects(&tx, id, &ids)?;
            tx.execute(
                "UPDATE batches SET total = total + ?2, updated_at = ?3 WHERE batch_id = ?1",
                params![id, added, now()],
            )
            .map_err(backend)?;
            commit_batch(tx, id)
        })
        .await
    }

    async fn batch(&self, bucket_id: &BucketId, batch_id: &BatchId) -> Result<Option<BatchRecord>> {
        self.optional(
            format!("SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = ?1 AND bucket_id = ?2"),
            vec![batch_id.to_string(), bucket_id.to_string()],
            batch_row,
        )
        .await
    }

    async fn batch_by_id(&self, batch_id: &BatchId) -> Result<Option<BatchRecord>> {
        self.optional(
            format!("SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = ?1"),
            vec![batch_id.to_string()],
            batch_row,
        )
        .await
    }

    async fn batch_by_idempotency_key(
        &self,
        bucket_id: &BucketId,
        key: &str,
    ) -> Result<Option<BatchRecord>> {
        self.optional(
            format!(
                "SELECT {BATCH_COLUMNS} FROM batches WHERE bucket_id = ?1 AND idempotency_key = ?2"
            ),
            vec![bucket_id.to_string(), key.to_owned()],
            batch_row,
        )
        .await
    }

    async fn batch_by_task(
        &self,
        namespace_id: &NamespaceId,
        task_id: &TaskId,
    ) -> Result<Option<BatchRecord>> {
        self.optional(
            format!(
                "SELECT {BATCH_COLUMNS} FROM batches
                     WHERE namespace_id = ?1 AND task_id = ?2 AND status != 'DRAFT'"
            ),
            vec![namespace_id.to_string(), task_id.to_string()],
            batch_row,
        )
        .await
    }

    async fn list_batches(
        &self,
        bucket_id: &BucketId,
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
                |b| b.batch_id.to_string(),
            )
        })
        .await
    }

    async fn batch_object_records(
        &self,
        batch_id: &BatchId,
        page: &PageRequest,
    ) -> Result<Page<(ObjectId, Option<ObjectRecord>)>> {
        let (id, page) = (batch_id.to_owned(), page.clone());
        self.call(move |c| {
            let columns = columns_of(OBJECT_COLUMNS, "o");
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
                    Ok((r.get::<_, ObjectId>(0)?, record))
                },
                |(id, _)| id.to_string(),
            )
        })
        .await
    }

    async fn list_batch_objects(
        &self,
        batch_id: &BatchId,
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
                |o| o.object_id.to_string(),
            )
        })
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
        let shards = shards.to_vec();
        let collections =
            serde_json::to_string(&pipelines.collections).map_err(StoreError::backend)?;
        let history = pipelines.include_processing_history;
        let queued = self
            .while_in(batch_id, from, move |tx, id| {
                // Planned for this many objects: none added meanwhile.
                if read_batch(&tx, id)?.total != object_count {
                    return Ok(None);
                }
                let now = now();
                tx.execute(
                    "UPDATE batches SET status = 'QUEUED', updated_at = ?2,
                     body = json_set(body, '$.collections', json(?3), '$.include_processing_history', json(?4), '$.submitted_at', ?2)
                     WHERE batch_id = ?1",
                    params![id, now, collections, history.to_string()],
                )
                .map_err(backend)?;
                for shard in &shards {
                    insert_shard(&tx, shard)?;
                }
                commit_transition(tx, id).map(Some)
            })
            .await?;
        Ok(queued.flatten())
    }

    async fn cancel_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        self.while_in(batch_id, from, move |tx, id| {
            let now = now();
            tx.execute(
                "UPDATE batches SET status = 'CANCELED', updated_at = ?2,
                 body = json_set(body, '$.finished_at', ?2) WHERE batch_id = ?1",
                params![id, now],
            )
            .map_err(backend)?;
            end_shards(&tx, id, ShardStatus::Canceled, &now)?;
            commit_transition(tx, id)
        })
        .await
    }

    async fn unfinished_objects(&self, batch_id: &BatchId) -> Result<u64> {
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
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        self.while_in(batch_id, from, move |tx, id| {
            tx.execute(
                "UPDATE batch_objects SET status = 'pending', error = NULL, done = 0
                 WHERE batch_id = ?1 AND status != 'completed'",
                [id],
            )
            .map_err(backend)?;
            let now = now();
            tx.execute(
                "UPDATE batches SET status = 'QUEUED', updated_at = ?2,
                 body = json_set(body, '$.error_message', NULL, '$.finished_at', NULL, '$.submitted_at', ?2)
                 WHERE batch_id = ?1",
                params![id, now],
            )
            .map_err(backend)?;
            // Each shard recounted from its objects: queued again when
            // some did not complete, completed otherwise.
            tx.execute(
                "UPDATE shards SET
                   processed = (SELECT count(*) FROM batch_objects o WHERE o.batch_id = shards.batch_id
                     AND o.object_id BETWEEN shards.first_object_id AND shards.last_object_id AND o.status = 'completed'),
                   failed = 0, error_summary = NULL, attempts = 0, lease_owner = NULL, lease_token = NULL,
                   lease_expires_ms = NULL, live = NULL, error_message = NULL, finished_at = NULL, updated_at = ?2
                 WHERE batch_id = ?1",
                params![id, now],
            )
            .map_err(backend)?;
            tx.execute(
                "UPDATE shards SET status = CASE WHEN processed < objects THEN 'QUEUED' ELSE 'COMPLETED' END,
                   finished_at = CASE WHEN processed < objects THEN NULL ELSE ?2 END
                 WHERE batch_id = ?1",
                params![id, now],
            )
            .map_err(backend)?;
            commit_transition(tx, id)
        })
        .await
    }

    async fn delete_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<Vec<String>>> {
        self.while_in(batch_id, from, move |tx, id| {
            let keys = batch_artifacts(&tx, "SELECT body FROM batches WHERE batch_id = ?1", id)?;
            for sql in [
                "DELETE FROM batch_objects WHERE batch_id = ?1",
                "DELETE FROM shards WHERE batch_id = ?1",
                "DELETE FROM batches WHERE batch_id = ?1",
            ] {
                tx.execute(sql, [id]).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(keys)
        })
        .await
    }

    async fn pending_objects(&self, shard: &ShardRecord, stage: u32) -> Result<Vec<ObjectId>> {
        let shard = shard.clone();
        self.call(move |c| {
            c.prepare_cached(
                "SELECT object_id FROM batch_objects
                 WHERE batch_id = ?1 AND status = 'pending' AND done = ?2
                   AND object_id BETWEEN ?3 AND ?4
                 ORDER BY object_id",
            )
            .and_then(|mut s| {
                s.query_map(
                    params![
                        shard.batch_id,
                        stage,
                        shard.first_object_id,
                        shard.last_object_id
                    ],
                    |r| r.get(0),
                )?
                .collect()
            })
            .map_err(backend)
        })
        .await
    }

    async fn record_chunk(&self, lease: &Lease, chunk: &ChunkOutcome) -> Result<(u64, u64)> {
        let (lease, chunk) = (lease.clone(), chunk.clone());
        let summary = serde_json::to_string(&chunk.error_summary).map_err(StoreError::backend)?;
        self.call(move |c| {
            let tx = immediate(c)?;
            let shard = fence(&tx, &lease)?;
            let (mut processed, mut failed) = (0u64, 0u64);
            {
                let mut current = tx
                    .prepare_cached(
                        "SELECT error FROM batch_objects
                         WHERE batch_id = ?1 AND object_id = ?2 AND status = 'pending' AND done = ?3
                           AND object_id BETWEEN ?4 AND ?5",
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
                        .query_row(
                            params![
                                lease.batch_id,
                                object_id,
                                chunk.stage,
                                shard.first_object_id,
                                shard.last_object_id
                            ],
                            |r| r.get::<_, Option<String>>(0),
                        )
                        .optional()
                        .map_err(backend)?
                    else {
                        // Already recorded by an earlier attempt, or not
                        // an object of this shard.
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
            let counts = tx
                .query_row(
                    "UPDATE shards SET processed = processed + ?3, failed = failed + ?4,
                       error_summary = ?5, updated_at = ?6
                     WHERE batch_id = ?1 AND shard_index = ?2
                     RETURNING processed, failed",
                    params![
                        lease.batch_id,
                        lease.shard_index,
                        processed,
                        failed,
                        summary,
                        now()
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(counts)
        })
        .await
    }

    async fn start_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
    ) -> Result<Option<BatchRecord>> {
        self.while_in(batch_id, from, move |tx, id| {
            tx.execute(
                "UPDATE batches SET status = 'PROCESSING', updated_at = ?2,
                 body = json_set(body, '$.started_at', coalesce(json_extract(body, '$.started_at'), ?2))
                 WHERE batch_id = ?1",
                params![id, now()],
            )
            .map_err(backend)?;
            commit_transition(tx, id)
        })
        .await
    }

    async fn finish_batch(
        &self,
        batch_id: &BatchId,
        from: &[BatchStatus],
        end: &BatchEnd,
    ) -> Result<Option<BatchRecord>> {
        let end = end.clone();
        let working = format!(
            "SELECT EXISTS (SELECT 1 FROM shards WHERE batch_id = ?1 AND {})",
            shard_status_in(&ShardStatus::ACTIVE)
        );
        let ended = self
            .while_in(batch_id, from, move |tx, id| {
                if end.only_when_settled {
                    let busy: bool = tx
                        .query_row(&working, [id], |r| r.get(0))
                        .map_err(backend)?;
                    if busy {
                        return Ok(None);
                    }
                }
                let now = now();
                tx.execute(
                    "UPDATE batches SET status = ?2, updated_at = ?3,
                     body = json_set(body, '$.error_message', ?4, '$.finished_at', ?3)
                     WHERE batch_id = ?1",
                    params![id, end.status.as_str(), now, end.error_message],
                )
                .map_err(backend)?;
                end_shards(&tx, id, ShardStatus::Canceled, &now)?;
                for pinned in &end.write_back {
                    write_plan_back(&tx, pinned, &now)?;
                }
                commit_transition(tx, id).map(Some)
            })
            .await?;
        Ok(ended.flatten())
    }

    async fn stalled_batches(
        &self,
        statuses: &[BatchStatus],
        shard_statuses: &[ShardStatus],
    ) -> Result<Vec<BatchRecord>> {
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM batches b WHERE b.{} AND NOT EXISTS
               (SELECT 1 FROM shards s WHERE s.batch_id = b.batch_id AND s.{})
             ORDER BY b.batch_id",
            status_in(statuses),
            shard_status_in(shard_statuses)
        );
        self.call(move |c| {
            c.prepare(&sql)
                .and_then(|mut s| s.query_map([], batch_row)?.collect())
                .map_err(backend)
        })
        .await
    }

    async fn shards(&self, batch_ids: &[BatchId]) -> Result<Vec<ShardRecord>> {
        let ids = batch_ids.to_vec();
        self.call(move |c| {
            let mut select = c
                .prepare_cached(&format!(
                    "SELECT {SHARD_COLUMNS} FROM shards WHERE batch_id = ?1 ORDER BY shard_index"
                ))
                .map_err(backend)?;
            let mut shards = Vec::new();
            for id in ids {
                let rows = select
                    .query_map([id], shard_row)
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(backend)?;
                shards.extend(rows);
            }
            Ok(shards)
        })
        .await
    }

    async fn list_shards(
        &self,
        batch_id: &BatchId,
        page: &PageRequest,
    ) -> Result<Page<ShardRecord>> {
        let (id, page) = (batch_id.to_owned(), page.clone());
        self.call(move |c| {
            select_page(
                c,
                &format!(
                    "SELECT {SHARD_COLUMNS} FROM shards WHERE batch_id = ?1
                     AND (?2 IS NULL OR shard_index > CAST(?2 AS INTEGER))
                     ORDER BY shard_index LIMIT ?3"
                ),
                &[&id],
                &page,
                shard_row,
                |s| s.shard_index.to_string(),
            )
        })
        .await
    }

    async fn shards_in(&self, statuses: &[BatchStatus]) -> Result<Vec<ShardRecord>> {
        let sql = format!(
            "SELECT {} FROM shards s JOIN batches b ON b.batch_id = s.batch_id
             WHERE b.{} ORDER BY s.batch_id, s.shard_index",
            columns_of(SHARD_COLUMNS, "s"),
            status_in(statuses)
        );
        self.call(move |c| {
            c.prepare_cached(&sql)
                .and_then(|mut s| s.query_map([], shard_row)?.collect())
                .map_err(backend)
        })
        .await
    }

    async fn active_shards(
        &self,
        statuses: &[ShardStatus],
    ) -> Result<Vec<(ShardRecord, BatchStatus)>> {
        let sql = format!(
            "SELECT {}, b.status FROM shards s JOIN batches b ON b.batch_id = s.batch_id
             WHERE s.{} ORDER BY s.batch_id, s.shard_index",
            columns_of(SHARD_COLUMNS, "s"),
            shard_status_in(statuses)
        );
        self.call(move |c| {
            c.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map([], |r| {
                        let shard = shard_row(r)?;
                        let status: String = r.get(SHARD_COLUMN_COUNT)?;
                        let status = BatchStatus::parse(&status).ok_or_else(|| {
                            rusqlite::Error::FromSqlConversionFailure(
                                SHARD_COLUMN_COUNT,
                                rusqlite::types::Type::Text,
                                format!("unknown batch status `{status}`").into(),
                            )
                        })?;
                        Ok((shard, status))
                    })?
                    .collect()
                })
                .map_err(backend)
        })
        .await
    }

    async fn update_shard(
        &self,
        batch_id: &BatchId,
        shard_index: u32,
        expect: &ShardExpect,
        change: &ShardChange,
    ) -> Result<Option<ShardRecord>> {
        let (id, expect, change) = (batch_id.to_owned(), expect.clone(), change.clone());
        self.call(move |c| {
            let now = now();
            let (owner, token, expires) = match &change.lease {
                Some((holder, token)) => (
                    Some(holder.owner.clone()),
                    Some(token.clone()),
                    Some(holder.expires_ms),
                ),
                None => (None, None, None),
            };
            let terminal = change.status.is_terminal();
            let sql = format!(
                "UPDATE shards SET status = ?3, lease_owner = coalesce(?4, lease_owner), lease_token = ?5, lease_expires_ms = ?6,
                   attempts = max(attempts + ?7, 0), error_message = ?8, updated_at = ?9,
                   live = CASE WHEN ?5 IS NULL THEN NULL ELSE live END,
                   started_at = CASE WHEN ?3 = 'PROCESSING' THEN coalesce(started_at, ?9) ELSE started_at END,
                   finished_at = CASE WHEN ?10 THEN ?9 ELSE NULL END
                 WHERE batch_id = ?1 AND shard_index = ?2 AND {}
                   AND (?11 IS NULL OR lease_token = ?11)
                   AND (?12 IS NULL OR lease_expires_ms < ?12)
                 RETURNING {SHARD_COLUMNS}",
                shard_status_in(&expect.statuses)
            );
            c.query_row(
                &sql,
                params![
                    id,
                    shard_index,
                    change.status.as_str(),
                    owner,
                    token,
                    expires,
                    change.attempts,
                    change.error_message,
                    now,
                    terminal,
                    expect.token,
                    expect.expired_by
                ],
                shard_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn renew_shard(
        &self,
        lease: &Lease,
        expires_ms: i64,
        live: &LiveProgress,
    ) -> Result<bool> {
        let lease = lease.clone();
        let live = serde_json::to_string(live).map_err(StoreError::backend)?;
        self.call(move |c| {
            let changed = c
                .execute(
                    "UPDATE shards SET lease_expires_ms = ?4, live = ?5, updated_at = ?6
                     WHERE batch_id = ?1 AND shard_index = ?2 AND lease_token = ?3 AND status = 'PROCESSING'",
                    params![
                        lease.batch_id,
                        lease.shard_index,
                        lease.token,
                        expires_ms,
                        live,
                        now()
                    ],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn heartbeat(&self, worker: &WorkerRecord, at_ms: i64) -> Result<()> {
        let (id, body) = (worker.worker_id.clone(), body_text(worker)?);
        self.call(move |c| {
            c.execute(
                "INSERT INTO workers (worker_id, body, heartbeat_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (worker_id) DO UPDATE SET body = ?2, heartbeat_ms = ?3",
                params![id, body, at_ms],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn workers(&self, since_ms: i64) -> Result<Vec<WorkerRecord>> {
        self.call(move |c| {
            c.prepare_cached("SELECT body FROM workers WHERE heartbeat_ms >= ?1 ORDER BY worker_id")
                .and_then(|mut s| {
                    s.query_map([since_ms], |r| body_column(r.get(0)?))?
                        .collect()
                })
                .map_err(backend)
        })
        .await
    }
}
