//! The metadata store: namespaces, keys, buckets, objects, collections,
//! batches, tasks and documents.
//!
//! One trait per resource, each with its records in a file of its own
//! ([`NamespaceStore`], [`BucketStore`], [`CollectionStore`], [`BatchStore`],
//! [`DocumentSink`], [`Registry`], [`Webhooks`]); [`Store`] is all of the
//! metadata ones, behind one backend. Each backend mirrors the split,
//! `sqlite/<resource>.rs` and `mongo/<resource>.rs`. The API, the pollers
//! and the engine see these traits and nothing else; [`sqlite`] is the
//! embedded default. Backends store: the rules of batches live in
//! `crate::batches`, those of extractor names in [`registry`].

mod batches;
mod buckets;
mod collections;
mod documents;
pub mod events;
mod ids;
pub mod mongo;
mod namespaces;
pub mod registry;
mod shards;
pub mod sqlite;

use async_trait::async_trait;

pub use crate::time::{NotATime, Timestamp};
pub use batches::*;
pub use buckets::*;
pub use collections::*;
pub use documents::*;
pub use events::Webhooks;
pub use ids::*;
pub use mongo::MongoStore;
pub use namespaces::*;
pub use registry::Registry;
pub use shards::*;
pub use sqlite::SqliteStore;

/// A store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such record (in this namespace).
    #[error("{kind} `{id}` not found")]
    NotFound {
        /// What was looked for, e.g. `bucket`.
        kind: &'static str,
        /// The id or name given.
        id: String,
    },
    /// A unique name or id is taken.
    #[error("{kind} `{name}` already exists")]
    Taken {
        /// What was written, e.g. `bucket`.
        kind: &'static str,
        /// The name or id.
        name: String,
    },
    /// The write would break a state rule.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this (e.g. publish under a name another
    /// namespace owns).
    #[error("{0}")]
    Forbidden(String),
    /// A batch rule refused the request.
    #[error(transparent)]
    Batch(#[from] crate::batches::BatchError),
    /// The worker's lease on the batch is gone: canceled or taken over.
    #[error("the lease on batch `{0}` is lost")]
    LeaseLost(String),
    /// The backend failed. The message carries the cause in full (it is
    /// not chained again as a `source`, so reports do not repeat it).
    #[error("storage backend: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A backend failure.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }

    /// A taken name or id.
    pub fn taken(kind: &'static str, name: impl Into<String>) -> Self {
        StoreError::Taken {
            kind,
            name: name.into(),
        }
    }

    /// A missing record.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// One page of a list, in a stable order.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The records of this page.
    pub items: Vec<T>,
    /// Sort key of the last record, when more may follow.
    pub next: Option<String>,
}

/// Which page of a list to read.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Most records to return (at least 1).
    pub limit: usize,
    /// Return records whose sort key follows this one.
    pub after: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` records read in order: the extra
    /// one only says that another page follows.
    pub fn from_overfetch(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(key)
        } else {
            None
        };
        Page { items, next }
    }
}

/// The metadata store: every resource's seam, one backend behind them all.
#[async_trait]
pub trait Store:
    NamespaceStore + BucketStore + CollectionStore + BatchStore + Send + Sync + std::fmt::Debug
{
    /// A one-line description for logs and `/readyz`, without secrets.
    fn describe(&self) -> String;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;
}

/// Now.
pub fn now() -> Timestamp {
    Timestamp::now()
}
