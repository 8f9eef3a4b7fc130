//! Section 9: one batch on many workers. An API process (`strata serve
//! --no-workers`) and `strata worker` processes on one SQLite data
//! directory: the same batch with one worker process and with two, the
//! cost of a shard claim, the time to rescue a killed worker's shard, and
//! the latency of `GET …/batches/{id}` while 200 batches run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::service::{Backends, KEY, Server, launch, text_pipeline};

/// A `strata worker` process; killed when dropped.
struct Worker {
    child: Child,
    id: String,
}

impl Worker {
    /// Starts a worker; on core `cpu` only when given (as on a machine of
    /// one core).
    fn start(
        root: &Path,
        cache: &Path,
        data_dir: &Path,
        args: &[&str],
        cpu: Option<usize>,
    ) -> anyhow::Result<Worker> {
        let mut command = match cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset
                    .args(["-c", &cpu.to_string()])
                    .arg(env!("CARGO_BIN_EXE_strata"));
                taskset
            }
            None => Command::new(env!("CARGO_BIN_EXE_strata")),
        };
        command
            .arg("worker")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--plugins")
            .arg(root.join("plugins/dist"))
            .arg("--cache-dir")
            .arg(cache)
            .args(["--poll-interval", "0.1"])
            .args(args);
        let (child, id) = launch(&mut command, "strata worker", |line| {
            let rest = line.strip_prefix("strata worker ")?;
            rest.split_once(" running").map(|(id, _)| id.to_owned())
        })?;
        Ok(Worker { child, id })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API-only server on `data_dir` with shards of `shard_objects`.
fn api(root: &Path, cache: &Path, data_dir: &Path, shard_objects: usize) -> anyhow::Result<Server> {
    Server::start(
        root,
        cache,
        &Backends {
            args: vec![
                "--no-workers".into(),
                "--shard-objects".into(),
                shard_objects.to_string(),
            ],
            data_dir: Some(data_dir.to_owned()),
            ..Backends::default()
        },
    )
}

/// A bucket of `corpus` and a collection over it running `extractors`;
/// returns the bucket and the object ids.
async fn bucket(
    server: &Server,
    name: &str,
    corpus: &[String],
    extractors: Value,
) -> anyhow::Result<(String, Vec<String>)> {
    let prepared = super::service::bucket_with(server, name, corpus, &extractors).await?;
    Ok((prepared.bucket, prepared.ids))
}

/// The shards of the batch at `path`.
async fn shards(server: &Server, path: &str) -> anyhow::Result<Vec<Value>> {
    let listed = server
        .call(
            reqwest::Method::GET,
            &format!("{path}/shards?limit=1000"),
            None,
        )
        .await?;
    Ok(listed["results"].as_array().context("results")?.clone())
}

/// Seconds from submit to COMPLETED of a batch of `ids`, by the server's
/// timestamps.
async fn batch_seconds(server: &Server, bucket: &str, ids: &[String]) -> anyhow::Result<f64> {
    let batch = server.run_batch(bucket, ids).await?;
    super::service::seconds_between(&batch, "submitted_at", "completed_at")
}

pub async fn bench(corpus: &[String], root: &Path, cache: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let n = corpus.len();

    // One worker process vs two, on the same batch of the text pipeline.
    let data: PathBuf = dir.path().join("scaling");
    let server = api(root, cache, &data, 1_000)?;
    let (text_bucket, text_ids) = bucket(&server, "text", corpus, text_pipeline()?).await?;
    let mut scaling = Vec::new();
    for pinned in [true, false] {
        let cpu = |i: usize| pinned.then_some(i);
        let one = {
            let _worker = Worker::start(root, cache, &data, &["--max-shards", "1"], cpu(0))?;
            batch_seconds(&server, &text_bucket, &text_ids).await?
        };
        let two = {
            let _a = Worker::start(root, cache, &data, &["--max-shards", "1"], cpu(0))?;
            let _b = Worker::start(root, cache, &data, &["--max-shards", "1"], cpu(1))?;
            batch_seconds(&server, &text_bucket, &text_ids).await?
        };
        scaling.push((one, two));
    }
    drop(server);

    // Claim overhead: the same cheap batch in 5 shards and in 200.
    let small = &corpus[..5_000.min(n)];
    let mut per_shard = Vec::new();
    for shard_objects in [1_000, 25] {
        let data = dir.path().join(format!("claims-{shard_objects}"));
        let server = api(root, cache, &data, shard_objects)?;
        let (bucket, ids) =
            bucket(&server, "hash", small, json!([{"name": "content-hash"}])).await?;
        let _worker = Worker::start(root, cache, &data, &["--max-shards", "1"], None)?;
        // A first batch warms the worker (component loaded, caches hot).
        batch_seconds(&server, &bucket, &ids[..1]).await?;
        let seconds = batch_seconds(&server, &bucket, &ids).await?;
        per_shard.push((ids.len().div_ceil(shard_objects), seconds));
    }
    let claim_ms =
        (per_shard[1].1 - per_shard[0].1) / (per_shard[1].0 - per_shard[0].0) as f64 * 1000.0;

    // Rescue: a worker killed while it holds a shard; how long until
    // another worker holds that shard.
    const LEASE: &str = "5";
    let data = dir.path().join("rescue");
    let server = api(root, cache, &data, 250)?;
    let (bucket, ids) =
        bucket(&server, "rescue", &corpus[..2_000.min(n)], text_pipeline()?).await?;
    let args = ["--max-shards", "1", "--lease-seconds", LEASE];
    let mut victim = Worker::start(root, cache, &data, &args, None)?;
    let _survivor = Worker::start(root, cache, &data, &args, None)?;
    let path = server.submit_batch(&bucket, &ids).await?;
    let held = loop {
        let listed = shards(&server, &path).await?;
        let held = listed
            .iter()
            .find(|s| s["status"] == "PROCESSING" && s["lease"]["worker_id"] == victim.id.as_str())
            .and_then(|s| s["shard_index"].as_u64());
        if let Some(index) = held {
            break index;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = victim.child.kill();
    let killed = Instant::now();
    let rescue = loop {
        let listed = shards(&server, &path).await?;
        let shard = &listed[held as usize];
        if shard["attempts"].as_u64().unwrap_or(0) >= 2 {
            break killed.elapsed().as_secs_f64();
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(120),
            "never rescued: {shard}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(server);

    // Status reads while 200 batches from 20 namespaces run.
    let (p50, p99, reads) = under_load(root, cache).await?;

    println!("\n## 9. One batch on many workers\n");
    println!(
        "An API process (`strata serve --no-workers`) and `strata worker` processes on one SQLite data directory, each worker running one shard at a time. First each worker is pinned to a core of its own (`taskset`), as on machines of one core each; then unpinned, where one worker's tier threads already use both cores of this machine.\n"
    );
    println!("| measure | value |\n|---|---|");
    let [(one, two), (free_one, free_two)] = scaling[..] else {
        anyhow::bail!("two scaling runs expected");
    };
    println!(
        "| {n} objects, text pipeline, 1 worker process on 1 core (submit → COMPLETED) | {one:.1} s ({:.0} objects/s) |",
        n as f64 / one
    );
    println!(
        "| the same batch, 2 worker processes on a core each | {two:.1} s ({:.0} objects/s) |",
        n as f64 / two
    );
    println!(
        "| **2 workers / 1 worker, a core each** | **{:.2}×** |",
        one / two
    );
    println!(
        "| unpinned: 1 worker process vs 2 on both cores | {:.0} vs {:.0} objects/s ({:.2}×) |",
        n as f64 / free_one,
        n as f64 / free_two,
        free_one / free_two
    );
    println!(
        "| {} objects through `content-hash` in {} shards vs {} shards | {:.2} s vs {:.2} s |",
        small.len(),
        per_shard[0].0,
        per_shard[1].0,
        per_shard[0].1,
        per_shard[1].1
    );
    println!(
        "| claim overhead per shard (the difference over the extra shards) | {claim_ms:.1} ms |"
    );
    println!(
        "| rescue: a worker SIGKILLed while it holds a shard, until another holds it (lease {LEASE} s) | {rescue:.1} s |"
    );
    println!(
        "| `GET …/batches/{{id}}` while 200 batches from 20 clients run ({reads} reads): p50 / p99 | {p50:.1} ms / {p99:.1} ms |"
    );
    println!(
        "\nOn this two-core machine the API process and this bench's status polling share the two cores with the workers, so a core each is the most two workers get; unpinned, one worker already spreads its tiers over both cores."
    );
    Ok(())
}

/// 20 clients, each in a namespace of its own, submit 10 batches each at
/// once to a `strata serve`; meanwhile one reader polls a batch. Returns
/// the reads' p50 and p99 in ms, and how many there were.
async fn under_load(root: &Path, cache: &Path) -> anyhow::Result<(f64, f64, usize)> {
    let server = std::sync::Arc::new(Server::start(
        root,
        cache,
        &Backends {
            args: vec![
                "--max-shards".into(),
                "2".into(),
                "--poll-interval".into(),
                "0.1".into(),
            ],
            ..Backends::default()
        },
    )?);
    let call_in = |server: std::sync::Arc<Server>,
                   namespace: String,
                   method: reqwest::Method,
                   path: String,
                   body: Option<Value>| async move {
        let mut request = server
            .client
            .request(method, format!("{}{path}", server.url))
            .bearer_auth(KEY)
            .header("x-namespace", namespace);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok::<Value, anyhow::Error>(body)
    };
    let mut clients = tokio::task::JoinSet::new();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<(String, String)>();
    let mut first_tx = Some(first_tx);
    for client in 0..20 {
        let namespace = format!("load-{client}");
        server
            .call(
                reqwest::Method::POST,
                "/v1/namespaces",
                Some(json!({ "name": namespace })),
            )
            .await?;
        let bucket = call_in(
            server.clone(),
            namespace.clone(),
            reqwest::Method::POST,
            "/v1/buckets".into(),
            Some(json!({"bucket_name": "b"})),
        )
        .await?["bucket_id"]
            .as_str()
            .context("bucket_id")?
            .to_owned();
        for i in 0..2 {
            call_in(
                server.clone(),
                namespace.clone(),
                reqwest::Method::POST,
                format!("/v1/buckets/{bucket}/objects"),
                Some(json!({"object_id": format!("o{i}"), "text": "calm"})),
            )
            .await?;
        }
        call_in(server.clone(), namespace.clone(), reqwest::Method::POST, "/v1/collections".into(), Some(json!({"collection_name": "c", "source": {"bucket_id": bucket}, "extractors": [{"name": "content-hash"}]}))).await?;
        let first = first_tx.take();
        let server = server.clone();
        clients.spawn(async move {
            let mut paths = Vec::new();
            for _ in 0..10 {
                let batches = format!("/v1/buckets/{bucket}/batches");
                let batch = call_in(
                    server.clone(),
                    namespace.clone(),
                    reqwest::Method::POST,
                    batches.clone(),
                    Some(json!({"object_ids": ["o0", "o1"]})),
                )
                .await?;
                let path = format!("{batches}/{}", batch["batch_id"].as_str().context("id")?);
                call_in(
                    server.clone(),
                    namespace.clone(),
                    reqwest::Method::POST,
                    format!("{path}/submit"),
                    None,
                )
                .await?;
                paths.push(path);
            }
            if let Some(first) = first {
                let _ = first.send((namespace.clone(), paths[9].clone()));
            }
            for path in paths {
                loop {
                    let batch = call_in(
                        server.clone(),
                        namespace.clone(),
                        reqwest::Method::GET,
                        path.clone(),
                        None,
                    )
                    .await?;
                    match batch["status"].as_str() {
                        Some("COMPLETED") => break,
                        Some("FAILED" | "CANCELED") => anyhow::bail!("batch ended {batch}"),
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    let (namespace, path) = first_rx.await?;
    let mut latencies = Vec::new();
    while !clients.is_empty() {
        let started = Instant::now();
        call_in(
            server.clone(),
            namespace.clone(),
            reqwest::Method::GET,
            path.clone(),
            None,
        )
        .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        while let Some(done) = clients.try_join_next() {
            done??;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99), latencies.len()))
}
