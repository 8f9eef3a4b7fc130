//! Webhooks: where a namespace's events go, and how their deliveries went.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Path, Query};
use crate::store::events::{
    DeliveryRecord, DeliveryState, Event, EventType, SigningSecret, WebhookRecord,
};
use crate::store::{DeliveryId, EventId, StoreError, Timestamp, WebhookId, now};
use crate::webhooks::new_secret;

/// How long a rotated-out secret keeps signing.
const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", post(create_webhook).get(list_webhooks))
        .route(
            "/v1/webhooks/{webhook_id}",
            get(get_webhook)
                .patch(update_webhook)
                .delete(delete_webhook),
        )
        .route(
            "/v1/webhooks/{webhook_id}/rotate-secret",
            post(rotate_secret),
        )
        .route("/v1/webhooks/{webhook_id}/test", post(test_webhook))
        .route("/v1/webhooks/{webhook_id}/deliveries", get(list_deliveries))
        .route(
            "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}",
            get(get_delivery),
        )
        .route(
            "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
            post(redeliver),
        )
}

/// `POST /v1/webhooks` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` or `https://` endpoint.
    #[schema(pattern = "^https?://[^/?#@\\s]+([/?#]\\S*)?$")]
    pub url: String,
    /// Event types to send, e.g. `["batch.completed", "collection.documents.written"]`.
    #[schema(value_type = Vec<EventType>, min_items = 1)]
    pub event_types: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Whether events are sent (default true).
    pub active: Option<bool>,
}

/// `PATCH /v1/webhooks/{webhook_id}` body: the fields to change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// New endpoint.
    #[schema(pattern = "^https?://[^/?#@\\s]+([/?#]\\S*)?$")]
    pub url: Option<String>,
    /// New event types.
    #[schema(value_type = Option<Vec<EventType>>, min_items = 1)]
    pub event_types: Option<Vec<String>>,
    /// New description.
    pub description: Option<String>,
    /// Turn sending on (which also clears `disabled_reason`) or off.
    pub active: Option<bool>,
}

/// A webhook as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    /// `wh_…`
    pub webhook_id: WebhookId,
    /// The endpoint.
    pub url: String,
    /// Types sent.
    pub event_types: Vec<EventType>,
    /// Free text.
    pub description: Option<String>,
    /// Whether events are sent.
    pub active: bool,
    /// Why Strata turned it off (the endpoint answered 410 Gone).
    pub disabled_reason: Option<String>,
    /// The signing secret: shown on creation and rotation only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Until when the previous secret also signs (after a rotation).
    pub previous_secret_expires_at: Option<Timestamp>,
    /// RFC 3339.
    pub created_at: Timestamp,
    /// RFC 3339.
    pub updated_at: Timestamp,
}

impl Webhook {
    fn of(record: WebhookRecord, show_secret: bool) -> Self {
        let now = now();
        Webhook {
            secret: show_secret
                .then(|| record.secrets.first().map(|s| s.secret.clone()))
                .flatten(),
            previous_secret_expires_at: record
                .secrets
                .iter()
                .filter_map(|s| s.expires_at)
                .find(|e| *e > now),
            webhook_id: record.webhook_id,
            url: record.url,
            event_types: record.event_types,
            description: record.description,
            active: record.active,
            disabled_reason: record.disabled_reason,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// A delivery as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// `dlv_…`
    pub delivery_id: DeliveryId,
    /// The event (`webhook-id` of every attempt).
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// `pending`, `delivered` or `failed`.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// Status code of the last answer.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (RFC 3339), while pending.
    pub next_attempt_at: Option<Timestamp>,
    /// RFC 3339.
    pub created_at: Timestamp,
    /// RFC 3339.
    pub updated_at: Timestamp,
    /// RFC 3339, once delivered.
    pub delivered_at: Option<Timestamp>,
    /// The request body (on `GET` of one delivery).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

impl Delivery {
    fn of(record: DeliveryRecord, with_payload: bool) -> Self {
        let next_attempt_at = (record.state == DeliveryState::Pending)
            .then(|| Timestamp::from_millis(record.next_attempt_ms))
            .flatten();
        Delivery {
            payload: with_payload
                .then(|| serde_json::from_str(&record.payload).ok())
                .flatten(),
            delivery_id: record.delivery_id,
            event_id: record.event_id,
            event_type: record.event_type,
            state: record.state,
            attempts: record.attempts,
            last_status_code: record.last_status,
            last_error: record.last_error,
            next_attempt_at,
            created_at: record.created_at,
            updated_at: record.updated_at,
            delivered_at: record.delivered_at,
        }
    }
}

/// Checks `url`: absolute, `http` or `https`, with a host.
fn check_url(url: &str) -> ApiResult<()> {
    let parsed =
        url::Url::parse(url).map_err(|e| ApiError::invalid("url", format!("`{url}`: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::invalid(
            "url",
            format!("`{url}`: only http:// and https:// endpoints are supported"),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url", format!("`{url}` has no host")));
    }
    Ok(())
}

/// Parses event type names, naming the first unknown one.
fn event_types(names: &[String]) -> ApiResult<Vec<EventType>> {
    if names.is_empty() {
        return Err(ApiError::invalid(
            "event_types",
            "name at least one event type",
        ));
    }
    let mut types = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let Some(t) = EventType::parse(name) else {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(ApiError::invalid(
                format!("event_types[{i}]"),
                format!("unknown event type `{name}`; known: {}", known.join(", ")),
            ));
        };
        if !types.contains(&t) {
            types.push(t);
        }
    }
    Ok(types)
}

/// The webhook `id` of the caller's namespace, or 404.
async fn find_webhook(
    state: &AppState,
    caller: &Caller,
    id: &WebhookId,
) -> ApiResult<WebhookRecord> {
    state
        .webhooks
        .webhook(&caller.namespace.namespace_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))
}

/// Applies `change` to the webhook `id` and writes it, reading it again if
/// another write (an edit, a rotation, a 410 turning it off) came first.
async fn modify(
    state: &AppState,
    caller: &Caller,
    id: &WebhookId,
    change: impl Fn(&mut WebhookRecord) -> ApiResult<()>,
) -> ApiResult<WebhookRecord> {
    let mut tries = 0;
    loop {
        let mut webhook = find_webhook(state, caller, id).await?;
        change(&mut webhook)?;
        webhook.revision += 1;
        webhook.updated_at = now();
        match state.webhooks.update_webhook(&webhook).await {
            Err(StoreError::Conflict(_)) if tries < 5 => tries += 1,
            other => return other.map(|()| webhook).map_err(Into::into),
        }
    }
}

/// `POST /v1/webhooks`: the webhook, with its signing secret (shown once).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = Webhook), (status = 422, body = super::error::Problem)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<Webhook>)> {
    check_url(&body.url)?;
    let now = now();
    let webhook = WebhookRecord {
        webhook_id: WebhookId::generate(),
        namespace_id: caller.namespace.namespace_id,
        url: body.url,
        event_types: event_types(&body.event_types)?,
        description: body.description,
        active: body.active.unwrap_or(true),
        disabled_reason: None,
        secrets: vec![SigningSecret {
            secret: new_secret(),
            expires_at: None,
        }],
        created_at: now,
        updated_at: now,
        revision: 0,
    };
    state.webhooks.create_webhook(&webhook).await?;
    Ok((StatusCode::CREATED, Json(Webhook::of(webhook, true))))
}

/// `GET /v1/webhooks`.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(ListParams),
    responses((status = 200, body = List<Webhook>)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<Webhook>>> {
    let page = state
        .webhooks
        .list_webhooks(&caller.namespace.namespace_id, &params.page("webhooks")?)
        .await?;
    Ok(Json(List::of(page, "webhooks", |w| Webhook::of(w, false))))
}

/// `GET /v1/webhooks/{webhook_id}`.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 404, body = super::error::Problem)))]
pub async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<WebhookId>,
) -> ApiResult<Json<Webhook>> {
    let webhook = find_webhook(&state, &caller, &id).await?;
    Ok(Json(Webhook::of(webhook, false)))
}

/// `PATCH /v1/webhooks/{webhook_id}`.
#[utoipa::path(patch, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path)), request_body = UpdateWebhook,
    responses((status = 200, body = Webhook), (status = 404, body = super::error::Problem),
        (status = 422, body = super::error::Problem)))]
pub async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<WebhookId>,
    Json(body): Json<UpdateWebhook>,
) -> ApiResult<Json<Webhook>> {
    if let Some(url) = &body.url {
        check_url(url)?;
    }
    let types = body.event_types.as_deref().map(event_types).transpose()?;
    let webhook = modify(&state, &caller, &id, |webhook| {
        if let Some(url) = &body.url {
            webhook.url.clone_from(url);
        }
        if let Some(types) = &types {
            webhook.event_types.clone_from(types);
        }
        if let Some(description) = &body.description {
            webhook.description = Some(description.clone());
        }
        if let Some(active) = body.active {
            webhook.active = active;
            if active {
                webhook.disabled_reason = None;
            }
        }
        Ok(())
    })
    .await?;
    Ok(Json(Webhook::of(webhook, false)))
}

/// `DELETE /v1/webhooks/{webhook_id}`: the webhook and its deliveries.
#[utoipa::path(delete, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::Problem)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<WebhookId>,
) -> ApiResult<StatusCode> {
    state
        .webhooks
        .delete_webhook(&caller.namespace.namespace_id, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{webhook_id}/rotate-secret`: a new secret (shown
/// once); the previous one keeps signing alongside for 24 hours.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    params(("webhook_id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 404, body = super::error::Problem)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<WebhookId>,
) -> ApiResult<Json<Webhook>> {
    let until = Timestamp::from(chrono::Utc::now() + ROTATION_OVERLAP);
    let webhook = modify(&state, &caller, &id, |webhook| {
        let current = webhook
            .secrets
            .iter()
            .find(|s| s.expires_at.is_none())
            .cloned();
        webhook.secrets = std::iter::once(SigningSecret {
            secret: new_secret(),
            expires_at: None,
        })
        .chain(current.map(|s| SigningSecret {
            secret: s.secret,
            expires_at: Some(until),
        }))
        .collect();
        Ok(())
    })
    .await?;
    Ok(Json(Webhook::of(webhook, true)))
}

/// `POST /v1/webhooks/{webhook_id}/test`: sends it a `webhook.test` event.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("webhook_id" = String, Path)),
    responses((status = 202, body = Delivery), (status = 404, body = super::error::Problem)))]
pub async fn test_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<WebhookId>,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
    let webhook = find_webhook(&state, &caller, &id).await?;
    let delivery = state
        .webhooks
        .enqueue(&webhook, &Event::test(&webhook))
        .await?;
    state.webhook_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Delivery::of(delivery, false))))
}

/// `GET /v1/webhooks/{webhook_id}/deliveries`: oldest first.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("webhook_id" = String, Path), ListParams),
    responses((status = 200, body = List<Delivery>), (status = 404, body = super::error::Problem)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<WebhookId>,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<Delivery>>> {
    let webhook = find_webhook(&state, &caller, &id).await?;
    let list = format!("deliveries:{}", webhook.webhook_id);
    let page = state
        .webhooks
        .list_deliveries(&webhook.webhook_id, &params.page(&list)?)
        .await?;
    Ok(Json(List::of(page, &list, |d| Delivery::of(d, false))))
}

/// `GET /v1/webhooks/{webhook_id}/deliveries/{delivery_id}`, with the payload.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}", tag = "webhooks",
    params(("webhook_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = Delivery), (status = 404, body = super::error::Problem)))]
pub async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(WebhookId, DeliveryId)>,
) -> ApiResult<Json<Delivery>> {
    let webhook = find_webhook(&state, &caller, &id).await?;
    state
        .webhooks
        .delivery(&webhook.webhook_id, &delivery_id)
        .await?
        .map(|d| Json(Delivery::of(d, true)))
        .ok_or_else(|| ApiError::not_found("delivery", &delivery_id))
}

/// `POST /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver`:
/// sends a delivered or failed event again (same event id), with a fresh
/// schedule.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    params(("webhook_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = Delivery), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem)))]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(WebhookId, DeliveryId)>,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
    let webhook = find_webhook(&state, &caller, &id).await?;
    let delivery = state
        .webhooks
        .redeliver(&webhook.webhook_id, &delivery_id)
        .await?;
    state.webhook_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Delivery::of(delivery, false))))
}
