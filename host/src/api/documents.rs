//! Documents: what a collection's pipeline produced, one per object.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::collections::find_collection;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Path, Query};
use crate::store::{
    BatchId, BucketId, CollectionId, DocumentFilter, DocumentId, DocumentRecord, InternalMetadata,
    ObjectId, Timestamp,
};

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

/// A document as the API shows it: what one collection's pipeline
/// produced for one object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Document)]
pub struct DocumentView {
    /// `doc_…`, derived from the collection and the object.
    pub document_id: DocumentId,
    /// The collection.
    pub collection_id: CollectionId,
    /// The object's bucket.
    pub bucket_id: BucketId,
    /// The object.
    pub object_id: ObjectId,
    /// The batch that wrote it last.
    pub batch_id: BatchId,
    /// Outputs by extractor, then column.
    #[schema(value_type = Object)]
    pub features: serde_json::Map<String, Value>,
    /// Row errors: `{extractor, message}`.
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
    /// The object's metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Versions, content hash, signature, history.
    pub internal_metadata: InternalMetadataView,
    /// When it was first written.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
}

/// Internal facts of a document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = InternalMetadata)]
pub struct InternalMetadataView {
    /// `name@version` of every extractor that produced features.
    pub extractors: Vec<String>,
    /// Hex SHA-256 of the object content processed.
    pub content_hash: String,
    /// Signature of the pipeline that wrote it.
    pub index_signature: String,
    /// Each enrichment, when the batch asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub processing_history: Option<Value>,
}

impl From<DocumentRecord> for DocumentView {
    fn from(d: DocumentRecord) -> Self {
        let InternalMetadata {
            extractors,
            content_hash,
            index_signature,
            processing_history,
        } = d.internal_metadata;
        DocumentView {
            document_id: d.document_id,
            collection_id: d.collection_id,
            bucket_id: d.bucket_id,
            object_id: d.object_id,
            batch_id: d.batch_id,
            features: d.features,
            errors: d.errors,
            metadata: d.metadata,
            internal_metadata: InternalMetadataView {
                extractors,
                content_hash,
                index_signature,
                processing_history,
            },
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// Filters and pagination of the document list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocumentParams {
    /// Only documents last written by this batch.
    pub batch_id: Option<BatchId>,
    /// Only the document of this object.
    pub object_id: Option<ObjectId>,
    /// Most results per page (1–1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// `GET /v1/collections/{collection}/documents` (`?batch_id=`, `?object_id=`).
#[utoipa::path(get, path = "/v1/collections/{collection}/documents", tag = "documents",
    params(("collection" = String, Path, description = "collection id or name"), DocumentParams),
    responses((status = 200, body = List<DocumentView>), (status = 404, body = super::error::Problem)))]
pub async fn list_documents(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    Query(params): Query<DocumentParams>,
) -> ApiResult<Json<List<DocumentView>>> {
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
    Ok(Json(List::of(page, &list, DocumentView::from)))
}

/// `GET /v1/collections/{collection}/documents/{document_id}`.
#[utoipa::path(get, path = "/v1/collections/{collection}/documents/{document_id}", tag = "documents",
    params(("collection" = String, Path, description = "collection id or name"), ("document_id" = String, Path)),
    responses((status = 200, body = DocumentView), (status = 404, body = super::error::Problem)))]
pub async fn get_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, document_id)): Path<(String, DocumentId)>,
) -> ApiResult<Json<DocumentView>> {
    let collection = find_collection(&state, &caller, &collection).await?;
    state
        .documents
        .document(&collection.collection_id, &document_id)
        .await?
        .map(|d| Json(d.into()))
        .ok_or_else(|| ApiError::not_found("document", &document_id))
}
