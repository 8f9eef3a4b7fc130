//! `strata serve`: the batch service on its backends.
//!
//! [`run`] serves on a given listener until a shutdown future resolves, so
//! tests start the real server on port 0.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::blob::{BlobStore, LocalBlobs, S3Blobs, S3Location, S3Options};
use crate::catalog::Catalog;
use crate::engine::{Engine, EngineConfig};
use crate::keys;
use crate::progress::HealthPolicy;
use crate::store::{
    ApiKey, DocumentSink, MongoStore, Namespace, NamespaceId, Registry, SqliteStore, Store,
    StoreError, Webhooks, now,
};
use crate::webhooks::{Sender, SenderConfig};
use crate::worker::{self, WorkerConfig};

/// Name of the key `STRATA_ADMIN_KEY` makes.
const ENV_KEY_NAME: &str = "admin (STRATA_ADMIN_KEY)";

/// Name of the namespace created on first start.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The API and workers (`strata serve`).
    #[default]
    All,
    /// The API only (`strata serve --no-workers`).
    Api,
    /// Workers only, with `/healthz`, `/readyz` and `/metrics`
    /// (`strata worker`).
    Worker,
}

impl Role {
    /// Whether this process serves the API (and sends webhooks, sweeps).
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }

    /// Whether this process runs shards.
    pub fn runs_shards(self) -> bool {
        self != Role::Api
    }
}

/// Settings of `strata serve` and `strata worker`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the embedded backends keep everything (and the admin key, the
    /// upload spool).
    pub data_dir: PathBuf,
    /// Which backends to use.
    pub backends: BackendConfig,
    /// Directory of extractor components installed at start.
    pub plugins: PathBuf,
    /// Sandbox and compile cache settings.
    pub engine: EngineConfig,
    /// The admin key to accept (instead of generating one on first start).
    pub admin_key: Option<String>,
    /// Largest object content accepted, in bytes.
    pub max_object_bytes: u64,
    /// Largest JSON body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How this process's pollers run batches.
    pub worker: WorkerConfig,
    /// When a batch counts as degraded or unhealthy.
    pub health: HealthPolicy,
    /// How this process sends webhooks.
    pub webhooks: SenderConfig,
    /// A directory whose components are published when they change
    /// (development).
    pub watch_plugins: Option<PathBuf>,
    /// How long a published extractor stays loaded without being used.
    pub unload_after: Duration,
    /// How long a shutdown waits for running batches to give their lease
    /// back; past it the process exits and their leases expire.
    pub shutdown_grace: Duration,
    /// What one namespace may take of the service.
    pub tenants: crate::api::tenancy::TenantLimits,
    /// Objects per shard of a submitted batch.
    pub shard_objects: u64,
    /// What this process does.
    pub role: Role,
    /// Whether the API serves the web console at `/console/`.
    pub console: bool,
}

impl ServeConfig {
    /// Defaults with everything under `data_dir`.
    pub fn new(data_dir: PathBuf, plugins: PathBuf, engine: EngineConfig) -> Self {
        ServeConfig {
            backends: BackendConfig::embedded(&data_dir),
            data_dir,
            plugins,
            engine,
            admin_key: None,
            max_object_bytes: 512 << 20,
            max_body_bytes: 16 << 20,
            worker: WorkerConfig::new(worker::default_owner()),
            health: HealthPolicy::default(),
            webhooks: SenderConfig::default(),
            watch_plugins: None,
            unload_after: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            tenants: crate::api::tenancy::TenantLimits::default(),
            shard_objects: crate::batches::shards::DEFAULT_SHARD_OBJECTS,
            role: Role::All,
            console: true,
        }
    }
}

/// The storage backends.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Metadata and tasks.
    pub store: Arc<dyn Store>,
    /// Documents.
    pub documents: Arc<dyn DocumentSink>,
    /// Webhooks and their outbox.
    pub webhooks: Arc<dyn Webhooks>,
    /// Published extractor versions.
    pub registry: Arc<dyn Registry>,
    /// Object contents and artifacts.
    pub blobs: Arc<dyn BlobStore>,
}

/// The seams one metadata backend implements.
pub type OpenStore = (
    Arc<dyn Store>,
    Arc<dyn DocumentSink>,
    Arc<dyn Webhooks>,
    Arc<dyn Registry>,
);

/// Which backends to use: URLs, with the embedded ones under a data
/// directory by default.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// `sqlite://PATH`.
    pub store: String,
    /// `file://DIR` or `s3://BUCKET/PREFIX`.
    pub blobs: String,
    /// How to reach S3 for an `s3://` blob store.
    pub s3: S3Options,
}

impl BackendConfig {
    /// SQLite and local files under `data_dir`.
    pub fn embedded(data_dir: &Path) -> Self {
        BackendConfig {
            store: format!("sqlite://{}", data_dir.join("strata.db").display()),
            blobs: format!("file://{}", data_dir.join("blobs").display()),
            s3: S3Options::default(),
        }
    }
}

/// Opens the metadata store, document sink and webhook outbox named by `url`.
pub async fn open_store(url: &str) -> anyhow::Result<OpenStore> {
    match url.split_once("://") {
        Some(("mongodb" | "mongodb+srv", _)) => {
            let store = Arc::new(
                MongoStore::connect(url)
                    .await
                    .with_context(|| format!("store {} does not answer", redact(url)))?,
            );
            Ok((store.clone(), store.clone(), store.clone(), store))
        }
        Some(("sqlite", path)) => {
            let path = Path::new(path);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating directory {}", dir.display()))?;
            }
            let store =
                Arc::new(SqliteStore::open(path).with_context(|| format!("opening store {url}"))?);
            Ok((store.clone(), store.clone(), store.clone(), store))
        }
        _ => anyhow::bail!("--store `{url}`: expected sqlite://PATH or mongodb://HOST/DATABASE"),
    }
}

/// `url` without a password.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://…@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Opens the blob store named by `url`.
pub async fn open_blobs(url: &str, s3: &S3Options) -> anyhow::Result<Arc<dyn BlobStore>> {
    match url.split_once("://") {
        Some(("file", dir)) => Ok(Arc::new(
            LocalBlobs::open(Path::new(dir)).with_context(|| format!("opening blobs {url}"))?,
        )),
        Some(("s3", _)) => {
            let location = S3Location::parse(url).map_err(|e| anyhow::anyhow!("--blobs {e}"))?;
            Ok(Arc::new(S3Blobs::connect(location, s3).await))
        }
        _ => anyhow::bail!("--blobs `{url}`: expected file://DIR or s3://BUCKET/PREFIX"),
    }
}

/// Opens the backends of `config`.
pub async fn open_backends(config: &BackendConfig) -> anyhow::Result<Backends> {
    let (store, documents, webhooks, registry) = open_store(&config.store).await?;
    let blobs = open_blobs(&config.blobs, &config.s3).await?;
    Ok(Backends {
        store,
        documents,
        webhooks,
        registry,
        blobs,
    })
}

/// Creates the default namespace and the admin key when missing. Returns
/// a newly generated admin key's secret (to be shown once).
pub async fn bootstrap(
    store: &dyn Store,
    admin_key: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if store.namespace(DEFAULT_NAMESPACE).await?.is_none() {
        let ns = Namespace {
            namespace_id: NamespaceId::generate(),
            name: DEFAULT_NAMESPACE.to_owned(),
            created_at: now(),
        };
        match store.create_namespace(&ns).await {
            // Another process created it meanwhile.
            Ok(()) | Err(StoreError::Taken { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(secret) = admin_key {
        anyhow::ensure!(
            secret.len() >= 16,
            "STRATA_ADMIN_KEY must be at least 16 characters"
        );
        let hash = keys::hash_secret(secret);
        let current = match store.key_by_hash(&hash).await? {
            Some(key) => key,
            None => {
                let mut key = ApiKey::new(Some(ENV_KEY_NAME.into()), true, None);
                key.from_env = true;
                match keys::store_key(store, secret, key).await {
                    Ok(key) => key,
                    // Another process starting with the same value won.
                    Err(StoreError::Taken { .. }) => store
                        .key_by_hash(&hash)
                        .await?
                        .context("the admin key vanished while it was created")?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        // The key an earlier value made is revoked: changing the variable
        // is how an operator rotates the admin key.
        for old in keys::all(store).await? {
            let from_env = old.from_env || old.name.as_deref() == Some(ENV_KEY_NAME);
            if from_env && old.key_id != current.key_id {
                match store.delete_key(&old.key_id).await {
                    // Another process starting revoked it first.
                    Ok(()) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(key = %old.key_id, "revoked the admin key an earlier STRATA_ADMIN_KEY made");
            }
        }
        return Ok(None);
    }
    if store.has_admin_key().await? {
        return Ok(None);
    }
    let (_, secret) = keys::create(store, ApiKey::new(Some("admin".into()), true, None)).await?;
    Ok(Some(secret))
}

/// Writes the admin key to `<data_dir>/admin.key`, readable by its owner only.
fn save_admin_key(data_dir: &Path, secret: &str) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    let path = data_dir.join("admin.key");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let backends = open_backends(&config.backends).await?;
    backends
        .store
        .ping()
        .await
        .with_context(|| format!("store {} does not answer", backends.store.describe()))?;
    backends
        .blobs
        .ping()
        .await
        .with_context(|| format!("blob store {} does not answer", backends.blobs.describe()))?;
    let role = config.role;
    if role.serves_api()
        && let Some(secret) =
            bootstrap(backends.store.as_ref(), config.admin_key.as_deref()).await?
    {
        let path = save_admin_key(&config.data_dir, &secret)?;
        println!(
            "admin key (shown once, saved in {}): {secret}",
            path.display()
        );
    }
    let engine = Engine::new(config.engine.clone()).context("starting the engine")?;
    let plugins = config.plugins.clone();
    let loader = engine.clone();
    let catalog = tokio::task::spawn_blocking(move || Catalog::load_dir(&loader, &plugins))
        .await?
        .with_context(|| format!("installing extractors from {}", config.plugins.display()))?;
    tracing::info!(extractors = catalog.len(), "extractors installed");
    let spool_dir = config.data_dir.join("spool");
    std::fs::create_dir_all(&spool_dir)
        .with_context(|| format!("creating {}", spool_dir.display()))?;
    let catalog = Arc::new(catalog);
    // What was published before this start runs from the first request.
    let registry = crate::catalog::Follower {
        catalog: catalog.clone(),
        registry: backends.registry.clone(),
        blobs: backends.blobs.clone(),
        engine: engine.clone(),
    };
    // The plugins directory's names are reserved for admins: no namespace
    // publishes versions under them.
    let reserved = if role.serves_api() {
        catalog.plugins_dir_names()
    } else {
        Vec::new()
    };
    for name in reserved {
        let record = backends
            .registry
            .reserve_name(&crate::store::registry::ExtractorNameRecord::reserved(
                &name,
            ))
            .await
            .with_context(|| format!("reserving extractor name `{name}`"))?;
        if let Some(owner) = record.owner {
            tracing::warn!(
                extractor = %name,
                owner = %owner.name,
                "a plugins-directory extractor's name belongs to a namespace; an admin may reserve it with PATCH /v1/extractors/{name}"
            );
        }
    }
    let seen = registry.catch_up(0).await;
    let wake = Arc::new(tokio::sync::Notify::new());
    let webhook_wake = Arc::new(tokio::sync::Notify::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let state = AppState {
        store: backends.store.clone(),
        documents: backends.documents.clone(),
        webhooks: backends.webhooks.clone(),
        webhook_wake: webhook_wake.clone(),
        registry: backends.registry.clone(),
        engine: engine.clone(),
        blobs: backends.blobs.clone(),
        catalog: catalog.clone(),
        spool_dir,
        max_object_bytes: config.max_object_bytes,
        max_body_bytes: config.max_body_bytes,
        wake: wake.clone(),
        health: config.health,
        metrics: install_metrics(),
        key_uses: Arc::default(),
        tenancy: Arc::new(crate::api::tenancy::Tenancy::new(config.tenants.clone())),
        shard_objects: config.shard_objects,
        watchers: Arc::default(),
        stop: stop.clone(),
    };
    // The metrics recorder exists now.
    catalog.report();
    let watcher = match config.watch_plugins.as_ref().filter(|_| role.serves_api()) {
        Some(dir) => Some(crate::watch::watch(
            registry.clone(),
            dir.clone(),
            stop.clone(),
        )?),
        None => None,
    };
    let mut worker_config = config.worker.clone();
    if !role.runs_shards() {
        worker_config.max_shards = 0;
    }
    let pollers = tokio::spawn(worker::run_pollers(
        worker::Deps {
            registry: backends.registry.clone(),
            store: backends.store.clone(),
            documents: backends.documents.clone(),
            blobs: backends.blobs.clone(),
            catalog: catalog.clone(),
            follower: Some(registry.clone()),
        },
        worker_config,
        wake,
        stop.clone(),
    ));
    let follower = tokio::spawn(registry.follow(
        seen,
        config.worker.poll_interval,
        config.unload_after,
        stop.clone(),
    ));
    // API processes send webhooks and sweep; workers only run shards.
    let mut background = Vec::new();
    if role.serves_api() {
        let sender = Sender::new(backends.webhooks.clone(), config.webhooks.clone())
            .context("starting the webhook sender")?;
        background.push(tokio::spawn(sender.run(webhook_wake, stop.clone())));
        background.push(tokio::spawn(crate::sweeper::run(
            backends.store.clone(),
            backends.blobs.clone(),
            stop.clone(),
        )));
    }
    let app = if role.serves_api() {
        api::router(state, config.console)
    } else {
        api::worker_router(state)
    };
    let app = app.layer(tower_http::trace::TraceLayer::new_for_http());
    let addr = listener.local_addr()?;
    tracing::info!(%addr, ?role, store = %backends.store.describe(), blobs = %backends.blobs.describe(), "serving");
    if role.serves_api() {
        println!("strata listening on http://{addr}");
        if config.console {
            println!("console at http://{addr}/console/");
        }
    } else {
        println!(
            "strata worker {} running; health and metrics on http://{addr}",
            config.worker.owner
        );
    }
    let stopping = stop.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.cancel();
        })
        .await
        .context("serving HTTP");
    // Running shards give their lease back before the process exits:
    // their calls in progress are interrupted, so this is quick.
    stop.cancel();
    if tokio::time::timeout(config.shutdown_grace, pollers)
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?config.shutdown_grace,
            "shards still running after the shutdown grace period; their leases will expire"
        );
    }
    for task in background {
        let _ = task.await;
    }
    let _ = follower.await;
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    served
}

/// Records metrics for `/metrics`; `None` when another recorder is
/// installed in this process already.
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(recorder) {
        Ok(()) => Some(handle),
        Err(_) => {
            tracing::warn!("a metrics recorder is already installed; /metrics is off");
            None
        }
    }
}
