//! Live progress as Server-Sent Events (`…/batches/{batch}/events`) on a
//! real server: the current state first, changes in order, the end on the
//! terminal status; a second client joining mid-batch; nothing left behind
//! by clients that go; the same auth and namespace rules as the JSON API,
//! and a per-namespace cap on open streams that leaves other namespaces
//! alone.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::events::{Event, Events};
use support::flow::{
    create_batch, create_bucket, create_collection, plugins_with_hostile, slow_options, text,
    upload,
};
use support::{Server, send};

/// Far more than any event should wait for.
const WAIT: Duration = Duration::from_secs(60);

/// A DRAFT batch of `n` objects through `hostile` in mode `slow` (20 ms a
/// triggering object, every one triggers, one object per call): a run of a
/// few seconds with progress to watch. Returns the batch's path.
async fn slow_draft(server: &Server, n: usize) -> String {
    let bucket = create_bucket(server, "slow").await;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("obj_{i:03}");
        upload(server, &bucket, &id, &format!("TRIGGER {i}")).await;
        ids.push(id);
    }
    create_collection(
        server,
        "slow",
        &bucket,
        json!([{"name": "hostile", "params": {"mode": "slow"}}]),
    )
    .await;
    create_batch(server, &bucket, &ids).await.0
}

/// A DRAFT batch of one text object in a new bucket; returns its path.
async fn small_draft(server: &Server) -> String {
    let bucket = create_bucket(server, "b").await;
    upload(server, &bucket, "obj_1", "text").await;
    create_batch(server, &bucket, &["obj_1".to_owned()]).await.0
}

/// Opens the event stream of the batch at `path` with the admin key.
async fn events(server: &Server, path: &str) -> Events {
    let response = server
        .request(Method::GET, &format!("{path}/events"))
        .send()
        .await
        .expect("events");
    Events::new(response)
}

/// Reads every event until the stream ends.
async fn until_end(events: &mut Events) -> Vec<Event> {
    let mut all = Vec::new();
    while let Some(event) = events.next_within(WAIT).await {
        all.push(event);
    }
    all
}

fn rank(status: &Value) -> usize {
    ["DRAFT", "QUEUED", "PROCESSING", "COMPLETED"]
        .iter()
        .position(|s| status == s)
        .unwrap_or_else(|| panic!("unexpected status {status}"))
}

/// The gauge `name` in the server's metrics.
async fn gauge(server: &Server, name: &str) -> f64 {
    let metrics = server.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the gauge `name` reads 0.
async fn settles_to_zero(server: &Server, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(server, name).await != 0.0 {
        assert!(Instant::now() < deadline, "{name} stays above 0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn progress_arrives_in_order_and_the_stream_ends_on_the_terminal_status() {
    let plugins = plugins_with_hostile();
    let server = Server::start_with(slow_options(plugins.path(), "10", &[]));
    let path = slow_draft(&server, 60).await;

    let mut first = events(&server, &path).await;
    let draft = first.next_within(WAIT).await.expect("the current state");
    assert_eq!(draft.event, "batch");
    assert_eq!(draft.id, "1");
    assert_eq!(draft.data["status"], "DRAFT");
    assert_eq!(draft.data["progress"]["total"], 60);

    let started = Instant::now();
    let (status, body) = server.post(&format!("{path}/submit"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A second client joins once the batch runs: it is sent the state of
    // that moment first.
    let mut seen = vec![draft];
    let running = loop {
        let event = first.next_within(WAIT).await.expect("the run goes on");
        let processing = event.data["status"] == "PROCESSING"
            && event.data["progress"]["processed"].as_u64() > Some(0);
        seen.push(event);
        if processing {
            break seen.last().expect("an event").data.clone();
        }
    };
    let mut second = events(&server, &path).await;
    let joined = second
        .next_within(Duration::from_secs(5))
        .await
        .expect("the current state");
    assert_eq!(joined.id, "1", "a new stream counts from 1");
    assert_eq!(joined.data["status"], "PROCESSING", "{}", joined.data);
    assert!(
        joined.data["progress"]["processed"].as_u64() >= running["progress"]["processed"].as_u64(),
        "{} after {}",
        joined.data["progress"],
        running["progress"]
    );

    seen.extend(until_end(&mut first).await);
    let elapsed = started.elapsed();
    let rest = until_end(&mut second).await;

    // In order: ids count up, the status only moves forward, and so does
    // the count of processed objects.
    for (i, event) in seen.iter().enumerate() {
        assert_eq!(event.id, (i + 1).to_string());
        assert_eq!(event.event, "batch");
    }
    for pair in seen.windows(2) {
        let (a, b) = (&pair[0].data, &pair[1].data);
        assert!(
            rank(&a["status"]) <= rank(&b["status"]),
            "{} then {}",
            a["status"],
            b["status"]
        );
        assert!(
            a["progress"]["processed"].as_u64() <= b["progress"]["processed"].as_u64(),
            "{} then {}",
            a["progress"],
            b["progress"]
        );
    }
    let last = &seen.last().expect("events").data;
    assert_eq!(last["status"], "COMPLETED", "{last}");
    assert_eq!(last["progress"]["processed"], 60);
    assert_eq!(last["progress"]["percent"], 100.0);
    assert_eq!(last["health"], "healthy");
    assert!(last["status_message"].is_string());
    let processing = seen
        .iter()
        .filter(|e| e.data["status"] == "PROCESSING")
        .count();
    assert!(
        processing >= 3,
        "{processing} progress events in {elapsed:?}"
    );
    // At most a few a second: one per poll, plus the first.
    let most = 2 + (elapsed.as_secs_f64() / 0.4).ceil() as usize;
    assert!(seen.len() <= most, "{} events in {elapsed:?}", seen.len());
    assert_eq!(
        rest.last().expect("the second client's end").data["status"],
        "COMPLETED"
    );

    // Both clients are gone: no stream and no watcher is left.
    drop(first);
    drop(second);
    settles_to_zero(&server, "strata_event_streams").await;
    settles_to_zero(&server, "strata_batch_watchers").await;

    // A finished batch: one event, then the end.
    let mut after = events(&server, &path).await;
    let only = until_end(&mut after).await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].data["status"], "COMPLETED");
}

#[tokio::test]
async fn a_client_that_disconnects_leaves_nothing_behind_and_a_deleted_batch_ends_its_stream() {
    let server = Server::start();
    let path = small_draft(&server).await;

    // Clients that leave mid-stream.
    for _ in 0..5 {
        let mut events = events(&server, &path).await;
        assert!(events.next_within(WAIT).await.is_some());
    }
    settles_to_zero(&server, "strata_event_streams").await;
    settles_to_zero(&server, "strata_batch_watchers").await;

    // A client stays while the draft is deleted: its stream ends.
    let mut events = events(&server, &path).await;
    assert_eq!(
        events.next_within(WAIT).await.expect("draft").data["status"],
        "DRAFT"
    );
    assert_eq!(server.delete(&path).await, StatusCode::NO_CONTENT);
    assert!(events.next_within(WAIT).await.is_none(), "the stream ends");
}

#[tokio::test]
async fn a_server_shutting_down_ends_its_streams_instead_of_waiting_for_them() {
    let mut server = Server::start();
    let path = small_draft(&server).await;
    let mut events = events(&server, &path).await;
    assert!(events.next_within(WAIT).await.is_some());
    // A DRAFT never ends by itself; SIGTERM must not wait for it.
    let status = server.terminate_within(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(events.next_within(WAIT).await.is_none(), "the stream ends");
}

#[tokio::test]
async fn event_streams_keep_the_api_rules_and_a_per_namespace_cap() {
    let server = Server::start_with(support::Options {
        args: vec!["--max-event-streams-per-namespace".into(), "2".into()],
        ..support::Options::default()
    });
    let path = format!("{}/events", small_draft(&server).await);

    // No key, a wrong key: 401 problems.
    let (status, problem) = send(server.client.get(format!("{}{path}", server.url))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    let (status, _) = send(
        server
            .client
            .get(format!("{}{path}", server.url))
            .bearer_auth("sk_wrong"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Another namespace's key does not see the batch.
    let other = support::tenants::key_in(&server, "other").await;
    let (status, problem) = send(server.request_as(&other, "other", Method::GET, &path)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, _) =
        send(server.request(Method::GET, "/v1/buckets/b/batches/btch_nope/events")).await;
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST,
        "{status}"
    );

    // Two streams open in `default`; a third is 429, saying why and when
    // to come back.
    let mut held = Vec::new();
    for _ in 0..2 {
        let response = server
            .request(Method::GET, &path)
            .send()
            .await
            .expect("events");
        let mut events = Events::new(response);
        assert!(events.next_within(WAIT).await.is_some());
        held.push(events);
    }
    let response = server
        .request(Method::GET, &path)
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        response
            .headers()
            .contains_key(reqwest::header::RETRY_AFTER)
    );
    let (_, problem) = support::json(response).await;
    assert!(
        text(&problem["detail"]).contains("--max-event-streams-per-namespace"),
        "{problem}"
    );

    // The cap is the namespace's own: `other` opens a stream of its own batch.
    let (status, bucket) = send(
        server
            .request_as(&other, "other", Method::POST, "/v1/buckets")
            .json(&json!({"bucket_name": "mine"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bucket}");
    let bucket = text(&bucket["bucket_id"]).to_owned();
    let (status, _) = send(
        server
            .request_as(
                &other,
                "other",
                Method::POST,
                &format!("/v1/buckets/{bucket}/objects"),
            )
            .json(&json!({"object_id": "o", "text": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, mine) = send(
        server
            .request_as(
                &other,
                "other",
                Method::POST,
                &format!("/v1/buckets/{bucket}/batches"),
            )
            .json(&json!({"object_ids": ["o"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let response = server
        .request_as(
            &other,
            "other",
            Method::GET,
            &format!(
                "/v1/buckets/{bucket}/batches/{}/events",
                text(&mine["batch_id"])
            ),
        )
        .send()
        .await
        .expect("events");
    let mut events = Events::new(response);
    assert_eq!(
        events.next_within(WAIT).await.expect("its state").data["status"],
        "DRAFT"
    );

    // A stream given back makes room again.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = server
            .request(Method::GET, &path)
            .send()
            .await
            .expect("events");
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
