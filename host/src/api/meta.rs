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
    modifiers(&BearerAuth, &Problems),
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

/// Every error an operation can answer, documented in one place as
/// `application/problem+json` with the one `Problem` schema: the errors
/// any call with a key can meet (a request that cannot be read, a missing
/// or unknown key, a namespace or right the key lacks, an unknown
/// resource or namespace, a server failure), those of a body (too large,
/// another media type, an invalid field) and of a query (an invalid
/// field), besides the ones each handler declares (409, 429, 503).
struct Problems;

/// What an error status means, for the document.
fn problem_description(status: &str) -> &'static str {
    match status {
        "400" => "the request cannot be read: a malformed body, path, header or page token",
        "401" => "no key, or an unknown or revoked one",
        "403" => "the key may not do this, or not in this namespace",
        "404" => "no such resource in this namespace, or no such namespace",
        "409" => "the resource's current state does not allow it",
        "413" => "the body is larger than the server accepts",
        "415" => "the body is not of a media type this operation reads",
        "422" => "a field is invalid; `invalid_params` names each one and why",
        "429" => "a limit of the namespace or key is reached; retry after `Retry-After` seconds",
        "500" => "the server failed; the error is in its log, and retrying may help",
        "503" => "at capacity or not ready; retry after `Retry-After` seconds",
        _ => "an error",
    }
}

impl utoipa::Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::Operation;
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};

        let problem = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build();
        let retry_after = HeaderBuilder::new()
            .schema(
                utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Integer),
            )
            .description(Some("seconds after which trying again may succeed"))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let Operation {
                    responses,
                    request_body,
                    parameters,
                    security,
                    ..
                } = operation;
                let public = security
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|r| *r == Default::default()));
                let is_problem = |response: &RefOr<utoipa::openapi::Response>| {
                    match response {
                    RefOr::T(r) => r.content.values().any(|c| {
                        matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
                    }),
                    RefOr::Ref(_) => false,
                }
                };
                // Declared errors that are problems; an error answered with
                // another body (`/readyz`'s 503) stays as declared.
                let mut statuses: Vec<String> = responses
                    .responses
                    .iter()
                    .filter(|(s, r)| s.as_str() >= "400" && is_problem(r))
                    .map(|(s, _)| s.clone())
                    .collect();
                let declared: Vec<String> = responses.responses.keys().cloned().collect();
                let mut add = |more: &[&str]| {
                    statuses.extend(
                        more.iter()
                            .filter(|s| !declared.iter().any(|d| d == *s))
                            .map(|s| (*s).to_owned()),
                    );
                };
                if !public {
                    add(&["400", "401", "403", "404", "500"]);
                }
                if request_body.is_some() {
                    add(&["413", "415", "422"]);
                }
                let queried = parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query);
                if queried {
                    add(&["422"]);
                }
                for status in statuses {
                    let status = status.as_str();
                    // A handler's own words for its error stay; the generic
                    // ones fill in where it said nothing.
                    let description = match responses.responses.get(status) {
                        Some(RefOr::T(r)) if !r.description.is_empty() => r.description.clone(),
                        _ => problem_description(status).to_owned(),
                    };
                    let mut response = ResponseBuilder::new()
                        .description(description)
                        .content("application/problem+json", problem.clone());
                    if status == "429" || status == "503" {
                        response = response.header("Retry-After", retry_after.clone());
                    }
                    responses
                        .responses
                        .insert(status.to_owned(), RefOr::T(response.build()));
                }
            }
        }
    }
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "the OpenAPI document")))]
pub async fn openapi() -> Json<serde_json::Value> {
    Json(document())
}

/// The OpenAPI document, with the JSON Schema keywords utoipa has no
/// builder for: the `contentSchema` of an event's `data` (the batch).
pub fn document() -> serde_json::Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(data) = document.pointer_mut("/components/schemas/BatchEvent/properties/data") {
        data["contentSchema"] = serde_json::json!({ "$ref": "#/components/schemas/BatchView" });
    }
    document
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_data_is_described_as_the_batch() {
        let doc = document();
        let data = &doc["components"]["schemas"]["BatchEvent"]["properties"]["data"];
        assert_eq!(data["contentMediaType"], "application/json");
        assert_eq!(
            data["contentSchema"]["$ref"],
            "#/components/schemas/BatchView"
        );
        assert!(doc["components"]["schemas"]["BatchView"].is_object());
    }

    #[test]
    fn every_name_field_has_the_one_name_pattern() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("CreateNamespace", "namespace_name"),
            ("CreateBucket", "bucket_name"),
            ("CreateCollection", "collection_name"),
        ] {
            assert_eq!(
                schemas[schema]["properties"][field]["pattern"],
                super::super::namespaces::NAME_PATTERN,
                "{schema}.{field}"
            );
        }
    }

    #[test]
    fn every_error_is_a_problem_and_keyed_operations_document_auth_errors() {
        let doc = document();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("operations") {
                let responses = operation["responses"].as_object().expect("responses");
                for (status, response) in responses {
                    if status.as_str() >= "400" && !(path == "/readyz" && status == "503") {
                        assert_eq!(
                            response["content"]["application/problem+json"]["schema"]["$ref"],
                            "#/components/schemas/Problem",
                            "{method} {path} {status}"
                        );
                        assert!(
                            response["content"].get("application/json").is_none(),
                            "{method} {path} {status}"
                        );
                    }
                }
                if path.starts_with("/v1/") {
                    for status in ["400", "401", "403", "404", "500"] {
                        assert!(responses.contains_key(status), "{method} {path} {status}");
                    }
                    checked += 1;
                }
                if operation.get("requestBody").is_some() {
                    for status in ["413", "415", "422"] {
                        assert!(responses.contains_key(status), "{method} {path} {status}");
                    }
                }
            }
        }
        assert!(checked > 40, "{checked} operations");
        // What the per-namespace limits and planning at capacity answer.
        for (path, method, statuses) in [
            (
                "/v1/buckets/{bucket}/batches/{batch}/submit",
                "post",
                &["429", "503"][..],
            ),
            ("/v1/collections", "post", &["429", "503"]),
            ("/v1/collections/{collection}", "patch", &["429", "503"]),
            ("/v1/extractors", "post", &["429"]),
            ("/v1/buckets/{bucket}/objects", "post", &["429"]),
            (
                "/v1/buckets/{bucket}/batches/{batch}/events",
                "get",
                &["429"],
            ),
        ] {
            for status in statuses {
                let response = &doc["paths"][path][method]["responses"][*status];
                assert!(response.is_object(), "{method} {path} {status}");
                assert!(
                    response["headers"]["Retry-After"].is_object(),
                    "{method} {path} {status}"
                );
            }
        }
        let public = &doc["paths"]["/healthz"]["get"]["security"];
        assert_eq!(public, &serde_json::json!([{}]), "health needs no key");
    }
}
