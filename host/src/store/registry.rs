//! The extractor registry: published versions of extractors, shared by
//! every host on a store.
//!
//! A version is immutable: its name and semantic version name one
//! component, stored content-addressed in the blob store under
//! [`component_key`]. Every publication gets the next sequence number, so
//! a host learns what changed since it last looked with [`Registry::changes`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Result, StoreError};

/// Blob key of the component whose SHA-256 is `content_hash` (hex).
pub fn component_key(content_hash: &str) -> String {
    let prefix = content_hash.get(..2).unwrap_or("00");
    format!("components/sha256/{prefix}/{content_hash}.wasm")
}

/// One published version of an extractor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractorVersionRecord {
    /// The extractor's name.
    pub name: String,
    /// Semantic version, as in the manifest.
    pub version: String,
    /// Hex SHA-256 of the component.
    pub content_hash: String,
    /// Size of the component in bytes.
    pub size_bytes: u64,
    /// Where the component is, in the blob store.
    pub blob_key: String,
    /// The component's checked manifest.
    pub manifest: Value,
    /// RFC 3339.
    pub published_at: String,
    /// RFC 3339, once deprecated: a collection that names the extractor
    /// without a version no longer follows it.
    pub deprecated_at: Option<String>,
    /// RFC 3339, once deleted. A deleted version stays in the registry as
    /// a tombstone, so hosts that follow it uninstall the version and its
    /// name and version are never given to other bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// Publication order across the registry, set by the store.
    #[serde(default)]
    pub seq: u64,
}

impl ExtractorVersionRecord {
    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// What a publication did.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// A new version, now in the registry.
    New(ExtractorVersionRecord),
    /// The same bytes were published before under this name and version.
    Existing(ExtractorVersionRecord),
}

/// What publishing `record` meets in `existing` (the registry's record
/// of the same name and version): nothing to do for the same bytes, a
/// conflict for other bytes or a deleted version.
pub fn check_existing(
    existing: ExtractorVersionRecord,
    record: &ExtractorVersionRecord,
) -> Result<Published> {
    if let Some(deleted_at) = &existing.deleted_at {
        return Err(StoreError::Conflict(format!(
            "{} was deleted at {deleted_at}; versions are never reused, so publish under a new version",
            existing.id()
        )));
    }
    if existing.content_hash != record.content_hash {
        return Err(immutable(&existing, &record.content_hash));
    }
    Ok(Published::Existing(existing))
}

/// `found` if it is a live (not deleted) version, else not found.
pub fn live(
    found: Option<ExtractorVersionRecord>,
    name: &str,
    version: &str,
) -> Result<ExtractorVersionRecord> {
    found
        .filter(|r| r.deleted_at.is_none())
        .ok_or_else(|| StoreError::not_found("extractor version", format!("{name}@{version}")))
}

/// A refusal for `name@version` published again with other bytes.
pub fn immutable(existing: &ExtractorVersionRecord, content_hash: &str) -> StoreError {
    StoreError::Conflict(format!(
        "{} is published with content {}; versions are immutable, so publish these bytes ({content_hash}) under a new version",
        existing.id(),
        existing.content_hash
    ))
}

/// Who keeps `name@version` from being deleted: collections that name it
/// with its version, and queued or processing batches that run it.
pub fn pinned_by(
    name: &str,
    version: &str,
    collections: &[super::CollectionRecord],
    active_batches: &[super::BatchRecord],
) -> Vec<String> {
    let same = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|v| v.trim_start_matches('v') == version)
    };
    let names = |refs: &[crate::pipeline::ExtractorRef]| {
        refs.iter().any(|r| r.name == name && same(&r.version))
    };
    let mut pins: Vec<String> = collections
        .iter()
        .filter(|c| names(&c.extractors))
        .map(|c| format!("collection `{}`", c.collection_name))
        .collect();
    pins.extend(
        active_batches
            .iter()
            .filter(|b| b.collections.iter().any(|c| names(&c.extractors)))
            .map(|b| format!("batch `{}` ({})", b.batch_id, b.status.as_str())),
    );
    pins
}

/// A refusal to delete `name@version` while `pins` hold it.
pub fn in_use(name: &str, version: &str, pins: &[String]) -> StoreError {
    StoreError::Conflict(format!(
        "{name}@{version} is in use by {}; unpin or finish those first",
        pins.join(", ")
    ))
}

/// The registry seam.
#[async_trait]
pub trait Registry: Send + Sync + std::fmt::Debug {
    /// Publishes a version (the store sets `seq`): new, or the existing one
    /// when the same bytes were published under its name and version
    /// before; a conflict when other bytes were.
    async fn publish(&self, record: &ExtractorVersionRecord) -> Result<Published>;
    /// One version; a deleted one has `deleted_at` set.
    async fn extractor_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<ExtractorVersionRecord>>;
    /// Every live (not deleted) version of `name`, in publication order.
    async fn extractor_versions(&self, name: &str) -> Result<Vec<ExtractorVersionRecord>>;
    /// Versions published, deprecated or deleted after `seq`, in order:
    /// each as it is now, at its latest sequence number.
    async fn changes(&self, seq: u64) -> Result<Vec<ExtractorVersionRecord>>;
    /// Marks a version deprecated (idempotent); returns it.
    async fn deprecate(&self, name: &str, version: &str) -> Result<ExtractorVersionRecord>;
    /// Deletes a version, refused while a collection names it with its
    /// version or a queued or processing batch runs it; returns its
    /// tombstone. Its component stays in the blob store.
    async fn delete_version(&self, name: &str, version: &str) -> Result<ExtractorVersionRecord>;
}
