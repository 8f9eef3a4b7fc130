//! The extractor registry against a real `strata serve` process and real
//! components: publication, validation, immutability, idempotence.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::flow::*;
use support::servers::Production;
use support::{Options, Server, send};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(support::repo().join(format!("tests/fixtures/dist/{name}.wasm")))
        .expect("tests/fixtures/dist (run `make plugins`)")
}

/// `bytes` with a custom section appended: another component, same manifest.
fn rebuilt(bytes: Vec<u8>) -> Vec<u8> {
    rebuilt_as(bytes, b"another build")
}

/// `bytes` with a custom section holding `payload` appended.
fn rebuilt_as(mut bytes: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    let name = b"strata-test";
    bytes.push(0); // custom section
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

async fn publish(server: &Server, bytes: Vec<u8>) -> (StatusCode, Value) {
    send(
        server
            .request(Method::POST, "/v1/extractors")
            .header("content-type", "application/wasm")
            .body(bytes),
    )
    .await
}

#[tokio::test]
async fn a_published_version_is_checked_immutable_and_usable_at_once() {
    let server = Server::start();
    let identity = fixture("identity");
    let (status, published) = publish(&server, identity.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    assert_eq!(published["name"], "identity");
    assert_eq!(published["manifest"]["name"], "identity");
    let hash = text(&published["content_hash"]).to_owned();
    assert_eq!(hash.len(), 64);
    assert_eq!(published["size_bytes"], identity.len());

    // The same bytes again: the same version, 200.
    let (status, again) = publish(&server, identity.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["published_at"], published["published_at"]);

    // Other bytes under the same name and version: refused.
    let (status, problem) = publish(&server, rebuilt(identity)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(text(&problem["detail"]).contains("immutable"), "{problem}");

    // Listed, and usable by a collection without a restart.
    let (status, listed) = server.get("/v1/extractors/identity").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["versions"][0]["content_hash"], hash.as_str());
    let bucket = create_bucket(&server, "b").await;
    create_collection(
        &server,
        "uses-identity",
        &bucket,
        json!([{"name": "identity"}]),
    )
    .await;
}

#[tokio::test]
async fn a_bad_component_is_refused_with_the_reason() {
    let server = Server::start();
    for (bytes, reason) in [
        (b"not wasm at all".to_vec(), "body"),
        (fixture("not-extractor"), "body"),
        (fixture("future-major"), "body"),
        (fixture("bad-manifest"), "body"),
    ] {
        let (status, problem) = publish(&server, bytes).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert!(problem.to_string().contains(reason), "{problem}");
    }
    let (status, problem) = publish(&server, fixture("future-major")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        text(&problem["detail"]).contains("strata:extractor"),
        "{problem}"
    );
    let (status, problem) = send(
        server
            .request(Method::POST, "/v1/extractors")
            .header("content-type", "text/plain")
            .body(fixture("identity")),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{problem}");
    // Only admins publish. (The refusal comes before the body is read, and
    // the server closes that connection: a client of its own.)
    let (status, key) = server
        .post("/v1/api-keys", json!({ "namespace": "default" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let (status, _) = send(
        reqwest::Client::new()
            .post(format!("{}/v1/extractors", server.url))
            .bearer_auth(text(&key["secret"]))
            .header("X-Namespace", "default")
            .header("content-type", "application/wasm")
            .body(fixture("identity")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, listed) = server.get("/v1/extractors/identity").await;
    assert!(
        listed.get("versions").is_none(),
        "nothing was published: {listed}"
    );
}

#[tokio::test]
async fn a_key_with_the_publish_right_publishes_as_multipart() {
    let server = Server::start();
    let (status, key) = server
        .post(
            "/v1/api-keys",
            json!({ "namespace": "default", "publish": true, "name": "ci" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["publish"], true);
    let secret = text(&key["secret"]).to_owned();
    let as_publisher = |method: Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("{}{path}", server.url))
            .bearer_auth(&secret)
    };
    let form = |parts: &[(&str, Vec<u8>)]| {
        parts
            .iter()
            .fold(reqwest::multipart::Form::new(), |form, (name, bytes)| {
                let part = reqwest::multipart::Part::bytes(bytes.clone())
                    .file_name("identity.wasm")
                    .mime_str("application/wasm")
                    .expect("mime");
                form.part(name.to_string(), part)
            })
    };
    for (parts, field) in [
        (vec![("component", fixture("identity"))], "component"),
        (
            vec![("file", fixture("identity")), ("file", fixture("identity"))],
            "file",
        ),
    ] {
        let (status, problem) =
            send(as_publisher(Method::POST, "/v1/extractors").multipart(form(&parts))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert!(
            problem["invalid_params"][0]["name"] == field,
            "{field}: {problem}"
        );
    }
    let (status, published) = send(
        as_publisher(Method::POST, "/v1/extractors")
            .multipart(form(&[("file", fixture("identity"))])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    assert_eq!(published["name"], "identity");
    let path = format!(
        "/v1/extractors/identity/versions/{}",
        text(&published["version"])
    );
    let (status, deprecated) = send(as_publisher(Method::POST, &format!("{path}/deprecate"))).await;
    assert_eq!(status, StatusCode::OK, "{deprecated}");
    // Deleting stays with admins.
    let (status, _) = send(as_publisher(Method::DELETE, &path)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_version_published_on_one_host_runs_on_another_without_restart() {
    let options = Options {
        args: vec!["--poll-interval".into(), "0.3".into()],
        ..Options::default()
    };
    let a = Server::start_with(options.clone());
    // Hosts on one SQLite data directory.
    let dir = a.data_dir.clone();
    two_hosts(a, || Server::start_in(&dir, &options)).await;
}

#[tokio::test]
async fn a_version_published_on_one_host_runs_on_another_on_mongodb_and_s3() {
    let production = Production::start().await;
    let mut options = production.options();
    options
        .args
        .extend(["--poll-interval".into(), "0.3".into()]);
    // Hosts with data directories of their own, on one MongoDB and S3.
    two_hosts(Server::start_with(options.clone()), || {
        Server::start_with(options.clone())
    })
    .await;
}

/// A version published on `a` is used on a peer without a restart, known
/// to a peer started later, and its deprecation and deletion reach both.
async fn two_hosts(a: Server, peer: impl Fn() -> Server) {
    let b = peer();
    let (status, _) = b.get("/v1/extractors/identity").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, published) = publish(&a, fixture("identity")).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    until_listed(&b, "identity", true).await;
    let (_, on_b) = b.get("/v1/extractors/identity").await;
    assert_eq!(
        on_b["versions"][0]["content_hash"],
        published["content_hash"]
    );
    let bucket = create_bucket(&b, "on-b").await;
    create_collection(&b, "identity-on-b", &bucket, json!([{"name": "identity"}])).await;
    // A host started later installs what was published before.
    let c = peer();
    let (status, on_c) = c.get("/v1/extractors/identity").await;
    assert_eq!(status, StatusCode::OK, "{on_c}");

    // Deprecations and deletions reach the other hosts too.
    let path = format!(
        "/v1/extractors/identity/versions/{}",
        text(&published["version"])
    );
    let (status, _) = a.post(&format!("{path}/deprecate"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    poll_until(&b, "/v1/extractors/identity", |e| {
        e["versions"][0]["deprecated"] == true
    })
    .await;
    assert_eq!(a.delete(&path).await, StatusCode::NO_CONTENT);
    for host in [&b, &c] {
        until_listed(host, "identity", false).await;
    }
}

#[tokio::test]
async fn a_version_in_use_cannot_be_deleted() {
    let server = Server::start();
    let (status, published) = publish(&server, fixture("identity")).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    let version = text(&published["version"]).to_owned();
    let path = format!("/v1/extractors/identity/versions/{version}");
    let (status, detail) = server.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["content_hash"], published["content_hash"]);
    assert_eq!(detail["size_bytes"], published["size_bytes"]);
    assert_eq!(detail["used_by"], json!([]));

    let bucket = create_bucket(&server, "b").await;
    let pinned = create_collection(
        &server,
        "pinned",
        &bucket,
        json!([{"name": "identity", "version": version}]),
    )
    .await;
    create_collection(&server, "following", &bucket, json!([{"name": "identity"}])).await;
    let (_, detail) = server.get(&path).await;
    assert_eq!(
        detail["used_by"],
        json!(["pinned", "following"]),
        "{detail}"
    );
    let status = server.delete(&path).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, deprecated) = server.post(&format!("{path}/deprecate"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{deprecated}");
    assert!(deprecated["deprecated_at"].is_string(), "{deprecated}");

    let status = server
        .delete(&format!(
            "/v1/collections/{}",
            text(&pinned["collection_id"])
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.delete(&path).await, StatusCode::NO_CONTENT);
    let (status, _) = server.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/v1/extractors/identity").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "uninstalled here");
    // A deleted version is never given to any bytes again.
    let (status, problem) = publish(&server, fixture("identity")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(text(&problem["detail"]).contains("deleted"), "{problem}");
}

/// Rounds of busy work per object in `stamp`, so the first batch of the
/// hot-swap test is still running when v2 is published.
const SPIN: u64 = 300_000_000;

/// Waits for the batch at `path` to complete; returns the version of
/// `stamp` on each document it wrote in `collection`, as the document's
/// features and its internal metadata name it.
async fn stamped(server: &Server, path: &str, collection: &str) -> Vec<(String, Value)> {
    let done = poll_until(server, path, terminal).await;
    let batch = done.last().expect("a body");
    assert_eq!(batch["status"], "COMPLETED", "{batch}");
    all(server, &format!("/v1/collections/{collection}/documents"))
        .await
        .into_iter()
        .filter(|d| d["batch_id"] == batch["batch_id"])
        .map(|d| {
            (
                text(&d["features"]["stamp"]["version"]).to_owned(),
                d["internal_metadata"]["extractors"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_running_batch_keeps_its_version_and_rollback_pins_the_old_one() {
    let server = Server::start_with(Options {
        args: vec!["--chunk-objects".into(), "1".into()],
        ..Options::default()
    });
    let (status, v1) = publish(&server, fixture("stamp")).await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    let bucket = create_bucket(&server, "b").await;
    let ids: Vec<String> = (0..16).map(|i| format!("obj_{i:02}")).collect();
    for id in &ids {
        upload(&server, &bucket, id, id).await;
    }
    let following = json!([{ "name": "stamp", "params": { "spin": SPIN } }]);
    let collection = create_collection(&server, "stamped", &bucket, following.clone()).await;
    assert_eq!(collection["tiers"], json!([["stamp@1.0.0"]]));
    let id = text(&collection["collection_id"]).to_owned();
    let path = format!("/v1/collections/{id}");

    // v2 is published while the first batch runs on v1.
    let (first, _) = submit(&server, &bucket, &ids).await;
    let (status, v2) = publish(&server, fixture("stamp-v2")).await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    let (_, running) = server.get(&first).await;
    assert!(
        !terminal(&running),
        "the first batch ended before v2 was published (raise SPIN): {running}"
    );
    let v1_docs = stamped(&server, &first, &id).await;
    assert_eq!(v1_docs.len(), ids.len());
    for (version, extractors) in &v1_docs {
        assert_eq!(version, "1.0.0");
        assert_eq!(extractors, &json!(["stamp@1.0.0"]));
    }
    let (_, after_v1) = server.get(&path).await;

    // The next batch follows v2, and the collection's signature changes.
    let some = &ids[..3];
    let (second, _) = submit(&server, &bucket, some).await;
    let v2_docs = stamped(&server, &second, &id).await;
    assert_eq!(v2_docs.len(), some.len());
    for (version, extractors) in &v2_docs {
        assert_eq!(version, "2.0.0");
        assert_eq!(extractors, &json!(["stamp@2.0.0"]));
    }
    let (_, after_v2) = server.get(&path).await;
    assert_ne!(after_v2["index_signature"], after_v1["index_signature"]);
    assert_eq!(after_v2["tiers"], json!([["stamp@2.0.0"]]));

    // Rollback: pin v1; the planner re-validates, the signature is v1's.
    let (status, rolled_back) =
        send(server.request(Method::PATCH, &path).json(
            &json!({ "extractors": [{ "name": "stamp@1.0.0", "params": { "spin": SPIN } }] }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{rolled_back}");
    assert_eq!(rolled_back["index_signature"], after_v1["index_signature"]);
    assert_eq!(rolled_back["tiers"], json!([["stamp@1.0.0"]]));
    assert_eq!(
        rolled_back["extractors"],
        json!([{ "name": "stamp", "version": "1.0.0", "params": { "spin": SPIN } }])
    );
    let (third, _) = submit(&server, &bucket, some).await;
    for (version, _) in stamped(&server, &third, &id).await {
        assert_eq!(version, "1.0.0");
    }

    // A deprecated version is no longer followed.
    let v2_path = "/v1/extractors/stamp/versions/2.0.0";
    let (status, _) = server
        .post(&format!("{v2_path}/deprecate"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, back) = send(
        server
            .request(Method::PATCH, &path)
            .json(&json!({ "extractors": following, "description": "follows stamp" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(back["tiers"], json!([["stamp@1.0.0"]]));
    assert_eq!(back["description"], "follows stamp");
    let (_, listed) = server.get("/v1/extractors/stamp").await;
    assert_eq!(listed["latest_version"], "1.0.0", "{listed}");
    assert_eq!(listed["versions"][1]["deprecated"], true, "{listed}");

    // A bad pipeline is refused naming the field, and changes nothing.
    for (body, field) in [
        (
            json!({ "extractors": [{ "name": "stamp", "version": "9.9.9" }] }),
            "extractors[0].version",
        ),
        (
            json!({ "extractors": [{ "name": "stamp", "params": { "spin": -1 } }] }),
            "extractors[0].params.spin",
        ),
        (json!({ "extractors": [] }), "extractors"),
        (json!({}), "body"),
        (json!({ "collection_name": "x" }), "collection_name"),
    ] {
        let (status, problem) = send(server.request(Method::PATCH, &path).json(&body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} {problem}");
        assert!(problem.to_string().contains(field), "{body} {problem}");
    }
    let (_, unchanged) = server.get(&path).await;
    assert_eq!(unchanged["index_signature"], back["index_signature"]);
    let (status, _) = send(
        server
            .request(Method::PATCH, "/v1/collections/nope")
            .json(&json!({ "description": "x" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn strata_extractor_push_publishes_a_file() {
    let server = Server::start();
    let push = |file: &str, key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["extractor", "push"])
            .arg(support::repo().join(format!("tests/fixtures/dist/{file}.wasm")))
            .args(["--url", &server.url, "--key", key])
            .output()
            .expect("strata extractor push")
    };
    // A key made for publishing, beside the running server.
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["keys", "create", "--publish", "--name", "ci", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .expect("strata keys create");
    assert!(created.status.success(), "{created:?}");
    let publisher = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let out = push("identity", &publisher);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.starts_with("identity@1.0.0 published: sha256 "),
        "{stdout}"
    );
    let out = push("identity", support::ADMIN_KEY);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already published"),
        "{out:?}"
    );
    let out = push("not-extractor", support::ADMIN_KEY);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("422") && stderr.contains("not-extractor"),
        "{stderr}"
    );
    let out = push("identity", "sk_wrong");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("401"), "{stderr}");
}

#[tokio::test]
async fn watched_plugins_are_published_when_they_change() {
    let watched = tempfile::tempdir().expect("temp dir");
    let log = watched.path().join("server.log");
    let dir = watched.path().join("plugins");
    std::fs::create_dir(&dir).expect("plugins dir");
    let file = dir.join("stamp.wasm");
    std::fs::write(&file, fixture("stamp")).expect("write v1");
    let server = Server::start_with(Options {
        args: vec![
            "--watch-plugins".into(),
            dir.to_str().expect("utf-8").into(),
        ],
        log_file: Some(log.clone()),
        ..Options::default()
    });
    let logged = |needle: &'static str| {
        let log = log.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                    return line.to_owned();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no `{needle}` in the log: {text}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    // Published at start.
    until_listed(&server, "stamp", true).await;
    // A new manifest version is published as that version.
    std::fs::write(&file, fixture("stamp-v2")).expect("write v2");
    poll_until(&server, "/v1/extractors/stamp", |e| {
        e["latest_version"] == "2.0.0"
    })
    .await;
    let (status, v2) = server.get("/v1/extractors/stamp/versions/2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    // Other bytes under the same version are refused, saying why.
    std::fs::write(&file, rebuilt(fixture("stamp-v2"))).expect("write rebuilt");
    let line = logged("watched component not published").await;
    assert!(
        line.contains("stamp@2.0.0") && line.contains("immutable"),
        "{line}"
    );
    // A broken file is refused, and the watch goes on.
    std::fs::write(dir.join("broken.wasm"), b"not a component").expect("write broken");
    let line = logged("watched component refused").await;
    assert!(line.contains("broken.wasm"), "{line}");
    let (_, still) = server.get("/v1/extractors/stamp/versions/2.0.0").await;
    assert_eq!(still["content_hash"], v2["content_hash"]);
}

/// Waits until `server` lists the extractor `name`, or no longer does.
async fn until_listed(server: &Server, name: &str, listed: bool) {
    poll_until(server, "/v1/extractors", |list| {
        list["results"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["name"] == name) == listed)
    })
    .await;
}

/// The `strata_extractors_loaded` gauge of `server`.
async fn loaded_gauge(server: &Server) -> f64 {
    let metrics = server.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("strata_extractors_loaded "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gauge in {metrics}"))
}

/// Whether `stamp`'s first version is loaded on `server`.
async fn loaded(server: &Server) -> bool {
    let (status, e) = server.get("/v1/extractors/stamp").await;
    assert_eq!(status, StatusCode::OK, "{e}");
    e["versions"][0]["loaded"].as_bool().expect("loaded")
}

#[tokio::test]
async fn published_versions_load_on_first_use_and_unload_when_idle() {
    let options = Options {
        args: vec!["--poll-interval".into(), "0.3".into()],
        ..Options::default()
    };
    let a = Server::start_with(options.clone());
    let mut idle = options.clone();
    idle.args.extend(["--unload-idle".into(), "3".into()]);
    let b = Server::start_in(&a.data_dir, &idle);
    let (status, published) = publish(&a, fixture("stamp")).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    assert!(loaded(&a).await, "loaded where it was published");
    // Known on the other host within a poll interval, not loaded yet.
    until_listed(&b, "stamp", true).await;
    assert!(!loaded(&b).await, "not loaded before its first use");
    let before = loaded_gauge(&b).await;
    // The first use loads it.
    let bucket = create_bucket(&b, "lazy").await;
    let ids = vec!["obj_0".to_owned(), "obj_1".to_owned()];
    for id in &ids {
        upload(&b, &bucket, id, id).await;
    }
    let collection = create_collection(&b, "lazy", &bucket, json!([{ "name": "stamp" }])).await;
    assert_eq!(collection["tiers"], json!([["stamp@1.0.0"]]));
    assert!(loaded(&b).await, "loaded by its first use");
    assert_eq!(loaded_gauge(&b).await, before + 1.0, "the gauge counts it");
    // Idle, it is unloaded; the next use loads it again.
    poll_until(&b, "/v1/extractors/stamp", |e| {
        e["versions"][0]["loaded"] == false
    })
    .await;
    let (path, _) = submit(&b, &bucket, &ids).await;
    let done = poll_until(&b, &path, terminal).await;
    let batch = done.last().expect("a body");
    assert_eq!(batch["status"], "COMPLETED", "{batch}");
}

#[tokio::test]
async fn a_component_that_takes_too_long_to_compile_is_refused_with_the_reason() {
    // Compilation runs in a child process with a deadline; one of a
    // millisecond is missed by any component. An empty plugins directory:
    // nothing else compiles.
    let plugins = tempfile::tempdir().expect("plugins dir");
    let server = Server::start_with(Options {
        args: vec![
            "--plugins".into(),
            plugins.path().display().to_string(),
            "--compile-timeout".into(),
            "0.001".into(),
        ],
        ..Options::default()
    });
    // Bytes no cache has seen: they must compile.
    let unique = strata_host::store::new_id("build");
    let (status, problem) =
        publish(&server, rebuilt_as(fixture("identity"), unique.as_bytes())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        text(&problem["detail"])
            .contains("compiling took longer than 1ms, the limit (--compile-timeout)"),
        "{problem}"
    );
    let (_, listed) = server.get("/v1/extractors").await;
    assert_eq!(listed["results"], json!([]), "nothing was published");

    // With time to compile, the same bytes compile in the child and run.
    let patient = Server::start_with(Options {
        args: vec!["--plugins".into(), plugins.path().display().to_string()],
        ..Options::default()
    });
    let (status, published) =
        publish(&patient, rebuilt_as(fixture("identity"), unique.as_bytes())).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    let bucket = create_bucket(&patient, "b").await;
    create_collection(&patient, "same", &bucket, json!([{"name": "identity"}])).await;
}
