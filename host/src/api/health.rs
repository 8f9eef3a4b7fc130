//! Liveness and readiness.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;

use super::{AppState, Json};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness: the process answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: &'static str,
}

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, body = Liveness)))]
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// One backend's readiness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackendStatus {
    /// `store` or `blobs`.
    pub name: &'static str,
    /// The backend, e.g. `sqlite:///data/strata.db`.
    pub backend: String,
    /// Whether it answered.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Readiness of every backend.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// Each backend.
    pub backends: Vec<BackendStatus>,
}

/// `GET /readyz`: 200 when every backend answers, else 503.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let store = state.store.ping().await.err().map(|e| e.to_string());
    let blobs = state.blobs.ping().await.err().map(|e| e.to_string());
    let ok = store.is_none() && blobs.is_none();
    let backends = vec![
        BackendStatus {
            name: "store",
            backend: state.store.describe(),
            ok: store.is_none(),
            error: store,
        },
        BackendStatus {
            name: "blobs",
            backend: state.blobs.describe(),
            ok: blobs.is_none(),
            error: blobs,
        },
    ];
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let readiness = Readiness {
        status: if ok { "ready" } else { "unavailable" },
        backends,
    };
    (status, Json(readiness))
}
