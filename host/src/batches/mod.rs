//! The batch lifecycle, backend-neutral: what clients may do to a batch
//! and when, how a batch is submitted, and the rules that keep a bucket
//! or a collection while batches run over them.
//!
//! [`lifecycle`] holds the state machine. The procedures here read, decide
//! by it, and make the store's conditional writes: a backend writes only
//! while a batch is in a status the decision allows, and answers `None`
//! when it was not. Then the batch is read again and decided again, so a
//! race ends in the answer the later state calls for.

pub mod lifecycle;
pub mod shards;
mod submit;
pub mod work;

pub use lifecycle::{Action, BatchError, Verdict};
pub use submit::{SubmitError, Submitter};
pub use work::{Claimed, Policy};

use crate::store::{BatchId, BucketId, CollectionId, NamespaceId, ObjectId, TaskId};
use crate::store::{BatchRecord, Removal, Result, Store, StoreError};

/// Reads a batch again after a conditional write found it changed.
async fn reread(store: &dyn Store, batch: &BatchRecord) -> Result<BatchRecord> {
    store
        .batch(&batch.bucket_id, &batch.batch_id)
        .await?
        .ok_or_else(|| StoreError::not_found("batch", &batch.batch_id))
}

/// A batch of the bucket, its progress summed from its shards.
pub async fn read(
    store: &dyn Store,
    bucket_id: &BucketId,
    batch_id: &BatchId,
) -> Result<Option<BatchRecord>> {
    match store.batch(bucket_id, batch_id).await? {
        Some(batch) => Ok(shards::with_progress(store, vec![batch]).await?.pop()),
        None => Ok(None),
    }
}

/// The batch of a task in the namespace, its progress summed.
pub async fn by_task(
    store: &dyn Store,
    namespace_id: &NamespaceId,
    task_id: &TaskId,
) -> Result<Option<BatchRecord>> {
    match store.batch_by_task(namespace_id, task_id).await? {
        Some(batch) => Ok(shards::with_progress(store, vec![batch]).await?.pop()),
        None => Ok(None),
    }
}

/// What a decided action came to.
enum Outcome<T> {
    /// The conditional write happened and answered this.
    Written(T),
    /// Nothing to do: the batch as it is.
    Settled(Box<BatchRecord>),
}

/// Decides `action` on `batch` and applies it with `write`, a conditional
/// write that answers `None` when the batch had left the statuses the
/// action applies to; then the batch is read and decided again.
async fn decided<T, W, F>(
    store: &dyn Store,
    batch: &BatchRecord,
    action: Action,
    write: W,
) -> Result<Outcome<T>>
where
    W: Fn() -> F,
    F: std::future::Future<Output = Result<Option<T>>>,
{
    let mut current = batch.clone();
    // Each round either writes or finds the batch in another status;
    // a batch changes status a bounded number of times, so this ends.
    for _ in 0..8 {
        if lifecycle::decide(&current.batch_id, current.status, action)? == Verdict::Settled {
            return Ok(Outcome::Settled(Box::new(current)));
        }
        if let Some(written) = write().await? {
            return Ok(Outcome::Written(written));
        }
        current = reread(store, &current).await?;
    }
    Err(StoreError::backend(std::io::Error::other(format!(
        "batch `{}` kept changing status while the action {action:?} was tried",
        current.batch_id
    ))))
}

/// [`decided`] for actions that answer with the batch (its progress
/// summed from its shards).
async fn act<W, F>(
    store: &dyn Store,
    batch: &BatchRecord,
    action: Action,
    write: W,
) -> Result<BatchRecord>
where
    W: Fn() -> F,
    F: std::future::Future<Output = Result<Option<BatchRecord>>>,
{
    let batch = match decided(store, batch, action, write).await? {
        Outcome::Written(b) => b,
        Outcome::Settled(b) => *b,
    };
    let mut summed = shards::with_progress(store, vec![batch]).await?;
    summed
        .pop()
        .ok_or_else(|| StoreError::backend(std::io::Error::other("a batch went missing")))
}

/// Adds objects to a DRAFT batch, ignoring those it holds.
pub async fn add_objects(
    store: &dyn Store,
    batch: &BatchRecord,
    object_ids: &[ObjectId],
) -> Result<BatchRecord> {
    act(store, batch, Action::AddObjects, || {
        store.add_batch_objects(&batch.batch_id, Action::AddObjects.from(), object_ids)
    })
    .await
}

/// QUEUED or PROCESSING → CANCELED; the worker's next write fails. A
/// canceled batch is answered as it is.
pub async fn cancel(store: &dyn Store, batch: &BatchRecord) -> Result<BatchRecord> {
    act(store, batch, Action::Cancel, || {
        store.cancel_batch(&batch.batch_id, Action::Cancel.from())
    })
    .await
}

/// Queues again the objects of a finished batch that did not complete.
pub async fn retry(store: &dyn Store, batch: &BatchRecord) -> Result<BatchRecord> {
    let id = &batch.batch_id;
    lifecycle::decide(id, batch.status, Action::Retry)?;
    if batch.collections.is_empty() {
        return Err(BatchError::NeverSubmitted {
            batch_id: id.clone(),
        }
        .into());
    }
    let mut gone = Vec::new();
    for pinned in &batch.collections {
        if store
            .collection(&batch.namespace_id, &pinned.collection_id)
            .await?
            .is_none()
        {
            gone.push(pinned.collection_name.clone());
        }
    }
    if !gone.is_empty() {
        return Err(BatchError::CollectionsGone {
            batch_id: id.clone(),
            names: gone,
        }
        .into());
    }
    if store.unfinished_objects(id).await? == 0 {
        return Err(BatchError::NothingToRetry {
            batch_id: id.clone(),
        }
        .into());
    }
    act(store, batch, Action::Retry, || {
        store.retry_batch(id, Action::Retry.from())
    })
    .await
}

/// Deletes a DRAFT or finished batch, returning its artifacts' blob keys.
pub async fn delete(store: &dyn Store, batch: &BatchRecord) -> Result<Vec<String>> {
    let id = &batch.batch_id;
    match decided(store, batch, Action::Delete, || {
        store.delete_batch(id, Action::Delete.from())
    })
    .await?
    {
        Outcome::Written(keys) => Ok(keys),
        Outcome::Settled(_) => Ok(Vec::new()),
    }
}

/// Deletes a bucket with its objects and finished batches, returning the
/// blob keys to remove; refused while a batch of it is active or a
/// collection reads from it.
pub async fn delete_bucket(
    store: &dyn Store,
    namespace_id: &NamespaceId,
    bucket_id: &BucketId,
) -> Result<Vec<String>> {
    match store
        .delete_bucket(namespace_id, bucket_id, &lifecycle::ACTIVE)
        .await?
    {
        Removal::Removed(keys) => Ok(keys),
        Removal::Busy { batches, .. } if !batches.is_empty() => Err(BatchError::InUse {
            kind: "bucket",
            id: bucket_id.to_string(),
            batches,
        }
        .into()),
        Removal::Busy { collections, .. } => Err(BatchError::SourceOf {
            bucket_id: bucket_id.to_owned(),
            collections,
        }
        .into()),
    }
}

/// Deletes a collection; refused while a batch of its bucket is active.
pub async fn delete_collection(
    store: &dyn Store,
    namespace_id: &NamespaceId,
    collection_id: &CollectionId,
) -> Result<()> {
    match store
        .delete_collection(namespace_id, collection_id, &lifecycle::ACTIVE)
        .await?
    {
        Removal::Removed(_) => Ok(()),
        Removal::Busy { batches, .. } => Err(BatchError::InUse {
            kind: "collection",
            id: collection_id.to_string(),
            batches,
        }
        .into()),
    }
}
