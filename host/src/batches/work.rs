//! What workers do to batches, backend-neutral: rescue expired shards,
//! claim the next shard fairly, give a shard back, finish a shard, and end
//! a batch exactly once, when its last shard ends.

use super::lifecycle::{Action, Verdict, decide};
use super::shards::{self, Fairness, Rescue};
use crate::store::{
    BatchEnd, BatchId, BatchRecord, BatchStatus, Lease, LeaseHolder, Result, ShardChange,
    ShardExpect, ShardRecord, ShardStatus, Store, StoreError, WorkerId,
};

/// How workers share and rescue shards.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long a lease lasts without renewal, in ms.
    pub lease_ms: i64,
    /// Claims of one shard before it fails (its workers keep dying).
    pub max_attempts: u32,
    /// Share of failed objects past which a batch fails.
    pub error_budget: f64,
    /// How shards are shared out.
    pub fairness: Fairness,
}

/// A shard a worker now holds, with its batch (progress filled).
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The batch.
    pub batch: BatchRecord,
    /// The shard.
    pub shard: ShardRecord,
    /// What every write for the shard carries.
    pub lease: Lease,
}

/// What one rescue pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rescued {
    /// Shards back in the queue.
    pub requeued: u32,
    /// Shards failed after their last attempt.
    pub failed: u32,
    /// Shards of ended batches, canceled.
    pub canceled: u32,
    /// Batches ended because their last shard had ended.
    pub settled: u32,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Rescues every shard that needs it at `now_ms` (see [`shards::rescue`])
/// and ends the batches whose shards have all ended. Safe to run from any
/// number of workers at once: every write is conditional.
pub async fn rescue(store: &dyn Store, policy: &Policy, now_ms: i64) -> Result<Rescued> {
    let mut done = Rescued::default();
    // One shard or batch that cannot be written must not stop the rest:
    // its error is logged and the pass goes on.
    for (shard, batch_status) in store.active_shards(&ShardStatus::ACTIVE).await? {
        let Some(rescue) = shards::rescue(&shard, batch_status, now_ms, policy.max_attempts) else {
            continue;
        };
        match rescue_one(store, &shard, &rescue, now_ms).await {
            Ok(false) => {}
            Ok(true) => match rescue {
                Rescue::Requeue => done.requeued += 1,
                Rescue::Cancel => done.canceled += 1,
                Rescue::Fail(_) => done.failed += 1,
            },
            Err(e) => {
                tracing::warn!(batch_id = %shard.batch_id, shard = shard.shard_index, error = %e, "rescuing a shard failed")
            }
        }
    }
    for batch in store
        .stalled_batches(Action::Complete.from(), &ShardStatus::ACTIVE)
        .await?
    {
        match settle(store, &batch.batch_id, policy.error_budget).await {
            Ok(Some(_)) => done.settled += 1,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(batch_id = %batch.batch_id, error = %e, "ending a batch failed")
            }
        }
    }
    Ok(done)
}

/// Applies one rescue; whether it was written (another worker may have
/// got there first).
async fn rescue_one(
    store: &dyn Store,
    shard: &ShardRecord,
    rescue: &Rescue,
    now_ms: i64,
) -> Result<bool> {
    let (expect, change) = shards::rescue_write(rescue, shard.status, now_ms);
    let Some(written) = store
        .update_shard(&shard.batch_id, shard.shard_index, &expect, &change)
        .await?
    else {
        return Ok(false);
    };
    if let Rescue::Fail(reason) = rescue {
        tracing::warn!(batch_id = %written.batch_id, shard = written.shard_index, %reason, "shard failed");
        let reason = format!("shard {} failed: {reason}", written.shard_index);
        fail(store, &written.batch_id, &reason).await?;
    }
    Ok(true)
}

/// Claims the next shard by the fairness rule for `owner`, after a
/// rescue pass; the first claim of a batch starts it. `None` when no
/// shard is waiting.
pub async fn claim(
    store: &dyn Store,
    owner: &WorkerId,
    policy: &Policy,
) -> Result<Option<Claimed>> {
    let now = now_ms();
    if let Err(e) = rescue(store, policy, now).await {
        tracing::warn!(error = %e, "the rescue pass failed; claiming anyway");
    }
    let candidates = store.shards_in(Action::Claim.from()).await?;
    for (batch_id, shard_index) in shards::claim_order(&candidates, now, policy.fairness) {
        let token = crate::keys::random_token();
        let holder = LeaseHolder {
            owner: owner.to_owned(),
            expires_ms: now_ms() + policy.lease_ms,
        };
        let expect = ShardExpect {
            statuses: vec![ShardStatus::Queued],
            token: None,
            expired_by: None,
        };
        let change = ShardChange {
            status: ShardStatus::Processing,
            lease: Some((holder, token.clone())),
            attempts: 1,
            error_message: None,
        };
        // Another worker may win the race for this one: try the next.
        let Some(shard) = store
            .update_shard(&batch_id, shard_index, &expect, &change)
            .await?
        else {
            continue;
        };
        let lease = Lease {
            batch_id: batch_id.clone(),
            shard_index,
            owner: owner.to_owned(),
            token,
        };
        // Whatever fails from here gives the shard back at once rather
        // than leaving it held until its lease expires.
        match started(store, &batch_id).await {
            Ok(Some(batch)) => {
                return Ok(Some(Claimed {
                    batch,
                    shard,
                    lease,
                }));
            }
            // The batch ended between the read and the claim.
            Ok(None) => {
                give_back(store, &lease, None).await?;
            }
            Err(e) => {
                give_back(store, &lease, None).await?;
                return Err(e);
            }
        }
    }
    Ok(None)
}

/// Starts the batch of a shard just claimed (the first claim moves it to
/// PROCESSING) and reads it with its progress; `None` when it has ended.
async fn started(store: &dyn Store, batch_id: &BatchId) -> Result<Option<BatchRecord>> {
    let started = store
        .start_batch(batch_id, &Action::Claim.moves_from())
        .await?;
    let batch = match started {
        Some(batch) => batch,
        None => match store.batch_by_id(batch_id).await? {
            Some(batch) => batch,
            None => return Err(StoreError::not_found("batch", batch_id)),
        },
    };
    if decide(&batch.batch_id, batch.status, Action::Claim).is_err() {
        return Ok(None);
    }
    Ok(shards::with_progress(store, vec![batch]).await?.pop())
}

/// Hands a shard back to the queue. Without a `failure` (the worker is
/// stopping) the claim is not counted; after a failure (the store, or an
/// extractor that could not be loaded just now) it is, and the reason is
/// kept: a shard that keeps failing so ends after `--max-attempts` claims
/// instead of going round for ever.
pub async fn give_back(store: &dyn Store, lease: &Lease, failure: Option<&str>) -> Result<bool> {
    let expect = ShardExpect {
        statuses: vec![ShardStatus::Processing],
        token: Some(lease.token.clone()),
        expired_by: None,
    };
    let change = ShardChange {
        status: ShardStatus::Queued,
        lease: None,
        attempts: if failure.is_some() { 0 } else { -1 },
        error_message: failure.map(str::to_owned),
    };
    Ok(store
        .update_shard(&lease.batch_id, lease.shard_index, &expect, &change)
        .await?
        .is_some())
}

/// Ends a shard that ran to the end; when it was the batch's last, ends
/// the batch (once, whoever gets there first) and answers with it.
pub async fn finish_shard(
    store: &dyn Store,
    lease: &Lease,
    error_budget: f64,
) -> Result<Option<BatchRecord>> {
    let expect = ShardExpect {
        statuses: vec![ShardStatus::Processing],
        token: Some(lease.token.clone()),
        expired_by: None,
    };
    let change = ShardChange {
        status: ShardStatus::Completed,
        lease: None,
        attempts: 0,
        error_message: None,
    };
    if store
        .update_shard(&lease.batch_id, lease.shard_index, &expect, &change)
        .await?
        .is_none()
    {
        return Err(StoreError::LeaseLost(lease.batch_id.to_string()));
    }
    settle(store, &lease.batch_id, error_budget).await
}

/// Fails a running batch with `reason`: its shards with work left are
/// canceled, so every worker on it stops at its next write. `None` when
/// the batch had ended already.
pub async fn fail(
    store: &dyn Store,
    batch_id: &BatchId,
    reason: &str,
) -> Result<Option<BatchRecord>> {
    let failed = store
        .finish_batch(
            batch_id,
            Action::Fail.from(),
            &BatchEnd {
                status: BatchStatus::Failed,
                error_message: Some(reason.to_owned()),
                write_back: Vec::new(),
                only_when_settled: false,
            },
        )
        .await?;
    if let Some(batch) = &failed {
        finished(batch);
    }
    Ok(failed)
}

/// Ends the batch when none of its shards has work left (see
/// [`shards::outcome`]); the collections take the plans it ran. Exactly
/// one caller ends it: the write is conditional on its status.
pub async fn settle(
    store: &dyn Store,
    batch_id: &BatchId,
    error_budget: f64,
) -> Result<Option<BatchRecord>> {
    let Some(batch) = store.batch_by_id(batch_id).await? else {
        return Ok(None);
    };
    if decide(batch_id, batch.status, Action::Complete).ok() != Some(Verdict::Apply) {
        return Ok(None);
    }
    let all = store.shards(std::slice::from_ref(batch_id)).await?;
    let Some((status, reason)) = shards::outcome(&batch, &all, error_budget) else {
        return Ok(None);
    };
    let action = if status == BatchStatus::Completed {
        Action::Complete
    } else {
        Action::Fail
    };
    // Only a completed batch gives its collections the plan it ran; the
    // write also requires that no shard has work left by then (a retry may
    // have queued some since the read).
    let end = BatchEnd {
        status,
        error_message: reason,
        write_back: if status == BatchStatus::Completed {
            batch.collections.clone()
        } else {
            Vec::new()
        },
        only_when_settled: true,
    };
    let ended = store.finish_batch(batch_id, action.from(), &end).await?;
    if let Some(batch) = &ended {
        finished(batch);
    }
    Ok(ended)
}

/// Logs and counts a batch that just ended.
fn finished(batch: &BatchRecord) {
    tracing::info!(
        batch_id = %batch.batch_id,
        status = batch.status.as_str(),
        reason = batch.error_message.as_deref().unwrap_or(""),
        "batch finished"
    );
    metrics::counter!("strata_batches_finished_total", "status" => batch.status.as_str())
        .increment(1);
}

/// Fails the batch now if more of its objects failed than the budget
/// allows (checked as shards report, so a doomed batch stops early).
pub async fn check_budget(
    store: &dyn Store,
    batch: &BatchRecord,
    error_budget: f64,
) -> Result<Option<BatchRecord>> {
    let all = store.shards(std::slice::from_ref(&batch.batch_id)).await?;
    let failed: u64 = all.iter().map(|s| s.failed).sum();
    if !shards::over_budget(failed, batch.total, error_budget) {
        return Ok(None);
    }
    let reason = shards::budget_spent(failed, batch.total, error_budget);
    fail(store, &batch.batch_id, &reason).await
}
