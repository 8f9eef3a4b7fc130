//! Webhooks against a real `strata serve` process and real receivers on
//! loopback: every event type, signatures, retries, 410, redirects, slow
//! endpoints, secret rotation, a kill with undelivered events, and the
//! address guard.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::flow::*;
use support::receiver::{Receiver, Reply};
use support::servers::Production;
use support::{Options, Server, send};

/// Server options for webhook tests: loopback receivers allowed, a short
/// retry schedule (unless `extra` names one).
fn options(extra: &[&str]) -> Options {
    let mut args: Vec<String> = vec!["--allow-private-webhooks".into()];
    if !extra.contains(&"--webhook-retry-schedule") {
        args.extend(["--webhook-retry-schedule".into(), "0,1s,1s".into()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Options {
        args,
        ..Options::default()
    }
}

/// Creates a webhook; returns it (with its secret).
async fn create_webhook(server: &Server, url: &str, types: &[&str]) -> Value {
    let (status, body) = server
        .post("/v1/webhooks", json!({ "url": url, "event_types": types }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(text(&body["secret"]).starts_with("whsec_"), "{body}");
    body
}

const ALL_TYPES: [&str; 6] = [
    "batch.queued",
    "batch.processing",
    "batch.completed",
    "batch.failed",
    "batch.canceled",
    "collection.documents.written",
];

/// Sends a test event to `webhook`; returns the delivery.
async fn test_event(server: &Server, webhook: &Value) -> Value {
    let id = text(&webhook["webhook_id"]);
    let (status, delivery) = server
        .post(&format!("/v1/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{delivery}");
    delivery
}

/// Polls a delivery until `done` holds.
async fn delivery_until(
    server: &Server,
    webhook: &Value,
    delivery: &Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!(
        "/v1/webhooks/{}/deliveries/{}",
        text(&webhook["webhook_id"]),
        text(&delivery["delivery_id"])
    );
    poll_until(server, &path, done)
        .await
        .pop()
        .expect("a delivery")
}

fn settled(d: &Value) -> bool {
    d["state"] != "pending"
}

/// Seconds between two RFC 3339 times.
fn seconds_between(from: &Value, to: &Value) -> f64 {
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(text(v)).expect("RFC 3339");
    (at(to) - at(from)).as_seconds_f64()
}

#[tokio::test]
async fn every_event_arrives_signed_when_it_happens() {
    every_event(Options::default()).await;
}

#[tokio::test]
async fn every_event_arrives_on_mongodb_and_s3() {
    let production = Production::start().await;
    every_event(production.options()).await;
}

/// Batches that complete, fail and are canceled, on the backends
/// `backends` names; every event checked.
async fn every_event(backends: Options) {
    let receiver = Receiver::start().await;
    let plugins = plugins_with_hostile();
    let mut server_options = slow_options(plugins.path(), "0.3", &["--error-budget", "0"]);
    server_options.args.extend(options(&[]).args);
    server_options.args.extend(backends.args);
    server_options.env.extend(backends.env);
    let server = Server::start_with(server_options);
    let webhook = create_webhook(&server, &format!("{}/events", receiver.url), &ALL_TYPES).await;
    let secret = text(&webhook["secret"]).to_owned();

    // A batch that completes.
    let bucket = create_bucket(&server, "texts").await;
    upload(&server, &bucket, "obj_1", "The quick brown fox.").await;
    upload(&server, &bucket, "obj_2", "Le renard brun rapide.").await;
    let collection = create_collection(
        &server,
        "texts",
        &bucket,
        json!([{"name": "text-extract"}, {"name": "lang-detect"}]),
    )
    .await;
    let (_, created) = server
        .post(
            &format!("/v1/buckets/{bucket}/batches"),
            json!({ "object_ids": ["obj_1", "obj_2"] }),
        )
        .await;
    let path = format!(
        "/v1/buckets/{bucket}/batches/{}",
        text(&created["batch_id"])
    );
    server.post(&format!("{path}/submit"), json!({})).await;
    let completed = poll_until(&server, &path, terminal)
        .await
        .pop()
        .expect("batch");
    assert_eq!(completed["status"], "COMPLETED", "{completed}");
    // One that fails (the error budget is 0), one that is canceled.
    let failing = hostile_batch_named(&server, "failing", 2, |_| true).await;
    let failed = poll_until(&server, &failing.path, terminal)
        .await
        .pop()
        .expect("batch");
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let slow = hostile_batch_named(&server, "slow", 20, |_| true).await;
    poll_until(&server, &slow.path, |b| b["status"] == "PROCESSING").await;
    let (status, canceled) = server
        .post(&format!("{}/cancel", slow.path), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");

    let received = receiver
        .wait_for("/events", |r| {
            r.iter().any(|r| r.json()["event_type"] == "batch.canceled")
        })
        .await;
    let events: Vec<Value> = received.iter().map(|r| r.json()).collect();
    for (request, event) in received.iter().zip(&events) {
        assert_eq!(request.valid_signatures(&secret), 1, "{event}");
        assert_eq!(request.header("webhook-id"), text(&event["event_id"]));
        assert!(text(&event["event_id"]).starts_with("evt_"));
        let timestamp: i64 = request
            .header("webhook-timestamp")
            .parse()
            .expect("seconds");
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 300);
        assert_eq!(request.header("content-type"), "application/json");
        assert!(request.header("user-agent").starts_with("Strata-Webhooks/"));
        assert!(request.body.len() < 20_000);
        assert_eq!(event["namespace_id"], events[0]["namespace_id"]);
        assert!(text(&event["namespace_id"]).starts_with("ns_"));
        assert!(event["occurred_at"].is_string() && event["data"].is_object());
    }
    let of = |batch: &Value, event_type: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["event_type"] == event_type && e["data"]["batch_id"] == batch["batch_id"])
            .cloned()
            .collect()
    };
    for (event_type, at) in [
        ("batch.queued", "submitted_at"),
        ("batch.processing", "started_at"),
        ("batch.completed", "completed_at"),
    ] {
        let found = of(&completed, event_type);
        assert_eq!(found.len(), 1, "{event_type}: {events:?}");
        let event = &found[0];
        assert_eq!(
            event["subject"],
            json!({"type": "batch", "id": completed["batch_id"]})
        );
        assert!(
            seconds_between(&completed[at], &event["occurred_at"]).abs() < 2.0,
            "{event_type} at {} vs {at} {}",
            event["occurred_at"],
            completed[at]
        );
    }
    assert_eq!(of(&completed, "batch.completed")[0]["data"]["processed"], 2);
    let written: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["event_type"] == "collection.documents.written"
                && e["data"]["batch_id"] == completed["batch_id"]
        })
        .collect();
    assert!(!written.is_empty(), "{events:?}");
    let (_, col) = server
        .get(&format!(
            "/v1/collections/{}",
            text(&collection["collection_id"])
        ))
        .await;
    let mut document_ids = Vec::new();
    for event in &written {
        let data = &event["data"];
        assert_eq!(event["subject"]["id"], collection["collection_id"]);
        assert_eq!(data["collection_id"], collection["collection_id"]);
        assert_eq!(data["index_signature"], col["index_signature"]);
        let ids = data["document_ids"].as_array().expect("ids");
        assert_eq!(data["document_count"], ids.len());
        document_ids.extend(ids.iter().map(|i| text(i).to_owned()));
        assert!(seconds_between(&completed["started_at"], &event["occurred_at"]) >= -1.0);
        assert!(seconds_between(&event["occurred_at"], &completed["completed_at"]) >= -1.0);
    }
    document_ids.sort();
    let docs = all(
        &server,
        &format!(
            "/v1/collections/{}/documents",
            text(&collection["collection_id"])
        ),
    )
    .await;
    let mut expected: Vec<String> = docs
        .iter()
        .map(|d| text(&d["document_id"]).to_owned())
        .collect();
    expected.sort();
    assert_eq!(document_ids, expected);
    let failed_event = of(&failed, "batch.failed");
    assert_eq!(failed_event.len(), 1, "{events:?}");
    assert_eq!(
        failed_event[0]["data"]["error_message"],
        failed["error_message"]
    );
    assert_eq!(of(&canceled, "batch.canceled").len(), 1, "{events:?}");
    assert!(of(&canceled, "batch.completed").is_empty());
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_with_the_same_event_id() {
    let receiver = Receiver::start().await;
    receiver.script(
        "/flaky",
        vec![
            Reply::Status(503),
            Reply::RetryAfter(429, 1),
            Reply::Status(204),
        ],
    );
    let server = Server::start_with(options(&[]));
    let webhook = create_webhook(
        &server,
        &format!("{}/flaky", receiver.url),
        &["batch.queued"],
    )
    .await;
    let delivery = test_event(&server, &webhook).await;
    let done = delivery_until(&server, &webhook, &delivery, settled).await;
    assert_eq!(done["state"], "delivered", "{done}");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["last_status_code"], 204);
    let requests = receiver.received("/flaky");
    assert_eq!(requests.len(), 3);
    let ids: Vec<&str> = requests.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(ids[0], text(&done["event_id"]));
    assert_eq!(requests[0].json()["event_type"], "webhook.test");
    // Retry-After: 1 was honoured (the schedule alone allows 0.9 s).
    assert!(requests[2].at - requests[1].at >= Duration::from_millis(990));

    // A failure past the schedule is visible, and can be sent again.
    receiver.script("/down", vec![Reply::Status(500)]);
    let (status, patched) = send(
        server
            .request(
                Method::PATCH,
                &format!("/v1/webhooks/{}", text(&webhook["webhook_id"])),
            )
            .json(&json!({ "url": format!("{}/down", receiver.url) })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(text(&patched["url"]).ends_with("/down"), "{patched}");
    let delivery = test_event(&server, &webhook).await;
    let failed = delivery_until(&server, &webhook, &delivery, settled).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["attempts"], 3);
    assert_eq!(failed["last_status_code"], 500);
    assert!(
        text(&failed["last_error"]).contains("after 3 attempts"),
        "{failed}"
    );
    receiver.script("/down", vec![Reply::Status(200)]);
    let (status, again) = server
        .post(
            &format!(
                "/v1/webhooks/{}/deliveries/{}/redeliver",
                text(&webhook["webhook_id"]),
                text(&failed["delivery_id"])
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let redelivered = delivery_until(&server, &webhook, &failed, settled).await;
    assert_eq!(redelivered["state"], "delivered", "{redelivered}");
    let down = receiver.received("/down");
    assert_eq!(down.len(), 4);
    assert!(
        down.iter()
            .all(|r| r.header("webhook-id") == text(&failed["event_id"]))
    );
    let metrics = server.metrics().await;
    for line in [
        "strata_webhook_attempts_total{outcome=\"delivered\"} 2",
        "strata_webhook_attempts_total{outcome=\"retry\"} 4",
        "strata_webhook_attempts_total{outcome=\"failed\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn gone_turns_the_webhook_off_and_a_redirect_is_a_failure() {
    let receiver = Receiver::start().await;
    receiver.script("/gone", vec![Reply::Status(410)]);
    receiver.script("/moved", vec![Reply::Redirect("/elsewhere".into())]);
    let server = Server::start_with(options(&[]));
    let gone = create_webhook(
        &server,
        &format!("{}/gone", receiver.url),
        &["batch.queued"],
    )
    .await;
    let delivery = test_event(&server, &gone).await;
    let failed = delivery_until(&server, &gone, &delivery, settled).await;
    assert_eq!(
        (
            &failed["state"],
            &failed["attempts"],
            &failed["last_status_code"]
        ),
        (&json!("failed"), &json!(1), &json!(410)),
        "{failed}"
    );
    let (_, webhook) = server
        .get(&format!("/v1/webhooks/{}", text(&gone["webhook_id"])))
        .await;
    assert_eq!(webhook["active"], false, "{webhook}");
    assert!(
        text(&webhook["disabled_reason"]).contains("410"),
        "{webhook}"
    );
    assert!(webhook.get("secret").is_none(), "the secret is shown once");

    let moved = create_webhook(
        &server,
        &format!("{}/moved", receiver.url),
        &["batch.queued"],
    )
    .await;
    let delivery = test_event(&server, &moved).await;
    let failed = delivery_until(&server, &moved, &delivery, settled).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["last_status_code"], 302);
    assert!(text(&failed["last_error"]).contains("redirects are not followed"));
    assert!(receiver.received("/elsewhere").is_empty());
    assert_eq!(receiver.received("/moved").len(), 1, "not retried");
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_another() {
    let receiver = Receiver::start().await;
    receiver.script("/slow", vec![Reply::Slow(Duration::from_secs(4))]);
    let server = Server::start_with(options(&[
        "--webhook-concurrency",
        "2",
        "--webhook-timeout",
        "10",
    ]));
    let slow = create_webhook(
        &server,
        &format!("{}/slow", receiver.url),
        &["batch.queued"],
    )
    .await;
    let fast = create_webhook(
        &server,
        &format!("{}/fast", receiver.url),
        &["batch.queued"],
    )
    .await;
    for _ in 0..5 {
        test_event(&server, &slow).await;
    }
    receiver.wait_for("/slow", |r| r.len() == 2).await;
    test_event(&server, &fast).await;
    let fast_requests = receiver.wait_for("/fast", |r| r.len() == 1).await;
    let slow_requests = receiver.received("/slow");
    assert_eq!(slow_requests.len(), 2, "two at once to the slow endpoint");
    // The fast endpoint got its event while the slow one still held both
    // of its slots (each request there takes 4 s).
    assert!(fast_requests[0].at < slow_requests[0].at + Duration::from_secs(4));
}

#[tokio::test]
async fn a_rotated_secret_signs_alongside_the_new_one() {
    let receiver = Receiver::start().await;
    let server = Server::start_with(options(&[]));
    let webhook = create_webhook(
        &server,
        &format!("{}/hook", receiver.url),
        &["batch.queued"],
    )
    .await;
    let old = text(&webhook["secret"]).to_owned();
    let id = text(&webhook["webhook_id"]);
    let (status, rotated) = server
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = text(&rotated["secret"]).to_owned();
    assert_ne!(old, new);
    let overlap = seconds_between(
        &rotated["updated_at"],
        &rotated["previous_secret_expires_at"],
    );
    assert!((overlap - 86_400.0).abs() < 5.0, "{rotated}");
    test_event(&server, &webhook).await;
    let requests = receiver.wait_for("/hook", |r| r.len() == 1).await;
    let request = &requests[0];
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    assert_eq!(request.valid_signatures(&new), 1);
    assert_eq!(request.valid_signatures(&old), 1);
    let (_, listed) = server.get("/v1/webhooks").await;
    assert!(listed["results"][0].get("secret").is_none(), "{listed}");

    // The README's Python receiver accepts the request with either secret,
    // and refuses it with another secret or a changed body.
    let verify = |secret: &str, body: &[u8]| {
        let mut child = std::process::Command::new("python3")
            .arg(support::repo().join("examples/verify_webhook.py"))
            .args([
                request.header("webhook-id"),
                request.header("webhook-timestamp"),
                request.header("webhook-signature"),
            ])
            .env("WEBHOOK_SECRET", secret)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), body).expect("body");
        child.wait_with_output().expect("verify_webhook.py")
    };
    for secret in [&old, &new] {
        let out = verify(secret, &request.body);
        assert!(out.status.success(), "{out:?}");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            printed.trim(),
            format!("{} webhook.test", request.header("webhook-id"))
        );
    }
    let other =
        text(&create_webhook(&server, "https://example.com/x", &["batch.queued"]).await["secret"])
            .to_owned();
    assert!(!verify(&other, &request.body).status.success());
    let mut tampered = request.body.to_vec();
    tampered.push(b' ');
    assert!(!verify(&new, &tampered).status.success());

    // So does the README's Rust receiver.
    let rust = |secret: &str, body: &[u8]| {
        support::readme_verify::verify(
            secret,
            request.header("webhook-id"),
            request.header("webhook-timestamp"),
            request.header("webhook-signature"),
            body,
        )
    };
    assert!(rust(&old, &request.body) && rust(&new, &request.body));
    assert!(!rust(&other, &request.body) && !rust(&new, &tampered));
}

#[test]
fn the_readme_shows_the_tested_rust_receiver() {
    let readme = std::fs::read_to_string(support::repo().join("README.md")).expect("README.md");
    let start = readme.find("In Rust").expect("the Rust example");
    let block = &readme[start..];
    let code = &block[block.find("```rust\n").expect("a rust block") + 8..];
    let code = &code[..code.find("```").expect("the block's end")];
    let tested = include_str!("support/readme_verify.rs");
    assert!(
        tested.contains(code.trim()),
        "README's Rust example differs from tests/support/readme_verify.rs"
    );
}

#[tokio::test]
async fn undelivered_events_are_sent_after_a_kill_and_restart() {
    let receiver = Receiver::start().await;
    receiver.script("/later", vec![Reply::Status(503)]);
    let options = options(&["--webhook-retry-schedule", "0,2s,2s,2s"]);
    let mut server = Server::start_with(options.clone());
    let webhook = create_webhook(
        &server,
        &format!("{}/later", receiver.url),
        &["batch.queued"],
    )
    .await;
    let delivery = test_event(&server, &webhook).await;
    delivery_until(&server, &webhook, &delivery, |d| d["attempts"] == 1).await;
    server.kill();
    receiver.script("/later", vec![Reply::Status(200)]);
    let restarted = Server::start_in(&server.data_dir, &options);
    let done = delivery_until(&restarted, &webhook, &delivery, settled).await;
    assert_eq!(done["state"], "delivered", "{done}");
    let requests = receiver.received("/later");
    assert!(requests.len() >= 2);
    assert!(
        requests
            .iter()
            .all(|r| r.header("webhook-id") == text(&delivery["event_id"]))
    );
    drop(server);
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let receiver = Receiver::start().await;
    let server = Server::start();
    let port = receiver.url.rsplit(':').next().expect("port");
    for url in [
        format!("{}/hook", receiver.url),
        format!("http://localhost:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.1.2.3/hook".to_owned(),
        "http://100.64.0.1/hook".to_owned(),
        "http://[fd00::1]/hook".to_owned(),
    ] {
        let webhook = create_webhook(&server, &url, &["batch.queued"]).await;
        let delivery = test_event(&server, &webhook).await;
        let failed = delivery_until(&server, &webhook, &delivery, settled).await;
        assert_eq!(failed["state"], "failed", "{url}: {failed}");
        assert_eq!(failed["attempts"], 1, "{url}: {failed}");
        assert!(
            text(&failed["last_error"]).contains("a private or reserved address"),
            "{url}: {failed}"
        );
    }
    assert!(receiver.received("/hook").is_empty());
}

#[tokio::test]
async fn bad_webhook_requests_are_problems() {
    let server = Server::start_with(options(&[]));
    let cases = [
        (
            json!({ "url": "ftp://example.com/x", "event_types": ["batch.queued"] }),
            "url",
        ),
        (
            json!({ "url": "not a url", "event_types": ["batch.queued"] }),
            "url",
        ),
        (
            json!({ "url": "https://example.com/x", "event_types": [] }),
            "event_types",
        ),
        (
            json!({ "url": "https://example.com/x", "event_types": ["batch.queued", "batch.done"] }),
            "event_types[1]",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = server.post("/v1/webhooks", body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert!(
            problem.to_string().contains(field),
            "{body}: {problem} should name {field}"
        );
    }
    let (status, _) = server
        .post("/v1/webhooks", json!({ "url": "https://example.com", "event_types": ["batch.queued"], "colour": "red" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = server.get("/v1/webhooks/wh_missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let receiver = Receiver::start().await;
    receiver.script("/hold", vec![Reply::Status(503)]);
    let webhook = create_webhook(
        &server,
        &format!("{}/hold", receiver.url),
        &["batch.queued"],
    )
    .await;
    let delivery = test_event(&server, &webhook).await;
    let (status, problem) = server
        .post(
            &format!(
                "/v1/webhooks/{}/deliveries/{}/redeliver",
                text(&webhook["webhook_id"]),
                text(&delivery["delivery_id"])
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    // Another namespace sees none of it.
    let other = support::tenants::key_in(&server, "other").await;
    let (status, _) = send(server.request_as(
        &other,
        "other",
        Method::GET,
        &format!("/v1/webhooks/{}", text(&webhook["webhook_id"])),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let status = server
        .delete(&format!("/v1/webhooks/{}", text(&webhook["webhook_id"])))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server
        .get(&format!(
            "/v1/webhooks/{}/deliveries",
            text(&webhook["webhook_id"])
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
