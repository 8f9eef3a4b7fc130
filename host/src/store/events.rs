//! Webhooks and their outbox: the records, the events and the seam.
//!
//! An event is written to the outbox in the same transaction as the change
//! that causes it, as one *delivery* per active webhook of the namespace
//! that subscribes to its type. The delivery worker (`crate::webhooks`)
//! sends deliveries and records each attempt through [`Webhooks`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{BatchRecord, BatchStatus, DocumentRecord, Page, PageRequest, Result, Timestamp, now};
use crate::store::{CollectionId, DeliveryId, EventId, NamespaceId, WebhookId};

/// Most document ids a `collection.documents.written` event lists.
pub const MAX_EVENT_DOCUMENT_IDS: usize = 100;

/// Largest event body, in bytes.
pub const MAX_EVENT_BYTES: usize = 20_000;

/// Most bytes of an error message an event carries.
const MAX_EVENT_MESSAGE: usize = 2_000;

/// At most `max` bytes of `text`, cut at a character boundary, with `…`
/// when cut.
fn clipped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "batch.queued")]
    BatchQueued,
    #[serde(rename = "batch.processing")]
    BatchProcessing,
    #[serde(rename = "batch.completed")]
    BatchCompleted,
    #[serde(rename = "batch.failed")]
    BatchFailed,
    #[serde(rename = "batch.canceled")]
    BatchCanceled,
    #[serde(rename = "collection.documents.written")]
    DocumentsWritten,
    #[serde(rename = "webhook.test")]
    WebhookTest,
    #[serde(rename = "extractor.published")]
    ExtractorPublished,
}

impl EventType {
    /// Every type, in documentation order.
    pub const ALL: [EventType; 8] = [
        EventType::BatchQueued,
        EventType::BatchProcessing,
        EventType::BatchCompleted,
        EventType::BatchFailed,
        EventType::BatchCanceled,
        EventType::DocumentsWritten,
        EventType::WebhookTest,
        EventType::ExtractorPublished,
    ];

    /// The wire name, e.g. `batch.completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::BatchQueued => "batch.queued",
            EventType::BatchProcessing => "batch.processing",
            EventType::BatchCompleted => "batch.completed",
            EventType::BatchFailed => "batch.failed",
            EventType::BatchCanceled => "batch.canceled",
            EventType::DocumentsWritten => "collection.documents.written",
            EventType::WebhookTest => "webhook.test",
            EventType::ExtractorPublished => "extractor.published",
        }
    }

    /// The type named `name`, if any.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The event a batch entering `status` emits.
    pub fn of_batch(status: BatchStatus) -> Option<EventType> {
        match status {
            BatchStatus::Draft => None,
            BatchStatus::Queued => Some(EventType::BatchQueued),
            BatchStatus::Processing => Some(EventType::BatchProcessing),
            BatchStatus::Completed => Some(EventType::BatchCompleted),
            BatchStatus::Failed => Some(EventType::BatchFailed),
            BatchStatus::Canceled => Some(EventType::BatchCanceled),
        }
    }
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// `batch`, `collection` or `webhook`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// An event, as receivers get it (the request body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_…`: the `webhook-id` of every attempt to send it.
    pub event_id: EventId,
    /// What happened.
    pub event_type: EventType,
    /// RFC 3339.
    pub occurred_at: Timestamp,
    /// The namespace it happened in.
    pub namespace_id: NamespaceId,
    /// What it is about.
    pub subject: Subject,
    /// Type-specific facts.
    pub data: Value,
}

impl Event {
    fn new(
        event_type: EventType,
        namespace_id: &NamespaceId,
        subject: (&str, &str),
        data: Value,
    ) -> Self {
        Event {
            event_id: EventId::generate(),
            event_type,
            occurred_at: now(),
            namespace_id: namespace_id.to_owned(),
            subject: Subject {
                kind: subject.0.to_owned(),
                id: subject.1.to_owned(),
            },
            data,
        }
    }

    /// The request body: the event as JSON, at most [`MAX_EVENT_BYTES`]
    /// (an event that would be larger keeps its envelope and says its data
    /// was left out; none of ours comes near).
    pub fn body(&self) -> Result<String> {
        let body = serde_json::to_string(self).map_err(super::StoreError::backend)?;
        if body.len() <= MAX_EVENT_BYTES {
            return Ok(body);
        }
        let envelope = Event {
            data: json!({ "data_omitted": true, "reason": "the event was larger than 20 kB" }),
            ..self.clone()
        };
        serde_json::to_string(&envelope).map_err(super::StoreError::backend)
    }

    /// The event of `batch` having entered its status, if that status has one.
    pub fn batch(batch: &BatchRecord) -> Option<Event> {
        let event_type = EventType::of_batch(batch.status)?;
        let collection_ids: Vec<&str> = batch
            .collections
            .iter()
            .take(MAX_EVENT_DOCUMENT_IDS)
            .map(|c| c.collection_id.as_str())
            .collect();
        let data = json!({
            "batch_id": batch.batch_id,
            "bucket_id": batch.bucket_id,
            "batch_name": batch.batch_name,
            "task_id": batch.task_id,
            "status": batch.status.as_str(),
            "object_count": batch.total,
            "processed": batch.processed,
            "failed": batch.failed,
            "collection_ids": collection_ids,
            "collection_ids_truncated": batch.collections.len() > collection_ids.len(),
            "error_message": batch.error_message.as_deref().map(|m| clipped(m, MAX_EVENT_MESSAGE)),
        });
        Some(Event::new(
            event_type,
            &batch.namespace_id,
            ("batch", &batch.batch_id),
            data,
        ))
    }

    /// `collection.documents.written` for one written chunk of documents of
    /// one collection (ids capped at [`MAX_EVENT_DOCUMENT_IDS`]).
    pub fn documents_written(
        namespace_id: &NamespaceId,
        collection_id: &CollectionId,
        documents: &[DocumentRecord],
    ) -> Option<Event> {
        let first = documents.first()?;
        let ids: Vec<&str> = documents
            .iter()
            .take(MAX_EVENT_DOCUMENT_IDS)
            .map(|d| d.document_id.as_str())
            .collect();
        let data = json!({
            "collection_id": collection_id,
            "batch_id": first.batch_id,
            "document_ids": ids,
            "document_count": documents.len(),
            "document_ids_truncated": documents.len() > ids.len(),
            "index_signature": first.internal_metadata.index_signature,
        });
        Some(Event::new(
            EventType::DocumentsWritten,
            namespace_id,
            ("collection", collection_id),
            data,
        ))
    }

    /// `extractor.published`, as the namespace `namespace_id` receives it
    /// (the registry is shared by every namespace).
    pub fn extractor_published(
        namespace_id: &NamespaceId,
        version: &super::registry::ExtractorVersionRecord,
    ) -> Event {
        let data = json!({
            "name": version.name,
            "version": version.version,
            "content_hash": version.content_hash,
            "size_bytes": version.size_bytes,
            "published_at": version.published_at,
        });
        Event::new(
            EventType::ExtractorPublished,
            namespace_id,
            ("extractor", &version.id()),
            data,
        )
    }

    /// `webhook.test`, sent to one webhook on request.
    pub fn test(webhook: &WebhookRecord) -> Event {
        let data = json!({
            "webhook_id": webhook.webhook_id,
            "message": "a test event from Strata",
        });
        Event::new(
            EventType::WebhookTest,
            &webhook.namespace_id,
            ("webhook", &webhook.webhook_id),
            data,
        )
    }
}

/// A signing secret of a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningSecret {
    /// `whsec_` + base64 of the key.
    pub secret: String,
    /// RFC 3339; set on the previous secret when it is rotated out.
    pub expires_at: Option<Timestamp>,
}

/// A webhook: where a namespace's events of some types go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// `wh_…`
    pub webhook_id: WebhookId,
    /// Owning namespace.
    pub namespace_id: NamespaceId,
    /// `http(s)://…`
    pub url: String,
    /// Types it receives.
    pub event_types: Vec<EventType>,
    /// Free text.
    pub description: Option<String>,
    /// Whether events are sent to it.
    pub active: bool,
    /// Why it was turned off, when the endpoint asked for it (410).
    pub disabled_reason: Option<String>,
    /// The current secret first, then one being rotated out.
    pub secrets: Vec<SigningSecret>,
    /// Counts the record's writes: an update names the revision it read.
    #[serde(default)]
    pub revision: u64,
    /// RFC 3339.
    pub created_at: Timestamp,
    /// RFC 3339.
    pub updated_at: Timestamp,
}

impl WebhookRecord {
    /// Whether `event` goes to this webhook.
    pub fn wants(&self, event: &Event) -> bool {
        self.active
            && self.namespace_id == event.namespace_id
            && self.event_types.contains(&event.event_type)
    }

    /// Turns the webhook off, saying why.
    pub fn disable(&mut self, reason: String) {
        self.active = false;
        self.disabled_reason = Some(reason);
        self.updated_at = now();
        self.revision += 1;
    }

    /// The secrets that sign at `now`: the current one, and a rotated-out
    /// one until it expires.
    pub fn signing_secrets(&self, now: &Timestamp) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|e| e > *now))
            .map(|s| s.secret.as_str())
            .collect()
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Out of attempts, refused, or the webhook is off.
    Failed,
}

impl DeliveryState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One event on its way to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// `dlv_…`
    pub delivery_id: DeliveryId,
    /// The webhook.
    pub webhook_id: WebhookId,
    /// The webhook's namespace.
    pub namespace_id: NamespaceId,
    /// The event's id (`webhook-id` on every attempt).
    pub event_id: EventId,
    /// The event's type.
    pub event_type: EventType,
    /// The request body: the event as JSON.
    pub payload: String,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch), while pending.
    pub next_attempt_ms: i64,
    /// Status code of the last answer, if any.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// RFC 3339.
    pub created_at: Timestamp,
    /// RFC 3339.
    pub updated_at: Timestamp,
    /// RFC 3339, once delivered.
    pub delivered_at: Option<Timestamp>,
}

impl DeliveryRecord {
    /// A pending delivery of `event` to `webhook`, due now.
    pub fn new(event: &Event, webhook: &WebhookRecord) -> Result<Self> {
        let now = now();
        Ok(DeliveryRecord {
            delivery_id: DeliveryId::generate(),
            webhook_id: webhook.webhook_id.clone(),
            namespace_id: webhook.namespace_id.clone(),
            event_id: event.event_id.clone(),
            event_type: event.event_type,
            payload: event.body()?,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_ms: chrono::Utc::now().timestamp_millis(),
            last_status: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            delivered_at: None,
        })
    }

    /// Makes a finished delivery pending again, due now, with its
    /// schedule restarted.
    pub fn redeliver(&mut self) {
        self.state = DeliveryState::Pending;
        self.attempts = 0;
        self.next_attempt_ms = chrono::Utc::now().timestamp_millis();
        self.delivered_at = None;
        self.updated_at = now();
    }

    /// Records an attempt's outcome; returns why to turn the webhook off,
    /// if so.
    pub fn apply(&mut self, outcome: &AttemptOutcome) -> Option<String> {
        let now = now();
        self.attempts += 1;
        self.updated_at = now;
        match outcome {
            AttemptOutcome::Delivered { status } => {
                self.state = DeliveryState::Delivered;
                self.last_status = Some(*status);
                self.last_error = None;
                self.delivered_at = Some(now);
                None
            }
            AttemptOutcome::Retry {
                status,
                error,
                next_attempt_ms,
            } => {
                self.last_status = *status;
                self.last_error = Some(error.clone());
                self.next_attempt_ms = *next_attempt_ms;
                None
            }
            AttemptOutcome::Failed {
                status,
                error,
                disable,
            } => {
                self.state = DeliveryState::Failed;
                self.last_status = *status;
                self.last_error = Some(error.clone());
                disable.clone()
            }
        }
    }

    /// Deliveries of an event many namespaces hear of: `event(namespace)`
    /// for each namespace that `hears` it and has a webhook that wants
    /// events of `event_type`.
    pub fn fan_out_everywhere(
        event_type: EventType,
        event: impl Fn(&NamespaceId) -> Event,
        webhooks: &[WebhookRecord],
        hears: impl Fn(&NamespaceId) -> bool,
    ) -> Result<Vec<Self>> {
        let namespaces: std::collections::BTreeSet<&NamespaceId> = webhooks
            .iter()
            .filter(|w| w.active && w.event_types.contains(&event_type))
            .filter(|w| hears(&w.namespace_id))
            .map(|w| &w.namespace_id)
            .collect();
        let mut deliveries = Vec::new();
        for namespace in namespaces {
            deliveries.extend(DeliveryRecord::fan_out(&event(namespace), webhooks)?);
        }
        Ok(deliveries)
    }

    /// Deliveries of `event` to those of `webhooks` that want it.
    pub fn fan_out(event: &Event, webhooks: &[WebhookRecord]) -> Result<Vec<Self>> {
        webhooks
            .iter()
            .filter(|w| w.wants(event))
            .map(|w| DeliveryRecord::new(event, w))
            .collect()
    }
}

/// A delivery leased to one sender.
#[derive(Debug, Clone)]
pub struct DeliveryLease {
    /// The delivery as claimed (attempts not yet counting this one).
    pub delivery: DeliveryRecord,
    /// Random: the attempt's outcome is recorded only with it.
    pub token: String,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// 2xx.
    Delivered {
        /// The status code.
        status: u16,
    },
    /// Failed; try again at `next_attempt_ms`.
    Retry {
        /// The status code, when the endpoint answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// When (ms since the epoch).
        next_attempt_ms: i64,
    },
    /// Failed for good.
    Failed {
        /// The status code, when the endpoint answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// Also turn the webhook off, with this reason (the endpoint
        /// answered 410 Gone).
        disable: Option<String>,
    },
}

/// The webhook seam: webhooks, and the deliveries of their outbox.
#[async_trait]
pub trait Webhooks: Send + Sync + std::fmt::Debug {
    /// Creates a webhook.
    async fn create_webhook(&self, webhook: &WebhookRecord) -> Result<()>;
    /// A webhook of the namespace.
    async fn webhook(
        &self,
        namespace_id: &NamespaceId,
        webhook_id: &WebhookId,
    ) -> Result<Option<WebhookRecord>>;
    /// Webhooks of the namespace by id.
    async fn list_webhooks(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<WebhookRecord>>;
    /// Replaces a webhook's record (same id and namespace) whose stored
    /// revision is still `webhook.revision - 1`: a conflict when another
    /// write came first (read it again and retry).
    async fn update_webhook(&self, webhook: &WebhookRecord) -> Result<()>;
    /// Deletes a webhook with its deliveries.
    async fn delete_webhook(
        &self,
        namespace_id: &NamespaceId,
        webhook_id: &WebhookId,
    ) -> Result<()>;

    /// Writes `event` to the outbox for `webhook` alone (test events).
    async fn enqueue(&self, webhook: &WebhookRecord, event: &Event) -> Result<DeliveryRecord>;
    /// Deliveries of a webhook by id (oldest first).
    async fn list_deliveries(
        &self,
        webhook_id: &WebhookId,
        page: &PageRequest,
    ) -> Result<Page<DeliveryRecord>>;
    /// A delivery of a webhook.
    async fn delivery(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>>;
    /// Makes a delivery pending again, due now (same event id); a conflict
    /// while it is pending.
    async fn redeliver(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &DeliveryId,
    ) -> Result<DeliveryRecord>;

    /// Leases the pending delivery due first (by now), skipping the
    /// webhooks in `skip`, for `lease_ms`.
    async fn claim_delivery(
        &self,
        skip: &[WebhookId],
        lease_ms: i64,
    ) -> Result<Option<DeliveryLease>>;
    /// Records an attempt under its lease; false when the lease is gone
    /// (the delivery was claimed again or changed meanwhile).
    async fn record_attempt(&self, lease: &DeliveryLease, outcome: &AttemptOutcome)
    -> Result<bool>;
    /// Deletes delivered and failed deliveries last attempted before
    /// `before_ms` (ms since the epoch); returns how many.
    async fn purge_deliveries(&self, before_ms: i64) -> Result<u64>;
    /// When the earliest pending delivery that nobody holds is due (ms
    /// since the epoch).
    async fn next_due(&self) -> Result<Option<i64>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_under_20_kb() {
        let mut batch = BatchRecord::draft(&"ns_1".into(), &"bkt_1".into(), None, None);
        batch.status = BatchStatus::Failed;
        batch.error_message = Some("é".repeat(10_000));
        let event = Event::batch(&batch).expect("an event");
        let message = event.data["error_message"].as_str().expect("message");
        assert!(message.len() <= MAX_EVENT_MESSAGE + '…'.len_utf8());
        assert!(message.ends_with('…'));

        let huge = Event {
            data: json!({ "blob": "x".repeat(30_000) }),
            ..event
        };
        let body = huge.body().expect("a body");
        assert!(body.len() <= MAX_EVENT_BYTES);
        let parsed: Event = serde_json::from_str(&body).expect("an event");
        assert_eq!(parsed.event_id, huge.event_id);
        assert_eq!(parsed.data["data_omitted"], true);
    }

    #[test]
    fn batch_statuses_map_to_events() {
        assert_eq!(EventType::of_batch(BatchStatus::Draft), None);
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).expect("json"),
                serde_json::Value::String(t.as_str().into())
            );
        }
    }
}
