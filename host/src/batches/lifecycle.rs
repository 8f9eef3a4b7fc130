//! The batch state machine: which action moves a batch from which status
//! to which, which repeats are answered with the batch as it is, and the
//! errors a client sees when an action does not apply.
//!
//! Backends never decide any of this: they write only while a batch is in
//! one of the statuses [`Action::from`] names, and report what they found.

use crate::store::BatchStatus::{self, Canceled, Completed, Draft, Failed, Processing, Queued};
use crate::store::{BatchId, BucketId};

/// What a client or a worker asks of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Add objects (clients).
    AddObjects,
    /// Plan, pin and queue (clients).
    Submit,
    /// Run one of its shards (workers): the first claim starts it.
    Claim,
    /// Every object went through every collection (workers).
    Complete,
    /// The pipeline cannot run, the error budget is spent, or its workers
    /// kept dying (workers).
    Fail,
    /// Stop it (clients).
    Cancel,
    /// Queue again what did not complete (clients).
    Retry,
    /// Remove it with its objects' outcomes (clients).
    Delete,
}

/// Every action, for tables and tests.
pub const ACTIONS: [Action; 8] = [
    Action::AddObjects,
    Action::Submit,
    Action::Claim,
    Action::Complete,
    Action::Fail,
    Action::Cancel,
    Action::Retry,
    Action::Delete,
];

/// The transitions: an action, the statuses it applies to, and the status
/// it leaves the batch in (`None`: the batch is removed).
const TRANSITIONS: [(Action, &[BatchStatus], Option<BatchStatus>); 8] = [
    (Action::AddObjects, &[Draft], Some(Draft)),
    (Action::Submit, &[Draft], Some(Queued)),
    (Action::Claim, &[Queued, Processing], Some(Processing)),
    (Action::Complete, &[Processing], Some(Completed)),
    (Action::Fail, &[Processing], Some(Failed)),
    (Action::Cancel, &[Queued, Processing], Some(Canceled)),
    (Action::Retry, &[Completed, Failed, Canceled], Some(Queued)),
    (Action::Delete, &[Draft, Completed, Failed, Canceled], None),
];

/// Statuses in which a batch holds its bucket's objects and collections:
/// neither may be deleted, and the namespace counts it as in flight.
pub const ACTIVE: [BatchStatus; 2] = [Queued, Processing];

impl Action {
    /// The statuses this action applies to.
    pub fn from(self) -> &'static [BatchStatus] {
        TRANSITIONS
            .iter()
            .find(|(a, _, _)| *a == self)
            .map_or(&[], |(_, from, _)| from)
    }

    /// The status this action leaves the batch in (`None`: removed).
    pub fn to(self) -> Option<BatchStatus> {
        TRANSITIONS
            .iter()
            .find(|(a, _, _)| *a == self)
            .and_then(|(_, _, to)| *to)
    }

    /// The statuses this action moves a batch out of: those it applies to
    /// other than the one it leads to (a claim starts only a QUEUED batch).
    pub fn moves_from(self) -> Vec<BatchStatus> {
        let to = self.to();
        self.from()
            .iter()
            .copied()
            .filter(|s| Some(*s) != to)
            .collect()
    }

    /// The verb of error messages, e.g. `canceled`.
    fn done(self) -> &'static str {
        match self {
            Action::AddObjects => "given objects",
            Action::Submit => "submitted",
            Action::Claim => "claimed",
            Action::Complete => "completed",
            Action::Fail => "failed",
            Action::Cancel => "canceled",
            Action::Retry => "retried",
            Action::Delete => "deleted",
        }
    }

    /// What a client can do instead, when there is something.
    fn hint(self, status: BatchStatus) -> &'static str {
        match (self, status) {
            (Action::Delete, Queued | Processing) => "; cancel it first",
            (Action::AddObjects, _) => "; create a new batch for more objects",
            _ => "",
        }
    }
}

/// What an action means for a batch in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The action applies: write it (conditionally on the status).
    Apply,
    /// Done already: answer with the batch as it is (a repeated submit,
    /// a repeated cancel).
    Settled,
}

/// Whether `action` applies to a batch in `status`, is settled already, or
/// is refused with the error the client sees.
pub fn decide(
    batch_id: &BatchId,
    status: BatchStatus,
    action: Action,
) -> Result<Verdict, BatchError> {
    if action.from().contains(&status) {
        return Ok(Verdict::Apply);
    }
    let settled = match action {
        // Submitting again answers with the task of the first submit.
        Action::Submit => status != Draft,
        Action::Cancel => status == Canceled,
        _ => false,
    };
    if settled {
        return Ok(Verdict::Settled);
    }
    Err(BatchError::WrongStatus {
        batch_id: batch_id.to_owned(),
        status,
        action,
    })
}

/// Why a batch whose claims ran out fails: its workers were lost
/// `attempts` times, the last being `last_owner`.
pub fn workers_lost(attempts: u32, last_owner: Option<&str>) -> String {
    format!(
        "the worker running it was lost {attempts} time{} (last: {}); giving up",
        if attempts == 1 { "" } else { "s" },
        last_owner.unwrap_or("unknown")
    )
}

/// A batch rule a request broke. Every one is a conflict with the state
/// of the batch, its bucket or its collections (HTTP 409).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// The action does not apply in the batch's status.
    #[error(
        "batch `{batch_id}` is {status}; only a {} batch can be {}{}",
        statuses(action.from()),
        action.done(),
        action.hint(*status)
    )]
    WrongStatus {
        /// The batch.
        batch_id: BatchId,
        /// Its status.
        status: BatchStatus,
        /// What was asked.
        action: Action,
    },
    /// Objects were added between the submit's plan and its write.
    #[error(
        "objects were added to batch `{batch_id}` while it was being submitted; submit it again"
    )]
    ObjectsChanged {
        /// The batch.
        batch_id: BatchId,
    },
    /// A retry of a batch whose collections are gone.
    #[error(
        "batch `{batch_id}` ran collections that were deleted since: {}; create a new batch",
        names.join(", ")
    )]
    CollectionsGone {
        /// The batch.
        batch_id: BatchId,
        /// The collections' names at submit.
        names: Vec<String>,
    },
    /// A retry of a batch where every object completed.
    #[error("batch `{batch_id}` has no failed or unfinished objects to retry")]
    NothingToRetry {
        /// The batch.
        batch_id: BatchId,
    },
    /// A retry of a batch that never ran.
    #[error("batch `{batch_id}` was never submitted")]
    NeverSubmitted {
        /// The batch.
        batch_id: BatchId,
    },
    /// A bucket or collection cannot go while batches run over it.
    #[error("{kind} `{id}` has batches queued or processing: {}", joined(batches))]
    InUse {
        /// `bucket` or `collection`.
        kind: &'static str,
        /// Its id.
        id: String,
        /// The active batches.
        batches: Vec<BatchId>,
    },
    /// A bucket cannot go while collections read from it.
    #[error("bucket `{bucket_id}` is the source of collections {}; delete them first", collections.join(", "))]
    SourceOf {
        /// The bucket.
        bucket_id: BucketId,
        /// The collections' names.
        collections: Vec<String>,
    },
}

/// `a, b, c`.
fn joined(ids: &[BatchId]) -> String {
    ids.iter()
        .map(BatchId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `A`, `A or B`, `A, B or C`.
fn statuses(list: &[BatchStatus]) -> String {
    let names: Vec<&str> = list.iter().map(|s| s.as_str()).collect();
    match names.split_last() {
        None => "no".to_owned(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_one_transition_and_leads_somewhere_it_may_go() {
        for action in ACTIONS {
            let rows = TRANSITIONS.iter().filter(|(a, _, _)| *a == action).count();
            assert_eq!(rows, 1, "{action:?}");
            assert!(!action.from().is_empty(), "{action:?}");
        }
        // Terminal statuses change only by a retry or a delete.
        for status in BatchStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            let leaving: Vec<Action> = ACTIONS
                .into_iter()
                .filter(|a| a.from().contains(&status))
                .collect();
            assert_eq!(leaving, [Action::Retry, Action::Delete], "{status:?}");
        }
    }

    #[test]
    fn the_table_decides_every_status_and_action() {
        use Verdict::{Apply, Settled};
        let expected: [(Action, [Option<Verdict>; 6]); 8] = [
            // DRAFT, QUEUED, PROCESSING, COMPLETED, FAILED, CANCELED
            (
                Action::AddObjects,
                [Some(Apply), None, None, None, None, None],
            ),
            (
                Action::Submit,
                [
                    Some(Apply),
                    Some(Settled),
                    Some(Settled),
                    Some(Settled),
                    Some(Settled),
                    Some(Settled),
                ],
            ),
            (
                Action::Claim,
                [None, Some(Apply), Some(Apply), None, None, None],
            ),
            (
                Action::Complete,
                [None, None, Some(Apply), None, None, None],
            ),
            (Action::Fail, [None, None, Some(Apply), None, None, None]),
            (
                Action::Cancel,
                [None, Some(Apply), Some(Apply), None, None, Some(Settled)],
            ),
            (
                Action::Retry,
                [None, None, None, Some(Apply), Some(Apply), Some(Apply)],
            ),
            (
                Action::Delete,
                [
                    Some(Apply),
                    None,
                    None,
                    Some(Apply),
                    Some(Apply),
                    Some(Apply),
                ],
            ),
        ];
        for (action, row) in expected {
            for (status, want) in BatchStatus::ALL.into_iter().zip(row) {
                let got = decide(&BatchId::from("b"), status, action).ok();
                assert_eq!(got, want, "{action:?} on {status:?}");
            }
        }
    }

    #[test]
    fn refusals_name_the_batch_its_status_and_what_would_do() {
        let message = |status, action| {
            decide(&BatchId::from("btch_1"), status, action)
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            message(Processing, Action::Delete),
            "batch `btch_1` is PROCESSING; only a DRAFT, COMPLETED, FAILED or CANCELED batch can be deleted; cancel it first"
        );
        assert_eq!(
            message(Completed, Action::Cancel),
            "batch `btch_1` is COMPLETED; only a QUEUED or PROCESSING batch can be canceled"
        );
        assert_eq!(
            message(Queued, Action::Retry),
            "batch `btch_1` is QUEUED; only a COMPLETED, FAILED or CANCELED batch can be retried"
        );
        assert_eq!(
            message(Queued, Action::AddObjects),
            "batch `btch_1` is QUEUED; only a DRAFT batch can be given objects; create a new batch for more objects"
        );
    }

    #[test]
    fn lost_workers_are_counted_in_the_reason() {
        assert_eq!(
            workers_lost(1, Some("host-1")),
            "the worker running it was lost 1 time (last: host-1); giving up"
        );
        assert_eq!(
            workers_lost(3, None),
            "the worker running it was lost 3 times (last: unknown); giving up"
        );
    }
}
