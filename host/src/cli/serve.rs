//! `strata serve`, `strata worker` and `strata run`.

use std::process::ExitCode;

use anyhow::Context as _;

use super::{EXIT_PARTIAL, RunArgs, ServeArgs, WorkerCommandArgs, seconds};
use crate::engine::executor::ExecOptions;
use crate::run::{RunOptions, run};

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(super) fn serve_command(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cache = args.backends.data_dir.join("cache");
    let engine = args.engine.config(|| Some(cache))?;
    let mut config =
        crate::serve::ServeConfig::new(args.backends.data_dir.clone(), args.plugins, engine);
    config.backends = args.backends.config();
    config.watch_plugins = args.watch_plugins;
    config.admin_key = std::env::var("STRATA_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    config.max_object_bytes = args.max_object_mb << 20;
    config.max_body_bytes = args.max_body_mb << 20;
    args.worker.apply(&mut config)?;
    if args.no_workers {
        config.role = crate::serve::Role::Api;
    }
    config.console = !args.no_console;
    config.tenants = crate::api::tenancy::TenantLimits {
        batches_in_flight: args.max_batches_in_flight,
        objects_per_batch: args.max_objects_per_batch,
        upload_bytes_in_flight: args.max_upload_mb_in_flight.saturating_mul(1 << 20),
        plans_in_flight: args.max_plans_per_namespace,
        publishes_per_minute: args.publishes_per_minute,
        event_streams: args.max_event_streams_per_namespace,
    };
    anyhow::ensure!(args.shard_objects > 0, "--shard-objects must be at least 1");
    config.shard_objects = args.shard_objects;
    config.worker.max_timeouts = args.engine.max_timeouts;
    config.worker.threads_per_tier = args.engine.threads_per_tier()?;
    config.health = crate::progress::HealthPolicy {
        error_budget: args.worker.error_budget,
        stall_after: seconds("stall-seconds", args.stall_seconds)?,
    };
    anyhow::ensure!(
        args.webhook_concurrency > 0,
        "--webhook-concurrency must be at least 1"
    );
    let webhooks = &mut config.webhooks;
    webhooks.schedule = crate::webhooks::parse_schedule(&args.webhook_retry_schedule)
        .map_err(|e| anyhow::anyhow!("--webhook-retry-schedule {e}"))?;
    webhooks.timeout = seconds("webhook-timeout", args.webhook_timeout)?;
    webhooks.per_webhook = args.webhook_concurrency;
    webhooks.allow_private = args.allow_private_webhooks;
    webhooks.retention = seconds(
        "webhook-retention-days",
        args.webhook_retention_days * 86_400.0,
    )?;
    serve_until_signal(config, &args.listen)
}

/// `strata worker`: runs shards, serves only its health and metrics.
pub(super) fn worker_command(args: WorkerCommandArgs) -> anyhow::Result<ExitCode> {
    let cache = args.backends.data_dir.join("cache");
    let engine = args.engine.config(|| Some(cache))?;
    let mut config =
        crate::serve::ServeConfig::new(args.backends.data_dir.clone(), args.plugins, engine);
    config.backends = args.backends.config();
    config.role = crate::serve::Role::Worker;
    config.max_object_bytes = args.max_object_mb << 20;
    args.worker.apply(&mut config)?;
    anyhow::ensure!(
        config.worker.max_shards > 0,
        "--max-shards must be at least 1 for a worker"
    );
    config.worker.max_timeouts = args.engine.max_timeouts;
    config.worker.threads_per_tier = args.engine.threads_per_tier()?;
    serve_until_signal(config, &args.listen)
}

/// Runs `config` on `listen` until Ctrl-C or SIGTERM, then waits up to the
/// shutdown grace for running shards to give their leases back.
fn serve_until_signal(config: crate::serve::ServeConfig, listen: &str) -> anyhow::Result<ExitCode> {
    let grace = config.shutdown_grace;
    let runtime = runtime()?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        crate::serve::run(config, listener, shutdown_signal()).await
    });
    // Work still on the blocking pool past the grace period is abandoned.
    runtime.shutdown_timeout(grace);
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

pub(super) fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let engine = args.engine.engine()?;
    anyhow::ensure!(
        args.chunk_objects != Some(0),
        "--chunk-objects must be at least 1"
    );
    let exec = ExecOptions {
        include_processing_history: args.include_processing_history,
        max_timeouts: args.engine.max_timeouts,
        threads_per_tier: args.engine.threads_per_tier()?,
        ..ExecOptions::default()
    };
    let options = RunOptions {
        pipeline: args.pipeline,
        input: args.input,
        output: args.output.clone(),
        plugins: args.plugins,
        exec,
        chunk_objects: args.chunk_objects,
        max_object_bytes: args.max_object_bytes,
        progress: !args.no_progress,
    };
    let summary = run(&engine, options)?;
    let stats = &summary.stats;
    let secs = summary.elapsed.as_secs_f64();
    eprintln!(
        "{} objects in {:.2} s ({:.1} objects/s), {} failed, {} incidents; output: {}",
        stats.objects,
        secs,
        stats.objects as f64 / secs.max(1e-9),
        stats.failed_objects,
        stats.incidents,
        args.output.display()
    );
    for (extractor, count) in &stats.errors_by_extractor {
        eprintln!("  errors in {extractor}: {count}");
    }
    Ok(if stats.failed_objects > 0 {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}
