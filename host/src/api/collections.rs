//! Collections: pipelines of extractors over a bucket's objects.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;

use super::auth::Caller;
use super::namespaces::check_name;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Query};
use crate::pipeline::{self, ExtractorRef};
use crate::store::{CollectionRecord, Source, new_id, now};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/collections",
            post(create_collection).get(list_collections),
        )
        .route(
            "/v1/collections/{collection}",
            get(get_collection).delete(delete_collection),
        )
}

/// `POST /v1/collections` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Unique in the namespace: 1–64 letters, digits, `-`, `_` or `.`.
    pub collection_name: String,
    /// Free text.
    pub description: Option<String>,
    /// The bucket (id or name) whose objects the collection processes.
    pub source: Source,
    /// The extractors, in any order; dependencies must be listed too.
    pub extractors: Vec<ExtractorRef>,
}

/// The collection `id_or_name` of the caller's namespace, or 404.
pub async fn find_collection(
    state: &AppState,
    caller: &Caller,
    id_or_name: &str,
) -> ApiResult<CollectionRecord> {
    state
        .store
        .collection(&caller.namespace.namespace_id, id_or_name)
        .await?
        .ok_or_else(|| ApiError::not_found("collection", id_or_name))
}

/// `POST /v1/collections`: validates the pipeline with the planner (unknown
/// extractor or version, bad parameters, missing dependencies, cycles are
/// 422 naming them) and shows the resolved tiers and output schema.
#[utoipa::path(post, path = "/v1/collections", tag = "collections", request_body = CreateCollection,
    responses((status = 201, body = CollectionRecord), (status = 409, body = super::error::Problem),
        (status = 422, body = super::error::Problem)))]
pub async fn create_collection(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateCollection>,
) -> ApiResult<(StatusCode, Json<CollectionRecord>)> {
    check_name("collection_name", &body.collection_name)?;
    let bucket = state
        .store
        .bucket(&caller.namespace.namespace_id, &body.source.bucket_id)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "source.bucket_id",
                format!("no bucket `{}`", body.source.bucket_id),
            )
        })?;
    let catalog = state.catalog.clone();
    let refs = body.extractors.clone();
    let plan = tokio::task::spawn_blocking(move || pipeline::plan(&catalog, &refs))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let summary = plan.summary();
    let now = now();
    let collection = CollectionRecord {
        collection_id: new_id("col"),
        namespace_id: caller.namespace.namespace_id,
        collection_name: body.collection_name,
        description: body.description,
        source: Source {
            bucket_id: bucket.bucket_id,
        },
        extractors: body.extractors,
        tiers: summary.tiers,
        output_schema: summary.output_schema,
        index_signature: pipeline::index_signature(&plan),
        document_count: 0,
        created_at: now.clone(),
        updated_at: now,
    };
    state.store.create_collection(&collection).await?;
    Ok((StatusCode::CREATED, Json(collection)))
}

/// `GET /v1/collections`.
#[utoipa::path(get, path = "/v1/collections", tag = "collections", params(ListParams),
    responses((status = 200, body = List<CollectionRecord>)))]
pub async fn list_collections(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<CollectionRecord>>> {
    let page = state
        .store
        .list_collections(&caller.namespace.namespace_id, &params.page("collections")?)
        .await?;
    Ok(Json(List::of(page, "collections", |c| c)))
}

/// `GET /v1/collections/{collection}` (id or name).
#[utoipa::path(get, path = "/v1/collections/{collection}", tag = "collections",
    params(("collection" = String, Path, description = "collection id or name")),
    responses((status = 200, body = CollectionRecord), (status = 404, body = super::error::Problem)))]
pub async fn get_collection(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
) -> ApiResult<Json<CollectionRecord>> {
    Ok(Json(find_collection(&state, &caller, &collection).await?))
}

/// `DELETE /v1/collections/{collection}`: removes it and its documents;
/// refused (409) while a batch of its bucket is queued or processing.
#[utoipa::path(delete, path = "/v1/collections/{collection}", tag = "collections",
    params(("collection" = String, Path, description = "collection id or name")),
    responses((status = 204), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem)))]
pub async fn delete_collection(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
) -> ApiResult<StatusCode> {
    let collection = find_collection(&state, &caller, &collection).await?;
    state
        .store
        .delete_collection(&caller.namespace.namespace_id, &collection.collection_id)
        .await?;
    // The collection is gone, so its documents are unreachable even if
    // this fails; a later delete of the same name cannot see them.
    state
        .documents
        .delete_documents(&collection.collection_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
