//! Submit: plan the batch for every collection of its bucket, pin the
//! extractor versions, write one Parquet manifest per extractor, queue.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::lifecycle::{self, Action, BatchError, Verdict};
use super::shards;
use crate::artifacts::{self, ManifestRow};
use crate::blob::{BlobError, BlobStore};
use crate::catalog::Catalog;
use crate::engine::planner::Plan;
use crate::pipeline::{self, ExtractorRef, PipelineError};
use crate::store::{
    BatchRecord, CollectionRecord, ObjectId, PageRequest, PinnedCollection, Pipelines, Registry,
    Store, StoreError, new_id,
};

/// Why a submit did not queue the batch.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The batch holds no objects.
    #[error("the batch holds no objects")]
    Empty,
    /// No collection reads from the batch's bucket.
    #[error("no collection reads from bucket `{0}`")]
    NoCollections(String),
    /// A collection's pipeline cannot run.
    #[error("collection `{collection}`: {error}")]
    Pipeline {
        /// The collection's name.
        collection: String,
        /// Why.
        error: PipelineError,
    },
    /// Writing a manifest failed.
    #[error("writing a manifest: {0}")]
    Manifest(String),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The store failed or a batch rule refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<BatchError> for SubmitError {
    fn from(e: BatchError) -> Self {
        SubmitError::Store(e.into())
    }
}

/// What a submit reads and writes.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// Batches, objects, collections.
    pub store: Arc<dyn Store>,
    /// Manifests.
    pub blobs: Arc<dyn BlobStore>,
    /// Installed extractors, to plan with.
    pub catalog: Arc<Catalog>,
    /// Who may use which extractor.
    pub registry: Arc<dyn Registry>,
    /// Objects per shard.
    pub shard_objects: u64,
}

impl Submitter {
    /// Plans, pins and queues `batch`; a batch submitted before is answered
    /// as it is (same task). Plans everything before writing anything, and
    /// removes what this attempt wrote unless it is what got queued.
    pub async fn submit(
        &self,
        batch: &BatchRecord,
        bucket_name: &str,
        include_processing_history: bool,
    ) -> Result<BatchRecord, SubmitError> {
        if lifecycle::decide(&batch.batch_id, batch.status, Action::Submit)? == Verdict::Settled {
            return Ok(batch.clone());
        }
        if batch.total == 0 {
            return Err(SubmitError::Empty);
        }
        let collections = self.store.collections_of_bucket(&batch.bucket_id).await?;
        if collections.is_empty() {
            return Err(SubmitError::NoCollections(bucket_name.to_owned()));
        }
        let rows = self.manifest_rows(batch).await?;
        let mut plans = Vec::with_capacity(collections.len());
        for collection in collections {
            let plan = pipeline::plan_in(
                &self.catalog,
                self.registry.as_ref(),
                &batch.namespace_id,
                &collection.extractors,
            )
            .await
            .map_err(|error| SubmitError::Pipeline {
                collection: collection.collection_name.clone(),
                error,
            })?;
            plans.push((collection, plan));
        }
        // This attempt's artifacts have keys of their own, so a failed or
        // racing submit removes only what it wrote.
        let attempt = new_id("sub");
        let mut written = Vec::new();
        let result = self
            .pin_and_queue(
                batch,
                &plans,
                &rows,
                &attempt,
                &mut written,
                include_processing_history,
            )
            .await;
        match result {
            Ok(queued)
                if queued
                    .collections
                    .iter()
                    .any(|c| c.manifests.values().any(|k| written.contains(k))) =>
            {
                Ok(queued)
            }
            other => {
                // Failed, or another submit won: this attempt's artifacts go.
                for key in &written {
                    if let Err(e) = self.blobs.delete(key).await {
                        tracing::warn!(%key, error = %e, "removing an unused manifest failed");
                    }
                }
                other
            }
        }
    }

    /// Writes one manifest per extractor of every planned collection (their
    /// keys pushed to `written` as they land) and queues the batch with the
    /// versions pinned.
    async fn pin_and_queue(
        &self,
        batch: &BatchRecord,
        plans: &[(CollectionRecord, Plan)],
        rows: &[ManifestRow],
        attempt: &str,
        written: &mut Vec<String>,
        include_processing_history: bool,
    ) -> Result<BatchRecord, SubmitError> {
        let mut pinned = Vec::with_capacity(plans.len());
        for (collection, plan) in plans {
            let mut manifests = BTreeMap::new();
            for step in plan.steps() {
                let manifest = step.extractor.manifest();
                let key = artifacts::manifest_key(
                    &batch.namespace_id,
                    &batch.batch_id,
                    attempt,
                    &collection.collection_id,
                    &manifest.name,
                );
                let own: Vec<ManifestRow> = rows
                    .iter()
                    .map(|r| ManifestRow {
                        applicable: manifest.applies_to(&r.mime_type),
                        ..r.clone()
                    })
                    .collect();
                let metadata = vec![
                    ("strata.batch_id", batch.batch_id.to_string()),
                    ("strata.collection_id", collection.collection_id.to_string()),
                    ("strata.extractor", manifest.id()),
                    (
                        "strata.content_hash",
                        step.extractor.content_hash().to_owned(),
                    ),
                    ("strata.params", step.params.clone()),
                ];
                let task_key = key.clone();
                // A row group per shard (up to the writer's size): a worker
                // reads the row groups of its shard only.
                let group_rows = self.shard_objects.clamp(1, 8_192) as usize;
                let bytes = tokio::task::spawn_blocking(move || {
                    artifacts::write_manifest(&task_key, &own, &metadata, group_rows)
                })
                .await
                .map_err(|e| SubmitError::Manifest(e.to_string()))?
                .map_err(|e| SubmitError::Manifest(e.to_string()))?;
                self.blobs.put_bytes(&key, bytes).await?;
                written.push(key.clone());
                manifests.insert(manifest.name.clone(), key);
            }
            pinned.push(pin(collection, plan, manifests));
        }
        let count = rows.len() as u64;
        let ids: Vec<ObjectId> = rows
            .iter()
            .map(|r| ObjectId::from(r.object_id.as_str()))
            .collect();
        let shards = shards::split(batch, &ids, self.shard_objects);
        let pipelines = Pipelines {
            collections: pinned,
            include_processing_history,
        };
        let mut current = batch.clone();
        for _ in 0..8 {
            if lifecycle::decide(&current.batch_id, current.status, Action::Submit)?
                == Verdict::Settled
            {
                return Ok(current);
            }
            if let Some(queued) = self
                .store
                .submit_batch(
                    &batch.batch_id,
                    Action::Submit.from(),
                    &pipelines,
                    count,
                    &shards,
                )
                .await?
            {
                return Ok(queued);
            }
            current = self
                .store
                .batch(&batch.bucket_id, &batch.batch_id)
                .await?
                .ok_or_else(|| StoreError::not_found("batch", &batch.batch_id))?;
            if current.status == crate::store::BatchStatus::Draft {
                // Still a draft, with another number of objects by now.
                return Err(BatchError::ObjectsChanged {
                    batch_id: batch.batch_id.clone(),
                }
                .into());
            }
        }
        Ok(current)
    }

    /// Every object of the batch as a manifest row (applicable to all).
    async fn manifest_rows(&self, batch: &BatchRecord) -> Result<Vec<ManifestRow>, StoreError> {
        let mut rows = Vec::with_capacity(batch.total as usize);
        let mut page = PageRequest {
            limit: 10_000,
            after: None,
        };
        loop {
            let part = self
                .store
                .batch_object_records(&batch.batch_id, &page)
                .await?;
            rows.extend(part.items.into_iter().map(|(id, record)| match record {
                Some(o) => ManifestRow {
                    object_id: o.object_id.into(),
                    key: o.key,
                    mime_type: o.mime_type,
                    size_bytes: o.size_bytes,
                    sha256: o.sha256,
                    blob_key: o.blob_key,
                    metadata: o.metadata.map(|m| m.to_string()),
                    applicable: true,
                },
                None => ManifestRow {
                    key: id.to_string(),
                    object_id: id.into(),
                    mime_type: "application/octet-stream".into(),
                    size_bytes: 0,
                    sha256: String::new(),
                    blob_key: String::new(),
                    metadata: None,
                    applicable: true,
                },
            }));
            match part.next {
                Some(after) => page.after = Some(after),
                None => return Ok(rows),
            }
        }
    }
}

/// A collection's pipeline as the batch will run it: versions resolved
/// from the plan, and the manifest of each extractor.
fn pin(
    collection: &CollectionRecord,
    plan: &Plan,
    manifests: BTreeMap<String, String>,
) -> PinnedCollection {
    let extractors: Vec<ExtractorRef> = collection
        .extractors
        .iter()
        .map(|r| ExtractorRef {
            name: r.name.clone(),
            version: plan
                .steps()
                .find(|s| s.extractor.manifest().name == r.name)
                .map(|s| s.extractor.manifest().version.to_string()),
            params: r.params.clone(),
        })
        .collect();
    let summary = plan.summary();
    PinnedCollection {
        collection_id: collection.collection_id.clone(),
        collection_name: collection.collection_name.clone(),
        extractors,
        tiers: summary.tiers,
        output_schema: summary.output_schema,
        index_signature: pipeline::index_signature(plan),
        manifests,
    }
}
