//! `strata bucket`, `strata object`, `strata collection` and `strata
//! documents`: the REST resources of the same names, human output by
//! default and the API's JSON with `--json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::{Client, ClientArgs, cell, list, one, segment};
use super::upload;

#[derive(Debug, Subcommand)]
pub(super) enum BucketCommand {
    /// Create a bucket.
    Create {
        /// Its name: 1–64 letters, digits, `-`, `_` or `.`.
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the buckets of the namespace.
    List,
}

#[derive(Debug, Subcommand)]
pub(super) enum ObjectCommand {
    /// Upload files, and directories' files recursively, into a bucket: several at once, with a
    /// progress bar; files already there with the same content are skipped, so running it again
    /// after an interruption sends only what is missing.
    Upload {
        /// The bucket (id or name).
        #[arg(long)]
        bucket: String,
        /// Files and directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List the objects of a bucket.
    List {
        /// The bucket (id or name).
        #[arg(long)]
        bucket: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum CollectionCommand {
    /// Create a collection: a pipeline of extractors over a bucket's objects.
    Create {
        /// Its name: 1–64 letters, digits, `-`, `_` or `.`.
        name: String,
        /// The bucket (id or name) whose objects it processes.
        #[arg(long)]
        bucket: String,
        /// An extractor, `NAME` (following its newest version) or `NAME@VERSION` (pinned);
        /// repeat for each.
        #[arg(long = "extractor", required = true, value_name = "NAME[@VERSION]")]
        extractors: Vec<String>,
        /// Parameters of an extractor as `NAME={"key": value}`; repeat for each.
        #[arg(long = "params", value_name = "NAME=JSON")]
        params: Vec<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the collections of the namespace.
    List,
}

#[derive(Debug, Subcommand)]
pub(super) enum DocumentsCommand {
    /// List a collection's documents (one per object).
    List {
        /// The collection (id or name).
        #[arg(long)]
        collection: String,
        /// Only the documents a batch wrote last.
        #[arg(long)]
        batch: Option<String>,
    },
}

/// Runs a `strata bucket` command.
pub(super) async fn bucket(args: &ClientArgs, command: BucketCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(args)?;
    match command {
        BucketCommand::Create { name, description } => {
            let bucket = client
                .post(
                    "/v1/buckets",
                    &json!({"bucket_name": name, "description": description}),
                )
                .await?;
            one(&client, &bucket, |b| {
                format!(
                    "created bucket {} ({})",
                    cell(&b["bucket_name"]),
                    cell(&b["bucket_id"])
                )
            })
        }
        BucketCommand::List => {
            let buckets = client.all("/v1/buckets").await?;
            list(
                &client,
                &buckets,
                &["ID", "NAME", "CREATED", "DESCRIPTION"],
                |b| {
                    vec![
                        cell(&b["bucket_id"]),
                        cell(&b["bucket_name"]),
                        cell(&b["created_at"]),
                        cell(&b["description"]),
                    ]
                },
            )
        }
    }
}

/// Runs a `strata object` command.
pub(super) async fn object(args: &ClientArgs, command: ObjectCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(args)?;
    match command {
        ObjectCommand::Upload { bucket, paths } => {
            let files = upload::files(&paths)?;
            let outcomes = upload::upload(&client, &bucket, files).await?;
            upload::report(&client, &outcomes)?;
            Ok(ExitCode::SUCCESS)
        }
        ObjectCommand::List { bucket } => {
            let objects = client
                .all(&format!("/v1/buckets/{}/objects", segment(&bucket)))
                .await?;
            list(&client, &objects, &["ID", "KEY", "TYPE", "BYTES"], |o| {
                vec![
                    cell(&o["object_id"]),
                    cell(&o["key"]),
                    cell(&o["mime_type"]),
                    cell(&o["size_bytes"]),
                ]
            })
        }
    }
}

/// The extractors of `--extractor` and `--params` as the API takes them.
fn pipeline(extractors: &[String], params: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut by_name: BTreeMap<&str, Value> = BTreeMap::new();
    for entry in params {
        let (name, text) = entry
            .split_once('=')
            .with_context(|| format!("--params `{entry}`: expected NAME={{JSON}}"))?;
        let value: Value =
            serde_json::from_str(text).with_context(|| format!("--params `{name}`: not JSON"))?;
        anyhow::ensure!(
            value.is_object(),
            "--params `{name}`: must be a JSON object"
        );
        by_name.insert(name, value);
    }
    let mut pipeline = Vec::new();
    for extractor in extractors {
        let (name, version) = match extractor.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (extractor.as_str(), None),
        };
        pipeline.push(json!({
            "name": name,
            "version": version,
            "params": by_name.remove(name),
        }));
    }
    if let Some(name) = by_name.keys().next() {
        anyhow::bail!("--params `{name}`: no --extractor of that name");
    }
    Ok(pipeline)
}

/// Runs a `strata collection` command.
pub(super) async fn collection(
    args: &ClientArgs,
    command: CollectionCommand,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(args)?;
    match command {
        CollectionCommand::Create {
            name,
            bucket,
            extractors,
            params,
            description,
        } => {
            let body = json!({
                "collection_name": name,
                "description": description,
                "source": {"bucket_id": bucket},
                "extractors": pipeline(&extractors, &params)?,
            });
            let collection = client.post("/v1/collections", &body).await?;
            one(&client, &collection, |c| {
                let tiers: Vec<String> = c["tiers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|tier| {
                        let steps: Vec<String> =
                            tier.as_array().into_iter().flatten().map(cell).collect();
                        steps.join(", ")
                    })
                    .collect();
                format!(
                    "created collection {} ({}): tiers {}",
                    cell(&c["collection_name"]),
                    cell(&c["collection_id"]),
                    tiers.join(" → ")
                )
            })
        }
        CollectionCommand::List => {
            let collections = client.all("/v1/collections").await?;
            list(
                &client,
                &collections,
                &["ID", "NAME", "BUCKET", "DOCUMENTS", "EXTRACTORS"],
                |c| {
                    let extractors: Vec<String> = c["extractors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| match e["version"].as_str() {
                            Some(v) => format!("{}@{v}", cell(&e["name"])),
                            None => cell(&e["name"]),
                        })
                        .collect();
                    vec![
                        cell(&c["collection_id"]),
                        cell(&c["collection_name"]),
                        cell(&c["source"]["bucket_id"]),
                        cell(&c["document_count"]),
                        extractors.join(", "),
                    ]
                },
            )
        }
    }
}

/// Runs a `strata documents` command.
pub(super) async fn documents(
    args: &ClientArgs,
    command: DocumentsCommand,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(args)?;
    let DocumentsCommand::List { collection, batch } = command;
    let mut path = format!("/v1/collections/{}/documents", segment(&collection));
    if let Some(batch) = &batch {
        path.push_str(&format!("?batch_id={}", segment(batch)));
    }
    let documents = client.all(&path).await?;
    list(
        &client,
        &documents,
        &["OBJECT", "ERRORS", "FEATURES"],
        |d| {
            let mut features = d["features"].to_string();
            if features.chars().count() > 100 {
                features = features.chars().take(99).collect::<String>() + "…";
            }
            vec![
                cell(&d["object_id"]),
                d["errors"].as_array().map_or(0, Vec::len).to_string(),
                features,
            ]
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_takes_versions_and_params_by_name() {
        let got = pipeline(
            &["text-extract".into(), "keywords@1.0.0".into()],
            &[r#"keywords={"k": 5}"#.into()],
        )
        .expect("a pipeline");
        assert_eq!(
            got,
            [
                json!({"name": "text-extract", "version": null, "params": null}),
                json!({"name": "keywords", "version": "1.0.0", "params": {"k": 5}}),
            ]
        );
        let stray = pipeline(&["a".into()], &[r#"b={}"#.into()]).expect_err("stray params");
        assert!(
            stray.to_string().contains("no --extractor of that name"),
            "{stray}"
        );
        let bad = pipeline(&["a".into()], &["a=[1]".into()]).expect_err("not an object");
        assert!(bad.to_string().contains("must be a JSON object"), "{bad}");
    }
}
