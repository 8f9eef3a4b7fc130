//! Removes blobs that no record names: the content of an upload whose
//! record was never written (a crash or a failed write between the two) and
//! the temporary files of failed writes. Anything younger than the grace
//! period is left alone, since an upload writes its content just before its
//! record. Every process may sweep: deletions are idempotent.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::blob::{BlobError, BlobStore};
use crate::store::{BucketId, ObjectId, Store, StoreError};

/// How often a process sweeps.
pub const EVERY: Duration = Duration::from_secs(3600);
/// How old a blob must be to be swept.
pub const GRACE: Duration = Duration::from_secs(3600);

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// Listing or deleting blobs failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Reading records failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Object contents no object record names.
    pub objects: u64,
    /// Temporary files of failed writes.
    pub scratch: u64,
}

/// Sweeps once: object contents no record names and scratch files, both
/// older than `grace`.
pub async fn sweep(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    grace: Duration,
) -> Result<Swept, SweepError> {
    let mut swept = Swept {
        scratch: blobs.sweep_scratch(grace).await?,
        ..Swept::default()
    };
    for entry in blobs.list("objects").await? {
        if entry.modified.elapsed().is_ok_and(|age| age < grace) {
            continue;
        }
        // `objects/<namespace>/<bucket>/<object>/<upload>`
        let named = match entry.key.split('/').collect::<Vec<_>>()[..] {
            ["objects", _, bucket, object, _] => store
                .object(&BucketId::from(bucket), &ObjectId::from(object))
                .await?
                .is_some_and(|record| record.blob_key == entry.key),
            _ => true,
        };
        if !named {
            blobs.delete(&entry.key).await?;
            swept.objects += 1;
        }
    }
    Ok(swept)
}

/// Sweeps every [`EVERY`] until `shutdown`.
pub async fn run(
    store: std::sync::Arc<dyn Store>,
    blobs: std::sync::Arc<dyn BlobStore>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        match sweep(store.as_ref(), blobs.as_ref(), GRACE).await {
            Ok(swept) if swept == Swept::default() => {}
            Ok(swept) => {
                metrics::counter!("strata_blobs_swept_total")
                    .increment(swept.objects + swept.scratch);
                info!(
                    objects = swept.objects,
                    scratch = swept.scratch,
                    "unreferenced blobs removed"
                );
            }
            Err(e) => warn!(error = %e, "sweeping unreferenced blobs failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::LocalBlobs;
    use crate::store::{
        Bucket, BucketId, BucketStore, Namespace, NamespaceId, NamespaceStore, ObjectRecord,
        SqliteStore, now,
    };

    #[tokio::test]
    async fn only_old_blobs_that_no_record_names_are_removed() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(&dir.path().join("strata.db")).expect("store");
        let blobs = LocalBlobs::open(&dir.path().join("blobs")).expect("blobs");
        let ns = Namespace {
            namespace_id: NamespaceId::generate(),
            name: "n".into(),
            created_at: now(),
        };
        store.create_namespace(&ns).await.expect("namespace");
        let bucket = Bucket {
            bucket_id: BucketId::generate(),
            namespace_id: ns.namespace_id.clone(),
            bucket_name: "b".into(),
            description: None,
            created_at: now(),
        };
        store.create_bucket(&bucket).await.expect("bucket");
        let key = |object: &str, upload: &str| {
            format!(
                "objects/{}/{}/{object}/{upload}",
                ns.namespace_id, bucket.bucket_id
            )
        };
        let kept = key("kept", "u1");
        store
            .create_object(&ObjectRecord {
                object_id: "kept".into(),
                bucket_id: bucket.bucket_id.clone(),
                namespace_id: ns.namespace_id.clone(),
                key: "kept.txt".into(),
                mime_type: "text/plain".into(),
                size_bytes: 1,
                sha256: String::new(),
                metadata: None,
                blob_key: kept.clone(),
                created_at: now(),
            })
            .await
            .expect("object");
        // The record's content, an earlier upload of the same object, and
        // an upload whose record was never written.
        for k in [&kept, &key("kept", "u0"), &key("orphan", "u2")] {
            blobs
                .put_bytes(k, bytes::Bytes::from_static(b"x"))
                .await
                .expect("put");
        }
        std::fs::write(dir.path().join("blobs/.tmp/left-behind"), b"x").expect("scratch");
        let young = sweep(&store, &blobs, Duration::from_secs(3600))
            .await
            .expect("sweep");
        assert_eq!(young, Swept::default(), "nothing is old enough yet");
        let swept = sweep(&store, &blobs, Duration::ZERO).await.expect("sweep");
        assert_eq!(
            swept,
            Swept {
                objects: 2,
                scratch: 1
            }
        );
        let left: Vec<String> = blobs
            .list("objects")
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(left, [kept]);
    }
}
