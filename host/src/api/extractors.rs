//! The extractor registry: what this host can run.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};

use super::auth::{Admin, Caller, MayPublish};
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Path, Query};
use crate::catalog::{Named, PublishError};
use crate::store::registry::{
    ExtractorNameRecord, ExtractorVersionRecord, NamespaceRef, Published, PublishedBy, Publisher,
    may_manage, may_use,
};
use crate::store::{KeyId, NamespaceId, Page, Timestamp};
use axum::http::StatusCode;

/// Largest component accepted by a publication, in bytes.
const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/extractors",
            get(list_extractors)
                .post(publish_extractor)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(
            "/v1/extractors/{name}",
            get(get_extractor).patch(update_extractor),
        )
        .route(
            "/v1/extractors/{name}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/v1/extractors/{name}/versions/{version}/deprecate",
            axum::routing::post(deprecate_version),
        )
}

/// A published version with the collections of the caller's namespace
/// that use it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionDetail {
    /// The version.
    #[serde(flatten)]
    pub version: PublishedVersion,
    /// Names of the collections that name this version, or name the
    /// extractor without a version while this is its newest.
    pub used_by: Vec<String>,
    /// Who owns the name and who may use it.
    #[serde(flatten)]
    pub access: NameAccess,
}

/// The record of extractor name `name`, if the caller's namespace may use
/// it (admin keys see every name); otherwise 404, as for a name that does
/// not exist: a private name is not shown to other namespaces.
async fn usable_name(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> ApiResult<Option<ExtractorNameRecord>> {
    let record = state.registry.extractor_name(name).await?;
    if caller.key.admin || may_use(record.as_ref(), &caller.namespace.namespace_id) {
        Ok(record)
    } else {
        Err(ApiError::not_found("extractor", name))
    }
}

/// The published version `name@version` with its name's record, or 404.
async fn find_version(
    state: &AppState,
    caller: &Caller,
    name: &str,
    version: &str,
) -> ApiResult<(ExtractorVersionRecord, Option<ExtractorNameRecord>)> {
    let owner = usable_name(state, caller, name).await?;
    let record = state
        .registry
        .extractor_version(name, version.trim_start_matches('v'))
        .await?
        .filter(|r| r.deleted_at.is_none())
        .ok_or_else(|| ApiError::not_found("extractor version", &format!("{name}@{version}")))?;
    Ok((record, owner))
}

/// A namespace, by id and name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = NamespaceRef)]
pub struct NamespaceRefView {
    /// `ns_…`
    pub namespace_id: NamespaceId,
    /// Its name.
    pub name: String,
}

impl From<NamespaceRef> for NamespaceRefView {
    fn from(n: NamespaceRef) -> Self {
        NamespaceRefView {
            namespace_id: n.namespace_id,
            name: n.name,
        }
    }
}

/// Who published a version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PublishedBy)]
pub struct PublishedByView {
    /// The namespace the key acted in.
    pub namespace: NamespaceRefView,
    /// The key's id (never its secret).
    pub key_id: KeyId,
}

impl From<PublishedBy> for PublishedByView {
    fn from(p: PublishedBy) -> Self {
        PublishedByView {
            namespace: p.namespace.into(),
            key_id: p.key_id,
        }
    }
}
/// Who may do what with an extractor name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NameAccess {
    /// The namespace that owns the name (publishes and deprecates its
    /// versions); absent when it is reserved for admins.
    pub owner: Option<NamespaceRefView>,
    /// Whether every namespace may use it; otherwise only its owner.
    pub public: bool,
}

impl From<Option<&ExtractorNameRecord>> for NameAccess {
    fn from(record: Option<&ExtractorNameRecord>) -> Self {
        match record {
            Some(r) => NameAccess {
                owner: r.owner.clone().map(NamespaceRefView::from),
                public: r.public,
            },
            // A name from before names had owners: reserved, public.
            None => NameAccess {
                owner: None,
                public: true,
            },
        }
    }
}

/// `GET /v1/extractors/{name}/versions/{version}`.
#[utoipa::path(get, path = "/v1/extractors/{name}/versions/{version}", tag = "extractors",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = VersionDetail), (status = 404, body = super::error::Problem)))]
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<VersionDetail>> {
    let (record, owner) = find_version(&state, &caller, &name, &version).await?;
    let newest = state
        .catalog
        .resolve(&name, None)
        .ok()
        .map(|v| v.to_string());
    let follows = newest.as_deref() == Some(record.version.as_str());
    let mut used_by = Vec::new();
    let mut page = crate::store::PageRequest {
        limit: 500,
        after: None,
    };
    loop {
        let collections = state
            .store
            .list_collections(&caller.namespace.namespace_id, &page)
            .await?;
        for c in &collections.items {
            let uses = c.extractors.iter().any(|r| {
                r.name == record.name
                    && match r.version.as_deref() {
                        Some(v) => v.trim_start_matches('v') == record.version,
                        None => follows,
                    }
            });
            if uses {
                used_by.push(c.collection_name.clone());
            }
        }
        match collections.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    Ok(Json(VersionDetail {
        access: owner.as_ref().into(),
        version: record.into(),
        used_by,
    }))
}

/// `POST /v1/extractors/{name}/versions/{version}/deprecate` (an admin key
/// or one with the publish right): a collection naming the extractor
/// without a version stops following it.
#[utoipa::path(post, path = "/v1/extractors/{name}/versions/{version}/deprecate", tag = "extractors",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = PublishedVersion), (status = 404, body = super::error::Problem)))]
pub async fn deprecate_version(
    State(state): State<AppState>,
    MayPublish(caller): MayPublish,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<PublishedVersion>> {
    let (record, owner) = find_version(&state, &caller, &name, &version).await?;
    may_manage(
        &name,
        owner.as_ref(),
        &caller.namespace.namespace_id,
        caller.key.admin,
    )?;
    let record = state
        .registry
        .deprecate(&record.name, &record.version)
        .await?;
    // Other hosts learn of it from the registry within a poll interval.
    state
        .catalog
        .set_deprecated(&record.name, &record.version, &record.content_hash, true);
    Ok(Json(record.into()))
}

/// `DELETE /v1/extractors/{name}/versions/{version}` (admin): refused
/// (409) while a collection names the version or an unfinished batch runs
/// it.
#[utoipa::path(delete, path = "/v1/extractors/{name}/versions/{version}", tag = "extractors",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem)))]
pub async fn delete_version(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (record, _) = find_version(&state, &caller, &name, &version).await?;
    let deleted = state
        .registry
        .delete_version(&record.name, &record.version)
        .await?;
    state
        .catalog
        .remove_published(&deleted.name, &deleted.version, &deleted.content_hash);
    // The component stays in the blob store: a publication of the same
    // bytes racing this deletion may already point at it.
    Ok(StatusCode::NO_CONTENT)
}

/// A published version, as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublishedVersion {
    /// Name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Hex SHA-256 of the component.
    pub content_hash: String,
    /// Size of the component.
    pub size_bytes: u64,
    /// RFC 3339.
    pub published_at: Timestamp,
    /// RFC 3339, once deprecated.
    pub deprecated_at: Option<Timestamp>,
    /// Who published it (absent for a host's own publication and for
    /// versions published before this was recorded).
    pub published_by: Option<PublishedByView>,
    /// The component's manifest.
    #[schema(value_type = Object)]
    pub manifest: serde_json::Value,
}

impl From<ExtractorVersionRecord> for PublishedVersion {
    fn from(r: ExtractorVersionRecord) -> Self {
        PublishedVersion {
            name: r.name,
            version: r.version,
            content_hash: r.content_hash,
            size_bytes: r.size_bytes,
            published_at: r.published_at,
            published_by: r.published_by.map(PublishedByView::from),
            deprecated_at: r.deprecated_at,
            manifest: r.manifest,
        }
    }
}

/// The component sent to `POST /v1/extractors`: the body itself
/// (`application/wasm`), or the `file` part of a `multipart/form-data`
/// body; with the field that held it (`body` or `file`), for messages.
async fn component_body(state: &AppState, request: Request) -> ApiResult<(Bytes, &'static str)> {
    let content_type = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("a component may hold at most {MAX_COMPONENT_BYTES} bytes"),
        )
    };
    let essence = crate::engine::manifest::mime_essence(&content_type);
    match essence {
        "application/wasm" | "application/octet-stream" => Bytes::from_request(request, state)
            .await
            .map(|bytes| (bytes, "body"))
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => too_large(),
                _ => ApiError::bad_request(e.body_text()),
            }),
        "multipart/form-data" => {
            let mut multipart = Multipart::from_request(request, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
            let bad = |e: axum::extract::multipart::MultipartError| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => too_large(),
                _ => ApiError::bad_request(format!("malformed multipart body: {}", e.body_text())),
            };
            // Every part is read, even after a bad one, so the client
            // gets the answer rather than a closed connection.
            let (mut component, mut problem) = (None, None);
            while let Some(field) = multipart.next_field().await.map_err(bad)? {
                let name = field.name().unwrap_or("").to_owned();
                let bytes = field.bytes().await.map_err(bad)?;
                match name.as_str() {
                    _ if problem.is_some() => {}
                    "file" if component.is_none() => component = Some(bytes),
                    "file" => problem = Some(ApiError::invalid("file", "give one `file` part")),
                    other => {
                        problem = Some(ApiError::invalid(
                            if other.is_empty() { "part" } else { other },
                            "unknown part; send the component as the `file` part",
                        ));
                    }
                }
            }
            if let Some(problem) = problem {
                return Err(problem);
            }
            component
                .map(|bytes| (bytes, "file"))
                .ok_or_else(|| ApiError::invalid("file", "missing the `file` part"))
        }
        _ => {
            // Read (up to the limit) so the connection stays usable.
            let _ = Bytes::from_request(request, state).await;
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                format!(
                    "send the component as `application/wasm` or as the `file` part of `multipart/form-data`, not `{content_type}`"
                ),
            ))
        }
    }
}

/// `POST /v1/extractors` (an admin key or one with the publish right):
/// publishes the component in the body (`application/wasm`, or the
/// `file` part of `multipart/form-data`). It is checked before it is accepted: a component
/// of a compatible `strata:extractor` major version that instantiates in
/// the sandbox, with a complete and consistent manifest. 201 for a new
/// version, 200 for the same bytes again, 409 for other bytes under a
/// published name and version, 422 with the reason for a rejected one.
#[utoipa::path(post, path = "/v1/extractors", tag = "extractors",
    request_body(content(
        (Vec<u8> = "application/wasm"),
        (Object = "multipart/form-data"))),
    responses((status = 201, body = PublishedVersion), (status = 200, body = PublishedVersion),
        (status = 403, body = super::error::Problem), (status = 409, body = super::error::Problem),
        (status = 413, body = super::error::Problem), (status = 415, body = super::error::Problem),
        (status = 422, body = super::error::Problem), (status = 429, body = super::error::Problem)))]
pub async fn publish_extractor(
    State(state): State<AppState>,
    MayPublish(caller): MayPublish,
    request: Request,
) -> ApiResult<(StatusCode, Json<PublishedVersion>)> {
    if !caller.key.admin {
        state.tenancy.publish(&caller.key.key_id)?;
    }
    let (body, field) = component_body(&state, request).await?;
    if body.is_empty() {
        return Err(ApiError::invalid(field, "the component is empty"));
    }
    let origin = format!("the {field}");
    let publisher = Publisher {
        by: Some(PublishedBy {
            namespace: NamespaceRef {
                namespace_id: caller.namespace.namespace_id.clone(),
                name: caller.namespace.name.clone(),
            },
            key_id: caller.key.key_id.clone(),
        }),
        admin: caller.key.admin,
    };
    let published = state
        .follower()
        .publish(body, &origin, &publisher)
        .await
        .map_err(|e| match e {
            PublishError::Invalid(e) => ApiError::invalid(field, e.to_string()),
            PublishError::Conflict(detail) => ApiError::conflict(detail),
            PublishError::Forbidden(detail) => ApiError::forbidden(detail),
            e @ (PublishError::Store(_) | PublishError::Blob(_) | PublishError::Join(_)) => {
                ApiError::internal(&e)
            }
        })?;
    Ok(match published {
        Published::New(r) => (StatusCode::CREATED, Json(r.into())),
        Published::Existing(r) => (StatusCode::OK, Json(r.into())),
    })
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
    /// Deprecated: only collections that name this version run it.
    pub deprecated: bool,
    /// Compiled and ready on this host. A published version is loaded on
    /// first use and unloaded when idle.
    pub loaded: bool,
    /// The component's manifest.
    #[schema(value_type = Object)]
    pub manifest: serde_json::Value,
}

/// An extractor with its versions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExtractorInfo {
    /// Name.
    pub name: String,
    /// The version a collection that names the extractor without one
    /// follows: the newest that is not deprecated, a release before a
    /// pre-release (empty when every version is deprecated).
    pub latest_version: String,
    /// The newest version's description.
    pub description: String,
    /// Every version, oldest first.
    pub versions: Vec<ExtractorVersion>,
    /// Who owns the name and who may use it.
    #[serde(flatten)]
    pub access: NameAccess,
}

fn info(named: Named, owner: Option<&ExtractorNameRecord>) -> ExtractorInfo {
    let latest = named
        .versions
        .iter()
        .find(|v| Some(&v.version) == named.newest.as_ref())
        .or_else(|| named.versions.last());
    ExtractorInfo {
        access: owner.into(),
        description: latest
            .and_then(|v| v.manifest["description"].as_str())
            .unwrap_or_default()
            .to_owned(),
        latest_version: named.newest.unwrap_or_default(),
        name: named.name,
        versions: named
            .versions
            .into_iter()
            .map(|v| ExtractorVersion {
                version: v.version,
                content_hash: v.content_hash,
                size_bytes: v.size_bytes,
                deprecated: v.deprecated,
                loaded: v.loaded,
                manifest: v.manifest.as_ref().clone(),
            })
            .collect(),
    }
}

/// `GET /v1/extractors`: every extractor by name, with its versions.
#[utoipa::path(get, path = "/v1/extractors", tag = "extractors", params(ListParams),
    responses((status = 200, body = List<ExtractorInfo>)))]
pub async fn list_extractors(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<ExtractorInfo>>> {
    let page = params.page("extractors")?;
    let names: std::collections::HashMap<String, ExtractorNameRecord> = state
        .registry
        .extractor_names()
        .await?
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let items: Vec<ExtractorInfo> = state
        .catalog
        .snapshot()
        .into_iter()
        .filter(|named| {
            page.after
                .as_deref()
                .is_none_or(|after| named.name.as_str() > after)
        })
        .filter(|named| {
            caller.key.admin || may_use(names.get(&named.name), &caller.namespace.namespace_id)
        })
        .take(page.limit + 1)
        .map(|named| {
            let owner = names.get(&named.name);
            info(named, owner)
        })
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
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ExtractorInfo>> {
    let owner = usable_name(&state, &caller, &name).await?;
    Ok(Json(info(installed(&state, &name)?, owner.as_ref())))
}

/// The installed extractor `name` with its versions, or 404.
fn installed(state: &AppState, name: &str) -> ApiResult<Named> {
    state
        .catalog
        .snapshot()
        .into_iter()
        .find(|named| named.name == name)
        .ok_or_else(|| ApiError::not_found("extractor", name))
}

/// A change to who owns an extractor name and who may use it.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateExtractor {
    /// Transfers the name to this namespace (id or name); admin keys only.
    pub owner: Option<String>,
    /// Reserves the name for admins (no namespace owns it then, and every
    /// namespace may use it); admin keys only.
    pub reserved: Option<bool>,
    /// Lets every namespace use the name (`true`) or only its owner.
    pub public: Option<bool>,
}

/// `PATCH /v1/extractors/{name}`: transfers or reserves a name (admins) or
/// makes it public or private (its owner or an admin).
#[utoipa::path(patch, path = "/v1/extractors/{name}", tag = "extractors",
    params(("name" = String, Path)), request_body = UpdateExtractor,
    responses((status = 200, body = ExtractorInfo), (status = 403, body = super::error::Problem),
        (status = 404, body = super::error::Problem), (status = 422, body = super::error::Problem)))]
pub async fn update_extractor(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(update): Json<UpdateExtractor>,
) -> ApiResult<Json<ExtractorInfo>> {
    let current = usable_name(&state, &caller, &name).await?;
    let named = installed(&state, &name)?;
    may_manage(
        &name,
        current.as_ref(),
        &caller.namespace.namespace_id,
        caller.key.admin,
    )?;
    let mut record = current.unwrap_or_else(|| ExtractorNameRecord::reserved(&name));
    if update.owner.is_some() || update.reserved.is_some() {
        if !caller.key.admin {
            return Err(ApiError::forbidden(
                "only an admin key transfers or reserves an extractor name",
            ));
        }
        if update.owner.is_some() && update.reserved == Some(true) {
            return Err(ApiError::invalid(
                "reserved",
                "a reserved name has no owner: give `owner` or `reserved`, not both",
            ));
        }
    }
    if let Some(owner) = &update.owner {
        let namespace = state
            .store
            .namespace(owner)
            .await?
            .ok_or_else(|| ApiError::invalid("owner", format!("no namespace `{owner}`")))?;
        record.owner = Some(NamespaceRef {
            namespace_id: namespace.namespace_id,
            name: namespace.name,
        });
    }
    if update.reserved == Some(true) {
        record.owner = None;
        record.public = true;
    }
    if let Some(public) = update.public {
        if record.owner.is_none() && !public {
            return Err(ApiError::invalid(
                "public",
                "a name reserved for admins is usable everywhere; transfer it to a namespace first",
            ));
        }
        record.public = public;
    }
    record.updated_at = crate::store::now();
    state.registry.set_extractor_name(&record).await?;
    Ok(Json(info(named, Some(&record))))
}
