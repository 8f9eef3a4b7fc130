//! Namespaces and API keys (admin keys only).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use serde::{Deserialize, Serialize};

use super::auth::Admin;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Path, Query};
use crate::keys;
use crate::store::{ApiKey, KeyId, Namespace, NamespaceId, Timestamp, now};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/namespaces",
            post(create_namespace).get(list_namespaces),
        )
        .route("/v1/api-keys", post(create_key).get(list_keys))
        .route("/v1/api-keys/{key_id}", delete(revoke_key))
}

/// A namespace as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Namespace)]
pub struct NamespaceView {
    /// `ns_…`
    pub namespace_id: NamespaceId,
    /// Unique name.
    pub namespace_name: String,
    /// `namespace_name`, as this field was first called.
    #[schema(deprecated)]
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

impl From<Namespace> for NamespaceView {
    fn from(n: Namespace) -> Self {
        NamespaceView {
            namespace_id: n.namespace_id,
            namespace_name: n.name.clone(),
            name: n.name,
            created_at: n.created_at,
        }
    }
}

/// An API key as the API shows it, without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
pub struct ApiKeyView {
    /// `key_…`
    pub key_id: KeyId,
    /// Free text.
    pub name: Option<String>,
    /// Admin keys act in every namespace and manage namespaces and keys.
    pub admin: bool,
    /// The one namespace a non-admin key may act in.
    pub namespace_id: Option<NamespaceId>,
    /// When it was created.
    pub created_at: Timestamp,
    /// May publish extractor versions, and deprecate those of names its
    /// namespace owns (admin keys always may).
    pub publish: bool,
    /// When the key was last used, to the minute.
    pub last_used_at: Option<Timestamp>,
    /// Made from `STRATA_ADMIN_KEY`: revoked when a start finds another
    /// value there.
    pub from_env: bool,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        ApiKeyView {
            key_id: k.key_id,
            name: k.name,
            admin: k.admin,
            namespace_id: k.namespace_id,
            created_at: k.created_at,
            publish: k.publish,
            last_used_at: k.last_used_at,
            from_env: k.from_env,
        }
    }
}

/// `POST /v1/namespaces` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNamespace {
    /// Unique name: 1–64 letters, digits, `-`, `_` or `.`. (`name` is
    /// still read, as this field was first called.)
    #[serde(alias = "name")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub namespace_name: String,
}

/// The pattern of resource names in `/openapi.json` (utoipa takes a
/// literal there: a test checks that every name field says this):
/// [`check_name`] is the rule, which also refuses a name that starts as an
/// id does.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

/// Prefixes of generated ids.
const ID_PREFIXES: &[&str] = &[
    "ns_", "key_", "bkt_", "obj_", "col_", "btch_", "task_", "doc_",
];

/// Checks a resource name: 1–64 of letters, digits, `-`, `_` and `.`, not
/// starting with a prefix that ids use.
pub fn check_name(field: &str, name: &str) -> ApiResult<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    // `.` and `..` would be path segments a URL resolves away.
    if name.is_empty() || name.len() > 64 || !ok_chars || name == "." || name == ".." {
        return Err(ApiError::invalid(
            field,
            "must be 1–64 letters, digits, `-`, `_` or `.`",
        ));
    }
    // Paths take an id or a name: a name must never read as an id.
    if let Some(prefix) = ID_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(ApiError::invalid(
            field,
            format!("must not start with `{prefix}`, which ids use"),
        ));
    }
    Ok(())
}

/// `POST /v1/namespaces`: creates a namespace.
#[utoipa::path(post, path = "/v1/namespaces", tag = "namespaces", request_body = CreateNamespace,
    responses((status = 201, body = NamespaceView), (status = 409, body = super::error::Problem)))]
pub async fn create_namespace(
    State(state): State<AppState>,
    _admin: Admin,
    Json(body): Json<CreateNamespace>,
) -> ApiResult<(StatusCode, Json<NamespaceView>)> {
    check_name("namespace_name", &body.namespace_name)?;
    let ns = Namespace {
        namespace_id: NamespaceId::generate(),
        name: body.namespace_name,
        created_at: now(),
    };
    state.store.create_namespace(&ns).await?;
    tracing::info!(namespace = %ns.name, id = %ns.namespace_id, "namespace created");
    Ok((StatusCode::CREATED, Json(ns.into())))
}

/// `GET /v1/namespaces`.
#[utoipa::path(get, path = "/v1/namespaces", tag = "namespaces", params(ListParams),
    responses((status = 200, body = List<NamespaceView>)))]
pub async fn list_namespaces(
    State(state): State<AppState>,
    _admin: Admin,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<NamespaceView>>> {
    let page = state
        .store
        .list_namespaces(&params.page("namespaces")?)
        .await?;
    Ok(Json(List::of(page, "namespaces", NamespaceView::from)))
}

/// `POST /v1/api-keys` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Free text, e.g. who uses the key.
    pub name: Option<String>,
    /// Namespace (id or name) the key may act in; default: the caller's.
    pub namespace: Option<String>,
    /// An admin key acts in every namespace and manages namespaces and keys.
    #[serde(default)]
    pub admin: bool,
    /// The key may publish and deprecate extractor versions (shared by
    /// every namespace).
    #[serde(default)]
    pub publish: bool,
}

/// A created key with its secret, shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// Send as `Authorization: Bearer <secret>`. Not retrievable later.
    pub secret: String,
}

/// `POST /v1/api-keys`: creates a key (admin keys only).
#[utoipa::path(post, path = "/v1/api-keys", tag = "namespaces", request_body = CreateKey,
    responses((status = 201, body = CreatedKey)))]
pub async fn create_key(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Json(body): Json<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let namespace_id = if body.admin {
        None
    } else {
        let ns = match &body.namespace {
            Some(wanted) => state.store.namespace(wanted).await?.ok_or_else(|| {
                ApiError::invalid("namespace", format!("no namespace `{wanted}`"))
            })?,
            None => caller.namespace,
        };
        Some(ns.namespace_id)
    };
    let mut key = ApiKey::new(body.name, body.admin, namespace_id);
    key.publish = body.publish;
    let (key, secret) = keys::create(state.store.as_ref(), key).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.into(),
            secret,
        }),
    ))
}

/// `GET /v1/api-keys`: every key with its rights, namespace, creation and
/// last use; never a secret (admin keys only).
#[utoipa::path(get, path = "/v1/api-keys", tag = "namespaces", params(ListParams),
    responses((status = 200, body = List<ApiKeyView>), (status = 403, body = super::error::Problem)))]
pub async fn list_keys(
    State(state): State<AppState>,
    _admin: Admin,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<ApiKeyView>>> {
    let page = state.store.list_keys(&params.page("api-keys")?).await?;
    Ok(Json(List::of(page, "api-keys", ApiKeyView::from)))
}

/// `DELETE /v1/api-keys/{key_id}`: revokes a key at once (admin keys
/// only); the last admin key is kept (409).
#[utoipa::path(delete, path = "/v1/api-keys/{key_id}", tag = "namespaces",
    params(("key_id" = String, Path)),
    responses((status = 204), (status = 403, body = super::error::Problem),
        (status = 404, body = super::error::Problem), (status = 409, body = super::error::Problem)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    _admin: Admin,
    Path(key_id): Path<KeyId>,
) -> ApiResult<StatusCode> {
    state.store.delete_key(&key_id).await?;
    tracing::info!(key = %key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
