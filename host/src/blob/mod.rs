//! The blob store: object contents and batch artifacts, by key.
//!
//! [`BlobStore`] is the seam every backend implements; [`local`] keeps blobs
//! as files under one directory, [`s3`] in an S3 bucket. Keys are `/`-separated relative paths such
//! as `objects/<namespace>/<bucket>/<object>`.

pub mod local;
pub mod s3;

use std::path::Path;
use std::pin::Pin;

use crate::store::{BucketId, NamespaceId, ObjectId};
use async_trait::async_trait;
use bytes::Bytes;

pub use local::LocalBlobs;
pub use s3::{S3Blobs, S3Location, S3Options};

/// A blob store result.
pub type Result<T, E = BlobError> = std::result::Result<T, E>;

/// A blob's content, read as it arrives.
pub type BlobReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// What a blob operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob under this key.
    #[error("blob `{0}` not found")]
    NotFound(String),
    /// The key is not a relative `/`-separated path of plain names.
    #[error("invalid blob key `{0}`")]
    InvalidKey(String),
    /// The backend failed. The message carries the cause in full (it is
    /// not chained again as a `source`, so reports do not repeat it).
    #[error("blob `{key}`: {cause}")]
    Backend {
        /// The key involved.
        key: String,
        /// Why.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BlobError {
    /// A backend failure on `key`.
    pub fn backend(key: &str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        BlobError::Backend {
            key: key.to_owned(),
            cause: Box::new(e),
        }
    }
}

/// Where object contents and artifacts live.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// A one-line description for logs and `/readyz`, without secrets.
    fn describe(&self) -> String;
    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;
    /// Stores the file at `path` under `key`, replacing any blob there. The
    /// file may be moved.
    async fn put_file(&self, key: &str, path: &Path) -> Result<()>;
    /// Stores `bytes` under `key`, replacing any blob there.
    async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<()>;
    /// Streams the blob under `key`.
    async fn open(&self, key: &str) -> Result<BlobReader>;
    /// Reads the whole blob under `key`.
    async fn read(&self, key: &str) -> Result<Vec<u8>>;
    /// Reads the whole blob under `key` from a thread that may block (never
    /// an async runtime's worker): by default it waits on `handle` for
    /// [`read`](Self::read); a store whose blobs are local files reads
    /// them on the calling thread, without a hop to another.
    fn read_blocking(&self, handle: &tokio::runtime::Handle, key: &str) -> Result<Vec<u8>> {
        handle.block_on(self.read(key))
    }
    /// The size of the blob under `key`, in bytes.
    async fn size(&self, key: &str) -> Result<u64>;
    /// Reads `len` bytes of the blob under `key` from `start` (fewer at its
    /// end).
    async fn read_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes>;
    /// Removes the blob under `key`; a missing blob is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Every blob whose key starts with `prefix` (a whole number of path
    /// segments, e.g. `objects`).
    async fn list(&self, prefix: &str) -> Result<Vec<BlobEntry>>;
    /// Removes what failed writes left behind (temporary files) that is
    /// older than `age`; returns how many. Nothing to do by default.
    async fn sweep_scratch(&self, _age: std::time::Duration) -> Result<u64> {
        Ok(0)
    }
}

/// Checks that `key` is a relative path of plain names.
pub fn check_key(key: &str) -> Result<()> {
    let plain = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && !part.contains('\\')
            && !part.chars().any(char::is_control)
    };
    if key.split('/').all(plain) {
        Ok(())
    } else {
        Err(BlobError::InvalidKey(key.to_owned()))
    }
}

/// A stored blob, as a listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobEntry {
    /// Its key.
    pub key: String,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

/// Key of an object's content.
pub fn object_key(
    namespace_id: &NamespaceId,
    bucket_id: &BucketId,
    object_id: &ObjectId,
) -> String {
    format!("objects/{namespace_id}/{bucket_id}/{object_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_paths_of_plain_names() {
        for ok in ["a", "objects/ns_1/bkt_2/obj_3", "a.b/c-d_e"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/../b", "a/./b", "a\\b", "a\nb",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
