//! The extractor registry against a real `strata serve` process and real
//! components: publication, validation, immutability, idempotence.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::flow::*;
use support::{Options, Server, send};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(support::repo().join(format!("tests/fixtures/dist/{name}.wasm")))
        .expect("tests/fixtures/dist (run `make plugins`)")
}

/// `bytes` with a custom section appended: another component, same manifest.
fn rebuilt(mut bytes: Vec<u8>) -> Vec<u8> {
    let name = b"strata-test";
    let payload = b"another build";
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
async fn a_version_published_on_one_host_runs_on_another_without_restart() {
    let options = Options {
        args: vec!["--poll-interval".into(), "0.3".into()],
        ..Options::default()
    };
    let a = Server::start_with(options.clone());
    let b = Server::start_in(&a.data_dir, &options);
    let (status, _) = b.get("/v1/extractors/identity").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, published) = publish(&a, fixture("identity")).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    poll_until(&b, "/v1/extractors", |list| {
        list["results"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["name"] == "identity"))
    })
    .await;
    let (_, on_b) = b.get("/v1/extractors/identity").await;
    assert_eq!(
        on_b["versions"][0]["content_hash"],
        published["content_hash"]
    );
    let bucket = create_bucket(&b, "on-b").await;
    create_collection(&b, "identity-on-b", &bucket, json!([{"name": "identity"}])).await;
    // A host started later installs what was published before.
    let c = Server::start_in(&a.data_dir, &options);
    let (status, on_c) = c.get("/v1/extractors/identity").await;
    assert_eq!(status, StatusCode::OK, "{on_c}");
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
    // Published again, it is new again.
    let (status, _) = publish(&server, fixture("identity")).await;
    assert_eq!(status, StatusCode::CREATED);
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
    let out = push("identity", support::ADMIN_KEY);
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
