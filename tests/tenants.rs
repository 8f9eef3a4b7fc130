//! Tenants of one service against a real `strata serve`: extractor names
//! with owners, keys listed and revoked, and the limits that keep one
//! namespace from slowing or failing another's work.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::flow::*;
use support::tenants::*;
use support::{Server, send};

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

/// A server with tight per-namespace limits and no pollers (batches stay
/// queued).
fn limited(extra: &[&str]) -> Server {
    let mut args: Vec<String> = ["--max-shards", "0"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Server::start_with(support::Options {
        args,
        ..support::Options::default()
    })
}

#[tokio::test]
async fn a_namespace_over_its_batch_limits_is_refused_and_others_are_not() {
    let server = limited(&[
        "--max-batches-in-flight",
        "2",
        "--max-objects-per-batch",
        "2",
    ]);
    let busy = bucket_in(&server, "busy", 3).await;
    let calm = bucket_in(&server, "calm", 1).await;
    for _ in 0..2 {
        let (status, body) = submit_in(&server, "busy", &busy, &["o0"]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The third is refused with when to try again; another namespace is not.
    let response = server
        .request_as(
            support::ADMIN_KEY,
            "busy",
            Method::POST,
            &format!("/v1/buckets/{busy}/batches"),
        )
        .json(&json!({"object_ids": ["o1"]}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED);
    let batch: serde_json::Value = response.json().await.expect("JSON");
    let refused = server
        .request_as(
            support::ADMIN_KEY,
            "busy",
            Method::POST,
            &format!(
                "/v1/buckets/{busy}/batches/{}/submit",
                text(&batch["batch_id"])
            ),
        )
        .json(&json!({}))
        .send()
        .await
        .expect("submit");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "5");
    let (_, problem) = support::json(refused).await;
    assert!(
        text(&problem["detail"]).contains("at most 2 may be"),
        "{problem}"
    );
    let (status, body) = submit_in(&server, "calm", &calm, &["o0"]).await;
    assert_eq!(status, StatusCode::OK, "another namespace submits: {body}");

    // Objects per batch: refused naming the field, whether at creation or
    // when added.
    let (status, problem) = post_in(
        &server,
        "busy",
        &format!("/v1/buckets/{busy}/batches"),
        json!({"object_ids": ["o0", "o1", "o2"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["invalid_params"][0]["name"], "object_ids");
    let (_, draft) = post_in(
        &server,
        "busy",
        &format!("/v1/buckets/{busy}/batches"),
        json!({"object_ids": ["o0", "o1"]}),
    )
    .await;
    let (status, problem) = post_in(
        &server,
        "busy",
        &format!(
            "/v1/buckets/{busy}/batches/{}/objects",
            text(&draft["batch_id"])
        ),
        json!({"object_ids": ["o2"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        text(&problem["detail"]).contains("at most 2 objects"),
        "{problem}"
    );
}

#[tokio::test]
async fn uploads_in_flight_are_limited_per_namespace() {
    let server = limited(&["--max-upload-mb-in-flight", "1", "--max-object-mb", "1"]);
    let busy = bucket_in(&server, "busy", 0).await;
    let calm = bucket_in(&server, "calm", 0).await;
    // A slow upload of unknown length (chunked) holds the whole limit
    // while it runs.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = server.url.trim_start_matches("http://").to_owned();
    let part = b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.txt\"\r\n\r\nfirst";
    let head = format!(
        "POST /v1/buckets/{busy}/objects HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         X-Namespace: busy\r\nContent-Type: multipart/form-data; boundary=XX\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        support::ADMIN_KEY,
        part.len()
    );
    // Another upload of the namespace is refused while the slow one is
    // held. A probe that reaches the server first holds it instead and the
    // slow one is refused: then both start again.
    let (mut slow, refused) = 'attempt: loop {
        let mut slow = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        slow.write_all(head.as_bytes()).await.expect("head");
        slow.write_all(part).await.expect("part");
        slow.write_all(b"\r\n").await.expect("chunk end");
        for _ in 0..100 {
            let (status, body) = post_in(
                &server,
                "busy",
                &format!("/v1/buckets/{busy}/objects"),
                json!({"text": "x"}),
            )
            .await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                break 'attempt (slow, body);
            }
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let mut answer = [0u8; 64];
            let answered =
                tokio::time::timeout(Duration::from_millis(50), slow.read(&mut answer)).await;
            if let Ok(read) = answered {
                let answer = String::from_utf8_lossy(&answer[..read.unwrap_or(0)]).into_owned();
                assert!(answer.contains(" 429 "), "{answer}");
                continue 'attempt;
            }
        }
        panic!("the slow upload was never held");
    };
    assert!(
        text(&refused["detail"]).contains("uploads in flight"),
        "{refused}"
    );
    let (status, body) = post_in(
        &server,
        "calm",
        &format!("/v1/buckets/{calm}/objects"),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "another namespace uploads: {body}"
    );
    let end = b" half\r\n--XX--\r\n";
    slow.write_all(format!("{:x}\r\n", end.len()).as_bytes())
        .await
        .expect("size");
    slow.write_all(end).await.expect("end");
    slow.write_all(b"\r\n0\r\n\r\n").await.expect("last chunk");
    let mut response = String::new();
    slow.read_to_string(&mut response).await.expect("response");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let (status, body) = post_in(
        &server,
        "busy",
        &format!("/v1/buckets/{busy}/objects"),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "given back: {body}");
}

#[tokio::test]
async fn plans_and_publications_are_limited() {
    let plugins = plugins_with_hostile();
    let server = Server::start_with(slow_options(
        plugins.path(),
        "2",
        &[
            "--max-plans-per-namespace",
            "1",
            "--publishes-per-minute",
            "1",
        ],
    ));
    let busy = bucket_in(&server, "busy", 0).await;
    // A plan that sleeps in its plugin holds the namespace's one plan.
    let sleeping = json!({"collection_name": "sleepy", "source": {"bucket_id": busy},
                          "extractors": [{"name": "hostile", "params": {"mode": "sleep-open"}}]});
    // Another plan of the namespace is refused meanwhile. A probe that
    // starts first holds the plan instead and the sleeping one is
    // refused: then both start again.
    let quick = json!({"collection_name": "quick", "source": {"bucket_id": busy},
                       "extractors": [{"name": "content-hash"}]});
    let first = 'attempt: loop {
        let first = tokio::spawn(
            server
                .request_as(support::ADMIN_KEY, "busy", Method::POST, "/v1/collections")
                .json(&sleeping)
                .send(),
        );
        for _ in 0..100 {
            let (status, body) = post_in(&server, "busy", "/v1/collections", quick.clone()).await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert!(
                    text(&body["detail"]).contains("planning 1 pipelines already"),
                    "{body}"
                );
                break 'attempt first;
            }
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let (status, _) = send(server.request_as(
                support::ADMIN_KEY,
                "busy",
                Method::DELETE,
                "/v1/collections/quick",
            ))
            .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            if first.is_finished() {
                let refused = first.await.expect("join").expect("response");
                assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
                continue 'attempt;
            }
        }
        panic!("the sleeping plan was never held");
    };
    let other = bucket_in(&server, "other", 0).await;
    assert!(!other.is_empty(), "another namespace plans meanwhile");
    let first = first.await.expect("join").expect("response");
    assert_eq!(
        first.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "the sleep timed out"
    );

    // A publish key publishes once a minute here.
    let key = publish_key(&server, "publisher").await;
    let (status, body) = publish_as(
        &server,
        (&key, "publisher"),
        component("tests/fixtures/dist/identity.wasm"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let refused = server
        .request_as(&key, "publisher", Method::POST, "/v1/extractors")
        .header("content-type", "application/wasm")
        .body(component("tests/fixtures/dist/identity.wasm"))
        .send()
        .await
        .expect("publish");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
}
