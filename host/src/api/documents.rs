//! Documents: what a collection's pipeline produced, one per object.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::Deserialize;

use super::auth::Caller;
use super::collections::find_collection;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Query};
use crate::store::DocumentId;
use crate::store::{BatchId, ObjectId};
use crate::store::{DocumentFilter, DocumentRecord};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/collections/{collection}/documents",
            get(list_documents),
        )
        .route(
            "/v1/collections/{collection}/documents/{document_id}",
            get(get_document),
        )
}

/// Filters and pagination of the document list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct DocumentParams {
    /// Only documents last written by this batch.
    pub batch_id: Option<BatchId>,
    /// Only the document of this object.
    pub object_id: Option<ObjectId>,
    /// Most results per page (1–1000, default 50).
    pub limit: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// `GET /v1/collections/{collection}/documents` (`?batch_id=`, `?object_id=`).
#[utoipa::path(get, path = "/v1/collections/{collection}/documents", tag = "documents",
    params(("collection" = String, Path, description = "collection id or name"), DocumentParams),
    responses((status = 200, body = List<DocumentRecord>), (status = 404, body = super::error::Problem)))]
pub async fn list_documents(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    Query(params): Query<DocumentParams>,
) -> ApiResult<Json<List<DocumentRecord>>> {
    let collection = find_collection(&state, &caller, &collection).await?;
    let filter = DocumentFilter {
        batch_id: params.batch_id,
        object_id: params.object_id,
    };
    let list = format!(
        "documents:{}:{}:{}",
        collection.collection_id,
        filter.batch_id.as_deref().unwrap_or(""),
        filter.object_id.as_deref().unwrap_or("")
    );
    let paging = ListParams {
        limit: params.limit,
        page_token: params.page_token,
    };
    let page = state
        .documents
        .list_documents(&collection.collection_id, &filter, &paging.page(&list)?)
        .await?;
    Ok(Json(List::of(page, &list, |d| d)))
}

/// `GET /v1/collections/{collection}/documents/{document_id}`.
#[utoipa::path(get, path = "/v1/collections/{collection}/documents/{document_id}", tag = "documents",
    params(("collection" = String, Path, description = "collection id or name"), ("document_id" = String, Path)),
    responses((status = 200, body = DocumentRecord), (status = 404, body = super::error::Problem)))]
pub async fn get_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, document_id)): Path<(String, DocumentId)>,
) -> ApiResult<Json<DocumentRecord>> {
    let collection = find_collection(&state, &caller, &collection).await?;
    state
        .documents
        .document(&collection.collection_id, &document_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("document", &document_id))
}
