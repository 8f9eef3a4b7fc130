//! Shards, the unit of work: how a submitted batch is split, which shard a
//! worker takes next (fairly), how an expired lease is rescued, when a
//! batch is done, and how its progress sums its shards'.
//!
//! Every decision here is a pure function of records; the procedures below
//! apply them with the store's conditional writes, so any number of
//! workers on any number of hosts may run them at once.

use std::collections::{BTreeMap, HashMap};

use super::lifecycle;
use crate::store::{
    BatchId, BatchRecord, BatchStatus, LiveProgress, ObjectId, Result, ShardChange, ShardExpect,
    ShardRecord, ShardStatus, Store, Timestamp, now,
};

/// Objects per shard unless the server is told otherwise.
pub const DEFAULT_SHARD_OBJECTS: u64 = 1_000;

/// The shards of a batch whose objects, in id order, are `object_ids`:
/// consecutive runs of `per_shard` objects, each its own manifest rows.
pub fn split(batch: &BatchRecord, object_ids: &[ObjectId], per_shard: u64) -> Vec<ShardRecord> {
    let per_shard = per_shard.max(1) as usize;
    let now = now();
    object_ids
        .chunks(per_shard)
        .enumerate()
        .map(|(i, ids)| ShardRecord {
            batch_id: batch.batch_id.clone(),
            shard_index: i as u32,
            namespace_id: batch.namespace_id.clone(),
            status: ShardStatus::Queued,
            objects: ids.len() as u64,
            row_start: (i * per_shard) as u64,
            first_object_id: ids.first().cloned().unwrap_or_default(),
            last_object_id: ids.last().cloned().unwrap_or_default(),
            processed: 0,
            failed: 0,
            error_summary: BTreeMap::new(),
            attempts: 0,
            lease: None,
            worker: None,
            live: None,
            error_message: None,
            updated_at: now,
            started_at: None,
            finished_at: None,
        })
        .collect()
}

/// How shards are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fairness {
    /// Shards of one batch running at once, across every worker (0: no
    /// bound).
    pub max_running_per_batch: u32,
}

impl Default for Fairness {
    fn default() -> Self {
        Fairness {
            max_running_per_batch: 16,
        }
    }
}

/// The queued shards a worker may claim, best first, among `shards`: every
/// shard of the batches that may be claimed (queued or processing).
///
/// The rule, round-robin at two levels: the namespace with the fewest
/// shards running goes first, and among equals the one served longest
/// ago (its latest shard start is the oldest; never served is oldest of
/// all); in it, the batch with the fewest shards running, and among equals
/// the one served longest ago; then the oldest batch, and its lowest
/// shard. A batch already running `max_running_per_batch` shards waits.
/// So a 10-object batch submitted after a 50 000-object one gets the next
/// free worker, and namespaces share workers evenly whatever each submits.
pub fn claim_order(shards: &[ShardRecord], now_ms: i64, fairness: Fairness) -> Vec<(BatchId, u32)> {
    #[derive(Default, Clone, Copy)]
    struct Served {
        running: u32,
        last_start: Option<Timestamp>,
    }
    let mut namespaces: HashMap<&str, Served> = HashMap::new();
    let mut batches: HashMap<&str, Served> = HashMap::new();
    for shard in shards {
        let running = shard.status == ShardStatus::Processing
            && shard.lease.as_ref().is_some_and(|l| l.expires_ms >= now_ms);
        for served in [
            namespaces.entry(&shard.namespace_id).or_default(),
            batches.entry(&shard.batch_id).or_default(),
        ] {
            served.running += u32::from(running);
            served.last_start = served.last_start.max(shard.started_at);
        }
    }
    let mut queued: Vec<&ShardRecord> = shards
        .iter()
        .filter(|s| s.status == ShardStatus::Queued)
        .filter(|s| {
            fairness.max_running_per_batch == 0
                || batches[s.batch_id.as_str()].running < fairness.max_running_per_batch
        })
        .collect();
    queued.sort_by_key(|s| {
        let namespace = namespaces[s.namespace_id.as_str()];
        let batch = batches[s.batch_id.as_str()];
        (
            namespace.running,
            namespace.last_start,
            batch.running,
            batch.last_start,
            s.batch_id.as_str(),
            s.shard_index,
        )
    });
    queued
        .into_iter()
        .map(|s| (s.batch_id.clone(), s.shard_index))
        .collect()
}

/// What a rescue does to a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rescue {
    /// Its lease expired: back to the queue for another worker.
    Requeue,
    /// Its lease expired once too often: it fails with this reason, and
    /// so does its batch.
    Fail(String),
    /// Its batch ended: nothing more runs.
    Cancel,
}

/// What a rescue does to `shard`, whose batch is in `batch_status`, at
/// `now_ms`, when a shard may be claimed `max_attempts` times; `None`
/// leaves it alone (queued, or held under a live lease, or terminal).
pub fn rescue(
    shard: &ShardRecord,
    batch_status: BatchStatus,
    now_ms: i64,
    max_attempts: u32,
) -> Option<Rescue> {
    if shard.status.is_terminal() {
        return None;
    }
    if batch_status.is_terminal() {
        return Some(Rescue::Cancel);
    }
    // Given back after failures as often as it may be claimed.
    if shard.status == ShardStatus::Queued && shard.attempts >= max_attempts {
        return Some(Rescue::Fail(format!(
            "it could not run in {} claims (last: {})",
            shard.attempts,
            shard.error_message.as_deref().unwrap_or("no reason given")
        )));
    }
    let lease = shard.lease.as_ref()?;
    if shard.status != ShardStatus::Processing || lease.expires_ms >= now_ms {
        return None;
    }
    if shard.attempts >= max_attempts {
        return Some(Rescue::Fail(lifecycle::workers_lost(
            shard.attempts,
            Some(&lease.owner),
        )));
    }
    Some(Rescue::Requeue)
}

/// The conditional write that applies a rescue decided at `now_ms` to a
/// shard that was in `status`: a running shard is rescued only while its
/// lease is still the expired one (never a lease renewed meanwhile), a
/// queued one only while still queued.
pub fn rescue_write(
    rescue: &Rescue,
    status: ShardStatus,
    now_ms: i64,
) -> (ShardExpect, ShardChange) {
    let (to, error_message) = match rescue {
        Rescue::Requeue => (ShardStatus::Queued, None),
        Rescue::Fail(reason) => (ShardStatus::Failed, Some(reason.clone())),
        Rescue::Cancel => (ShardStatus::Canceled, None),
    };
    let expired_by = match (rescue, status) {
        (Rescue::Cancel, _) | (_, ShardStatus::Queued) => None,
        _ => Some(now_ms),
    };
    (
        ShardExpect {
            statuses: vec![status],
            token: None,
            expired_by,
        },
        ShardChange {
            status: to,
            lease: None,
            attempts: 0,
            error_message,
        },
    )
}

/// How a batch ends once none of its shards has work left: FAILED when a
/// shard failed (with its reason) or more objects failed than the error
/// budget allows, COMPLETED otherwise. `None` while a shard has work left.
pub fn outcome(
    batch: &BatchRecord,
    shards: &[ShardRecord],
    error_budget: f64,
) -> Option<(BatchStatus, Option<String>)> {
    // A submitted batch always has shards; none means nothing ran yet.
    if shards.is_empty() || shards.iter().any(|s| !s.status.is_terminal()) {
        return None;
    }
    if let Some(failed) = shards.iter().find(|s| s.status == ShardStatus::Failed) {
        let reason = failed.error_message.as_deref().unwrap_or("it failed");
        return Some((
            BatchStatus::Failed,
            Some(format!("shard {} failed: {reason}", failed.shard_index)),
        ));
    }
    let failed: u64 = shards.iter().map(|s| s.failed).sum();
    if over_budget(failed, batch.total, error_budget) {
        return Some((
            BatchStatus::Failed,
            Some(budget_spent(failed, batch.total, error_budget)),
        ));
    }
    Some((BatchStatus::Completed, None))
}

/// Whether `failed` of `total` objects is past the error budget.
pub fn over_budget(failed: u64, total: u64, error_budget: f64) -> bool {
    failed as f64 > error_budget * total as f64
}

/// Why a batch past its error budget fails.
pub fn budget_spent(failed: u64, total: u64, error_budget: f64) -> String {
    format!(
        "{failed} of {total} objects failed, more than the error budget of {:.0}%",
        error_budget * 100.0
    )
}

/// Fills a batch's progress from its shards: counts and error summaries
/// summed, the most claims of any shard, the running shards' reports
/// together (rates summed, the earliest stage, the latest times) and the
/// lease that expires first.
pub fn sum_into(batch: &mut BatchRecord, shards: &[ShardRecord]) {
    batch.processed = 0;
    batch.failed = 0;
    batch.attempts = 0;
    batch.error_summary.clear();
    batch.shards.clear();
    batch.lease = None;
    let mut live: Option<LiveProgress> = None;
    for shard in shards.iter().filter(|s| s.batch_id == batch.batch_id) {
        batch.processed += shard.processed;
        batch.failed += shard.failed;
        batch.attempts = batch.attempts.max(shard.attempts);
        for (category, n) in &shard.error_summary {
            *batch.error_summary.entry(category.clone()).or_default() += n;
        }
        *batch.shards.entry(shard.status).or_default() += 1;
        if shard.status != ShardStatus::Processing {
            continue;
        }
        if let Some(lease) = &shard.lease
            && batch
                .lease
                .as_ref()
                .is_none_or(|first| lease.expires_ms < first.expires_ms)
        {
            batch.lease = Some(lease.clone());
        }
        if let Some(report) = &shard.live {
            live = Some(match live {
                None => report.clone(),
                Some(sum) => LiveProgress {
                    items_per_second: sum.items_per_second + report.items_per_second,
                    current_stage: match (sum.current_stage, &report.current_stage) {
                        (Some(a), Some(b)) if b.index < a.index => Some(b.clone()),
                        (Some(a), _) => Some(a),
                        (None, b) => b.clone(),
                    },
                    reported_at: sum.reported_at.max(report.reported_at),
                    last_progress_at: sum.last_progress_at.max(report.last_progress_at),
                },
            });
        }
    }
    batch.live = live;
}

/// Reads the shards of `batches` and fills each one's progress.
pub async fn with_progress(
    store: &dyn Store,
    mut batches: Vec<BatchRecord>,
) -> Result<Vec<BatchRecord>> {
    let ids: Vec<BatchId> = batches
        .iter()
        .filter(|b| b.status != BatchStatus::Draft)
        .map(|b| b.batch_id.clone())
        .collect();
    let shards = if ids.is_empty() {
        Vec::new()
    } else {
        store.shards(&ids).await?
    };
    for batch in &mut batches {
        sum_into(batch, &shards);
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LeaseHolder;

    fn shard(batch: &str, ns: &str, index: u32, status: ShardStatus) -> ShardRecord {
        ShardRecord {
            batch_id: batch.into(),
            shard_index: index,
            namespace_id: ns.into(),
            status,
            objects: 10,
            row_start: u64::from(index) * 10,
            first_object_id: ObjectId::default(),
            last_object_id: ObjectId::default(),
            processed: 0,
            failed: 0,
            error_summary: BTreeMap::new(),
            attempts: u32::from(status != ShardStatus::Queued),
            lease: (status == ShardStatus::Processing).then(|| LeaseHolder {
                owner: "w1".into(),
                expires_ms: 1_000,
            }),
            worker: (status != ShardStatus::Queued).then(|| "w1".into()),
            live: None,
            error_message: None,
            updated_at: now(),
            started_at: (status != ShardStatus::Queued)
                .then(|| "2026-01-01T00:00:00.000Z".parse().expect("time")),
            finished_at: None,
        }
    }

    #[test]
    fn a_batch_splits_into_runs_of_objects_in_id_order() {
        let batch = BatchRecord::draft(&"ns".into(), &"bkt".into(), None, None);
        let ids: Vec<ObjectId> = (0..25).map(|i| format!("obj_{i:02}").into()).collect();
        let shards = split(&batch, &ids, 10);
        let ranges: Vec<(u64, u64, &str, &str)> = shards
            .iter()
            .map(|s| {
                (
                    s.row_start,
                    s.objects,
                    s.first_object_id.as_str(),
                    s.last_object_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            ranges,
            [
                (0, 10, "obj_00", "obj_09"),
                (10, 10, "obj_10", "obj_19"),
                (20, 5, "obj_20", "obj_24")
            ]
        );
        assert!(shards.iter().all(|s| s.status == ShardStatus::Queued));
    }

    #[test]
    fn a_small_batch_after_a_large_one_is_claimed_next() {
        use ShardStatus::{Completed, Processing, Queued};
        let mut shards: Vec<ShardRecord> = (0..50)
            .map(|i| {
                let status = match i {
                    0 => Completed,
                    1 => Processing,
                    _ => Queued,
                };
                shard("btch_a", "ns1", i, status)
            })
            .collect();
        shards.push(shard("btch_b", "ns1", 0, Queued));
        let order = claim_order(&shards, 500, Fairness::default());
        assert_eq!(
            order[0],
            (BatchId::from("btch_b"), 0),
            "the batch running nothing goes first"
        );
        assert_eq!(order[1], (BatchId::from("btch_a"), 2));
        // With one worker, nothing runs between shards: the batch never
        // served still goes first.
        shards[1].status = Completed;
        let order = claim_order(&shards, 500, Fairness::default());
        assert_eq!(order[0], (BatchId::from("btch_b"), 0));
    }

    #[test]
    fn batches_served_longest_ago_go_first() {
        use ShardStatus::{Completed, Queued};
        let served = |batch: &str, at: &str| ShardRecord {
            started_at: Some(at.parse().expect("time")),
            ..shard(batch, "ns1", 0, Completed)
        };
        let shards = vec![
            served("btch_a", "2026-01-01T00:00:05.000Z"),
            shard("btch_a", "ns1", 1, Queued),
            served("btch_b", "2026-01-01T00:00:03.000Z"),
            shard("btch_b", "ns1", 1, Queued),
        ];
        let order = claim_order(&shards, 500, Fairness::default());
        assert_eq!(order[0], (BatchId::from("btch_b"), 1), "{order:?}");
    }

    #[test]
    fn namespaces_share_workers_and_a_batch_waits_at_its_bound() {
        use ShardStatus::{Processing, Queued};
        let shards = vec![
            shard("btch_a", "ns1", 0, Processing),
            shard("btch_a", "ns1", 1, Queued),
            shard("btch_b", "ns1", 0, Queued),
            shard("btch_c", "ns2", 0, Queued),
        ];
        let order = claim_order(&shards, 500, Fairness::default());
        assert_eq!(
            order[0],
            (BatchId::from("btch_c"), 0),
            "ns2 runs nothing yet"
        );
        assert_eq!(order[1], (BatchId::from("btch_b"), 0));
        let bounded = claim_order(
            &shards,
            500,
            Fairness {
                max_running_per_batch: 1,
            },
        );
        assert!(
            !bounded.contains(&(BatchId::from("btch_a"), 1)),
            "{bounded:?}"
        );
        // An expired lease does not count as running.
        let later = claim_order(&shards, 5_000, Fairness::default());
        assert_eq!(later.len(), 3);
    }

    #[test]
    fn the_rescuer_requeues_fails_cancels_or_leaves_alone() {
        use ShardStatus::{Completed, Processing, Queued};
        let held = shard("b", "ns", 0, Processing);
        assert_eq!(
            rescue(&held, BatchStatus::Processing, 500, 3),
            None,
            "inside its lease"
        );
        assert_eq!(
            rescue(&held, BatchStatus::Processing, 1_001, 3),
            Some(Rescue::Requeue),
            "past its deadline"
        );
        let worn = ShardRecord {
            attempts: 3,
            ..held.clone()
        };
        assert_eq!(
            rescue(&worn, BatchStatus::Processing, 1_001, 3),
            Some(Rescue::Fail(
                "the worker running it was lost 3 times (last: w1); giving up".into()
            ))
        );
        assert_eq!(
            rescue(&held, BatchStatus::Canceled, 500, 3),
            Some(Rescue::Cancel)
        );
        let queued = shard("b", "ns", 1, Queued);
        assert_eq!(
            rescue(&queued, BatchStatus::Canceled, 500, 3),
            Some(Rescue::Cancel)
        );
        assert_eq!(rescue(&queued, BatchStatus::Processing, 5_000, 3), None);
        let done = shard("b", "ns", 2, Completed);
        assert_eq!(
            rescue(&done, BatchStatus::Canceled, 5_000, 3),
            None,
            "terminal"
        );
        // Given back after failures as often as it may be claimed: fails,
        // with the last reason, as it is (a queued shard has no lease).
        let worn_out = ShardRecord {
            attempts: 3,
            error_message: Some("the store failed: disk full".into()),
            ..shard("b", "ns", 3, Queued)
        };
        let verdict = rescue(&worn_out, BatchStatus::Processing, 500, 3);
        assert_eq!(
            verdict,
            Some(Rescue::Fail(
                "it could not run in 3 claims (last: the store failed: disk full)".into()
            ))
        );
        let (expect, change) = rescue_write(&verdict.expect("a verdict"), Queued, 500);
        assert_eq!((expect.statuses, expect.expired_by), (vec![Queued], None));
        assert_eq!(change.status, ShardStatus::Failed);
        let (expect, _) = rescue_write(&Rescue::Requeue, Processing, 500);
        assert_eq!(
            (expect.statuses, expect.expired_by),
            (vec![Processing], Some(500)),
            "a running shard is rescued only while its lease is the expired one"
        );
    }

    #[test]
    fn a_batch_ends_when_its_last_shard_does() {
        use ShardStatus::{Completed, Failed, Processing};
        let mut batch = BatchRecord::draft(&"ns".into(), &"bkt".into(), None, None);
        batch.total = 20;
        let done = |failed| ShardRecord {
            processed: 10,
            failed,
            ..shard("b", "ns", 0, Completed)
        };
        assert_eq!(
            outcome(&batch, &[done(0), shard("b", "ns", 1, Processing)], 0.5),
            None
        );
        assert_eq!(outcome(&batch, &[], 0.5), None, "no shards, no end");
        assert_eq!(
            outcome(&batch, &[done(0), done(2)], 0.5),
            Some((BatchStatus::Completed, None))
        );
        assert_eq!(
            outcome(&batch, &[done(10), done(2)], 0.5),
            Some((
                BatchStatus::Failed,
                Some("12 of 20 objects failed, more than the error budget of 50%".into())
            ))
        );
        let lost = ShardRecord {
            error_message: Some("lost".into()),
            ..shard("b", "ns", 1, Failed)
        };
        assert_eq!(
            outcome(&batch, &[done(0), lost], 0.5),
            Some((BatchStatus::Failed, Some("shard 1 failed: lost".into())))
        );
    }

    #[test]
    fn progress_sums_the_shards() {
        use ShardStatus::{Completed, Processing};
        let mut batch = BatchRecord::draft(&"ns".into(), &"bkt".into(), None, None);
        batch.batch_id = "b".into();
        let mut a = shard("b", "ns", 0, Completed);
        a.processed = 10;
        a.failed = 1;
        a.error_summary.insert("kw.error".into(), 1);
        let mut b = shard("b", "ns", 1, Processing);
        b.processed = 4;
        b.attempts = 2;
        b.error_summary.insert("kw.error".into(), 2);
        sum_into(&mut batch, &[a, b, shard("other", "ns", 0, Completed)]);
        assert_eq!((batch.processed, batch.failed, batch.attempts), (14, 1, 2));
        assert_eq!(batch.error_summary.get("kw.error"), Some(&3));
        assert_eq!(
            batch.lease,
            Some(LeaseHolder {
                owner: "w1".into(),
                expires_ms: 1_000
            })
        );
        assert_eq!(batch.shards.get(&Completed), Some(&1));
    }
}
