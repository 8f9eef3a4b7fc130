//! The `strata` command line.

mod batch;
mod client;
mod extractor;
mod keys;
mod resources;
mod serve;
mod upload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::{Engine, EngineConfig};
use crate::store::KeyId;

/// Exit code when the run finished but some objects failed.
pub const EXIT_PARTIAL: u8 = 3;

/// Strata: run sandboxed feature extractors over batches of objects.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, max_term_width = 100)]
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG, e.g. `RUST_LOG=strata=debug`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "STRATA_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline over every file of a directory and write one document per file.
    Run(RunArgs),
    /// Inspect and check extractor components.
    #[command(subcommand)]
    Extractor(ExtractorCommand),
    /// Serve the batch REST API and process submitted batches.
    ///
    /// On first start it creates namespace `default` and an admin key, which
    /// it prints once and saves in `<data-dir>/admin.key` (mode 0600). Set
    /// STRATA_ADMIN_KEY to choose the admin key instead.
    Serve(Box<ServeArgs>),
    /// Run shards of submitted batches, and nothing else: any number of
    /// workers on any hosts share the store and blob store of the API
    /// processes (`strata serve --no-workers`). Serves `/healthz`,
    /// `/readyz` and `/metrics` on `--listen`; on SIGTERM it stops
    /// claiming, gives its running shards back and exits 0.
    Worker(Box<WorkerCommandArgs>),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Buckets of objects on a server (`--url`, `--key`).
    Bucket {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: resources::BucketCommand,
    },
    /// Objects of a bucket on a server.
    Object {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: resources::ObjectCommand,
    },
    /// Collections (extractor pipelines over a bucket) on a server.
    Collection {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: resources::CollectionCommand,
    },
    /// Batches of a bucket on a server: create, submit, watch, cancel, retry, list, or run a
    /// directory through a collection in one command.
    Batch {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: batch::BatchCommand,
    },
    /// Documents of a collection on a server.
    Documents {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: resources::DocumentsCommand,
    },
    /// Compile a component read from standard input (what the engine runs in a child process).
    #[command(hide = true)]
    CompileComponent(CompileArgs),
}

#[derive(Debug, Args)]
struct CompileArgs {
    /// The engine's memory cap per instance, in MiB.
    #[arg(long)]
    max_memory_mb: u32,
    /// The engine's pooled instances.
    #[arg(long)]
    max_instances: u32,
    /// Whether the engine's calls are interruptible.
    #[arg(long, action = clap::ArgAction::Set)]
    interruptible: bool,
    /// Most heap this compilation may use, in MiB.
    #[arg(long)]
    memory_limit_mb: u64,
    /// Where to write the compiled code.
    #[arg(long)]
    output: PathBuf,
}

/// How a process runs shards: `strata serve` (unless `--no-workers`) and
/// `strata worker`.
#[derive(Debug, Args)]
struct WorkerArgs {
    /// Seconds between looks for queued shards (a submit to this process wakes it at once).
    #[arg(long, env = "STRATA_POLL_INTERVAL", default_value_t = 5.0)]
    poll_interval: f64,
    /// Shards this process runs at once.
    #[arg(long, env = "STRATA_MAX_SHARDS", default_value_t = 2)]
    max_shards: usize,
    /// Shards of one batch running at once across every worker (0: no bound), so one large batch cannot take every worker.
    #[arg(long, env = "STRATA_MAX_SHARDS_PER_BATCH", default_value_t = 16)]
    max_shards_per_batch: u32,
    /// Seconds a worker's lease on a shard lasts without renewal; a shard whose worker died resumes elsewhere after it.
    #[arg(long, env = "STRATA_LEASE_SECONDS", default_value_t = 30.0)]
    lease_seconds: f64,
    /// Claims of one shard before it fails, and its batch with it (its workers keep dying).
    #[arg(long, env = "STRATA_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    /// Share of objects that may fail before a batch fails (0–1).
    #[arg(long, env = "STRATA_ERROR_BUDGET", default_value_t = 0.5)]
    error_budget: f64,
    /// Objects per chunk: the unit of document writes and of progress.
    #[arg(long, env = "STRATA_CHUNK_OBJECTS", default_value_t = crate::worker::WorkerConfig::DEFAULT_CHUNK_OBJECTS)]
    chunk_objects: usize,
    /// MiB of object content per chunk: a chunk also ends once it holds this much (one object at least).
    #[arg(long, env = "STRATA_CHUNK_MB", default_value_t = 64)]
    chunk_mb: usize,
    /// Seconds a published extractor stays loaded without being used; the next use loads it again (from the compile cache).
    #[arg(long, env = "STRATA_UNLOAD_IDLE", default_value_t = 600.0)]
    unload_idle: f64,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) waits for running shards to give their lease back before the process exits.
    #[arg(long, env = "STRATA_SHUTDOWN_GRACE", default_value_t = 30.0)]
    shutdown_grace: f64,
}

impl WorkerArgs {
    /// Applies these settings to `config`.
    fn apply(&self, config: &mut crate::serve::ServeConfig) -> anyhow::Result<()> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.error_budget),
            "--error-budget must be between 0 and 1"
        );
        anyhow::ensure!(self.chunk_objects > 0, "--chunk-objects must be at least 1");
        anyhow::ensure!(self.max_attempts > 0, "--max-attempts must be at least 1");
        config.unload_after = seconds("unload-idle", self.unload_idle)?;
        config.shutdown_grace = seconds("shutdown-grace", self.shutdown_grace)?;
        let max_object_bytes = config.max_object_bytes;
        let worker = &mut config.worker;
        worker.poll_interval = seconds("poll-interval", self.poll_interval)?;
        worker.lease = seconds("lease-seconds", self.lease_seconds)?;
        worker.report_interval = worker.report_interval.min(worker.lease / 3);
        worker.max_shards = self.max_shards;
        worker.fairness = crate::batches::shards::Fairness {
            max_running_per_batch: self.max_shards_per_batch,
        };
        worker.max_attempts = self.max_attempts;
        worker.error_budget = self.error_budget;
        worker.chunk_objects = self.chunk_objects;
        worker.chunk_bytes = self.chunk_mb.max(1).saturating_mul(1 << 20);
        worker.max_object_bytes = max_object_bytes;
        Ok(())
    }
}

/// `value` seconds, which must be a positive number.
fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        value.is_finite() && value > 0.0,
        "--{name} must be a positive number of seconds"
    );
    Ok(Duration::from_secs_f64(value))
}

#[derive(Debug, Args)]
struct WorkerCommandArgs {
    #[command(flatten)]
    backends: BackendArgs,
    /// Address of this worker's `/healthz`, `/readyz` and `/metrics` (it serves nothing else).
    #[arg(long, env = "STRATA_WORKER_LISTEN", default_value = "127.0.0.1:9464")]
    listen: String,
    /// Directory of extractor components (`*.wasm`) installed at start.
    #[arg(long, env = "STRATA_PLUGINS", default_value = "plugins/dist")]
    plugins: PathBuf,
    /// Largest object content read, in MiB: a larger object fails alone, unread.
    #[arg(long, env = "STRATA_MAX_OBJECT_MB", default_value_t = 512)]
    max_object_mb: u64,
    #[command(flatten)]
    worker: WorkerArgs,
    /// Engine settings; the compile cache defaults to `<data-dir>/cache`.
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    backends: BackendArgs,
    /// Address to listen on.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Largest object content accepted by an upload, in MiB.
    #[arg(long, env = "STRATA_MAX_OBJECT_MB", default_value_t = 512)]
    max_object_mb: u64,
    /// Largest JSON request body accepted (other than uploads), in MiB.
    #[arg(long, env = "STRATA_MAX_BODY_MB", default_value_t = 16)]
    max_body_mb: usize,
    /// Directory of extractor components (`*.wasm`) installed at start.
    #[arg(long, env = "STRATA_PLUGINS", default_value = "plugins/dist")]
    plugins: PathBuf,
    /// Objects per shard of a submitted batch: the unit workers claim, so one batch runs on many workers.
    #[arg(long, env = "STRATA_SHARD_OBJECTS", default_value_t = crate::batches::shards::DEFAULT_SHARD_OBJECTS)]
    shard_objects: u64,
    /// Serve the API only: no shard runs in this process (run `strata worker` processes for that).
    #[arg(long, env = "STRATA_NO_WORKERS")]
    no_workers: bool,
    /// Do not serve the web console at `/console/`.
    #[arg(long, env = "STRATA_NO_CONSOLE")]
    no_console: bool,
    #[command(flatten)]
    worker: WorkerArgs,
    /// Seconds without a finished object after which a running batch is reported degraded.
    #[arg(long, env = "STRATA_STALL_SECONDS", default_value_t = 300.0)]
    stall_seconds: f64,
    /// Let webhooks reach loopback, private, link-local and other internal addresses (local development).
    #[arg(long, env = "STRATA_ALLOW_PRIVATE_WEBHOOKS")]
    allow_private_webhooks: bool,
    /// Delays before each webhook attempt, comma-separated; a delivery fails after the last.
    #[arg(
        long,
        env = "STRATA_WEBHOOK_RETRY_SCHEDULE",
        default_value = "0,5s,5m,30m,2h,5h,10h,10h"
    )]
    webhook_retry_schedule: String,
    /// Seconds a webhook endpoint has to answer.
    #[arg(long, env = "STRATA_WEBHOOK_TIMEOUT", default_value_t = 15.0)]
    webhook_timeout: f64,
    /// Deliveries in flight to one webhook at once.
    #[arg(long, env = "STRATA_WEBHOOK_CONCURRENCY", default_value_t = 4)]
    webhook_concurrency: usize,
    /// Days delivered and failed webhook deliveries are kept (visible in the API).
    #[arg(long, env = "STRATA_WEBHOOK_RETENTION_DAYS", default_value_t = 30.0)]
    webhook_retention_days: f64,
    /// Publish every component in DIR now and again whenever its file changes (development): a new manifest version is published, changed bytes under a published version are refused with a log line.
    #[arg(long, env = "STRATA_WATCH_PLUGINS", value_name = "DIR")]
    watch_plugins: Option<PathBuf>,
    /// Batches one namespace may have queued or processing at once (across every host); a submit past it is 429.
    #[arg(long, env = "STRATA_MAX_BATCHES_IN_FLIGHT", default_value_t = 20)]
    max_batches_in_flight: u64,
    /// Objects one batch may hold; more is 422.
    #[arg(long, env = "STRATA_MAX_OBJECTS_PER_BATCH", default_value_t = 100_000)]
    max_objects_per_batch: u64,
    /// MiB of uploads one namespace may have in flight on this host; past it an upload is 429.
    #[arg(long, env = "STRATA_MAX_UPLOAD_MB_IN_FLIGHT", default_value_t = 2048)]
    max_upload_mb_in_flight: u64,
    /// Pipelines one namespace may plan at once on this host (creating or changing a collection, submitting a batch run plugin code); past it is 429.
    #[arg(long, env = "STRATA_MAX_PLANS_PER_NAMESPACE", default_value_t = 2)]
    max_plans_per_namespace: u64,
    /// Publications one (non-admin) key may make per minute; past it is 429.
    #[arg(long, env = "STRATA_PUBLISHES_PER_MINUTE", default_value_t = 10)]
    publishes_per_minute: u32,
    /// Batch event streams (`…/batches/{batch}/events`) one namespace may hold open at once on this host; past it is 429.
    #[arg(
        long,
        env = "STRATA_MAX_EVENT_STREAMS_PER_NAMESPACE",
        default_value_t = 32
    )]
    max_event_streams_per_namespace: u64,
    /// Engine settings; the compile cache defaults to `<data-dir>/cache`.
    #[command(flatten)]
    engine: EngineArgs,
}

/// Where a server keeps its data.
#[derive(Debug, Args)]
struct BackendArgs {
    /// Where the embedded backends keep metadata, documents and contents (and the admin key).
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "strata-data")]
    data_dir: PathBuf,
    /// Metadata and document store: `sqlite://PATH` [default: sqlite://<data-dir>/strata.db] or `mongodb://HOST[:PORT]/DATABASE` (a replica set: transactions are needed).
    #[arg(long, env = "STRATA_STORE")]
    store: Option<String>,
    /// Blob store: `file://DIR` [default: file://<data-dir>/blobs] or `s3://BUCKET/PREFIX`.
    #[arg(long, env = "STRATA_BLOBS")]
    blobs: Option<String>,
    /// Endpoint URL of an S3-compatible server (MinIO, Ceph, R2…); AWS S3 when absent. Credentials come from the standard AWS chain.
    #[arg(long, env = "STRATA_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region [default: from the AWS configuration, else us-east-1].
    #[arg(long, env = "STRATA_S3_REGION")]
    s3_region: Option<String>,
    /// Path-style S3 addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    #[arg(long, env = "STRATA_S3_PATH_STYLE")]
    s3_path_style: bool,
}

impl BackendArgs {
    fn config(&self) -> crate::serve::BackendConfig {
        let embedded = crate::serve::BackendConfig::embedded(&self.data_dir);
        crate::serve::BackendConfig {
            store: self.store.clone().unwrap_or(embedded.store),
            blobs: self.blobs.clone().unwrap_or(embedded.blobs),
            s3: crate::blob::S3Options {
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                force_path_style: self.s3_path_style,
            },
        }
    }
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an API key and print its secret (shown only once).
    Create {
        #[command(flatten)]
        backends: BackendArgs,
        /// Namespace (id or name) the key may act in.
        #[arg(long, default_value = "default", conflicts_with = "admin")]
        namespace: String,
        /// Create an admin key: acts in every namespace, manages namespaces and keys.
        #[arg(long)]
        admin: bool,
        /// The key may publish and deprecate extractor versions.
        #[arg(long)]
        publish: bool,
        /// Free text, e.g. who uses the key.
        #[arg(long)]
        name: Option<String>,
    },
    /// List API keys: id, name, rights, namespace, creation and last use (never secrets).
    List {
        #[command(flatten)]
        backends: BackendArgs,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key: its secret no longer authenticates (the last admin key is kept).
    Revoke {
        #[command(flatten)]
        backends: BackendArgs,
        /// The key's id (`key_…`).
        key_id: KeyId,
    },
}

#[derive(Debug, Subcommand)]
enum ExtractorCommand {
    /// Print a component's manifest.
    Inspect {
        /// The component file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Check a component; exit non-zero with the reason when it is not a valid extractor.
    Validate {
        /// The component file.
        file: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Publish a component to a server's registry (with an admin key).
    Push {
        /// The component file.
        file: PathBuf,
        /// The server.
        #[arg(long, env = "STRATA_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An admin key.
        #[arg(long, env = "STRATA_KEY", hide_env_values = true)]
        key: String,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Pipeline file (TOML): `[[extractors]]` with `name` or `component`, and `params`.
    #[arg(long, env = "STRATA_PIPELINE")]
    pipeline: PathBuf,
    /// Directory whose files are the objects (recursively; key = relative path).
    #[arg(long)]
    input: PathBuf,
    /// Output file: `.jsonl`, `.parquet`, or `-` for JSON lines on stdout.
    #[arg(long)]
    output: PathBuf,
    /// Directory of extractor components, for extractors named in the pipeline.
    #[arg(long, env = "STRATA_PLUGINS", default_value = "plugins/dist")]
    plugins: PathBuf,
    /// Objects per chunk, the record batch each extractor call takes (overrides the pipeline's `chunk_objects`).
    #[arg(long, alias = "batch-size")]
    chunk_objects: Option<usize>,
    /// Record a processing history (extractor, version, tier, start, duration, outcome) in each document.
    #[arg(long, alias = "history")]
    include_processing_history: bool,
    /// Files larger than this many bytes fail instead of being read.
    #[arg(long, default_value_t = 256 << 20)]
    max_object_bytes: u64,
    /// Do not show a progress bar.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Debug, Args)]
struct EngineArgs {
    /// Directory of compiled components (default: $XDG_CACHE_HOME/strata or ~/.cache/strata).
    #[arg(long, env = "STRATA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled components.
    #[arg(long, env = "STRATA_NO_CACHE")]
    no_cache: bool,
    /// Deadline of one call into an extractor, in seconds.
    #[arg(long, env = "STRATA_CALL_TIMEOUT", default_value_t = 30.0)]
    call_timeout: f64,
    /// Most memory one extractor instance may use, in MiB (manifests ask for less).
    #[arg(long, env = "STRATA_MAX_MEMORY_MB", default_value_t = 1024)]
    max_memory_mb: u32,
    /// Timeouts after which an extractor is disabled for the rest of a run (0: never); calls already running then still end by their deadline.
    #[arg(long, env = "STRATA_MAX_TIMEOUTS", default_value_t = 3)]
    max_timeouts: u32,
    /// Chunks each tier of a pipeline runs at once, so one heavy extractor uses several cores (default: the cores this process may use).
    #[arg(long, env = "STRATA_THREADS_PER_TIER")]
    threads_per_tier: Option<usize>,
    /// Seconds compiling one component may take (in a child process); a component past it is refused.
    #[arg(long, env = "STRATA_COMPILE_TIMEOUT", default_value_t = 60.0)]
    compile_timeout: f64,
    /// MiB of memory compiling one component may use (in a child process); a component past it is refused.
    #[arg(long, env = "STRATA_COMPILE_MEMORY_MB", default_value_t = 2048)]
    compile_memory_mb: u64,
    /// Components that may compile at once.
    #[arg(long, env = "STRATA_MAX_COMPILES", default_value_t = 2)]
    max_compiles: usize,
    /// Extractor instances that may exist at once; a call waits for a free one.
    #[arg(long, env = "STRATA_MAX_INSTANCES", default_value_t = 64)]
    max_instances: u32,
}

impl EngineArgs {
    /// `--threads-per-tier`, or the cores this process may use.
    fn threads_per_tier(&self) -> anyhow::Result<usize> {
        match self.threads_per_tier {
            Some(0) => anyhow::bail!("--threads-per-tier must be at least 1"),
            Some(n) => Ok(n),
            None => Ok(crate::engine::executor::available_cores()),
        }
    }

    fn engine(&self) -> anyhow::Result<Engine> {
        Engine::new(self.config(default_cache_dir)?).context("starting the engine")
    }

    /// The engine settings; `default_cache` names the compile cache when
    /// `--cache-dir` is not given.
    fn config(
        &self,
        default_cache: impl FnOnce() -> Option<PathBuf>,
    ) -> anyhow::Result<EngineConfig> {
        anyhow::ensure!(
            self.call_timeout.is_finite() && self.call_timeout > 0.0,
            "--call-timeout must be a positive number of seconds"
        );
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache)
        };
        anyhow::ensure!(
            self.compile_timeout.is_finite() && self.compile_timeout > 0.0,
            "--compile-timeout must be a positive number of seconds"
        );
        let program = std::env::current_exe().context("finding this program, to compile in")?;
        Ok(EngineConfig {
            cache_dir,
            max_memory_mb: self.max_memory_mb,
            call_timeout: Duration::from_secs_f64(self.call_timeout),
            compile: Some(crate::engine::compiler::CompileLimits {
                program,
                timeout: Duration::from_secs_f64(self.compile_timeout),
                memory_mb: self.compile_memory_mb,
            }),
            max_compiles: self.max_compiles.max(1),
            max_instances: self.max_instances.max(1),
            ..EngineConfig::default()
        })
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("strata").join("components"))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each cause left out when the message before
/// it already says it (errors that show their source in their own text).
fn chain(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    message
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::serve_command(*args),
        Command::Worker(args) => serve::worker_command(*args),
        Command::Keys(command) => keys::command(command),
        Command::Bucket { client, command } => {
            serve::runtime()?.block_on(resources::bucket(&client, command))
        }
        Command::Object { client, command } => {
            serve::runtime()?.block_on(resources::object(&client, command))
        }
        Command::Collection { client, command } => {
            serve::runtime()?.block_on(resources::collection(&client, command))
        }
        Command::Batch { client, command } => {
            serve::runtime()?.block_on(batch::command(&client, command))
        }
        Command::Documents { client, command } => {
            serve::runtime()?.block_on(resources::documents(&client, command))
        }
        Command::CompileComponent(args) => {
            let config = EngineConfig {
                max_memory_mb: args.max_memory_mb,
                max_instances: args.max_instances,
                interruptible: args.interruptible,
                ..EngineConfig::default()
            };
            crate::engine::compiler::compile_child(&config, args.memory_limit_mb, &args.output)
                .map_err(|e| anyhow::anyhow!(e))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => serve::run_command(args),
        Command::Extractor(command) => extractor::command(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("inner detail")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {source}")]
    struct ShowsItsSource {
        source: Inner,
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let shown = anyhow::Error::new(ShowsItsSource { source: Inner });
        assert_eq!(chain(&shown), "outer: inner detail");
        let context = anyhow::Error::new(Inner).context("reading p.toml");
        assert_eq!(chain(&context), "reading p.toml: inner detail");
    }
}
