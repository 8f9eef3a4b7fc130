//! Collections: pipelines of extractors over a bucket's objects.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::namespaces::check_name;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Path, Query};
use crate::pipeline::{self, ExtractorRef};
use crate::store::{BucketId, CollectionId, CollectionRecord, NamespaceId, Source, Timestamp, now};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/collections",
            post(create_collection).get(list_collections),
        )
        .route(
            "/v1/collections/{collection}",
            get(get_collection)
                .patch(update_collection)
                .delete(delete_collection),
        )
}

/// `POST /v1/collections` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Unique in the namespace: 1–64 letters, digits, `-`, `_` or `.`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub collection_name: String,
    /// Free text.
    pub description: Option<String>,
    /// The bucket (id or name) whose objects the collection processes.
    pub source: SourceBody,
    /// The extractors, in any order; dependencies must be listed too.
    pub extractors: Vec<ExtractorRef>,
}

/// Where a new collection's objects come from.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceBody {
    /// The bucket, by id or name.
    pub bucket_id: String,
}

/// Where a collection's objects come from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Source)]
pub struct SourceView {
    /// The bucket.
    pub bucket_id: BucketId,
}

/// A collection as the API shows it: a pipeline of extractors over a
/// bucket's objects, and the documents it produced.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Collection)]
pub struct CollectionView {
    /// `col_…`
    pub collection_id: CollectionId,
    /// Owning namespace.
    pub namespace_id: NamespaceId,
    /// Unique in the namespace.
    pub collection_name: String,
    /// Free text.
    pub description: Option<String>,
    /// The bucket whose objects it processes.
    pub source: SourceView,
    /// The extractors as chosen.
    pub extractors: Vec<ExtractorRef>,
    /// The resolved plan, tier by tier, as `name@version`.
    pub tiers: Vec<Vec<String>>,
    /// Output columns, `extractor.column` to Arrow type.
    pub output_schema: std::collections::BTreeMap<String, String>,
    /// Hash of the pinned versions, parameters and output schema.
    pub index_signature: String,
    /// Documents written.
    pub document_count: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl From<CollectionRecord> for CollectionView {
    fn from(c: CollectionRecord) -> Self {
        CollectionView {
            collection_id: c.collection_id,
            namespace_id: c.namespace_id,
            collection_name: c.collection_name,
            description: c.description,
            source: SourceView {
                bucket_id: c.source.bucket_id,
            },
            extractors: c.extractors,
            tiers: c.tiers,
            output_schema: c.output_schema,
            index_signature: c.index_signature,
            document_count: c.document_count,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `PATCH /v1/collections/{collection}` body: what to change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCollection {
    /// Free text; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// The whole new pipeline: e.g. the same extractors with one pinned to
    /// another version (`name@version` rolls back or forward), or other
    /// parameters. Re-validated by the planner.
    pub extractors: Option<Vec<ExtractorRef>>,
}

/// A field that is present, even as `null`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// `refs` planned for the caller's namespace (off the async runtime); a
/// bad pipeline is 422 naming the field.
async fn planned(
    state: &AppState,
    caller: &Caller,
    refs: &[ExtractorRef],
) -> ApiResult<crate::engine::planner::Plan> {
    let _plan = state.tenancy.plan(&caller.namespace.namespace_id)?;
    pipeline::plan_in(
        &state.catalog,
        state.registry.as_ref(),
        &caller.namespace.namespace_id,
        refs,
    )
    .await
    .map_err(|e| ApiError::pipeline(e, ""))
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
    responses((status = 201, body = CollectionView), (status = 409, body = super::error::Problem),
        (status = 422, body = super::error::Problem), (status = 429, body = super::error::Problem),
        (status = 503, body = super::error::Problem)))]
pub async fn create_collection(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateCollection>,
) -> ApiResult<(StatusCode, Json<CollectionView>)> {
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
    let extractors =
        pipeline::normalized(&body.extractors).map_err(|e| ApiError::pipeline(e, ""))?;
    let plan = planned(&state, &caller, &extractors).await?;
    let summary = plan.summary();
    let now = now();
    let collection = CollectionRecord {
        collection_id: CollectionId::generate(),
        namespace_id: caller.namespace.namespace_id,
        collection_name: body.collection_name,
        description: body.description,
        source: Source {
            bucket_id: bucket.bucket_id,
        },
        extractors,
        tiers: summary.tiers,
        output_schema: summary.output_schema,
        index_signature: pipeline::index_signature(&plan),
        document_count: 0,
        created_at: now,
        updated_at: now,
    };
    state.store.create_collection(&collection).await?;
    Ok((StatusCode::CREATED, Json(collection.into())))
}

/// `GET /v1/collections`.
#[utoipa::path(get, path = "/v1/collections", tag = "collections", params(ListParams),
    responses((status = 200, body = List<CollectionView>)))]
pub async fn list_collections(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<CollectionView>>> {
    let page = state
        .store
        .list_collections(&caller.namespace.namespace_id, &params.page("collections")?)
        .await?;
    Ok(Json(List::of(page, "collections", CollectionView::from)))
}

/// `GET /v1/collections/{collection}` (id or name).
#[utoipa::path(get, path = "/v1/collections/{collection}", tag = "collections",
    params(("collection" = String, Path, description = "collection id or name")),
    responses((status = 200, body = CollectionView), (status = 404, body = super::error::Problem)))]
pub async fn get_collection(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
) -> ApiResult<Json<CollectionView>> {
    Ok(Json(
        find_collection(&state, &caller, &collection).await?.into(),
    ))
}

/// `PATCH /v1/collections/{collection}`: changes the description or the
/// pipeline, e.g. pins an extractor to another version or changes its
/// parameters. The planner re-validates the pipeline (422 naming the
/// field); the tiers, output schema and index signature follow. Batches
/// already submitted finish on the versions they pinned; the next submit
/// runs the new pipeline.
#[utoipa::path(patch, path = "/v1/collections/{collection}", tag = "collections",
    params(("collection" = String, Path, description = "collection id or name")),
    request_body = UpdateCollection,
    responses((status = 200, body = CollectionView), (status = 404, body = super::error::Problem),
        (status = 422, body = super::error::Problem), (status = 429, body = super::error::Problem),
        (status = 503, body = super::error::Problem)))]
pub async fn update_collection(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    Json(body): Json<UpdateCollection>,
) -> ApiResult<Json<CollectionView>> {
    if body.description.is_none() && body.extractors.is_none() {
        return Err(ApiError::invalid(
            "body",
            "name what to change: `extractors`, `description` or both",
        ));
    }
    let mut collection = find_collection(&state, &caller, &collection).await?;
    if let Some(description) = body.description {
        collection.description = description;
    }
    if let Some(extractors) = body.extractors {
        let extractors =
            pipeline::normalized(&extractors).map_err(|e| ApiError::pipeline(e, ""))?;
        let plan = planned(&state, &caller, &extractors).await?;
        let summary = plan.summary();
        collection.extractors = extractors;
        collection.tiers = summary.tiers;
        collection.output_schema = summary.output_schema;
        collection.index_signature = pipeline::index_signature(&plan);
    }
    collection.updated_at = now();
    state.store.update_collection(&collection).await?;
    tracing::info!(collection = %collection.collection_id, signature = %collection.index_signature, "collection updated");
    Ok(Json(collection.into()))
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
    crate::batches::delete_collection(
        state.store.as_ref(),
        &caller.namespace.namespace_id,
        &collection.collection_id,
    )
    .await?;
    // The collection is gone, so its documents are unreachable even if
    // this fails; a later delete of the same name cannot see them.
    state
        .documents
        .delete_documents(&collection.collection_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
