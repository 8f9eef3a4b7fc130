//! `strata batch`: create, submit, watch, cancel, retry and list batches,
//! and `run`, the reference flow in one command (upload a directory,
//! create a batch of its objects, submit it, watch it to the end).
//!
//! `watch` reads the batch's Server-Sent Events (`…/events`) and draws a
//! progress bar from them: objects done, items per second, the estimate
//! and the stage. It exits 0 on COMPLETED and 1 on FAILED or CANCELED, and
//! reconnects when a stream ends early (a server restarting).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, ClientArgs, answer, cell, list, one, segment};
use super::upload;

/// Reconnections of `watch` in a row before it gives up.
const RECONNECTS: u32 = 10;

#[derive(Debug, Subcommand)]
pub(super) enum BatchCommand {
    /// Create a DRAFT batch of objects of a bucket.
    Create {
        /// The bucket (id or name).
        #[arg(long)]
        bucket: String,
        /// Free text.
        #[arg(long)]
        name: Option<String>,
        /// Every object of the bucket.
        #[arg(long, conflicts_with = "object_ids")]
        all: bool,
        /// The objects.
        #[arg(required_unless_present = "all")]
        object_ids: Vec<String>,
    },
    /// Submit a DRAFT batch: it runs through every collection of its bucket.
    Submit {
        #[arg(long)]
        bucket: String,
        batch: String,
        /// Documents record each enrichment.
        #[arg(long)]
        history: bool,
    },
    /// Draw a batch's live progress until it ends; exit 0 on COMPLETED, 1 otherwise.
    Watch {
        #[arg(long)]
        bucket: String,
        batch: String,
    },
    /// Cancel a queued or running batch.
    Cancel {
        #[arg(long)]
        bucket: String,
        batch: String,
    },
    /// Run again the objects of a finished batch that did not complete.
    Retry {
        #[arg(long)]
        bucket: String,
        batch: String,
    },
    /// List the batches of a bucket.
    List {
        #[arg(long)]
        bucket: String,
        /// Only batches of this status (DRAFT, QUEUED, PROCESSING, COMPLETED, FAILED, CANCELED).
        #[arg(long)]
        status: Option<String>,
    },
    /// Upload a directory into a bucket, create a batch of its files, submit it and watch it to
    /// the end: the whole flow in one command.
    Run {
        /// The bucket (id or name).
        #[arg(long)]
        bucket: String,
        /// A collection over the bucket, whose documents to point at once done.
        #[arg(long)]
        collection: String,
        /// Free text.
        #[arg(long)]
        name: Option<String>,
        /// Files and directories to upload.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn batch_path(bucket: &str, batch: &str) -> String {
    format!("/v1/buckets/{}/batches/{}", segment(bucket), segment(batch))
}

/// Runs a `strata batch` command.
pub(super) async fn command(args: &ClientArgs, command: BatchCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(args)?;
    match command {
        BatchCommand::Create {
            bucket,
            name,
            all,
            object_ids,
        } => {
            let ids: Vec<Value> = if all {
                client
                    .all(&format!("/v1/buckets/{}/objects", segment(&bucket)))
                    .await?
                    .into_iter()
                    .map(|o| o["object_id"].clone())
                    .collect()
            } else {
                object_ids.into_iter().map(Value::String).collect()
            };
            let batch = create(&client, &bucket, name, ids).await?;
            one(&client, &batch, |b| {
                format!(
                    "created batch {} (DRAFT, {} objects)",
                    cell(&b["batch_id"]),
                    cell(&b["object_count"])
                )
            })
        }
        BatchCommand::Submit {
            bucket,
            batch,
            history,
        } => {
            let submitted = submit(&client, &bucket, &batch, history).await?;
            one(&client, &submitted, |s| {
                format!(
                    "submitted batch {}: {} (task {})",
                    cell(&s["batch_id"]),
                    cell(&s["status"]),
                    cell(&s["task_id"])
                )
            })
        }
        BatchCommand::Watch { bucket, batch } => watch(&client, &bucket, &batch).await,
        BatchCommand::Cancel { bucket, batch } => {
            let path = format!("{}/cancel", batch_path(&bucket, &batch));
            let canceled = client.post(&path, &json!({})).await?;
            one(&client, &canceled, |b| {
                format!("batch {}: {}", cell(&b["batch_id"]), cell(&b["status"]))
            })
        }
        BatchCommand::Retry { bucket, batch } => {
            let path = format!("{}/retry", batch_path(&bucket, &batch));
            let retried = client.post(&path, &json!({})).await?;
            one(&client, &retried, |b| {
                format!("batch {}: {}", cell(&b["batch_id"]), cell(&b["status"]))
            })
        }
        BatchCommand::List { bucket, status } => {
            let mut path = format!("/v1/buckets/{}/batches", segment(&bucket));
            if let Some(status) = &status {
                path.push_str(&format!("?status={}", segment(status)));
            }
            let batches = client.all(&path).await?;
            let header = ["ID", "NAME", "STATUS", "PROGRESS", "HEALTH", "CREATED"];
            list(&client, &batches, &header, |b| {
                vec![
                    cell(&b["batch_id"]),
                    cell(&b["batch_name"]),
                    cell(&b["status"]),
                    format!("{}%", cell(&b["progress"]["percent"])),
                    cell(&b["health"]),
                    cell(&b["created_at"]),
                ]
            })
        }
        BatchCommand::Run {
            bucket,
            collection,
            name,
            paths,
        } => run(&client, &bucket, &collection, name, &paths).await,
    }
}

async fn create(
    client: &Client,
    bucket: &str,
    name: Option<String>,
    ids: Vec<Value>,
) -> anyhow::Result<Value> {
    client
        .post(
            &format!("/v1/buckets/{}/batches", segment(bucket)),
            &json!({"batch_name": name, "object_ids": ids}),
        )
        .await
}

async fn submit(
    client: &Client,
    bucket: &str,
    batch: &str,
    history: bool,
) -> anyhow::Result<Value> {
    client
        .post(
            &format!("{}/submit", batch_path(bucket, batch)),
            &json!({"include_processing_history": history}),
        )
        .await
}

/// The progress line of a batch: status message and stage.
fn progress_line(batch: &Value) -> String {
    let stage = &batch["progress"]["current_stage"];
    let mut line = cell(&batch["status_message"]);
    if let (Some(name), Some(index), Some(total)) = (
        stage["name"].as_str(),
        stage["index"].as_u64(),
        stage["total"].as_u64(),
    ) {
        line.push_str(&format!(" · stage {name} ({}/{total})", index + 1));
    }
    line
}

/// Watches the batch to its end: a progress bar from its events (or each
/// event as a JSON line); 0 on COMPLETED, 1 otherwise.
async fn watch(client: &Client, bucket: &str, batch: &str) -> anyhow::Result<ExitCode> {
    let path = format!("{}/events", batch_path(bucket, batch));
    let bar = if client.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0).with_style(indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} {percent}%  {msg}",
        )?)
    };
    let mut reconnects = 0;
    loop {
        let response = client
            .request(Method::GET, &path)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await;
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            // Busy (429) or restarting behind a proxy (5xx): wait and try
            // again, as `Retry-After` says when it does.
            Ok(r)
                if (r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || r.status().is_server_error())
                    && reconnects < RECONNECTS =>
            {
                reconnects += 1;
                let wait = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(30);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            Ok(r) => {
                answer(r).await?;
                anyhow::bail!("the server did not stream the batch's events");
            }
            Err(e) if reconnects < RECONNECTS => {
                reconnects += 1;
                tracing::debug!(error = %e, "reconnecting to the batch's events");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e).context("reaching the batch's events"),
        };
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            if event.event != "batch" {
                continue;
            }
            reconnects = 0;
            let view: Value =
                serde_json::from_str(&event.data).context("an event that is not a batch")?;
            if client.json {
                println!("{}", serde_json::to_string(&view)?);
            } else {
                bar.set_length(view["progress"]["total"].as_u64().unwrap_or(0));
                bar.set_position(view["progress"]["processed"].as_u64().unwrap_or(0));
                bar.set_message(progress_line(&view));
            }
            let status = view["status"].as_str().unwrap_or_default();
            if matches!(status, "COMPLETED" | "FAILED" | "CANCELED") {
                bar.finish_and_clear();
                if !client.json {
                    println!("{}", progress_line(&view));
                    if let Some(error) = view["error_message"].as_str() {
                        println!("error: {error}");
                    }
                }
                return Ok(if status == "COMPLETED" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
        }
        reconnects += 1;
        anyhow::ensure!(
            reconnects <= RECONNECTS,
            "the events of batch `{batch}` kept ending before it finished"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The reference flow: upload, create, submit, watch.
async fn run(
    client: &Client,
    bucket: &str,
    collection: &str,
    name: Option<String>,
    paths: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let found = client
        .get(&format!("/v1/collections/{}", segment(collection)))
        .await
        .context("--collection")?;
    let target = client
        .get(&format!("/v1/buckets/{}", segment(bucket)))
        .await
        .context("--bucket")?;
    anyhow::ensure!(
        found["source"]["bucket_id"] == target["bucket_id"],
        "--collection `{collection}` processes bucket {}, not `{bucket}`",
        cell(&found["source"]["bucket_id"])
    );
    let files = upload::files(paths)?;
    anyhow::ensure!(!files.is_empty(), "no files to upload in the given paths");
    let outcomes = upload::upload(client, bucket, files).await?;
    // With `--json`, standard output is the batch's events alone; a failed
    // upload is still reported, and stops the run.
    let failed = outcomes.iter().any(|o| o.status == "failed");
    if failed || !client.json {
        upload::report(client, &outcomes)?;
    }
    let batch = create(client, bucket, name, upload::present_ids(&outcomes)).await?;
    let batch_id = cell(&batch["batch_id"]);
    submit(client, bucket, &batch_id, false).await?;
    if !client.json {
        eprintln!("batch {batch_id} submitted");
    }
    let code = watch(client, bucket, &batch_id).await?;
    if !client.json {
        eprintln!("documents: strata documents list --collection {collection} --batch {batch_id}");
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_the_stage() {
        let batch = json!({
            "status_message": "Processing 5/10 objects (50.0%)",
            "progress": {"current_stage": {"name": "keywords", "index": 1, "total": 3}},
        });
        assert_eq!(
            progress_line(&batch),
            "Processing 5/10 objects (50.0%) · stage keywords (2/3)"
        );
        assert_eq!(progress_line(&json!({"status_message": "Draft"})), "Draft");
    }
}
