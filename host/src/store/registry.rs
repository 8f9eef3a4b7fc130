//! The extractor registry: published versions of extractors, shared by
//! every host on a store.
//!
//! A version is immutable: its name and semantic version name one
//! component, stored content-addressed in the blob store under
//! [`component_key`]. Every publication gets the next sequence number, so
//! a host learns what changed since it last looked with [`Registry::changes`].
//!
//! A name has an owner, as on a package registry: the namespace that first
//! published under it ([`claim`]). Only its owner (or an admin) publishes
//! new versions and deprecates them; names of a plugins directory, and
//! names an admin reserves, belong to no namespace and only admins publish
//! under them. A namespace's name is private to it until its owner (or an
//! admin) makes it public ([`may_use`]). The rules are here, once: the
//! backends call them inside the transaction that writes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Result, StoreError, Timestamp};
use crate::store::{KeyId, NamespaceId};

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
    pub published_at: Timestamp,
    /// RFC 3339, once deprecated: a collection that names the extractor
    /// without a version no longer follows it.
    pub deprecated_at: Option<Timestamp>,
    /// RFC 3339, once deleted. A deleted version stays in the registry as
    /// a tombstone, so hosts that follow it uninstall the version and its
    /// name and version are never given to other bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
    /// Publication order across the registry, set by the store.
    #[serde(default)]
    pub seq: u64,
    /// Who published it; `None` for a host's own publication (its plugins
    /// watcher) and versions published before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_by: Option<PublishedBy>,
}

/// A namespace, by id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRef {
    /// `ns_…`
    pub namespace_id: NamespaceId,
    /// Its name.
    pub name: String,
}

/// Who published a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedBy {
    /// The namespace the key acted in.
    pub namespace: NamespaceRef,
    /// The key's id (never its secret).
    pub key_id: KeyId,
}

/// An extractor name: who owns it and who may use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractorNameRecord {
    /// The name.
    pub name: String,
    /// The namespace that owns it; `None`: reserved for admins (a plugins
    /// directory's names, names an admin reserved), usable everywhere.
    pub owner: Option<NamespaceRef>,
    /// Whether every namespace may use it, not only its owner.
    pub public: bool,
    /// RFC 3339.
    pub updated_at: Timestamp,
}

impl ExtractorNameRecord {
    /// A name reserved for admins.
    pub fn reserved(name: &str) -> Self {
        ExtractorNameRecord {
            name: name.to_owned(),
            owner: None,
            public: true,
            updated_at: super::now(),
        }
    }
}

/// Who asks to publish or manage a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    /// The namespace acted in and the key, or `None` for the host itself
    /// (its plugins watcher), which acts as an admin and reserves the names
    /// it publishes.
    pub by: Option<PublishedBy>,
    /// Whether the key is an admin key.
    pub admin: bool,
}

impl Publisher {
    /// The host itself.
    pub fn host() -> Self {
        Publisher {
            by: None,
            admin: true,
        }
    }
}

fn owner_phrase(owner: &Option<NamespaceRef>) -> String {
    match owner {
        Some(owner) => format!("belongs to namespace `{}`", owner.name),
        None => "is reserved for admins".to_owned(),
    }
}

/// Whether `publisher` may publish under `name`, whose record is
/// `existing`; `legacy` says versions of it were published before names
/// had owners (such a name is reserved for admins until one transfers it).
/// Returns the record to create when the publication claims the name.
pub fn claim(
    name: &str,
    existing: Option<&ExtractorNameRecord>,
    legacy: bool,
    publisher: &Publisher,
) -> Result<Option<ExtractorNameRecord>> {
    let owner = match existing {
        Some(record) => record.owner.clone(),
        None if legacy => None,
        None => {
            // The first publication claims the name: for the namespace that
            // publishes, private; by the host itself, reserved.
            let owner = publisher.by.as_ref().map(|by| by.namespace.clone());
            return Ok(Some(ExtractorNameRecord {
                name: name.to_owned(),
                public: owner.is_none(),
                owner,
                updated_at: super::now(),
            }));
        }
    };
    let claim = match existing {
        Some(_) => None,
        None => Some(ExtractorNameRecord::reserved(name)),
    };
    if publisher.admin {
        return Ok(claim);
    }
    let acting = publisher.by.as_ref().map(|by| &by.namespace.namespace_id);
    match &owner {
        Some(o) if Some(&o.namespace_id) == acting => Ok(claim),
        _ => Err(StoreError::Forbidden(format!(
            "extractor name `{name}` {}; only its owner or an admin publishes or deprecates its versions",
            owner_phrase(&owner)
        ))),
    }
}

/// Whether `caller` (acting in namespace `namespace_id`, an admin key or
/// not) may publish new versions of `name`, deprecate them or change who
/// may use it.
pub fn may_manage(
    name: &str,
    record: Option<&ExtractorNameRecord>,
    namespace_id: &NamespaceId,
    admin: bool,
) -> Result<()> {
    let owner = record.and_then(|r| r.owner.clone());
    match &owner {
        _ if admin => Ok(()),
        Some(o) if o.namespace_id == *namespace_id => Ok(()),
        _ => Err(StoreError::Forbidden(format!(
            "extractor name `{name}` {}; only its owner or an admin manages it",
            owner_phrase(&owner)
        ))),
    }
}

/// Whether namespace `namespace_id` may run (and see) the extractor whose
/// name record is `record`: a name without an owner (reserved, or from
/// before names had owners) is usable everywhere, an owned one by its owner
/// and, once it is public, by everyone.
pub fn may_use(record: Option<&ExtractorNameRecord>, namespace_id: &NamespaceId) -> bool {
    match record {
        None => true,
        Some(r) => {
            r.public
                || r.owner
                    .as_ref()
                    .is_none_or(|o| o.namespace_id == *namespace_id)
        }
    }
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
    /// Publishes a version for `publisher` (the store sets `seq`), in one
    /// transaction with the name's [`claim`]: new, or the existing one when
    /// the same bytes were published under its name and version before; a
    /// conflict when other bytes were, forbidden when the name is another's.
    async fn publish(
        &self,
        record: &ExtractorVersionRecord,
        publisher: &Publisher,
    ) -> Result<Published>;
    /// The record of an extractor name, if it has one.
    async fn extractor_name(&self, name: &str) -> Result<Option<ExtractorNameRecord>>;
    /// Every name with a record, by name.
    async fn extractor_names(&self) -> Result<Vec<ExtractorNameRecord>>;
    /// Creates `record` unless its name has one; returns the name's record.
    async fn reserve_name(&self, record: &ExtractorNameRecord) -> Result<ExtractorNameRecord>;
    /// Writes `record` (a transfer, a reservation, a change of visibility).
    async fn set_extractor_name(&self, record: &ExtractorNameRecord) -> Result<()>;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(id: &str) -> NamespaceRef {
        NamespaceRef {
            namespace_id: id.into(),
            name: format!("{id}-name"),
        }
    }

    fn name(owner: Option<&str>, public: bool) -> ExtractorNameRecord {
        ExtractorNameRecord {
            name: "x".into(),
            owner: owner.map(ns),
            public,
            updated_at: crate::store::now(),
        }
    }

    fn by(namespace: &str, admin: bool) -> Publisher {
        Publisher {
            by: Some(PublishedBy {
                namespace: ns(namespace),
                key_id: "key_1".into(),
            }),
            admin,
        }
    }

    /// A name's record, whether it is from before owners, who publishes,
    /// and a part of the refusal expected.
    type Case<'a> = (
        Option<&'a ExtractorNameRecord>,
        bool,
        Publisher,
        std::result::Result<(), &'static str>,
    );

    #[test]
    fn who_publishes_under_a_name() {
        let owned = name(Some("a"), false);
        let reserved = name(None, true);
        let cases: [Case<'_>; 9] = [
            (Some(&owned), false, by("a", false), Ok(())),
            (Some(&owned), false, by("b", true), Ok(())),
            (
                Some(&owned),
                false,
                by("b", false),
                Err("belongs to namespace `a-name`"),
            ),
            (
                Some(&reserved),
                false,
                by("a", false),
                Err("reserved for admins"),
            ),
            (Some(&reserved), false, by("a", true), Ok(())),
            (Some(&reserved), false, Publisher::host(), Ok(())),
            (None, true, by("a", false), Err("reserved for admins")),
            (None, true, by("a", true), Ok(())),
            (None, false, by("a", false), Ok(())),
        ];
        for (i, (existing, legacy, publisher, expected)) in cases.into_iter().enumerate() {
            let got = claim("x", existing, legacy, &publisher);
            match expected {
                Ok(()) => assert!(got.is_ok(), "case {i}: {got:?}"),
                Err(part) => assert!(
                    matches!(&got, Err(StoreError::Forbidden(m)) if m.contains(part)),
                    "case {i}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn a_first_publication_claims_the_name() {
        let claimed = claim("x", None, false, &by("a", false)).expect("claims");
        assert_eq!(
            claimed.map(|c| (c.owner, c.public)),
            Some((Some(ns("a")), false))
        );
        let by_host = claim("x", None, false, &Publisher::host()).expect("claims");
        assert_eq!(by_host.map(|c| (c.owner, c.public)), Some((None, true)));
        let legacy = claim("x", None, true, &by("a", true)).expect("an admin");
        assert_eq!(legacy.map(|c| c.owner), Some(None), "reserved");
        assert_eq!(
            claim("x", Some(&name(Some("a"), false)), false, &by("a", false)).expect("owner"),
            None,
            "nothing new to write"
        );
    }

    #[test]
    fn who_uses_a_name() {
        assert!(
            may_use(None, &NamespaceId::from("b")),
            "from before names had owners"
        );
        assert!(
            may_use(Some(&name(None, true)), &NamespaceId::from("b")),
            "reserved"
        );
        assert!(
            may_use(Some(&name(Some("a"), false)), &NamespaceId::from("a")),
            "its owner"
        );
        assert!(
            !may_use(Some(&name(Some("a"), false)), &NamespaceId::from("b")),
            "private"
        );
        assert!(
            may_use(Some(&name(Some("a"), true)), &NamespaceId::from("b")),
            "public"
        );
    }
}
