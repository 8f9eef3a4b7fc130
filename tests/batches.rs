//! Batches against a real `strata serve` process with real extractors:
//! the reference page's commands, the lifecycle, live progress, cancel and
//! retry, a server killed mid-batch, and every bad input.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::flow::*;
use support::servers::Production;
use support::{ADMIN_KEY, Options, Server, send};

const TEXT_PIPELINE: &str = r#"[
    {"name": "text-extract"},
    {"name": "lang-detect"},
    {"name": "keywords", "params": {"k": 5}},
    {"name": "hash-embed", "params": {"dim": 64}},
    {"name": "entities"}
]"#;

/// The commands of the reference page, exactly as printed there.
const PAGE_CREATE: &str = r#"curl -sS -X POST "$MP_API_URL/v1/buckets/<bucket_id>/batches" \
  -H "Authorization: Bearer $MP_API_KEY" \
  -H "X-Namespace: $MP_NAMESPACE" \
  -H "Content-Type: application/json" \
  -d '{
    "batch_name": "products-2025-10-28",
    "object_ids": ["obj_abc", "obj_def"]
  }'"#;
const PAGE_ADD: &str = r#"curl -sS -X POST "$MP_API_URL/v1/buckets/<bucket_id>/batches/<batch_id>/objects" \
  -H "Authorization: Bearer $MP_API_KEY" \
  -H "X-Namespace: $MP_NAMESPACE" \
  -H "Content-Type: application/json" \
  -d '{ "object_ids": ["obj_xyz"] }'"#;
const PAGE_SUBMIT: &str = r#"curl -sS -X POST "$MP_API_URL/v1/buckets/<bucket_id>/batches/<batch_id>/submit" \
  -H "Authorization: Bearer $MP_API_KEY" \
  -H "X-Namespace: $MP_NAMESPACE" \
  -H "Content-Type: application/json" \
  -d '{ "include_processing_history": true }'"#;
const PAGE_GET: &str = r#"curl -sS "$MP_API_URL/v1/buckets/<bucket_id>/batches/<batch_id>" \
  -H "Authorization: Bearer $MP_API_KEY" \
  -H "X-Namespace: $MP_NAMESPACE""#;

/// Runs a page command with its placeholders filled; returns its JSON.
fn page_command(server: &Server, command: &str, ids: &[(&str, &str)]) -> Value {
    let mut command = command.to_owned();
    for (placeholder, id) in ids {
        command = command.replace(placeholder, id);
    }
    let out = std::process::Command::new("bash")
        .args(["-c", &command])
        .env("MP_API_URL", &server.url)
        .env("MP_API_KEY", ADMIN_KEY)
        .env("MP_NAMESPACE", "default")
        .output()
        .expect("running curl");
    assert!(out.status.success(), "{command}: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{command}: not JSON ({e}): {out:?}"))
}

#[tokio::test]
async fn the_reference_page_works_as_written() {
    reference_page(&Server::start()).await;
}

#[tokio::test]
async fn the_reference_page_works_on_mongodb_and_s3() {
    let production = Production::start().await;
    let server = Server::start_with(production.options());
    let (_, ready) = server.get("/readyz").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(
        text(&ready["backends"][0]["backend"]).starts_with("mongodb://"),
        "{ready}"
    );
    reference_page(&server).await;
}

/// The reference page's flow, checked field by field.
async fn reference_page(server: &Server) {
    let bucket = create_bucket(server, "products").await;
    upload(
        server,
        &bucket,
        "obj_abc",
        "Blue cotton shirt with long sleeves.",
    )
    .await;
    upload(
        server,
        &bucket,
        "obj_def",
        "Chemise en coton bleu à manches longues.",
    )
    .await;
    upload(
        server,
        &bucket,
        "obj_xyz",
        "Red wool sweater, hand knitted in Scotland.",
    )
    .await;
    let collection = create_collection(
        server,
        "products",
        &bucket,
        serde_json::from_str(TEXT_PIPELINE).expect("pipeline"),
    )
    .await;

    let created = page_command(server, PAGE_CREATE, &[("<bucket_id>", &bucket)]);
    assert_eq!(created["status"], "DRAFT", "{created}");
    assert_eq!(created["batch_name"], "products-2025-10-28");
    assert_eq!(created["object_count"], 2);
    assert_eq!(created["task_id"], Value::Null);
    let batch_id = text(&created["batch_id"]).to_owned();
    assert!(batch_id.starts_with("btch_"));
    let ids = [
        ("<bucket_id>", bucket.as_str()),
        ("<batch_id>", batch_id.as_str()),
    ];

    let added = page_command(server, PAGE_ADD, &ids);
    assert_eq!(added["object_count"], 3, "{added}");
    let submitted = page_command(server, PAGE_SUBMIT, &ids);
    assert_eq!(submitted["status"], "QUEUED", "{submitted}");
    assert_eq!(submitted["batch_id"], batch_id.as_str());
    let task_id = text(&submitted["task_id"]).to_owned();
    assert!(task_id.starts_with("task_"));

    let deadline = Instant::now() + Duration::from_secs(120);
    let batch = loop {
        let batch = page_command(server, PAGE_GET, &ids);
        if terminal(&batch) {
            break batch;
        }
        assert!(Instant::now() < deadline, "still running: {batch}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(batch["status"], "COMPLETED", "{batch}");
    let p = &batch["progress"];
    assert_eq!(
        (p["processed"].as_u64(), p["total"].as_u64()),
        (Some(3), Some(3)),
        "{batch}"
    );
    assert_eq!(p["percent"], 100.0);
    assert_eq!(p["errors"], 0);
    assert!(
        p["items_per_second"].as_f64().expect("rate") > 0.0,
        "{batch}"
    );
    assert!(p.get("eta_seconds").is_some() && p.get("current_stage").is_some());
    assert!(
        text(&batch["status_message"]).starts_with("Completed 3/3 objects (100.0%) · 0 errors"),
        "{batch}"
    );
    assert_eq!(batch["health"], "healthy");
    assert!(text(&batch["estimated_completion"]).contains('T'));
    assert_eq!(batch["task_id"], task_id.as_str());

    let (status, task) = server.get(&format!("/v1/tasks/{task_id}")).await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["status"], "COMPLETED");
    assert_eq!(task["batch_id"], batch_id.as_str());
    assert_eq!(task["task_type"], "batch_processing");
    assert_eq!(task["progress"]["processed"], 3);
    let (status, health) = server
        .get(&format!("/v1/buckets/{bucket}/batches/{batch_id}/health"))
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["health"], "healthy");
    assert!(health["checks"].as_array().expect("checks").len() >= 2);

    // One document per object, with the processing history asked for.
    let collection_id = text(&collection["collection_id"]);
    let docs = all(
        server,
        &format!("/v1/collections/{collection_id}/documents"),
    )
    .await;
    assert_eq!(docs.len(), 3);
    let french = docs
        .iter()
        .find(|d| d["object_id"] == "obj_def")
        .expect("obj_def's document");
    assert_eq!(
        french["features"]["lang-detect"]["language"], "fr",
        "{french}"
    );
    let history = french["internal_metadata"]["processing_history"]
        .as_array()
        .expect("processing_history");
    assert_eq!(history.len(), 5, "{french}");
    assert!(history.iter().all(|h| h["outcome"] == "completed"));
}

#[tokio::test]
async fn a_batch_runs_every_collection_and_reprocessing_replaces_documents() {
    batch_lifecycle(&Server::start()).await;
}

#[tokio::test]
async fn a_batch_runs_every_collection_on_mongodb_and_s3() {
    let production = Production::start().await;
    batch_lifecycle(&Server::start_with(production.options())).await;
}

/// Two collections over one bucket, processed, then reprocessed.
async fn batch_lifecycle(server: &Server) {
    let bucket = create_bucket(server, "library").await;
    let docs_dir = support::repo().join("examples/data/docs");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&docs_dir).expect("examples/data/docs") {
        let path = entry.expect("entry").path();
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(std::fs::read(&path).expect("read")).file_name(
                    path.file_name()
                        .expect("name")
                        .to_string_lossy()
                        .into_owned(),
                ),
            )
            .text(
                "key",
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        let (status, object) = send(
            server
                .request(Method::POST, &format!("/v1/buckets/{bucket}/objects"))
                .multipart(form),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{object}");
        ids.push(text(&object["object_id"]).to_owned());
    }
    let texts = create_collection(
        server,
        "texts",
        &bucket,
        serde_json::from_str(TEXT_PIPELINE).expect("pipeline"),
    )
    .await;
    let hashes =
        create_collection(server, "hashes", &bucket, json!([{"name": "content-hash"}])).await;

    // Idempotent create: the same key and body return the same batch.
    let body = json!({ "batch_name": "all", "object_ids": ids });
    let create = |body: &Value, key: &str| {
        server
            .request(Method::POST, &format!("/v1/buckets/{bucket}/batches"))
            .header("Idempotency-Key", key)
            .json(body)
    };
    let (status, batch) = send(create(&body, "import-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let response = create(&body, "import-1").send().await.expect("replay");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let (_, replay) = support::json(response).await;
    assert_eq!(replay["batch_id"], batch["batch_id"]);
    let other = json!({ "batch_name": "other", "object_ids": ids });
    let (status, problem) = send(create(&other, "import-1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["invalid_params"][0]["name"], "Idempotency-Key");

    let batch_id = text(&batch["batch_id"]).to_owned();
    let path = format!("/v1/buckets/{bucket}/batches/{batch_id}");
    // Submit is idempotent: the same task either way.
    let (status, first) = send(server.request(Method::POST, &format!("{path}/submit"))).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, second) = server.post(&format!("{path}/submit"), json!({})).await;
    assert_eq!(first["task_id"], second["task_id"]);
    let done = poll_until(server, &path, terminal).await;
    let done = done.last().expect("final");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["progress"]["processed"], ids.len());
    assert_eq!(
        done["collections"].as_array().expect("collections").len(),
        2
    );
    assert_eq!(
        done["collections"][0]["extractors"][0]["version"], "1.0.0",
        "{done}"
    );
    // Where the manifests are stored stays the service's business.
    assert!(done["collections"][0].get("manifests").is_none(), "{done}");

    let objects = all(server, &format!("{path}/objects?status=completed")).await;
    assert_eq!(objects.len(), ids.len());
    let (_, pending) = server.get(&format!("{path}/objects?status=pending")).await;
    assert_eq!(pending["results"], json!([]));
    let (_, completed) = server
        .get(&format!("/v1/buckets/{bucket}/batches?status=COMPLETED"))
        .await;
    assert_eq!(completed["results"][0]["batch_id"], batch_id.as_str());

    for collection in [&texts, &hashes] {
        let id = text(&collection["collection_id"]);
        let docs = all(server, &format!("/v1/collections/{id}/documents")).await;
        assert_eq!(docs.len(), ids.len());
        let (_, now) = server.get(&format!("/v1/collections/{id}")).await;
        assert_eq!(now["document_count"], ids.len(), "{now}");
        for d in &docs {
            assert_eq!(d["batch_id"], batch_id.as_str());
            assert_eq!(d["bucket_id"], bucket.as_str());
            assert_eq!(
                d["internal_metadata"]["index_signature"],
                now["index_signature"]
            );
            assert_eq!(text(&d["internal_metadata"]["content_hash"]).len(), 64);
            assert!(d["internal_metadata"].get("processing_history").is_none());
            let (status, one) = server
                .get(&format!(
                    "/v1/collections/{id}/documents/{}",
                    text(&d["document_id"])
                ))
                .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&one, d);
        }
    }
    let texts_id = text(&texts["collection_id"]);
    let before = all(server, &format!("/v1/collections/{texts_id}/documents")).await;
    assert!(before.iter().all(|d| {
        d["internal_metadata"]["extractors"]
            .as_array()
            .expect("extractors")
            .iter()
            .any(|e| e == "text-extract@1.0.0")
    }));

    // A second batch over the same objects replaces the documents.
    let (_, again) = server
        .post(
            &format!("/v1/buckets/{bucket}/batches"),
            json!({ "object_ids": ids }),
        )
        .await;
    let again_id = text(&again["batch_id"]).to_owned();
    let again_path = format!("/v1/buckets/{bucket}/batches/{again_id}");
    server
        .post(&format!("{again_path}/submit"), json!({}))
        .await;
    let last = poll_until(server, &again_path, terminal).await;
    assert_eq!(last.last().expect("final")["status"], "COMPLETED");
    let after = all(server, &format!("/v1/collections/{texts_id}/documents")).await;
    assert_eq!(after.len(), before.len());
    let by_id: HashMap<&str, &Value> = before
        .iter()
        .map(|d| (text(&d["document_id"]), d))
        .collect();
    for d in &after {
        let old = by_id[text(&d["document_id"])];
        assert_eq!(d["batch_id"], again_id.as_str());
        assert_eq!(d["created_at"], old["created_at"]);
        assert_ne!(d["updated_at"], old["updated_at"]);
        assert_eq!(d["features"], old["features"]);
    }
    let (_, filtered) = server
        .get(&format!(
            "/v1/collections/{texts_id}/documents?batch_id={batch_id}"
        ))
        .await;
    assert_eq!(filtered["results"], json!([]));
    let (_, one) = server
        .get(&format!(
            "/v1/collections/{texts_id}/documents?object_id={}",
            ids[0]
        ))
        .await;
    assert_eq!(one["results"].as_array().expect("results").len(), 1);

    // Finished batches can go; their documents stay.
    assert_eq!(server.delete(&path).await, StatusCode::NO_CONTENT);
    let (status, _) = server.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        all(server, &format!("/v1/collections/{texts_id}/documents"))
            .await
            .len(),
        ids.len()
    );
}

#[tokio::test]
async fn progress_is_live_and_a_canceled_batch_can_be_retried() {
    let plugins = plugins_with_hostile();
    let server = Server::start_with(slow_options(
        plugins.path(),
        "0.3",
        &["--error-budget", "0.9"],
    ));
    let HostileBatch { path, task_id, .. } = hostile_batch(&server, 36, |i| i % 2 == 1).await;

    // Watch it run until a few objects are done, then cancel.
    let seen = poll_until(&server, &path, |b| {
        b["status"] == "PROCESSING" && b["progress"]["processed"].as_u64().unwrap_or(0) >= 4
    })
    .await;
    let running = seen.last().expect("running");
    let p = &running["progress"];
    assert_eq!(p["total"], 36);
    assert_eq!(
        p["current_stage"],
        json!({"name": "hostile@1.0.0", "index": 1, "total": 1}),
        "{running}"
    );
    let message = text(&running["status_message"]);
    assert!(
        message.starts_with(&format!("Processing {}/36 objects (", p["processed"])),
        "{message}"
    );
    assert!(message.contains(" items/sec · "), "{message}");
    assert!(p["errors"].as_u64().expect("errors") >= 1, "{running}");
    assert_eq!(running["health"], "degraded", "{running}");
    let (_, task) = server.get(&format!("/v1/tasks/{task_id}")).await;
    assert_eq!(task["status"], "PROCESSING");
    // The numbers only ever grow.
    let processed: Vec<u64> = seen
        .iter()
        .filter_map(|b| b["progress"]["processed"].as_u64())
        .collect();
    assert!(processed.windows(2).all(|w| w[0] <= w[1]), "{processed:?}");
    // The rate shows once a second of samples exists.
    let later = poll_until(&server, &path, |b| {
        b["progress"]["items_per_second"].as_f64().unwrap_or(0.0) > 0.0 || terminal(b)
    })
    .await;
    let later = later.last().expect("later");
    if later["status"] == "PROCESSING" {
        assert!(
            later["progress"]["eta_seconds"].as_u64().is_some(),
            "{later}"
        );
        assert!(later["estimated_completion"].as_str().is_some(), "{later}");
        assert!(
            text(&later["status_message"]).contains("remaining"),
            "{later}"
        );
    }

    let (status, canceled) = server.post(&format!("{path}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], "CANCELED");
    let at_cancel = canceled["progress"]["processed"]
        .as_u64()
        .expect("processed");
    // The worker stops at its next write: nothing more gets processed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, still) = server.get(&path).await;
    assert_eq!(still["status"], "CANCELED");
    assert_eq!(still["progress"]["processed"], at_cancel);
    assert!(at_cancel < 36, "canceled too late to tell: {still}");
    let (status, _) = server.post(&format!("{path}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "cancel is idempotent");

    // Retry runs what did not complete; the calm objects already done stay.
    let (status, retried) = server.post(&format!("{path}/retry"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["status"], "QUEUED");
    let done = poll_until(&server, &path, terminal).await;
    let done = done.last().expect("final");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["progress"]["processed"], 36);
    assert_eq!(done["progress"]["errors"], 18);
    assert_eq!(
        done["error_summary"],
        json!({"hostile.timeout": 18}),
        "{done}"
    );
    assert_eq!(done["health"], "degraded");
    let failed = all(&server, &format!("{path}/objects?status=failed")).await;
    assert_eq!(failed.len(), 18);
    assert!(
        failed
            .iter()
            .all(|o| text(&o["error"]).contains("timed out")),
        "{failed:?}"
    );
    let (status, problem) = server.post(&format!("{path}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
}

#[tokio::test]
async fn too_many_failures_fail_the_batch() {
    let plugins = plugins_with_hostile();
    let server = Server::start_with(slow_options(plugins.path(), "0.05", &[]));
    let HostileBatch { path, .. } = hostile_batch(&server, 4, |i| i < 3).await;
    let done = poll_until(&server, &path, terminal).await;
    let done = done.last().expect("final");
    assert_eq!(done["status"], "FAILED", "{done}");
    assert!(
        text(&done["error_message"]).contains("error budget of 50%"),
        "{done}"
    );
    assert_eq!(done["health"], "unhealthy");
    assert!(text(&done["status_message"]).starts_with("Failed at "));
    let (_, health) = server.get(&format!("{path}/health")).await;
    let fails: Vec<&str> = health["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| text(&c["name"]))
        .collect();
    assert!(
        fails.contains(&"status") && fails.contains(&"errors"),
        "{health}"
    );
}

#[tokio::test]
async fn a_killed_server_resumes_its_batch_with_one_document_per_object() {
    killed_server_resumes(Options::default()).await;
}

#[tokio::test]
async fn a_killed_server_resumes_its_batch_on_mongodb_and_s3() {
    let production = Production::start().await;
    killed_server_resumes(production.options()).await;
}

/// SIGKILL mid-batch, then a restart on the same backends (`backends`
/// adds their options).
async fn killed_server_resumes(backends: Options) {
    let plugins = plugins_with_hostile();
    let mut options = slow_options(
        plugins.path(),
        "0.3",
        &["--error-budget", "1", "--lease-seconds", "2"],
    );
    options.args.extend(backends.args);
    options.env.extend(backends.env);
    let mut server = Server::start_with(options.clone());
    let HostileBatch {
        ids,
        collection_id,
        path,
        ..
    } = hostile_batch(&server, 20, |i| i % 2 == 0).await;
    poll_until(&server, &path, |b| {
        b["progress"]["processed"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    let written = all(
        &server,
        &format!("/v1/collections/{collection_id}/documents"),
    )
    .await;
    // Objects recorded as done after their documents were listed: those
    // documents must survive the kill untouched. (A document may land just
    // before its object is recorded; such an object is legitimately redone.)
    let mut recorded = all(&server, &format!("{path}/objects?status=completed")).await;
    recorded.extend(all(&server, &format!("{path}/objects?status=failed")).await);
    server.kill();
    assert!(written.len() < ids.len(), "finished before the kill");
    let written: Vec<Value> = written
        .into_iter()
        .filter(|d| recorded.iter().any(|o| o["object_id"] == d["object_id"]))
        .collect();
    assert!(written.len() >= 3, "{written:?}");

    let data_dir: PathBuf = server.data_dir.clone();
    let restarted = Server::start_in(&data_dir, &options);
    let done = poll_until(&restarted, &path, terminal).await;
    let done = done.last().expect("final");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["progress"]["processed"], ids.len());
    assert_eq!(done["progress"]["errors"], 10, "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    let docs = all(
        &restarted,
        &format!("/v1/collections/{collection_id}/documents"),
    )
    .await;
    let mut objects: Vec<&str> = docs.iter().map(|d| text(&d["object_id"])).collect();
    objects.sort_unstable();
    assert_eq!(objects, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // Documents written before the kill were not redone.
    for old in &written {
        let now = docs
            .iter()
            .find(|d| d["document_id"] == old["document_id"])
            .expect("still there");
        assert_eq!(
            now["updated_at"], old["updated_at"],
            "{} was redone",
            old["object_id"]
        );
    }
    let (_, col) = restarted
        .get(&format!("/v1/collections/{collection_id}"))
        .await;
    assert_eq!(col["document_count"], ids.len());
    drop(server);
}

#[tokio::test]
async fn bad_batch_requests_are_problems() {
    let server = Server::start();
    let bucket = create_bucket(&server, "b").await;
    upload(&server, &bucket, "obj_1", "one").await;
    let batches = format!("/v1/buckets/{bucket}/batches");

    let (status, problem) = server
        .post(
            &batches,
            json!({ "object_ids": ["obj_1", "obj_nope", "obj_gone"] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["invalid_params"][0]["name"], "object_ids");
    let reason = text(&problem["invalid_params"][0]["reason"]);
    assert!(
        reason.contains("obj_nope") && reason.contains("obj_gone") && !reason.contains("obj_1"),
        "{reason}"
    );
    let (_, listed) = server.get(&batches).await;
    assert_eq!(listed["results"], json!([]), "nothing half-written");
    let (status, problem) = server.post(&batches, json!({ "objects": [] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, _) = server.get(&format!("{batches}?status=DONE")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = server.get(&format!("{batches}/btch_nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/v1/tasks/task_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An empty batch, and a bucket without collections, cannot be submitted.
    let (_, empty) = server.post(&batches, json!({})).await;
    let empty_path = format!("{batches}/{}", text(&empty["batch_id"]));
    let (status, problem) = server
        .post(&format!("{empty_path}/submit"), json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["invalid_params"][0]["name"], "object_ids");
    let (_, draft) = server
        .post(&batches, json!({ "object_ids": ["obj_1", "obj_1"] }))
        .await;
    assert_eq!(draft["object_count"], 1, "duplicates ignored");
    let draft_path = format!("{batches}/{}", text(&draft["batch_id"]));
    let (status, problem) = server
        .post(&format!("{draft_path}/submit"), json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["invalid_params"][0]["name"], "bucket_id");
    let (status, problem) = server
        .post(&format!("{draft_path}/submit"), json!({ "history": true }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, _) = send(
        server
            .request(Method::POST, &format!("{draft_path}/submit"))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Wrong state transitions are 409.
    let (status, _) = server
        .post(&format!("{draft_path}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server.post(&format!("{draft_path}/retry"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .get(&format!("{draft_path}/objects?status=done"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, problem) = server
        .post(
            &format!("{draft_path}/objects"),
            json!({ "object_ids": [] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    create_collection(&server, "c", &bucket, json!([{"name": "content-hash"}])).await;
    let (status, _) = server
        .post(&format!("{draft_path}/submit"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = server
        .post(
            &format!("{draft_path}/objects"),
            json!({ "object_ids": ["obj_1"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    // A finished batch whose collection is gone cannot be retried.
    poll_until(&server, &draft_path, terminal).await;
    assert_eq!(
        server.delete("/v1/collections/c").await,
        StatusCode::NO_CONTENT
    );
    let (status, problem) = server.post(&format!("{draft_path}/retry"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        text(&problem["detail"]).contains("deleted since: c"),
        "{problem}"
    );

    // A create replayed with its Idempotency-Key answers as the first did,
    // even once an object it named is gone.
    upload(&server, &bucket, "obj_2", "two").await;
    let create = || {
        server
            .request(Method::POST, &batches)
            .header("Idempotency-Key", "k-2")
            .json(&json!({ "object_ids": ["obj_2"] }))
    };
    let (status, first) = send(create()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        server
            .delete(&format!("/v1/buckets/{bucket}/objects/obj_2"))
            .await,
        StatusCode::NO_CONTENT
    );
    let (status, again) = send(create()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["batch_id"], first["batch_id"]);

    // Another namespace sees none of it.
    let secret = &support::tenants::key_in(&server, "other").await;
    let (status, _) = send(server.request_as(secret, "other", Method::GET, &draft_path)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, mine) = server.get(&draft_path).await;
    let task = text(&mine["task_id"]).to_owned();
    let (status, _) =
        send(server.request_as(secret, "other", Method::GET, &format!("/v1/tasks/{task}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        send(server.request_as(secret, "default", Method::GET, &format!("/v1/tasks/{task}"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn openapi_and_metrics_describe_the_service() {
    let server = Server::start();
    let response = server
        .client
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await
        .expect("openapi");
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/namespaces",
        "/v1/api-keys",
        "/v1/buckets",
        "/v1/buckets/{bucket}",
        "/v1/buckets/{bucket}/objects",
        "/v1/buckets/{bucket}/objects/{object_id}",
        "/v1/buckets/{bucket}/objects/{object_id}/content",
        "/v1/collections",
        "/v1/collections/{collection}",
        "/v1/collections/{collection}/documents",
        "/v1/collections/{collection}/documents/{document_id}",
        "/v1/extractors",
        "/v1/extractors/{name}",
        "/v1/buckets/{bucket}/batches",
        "/v1/buckets/{bucket}/batches/{batch}",
        "/v1/buckets/{bucket}/batches/{batch}/objects",
        "/v1/buckets/{bucket}/batches/{batch}/submit",
        "/v1/buckets/{bucket}/batches/{batch}/cancel",
        "/v1/buckets/{bucket}/batches/{batch}/retry",
        "/v1/buckets/{bucket}/batches/{batch}/health",
        "/v1/buckets/{bucket}/batches/{batch}/events",
        "/v1/tasks/{task_id}",
        "/v1/webhooks",
        "/v1/webhooks/{webhook_id}",
        "/v1/webhooks/{webhook_id}/rotate-secret",
        "/v1/webhooks/{webhook_id}/test",
        "/v1/webhooks/{webhook_id}/deliveries",
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}",
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from /openapi.json"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for schema in [
        "BatchView",
        "Progress",
        "TaskView",
        "Bucket",
        "Collection",
        "Document",
        "Problem",
    ] {
        assert!(schemas.contains_key(schema), "{schema} missing");
    }
    // The API shows views of the store's records, never the records.
    let records: Vec<&String> = schemas.keys().filter(|k| k.contains("Record")).collect();
    assert!(records.is_empty(), "store records in the API: {records:?}");
    server.get("/v1/buckets").await;
    let text = server.metrics().await;
    assert!(
        text.contains(
            "strata_http_requests_total{route=\"/v1/buckets\",method=\"GET\",status=\"200\"}"
        ),
        "{text}"
    );
}

/// Runs `examples/quickstart.sh` against `server`; returns what it printed
/// once it succeeded.
fn quickstart(server: &Server) -> String {
    let out = std::process::Command::new(support::repo().join("examples/quickstart.sh"))
        .arg(support::repo().join("examples/data/docs"))
        .env("MP_API_URL", &server.url)
        .env("MP_API_KEY", ADMIN_KEY)
        .env_remove("MP_NAMESPACE")
        .output()
        .expect("running examples/quickstart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Completed 5/5 objects (100.0%) · 0 errors"),
        "{stdout}"
    );
    stdout
}

#[tokio::test]
async fn the_quickstart_script_runs_the_whole_flow() {
    let server = Server::start();
    let stdout = quickstart(&server);
    assert!(stdout.contains("task: COMPLETED"), "{stdout}");
    assert_eq!(stdout.matches("  doc_").count(), 5, "{stdout}");
}

#[tokio::test]
async fn the_quickstart_runs_on_mongodb_with_local_files() {
    let mongo = support::servers::MongoServer::start();
    let server = Server::start_with(Options {
        args: vec!["--store".into(), mongo.database_uri()],
        ..Options::default()
    });
    let (_, ready) = server.get("/readyz").await;
    assert!(
        text(&ready["backends"][1]["backend"]).starts_with("file://"),
        "{ready}"
    );
    let stdout = quickstart(&server);
    assert_eq!(stdout.matches("  doc_").count(), 5, "{stdout}");
    // Contents are files under the data directory.
    let objects = walk(&server.data_dir.join("blobs/objects"));
    assert_eq!(objects, 5, "{stdout}");
}

/// How many files are below `dir`.
fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() { walk(&path) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_batch_whose_workers_keep_dying_fails_with_the_reason() {
    let plugins = plugins_with_hostile();
    let options = slow_options(
        plugins.path(),
        "0.3",
        &[
            "--error-budget",
            "1",
            "--lease-seconds",
            "1",
            "--max-attempts",
            "1",
        ],
    );
    let mut server = Server::start_with(options.clone());
    let HostileBatch { path, .. } = hostile_batch(&server, 10, |_| true).await;
    poll_until(&server, &path, |b| b["status"] == "PROCESSING").await;
    server.kill();
    let restarted = Server::start_in(&server.data_dir, &options);
    let done = poll_until(&restarted, &path, terminal).await;
    let done = done.last().expect("final");
    assert_eq!(done["status"], "FAILED", "{done}");
    assert!(
        text(&done["error_message"]).contains("the worker running it was lost 1 time (last: "),
        "{done}"
    );
}

#[tokio::test]
async fn a_stopping_server_gives_its_batch_back() {
    let plugins = plugins_with_hostile();
    // A lease far longer than the test: only a handed-back batch resumes.
    let options = slow_options(
        plugins.path(),
        "0.3",
        &["--error-budget", "1", "--lease-seconds", "600"],
    );
    let mut server = Server::start_with(options.clone());
    let HostileBatch { ids, path, .. } = hostile_batch(&server, 20, |i| i % 2 == 0).await;
    poll_until(&server, &path, |b| {
        b["progress"]["processed"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let exit = server.terminate();
    assert!(exit.success(), "strata serve exited with {exit}");
    let restarted = Server::start_in(&server.data_dir, &options);
    let (_, handed_back) = restarted.get(&path).await;
    assert!(
        matches!(
            text(&handed_back["status"]),
            "QUEUED" | "PROCESSING" | "COMPLETED"
        ),
        "{handed_back}"
    );
    let done = poll_until(&restarted, &path, terminal).await;
    let done = done.last().expect("final");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["progress"]["processed"], ids.len());
    assert_eq!(
        done["attempts"], 1,
        "a handed-back batch does not count a lost attempt: {done}"
    );
}

#[tokio::test]
async fn pollers_run_batches_side_by_side_up_to_their_limit() {
    let plugins = plugins_with_hostile();
    let server = Server::start_with(slow_options(
        plugins.path(),
        "0.3",
        &["--error-budget", "1", "--max-shards", "2"],
    ));
    let mut batches = Vec::new();
    for name in ["first", "second", "third"] {
        batches.push(hostile_batch_named(&server, name, 12, |_| true).await);
    }
    // Two run at once; the third waits for a free slot.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut statuses = Vec::new();
        for b in &batches {
            let (_, body) = server.get(&b.path).await;
            statuses.push(text(&body["status"]).to_owned());
        }
        let running = statuses.iter().filter(|s| *s == "PROCESSING").count();
        assert!(running <= 2, "{statuses:?}");
        if running == 2 {
            assert!(statuses.contains(&"QUEUED".to_owned()), "{statuses:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never two at once: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for b in &batches {
        let done = poll_until(&server, &b.path, terminal).await;
        assert_eq!(done.last().expect("final")["status"], "COMPLETED");
    }
}

#[tokio::test]
async fn the_quickstart_runs_with_object_contents_in_s3() {
    let s3 = support::servers::S3Server::start();
    let client = support::servers::s3_client(&s3.endpoint);
    let bucket = support::servers::s3_bucket(&client).await;
    let server = Server::start_with(s3.options(&bucket));
    let (_, ready) = server.get("/readyz").await;
    assert!(
        text(&ready["backends"][1]["backend"]).starts_with(&format!("s3://{bucket}/strata")),
        "{ready}"
    );
    quickstart(&server);
    // Contents and manifests are in the bucket, under the prefix.
    let keys: Vec<String> = client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("strata/")
        .send()
        .await
        .expect("list")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("strata/objects/"))
            .count(),
        5,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("strata/manifests/"))
            .count(),
        5,
        "{keys:?}"
    );
}

#[test]
fn an_unreachable_backend_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--blobs",
            "s3://strata-nowhere/x",
        ])
        .args(["--s3-endpoint", "http://127.0.0.1:9", "--s3-path-style"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("strata serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:9") && stderr.contains("strata-nowhere"),
        "{stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "postgres://x",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("strata serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--store `postgres://x`"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg("mongodb://strata:hunter2@127.0.0.1:9/strata?serverSelectionTimeoutMS=300")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("strata serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
    assert_eq!(
        stderr.matches("Server selection timeout").count(),
        1,
        "said once: {stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}
