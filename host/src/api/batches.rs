//! Batches: objects of a bucket to run through every collection of it,
//! with their tasks and live progress.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::auth::Caller;
use super::buckets::find_bucket;
use super::error::InvalidParam;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, OptionalJson, Path, Query};
use crate::batches::{self, Action, SubmitError};
use crate::progress::{self, Check, Health, Progress};
use crate::store::{
    BatchId, BatchObject, BatchRecord, BatchStatus, Bucket, BucketId, CollectionId, LeaseHolder,
    ObjectId, PinnedCollection, ShardRecord, ShardStatus, StoreError, TaskId, Timestamp, WorkerId,
};

/// Routes.
pub fn routes() -> Router<AppState> {
    let batch = "/v1/buckets/{bucket}/batches/{batch}";
    Router::new()
        .route(
            "/v1/buckets/{bucket}/batches",
            post(create_batch).get(list_batches),
        )
        .route(batch, get(get_batch).delete(delete_batch))
        .route(
            &format!("{batch}/objects"),
            post(add_objects).get(list_batch_objects),
        )
        .route(&format!("{batch}/submit"), post(submit_batch))
        .route(&format!("{batch}/cancel"), post(cancel_batch))
        .route(&format!("{batch}/retry"), post(retry_batch))
        .route(&format!("{batch}/health"), get(batch_health))
        .route(&format!("{batch}/shards"), get(list_shards))
        .route(&format!("{batch}/events"), get(super::events::batch_events))
        .route("/v1/tasks/{task_id}", get(get_task))
}

/// Most object ids one request may name.
const MAX_IDS_PER_REQUEST: usize = 100_000;

/// `POST /v1/buckets/{bucket}/batches` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// Free text, up to 256 characters.
    #[schema(max_length = 256)]
    pub batch_name: Option<String>,
    /// Objects of the bucket to process; more may be added while DRAFT.
    #[serde(default)]
    pub object_ids: Vec<ObjectId>,
}

/// `POST …/batches/{batch}/objects` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddObjects {
    /// Objects of the bucket to add; those already in the batch are ignored.
    pub object_ids: Vec<ObjectId>,
}

/// `POST …/batches/{batch}/submit` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// Record each enrichment in `internal_metadata.processing_history`.
    #[serde(default)]
    pub include_processing_history: bool,
}

/// The answer to a submit: the task to poll.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Submitted {
    /// The batch.
    pub batch_id: BatchId,
    /// Poll `/v1/tasks/{task_id}` or the batch.
    pub task_id: TaskId,
    /// `QUEUED`, or the status of a batch submitted before.
    pub status: BatchStatus,
}

/// One collection's pipeline as a batch runs it, pinned at submit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PinnedCollection)]
pub struct PinnedView {
    /// The collection.
    pub collection_id: CollectionId,
    /// Its name at submit.
    pub collection_name: String,
    /// The extractors with their versions resolved.
    pub extractors: Vec<crate::pipeline::ExtractorRef>,
    /// Tiers as `name@version`.
    pub tiers: Vec<Vec<String>>,
    /// Output columns, `extractor.column` to Arrow type.
    pub output_schema: BTreeMap<String, String>,
    /// Signature of this pipeline.
    pub index_signature: String,
}

impl From<PinnedCollection> for PinnedView {
    fn from(p: PinnedCollection) -> Self {
        PinnedView {
            collection_id: p.collection_id,
            collection_name: p.collection_name,
            extractors: p.extractors,
            tiers: p.tiers,
            output_schema: p.output_schema,
            index_signature: p.index_signature,
        }
    }
}

/// One object's outcome in a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = BatchObject)]
pub struct BatchObjectView {
    /// The object.
    pub object_id: ObjectId,
    /// `pending`, `completed` or `failed`.
    pub status: String,
    /// What went wrong, when it failed.
    pub error: Option<String>,
}

impl From<BatchObject> for BatchObjectView {
    fn from(o: BatchObject) -> Self {
        BatchObjectView {
            object_id: o.object_id,
            status: o.status,
            error: o.error,
        }
    }
}

/// A batch as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchView {
    /// `btch_…`
    pub batch_id: BatchId,
    /// Owning bucket.
    pub bucket_id: BucketId,
    /// Free text.
    pub batch_name: Option<String>,
    /// DRAFT, QUEUED, PROCESSING, COMPLETED, FAILED or CANCELED.
    pub status: BatchStatus,
    /// The task handle, once submitted.
    pub task_id: Option<TaskId>,
    /// Objects in the batch.
    pub object_count: u64,
    /// Live progress.
    pub progress: Progress,
    /// One line for dashboards and logs.
    pub status_message: String,
    /// `healthy`, `degraded` or `unhealthy`; `/health` explains.
    pub health: Health,
    /// ISO 8601 estimate of completion (the time of completion once done).
    pub estimated_completion: Option<Timestamp>,
    /// Why the batch failed.
    pub error_message: Option<String>,
    /// Errors by category, `extractor.kind`.
    pub error_summary: BTreeMap<String, u64>,
    /// Whether documents record each enrichment.
    pub include_processing_history: bool,
    /// The pipelines the batch runs, versions pinned at submit.
    pub collections: Vec<PinnedView>,
    /// Claims of its most claimed shard.
    pub attempts: u32,
    /// Its shards by status: a shard (`--shard-objects` objects) is what
    /// one worker runs at a time; `…/shards` lists them.
    #[schema(value_type = BTreeMap<String, u32>)]
    pub shards: BTreeMap<ShardStatus, u32>,
    /// RFC 3339.
    pub created_at: Timestamp,
    /// RFC 3339.
    pub updated_at: Timestamp,
    /// RFC 3339.
    pub submitted_at: Option<Timestamp>,
    /// RFC 3339: first claimed by a poller.
    pub started_at: Option<Timestamp>,
    /// RFC 3339: reached COMPLETED, FAILED or CANCELED.
    pub completed_at: Option<Timestamp>,
}

/// The task of a submitted batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    /// `task_…`
    pub task_id: TaskId,
    /// Always `batch_processing`.
    pub task_type: &'static str,
    /// The batch.
    pub batch_id: BatchId,
    /// Its bucket.
    pub bucket_id: BucketId,
    /// The batch's status.
    pub status: BatchStatus,
    /// The batch's progress.
    pub progress: Progress,
    /// One line for dashboards and logs.
    pub status_message: String,
    /// Why the batch failed.
    pub error_message: Option<String>,
    /// RFC 3339: when the batch was submitted.
    pub created_at: Timestamp,
    /// RFC 3339.
    pub updated_at: Timestamp,
}

/// `GET …/batches/{batch}/health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthView {
    /// The batch.
    pub batch_id: BatchId,
    /// Its status.
    pub status: BatchStatus,
    /// The worst of the checks.
    pub health: Health,
    /// Each check with its reason.
    pub checks: Vec<Check>,
    /// The numbers the checks used.
    pub progress: Progress,
}

/// `?status=` of the batch list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchFilter {
    /// Only batches of this status.
    #[param(pattern = "^(DRAFT|QUEUED|PROCESSING|COMPLETED|FAILED|CANCELED)$")]
    pub status: Option<String>,
    /// Most results per page (1–1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// `?status=` of a batch's object list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ObjectFilter {
    /// `pending`, `completed` or `failed`.
    #[param(pattern = "^(pending|completed|failed)$")]
    pub status: Option<String>,
    /// Most results per page (1–1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl AppState {
    pub(super) fn view(&self, b: BatchRecord) -> BatchView {
        let r = progress::report(&b, chrono::Utc::now(), &self.health);
        BatchView {
            task_id: (b.status != BatchStatus::Draft).then_some(b.task_id),
            object_count: b.total,
            progress: r.progress,
            status_message: r.status_message,
            health: r.health,
            estimated_completion: r.estimated_completion,
            batch_id: b.batch_id,
            bucket_id: b.bucket_id,
            batch_name: b.batch_name,
            status: b.status,
            error_message: b.error_message,
            error_summary: b.error_summary,
            include_processing_history: b.include_processing_history,
            collections: b.collections.into_iter().map(PinnedView::from).collect(),
            attempts: b.attempts,
            shards: b.shards,
            created_at: b.created_at,
            updated_at: b.updated_at,
            submitted_at: b.submitted_at,
            started_at: b.started_at,
            completed_at: b.finished_at,
        }
    }
}

/// The bucket (id or name) of the caller's namespace and its batch
/// `batch_id`, or 404.
pub(super) async fn find_batch(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    batch_id: &BatchId,
) -> ApiResult<(Bucket, BatchRecord)> {
    let bucket = find_bucket(state, caller, bucket).await?;
    let batch = batches::read(state.store.as_ref(), &bucket.bucket_id, batch_id)
        .await?
        .ok_or_else(|| ApiError::not_found("batch", batch_id))?;
    Ok((bucket, batch))
}

/// Checks a list of object ids: present, non-empty, not too many.
fn check_ids(ids: &[ObjectId]) -> ApiResult<()> {
    if ids.len() > MAX_IDS_PER_REQUEST {
        return Err(ApiError::invalid(
            "object_ids",
            format!(
                "at most {MAX_IDS_PER_REQUEST} per request; add the rest with `POST …/objects`"
            ),
        ));
    }
    if let Some(i) = ids.iter().position(|id| id.trim().is_empty()) {
        return Err(ApiError::invalid(
            format!("object_ids[{i}]"),
            "must not be empty",
        ));
    }
    Ok(())
}

/// 422 when some of `ids` are not objects of the bucket, listing them.
async fn check_objects_exist(state: &AppState, bucket: &Bucket, ids: &[ObjectId]) -> ApiResult<()> {
    let missing = state.store.missing_objects(&bucket.bucket_id, ids).await?;
    if missing.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 50;
    let mut listed = missing
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if missing.len() > SHOWN {
        listed.push_str(&format!(" and {} more", missing.len() - SHOWN));
    }
    Err(ApiError::invalid_many(
        format!(
            "{} object id(s) are not objects of bucket `{}`: {listed}",
            missing.len(),
            bucket.bucket_name
        ),
        vec![InvalidParam {
            name: "object_ids".into(),
            reason: format!("unknown objects: {listed}"),
        }],
    ))
}

/// Hex SHA-256 of a request body in canonical form.
fn request_hash(body: &CreateBatch) -> String {
    let mut ids = body.object_ids.clone();
    ids.sort();
    ids.dedup();
    let canonical = serde_json::json!([body.batch_name, ids]).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// `POST /v1/buckets/{bucket}/batches`: a DRAFT batch. With an
/// `Idempotency-Key` header, a retried create returns the same batch
/// (200, `Idempotent-Replayed: true`); the same key with another body is 422.
#[utoipa::path(post, path = "/v1/buckets/{bucket}/batches", tag = "batches",
    request_body = CreateBatch,
    params(("bucket" = String, Path, description = "bucket id or name"),
        ("Idempotency-Key" = Option<String>, Header, description = "makes a retried create safe")),
    responses((status = 201, body = BatchView), (status = 200, body = BatchView, description = "replayed"),
        (status = 404, body = super::error::Problem), (status = 422, body = super::error::Problem)))]
pub async fn create_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CreateBatch>,
) -> ApiResult<Response> {
    let bucket = find_bucket(&state, &caller, &bucket).await?;
    if body
        .batch_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 256)
    {
        return Err(ApiError::invalid("batch_name", "at most 256 characters"));
    }
    check_ids(&body.object_ids)?;
    state.tenancy.check_objects(body.object_ids.len() as u64)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().ok().map(str::trim).unwrap_or("");
            if key.is_empty() || key.len() > 255 {
                return Err(ApiError::invalid(
                    "Idempotency-Key",
                    "must be 1–255 visible ASCII characters",
                ));
            }
            Some(key.to_owned())
        }
    };
    let hash = request_hash(&body);
    // A replay answers as the first request did, whatever changed since.
    if let Some(key) = &key
        && let Some(existing) = state
            .store
            .batch_by_idempotency_key(&bucket.bucket_id, key)
            .await?
    {
        return replay(&state, existing, &hash);
    }
    check_objects_exist(&state, &bucket, &body.object_ids).await?;
    let record = BatchRecord::draft(
        &bucket.namespace_id,
        &bucket.bucket_id,
        body.batch_name,
        key.map(|k| (k, hash.clone())),
    );
    match state.store.create_batch(&record, &body.object_ids).await? {
        Ok(created) => Ok((StatusCode::CREATED, Json(state.view(created))).into_response()),
        Err(existing) => replay(&state, existing, &hash),
    }
}

/// The answer to a create repeated with the same `Idempotency-Key`: the
/// batch it created, or 422 when the body differs.
fn replay(state: &AppState, existing: BatchRecord, hash: &str) -> ApiResult<Response> {
    if existing.idempotency.as_ref().map(|(_, h)| h.as_str()) != Some(hash) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            format!(
                "was used for batch `{}` with a different request body",
                existing.batch_id
            ),
        ));
    }
    let mut response = Json(state.view(existing)).into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

/// `GET /v1/buckets/{bucket}/batches` (`?status=` filters).
#[utoipa::path(get, path = "/v1/buckets/{bucket}/batches", tag = "batches",
    params(("bucket" = String, Path, description = "bucket id or name"), BatchFilter),
    responses((status = 200, body = List<BatchView>), (status = 422, body = super::error::Problem)))]
pub async fn list_batches(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
    Query(filter): Query<BatchFilter>,
) -> ApiResult<Json<List<BatchView>>> {
    let bucket = find_bucket(&state, &caller, &bucket).await?;
    let status = match &filter.status {
        None => None,
        Some(s) => Some(BatchStatus::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
            ApiError::invalid(
                "status",
                format!(
                    "`{s}` is not one of DRAFT, QUEUED, PROCESSING, COMPLETED, FAILED, CANCELED"
                ),
            )
        })?),
    };
    let list = format!("batches:{}", status.map_or("", BatchStatus::as_str));
    let params = ListParams {
        limit: filter.limit,
        page_token: filter.page_token,
    };
    let mut page = state
        .store
        .list_batches(&bucket.bucket_id, status, &params.page(&list)?)
        .await?;
    page.items = batches::shards::with_progress(state.store.as_ref(), page.items).await?;
    Ok(Json(List::of(page, &list, |b| state.view(b))))
}

/// `GET /v1/buckets/{bucket}/batches/{batch}`: the batch with its live
/// progress, status message, health and estimated completion.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/batches/{batch}", tag = "batches",
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path)),
    responses((status = 200, body = BatchView), (status = 404, body = super::error::Problem)))]
pub async fn get_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
) -> ApiResult<Json<BatchView>> {
    let (_, batch) = find_batch(&state, &caller, &bucket, &batch).await?;
    Ok(Json(state.view(batch)))
}

/// `DELETE /v1/buckets/{bucket}/batches/{batch}`: DRAFT or finished
/// batches only (409 otherwise); documents stay.
#[utoipa::path(delete, path = "/v1/buckets/{bucket}/batches/{batch}", tag = "batches",
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem)))]
pub async fn delete_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
) -> ApiResult<StatusCode> {
    let (_, batch) = find_batch(&state, &caller, &bucket, &batch).await?;
    let artifacts = batches::delete(state.store.as_ref(), &batch).await?;
    for key in artifacts {
        if let Err(e) = state.blobs.delete(&key).await {
            tracing::warn!(%key, error = %e, "removing a batch artifact failed");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/batches/{batch}/objects`: adds objects to a DRAFT batch (409
/// otherwise); ids already in it are ignored, unknown ids are 422.
#[utoipa::path(post, path = "/v1/buckets/{bucket}/batches/{batch}/objects", tag = "batches",
    request_body = AddObjects,
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path)),
    responses((status = 200, body = BatchView), (status = 409, body = super::error::Problem),
        (status = 422, body = super::error::Problem)))]
pub async fn add_objects(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
    Json(body): Json<AddObjects>,
) -> ApiResult<Json<BatchView>> {
    let (bucket, batch) = find_batch(&state, &caller, &bucket, &batch).await?;
    if body.object_ids.is_empty() {
        return Err(ApiError::invalid("object_ids", "name at least one object"));
    }
    check_ids(&body.object_ids)?;
    state
        .tenancy
        .check_objects(batch.total + body.object_ids.len() as u64)?;
    batches::lifecycle::decide(&batch.batch_id, batch.status, Action::AddObjects)
        .map_err(StoreError::from)?;
    check_objects_exist(&state, &bucket, &body.object_ids).await?;
    let batch = batches::add_objects(state.store.as_ref(), &batch, &body.object_ids).await?;
    Ok(Json(state.view(batch)))
}

/// `GET …/batches/{batch}/objects?status=pending|completed|failed`: each
/// object's outcome and error.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/batches/{batch}/objects", tag = "batches",
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path), ObjectFilter),
    responses((status = 200, body = List<BatchObjectView>), (status = 422, body = super::error::Problem)))]
pub async fn list_batch_objects(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
    Query(filter): Query<ObjectFilter>,
) -> ApiResult<Json<List<BatchObjectView>>> {
    let (_, batch) = find_batch(&state, &caller, &bucket, &batch).await?;
    let status = match filter.status.as_deref() {
        None => None,
        Some(s @ ("pending" | "completed" | "failed")) => Some(s),
        Some(s) => {
            return Err(ApiError::invalid(
                "status",
                format!("`{s}` is not one of pending, completed, failed"),
            ));
        }
    };
    let list = format!("batch-objects:{}:{}", batch.batch_id, status.unwrap_or(""));
    let params = ListParams {
        limit: filter.limit,
        page_token: filter.page_token,
    };
    let page = state
        .store
        .list_batch_objects(&batch.batch_id, status, &params.page(&list)?)
        .await?;
    Ok(Json(List::of(page, &list, BatchObjectView::from)))
}

/// `POST …/batches/{batch}/submit`: plans the batch for every collection
/// of its bucket, pins the extractor versions, writes one Parquet manifest
/// per extractor and queues it. Submitting again returns the same task.
#[utoipa::path(post, path = "/v1/buckets/{bucket}/batches/{batch}/submit", tag = "batches",
    request_body(content = Option<SubmitBatch>, description = "optional: an empty body submits with the defaults"),
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path)),
    responses((status = 200, body = Submitted), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem),
        (status = 429, body = super::error::Problem), (status = 503, body = super::error::Problem)))]
pub async fn submit_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
    OptionalJson(body): OptionalJson<SubmitBatch>,
) -> ApiResult<Json<Submitted>> {
    let body = body.unwrap_or_default();
    let (bucket, batch) = find_batch(&state, &caller, &bucket, &batch).await?;
    let submitted = |b: BatchRecord| Submitted {
        batch_id: b.batch_id,
        task_id: b.task_id,
        status: b.status,
    };
    if batch.status != BatchStatus::Draft {
        return Ok(Json(submitted(batch)));
    }
    state.tenancy.check_objects(batch.total)?;
    let in_flight = state
        .store
        .count_batches(&bucket.namespace_id, &batches::lifecycle::ACTIVE)
        .await?;
    state.tenancy.check_batches(in_flight)?;
    let _plan = state.tenancy.plan(&bucket.namespace_id)?;
    let queued = state
        .submitter()
        .submit(&batch, &bucket.bucket_name, body.include_processing_history)
        .await
        .map_err(|e| match e {
            SubmitError::Empty => ApiError::invalid(
                "object_ids",
                "the batch holds no objects; add some with `POST …/objects` first",
            ),
            SubmitError::NoCollections(bucket) => ApiError::invalid(
                "bucket_id",
                format!(
                    "no collection reads from bucket `{bucket}`; create one with `POST /v1/collections` first"
                ),
            ),
            SubmitError::Pipeline { collection, error } => {
                ApiError::pipeline(error, &format!("collections[{collection}]."))
            }
            e @ SubmitError::Manifest(_) => ApiError::internal(&e),
            SubmitError::Blob(e) => e.into(),
            SubmitError::Store(e) => e.into(),
        })?;
    state.wake.notify_one();
    Ok(Json(submitted(queued)))
}

/// `POST …/batches/{batch}/cancel`: QUEUED or PROCESSING → CANCELED (409
/// otherwise); documents already written stay.
#[utoipa::path(post, path = "/v1/buckets/{bucket}/batches/{batch}/cancel", tag = "batches",
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path)),
    responses((status = 200, body = BatchView), (status = 409, body = super::error::Problem)))]
pub async fn cancel_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
) -> ApiResult<Json<BatchView>> {
    let (_, batch) = find_batch(&state, &caller, &bucket, &batch).await?;
    let batch = batches::cancel(state.store.as_ref(), &batch).await?;
    Ok(Json(state.view(batch)))
}

/// `POST …/batches/{batch}/retry`: re-queues the objects of a finished
/// batch that did not complete (409 when there are none).
#[utoipa::path(post, path = "/v1/buckets/{bucket}/batches/{batch}/retry", tag = "batches",
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path)),
    responses((status = 200, body = BatchView), (status = 409, body = super::error::Problem)))]
pub async fn retry_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
) -> ApiResult<Json<BatchView>> {
    let (_, batch) = find_batch(&state, &caller, &bucket, &batch).await?;
    let batch = batches::retry(state.store.as_ref(), &batch).await?;
    state.wake.notify_one();
    Ok(Json(state.view(batch)))
}

/// `GET …/batches/{batch}/health`: the verdict and each check behind it.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/batches/{batch}/health", tag = "batches",
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path)),
    responses((status = 200, body = HealthView), (status = 404, body = super::error::Problem)))]
pub async fn batch_health(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
) -> ApiResult<Json<HealthView>> {
    let (_, batch) = find_batch(&state, &caller, &bucket, &batch).await?;
    let r = progress::report(&batch, chrono::Utc::now(), &state.health);
    Ok(Json(HealthView {
        batch_id: batch.batch_id,
        status: batch.status,
        health: r.health,
        checks: r.checks,
        progress: r.progress,
    }))
}

/// `GET /v1/tasks/{task_id}`: the task of a submitted batch, its status
/// synchronised with the batch.
#[utoipa::path(get, path = "/v1/tasks/{task_id}", tag = "tasks",
    params(("task_id" = String, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = super::error::Problem)))]
pub async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(task_id): Path<TaskId>,
) -> ApiResult<Json<TaskView>> {
    let b = batches::by_task(
        state.store.as_ref(),
        &caller.namespace.namespace_id,
        &task_id,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("task", &task_id))?;
    let r = progress::report(&b, chrono::Utc::now(), &state.health);
    Ok(Json(TaskView {
        task_id: b.task_id,
        task_type: "batch_processing",
        batch_id: b.batch_id,
        bucket_id: b.bucket_id,
        status: b.status,
        progress: r.progress,
        status_message: r.status_message,
        error_message: b.error_message,
        created_at: b.submitted_at.unwrap_or(b.created_at),
        updated_at: b.updated_at,
    }))
}

/// A shard as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ShardView {
    /// From 0, in object order.
    pub shard_index: u32,
    /// QUEUED, PROCESSING, COMPLETED, FAILED or CANCELED.
    pub status: ShardStatus,
    /// Objects in the shard.
    pub objects: u64,
    /// Its first object.
    pub first_object_id: ObjectId,
    /// Its last object.
    pub last_object_id: ObjectId,
    /// Objects that finished every collection.
    pub processed: u64,
    /// Of those, objects with at least one error.
    pub errors: u64,
    /// Times a worker claimed it.
    pub attempts: u32,
    /// The worker running it and when its lease expires.
    pub lease: Option<LeaseView>,
    /// The worker that ran it last (`/v1/workers`).
    pub worker: Option<WorkerId>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// RFC 3339.
    pub started_at: Option<Timestamp>,
    /// RFC 3339.
    pub finished_at: Option<Timestamp>,
}

/// Who holds a shard.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeaseView {
    /// The worker (`/v1/workers`).
    pub worker_id: WorkerId,
    /// RFC 3339.
    pub expires_at: Timestamp,
}

impl From<ShardRecord> for ShardView {
    fn from(s: ShardRecord) -> Self {
        ShardView {
            shard_index: s.shard_index,
            status: s.status,
            objects: s.objects,
            first_object_id: s.first_object_id,
            last_object_id: s.last_object_id,
            processed: s.processed,
            errors: s.failed,
            attempts: s.attempts,
            lease: s.lease.map(|LeaseHolder { owner, expires_ms }| LeaseView {
                worker_id: owner,
                expires_at: Timestamp::from_millis(expires_ms)
                    .unwrap_or_else(|| Timestamp::from(chrono::DateTime::UNIX_EPOCH)),
            }),
            worker: s.worker,
            error_message: s.error_message,
            started_at: s.started_at,
            finished_at: s.finished_at,
        }
    }
}

/// `GET …/batches/{batch}/shards`: the batch's shards in order, with
/// their status, progress, attempts and the worker running each.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/batches/{batch}/shards", tag = "batches",
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path), super::ListParams),
    responses((status = 200, body = List<ShardView>), (status = 404, body = super::error::Problem)))]
pub async fn list_shards(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<ShardView>>> {
    let (_, batch) = find_batch(&state, &caller, &bucket, &batch).await?;
    let list = format!("shards:{}", batch.batch_id);
    let page = state
        .store
        .list_shards(&batch.batch_id, &params.page(&list)?)
        .await?;
    Ok(Json(List::of(page, &list, ShardView::from)))
}
