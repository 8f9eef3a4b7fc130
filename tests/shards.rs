//! One batch on many machines: an API process and `strata worker`
//! processes share one store and blob store (one SQLite data directory, or
//! the loopback MongoDB- and S3-protocol servers), and every worker runs
//! shards of the same batch. Workers die (SIGKILL) and stall past their
//! lease (SIGSTOP), and the batch still completes exactly once, with one
//! document per object and exact counts. Then fairness and load.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::flow::*;
use support::servers::Production;
use support::tenants::{bucket_in, finished_in, submit_in};
use support::workers::Worker;
use support::{Options, Server};

/// Objects in the large batch, and per shard.
const OBJECTS: usize = 5_000;
const PER_SHARD: usize = 250;

/// A server serving the API only, shards of `PER_SHARD` objects, on the
/// backends `backends` names, with the extractors of `plugins`.
fn api_only(backends: &Options, plugins: &str) -> Server {
    let mut options = backends.clone();
    options.args.extend(
        [
            "--no-workers",
            "--shard-objects",
            &PER_SHARD.to_string(),
            "--allow-private-webhooks",
            "--plugins",
            plugins,
        ]
        .map(str::to_owned),
    );
    Server::start_with(options)
}

/// Uploads `n` small text objects to `bucket`, 16 at a time.
async fn upload_many(server: &Arc<Server>, bucket: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("obj_{i:05}")).collect();
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut uploads = tokio::task::JoinSet::new();
    for id in ids.clone() {
        let (server, bucket, gate) = (server.clone(), bucket.to_owned(), gate.clone());
        uploads.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            upload(
                &server,
                &bucket,
                &id,
                &format!("TRIGGER: object {id} of a large batch"),
            )
            .await;
        });
    }
    while let Some(done) = uploads.join_next().await {
        done.expect("upload");
    }
    ids
}

/// The batch's shards, in order.
async fn shards(server: &Server, path: &str) -> Vec<Value> {
    all(server, &format!("{path}/shards")).await
}

/// Waits until `worker` holds a shard of the batch at `path` in which it
/// has already written something; returns that shard's index.
async fn holding(server: &Server, path: &str, worker: &Worker) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        for shard in shards(server, path).await {
            if shard["status"] == "PROCESSING"
                && shard["lease"]["worker_id"] == worker.id.as_str()
                && shard["processed"].as_u64().unwrap_or(0) > 0
            {
                return shard["shard_index"].as_u64().expect("index");
            }
        }
        assert!(
            Instant::now() < deadline,
            "worker {} never held a shard it had written to",
            worker.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the batch until it is terminal, for up to ten minutes.
async fn finished(server: &Server, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (status, body) = server.get(path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if terminal(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "never finished: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The large run: three workers on one batch of objects that take 20 ms
/// each (the `hostile` extractor's `slow` mode), one of the workers killed
/// while it holds a shard it has written to. `lease` is the workers'
/// lease, in seconds.
async fn three_workers_one_batch(backends: &Options, lease: &str) {
    let plugins = plugins_with_hostile();
    let plugins = plugins.path().to_str().expect("utf-8 path").to_owned();
    let api = Arc::new(api_only(backends, &plugins));
    let logs = tempfile::tempdir().expect("logs");
    let worker_args = [
        "--plugins",
        &plugins,
        "--max-shards",
        "1",
        "--lease-seconds",
        lease,
        "--poll-interval",
        "0.2",
        "--chunk-objects",
        "25",
    ];
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| {
            Worker::start(
                &api.data_dir,
                backends,
                &worker_args,
                &logs.path().join(format!("worker-{i}.log")),
            )
        })
        .collect();
    let bucket = create_bucket(&api, "large").await;
    let ids = upload_many(&api, &bucket, OBJECTS).await;
    let collection = create_collection(
        &api,
        "slow",
        &bucket,
        json!([{"name": "hostile", "params": {"mode": "slow"}}]),
    )
    .await;
    let (status, hook) = api
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/strata", "event_types": ["batch.completed"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let (path, _) = submit(&api, &bucket, &ids).await;
    let listed = shards(&api, &path).await;
    assert_eq!(listed.len(), OBJECTS / PER_SHARD, "{listed:?}");

    // The first worker dies while it holds a shard it has written to.
    let victim = holding(&api, &path, &workers[0]).await;
    let victim_id = workers[0].id.clone();
    workers[0].kill();

    let done = finished(&api, &path).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let progress = &done["progress"];
    assert_eq!(progress["processed"], OBJECTS, "{done}");
    assert_eq!(progress["total"], OBJECTS, "{done}");
    assert_eq!(progress["errors"], 0, "{done}");
    assert_eq!(done["object_count"], OBJECTS, "{done}");

    // Every shard completed; the survivors ran shards, and the victim's
    // shard was taken over.
    let listed = shards(&api, &path).await;
    assert!(
        listed.iter().all(|s| s["status"] == "COMPLETED"),
        "{listed:?}"
    );
    let ran: BTreeSet<&str> = listed.iter().filter_map(|s| s["worker"].as_str()).collect();
    for worker in &workers[1..] {
        assert!(
            ran.contains(worker.id.as_str()),
            "{} ran no shard: {ran:?}",
            worker.id
        );
    }
    let taken_over = &listed[victim as usize];
    assert!(
        taken_over["attempts"].as_u64().unwrap_or(0) >= 2,
        "{taken_over}"
    );
    assert_ne!(taken_over["worker"], victim_id.as_str(), "{taken_over}");
    let counted: u64 = listed
        .iter()
        .map(|s| s["processed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, OBJECTS as u64, "{listed:?}");

    // One document per object, counted once.
    let (_, collection) = api
        .get(&format!(
            "/v1/collections/{}",
            text(&collection["collection_id"])
        ))
        .await;
    assert_eq!(collection["document_count"], OBJECTS, "{collection}");

    // One completion event.
    let deliveries = all(
        &api,
        &format!("/v1/webhooks/{}/deliveries", text(&hook["webhook_id"])),
    )
    .await;
    let completed: Vec<&Value> = deliveries
        .iter()
        .filter(|d| d["event_type"] == "batch.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{deliveries:?}");

    // The live workers are listed with their heartbeats.
    let (status, listed) = api.get("/v1/workers").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let live: BTreeSet<&str> = listed
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["worker_id"].as_str())
        .collect();
    for worker in &workers[1..] {
        assert!(live.contains(worker.id.as_str()), "{listed}");
    }

    // SIGTERM ends a worker within its grace, with exit status 0.
    let status = workers[1].terminate_within(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_batch_runs_on_three_workers_and_survives_a_killed_one() {
    three_workers_one_batch(&Options::default(), "3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_batch_runs_on_three_workers_on_mongodb_and_s3() {
    let production = Production::start().await;
    // The loopback stand-in answers one request at a time: a renewal may
    // wait seconds behind the other workers' transactions.
    three_workers_one_batch(&production.options(), "15").await;
}

/// A worker stopped (SIGSTOP) past its lease loses its shard to another;
/// resumed, it writes nothing more, and the counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_paused_past_its_lease_writes_nothing_when_it_resumes() {
    let plugins = plugins_with_hostile();
    let plugins_dir = plugins.path().to_str().expect("utf-8 path");
    let mut options = slow_options(plugins.path(), "5", &[]);
    options
        .args
        .extend(["--no-workers", "--shard-objects", "100"].map(str::to_owned));
    let api = Server::start_with(options);
    let logs = tempfile::tempdir().expect("logs");
    let args = [
        "--plugins",
        plugins_dir,
        "--call-timeout",
        "5",
        "--max-timeouts",
        "0",
        "--chunk-objects",
        "1",
        "--poll-interval",
        "0.2",
        "--lease-seconds",
        "2",
        "--max-shards",
        "1",
    ];
    let paused = Worker::start(
        &api.data_dir,
        &Options::default(),
        &args,
        &logs.path().join("a.log"),
    );
    // 300 objects of 20 ms each, one per chunk: three shards of two
    // seconds or more.
    let batch = hostile_batch_in_mode(&api, "slow", "slow", 300, |_| true).await;
    let shard = holding(&api, &batch.path, &paused).await;
    paused.pause_outside_writes(&api.data_dir.join("strata.db"));
    let other = Worker::start(
        &api.data_dir,
        &Options::default(),
        &args,
        &logs.path().join("b.log"),
    );
    // The other worker rescues the paused one's shard once its lease ends
    // and runs it; then the paused worker resumes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = shards(&api, &batch.path).await;
        let taken = &listed[shard as usize];
        if taken["worker"] == other.id.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "never taken over: {taken}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    paused.signal("CONT");
    let done = finished(&api, &batch.path).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["progress"]["processed"], 300, "{done}");
    assert_eq!(done["progress"]["errors"], 0, "{done}");
    let (_, collection) = api
        .get(&format!("/v1/collections/{}", batch.collection_id))
        .await;
    assert_eq!(collection["document_count"], 300, "{collection}");
    let listed = shards(&api, &batch.path).await;
    let counted: u64 = listed
        .iter()
        .map(|s| s["processed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 300, "{listed:?}");
    assert!(listed[shard as usize]["attempts"].as_u64().unwrap_or(0) >= 2);
    // The resumed worker learned that its shard was taken and stopped.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !paused.log_text().contains("shard taken over; stopped") {
        assert!(
            Instant::now() < deadline,
            "the resumed worker never noticed; its log:\n{}",
            paused.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A small batch submitted after a large one gets the next free worker,
/// and completes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_batch_after_a_large_one_completes_first() {
    let plugins = plugins_with_hostile();
    let options = slow_options(
        plugins.path(),
        "5",
        &["--max-shards", "1", "--shard-objects", "10"],
    );
    let server = Server::start_with(options);
    // 200 objects of 20 ms each: 20 shards, four seconds or more.
    let large = hostile_batch_in_mode(&server, "large", "slow", 200, |_| true).await;
    poll_until(&server, &large.path, |b| {
        b["progress"]["processed"].as_u64().unwrap_or(0) > 0 || terminal(b)
    })
    .await;
    let small = hostile_batch_in_mode(&server, "small", "slow", 1, |_| true).await;
    let small_done = finished(&server, &small.path).await;
    assert_eq!(small_done["status"], "COMPLETED", "{small_done}");
    let (_, large_now) = server.get(&large.path).await;
    assert_eq!(
        large_now["status"], "PROCESSING",
        "the large batch was still running when the small one completed: {large_now}"
    );
    let large_done = finished(&server, &large.path).await;
    assert_eq!(large_done["status"], "COMPLETED", "{large_done}");
    assert!(
        text(&small_done["completed_at"]) < text(&large_done["completed_at"]),
        "{small_done} {large_done}"
    );
}

/// 200 batches submitted at once by 20 clients, each in a namespace of its
/// own, all complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_batches_from_twenty_clients_all_complete() {
    let server = Arc::new(Server::start_with(Options {
        args: ["--max-shards", "2", "--poll-interval", "0.2"]
            .map(str::to_owned)
            .to_vec(),
        ..Options::default()
    }));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..20 {
        let server = server.clone();
        clients.spawn(async move {
            let namespace = format!("client-{client}");
            let bucket = bucket_in(&server, &namespace, 2).await;
            let mut paths = Vec::new();
            for _ in 0..10 {
                let (status, submitted) =
                    submit_in(&server, &namespace, &bucket, &["o0", "o1"]).await;
                assert_eq!(status, StatusCode::OK, "{submitted}");
                paths.push(format!(
                    "/v1/buckets/{bucket}/batches/{}",
                    text(&submitted["batch_id"])
                ));
            }
            for path in paths {
                let done = finished_in(&server, &namespace, &path).await;
                assert_eq!(done["status"], "COMPLETED", "{done}");
                assert_eq!(done["progress"]["processed"], 2, "{done}");
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("client");
    }
}
