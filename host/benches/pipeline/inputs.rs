//! Section 8 of `make bench`: the service's peak memory for big inputs.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use super::service::{Backends, KEY, Server};

/// The service's peak resident memory, as it reports it at `/metrics`.
async fn peak_memory(server: &Server) -> anyhow::Result<f64> {
    let metrics = server
        .client
        .get(format!("{}/metrics", server.url))
        .send()
        .await?
        .text()
        .await?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("strata_process_peak_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|bytes| bytes / f64::from(1 << 20))
        .context("no peak memory in /metrics")
}

/// Section 8: eight uploads of objects near the size limit at once (as
/// base64 in JSON), then a batch over them, with the service's peak memory
/// after each; uploads are spooled, chunks end at `--chunk-mb`.
pub async fn big_inputs(root: &Path, cache: &Path) -> anyhow::Result<()> {
    const OBJECT_MB: usize = 60;
    const CHUNK_MB: usize = 64;
    let server = Server::start(
        root,
        cache,
        &Backends {
            args: [
                "--max-object-mb",
                "64",
                "--chunk-mb",
                "64",
                "--max-upload-mb-in-flight",
                "4096",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            ..Backends::default()
        },
    )?;
    let idle = peak_memory(&server).await?;
    let bucket = server
        .call(
            reqwest::Method::POST,
            "/v1/buckets",
            Some(json!({ "bucket_name": "big" })),
        )
        .await?["bucket_id"]
        .as_str()
        .context("bucket id")?
        .to_owned();
    let started = Instant::now();
    let uploads: Vec<_> = (0..8u8)
        .map(|i| {
            use base64::Engine as _;
            let content: Vec<u8> = (0..OBJECT_MB << 20)
                .map(|b| (b as u8).wrapping_mul(31) ^ i)
                .collect();
            let body = json!({
                "object_id": format!("big{i}"),
                "content_base64": base64::engine::general_purpose::STANDARD.encode(&content),
            });
            let request = server
                .client
                .post(format!("{}/v1/buckets/{bucket}/objects", server.url))
                .bearer_auth(KEY)
                .json(&body);
            tokio::spawn(request.send())
        })
        .collect();
    for upload in uploads {
        let response = upload.await??;
        anyhow::ensure!(
            response.status().is_success(),
            "upload: {}",
            response.status()
        );
    }
    let upload_seconds = started.elapsed().as_secs_f64();
    let uploaded = peak_memory(&server).await?;
    server
        .call(
            reqwest::Method::POST,
            "/v1/collections",
            Some(json!({
                "collection_name": "hashes",
                "source": { "bucket_id": bucket },
                "extractors": [{ "name": "content-hash" }],
            })),
        )
        .await?;
    let ids: Vec<String> = (0..8).map(|i| format!("big{i}")).collect();
    let started = Instant::now();
    server.run_batch(&bucket, &ids).await?;
    let batch_seconds = started.elapsed().as_secs_f64();
    let ran = peak_memory(&server).await?;
    println!("\n## 8. Big inputs\n");
    println!(
        "Eight objects of {OBJECT_MB} MiB uploaded at once as base64 in JSON ({:.0} MiB of request bodies), then one batch over them through `content-hash` with `--chunk-mb {CHUNK_MB}`; peak resident memory of `strata serve` as it reports it at `/metrics`.\n",
        8.0 * OBJECT_MB as f64 * 4.0 / 3.0
    );
    println!("| after | peak RSS (MiB) | above idle (MiB) | time (s) |");
    println!("|---|---|---|---|");
    println!("| start (idle) | {idle:.0} | 0 | |");
    println!(
        "| 8 uploads at once | {uploaded:.0} | {:.0} | {upload_seconds:.1} |",
        uploaded - idle
    );
    println!(
        "| the batch | {ran:.0} | {:.0} | {batch_seconds:.1} |",
        ran - idle
    );
    println!(
        "\nThe bound the trust suite checks (at 16 MiB chunks): a running batch holds at most 12 chunks' worth above idle ({} MiB at {CHUNK_MB} MiB chunks); uploads hold a few buffers each, never their content.",
        12 * CHUNK_MB
    );
    Ok(())
}
