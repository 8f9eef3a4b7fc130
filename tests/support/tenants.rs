//! Steps of the multi-tenant suites: namespaces with keys of their own,
//! requests as one of them, calm batches in a namespace.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::flow::{terminal, text};
use super::{ADMIN_KEY, Server, send};

/// POSTs `body` to `path` in `namespace` with the admin key.
pub async fn post_in(
    server: &Server,
    namespace: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    as_key(
        server,
        (ADMIN_KEY, namespace),
        Method::POST,
        path,
        Some(body),
    )
    .await
}

/// GETs `path` in `namespace` with the admin key.
pub async fn get_in(server: &Server, namespace: &str, path: &str) -> (StatusCode, Value) {
    as_key(server, (ADMIN_KEY, namespace), Method::GET, path, None).await
}

/// A bucket with `n` objects and a `content-hash` collection in
/// `namespace` (created); returns the bucket's id.
pub async fn bucket_in(server: &Server, namespace: &str, n: usize) -> String {
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
    for i in 0..n {
        let (status, body) = post_in(
            server,
            namespace,
            &format!("/v1/buckets/{bucket}/objects"),
            json!({"object_id": format!("o{i}"), "text": "calm"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = post_in(
        server,
        namespace,
        "/v1/collections",
        json!({"collection_name": "c", "source": {"bucket_id": bucket}, "extractors": [{"name": "content-hash"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    bucket
}

/// Creates and submits a batch of `ids` in `namespace`.
pub async fn submit_in(
    server: &Server,
    namespace: &str,
    bucket: &str,
    ids: &[&str],
) -> (StatusCode, Value) {
    let (status, batch) = post_in(
        server,
        namespace,
        &format!("/v1/buckets/{bucket}/batches"),
        json!({"object_ids": ids}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let path = format!(
        "/v1/buckets/{bucket}/batches/{}/submit",
        text(&batch["batch_id"])
    );
    post_in(server, namespace, &path, json!({})).await
}

/// Creates namespace `namespace` and submits, there, a batch of three calm
/// objects through `content-hash`; returns the batch's path.
pub async fn calm_batch_in(server: &Server, namespace: &str) -> String {
    let bucket = bucket_in(server, namespace, 3).await;
    let (status, batch) = post_in(
        server,
        namespace,
        &format!("/v1/buckets/{bucket}/batches"),
        json!({"object_ids": ["o0", "o1", "o2"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let path = format!("/v1/buckets/{bucket}/batches/{}", text(&batch["batch_id"]));
    let (status, body) = post_in(server, namespace, &format!("{path}/submit"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    path
}

/// Polls `path` in `namespace` until the batch is terminal.
pub async fn finished_in(server: &Server, namespace: &str, path: &str) -> Value {
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

/// Creates namespace `namespace` and a key there with the publish right.
pub async fn publish_key(server: &Server, namespace: &str) -> String {
    namespace_key(server, namespace, true).await
}

/// Creates namespace `namespace` and a key there (without the publish
/// right); returns the key's secret.
pub async fn key_in(server: &Server, namespace: &str) -> String {
    namespace_key(server, namespace, false).await
}

async fn namespace_key(server: &Server, namespace: &str, publish: bool) -> String {
    let (status, body) = server
        .post("/v1/namespaces", json!({ "name": namespace }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, key) = server
        .post(
            "/v1/api-keys",
            json!({ "namespace": namespace, "publish": publish }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    text(&key["secret"]).to_owned()
}

/// A component built by `make plugins`.
pub fn component(path: &str) -> Vec<u8> {
    std::fs::read(super::repo().join(path)).expect("components (make plugins)")
}

/// Sends `method path` with `key` in `namespace`, with a JSON body or a
/// component.
pub async fn as_key(
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

pub async fn publish_as(
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
