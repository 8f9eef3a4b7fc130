//! The extractors a host can run, by name and version.
//!
//! Installed from a plugins directory at start: every `*.wasm` file there is
//! loaded (compiled once, then from the compile cache) and checked.

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::{Engine, Extractor, LoadError};
use crate::store::registry::{ExtractorVersionRecord, Published, check_existing, component_key};

/// Why the catalog cannot be built or an extractor found.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The plugins directory cannot be read.
    #[error("cannot read plugins directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A component failed to load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Two files hold the same name and version.
    #[error("{first} and {second} both hold extractor {id}")]
    Duplicate {
        /// `name@version`.
        id: String,
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
    /// No extractor of that name.
    #[error("no extractor `{0}`")]
    UnknownName(String),
    /// No such version of a known extractor.
    #[error("extractor `{name}` has no version `{version}` (it has {available})")]
    UnknownVersion {
        /// The extractor.
        name: String,
        /// The version asked for.
        version: String,
        /// The versions there are.
        available: String,
    },
    /// Every version of the extractor is deprecated.
    #[error(
        "every version of extractor `{name}` is deprecated ({available}); name one with its version"
    )]
    AllDeprecated {
        /// The extractor.
        name: String,
        /// The versions there are.
        available: String,
    },
}

/// One installed version.
#[derive(Debug)]
struct Installed {
    extractor: Extractor,
    /// Where it came from: a file, or the registry's blob key.
    origin: String,
    /// Deprecated in the registry: only a collection that names this
    /// version runs it.
    deprecated: bool,
}

type Versions = BTreeMap<semver::Version, Installed>;

/// The version a reference without one follows: the newest that is not
/// deprecated, a release before a pre-release.
fn newest(versions: &Versions) -> Option<&Installed> {
    let current = || versions.iter().rev().filter(|(_, i)| !i.deprecated);
    current()
        .find(|(v, _)| v.pre.is_empty())
        .or_else(|| current().next())
        .map(|(_, i)| i)
}

fn listed(versions: &Versions) -> String {
    versions
        .keys()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Extractors by name, then version. Shared by the API and the pollers of
/// a process, and added to while it runs (published versions).
#[derive(Debug, Default)]
pub struct Catalog {
    by_name: std::sync::RwLock<BTreeMap<String, Versions>>,
}

impl Catalog {
    /// Loads every `*.wasm` file of `dir` (not recursively).
    pub fn load_dir(engine: &Engine, dir: &Path) -> Result<Catalog, CatalogError> {
        let dir_error = |source| CatalogError::Dir {
            path: dir.display().to_string(),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(dir_error)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(dir_error)?;
        files.retain(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file());
        files.sort();
        let catalog = Catalog::default();
        for path in files {
            let extractor = engine.load(&path)?;
            catalog.insert(extractor, path.display().to_string())?;
        }
        Ok(catalog)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Versions>> {
        self.by_name.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an extractor loaded from `origin`; the same component again
    /// is a no-op, another one under the same name and version an error.
    pub fn insert(&self, extractor: Extractor, origin: String) -> Result<(), CatalogError> {
        let m = extractor.manifest().clone();
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        let versions = by_name.entry(m.name.clone()).or_default();
        if let Some(installed) = versions.get(&m.version) {
            if installed.extractor.content_hash() == extractor.content_hash() {
                return Ok(());
            }
            return Err(CatalogError::Duplicate {
                id: m.id(),
                first: installed.origin.clone(),
                second: origin,
            });
        }
        tracing::info!(extractor = %m.id(), origin = %origin, "extractor installed");
        versions.insert(
            m.version.clone(),
            Installed {
                extractor,
                origin,
                deprecated: false,
            },
        );
        Ok(())
    }

    /// Marks the installed `name@version` deprecated or not; whether it is
    /// installed.
    pub fn set_deprecated(&self, name: &str, version: &str, deprecated: bool) -> bool {
        let Ok(version) = semver::Version::parse(version) else {
            return false;
        };
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        match by_name.get_mut(name).and_then(|v| v.get_mut(&version)) {
            Some(installed) => {
                installed.deprecated = deprecated;
                true
            }
            None => false,
        }
    }

    /// The extractor `name` at `version`, or, without one, its newest
    /// version that is not deprecated (a release before a pre-release).
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Extractor, CatalogError> {
        let by_name = self.read();
        let versions = by_name
            .get(name)
            .ok_or_else(|| CatalogError::UnknownName(name.to_owned()))?;
        let found = match version {
            None => newest(versions).ok_or_else(|| CatalogError::AllDeprecated {
                name: name.to_owned(),
                available: listed(versions),
            })?,
            Some(v) => semver::Version::parse(v.trim_start_matches('v'))
                .ok()
                .and_then(|v| versions.get(&v))
                .ok_or_else(|| CatalogError::UnknownVersion {
                    name: name.to_owned(),
                    version: v.to_owned(),
                    available: listed(versions),
                })?,
        };
        Ok(found.extractor.clone())
    }

    /// Uninstalls `name@version`; whether it was installed.
    pub fn remove(&self, name: &str, version: &str) -> bool {
        let Ok(version) = semver::Version::parse(version) else {
            return false;
        };
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        let Some(versions) = by_name.get_mut(name) else {
            return false;
        };
        let removed = versions.remove(&version).is_some();
        if versions.is_empty() {
            by_name.remove(name);
        }
        removed
    }

    /// The content hash of the installed `name@version`, if any.
    pub fn installed_hash(&self, name: &str, version: &str) -> Option<String> {
        let version = semver::Version::parse(version).ok()?;
        self.read()
            .get(name)?
            .get(&version)
            .map(|i| i.extractor.content_hash().to_owned())
    }

    /// Whether `name@version` with this content is installed.
    pub fn has(&self, name: &str, version: &str, content_hash: &str) -> bool {
        self.installed_hash(name, version)
            .is_some_and(|h| h == content_hash)
    }

    /// Names in order, each with its versions, oldest first.
    pub fn snapshot(&self) -> Vec<Named> {
        self.read()
            .iter()
            .map(|(name, versions)| Named {
                name: name.clone(),
                versions: versions
                    .values()
                    .map(|i| (i.extractor.clone(), i.deprecated))
                    .collect(),
                newest: newest(versions).map(|i| i.extractor.manifest().version.to_string()),
            })
            .collect()
    }

    /// Number of extractor versions.
    pub fn len(&self) -> usize {
        self.read().values().map(BTreeMap::len).sum()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

/// An extractor's installed versions.
#[derive(Debug, Clone)]
pub struct Named {
    /// The name.
    pub name: String,
    /// Each version, oldest first, with whether it is deprecated.
    pub versions: Vec<(Extractor, bool)>,
    /// The version a reference without one follows, if any.
    pub newest: Option<String>,
}

/// What follows the registry for a catalog.
#[derive(Clone, Debug)]
pub struct Follower {
    /// The catalog to install into.
    pub catalog: std::sync::Arc<Catalog>,
    /// Published versions.
    pub registry: std::sync::Arc<dyn crate::store::Registry>,
    /// Where their components are.
    pub blobs: std::sync::Arc<dyn crate::blob::BlobStore>,
    /// Loads and checks them.
    pub engine: Engine,
}

impl Follower {
    /// Applies the registry's changes after `seen` to the catalog:
    /// installs the versions it lacks, marks deprecations, uninstalls
    /// deleted versions; returns the last sequence number applied.
    pub async fn catch_up(&self, mut seen: u64) -> u64 {
        match self.registry.changes(seen).await {
            Ok(changes) => {
                for version in changes {
                    let installed =
                        self.catalog
                            .has(&version.name, &version.version, &version.content_hash);
                    if version.deleted_at.is_some() {
                        if installed && self.catalog.remove(&version.name, &version.version) {
                            tracing::info!(extractor = %version.id(), "deleted extractor uninstalled");
                        }
                    } else if !installed {
                        let installed =
                            install(&self.catalog, self.blobs.as_ref(), &self.engine, &version)
                                .await;
                        if let Err(e) = installed {
                            // Tried again on the next look.
                            tracing::warn!(extractor = %version.id(), error = %e, "installing a published extractor failed");
                            return seen;
                        }
                        tracing::info!(extractor = %version.id(), "published extractor installed");
                    }
                    if version.deleted_at.is_none() {
                        self.catalog.set_deprecated(
                            &version.name,
                            &version.version,
                            version.deprecated_at.is_some(),
                        );
                    }
                    seen = seen.max(version.seq);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the extractor registry failed"),
        }
        seen
    }

    /// Catches up each `interval` until `shutdown`, from `seen`: a version
    /// published through any host runs on this one within one interval,
    /// compiled once for all hosts that share the compile cache.
    pub async fn follow(
        self,
        mut seen: u64,
        interval: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                caught_up = self.catch_up(seen) => seen = caught_up,
            }
        }
    }
}

/// Why a component cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The engine refused the component.
    #[error(transparent)]
    Invalid(LoadError),
    /// Its name and version are taken by other bytes, or were deleted.
    #[error("{0}")]
    Conflict(String),
    /// The registry failed.
    #[error(transparent)]
    Store(crate::store::StoreError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] crate::blob::BlobError),
    /// Checking was interrupted.
    #[error("checking was interrupted: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl From<crate::store::StoreError> for PublishError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict(detail) => PublishError::Conflict(detail),
            e => PublishError::Store(e),
        }
    }
}

impl Follower {
    /// Publishes the component `bytes` (from `origin`, for messages): the
    /// engine checks it, it is stored content-addressed in the blob store,
    /// recorded in the registry and installed here. Other hosts install it
    /// when they next follow the registry.
    pub async fn publish(
        &self,
        bytes: bytes::Bytes,
        origin: &str,
    ) -> Result<Published, PublishError> {
        let (engine, checked, named) = (self.engine.clone(), bytes.clone(), origin.to_owned());
        let extractor = tokio::task::spawn_blocking(move || engine.load_bytes(&checked, &named))
            .await?
            .map_err(PublishError::Invalid)?;
        let manifest = extractor.manifest();
        let record = ExtractorVersionRecord {
            name: manifest.name.clone(),
            version: manifest.version.to_string(),
            content_hash: extractor.content_hash().to_owned(),
            size_bytes: extractor.size_bytes(),
            blob_key: component_key(extractor.content_hash()),
            manifest: serde_json::to_value(manifest.as_ref())
                .map_err(|e| PublishError::Store(crate::store::StoreError::backend(e)))?,
            published_at: crate::store::now(),
            deprecated_at: None,
            deleted_at: None,
            seq: 0,
        };
        // Refuse before writing anything when the name and version are
        // taken by other bytes or were deleted (the registry checks again,
        // atomically).
        if let Some(existing) = self
            .registry
            .extractor_version(&record.name, &record.version)
            .await?
        {
            check_existing(existing, &record)?;
        }
        if let Some(installed) = self
            .catalog
            .installed_hash(&record.name, &record.version)
            .filter(|h| *h != record.content_hash)
        {
            return Err(PublishError::Conflict(format!(
                "{} is installed on this server with content {installed} (from its plugins directory); publish these bytes under a new version",
                record.id()
            )));
        }
        // Content-addressed: writing the same bytes again changes nothing.
        self.blobs.put_bytes(&record.blob_key, bytes).await?;
        let published = self.registry.publish(&record).await?;
        let (Published::New(stored) | Published::Existing(stored)) = &published;
        self.catalog
            .insert(extractor, format!("registry ({})", stored.blob_key))
            .map_err(|e| PublishError::Conflict(e.to_string()))?;
        tracing::info!(extractor = %stored.id(), hash = %stored.content_hash, %origin, "extractor published");
        Ok(published)
    }
}

/// Why a published version could not be installed.
#[derive(Debug, thiserror::Error)]
enum InstallError {
    #[error(transparent)]
    Blob(#[from] crate::blob::BlobError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("loading was interrupted: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("{key} holds content {found}, not the published {expected}")]
    Content {
        key: String,
        found: String,
        expected: String,
    },
}

/// Fetches, checks and installs one published version.
async fn install(
    catalog: &Catalog,
    blobs: &dyn crate::blob::BlobStore,
    engine: &Engine,
    version: &crate::store::registry::ExtractorVersionRecord,
) -> Result<(), InstallError> {
    let bytes = blobs.read(&version.blob_key).await?;
    let (engine, origin) = (engine.clone(), format!("registry ({})", version.blob_key));
    let loading = origin.clone();
    let extractor = tokio::task::spawn_blocking(move || engine.load_bytes(&bytes, &loading))
        .await?
        .map_err(CatalogError::from)?;
    if extractor.content_hash() != version.content_hash {
        return Err(InstallError::Content {
            key: version.blob_key.clone(),
            found: extractor.content_hash().to_owned(),
            expected: version.content_hash.clone(),
        });
    }
    catalog.insert(extractor, origin)?;
    Ok(())
}
