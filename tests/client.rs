//! The `strata` command line as a client of a real server: the reference
//! flow in one command (`strata batch run`), each resource command's
//! `--json` output parsed, live progress watched to its end, resumable
//! uploads, and errors that name the field and exit non-zero.

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::flow::{plugins_with_hostile, slow_options};
use support::{ADMIN_KEY, Server, repo};

/// `strata ARGS` against `server` with the admin key (from the
/// environment, as a script would set it).
fn strata(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env("STRATA_URL", &server.url)
        .env("STRATA_KEY", ADMIN_KEY)
        .env_remove("STRATA_NAMESPACE")
        .output()
        .expect("strata runs")
}

/// Runs `strata ARGS --json`, which must succeed; its JSON output.
fn json(server: &Server, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = strata(server, &args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)))
}

/// Whether a JSON array holds an item whose `field` is `value`.
fn holds(list: &Value, field: &str, value: &str) -> bool {
    list.as_array()
        .is_some_and(|items| items.iter().any(|item| item[field] == value))
}

/// The words of a command line without quoting.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `strata ARGS`, which must fail; its standard error.
fn fails(server: &Server, args: &[&str]) -> String {
    let out = strata(server, args);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.lines().last().is_some_and(|l| l.starts_with("error: ")),
        "the last line names the error: {err}"
    );
    err
}

#[tokio::test]
async fn the_reference_flow_runs_in_one_command_and_every_listing_parses() {
    let server = Server::start();
    let docs = repo().join("examples/data/docs");
    let docs = docs.to_str().expect("UTF-8 path");

    let bucket = json(&server, &["bucket", "create", "docs"]);
    assert_eq!(bucket["bucket_name"], "docs");
    let collection = json(
        &server,
        &[
            "collection",
            "create",
            "text",
            "--bucket",
            "docs",
            "--extractor",
            "text-extract",
            "--extractor",
            "keywords@1.0.0",
            "--params",
            r#"keywords={"k": 3}"#,
        ],
    );
    assert_eq!(
        collection["tiers"],
        serde_json::json!([["text-extract@1.0.0"], ["keywords@1.0.0"]])
    );
    assert_eq!(collection["extractors"][1]["params"]["k"], 3);

    let batch_run = || {
        let args = [
            "batch",
            "run",
            "--bucket",
            "docs",
            "--collection",
            "text",
            docs,
        ];
        strata(&server, &args)
    };
    let out = batch_run();
    assert!(out.status.success(), "{}", stderr(&out));
    let files = std::fs::read_dir(repo().join("examples/data/docs"))
        .expect("docs")
        .count();
    assert!(
        stderr(&out).contains(&format!("{files} uploaded, 0 already there, 0 failed")),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("Completed"), "{}", stdout(&out));

    let batches = json(&server, &["batch", "list", "--bucket", "docs"]);
    let batches = batches.as_array().expect("an array");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["status"], "COMPLETED");
    assert_eq!(batches[0]["progress"]["processed"], files);
    let batch_id = batches[0]["batch_id"].as_str().expect("an id");

    let documents = json(
        &server,
        &[
            "documents",
            "list",
            "--collection",
            "text",
            "--batch",
            batch_id,
        ],
    );
    let documents = documents.as_array().expect("an array");
    assert_eq!(documents.len(), files);
    for document in documents {
        assert!(
            document["features"]["keywords"]["keywords"].is_array(),
            "{document}"
        );
        assert!(
            document["features"]["keywords"]["keywords"]
                .as_array()
                .is_some_and(|k| k.len() <= 3)
        );
    }
    let objects = json(&server, &["object", "list", "--bucket", "docs"]);
    assert_eq!(objects.as_array().map(Vec::len), Some(files));
    assert!(holds(&objects, "key", "french.txt"), "{objects}");
    let buckets = json(&server, &["bucket", "list"]);
    assert!(holds(&buckets, "bucket_name", "docs"), "{buckets}");
    let collections = json(&server, &["collection", "list"]);
    assert_eq!(collections[0]["collection_name"], "text");

    // Again: nothing to upload, a second batch of the same objects.
    let out = batch_run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("0 uploaded, {files} already there")),
        "{}",
        stderr(&out)
    );

    // Human output is a table with a header.
    let out = strata(&server, &["batch", "list", "--bucket", "docs"]);
    assert!(stdout(&out).starts_with("ID "), "{}", stdout(&out));
    assert_eq!(stdout(&out).lines().count(), 3);
}

#[tokio::test]
async fn batches_are_driven_and_watched_from_the_command_line() {
    let plugins = plugins_with_hostile();
    let server = Server::start_with(slow_options(plugins.path(), "10", &[]));
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..3 {
        std::fs::write(
            dir.path().join(format!("calm-{i}.txt")),
            format!("calm {i}"),
        )
        .expect("write");
    }
    std::fs::write(dir.path().join("stuck.txt"), "TRIGGER").expect("write");
    let dir_arg = dir.path().to_str().expect("UTF-8");
    json(&server, &["bucket", "create", "b"]);
    let uploaded = json(&server, &["object", "upload", "--bucket", "b", dir_arg]);
    assert_eq!(uploaded.as_array().map(Vec::len), Some(4));
    assert!(
        uploaded
            .as_array()
            .expect("outcomes")
            .iter()
            .all(|o| o["status"] == "uploaded")
    );

    // A batch of the calm objects, through `hostile` answering normally.
    json(
        &server,
        &[
            "collection",
            "create",
            "c",
            "--bucket",
            "b",
            "--extractor",
            "hostile",
            "--params",
            r#"hostile={"mode": "loop"}"#,
        ],
    );
    let draft = json(
        &server,
        &words("batch create --bucket b --name calm calm-0.txt calm-1.txt calm-2.txt"),
    );
    assert_eq!(draft["status"], "DRAFT");
    assert_eq!(draft["object_count"], 3);
    let id = draft["batch_id"].as_str().expect("id").to_owned();
    let submitted = json(&server, &["batch", "submit", "--bucket", "b", &id]);
    assert_eq!(submitted["status"], "QUEUED");
    let out = strata(&server, &["batch", "watch", "--bucket", "b", &id, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line per event"))
        .collect();
    assert_eq!(events.last().expect("events")["status"], "COMPLETED");
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["progress"]["processed"].as_u64()
                <= w[1]["progress"]["processed"].as_u64())
    );

    // A batch that hangs on its object: cancel it, and watching it exits 1.
    let stuck = json(&server, &["batch", "create", "--bucket", "b", "stuck.txt"]);
    let stuck_id = stuck["batch_id"].as_str().expect("id").to_owned();
    json(&server, &["batch", "submit", "--bucket", "b", &stuck_id]);
    let canceled = json(&server, &["batch", "cancel", "--bucket", "b", &stuck_id]);
    assert_eq!(canceled["status"], "CANCELED", "{canceled}");
    let out = strata(&server, &["batch", "watch", "--bucket", "b", &stuck_id]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("Canceled"), "{}", stdout(&out));
    let retried = json(&server, &["batch", "retry", "--bucket", "b", &stuck_id]);
    assert_eq!(retried["status"], "QUEUED", "{retried}");
    json(&server, &["batch", "cancel", "--bucket", "b", &stuck_id]);
    let queued = json(
        &server,
        &["batch", "list", "--bucket", "b", "--status", "COMPLETED"],
    );
    assert_eq!(queued.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn uploads_resume_and_never_overwrite() {
    let server = Server::start();
    json(&server, &["bucket", "create", "b"]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    std::fs::write(dir.path().join("a.txt"), "a").expect("write");
    std::fs::write(dir.path().join("sub/b.txt"), "b").expect("write");
    let dir_arg = dir.path().to_str().expect("UTF-8");
    json(&server, &["object", "upload", "--bucket", "b", dir_arg]);

    // One more file: only it is sent.
    std::fs::write(dir.path().join("c.txt"), "c").expect("write");
    let again = json(&server, &["object", "upload", "--bucket", "b", dir_arg]);
    let statuses: Vec<(&str, &str)> = again
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| {
            (
                o["object_id"].as_str().unwrap_or("?"),
                o["status"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("a.txt", "skipped"),
            ("c.txt", "uploaded"),
            ("sub-b.txt", "skipped")
        ]
    );

    // Changed content under the same id is reported, not overwritten.
    std::fs::write(dir.path().join("a.txt"), "changed").expect("write");
    let err = fails(&server, &["object", "upload", "--bucket", "b", dir_arg]);
    assert!(err.contains("1 of 3 files failed"), "{err}");
    let out = strata(&server, &["object", "upload", "--bucket", "b", dir_arg]);
    assert!(
        stderr(&out).contains("already in the bucket with other content"),
        "{}",
        stderr(&out)
    );
    let objects = json(&server, &["object", "list", "--bucket", "b"]);
    let a = objects
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["object_id"] == "a.txt")
        .expect("a.txt");
    assert_eq!(a["size_bytes"], 1, "the first content stays");
}

#[tokio::test]
async fn errors_name_the_field_and_exit_non_zero() {
    let server = Server::start();
    let err = fails(&server, &["bucket", "create", "bad name"]);
    assert!(err.contains("422") && err.contains("bucket_name"), "{err}");
    let err = fails(
        &server,
        &["batch", "watch", "--bucket", "nope", "btch_nope"],
    );
    assert!(
        err.contains("404") && err.contains("bucket `nope`"),
        "{err}"
    );
    let err = fails(
        &server,
        &words("collection create c --bucket nope --extractor text-extract"),
    );
    assert!(err.contains("source.bucket_id"), "{err}");
    let err = fails(
        &server,
        &words("collection create c --bucket x --extractor a --params a=[1]"),
    );
    assert!(err.contains("--params `a`: must be a JSON object"), "{err}");

    json(&server, &["bucket", "create", "one"]);
    json(&server, &["bucket", "create", "two"]);
    json(
        &server,
        &words("collection create c --bucket one --extractor content-hash"),
    );
    let err = fails(
        &server,
        &[
            "batch",
            "run",
            "--bucket",
            "two",
            "--collection",
            "c",
            repo().join("examples/data/docs").to_str().expect("UTF-8"),
        ],
    );
    assert!(err.contains("--collection `c` processes bucket"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bucket", "list"])
        .env("STRATA_URL", &server.url)
        .env_remove("STRATA_KEY")
        .output()
        .expect("strata runs");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no API key: pass --key or set STRATA_KEY"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bucket", "list", "--url", &server.url, "--key", "sk_wrong"])
        .env_remove("STRATA_KEY")
        .output()
        .expect("strata runs");
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
}
