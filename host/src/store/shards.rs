//! Shards as stored: a submitted batch is split into shards, ranges of its
//! objects, and workers claim shards, not batches. Each shard carries its
//! own lease, counters and the worker's last report; a batch's progress is
//! the sum of its shards' (see `crate::batches::progress`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{LiveProgress, Timestamp};
use crate::store::{BatchId, NamespaceId, ObjectId, WorkerId};

/// Where a shard is in its life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShardStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker holds its lease and runs it.
    Processing,
    /// Every object of it went through every collection.
    Completed,
    /// Its workers kept dying, or it could not run.
    Failed,
    /// Its batch was canceled or failed first.
    Canceled,
}

impl ShardStatus {
    /// Every status, in life order.
    pub const ALL: [ShardStatus; 5] = [
        ShardStatus::Queued,
        ShardStatus::Processing,
        ShardStatus::Completed,
        ShardStatus::Failed,
        ShardStatus::Canceled,
    ];

    /// Statuses with work left: queued or processing.
    pub const ACTIVE: [ShardStatus; 2] = [ShardStatus::Queued, ShardStatus::Processing];

    /// The name stored and shown, e.g. `QUEUED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardStatus::Queued => "QUEUED",
            ShardStatus::Processing => "PROCESSING",
            ShardStatus::Completed => "COMPLETED",
            ShardStatus::Failed => "FAILED",
            ShardStatus::Canceled => "CANCELED",
        }
    }

    /// The status named `name` (as stored).
    pub fn parse(name: &str) -> Option<ShardStatus> {
        ShardStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether no worker will touch the shard again (unless its batch is
    /// retried).
    pub fn is_terminal(self) -> bool {
        !ShardStatus::ACTIVE.contains(&self)
    }
}

impl std::fmt::Display for ShardStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who holds a shard, and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// The worker.
    pub owner: WorkerId,
    /// Milliseconds since the epoch.
    pub expires_ms: i64,
}

/// A range of a batch's objects: the unit workers claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// The batch.
    pub batch_id: BatchId,
    /// From 0, in object order.
    pub shard_index: u32,
    /// The batch's namespace.
    pub namespace_id: NamespaceId,
    /// Where the shard is.
    pub status: ShardStatus,
    /// Objects in the shard.
    pub objects: u64,
    /// Its first row in the batch's manifests.
    pub row_start: u64,
    /// Its first object id.
    pub first_object_id: ObjectId,
    /// Its last object id (objects are in id order).
    pub last_object_id: ObjectId,
    /// Objects that finished every collection.
    pub processed: u64,
    /// Of those, objects with at least one error.
    pub failed: u64,
    /// Failed objects by error category.
    pub error_summary: BTreeMap<String, u64>,
    /// Times a worker claimed it.
    pub attempts: u32,
    /// The worker holding it, while it runs.
    pub lease: Option<LeaseHolder>,
    /// The worker that claimed it last (kept once it ends).
    pub worker: Option<WorkerId>,
    /// The holder's last report.
    pub live: Option<LiveProgress>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// RFC 3339.
    pub updated_at: Timestamp,
    /// RFC 3339, when first claimed.
    pub started_at: Option<Timestamp>,
    /// RFC 3339, when it reached a terminal status.
    pub finished_at: Option<Timestamp>,
}

/// A shard's lease, as its worker holds it: every write the worker makes
/// for the shard carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The batch.
    pub batch_id: BatchId,
    /// The shard.
    pub shard_index: u32,
    /// The worker.
    pub owner: WorkerId,
    /// Random: the store takes a worker's write only with it.
    pub token: String,
}

/// What a conditional shard write requires of the stored shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardExpect {
    /// It is in one of these.
    pub statuses: Vec<ShardStatus>,
    /// Its lease carries this token (when set).
    pub token: Option<String>,
    /// Its lease expired before this time, in ms since the epoch (when
    /// set): a rescue never takes a lease renewed meanwhile.
    pub expired_by: Option<i64>,
}

/// A shard's new status, with what changes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardChange {
    /// The new status: PROCESSING sets `started_at` once, a terminal
    /// status sets `finished_at`.
    pub status: ShardStatus,
    /// The new lease (`None`: dropped, with the holder's report).
    pub lease: Option<(LeaseHolder, String)>,
    /// Added to `attempts`.
    pub attempts: i64,
    /// Why it failed.
    pub error_message: Option<String>,
}

/// A worker process, as its heartbeats report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Names the worker in leases and logs.
    pub worker_id: WorkerId,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Shards it runs at once, at most.
    pub slots: u32,
    /// RFC 3339.
    pub started_at: Timestamp,
    /// RFC 3339: its last heartbeat.
    pub heartbeat_at: Timestamp,
}
