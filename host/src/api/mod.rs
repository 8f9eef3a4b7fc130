//! The REST API: the only module that knows HTTP.
//!
//! One [`AppState`] holds the backends; [`router`] maps every route. Errors
//! are RFC 9457 problem documents ([`error`]); lists share one pagination
//! ([`ListParams`], [`List`]).

pub mod auth;
pub mod batches;
pub mod buckets;
pub mod collections;
pub mod console;
pub mod documents;
pub mod error;
pub mod events;
pub mod extractors;
pub mod health;
mod json_upload;
pub mod meta;
pub mod namespaces;
pub mod objects;
pub mod tenancy;
pub mod webhooks;
pub mod workers;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub use error::{ApiError, ApiResult};

use crate::blob::BlobStore;
use crate::catalog::Catalog;
use crate::store::{DocumentSink, Page, PageRequest, Store, Webhooks};

/// Everything a handler needs.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Metadata and tasks.
    pub store: Arc<dyn Store>,
    /// Documents.
    pub documents: Arc<dyn DocumentSink>,
    /// Webhooks and their deliveries.
    pub webhooks: Arc<dyn Webhooks>,
    /// Wakes this process's webhook sender when a delivery is due now.
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// Object contents and artifacts.
    pub blobs: Arc<dyn BlobStore>,
    /// The extractors this host runs.
    pub catalog: Arc<Catalog>,
    /// Published extractor versions.
    pub registry: Arc<dyn crate::store::Registry>,
    /// Loads and checks components.
    pub engine: crate::engine::Engine,
    /// Where uploads are spooled before they reach the blob store.
    pub spool_dir: PathBuf,
    /// Largest object content accepted, in bytes.
    pub max_object_bytes: u64,
    /// Largest JSON body accepted (other than object uploads), in bytes.
    pub max_body_bytes: usize,
    /// Wakes this process's pollers when a batch is queued.
    pub wake: Arc<tokio::sync::Notify>,
    /// When a batch counts as degraded or unhealthy.
    pub health: crate::progress::HealthPolicy,
    /// Renders `/metrics`, when this process records metrics.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// When this process last recorded each key's use.
    pub key_uses: Arc<auth::KeyUses>,
    /// What each namespace has in flight, against its limits.
    pub tenancy: Arc<tenancy::Tenancy>,
    /// Objects per shard of a submitted batch.
    pub shard_objects: u64,
    /// The batches this process watches for event streams.
    pub watchers: Arc<events::BatchWatchers>,
    /// Cancelled when the process shuts down: responses that would go on
    /// (event streams) end, so a graceful shutdown never waits for them.
    pub stop: tokio_util::sync::CancellationToken,
}

impl AppState {
    /// What submits batches, over this state's stores and catalog.
    pub fn submitter(&self) -> crate::batches::Submitter {
        crate::batches::Submitter {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            catalog: self.catalog.clone(),
            registry: self.registry.clone(),
            shard_objects: self.shard_objects,
        }
    }

    /// The catalog with what publishes into it and keeps it current.
    pub fn follower(&self) -> crate::catalog::Follower {
        crate::catalog::Follower {
            catalog: self.catalog.clone(),
            registry: self.registry.clone(),
            blobs: self.blobs.clone(),
            engine: self.engine.clone(),
        }
    }
}

/// All routes; the web console's under `/console/` when `console`.
pub fn router(state: AppState, console: bool) -> Router {
    let json_limit = axum::extract::DefaultBodyLimit::max(state.max_body_bytes);
    let console = if console {
        console::routes()
    } else {
        Router::new()
    };
    Router::new()
        .merge(console)
        .merge(health::routes())
        .merge(namespaces::routes())
        .merge(buckets::routes())
        .merge(collections::routes())
        .merge(documents::routes())
        .merge(batches::routes())
        .merge(webhooks::routes())
        .merge(workers::routes())
        .merge(extractors::routes())
        .merge(meta::routes())
        .layer(json_limit)
        .merge(objects::routes(&state))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not-found",
                "no such route",
            )
        })
        .layer(axum::middleware::from_fn(meta::track))
        .with_state(state)
}

/// What a worker process serves: its liveness, readiness and metrics,
/// nothing of the API.
pub fn worker_router(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .route("/metrics", axum::routing::get(meta::metrics))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not-found",
                "a worker serves /healthz, /readyz and /metrics only",
            )
        })
        .layer(axum::middleware::from_fn(meta::track))
        .with_state(state)
}

/// A JSON body whose rejections are problem documents. It must be a JSON
/// object: serde would otherwise read a struct from an array of its
/// fields' values (`[null, null]`).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        // axum checks the media type and the syntax; the raw text is kept.
        let axum::Json(raw) =
            axum::Json::<Box<serde_json::value::RawValue>>::from_request(request, state).await?;
        if !raw.get().starts_with('{') {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(raw.get().as_bytes())?;
        Ok(Json(value))
    }
}

impl<T: Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON body that may be left out: an empty body reads as `None`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::http::header::CONTENT_TYPE;
        let content_type = request.headers().get(CONTENT_TYPE).cloned();
        // `Bytes` honours the router's body limit.
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                    e.status(),
                    "payload-too-large",
                    "the request body is larger than the server accepts",
                ),
                _ => ApiError::bad_request(format!(
                    "the request body cannot be read: {}",
                    e.body_text()
                )),
            })?;
        // No body, or `null`: no options.
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(None));
        }
        let mut request = axum::extract::Request::new(axum::body::Body::from(bytes));
        if let Some(content_type) = content_type {
            request.headers_mut().insert(CONTENT_TYPE, content_type);
        }
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(OptionalJson(Some(value)))
    }
}

/// Path parameters whose rejections are problem documents.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A query string whose rejections are problem documents.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Default and largest page sizes.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Pagination of every list: `?limit=N&page_token=T`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Most results per page (1–1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// One page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct List<T> {
    /// The results of this page.
    pub results: Vec<T>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Token {
    /// Which list (and filter) the token belongs to.
    l: String,
    /// Sort key of the last result returned.
    a: String,
}

impl ListParams {
    /// The page asked for, of the list named `list` (with its filters).
    pub fn page(&self, list: &str) -> ApiResult<PageRequest> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
            ));
        }
        let after = match &self.page_token {
            None => None,
            Some(token) => {
                let bad = || {
                    ApiError::bad_request(format!("invalid `page_token` for this list: `{token}`"))
                };
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .map_err(|_| bad())?;
                let token: Token = serde_json::from_slice(&bytes).map_err(|_| bad())?;
                if token.l != list {
                    return Err(bad());
                }
                Some(token.a)
            }
        };
        Ok(PageRequest { limit, after })
    }
}

impl<T> List<T> {
    /// The response for `page` of the list named `list`, mapping records.
    pub fn of<R>(page: Page<R>, list: &str, f: impl FnMut(R) -> T) -> Self {
        let next_page_token = page.next.map(|a| {
            let token = Token {
                l: list.to_owned(),
                a,
            };
            let json = serde_json::to_vec(&token).unwrap_or_default();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        });
        List {
            results: page.items.into_iter().map(f).collect(),
            next_page_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_belong_to_one_list() {
        let page = Page {
            items: vec![1, 2],
            next: Some("bkt_2".to_owned()),
        };
        let list = List::of(page, "buckets", |x| x);
        let token = list.next_page_token.expect("a next page");
        let params = ListParams {
            limit: Some(2),
            page_token: Some(token.clone()),
        };
        assert_eq!(
            params.page("buckets").expect("valid").after.as_deref(),
            Some("bkt_2")
        );
        assert_eq!(params.page("objects").expect_err("other list").status, 400);
        let garbage = ListParams {
            limit: None,
            page_token: Some("%%%".into()),
        };
        assert_eq!(garbage.page("buckets").expect_err("garbage").status, 400);
        let zero = ListParams {
            limit: Some(0),
            page_token: None,
        };
        assert_eq!(zero.page("buckets").expect_err("zero").status, 422);
        let huge = ListParams {
            limit: Some(1 << 30),
            page_token: None,
        };
        assert_eq!(huge.page("buckets").expect_err("over the most").status, 422);
        let most = ListParams {
            limit: Some(MAX_LIMIT),
            page_token: None,
        };
        assert_eq!(most.page("buckets").expect("the most").limit, MAX_LIMIT);
    }
}
