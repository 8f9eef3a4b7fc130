//! Buckets: named sets of objects.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::namespaces::check_name;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Path, Query};
use crate::store::{Bucket, BucketId, NamespaceId, Timestamp, now};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/buckets", post(create_bucket).get(list_buckets))
        .route(
            "/v1/buckets/{bucket}",
            get(get_bucket).delete(delete_bucket),
        )
}

/// `POST /v1/buckets` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBucket {
    /// Unique in the namespace: 1–64 letters, digits, `-`, `_` or `.`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub bucket_name: String,
    /// Free text.
    pub description: Option<String>,
}

/// A bucket as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Bucket)]
pub struct BucketView {
    /// `bkt_…`
    pub bucket_id: BucketId,
    /// Owning namespace.
    pub namespace_id: NamespaceId,
    /// Unique in the namespace.
    pub bucket_name: String,
    /// Free text.
    pub description: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
}

impl From<Bucket> for BucketView {
    fn from(b: Bucket) -> Self {
        BucketView {
            bucket_id: b.bucket_id,
            namespace_id: b.namespace_id,
            bucket_name: b.bucket_name,
            description: b.description,
            created_at: b.created_at,
        }
    }
}

/// The bucket `id_or_name` of the caller's namespace, or 404.
pub async fn find_bucket(state: &AppState, caller: &Caller, id_or_name: &str) -> ApiResult<Bucket> {
    state
        .store
        .bucket(&caller.namespace.namespace_id, id_or_name)
        .await?
        .ok_or_else(|| ApiError::not_found("bucket", id_or_name))
}

/// `POST /v1/buckets`.
#[utoipa::path(post, path = "/v1/buckets", tag = "buckets", request_body = CreateBucket,
    responses((status = 201, body = BucketView), (status = 409, body = super::error::Problem),
        (status = 422, body = super::error::Problem)))]
pub async fn create_bucket(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateBucket>,
) -> ApiResult<(StatusCode, Json<BucketView>)> {
    check_name("bucket_name", &body.bucket_name)?;
    let bucket = Bucket {
        bucket_id: BucketId::generate(),
        namespace_id: caller.namespace.namespace_id,
        bucket_name: body.bucket_name,
        description: body.description,
        created_at: now(),
    };
    state.store.create_bucket(&bucket).await?;
    Ok((StatusCode::CREATED, Json(bucket.into())))
}

/// `GET /v1/buckets`.
#[utoipa::path(get, path = "/v1/buckets", tag = "buckets", params(ListParams),
    responses((status = 200, body = List<BucketView>)))]
pub async fn list_buckets(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<BucketView>>> {
    let page = state
        .store
        .list_buckets(&caller.namespace.namespace_id, &params.page("buckets")?)
        .await?;
    Ok(Json(List::of(page, "buckets", BucketView::from)))
}

/// `GET /v1/buckets/{bucket}` (id or name).
#[utoipa::path(get, path = "/v1/buckets/{bucket}", tag = "buckets",
    params(("bucket" = String, Path, description = "bucket id or name")),
    responses((status = 200, body = BucketView), (status = 404, body = super::error::Problem)))]
pub async fn get_bucket(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
) -> ApiResult<Json<BucketView>> {
    Ok(Json(find_bucket(&state, &caller, &bucket).await?.into()))
}

/// `DELETE /v1/buckets/{bucket}`: removes the bucket, its objects and their
/// contents. Refused (409) while a batch of it is queued or processing.
#[utoipa::path(delete, path = "/v1/buckets/{bucket}", tag = "buckets",
    params(("bucket" = String, Path, description = "bucket id or name")),
    responses((status = 204), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem)))]
pub async fn delete_bucket(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
) -> ApiResult<StatusCode> {
    let bucket = find_bucket(&state, &caller, &bucket).await?;
    let blobs = crate::batches::delete_bucket(
        state.store.as_ref(),
        &caller.namespace.namespace_id,
        &bucket.bucket_id,
    )
    .await?;
    for key in blobs {
        if let Err(e) = state.blobs.delete(&key).await {
            tracing::warn!(error = %e, "a deleted object's content stays behind");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
