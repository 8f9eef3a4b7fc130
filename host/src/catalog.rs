//! The extractors a host can run, by name and version.
//!
//! Installed from a plugins directory at start: every `*.wasm` file there is
//! loaded (compiled once, then from the compile cache) and checked. The
//! [`Follower`] keeps the catalog in step with the registry: published
//! versions are added, loaded on first use and unloaded when idle.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::engine::{Engine, Extractor, LoadError};
use crate::store::registry::{
    ExtractorVersionRecord, Published, Publisher, check_existing, claim, component_key,
};

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
    /// A published version cannot be loaded.
    #[error("extractor {id} cannot be loaded: {reason}")]
    Unavailable {
        /// `name@version`.
        id: String,
        /// Why.
        reason: String,
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

/// One installed version: loaded (compiled and checked), or known from
/// the registry and loaded on first use.
#[derive(Debug)]
struct Installed {
    /// The compiled extractor, while loaded.
    loaded: Option<Extractor>,
    /// The registry's record of a published version, from which it is
    /// loaded again after an unload. `None` for a plugins-directory file,
    /// which stays loaded.
    record: Option<Arc<ExtractorVersionRecord>>,
    /// Hex SHA-256 of the component.
    content_hash: String,
    /// Size of the component.
    size_bytes: u64,
    /// The manifest, as listed.
    manifest: Arc<serde_json::Value>,
    /// Where it came from: a file, or the registry's blob key.
    origin: String,
    /// Deprecated in the registry: only a collection that names this
    /// version runs it.
    deprecated: bool,
    /// When it was last handed out.
    last_used: Mutex<Instant>,
}

impl Installed {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}

type Versions = BTreeMap<semver::Version, Installed>;

/// The version a reference without one follows: the newest that is not
/// deprecated, a release before a pre-release.
fn newest(versions: &Versions) -> Option<(&semver::Version, &Installed)> {
    let current = || versions.iter().rev().filter(|(_, i)| !i.deprecated);
    current()
        .find(|(v, _)| v.pre.is_empty())
        .or_else(|| current().next())
}

fn listed(versions: &Versions) -> String {
    versions
        .keys()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What loads published versions: their components are in the blob store.
#[derive(Debug)]
struct Loader {
    blobs: Arc<dyn crate::blob::BlobStore>,
    engine: Engine,
}

/// Extractors by name, then version. Shared by the API and the pollers of
/// a process, and changed while it runs: versions published in the
/// registry are added (and loaded on first use), deprecated, deleted, and
/// unloaded when idle.
#[derive(Debug, Default)]
pub struct Catalog {
    by_name: RwLock<BTreeMap<String, Versions>>,
    loader: OnceLock<Loader>,
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

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Versions>> {
        self.by_name.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads published versions from `blobs` with `engine` from now on.
    pub fn attach(&self, blobs: Arc<dyn crate::blob::BlobStore>, engine: Engine) {
        self.loader.get_or_init(|| Loader { blobs, engine });
    }

    /// Adds `entry` as `name@version`; the same component again is a
    /// no-op (a loaded extractor replaces an unloaded one), another one
    /// under the same name and version an error.
    fn add(
        &self,
        name: &str,
        version: semver::Version,
        entry: Installed,
    ) -> Result<(), CatalogError> {
        {
            let mut by_name = self.write();
            let versions = by_name.entry(name.to_owned()).or_default();
            if let Some(installed) = versions.get_mut(&version) {
                if installed.content_hash != entry.content_hash {
                    return Err(CatalogError::Duplicate {
                        id: format!("{name}@{version}"),
                        first: installed.origin.clone(),
                        second: entry.origin,
                    });
                }
                // A plugins-directory file stays one (and stays loaded)
                // when the same bytes are published.
                if installed.loaded.is_none() && entry.loaded.is_some() {
                    installed.loaded = entry.loaded;
                    installed.touch();
                }
            } else {
                tracing::info!(extractor = %format!("{name}@{version}"), origin = %entry.origin, loaded = entry.loaded.is_some(), "extractor installed");
                versions.insert(version, entry);
            }
        }
        self.report();
        Ok(())
    }

    /// Sets the `strata_extractors_loaded` gauge.
    pub fn report(&self) {
        let loaded = self
            .read()
            .values()
            .flat_map(BTreeMap::values)
            .filter(|i| i.loaded.is_some())
            .count();
        metrics::gauge!("strata_extractors_loaded").set(loaded as f64);
    }

    /// Adds an extractor loaded from `origin`, with the registry's record
    /// when it is a published version (it can then be unloaded).
    pub fn insert_loaded(
        &self,
        extractor: Extractor,
        origin: String,
        record: Option<Arc<ExtractorVersionRecord>>,
    ) -> Result<(), CatalogError> {
        let m = extractor.manifest().clone();
        let manifest = serde_json::to_value(m.as_ref()).unwrap_or_default();
        let entry = Installed {
            content_hash: extractor.content_hash().to_owned(),
            size_bytes: extractor.size_bytes(),
            manifest: Arc::new(manifest),
            loaded: Some(extractor),
            record,
            origin,
            deprecated: false,
            last_used: Mutex::new(Instant::now()),
        };
        self.add(&m.name, m.version.clone(), entry)
    }

    /// Adds an extractor loaded from a file.
    pub fn insert(&self, extractor: Extractor, origin: String) -> Result<(), CatalogError> {
        self.insert_loaded(extractor, origin, None)
    }

    /// Adds a published version without loading it: it is loaded on first
    /// use.
    pub fn know(&self, record: &ExtractorVersionRecord) -> Result<(), CatalogError> {
        let version =
            semver::Version::parse(&record.version).map_err(|e| CatalogError::Unavailable {
                id: record.id(),
                reason: format!("its version is not semantic: {e}"),
            })?;
        let entry = Installed {
            loaded: None,
            record: Some(Arc::new(record.clone())),
            content_hash: record.content_hash.clone(),
            size_bytes: record.size_bytes,
            manifest: Arc::new(record.manifest.clone()),
            origin: format!("registry ({})", record.blob_key),
            deprecated: record.deprecated_at.is_some(),
            last_used: Mutex::new(Instant::now()),
        };
        self.add(&record.name, version, entry)
    }

    /// Marks the installed `name@version` whose content is `content_hash`
    /// deprecated or not; whether it is installed.
    pub fn set_deprecated(
        &self,
        name: &str,
        version: &str,
        content_hash: &str,
        deprecated: bool,
    ) -> bool {
        let Ok(version) = semver::Version::parse(version) else {
            return false;
        };
        match self
            .write()
            .get_mut(name)
            .and_then(|v| v.get_mut(&version))
            .filter(|i| i.content_hash == content_hash)
        {
            Some(installed) => {
                installed.deprecated = deprecated;
                true
            }
            None => false,
        }
    }

    /// The version `version` names, or, without one, the newest version
    /// of `name` that is not deprecated (a release before a pre-release).
    pub fn resolve(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<semver::Version, CatalogError> {
        let by_name = self.read();
        let versions = by_name
            .get(name)
            .ok_or_else(|| CatalogError::UnknownName(name.to_owned()))?;
        match version {
            None => newest(versions).map(|(v, _)| v.clone()).ok_or_else(|| {
                CatalogError::AllDeprecated {
                    name: name.to_owned(),
                    available: listed(versions),
                }
            }),
            Some(v) => semver::Version::parse(v.trim_start_matches('v'))
                .ok()
                .filter(|v| versions.contains_key(v))
                .ok_or_else(|| CatalogError::UnknownVersion {
                    name: name.to_owned(),
                    version: v.to_owned(),
                    available: listed(versions),
                }),
        }
    }

    /// The extractor `name` at `version`, or, without one, its newest
    /// version that is not deprecated (a release before a pre-release).
    /// A published version not loaded yet is fetched, checked and
    /// compiled (from the compile cache when it is warm), so call this
    /// off the async runtime, from a thread of its blocking pool.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Extractor, CatalogError> {
        let resolved = self.resolve(name, version)?;
        let record = {
            let by_name = self.read();
            let Some(installed) = by_name.get(name).and_then(|v| v.get(&resolved)) else {
                return Err(CatalogError::UnknownName(name.to_owned()));
            };
            installed.touch();
            match (&installed.loaded, &installed.record) {
                (Some(extractor), _) => return Ok(extractor.clone()),
                (None, Some(record)) => record.clone(),
                (None, None) => {
                    return Err(CatalogError::Unavailable {
                        id: format!("{name}@{resolved}"),
                        reason: "it has no component".into(),
                    });
                }
            }
        };
        let extractor = self.load(&record)?;
        // Kept only if the version is still installed: it may have been
        // deleted while it loaded.
        if let Some(installed) = self
            .write()
            .get_mut(name)
            .and_then(|v| v.get_mut(&resolved))
            .filter(|i| i.content_hash == record.content_hash && i.loaded.is_none())
        {
            installed.loaded = Some(extractor.clone());
            installed.touch();
        }
        self.report();
        Ok(extractor)
    }

    /// Fetches, checks and compiles a published version.
    fn load(&self, record: &ExtractorVersionRecord) -> Result<Extractor, CatalogError> {
        let unavailable = |reason: String| CatalogError::Unavailable {
            id: record.id(),
            reason,
        };
        let loader = self
            .loader
            .get()
            .ok_or_else(|| unavailable("this host does not follow the registry".into()))?;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| unavailable(format!("no runtime to fetch it with: {e}")))?;
        let bytes = handle
            .block_on(loader.blobs.read(&record.blob_key))
            .map_err(|e| unavailable(e.to_string()))?;
        let origin = format!("registry ({})", record.blob_key);
        let extractor = loader.engine.load_bytes(&bytes, &origin)?;
        if extractor.content_hash() != record.content_hash {
            return Err(unavailable(format!(
                "{} holds content {}, not the published {}",
                record.blob_key,
                extractor.content_hash(),
                record.content_hash
            )));
        }
        tracing::info!(extractor = %record.id(), "published extractor loaded");
        Ok(extractor)
    }

    /// Unloads the published versions not handed out for `idle`; returns
    /// them as `name@version`. A batch running one keeps its own handle,
    /// so it runs on; the next use loads it again.
    pub fn unload_idle(&self, idle: Duration) -> Vec<String> {
        let mut unloaded = Vec::new();
        for (name, versions) in self.write().iter_mut() {
            for (version, installed) in versions.iter_mut() {
                if installed.loaded.is_some()
                    && installed.record.is_some()
                    && installed.idle_for() >= idle
                {
                    installed.loaded = None;
                    unloaded.push(format!("{name}@{version}"));
                }
            }
        }
        if !unloaded.is_empty() {
            self.report();
            tracing::info!(extractors = ?unloaded, "idle extractors unloaded");
        }
        unloaded
    }

    /// Uninstalls the published `name@version` whose content is
    /// `content_hash` (a plugins-directory file stays); whether it was
    /// installed.
    pub fn remove_published(&self, name: &str, version: &str, content_hash: &str) -> bool {
        let Ok(version) = semver::Version::parse(version) else {
            return false;
        };
        let removed = {
            let mut by_name = self.write();
            let Some(versions) = by_name.get_mut(name) else {
                return false;
            };
            let published = versions
                .get(&version)
                .is_some_and(|i| i.record.is_some() && i.content_hash == content_hash);
            let removed = published && versions.remove(&version).is_some();
            if versions.is_empty() {
                by_name.remove(name);
            }
            removed
        };
        self.report();
        removed
    }

    /// The content hash of the installed `name@version`, if any.
    pub fn installed_hash(&self, name: &str, version: &str) -> Option<String> {
        let version = semver::Version::parse(version).ok()?;
        self.read()
            .get(name)?
            .get(&version)
            .map(|i| i.content_hash.clone())
    }

    /// Whether `name@version` with this content is installed.
    pub fn has(&self, name: &str, version: &str, content_hash: &str) -> bool {
        self.installed_hash(name, version)
            .is_some_and(|h| h == content_hash)
    }

    /// Names with a version from the plugins directory: reserved for
    /// admins in the registry.
    pub fn plugins_dir_names(&self) -> Vec<String> {
        self.read()
            .iter()
            .filter(|(_, versions)| versions.values().any(|i| i.record.is_none()))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Names in order, each with its versions, oldest first.
    pub fn snapshot(&self) -> Vec<Named> {
        self.read()
            .iter()
            .map(|(name, versions)| Named {
                name: name.clone(),
                versions: versions
                    .iter()
                    .map(|(version, i)| VersionView {
                        version: version.to_string(),
                        content_hash: i.content_hash.clone(),
                        size_bytes: i.size_bytes,
                        deprecated: i.deprecated,
                        loaded: i.loaded.is_some(),
                        manifest: i.manifest.clone(),
                    })
                    .collect(),
                newest: newest(versions).map(|(v, _)| v.to_string()),
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

/// One installed version, as listed.
#[derive(Debug, Clone)]
pub struct VersionView {
    /// Semantic version.
    pub version: String,
    /// Hex SHA-256 of the component.
    pub content_hash: String,
    /// Size of the component.
    pub size_bytes: u64,
    /// Deprecated in the registry.
    pub deprecated: bool,
    /// Compiled and ready on this host.
    pub loaded: bool,
    /// The manifest.
    pub manifest: Arc<serde_json::Value>,
}

/// An extractor's installed versions.
#[derive(Debug, Clone)]
pub struct Named {
    /// The name.
    pub name: String,
    /// Each version, oldest first.
    pub versions: Vec<VersionView>,
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
    /// Applies the registry's changes after `seen` to the catalog: adds
    /// the versions it lacks (loaded on first use), marks deprecations,
    /// uninstalls deleted versions; returns the last sequence number
    /// applied.
    pub async fn catch_up(&self, mut seen: u64) -> u64 {
        self.catalog.attach(self.blobs.clone(), self.engine.clone());
        match self.registry.changes(seen).await {
            Ok(changes) => {
                for version in changes {
                    let installed =
                        self.catalog
                            .has(&version.name, &version.version, &version.content_hash);
                    if version.deleted_at.is_some() {
                        if installed
                            && self.catalog.remove_published(
                                &version.name,
                                &version.version,
                                &version.content_hash,
                            )
                        {
                            tracing::info!(extractor = %version.id(), "deleted extractor uninstalled");
                        }
                    } else if !installed {
                        if let Err(e) = self.catalog.know(&version) {
                            // A plugins-directory file of the same name
                            // and version with other bytes wins here.
                            tracing::warn!(extractor = %version.id(), error = %e, "a published extractor cannot be installed");
                        }
                    } else {
                        self.catalog.set_deprecated(
                            &version.name,
                            &version.version,
                            &version.content_hash,
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
    /// compiled once for all hosts that share the compile cache. Versions
    /// not used for `unload_after` are unloaded on the way.
    pub async fn follow(
        self,
        mut seen: u64,
        interval: Duration,
        unload_after: Duration,
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
            self.catalog.unload_idle(unload_after);
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
    /// Its name belongs to another namespace, or is reserved for admins.
    #[error("{0}")]
    Forbidden(String),
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
            e @ crate::store::StoreError::Taken { .. } => PublishError::Conflict(e.to_string()),
            crate::store::StoreError::Forbidden(detail) => PublishError::Forbidden(detail),
            e => PublishError::Store(e),
        }
    }
}

impl Follower {
    /// Publishes the component `bytes` (from `origin`, for messages) for
    /// `publisher`: the engine checks it, it is stored content-addressed in
    /// the blob store, recorded in the registry and installed here. Other
    /// hosts install it when they next follow the registry.
    pub async fn publish(
        &self,
        bytes: bytes::Bytes,
        origin: &str,
        publisher: &Publisher,
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
            published_by: publisher.by.clone(),
        };
        // Refuse before writing anything when the name is another's, or
        // its version is taken by other bytes or was deleted (the registry
        // checks again, atomically).
        let name = self.registry.extractor_name(&record.name).await?;
        let legacy = name.is_none()
            && !self
                .registry
                .extractor_versions(&record.name)
                .await?
                .is_empty();
        claim(&record.name, name.as_ref(), legacy, publisher)?;
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
        let published = self.registry.publish(&record, publisher).await?;
        let (Published::New(stored) | Published::Existing(stored)) = &published;
        self.catalog.attach(self.blobs.clone(), self.engine.clone());
        self.catalog
            .insert_loaded(
                extractor,
                format!("registry ({})", stored.blob_key),
                Some(Arc::new(stored.clone())),
            )
            .map_err(|e| PublishError::Conflict(e.to_string()))?;
        // The same bytes again may name a deprecated version.
        self.catalog.set_deprecated(
            &stored.name,
            &stored.version,
            &stored.content_hash,
            stored.deprecated_at.is_some(),
        );
        tracing::info!(extractor = %stored.id(), hash = %stored.content_hash, %origin, "extractor published");
        Ok(published)
    }
}
