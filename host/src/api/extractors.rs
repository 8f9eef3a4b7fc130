//! The extractor registry: what this host can run.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::Serialize;

use super::auth::Caller;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Query};
use crate::engine::{Extractor, Manifest};
use crate::store::Page;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/extractors", get(list_extractors))
        .route("/v1/extractors/{name}", get(get_extractor))
}

/// One version of an extractor.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExtractorVersion {
    /// Semantic version.
    pub version: String,
    /// Hex SHA-256 of the component.
    pub content_hash: String,
    /// Size of the component.
    pub size_bytes: u64,
    /// The component's manifest.
    #[schema(value_type = Object)]
    pub manifest: Manifest,
}

/// An extractor with its versions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExtractorInfo {
    /// Name.
    pub name: String,
    /// Newest version.
    pub latest_version: String,
    /// The newest version's description.
    pub description: String,
    /// Every version, oldest first.
    pub versions: Vec<ExtractorVersion>,
}

fn info(name: &str, versions: &[&Extractor]) -> ExtractorInfo {
    let latest = versions.last().map(|e| e.manifest());
    ExtractorInfo {
        name: name.to_owned(),
        latest_version: latest.map(|m| m.version.to_string()).unwrap_or_default(),
        description: latest.map(|m| m.description.clone()).unwrap_or_default(),
        versions: versions
            .iter()
            .map(|e| ExtractorVersion {
                version: e.manifest().version.to_string(),
                content_hash: e.content_hash().to_owned(),
                size_bytes: e.size_bytes(),
                manifest: e.manifest().as_ref().clone(),
            })
            .collect(),
    }
}

/// `GET /v1/extractors`: every extractor by name, with its versions.
#[utoipa::path(get, path = "/v1/extractors", tag = "extractors", params(ListParams),
    responses((status = 200, body = List<ExtractorInfo>)))]
pub async fn list_extractors(
    State(state): State<AppState>,
    _caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<ExtractorInfo>>> {
    let page = params.page("extractors")?;
    let items: Vec<ExtractorInfo> = state
        .catalog
        .iter()
        .filter(|(name, _)| page.after.as_deref().is_none_or(|after| *name > after))
        .take(page.limit + 1)
        .map(|(name, versions)| info(name, &versions))
        .collect();
    let page = Page::from_overfetch(items, page.limit, |e| e.name.clone());
    Ok(Json(List::of(page, "extractors", |e| e)))
}

/// `GET /v1/extractors/{name}`: its versions and manifests.
#[utoipa::path(get, path = "/v1/extractors/{name}", tag = "extractors",
    params(("name" = String, Path)),
    responses((status = 200, body = ExtractorInfo), (status = 404, body = super::error::Problem)))]
pub async fn get_extractor(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ExtractorInfo>> {
    state
        .catalog
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, versions)| Json(info(n, &versions)))
        .ok_or_else(|| ApiError::not_found("extractor", &name))
}
