//! The API keeps the contract it publishes: Schemathesis (pinned in
//! `tests/fuzz/requirements.txt`, installed by `make fuzz-tools`) runs
//! every one of its checks against `/openapi.json` on a real server, as
//! `tests/fuzz/schemathesis.toml` says, and must find nothing: no server
//! error, no status code or media type the document does not name, no
//! response off its schema, no schema-valid request refused beyond the
//! reasons listed there, no invalid one accepted.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use support::flow::{create_batch, create_bucket, create_collection, text, upload};
use support::{ADMIN_KEY, Server, repo};

/// The Schemathesis of the environment `make fuzz-tools` builds.
fn schemathesis() -> PathBuf {
    let dir = std::env::var_os("STRATA_TEST_FUZZER")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/fuzz"));
    let program = dir.join("bin/schemathesis");
    assert!(
        dir.join("installed").exists() && program.exists(),
        "no contract fuzzer in {} (run `make fuzz-tools`)",
        dir.display()
    );
    program
}

#[tokio::test]
async fn the_api_keeps_its_openapi_contract() {
    let program = schemathesis();
    let server = Server::start();
    // What the configuration's path parameters name.
    let bucket = create_bucket(&server, "fuzz").await;
    upload(&server, &bucket, "o1", "hello").await;
    create_collection(&server, "fuzz", &bucket, json!([{"name": "content-hash"}])).await;
    let (_, batch) = create_batch(&server, &bucket, &["o1".to_owned()]).await;

    let work = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(program);
    command
        .current_dir(work.path())
        .arg("--no-color")
        .arg("--config-file")
        .arg(repo().join("tests/fuzz/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .args(["-H", &format!("Authorization: Bearer {ADMIN_KEY}")])
        .env("STRATA_FUZZ_BATCH", text(&batch["batch_id"]));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("joins")
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the contract fuzzer found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains("generated") && !report.contains("failures"),
        "{report}"
    );
}
