//! `GET /v1/buckets/{bucket}/batches/{batch}/events`: a batch's state as
//! Server-Sent Events, for progress bars that move by themselves.
//!
//! Each event (`event: batch`) carries the batch as `GET …/batches/{batch}`
//! shows it: status, progress, status message, health, shards. A client
//! gets the current state first, then each change, at most one per
//! [`POLL`] (and the unchanged state again every [`REFRESH`], with fresh
//! rates and estimates); the stream ends after the terminal status, or
//! when the batch is deleted.
//!
//! The store is the truth (workers may run in other processes), so one
//! task per watched batch reads it every [`POLL`] and shares what it read
//! with every client of that batch through a `watch` channel. The task ends
//! once the batch is finished or its last client is gone: a client that
//! disconnects costs nothing after that. A namespace may hold at most
//! `--max-event-streams-per-namespace` streams on one host, and a server
//! shutting down ends its streams rather than waiting for them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::Value;
use tokio::sync::watch;

use super::auth::Caller;
use super::batches::{BatchView, find_batch};
use super::tenancy::Hold;
use super::{ApiResult, AppState, Path};
use crate::store::{BatchId, BucketId};

/// How often a watched batch is read: events come at most this often.
pub const POLL: Duration = Duration::from_millis(400);
/// An unchanged batch is sent again this often, with fresh rates and
/// estimates.
pub const REFRESH: Duration = Duration::from_secs(5);

/// What a watcher last read of its batch.
#[derive(Debug, Clone)]
enum Snapshot {
    /// Nothing read yet.
    Pending,
    /// The batch.
    Batch(Arc<BatchView>),
    /// The batch was deleted.
    Gone,
}

/// The batches this process watches for event streams: one task each,
/// shared by all of a batch's clients.
#[derive(Debug, Default)]
pub struct BatchWatchers {
    watched: Mutex<HashMap<BatchId, watch::Sender<Snapshot>>>,
}

impl BatchWatchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BatchId, watch::Sender<Snapshot>>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of `batch_id`'s state, starting its watcher if no one
    /// watches it yet.
    fn subscribe(
        &self,
        state: &AppState,
        bucket_id: BucketId,
        batch_id: BatchId,
    ) -> watch::Receiver<Snapshot> {
        let mut watched = self.lock();
        if let Some(sender) = watched.get(&batch_id) {
            // `subscribe` counts what the watcher holds as seen; it may be
            // newer than the client's first read (even the terminal state,
            // just before the watcher leaves), so it is sent too. The
            // client drops it if it repeats what it has.
            let mut receiver = sender.subscribe();
            receiver.mark_changed();
            return receiver;
        }
        let (sender, receiver) = watch::channel(Snapshot::Pending);
        watched.insert(batch_id.clone(), sender.clone());
        metrics::gauge!("strata_batch_watchers").set(watched.len() as f64);
        tokio::spawn(watch_batch(state.clone(), bucket_id, batch_id, sender));
        receiver
    }

    /// Ends the watch of `batch_id` if no client is left (or `finished`);
    /// says whether it ended. Checked under the lock that subscribing
    /// takes, so a client never subscribes to a watcher that is leaving.
    fn leave(&self, batch_id: &BatchId, sender: &watch::Sender<Snapshot>, finished: bool) -> bool {
        let mut watched = self.lock();
        if !finished && sender.receiver_count() > 0 {
            return false;
        }
        if watched
            .get(batch_id)
            .is_some_and(|s| s.same_channel(sender))
        {
            watched.remove(batch_id);
        }
        metrics::gauge!("strata_batch_watchers").set(watched.len() as f64);
        true
    }
}

/// What decides whether a batch changed: the view without what moves with
/// the clock alone (rates, estimates and the message that quotes them).
fn change_key(view: &BatchView) -> Value {
    let mut key = serde_json::to_value(view).unwrap_or(Value::Null);
    if let Some(key) = key.as_object_mut() {
        key.remove("status_message");
        key.remove("estimated_completion");
        if let Some(progress) = key.get_mut("progress").and_then(Value::as_object_mut) {
            progress.remove("items_per_second");
            progress.remove("eta_seconds");
        }
    }
    key
}

/// Reads the batch every [`POLL`] and publishes what changed, until it is
/// finished or deleted, or no client is left.
async fn watch_batch(
    state: AppState,
    bucket_id: BucketId,
    batch_id: BatchId,
    sender: watch::Sender<Snapshot>,
) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(Value, Instant)> = None;
    loop {
        tick.tick().await;
        if state.watchers.leave(&batch_id, &sender, false) {
            return;
        }
        let snapshot = match crate::batches::read(state.store.as_ref(), &bucket_id, &batch_id).await
        {
            Ok(Some(batch)) => Snapshot::Batch(Arc::new(state.view(batch))),
            Ok(None) => Snapshot::Gone,
            Err(e) => {
                // A store hiccup: keep watching, the next read may pass.
                tracing::warn!(batch = %batch_id, error = %e, "reading a watched batch failed");
                continue;
            }
        };
        let finished = match &snapshot {
            Snapshot::Batch(view) => {
                let key = change_key(view);
                let due = last
                    .as_ref()
                    .is_none_or(|(k, at)| *k != key || at.elapsed() >= REFRESH);
                if due {
                    sender.send_replace(snapshot.clone());
                    last = Some((key, Instant::now()));
                }
                view.status.is_terminal()
            }
            Snapshot::Gone => {
                sender.send_replace(Snapshot::Gone);
                true
            }
            Snapshot::Pending => false,
        };
        if finished {
            state.watchers.leave(&batch_id, &sender, true);
            return;
        }
    }
}

/// One client's stream: what it was sent last, and its namespace's hold.
struct Client {
    first: Option<Arc<BatchView>>,
    receiver: Option<watch::Receiver<Snapshot>>,
    /// The change key of the last event, and when it was sent.
    last: Option<(Value, Instant)>,
    sequence: u64,
    done: bool,
    _hold: Hold,
    _counted: Counted,
}

/// Counts an open stream in `strata_event_streams` while it lives.
struct Counted;

impl Counted {
    fn new() -> Self {
        metrics::gauge!("strata_event_streams").increment(1.0);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("strata_event_streams").decrement(1.0);
    }
}

impl Client {
    /// The event for `view`, and whether the stream ends after it.
    fn event(&mut self, view: &BatchView, key: Value) -> Event {
        self.sequence += 1;
        self.last = Some((key, Instant::now()));
        self.done = view.status.is_terminal();
        Event::default()
            .event("batch")
            .id(self.sequence.to_string())
            .json_data(view)
            .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
    }

    /// The next event, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        if let Some(first) = self.first.take() {
            let key = change_key(&first);
            return Some(self.event(&first, key));
        }
        let receiver = self.receiver.as_mut()?;
        loop {
            receiver.changed().await.ok()?;
            let snapshot = receiver.borrow_and_update().clone();
            match snapshot {
                Snapshot::Pending => {}
                Snapshot::Gone => return None,
                Snapshot::Batch(view) => {
                    // A new watcher's first read is most often what this
                    // client was just sent; its refreshes come later.
                    let key = change_key(&view);
                    let repeat = self
                        .last
                        .as_ref()
                        .is_some_and(|(k, at)| *k == key && at.elapsed() < REFRESH);
                    if !repeat {
                        return Some(self.event(&view, key));
                    }
                }
            }
        }
    }
}

/// One event of the stream, as OpenAPI describes `text/event-stream` (a
/// schema per event): `event` is `batch`, `id` counts from 1, and `data`
/// is the batch as JSON, its schema `BatchView` (`contentSchema`).
pub struct BatchEvent;

impl utoipa::PartialSchema for BatchEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{ObjectBuilder, Type};
        let string = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .description(Some("One Server-Sent Event: the batch, as JSON in `data`"))
            .property("event", string().enum_values(Some(["batch"])))
            .property(
                "id",
                string().description(Some("counts from 1 on each stream")),
            )
            // `/openapi.json` adds its `contentSchema` (see `meta::document`).
            .property("data", string().content_media_type("application/json"))
            .required("event")
            .required("id")
            .required("data")
            .into()
    }
}

impl utoipa::ToSchema for BatchEvent {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "BatchView".to_owned(),
            <BatchView as utoipa::PartialSchema>::schema(),
        ));
        <BatchView as utoipa::ToSchema>::schemas(schemas);
    }
}

/// `GET …/batches/{batch}/events`: the batch's state as Server-Sent
/// Events, the current state first, until its terminal status.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/batches/{batch}/events", tag = "batches",
    params(("bucket" = String, Path, description = "bucket id or name"), ("batch" = String, Path)),
    responses(
        (status = 200, content_type = "text/event-stream", body = BatchEvent,
            description = "`event: batch` events, each one's `data` the batch as `GET …/batches/{batch}` shows it: the current state first, then each change (at most a few a second), ending after the terminal status"),
        (status = 404, body = super::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = super::error::Problem, content_type = "application/problem+json")))]
pub async fn batch_events(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, batch)): Path<(String, BatchId)>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let (bucket, record) = find_batch(&state, &caller, &bucket, &batch).await?;
    let hold = state.tenancy.event_stream(&caller.namespace.namespace_id)?;
    let first = Arc::new(state.view(record));
    let receiver = (!first.status.is_terminal())
        .then(|| state.watchers.subscribe(&state, bucket.bucket_id, batch));
    let client = Client {
        first: Some(first),
        receiver,
        last: None,
        sequence: 0,
        done: false,
        _hold: hold,
        _counted: Counted::new(),
    };
    let stop = state.stop.clone();
    let events = futures::stream::unfold(client, move |mut client| {
        let stop = stop.clone();
        async move {
            // A shutting-down server ends its streams: clients reconnect
            // to another replica, or to this one once it is back.
            let event = tokio::select! {
                () = stop.cancelled() => None,
                event = client.next() => event,
            }?;
            Some((Ok(event), client))
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
