//! The trust boundary against a real `strata serve`: what one plugin or
//! one tenant does never holds, slows or reads another's work.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::flow::*;
use support::tenants::*;
use support::{Server, send};

/// A server whose plugins directory holds the hostile fixture, with calls
/// cut at `call_timeout` seconds and no error budget.
fn hostile_server(plugins: &std::path::Path, call_timeout: &str, extra: &[&str]) -> Server {
    let mut extra = extra.to_vec();
    extra.extend(["--error-budget", "1"]);
    Server::start_with(slow_options(plugins, call_timeout, &extra))
}

#[tokio::test]
async fn sleeping_plugins_end_by_their_deadline_and_other_namespaces_run() {
    let plugins = plugins_with_hostile();
    // Two pollers, both given a batch whose every object sleeps in WASI;
    // each runs two chunks of a tier at once.
    let server = hostile_server(
        plugins.path(),
        "1",
        &[
            "--max-shards",
            "2",
            "--max-timeouts",
            "2",
            "--threads-per-tier",
            "2",
        ],
    );
    let sleepers = [
        hostile_batch_in_mode(&server, "sleeper-a", "sleep", 4, |_| true).await,
        hostile_batch_in_mode(&server, "sleeper-b", "sleep", 4, |_| true).await,
    ];
    for b in &sleepers {
        poll_until(&server, &b.path, |b| b["status"] != "QUEUED").await;
    }
    let other = calm_batch_in(&server, "other").await;
    let done = finished_in(&server, "other", &other).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["progress"]["errors"], 0, "{done}");
    for b in &sleepers {
        let done = poll_until(&server, &b.path, terminal).await;
        let done = done.last().expect("final");
        assert_eq!(done["status"], "COMPLETED", "{done}");
        assert_eq!(done["progress"]["errors"], 4, "{done}");
        let failed = all(&server, &format!("{}/objects?status=failed", b.path)).await;
        let reasons: Vec<&str> = failed.iter().map(|o| text(&o["error"])).collect();
        let timed_out = reasons
            .iter()
            .filter(|r| r.contains("timed out after 1s"))
            .count();
        // Two calls time out, then the extractor is disabled; a call that
        // was already running beside them still ends by its deadline.
        assert!(
            (2..=3).contains(&timed_out),
            "two or three calls time out: {reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("disabled")),
            "then the extractor is disabled: {reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .all(|r| r.contains("timed out") || r.contains("disabled")),
            "{reasons:?}"
        );
    }
}

#[tokio::test]
async fn a_canceled_batch_frees_its_poller_while_its_plugin_sleeps() {
    let plugins = plugins_with_hostile();
    // One poller, and a deadline far longer than the test.
    let server = hostile_server(plugins.path(), "3600", &["--max-shards", "1"]);
    let sleeper = hostile_batch_in_mode(&server, "sleeper", "sleep", 2, |_| true).await;
    poll_until(&server, &sleeper.path, |b| b["status"] == "PROCESSING").await;
    let (status, body) = server
        .post(&format!("{}/cancel", sleeper.path), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The only poller is free again: the next batch runs.
    let other = calm_batch_in(&server, "other").await;
    let done = finished_in(&server, "other", &other).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let (_, canceled) = server.get(&sleeper.path).await;
    assert_eq!(canceled["status"], "CANCELED", "{canceled}");
    assert_eq!(
        canceled["progress"]["processed"], 0,
        "interrupted rows are not recorded: {canceled}"
    );
}

#[tokio::test]
async fn sigterm_ends_the_server_while_a_plugin_sleeps() {
    let plugins = plugins_with_hostile();
    let mut server = hostile_server(
        plugins.path(),
        "3600",
        &["--max-shards", "1", "--shutdown-grace", "10"],
    );
    let sleeper = hostile_batch_in_mode(&server, "sleeper", "sleep", 2, |_| true).await;
    poll_until(&server, &sleeper.path, |b| b["status"] == "PROCESSING").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = server.terminate_within(Duration::from_secs(60));
    assert!(status.success(), "strata serve exited with {status}");
}

/// The peak resident memory the server reports at `/metrics`, in bytes.
async fn peak_memory(server: &Server) -> f64 {
    let metrics = server.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("strata_process_peak_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in {metrics}"))
}

#[tokio::test]
async fn output_that_would_expand_is_refused_and_memory_stays_flat() {
    let plugins = plugins_with_hostile();
    let server = hostile_server(plugins.path(), "30", &[]);
    // Declared in a manifest: refused at publication, naming column and type.
    let amplifier = std::fs::read(support::repo().join("tests/fixtures/dist/amplifier.wasm"))
        .expect("amplifier fixture (make plugins)");
    let (status, problem) = send(
        server
            .request(Method::POST, "/v1/extractors")
            .header("content-type", "application/wasm")
            .body(amplifier),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        text(&problem["detail"]).contains(
            "outputs.amplified: type `FixedSizeList(50000 x Dictionary(Int32, Utf8))`: \
             Dictionary(Int32, Utf8) is not an output type"
        ),
        "{problem}"
    );

    // Returned where a string is declared: every row fails with a contract
    // error, and nothing was expanded on the way.
    let before = peak_memory(&server).await;
    let batch = hostile_batch_in_mode(&server, "amplify", "amplify", 8, |_| true).await;
    let done = poll_until(&server, &batch.path, terminal).await;
    let done = done.last().expect("final");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(
        done["error_summary"],
        json!({"hostile.contract": 8}),
        "{done}"
    );
    let failed = all(&server, &format!("{}/objects?status=failed", batch.path)).await;
    assert_eq!(failed.len(), 8);
    assert!(
        failed.iter().all(|o| text(&o["error"]).contains(
            "broke the contract: returned column `report` as FixedSizeList(50000 x Dictionary(Int32, Utf8))"
        )),
        "{failed:?}"
    );
    let after = peak_memory(&server).await;
    // 8 rows × 50 000 keys × 1 MiB would be 400 GB as text.
    assert!(
        after - before < 256.0 * 1024.0 * 1024.0,
        "peak memory grew from {before} to {after} bytes"
    );
}

/// What the server's peak memory may grow by for 8 uploads of 15 MB at
/// once and a batch over them in chunks of 16 MiB: uploads are spooled to
/// disk (a few buffers each), and a running batch holds at most its chunks
/// in flight (the feed's read-ahead and one per tier, each read and then
/// laid out as Arrow) and its instances' memory: 12 chunks' worth.
const BIG_INPUT_PEAK_MIB: f64 = 12.0 * 16.0;

#[tokio::test]
async fn big_uploads_and_batches_keep_memory_bounded() {
    let server = Server::start_with(support::Options {
        args: [
            "--max-object-mb",
            "16",
            "--chunk-mb",
            "16",
            "--max-upload-mb-in-flight",
            "1024",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        ..support::Options::default()
    });
    let bucket = create_bucket(&server, "big").await;
    let before = peak_memory(&server).await;
    // Eight uploads of 15 MB at once, as base64 in JSON (20 MB each).
    let uploads: Vec<_> = (0..8)
        .map(|i| {
            let content: Vec<u8> = (0..15_000_000u32)
                .map(|b| (b.wrapping_mul(31) ^ i) as u8)
                .collect();
            let body = json!({
                "object_id": format!("big{i}"),
                "key": format!("big{i}.bin"),
                "content_base64": base64_of(&content),
            });
            let request = server
                .request(Method::POST, &format!("/v1/buckets/{bucket}/objects"))
                .json(&body);
            tokio::spawn(request.send())
        })
        .collect();
    for upload in uploads {
        let response = upload.await.expect("join").expect("upload");
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let uploaded = peak_memory(&server).await;
    // A batch over them: chunks end at 16 MB, one object each.
    create_collection(
        &server,
        "hashes",
        &bucket,
        json!([{"name": "content-hash"}]),
    )
    .await;
    let ids: Vec<String> = (0..8).map(|i| format!("big{i}")).collect();
    let (path, _) = submit(&server, &bucket, &ids).await;
    let done = poll_until(&server, &path, terminal).await;
    let done = done.last().expect("final");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["progress"]["errors"], 0, "{done}");
    let after = peak_memory(&server).await;
    let mib = |bytes: f64| bytes / (1 << 20) as f64;
    eprintln!(
        "peak memory: {:.0} MiB before, {:.0} MiB after 8 uploads of 15 MB, {:.0} MiB after the batch",
        mib(before),
        mib(uploaded),
        mib(after)
    );
    assert!(
        mib(after - before) < BIG_INPUT_PEAK_MIB,
        "peak memory grew by {:.0} MiB",
        mib(after - before)
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
