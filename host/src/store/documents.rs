//! Documents: one per object and collection, and where they are written.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::*;

/// Internal facts of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InternalMetadata {
    /// `name@version` of every extractor that produced features.
    pub extractors: Vec<String>,
    /// Hex SHA-256 of the object content processed.
    pub content_hash: String,
    /// Signature of the pipeline that wrote it.
    pub index_signature: String,
    /// Each enrichment, when the batch asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_history: Option<Value>,
}

/// A document: what one collection's pipeline produced for one object.
/// The API shows it as `api::documents::DocumentView`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRecord {
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
    pub features: serde_json::Map<String, Value>,
    /// Row errors: `{extractor, message}`.
    pub errors: Vec<Value>,
    /// The object's metadata.
    pub metadata: Option<Value>,
    /// Versions, content hash, signature, history.
    pub internal_metadata: InternalMetadata,
    /// RFC 3339, first written.
    pub created_at: Timestamp,
    /// RFC 3339, last written.
    pub updated_at: Timestamp,
}

/// The id of the document of `object_id` in `collection_id`: the same
/// every time, so reprocessing replaces it.
pub fn document_id(collection_id: &CollectionId, object_id: &str) -> DocumentId {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{collection_id}\n{object_id}").as_bytes());
    DocumentId::from(format!("doc_{}", &hex::encode(digest)[..26]))
}

/// Filters of a document list.
#[derive(Debug, Clone, Default)]
pub struct DocumentFilter {
    /// Only documents last written by this batch.
    pub batch_id: Option<BatchId>,
    /// Only the document of this object.
    pub object_id: Option<ObjectId>,
}

/// Where documents live: workers upsert them, the API reads them.
///
/// Upserts are idempotent (the id is derived from the collection and the
/// object), so a worker writes a chunk's documents first and then records
/// the chunk's outcomes under its lease: a crash in between only means the
/// chunk is done again and its documents replaced by equal ones.
#[async_trait]
pub trait DocumentSink: Send + Sync + std::fmt::Debug {
    /// Writes documents of one collection by id (one written again keeps
    /// its `created_at`) and keeps the collection's `document_count` in
    /// step. Returns how many did not exist before; `NotFound` when the
    /// collection is gone. With a `lease`, the write happens only while it
    /// holds its batch, in the same transaction (`LeaseLost` otherwise).
    async fn upsert_documents(
        &self,
        namespace_id: &NamespaceId,
        collection_id: &CollectionId,
        documents: &[DocumentRecord],
        lease: Option<&Lease>,
    ) -> Result<u64>;
    /// Documents of a collection by id.
    async fn list_documents(
        &self,
        collection_id: &CollectionId,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<DocumentRecord>>;
    /// A document of a collection.
    async fn document(
        &self,
        collection_id: &CollectionId,
        document_id: &DocumentId,
    ) -> Result<Option<DocumentRecord>>;

    /// Deletes every document of a collection.
    async fn delete_documents(&self, collection_id: &CollectionId) -> Result<()>;
}

/// Refuses a write of documents under `collection_id` when one of them
/// belongs to another collection (both backends check it first).
pub fn of_one_collection(collection_id: &CollectionId, documents: &[DocumentRecord]) -> Result<()> {
    match documents.iter().find(|d| d.collection_id != *collection_id) {
        Some(doc) => Err(StoreError::Conflict(format!(
            "document `{}` belongs to collection `{}`, not `{collection_id}`",
            doc.document_id, doc.collection_id
        ))),
        None => Ok(()),
    }
}
