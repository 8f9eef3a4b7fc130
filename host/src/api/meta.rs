//! The API describing itself: `/openapi.json` and `/metrics`.

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::{ApiError, AppState, Json};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
}

/// The OpenAPI document of every route.
#[derive(OpenApi)]
#[openapi(
    info(title = "Strata", description = "Run sandboxed, hot-swappable feature extractors over batches of stored objects."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        super::health::healthz, super::health::readyz, openapi, metrics,
        super::namespaces::create_namespace, super::namespaces::list_namespaces,
        super::namespaces::create_key, super::namespaces::list_keys,
        super::namespaces::revoke_key,
        super::buckets::create_bucket, super::buckets::list_buckets, super::buckets::get_bucket,
        super::buckets::delete_bucket,
        super::objects::create_object, super::objects::list_objects, super::objects::get_object,
        super::objects::get_content, super::objects::delete_object,
        super::collections::create_collection, super::collections::list_collections,
        super::collections::get_collection, super::collections::update_collection,
        super::collections::delete_collection,
        super::documents::list_documents, super::documents::get_document,
        super::extractors::list_extractors, super::extractors::get_extractor,
        super::extractors::update_extractor,
        super::extractors::publish_extractor, super::extractors::get_version,
        super::extractors::deprecate_version, super::extractors::delete_version,
        super::batches::create_batch, super::batches::list_batches, super::batches::get_batch,
        super::batches::delete_batch, super::batches::add_objects,
        super::batches::list_batch_objects, super::batches::submit_batch,
        super::batches::cancel_batch, super::batches::retry_batch, super::batches::batch_health,
        super::batches::list_shards, super::events::batch_events, super::batches::get_task, super::workers::list_workers,
        super::webhooks::create_webhook, super::webhooks::list_webhooks,
        super::webhooks::get_webhook, super::webhooks::update_webhook,
        super::webhooks::delete_webhook, super::webhooks::rotate_secret,
        super::webhooks::test_webhook, super::webhooks::list_deliveries,
        super::webhooks::get_delivery, super::webhooks::redeliver,
    ),
    tags(
        (name = "health"), (name = "namespaces"), (name = "buckets"), (name = "objects"),
        (name = "collections"), (name = "documents"), (name = "extractors"),
        (name = "batches"), (name = "tasks"), (name = "webhooks"), (name = "workers"),
        (name = "meta"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "the OpenAPI document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(()),
    responses((status = 200, description = "metrics in the Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => {
            for (field, gauge) in [
                ("VmRSS:", "strata_process_resident_memory_bytes"),
                ("VmHWM:", "strata_process_peak_resident_memory_bytes"),
            ] {
                if let Some(bytes) = process_memory(field) {
                    metrics::gauge!(gauge).set(bytes as f64);
                }
            }
            let mut response = handle.render().into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "metrics are not enabled in this process",
        )
        .into_response(),
    }
}

/// A memory figure of this process from `/proc/self/status` (`field` is
/// e.g. `VmHWM:`, the peak resident set), in bytes; `None` off Linux.
fn process_memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Counts every request and its duration by route, method and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("strata_http_requests_total", &labels).increment(1);
    metrics::histogram!("strata_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
