//! Steps of the batch flow the end-to-end suites share: buckets, uploads,
//! collections, batches over the `hostile` fixture, polling.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Options, Server};

pub async fn create_bucket(server: &Server, name: &str) -> String {
    let (status, body) = server
        .post("/v1/buckets", json!({ "bucket_name": name }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    text(&body["bucket_id"]).to_owned()
}

pub async fn upload(server: &Server, bucket: &str, object_id: &str, text: &str) {
    let (status, body) = server
        .post(
            &format!("/v1/buckets/{bucket}/objects"),
            json!({ "object_id": object_id, "key": format!("{object_id}.txt"), "text": text }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

pub async fn create_collection(
    server: &Server,
    name: &str,
    bucket: &str,
    extractors: Value,
) -> Value {
    let (status, body) = server
        .post(
            "/v1/collections",
            json!({ "collection_name": name, "source": { "bucket_id": bucket }, "extractors": extractors }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Polls `path` until `done` holds, returning every body seen.
pub async fn poll_until(server: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen = Vec::new();
    loop {
        let (status, body) = server.get(path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let finished = done(&body);
        seen.push(body);
        if finished {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting on {path}: {}",
            seen.last().expect("a body")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A JSON string's text; panics naming the value otherwise.
pub fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

pub fn terminal(b: &Value) -> bool {
    matches!(
        b["status"].as_str(),
        Some("COMPLETED" | "FAILED" | "CANCELED")
    )
}

/// Every page of a list.
pub async fn all(server: &Server, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &token {
            Some(t) => format!("{path}{sep}limit=7&page_token={t}"),
            None => format!("{path}{sep}limit=7"),
        };
        let (status, page) = server.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        out.extend(page["results"].as_array().expect("results").iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}

/// A plugins directory with the built extractors and the hostile fixture.
pub fn plugins_with_hostile() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let dist = super::repo().join("plugins/dist");
    for entry in std::fs::read_dir(&dist).expect("plugins/dist (run `make plugins`)") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "wasm") {
            std::os::unix::fs::symlink(&path, dir.path().join(path.file_name().expect("name")))
                .expect("symlink");
        }
    }
    std::os::unix::fs::symlink(
        super::repo().join("tests/fixtures/dist/hostile.wasm"),
        dir.path().join("hostile.wasm"),
    )
    .expect("symlink hostile");
    dir
}

/// Options for a server whose `hostile` extractor (mode `loop`) spends
/// `timeout` on every object containing TRIGGER, one object per chunk.
/// `extra` may set `--max-timeouts` (0, never disabled, otherwise) and
/// `--threads-per-tier` (1 otherwise).
pub fn slow_options(plugins: &Path, timeout: &str, extra: &[&str]) -> Options {
    let mut args: Vec<String> = [
        "--plugins",
        plugins.to_str().expect("utf-8 path"),
        "--call-timeout",
        timeout,
        "--chunk-objects",
        "1",
        "--poll-interval",
        "0.2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if !extra.contains(&"--max-timeouts") {
        args.extend(["--max-timeouts".to_owned(), "0".to_owned()]);
    }
    // One object at a time unless asked: these tests watch a batch while
    // it runs, and their timing assumes it.
    if !extra.contains(&"--threads-per-tier") {
        args.extend(["--threads-per-tier".to_owned(), "1".to_owned()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Options {
        args,
        ..Options::default()
    }
}

/// A submitted batch over `n` text objects run through the hostile
/// extractor (mode `loop`); `trigger(i)` picks the objects that hang.
pub struct HostileBatch {
    pub ids: Vec<String>,
    pub collection_id: String,
    pub path: String,
    pub task_id: String,
}

/// Creates a DRAFT batch of `ids` from `bucket`; returns its path and
/// the batch.
pub async fn create_batch(server: &Server, bucket: &str, ids: &[String]) -> (String, Value) {
    let (status, batch) = server
        .post(
            &format!("/v1/buckets/{bucket}/batches"),
            json!({ "object_ids": ids }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let path = format!("/v1/buckets/{bucket}/batches/{}", text(&batch["batch_id"]));
    (path, batch)
}

/// Creates and submits a batch of `ids` from `bucket`; returns its path
/// and the queued batch.
pub async fn submit(server: &Server, bucket: &str, ids: &[String]) -> (String, Value) {
    let (path, _) = create_batch(server, bucket, ids).await;
    let (status, submitted) = server.post(&format!("{path}/submit"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{submitted}");
    assert_eq!(submitted["status"], "QUEUED", "{submitted}");
    (path, submitted)
}

pub async fn hostile_batch(server: &Server, n: usize, trigger: fn(usize) -> bool) -> HostileBatch {
    hostile_batch_named(server, "hostile", n, trigger).await
}

pub async fn hostile_batch_named(
    server: &Server,
    name: &str,
    n: usize,
    trigger: fn(usize) -> bool,
) -> HostileBatch {
    hostile_batch_in_mode(server, name, "loop", n, trigger).await
}

/// A submitted batch over the hostile extractor in `mode`.
pub async fn hostile_batch_in_mode(
    server: &Server,
    name: &str,
    mode: &str,
    n: usize,
    trigger: fn(usize) -> bool,
) -> HostileBatch {
    let bucket = create_bucket(server, name).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("obj_{i:02}");
        let word = if trigger(i) { "TRIGGER" } else { "calm" };
        upload(server, &bucket, &id, &format!("{word} {i}")).await;
        ids.push(id);
    }
    let collection = create_collection(
        server,
        name,
        &bucket,
        json!([{"name": "hostile", "params": {"mode": mode}}]),
    )
    .await;
    let (path, submitted) = submit(server, &bucket, &ids).await;
    HostileBatch {
        ids,
        collection_id: text(&collection["collection_id"]).to_owned(),
        path,
        task_id: text(&submitted["task_id"]).to_owned(),
    }
}
