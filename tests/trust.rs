//! The trust boundary against a real `strata serve`: what one plugin or
//! one tenant does never holds, slows or reads another's work.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::flow::*;
use support::{ADMIN_KEY, Server, send};

/// A server whose plugins directory holds the hostile fixture, with calls
/// cut at `call_timeout` seconds and no error budget.
fn hostile_server(plugins: &std::path::Path, call_timeout: &str, extra: &[&str]) -> Server {
    let mut extra = extra.to_vec();
    extra.extend(["--error-budget", "1"]);
    Server::start_with(slow_options(plugins, call_timeout, &extra))
}

/// POSTs `body` to `path` in `namespace` with the admin key.
async fn post_in(server: &Server, namespace: &str, path: &str, body: Value) -> (StatusCode, Value) {
    send(
        server
            .request_as(ADMIN_KEY, namespace, Method::POST, path)
            .json(&body),
    )
    .await
}

/// GETs `path` in `namespace` with the admin key.
async fn get_in(server: &Server, namespace: &str, path: &str) -> (StatusCode, Value) {
    send(server.request_as(ADMIN_KEY, namespace, Method::GET, path)).await
}

/// Creates namespace `namespace` and submits, there, a batch of three calm
/// objects through `content-hash`; returns the batch's path.
async fn calm_batch_in(server: &Server, namespace: &str) -> String {
    let (status, body) = server
        .post("/v1/namespaces", json!({ "name": namespace }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, bucket) = post_in(
        server,
        namespace,
        "/v1/buckets",
        json!({"bucket_name": "b"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bucket}");
    let bucket = text(&bucket["bucket_id"]).to_owned();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = format!("calm_{i}");
        let (status, body) = post_in(
            server,
            namespace,
            &format!("/v1/buckets/{bucket}/objects"),
            json!({"object_id": id, "key": format!("{id}.txt"), "text": "calm"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(id);
    }
    let (status, body) = post_in(
        server,
        namespace,
        "/v1/collections",
        json!({"collection_name": "c", "source": {"bucket_id": bucket},
               "extractors": [{"name": "content-hash"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, batch) = post_in(
        server,
        namespace,
        &format!("/v1/buckets/{bucket}/batches"),
        json!({"object_ids": ids}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let path = format!("/v1/buckets/{bucket}/batches/{}", text(&batch["batch_id"]));
    let (status, body) = post_in(server, namespace, &format!("{path}/submit"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    path
}

/// Polls `path` in `namespace` until the batch is terminal.
async fn finished_in(server: &Server, namespace: &str, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = get_in(server, namespace, path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if terminal(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "never finished: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sleeping_plugins_end_by_their_deadline_and_other_namespaces_run() {
    let plugins = plugins_with_hostile();
    // Two pollers, both given a batch whose every object sleeps in WASI.
    let server = hostile_server(
        plugins.path(),
        "1",
        &["--max-batches", "2", "--max-timeouts", "2"],
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
        assert_eq!(
            reasons
                .iter()
                .filter(|r| r.contains("timed out after 1s"))
                .count(),
            2,
            "two calls time out, then the extractor is disabled: {reasons:?}"
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
    let server = hostile_server(plugins.path(), "3600", &["--max-batches", "1"]);
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
        &["--max-batches", "1", "--shutdown-grace", "10"],
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

/// Creates namespace `namespace` and a key there with the publish right.
async fn publish_key(server: &Server, namespace: &str) -> String {
    let (status, body) = server
        .post("/v1/namespaces", json!({ "name": namespace }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, key) = server
        .post(
            "/v1/api-keys",
            json!({ "namespace": namespace, "publish": true }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    text(&key["secret"]).to_owned()
}

/// A component built by `make plugins`.
fn component(path: &str) -> Vec<u8> {
    std::fs::read(support::repo().join(path)).expect("components (make plugins)")
}

/// Sends `method path` with `key` in `namespace`, with a JSON body or a
/// component.
async fn as_key(
    server: &Server,
    (key, namespace): (&str, &str),
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = server.request_as(key, namespace, method, path);
    send(match body {
        Some(body) => request.json(&body),
        None => request,
    })
    .await
}

async fn publish_as(
    server: &Server,
    (key, namespace): (&str, &str),
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    send(
        server
            .request_as(key, namespace, Method::POST, "/v1/extractors")
            .header("content-type", "application/wasm")
            .body(bytes),
    )
    .await
}

#[tokio::test]
async fn extractor_names_have_owners_and_private_names_stay_private() {
    let server = Server::start();
    let a = (publish_key(&server, "team-a").await, "team-a");
    let b = (publish_key(&server, "team-b").await, "team-b");
    let (a, b) = ((a.0.as_str(), a.1), (b.0.as_str(), b.1));

    // A built-in's name is reserved: a tenant cannot republish its bytes.
    let (status, problem) =
        publish_as(&server, b, component("plugins/dist/text-extract.wasm")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(
        text(&problem["detail"]).contains("extractor name `text-extract` is reserved for admins"),
        "{problem}"
    );

    // The first publication claims the name for its namespace.
    let (status, v1) = publish_as(&server, a, component("tests/fixtures/dist/stamp.wasm")).await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    assert_eq!(v1["published_by"]["namespace"]["name"], "team-a", "{v1}");
    assert!(
        text(&v1["published_by"]["key_id"]).starts_with("key_"),
        "{v1}"
    );
    let (status, problem) =
        publish_as(&server, b, component("tests/fixtures/dist/stamp-v2.wasm")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(
        text(&problem["detail"]).contains("extractor name `stamp` belongs to namespace `team-a`"),
        "{problem}"
    );

    // Private: B neither sees it nor plans it.
    let (status, _) = as_key(&server, b, Method::GET, "/v1/extractors/stamp", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = as_key(&server, b, Method::GET, "/v1/extractors?limit=100", None).await;
    assert!(
        listed["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|e| e["name"] != "stamp"),
        "{listed}"
    );
    let (status, bucket) = as_key(
        &server,
        b,
        Method::POST,
        "/v1/buckets",
        Some(json!({"bucket_name": "b"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bucket}");
    let bucket = text(&bucket["bucket_id"]).to_owned();
    let collection = json!({"collection_name": "stamped", "source": {"bucket_id": bucket},
                            "extractors": [{"name": "stamp"}]});
    let (status, problem) = as_key(
        &server,
        b,
        Method::POST,
        "/v1/collections",
        Some(collection.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        problem["invalid_params"][0]["name"], "extractors[0].name",
        "{problem}"
    );
    assert_eq!(
        problem["invalid_params"][0]["reason"], "no extractor `stamp`",
        "{problem}"
    );

    // Made public by its owner: B plans it, but neither deprecates it nor
    // changes who may use it.
    let (status, public) = as_key(
        &server,
        a,
        Method::PATCH,
        "/v1/extractors/stamp",
        Some(json!({"public": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{public}");
    assert_eq!(public["public"], true);
    assert_eq!(public["owner"]["name"], "team-a");
    let (status, created) = as_key(
        &server,
        b,
        Method::POST,
        "/v1/collections",
        Some(collection),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, problem) = as_key(
        &server,
        b,
        Method::POST,
        "/v1/extractors/stamp/versions/1.0.0/deprecate",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(
        text(&problem["detail"]).contains("belongs to namespace `team-a`"),
        "{problem}"
    );
    for change in [json!({"public": false}), json!({"owner": "team-b"})] {
        let (status, problem) = as_key(
            &server,
            b,
            Method::PATCH,
            "/v1/extractors/stamp",
            Some(change),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    }

    // Private again: B's next submit does not plan it.
    let (status, _) = as_key(
        &server,
        a,
        Method::PATCH,
        "/v1/extractors/stamp",
        Some(json!({"public": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = as_key(
        &server,
        b,
        Method::POST,
        &format!("/v1/buckets/{bucket}/objects"),
        Some(json!({"object_id": "o", "text": "hello"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, batch) = as_key(
        &server,
        b,
        Method::POST,
        &format!("/v1/buckets/{bucket}/batches"),
        Some(json!({"object_ids": ["o"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let submit = format!(
        "/v1/buckets/{bucket}/batches/{}/submit",
        text(&batch["batch_id"])
    );
    let (status, problem) = as_key(&server, b, Method::POST, &submit, Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        problem["invalid_params"][0]["name"], "collections[stamped].extractors[0].name",
        "{problem}"
    );

    // An admin transfers the name: now B publishes, and the details say who.
    let (status, moved) = send(
        server
            .request(Method::PATCH, "/v1/extractors/stamp")
            .json(&json!({"owner": "team-b"})),
    )
    .await;
    assert_eq!(moved["owner"]["name"], "team-b", "{moved}");
    assert_eq!(status, StatusCode::OK);
    let (status, v2) = publish_as(&server, b, component("tests/fixtures/dist/stamp-v2.wasm")).await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    let (_, detail) = as_key(
        &server,
        b,
        Method::GET,
        "/v1/extractors/stamp/versions/2.0.0",
        None,
    )
    .await;
    assert_eq!(detail["owner"]["name"], "team-b", "{detail}");
    assert_eq!(
        detail["published_by"]["namespace"]["name"], "team-b",
        "{detail}"
    );
    assert_eq!(detail["public"], false, "{detail}");
    let (status, _) = as_key(
        &server,
        a,
        Method::POST,
        "/v1/extractors/stamp/versions/2.0.0/deprecate",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "A no longer sees the private name"
    );
}

/// `strata keys …` on a server's data directory.
fn keys_command(server: &Server, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .output()
        .expect("strata keys runs")
}

#[tokio::test]
async fn keys_are_listed_without_secrets_and_revoked_at_once() {
    let mut server = Server::start();
    let (status, created) = server
        .post(
            "/v1/api-keys",
            json!({ "namespace": "default", "name": "ci" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (secret, key_id) = (
        text(&created["secret"]).to_owned(),
        text(&created["key_id"]).to_owned(),
    );
    let (status, _) = as_key(
        &server,
        (&secret, "default"),
        Method::GET,
        "/v1/buckets",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Listed with rights, namespace and last use, never a secret.
    let listed = all(&server, "/v1/api-keys").await;
    let ci = listed
        .iter()
        .find(|k| k["key_id"] == key_id.as_str())
        .expect("listed");
    assert_eq!(ci["name"], "ci");
    assert_eq!(ci["admin"], false);
    assert!(
        ci["namespace_id"]
            .as_str()
            .is_some_and(|n| n.starts_with("ns_")),
        "{ci}"
    );
    assert!(ci["last_used_at"].as_str().is_some(), "{ci}");
    let body = serde_json::to_string(&listed).expect("JSON");
    assert!(
        !body.contains(&secret) && !body.contains("secret"),
        "{body}"
    );
    let (status, _) = as_key(
        &server,
        (&secret, "default"),
        Method::GET,
        "/v1/api-keys",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins list keys");

    // Revoked: the next call is refused.
    assert_eq!(
        server.delete(&format!("/v1/api-keys/{key_id}")).await,
        StatusCode::NO_CONTENT
    );
    let (status, _) = as_key(
        &server,
        (&secret, "default"),
        Method::GET,
        "/v1/buckets",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.delete(&format!("/v1/api-keys/{key_id}")).await,
        StatusCode::NOT_FOUND
    );
    let admin = listed
        .iter()
        .find(|k| k["admin"] == true)
        .expect("admin key");
    let (status, problem) = send(server.request(
        Method::DELETE,
        &format!("/v1/api-keys/{}", text(&admin["key_id"])),
    ))
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        text(&problem["detail"]).contains("last admin key"),
        "{problem}"
    );

    // The same from the command line, on the server's data directory.
    let (_, other) = server.post("/v1/api-keys", json!({ "name": "cli" })).await;
    let (other_secret, other_id) = (
        text(&other["secret"]).to_owned(),
        text(&other["key_id"]).to_owned(),
    );
    let list = keys_command(&server, &["list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let table = String::from_utf8_lossy(&list.stdout);
    assert!(
        table.contains(&other_id) && table.contains("cli"),
        "{table}"
    );
    assert!(!table.contains(&other_secret), "{table}");
    let revoke = keys_command(&server, &["revoke", &other_id]);
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let (status, _) = as_key(
        &server,
        (&other_secret, "default"),
        Method::GET,
        "/v1/buckets",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let missing = keys_command(&server, &["revoke", &other_id]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains(&format!("API key `{other_id}` not found")),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    // A new STRATA_ADMIN_KEY revokes the key the old value made.
    server.terminate();
    let rotated = "sk_test_rotated_admin_key_987654";
    let options = support::Options {
        generated_admin_key: true,
        env: vec![("STRATA_ADMIN_KEY".into(), rotated.into())],
        ..support::Options::default()
    };
    let restarted = Server::start_in(&server.data_dir, &options);
    let (status, _) = send(restarted.request(Method::GET, "/v1/buckets")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old admin key is revoked"
    );
    let (status, _) = as_key(
        &restarted,
        (rotated, "default"),
        Method::GET,
        "/v1/buckets",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the new one works");
}
