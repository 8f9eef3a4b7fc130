//! Collections: a pipeline of extractors over a bucket, and its documents' count.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::*;

/// Where a collection's objects come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The bucket.
    pub bucket_id: BucketId,
}

/// A collection: a pipeline of extractors over a bucket's objects, and the
/// documents it produced. The API shows it as
/// `api::collections::CollectionView`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionRecord {
    /// `col_…`
    pub collection_id: CollectionId,
    /// Owning namespace.
    pub namespace_id: NamespaceId,
    /// Unique in the namespace.
    pub collection_name: String,
    /// Free text.
    pub description: Option<String>,
    /// The bucket whose objects it processes.
    pub source: Source,
    /// The extractors as chosen.
    pub extractors: Vec<crate::pipeline::ExtractorRef>,
    /// The resolved plan, tier by tier, as `name@version`.
    pub tiers: Vec<Vec<String>>,
    /// Output columns, `extractor.column` to Arrow type.
    pub output_schema: std::collections::BTreeMap<String, String>,
    /// Hash of the pinned versions, parameters and output schema.
    pub index_signature: String,
    /// Documents written.
    pub document_count: u64,
    /// RFC 3339.
    pub created_at: Timestamp,
    /// RFC 3339.
    pub updated_at: Timestamp,
}

/// Collections: pipelines over a bucket.
#[async_trait]
pub trait CollectionStore: Send + Sync {
    /// Creates a collection; a taken name in the namespace is a conflict.
    async fn create_collection(&self, collection: &CollectionRecord) -> Result<()>;
    /// A collection of the namespace by id or name.
    async fn collection(
        &self,
        namespace_id: &NamespaceId,
        id_or_name: &str,
    ) -> Result<Option<CollectionRecord>>;
    /// Collections of the namespace by id.
    async fn list_collections(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<CollectionRecord>>;
    /// Replaces a collection's description, extractors and resolved plan
    /// (tiers, output schema, index signature) and sets `updated_at`; the
    /// rest (its name, source and document count) stays. Not found when
    /// the collection is gone.
    async fn update_collection(&self, collection: &CollectionRecord) -> Result<()>;
    /// Collections whose source is the bucket.
    async fn collections_of_bucket(&self, bucket_id: &BucketId) -> Result<Vec<CollectionRecord>>;
    /// Deletes a collection (its documents go through the
    /// [`DocumentSink`]); only when no batch of its bucket is in one of
    /// `active` (`Busy` names them otherwise).
    async fn delete_collection(
        &self,
        namespace_id: &NamespaceId,
        collection_id: &CollectionId,
        active: &[BatchStatus],
    ) -> Result<Removal<()>>;
}
