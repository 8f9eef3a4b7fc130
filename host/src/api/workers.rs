//! Workers: the processes running shards, as their heartbeats report them
//! (admin keys only: workers serve every namespace).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use super::auth::Admin;
use super::{ApiResult, AppState, Json};
use crate::store::{ShardStatus, Timestamp, WorkerId, WorkerRecord};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/workers", get(list_workers))
}

/// Workers not heard from for this long are left out.
const SILENT_AFTER_MS: i64 = 5 * 60 * 1000;

/// A live worker.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkerView {
    /// Names the worker in shard leases.
    pub worker_id: WorkerId,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Shards it runs at once, at most.
    pub slots: u32,
    /// Shards it holds now.
    pub shards_held: u32,
    /// RFC 3339.
    pub started_at: Timestamp,
    /// RFC 3339: its last heartbeat.
    pub last_heartbeat_at: Timestamp,
}

/// `GET /v1/workers`: workers heard from in the last five minutes, with
/// the shards each holds now (admin keys only).
#[utoipa::path(get, path = "/v1/workers", tag = "workers",
    responses((status = 200, body = Vec<WorkerView>), (status = 403, body = super::error::Problem)))]
pub async fn list_workers(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<Json<Vec<WorkerView>>> {
    let since = chrono::Utc::now().timestamp_millis() - SILENT_AFTER_MS;
    let workers = state.store.workers(since).await?;
    let running = state
        .store
        .active_shards(&[ShardStatus::Processing])
        .await?;
    Ok(Json(
        workers
            .into_iter()
            .map(|w: WorkerRecord| WorkerView {
                shards_held: running
                    .iter()
                    .filter(|(s, _)| s.lease.as_ref().is_some_and(|l| l.owner == w.worker_id))
                    .count() as u32,
                worker_id: w.worker_id,
                host: w.host,
                pid: w.pid,
                slots: w.slots,
                started_at: w.started_at,
                last_heartbeat_at: w.heartbeat_at,
            })
            .collect(),
    ))
}
