//! Buckets and the records of their objects (contents live in the blob store).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::*;

/// A named set of objects. The API shows it as `api::buckets::BucketView`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// `bkt_…`
    pub bucket_id: BucketId,
    /// Owning namespace.
    pub namespace_id: NamespaceId,
    /// Unique in the namespace.
    pub bucket_name: String,
    /// Free text.
    pub description: Option<String>,
    /// RFC 3339.
    pub created_at: Timestamp,
}

/// A stored object's record; its content lives in the blob store. The API
/// shows it as `api::objects::ObjectView`, without where it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// `obj_…`, unique in the bucket (a client may choose it).
    pub object_id: ObjectId,
    /// Owning bucket.
    pub bucket_id: BucketId,
    /// Owning namespace.
    pub namespace_id: NamespaceId,
    /// The object's name, e.g. a file path.
    pub key: String,
    /// Declared or sniffed MIME type.
    pub mime_type: String,
    /// Content size.
    pub size_bytes: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Client metadata (a JSON object).
    pub metadata: Option<Value>,
    /// Where the content lives in the blob store.
    pub blob_key: String,
    /// RFC 3339.
    pub created_at: Timestamp,
}

/// Buckets and the records of their objects.
#[async_trait]
pub trait BucketStore: Send + Sync {
    /// Creates a bucket; a taken name in the namespace is a conflict.
    async fn create_bucket(&self, bucket: &Bucket) -> Result<()>;
    /// A bucket of the namespace by id or name.
    async fn bucket(&self, namespace_id: &NamespaceId, id_or_name: &str) -> Result<Option<Bucket>>;
    /// Buckets of the namespace by id.
    async fn list_buckets(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<Bucket>>;
    /// Deletes a bucket with its objects and batches, returning the blob
    /// keys to remove; only when no batch of it is in one of `active` and
    /// no collection reads from it (`Busy` names them otherwise).
    async fn delete_bucket(
        &self,
        namespace_id: &NamespaceId,
        bucket_id: &BucketId,
        active: &[BatchStatus],
    ) -> Result<Removal<Vec<String>>>;
    /// Records an object; a taken id in the bucket is a conflict.
    async fn create_object(&self, object: &ObjectRecord) -> Result<()>;
    /// An object of the bucket.
    async fn object(
        &self,
        bucket_id: &BucketId,
        object_id: &ObjectId,
    ) -> Result<Option<ObjectRecord>>;
    /// Objects of the bucket by id.
    async fn list_objects(
        &self,
        bucket_id: &BucketId,
        page: &PageRequest,
    ) -> Result<Page<ObjectRecord>>;
    /// Deletes an object's record, returning its blob key.
    async fn delete_object(&self, bucket_id: &BucketId, object_id: &ObjectId) -> Result<String>;
    /// The ids among `object_ids` that are not objects of the bucket.
    async fn missing_objects(
        &self,
        bucket_id: &BucketId,
        object_ids: &[ObjectId],
    ) -> Result<Vec<ObjectId>>;
}
