//! Objects of a bucket: upload (multipart or JSON), list, read, delete.
//!
//! An upload's content is written to the blob store under a key of its own
//! before the record is inserted, so a failed or conflicting upload never
//! touches another object's content, and a record always has its content.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::auth::Caller;
use super::buckets::find_bucket;
use super::{ApiError, ApiResult, AppState, Json, List, ListParams, Path, Query};
use crate::blob::object_key;
use crate::run::sniff_mime;
use crate::store::{Bucket, BucketId, NamespaceId, ObjectId, ObjectRecord, Timestamp, new_id, now};

/// Routes, with a body limit sized for uploads.
pub fn routes(state: &AppState) -> Router<AppState> {
    let limit = usize::try_from(json_body_limit(state.max_object_bytes)).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/v1/buckets/{bucket}/objects",
            get(list_objects).post(create_object),
        )
        .route(
            "/v1/buckets/{bucket}/objects/{object_id}",
            get(get_object).delete(delete_object),
        )
        .route(
            "/v1/buckets/{bucket}/objects/{object_id}/content",
            get(get_content),
        )
        .layer(axum::extract::DefaultBodyLimit::max(limit))
}

/// The largest body an upload of at most `max_object_bytes` takes: base64
/// in JSON takes 4 bytes per 3, plus the other fields.
fn json_body_limit(max_object_bytes: u64) -> u64 {
    (max_object_bytes / 3 * 4).saturating_add(1 << 20)
}

/// `POST …/objects` as JSON.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateObject {
    /// Id of your choice, unique in the bucket (default: a new `obj_…`):
    /// 1–128 letters, digits, `-`, `_` or `.`.
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    pub object_id: Option<ObjectId>,
    /// Name of the object, e.g. a path (default: the object id).
    #[schema(min_length = 1, max_length = 1024)]
    pub key: Option<String>,
    /// MIME type (default: sniffed from the key and the content).
    pub mime_type: Option<String>,
    /// Content as text (UTF-8). Exactly one of `text` and `content_base64`.
    pub text: Option<String>,
    /// Content as base64.
    pub content_base64: Option<String>,
    /// Your metadata: a JSON object, kept in every document of the object.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// The fields of an upload, whichever way it came.
struct Upload {
    object_id: Option<ObjectId>,
    key: Option<String>,
    mime_type: Option<String>,
    metadata: Option<Value>,
    content: Option<Spooled>,
}

/// Content spooled to a file as it arrived: size, SHA-256 and first bytes.
struct Spooled {
    file: SpoolFile,
    size: u64,
    sha256: String,
    head: Vec<u8>,
}

/// A spooled upload, removed when dropped unless it was moved away.
struct SpoolFile(PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bytes kept for MIME sniffing.
pub(super) const HEAD: usize = 8192;

fn check_object_id(id: &str) -> ApiResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "object_id",
            "must be 1–128 letters, digits, `-`, `_` or `.`",
        ))
    }
}

fn check_mime(mime: &str) -> ApiResult<String> {
    let mime = mime.trim().to_ascii_lowercase();
    match mime.parse::<mime_guess::mime::Mime>() {
        Ok(_) => Ok(mime),
        Err(_) => Err(ApiError::invalid(
            "mime_type",
            format!("`{mime}` is not a MIME type"),
        )),
    }
}

fn check_metadata(metadata: Option<Value>) -> ApiResult<Option<Value>> {
    match metadata {
        None | Some(Value::Null) => Ok(None),
        Some(m @ Value::Object(_)) => Ok(Some(m)),
        Some(_) => Err(ApiError::invalid("metadata", "must be a JSON object")),
    }
}

pub(super) fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        format!("the object's content is larger than the server accepts ({max} bytes)"),
    )
}

/// An object as the API shows it: its record, without where its content
/// is stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ObjectView {
    /// `obj_…`, unique in the bucket (a client may choose it).
    pub object_id: ObjectId,
    /// Owning bucket.
    pub bucket_id: BucketId,
    /// Owning namespace.
    pub namespace_id: NamespaceId,
    /// The object's name, e.g. a file path.
    pub key: String,
    /// Declared or sniffed MIME type.
    pub mime_type: String,
    /// Content size.
    pub size_bytes: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Client metadata (a JSON object).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// RFC 3339.
    pub created_at: Timestamp,
}

impl From<ObjectRecord> for ObjectView {
    fn from(o: ObjectRecord) -> Self {
        ObjectView {
            object_id: o.object_id,
            bucket_id: o.bucket_id,
            namespace_id: o.namespace_id,
            key: o.key,
            mime_type: o.mime_type,
            size_bytes: o.size_bytes,
            sha256: o.sha256,
            metadata: o.metadata,
            created_at: o.created_at,
        }
    }
}

/// `POST /v1/buckets/{bucket}/objects`: uploads an object, as
/// `multipart/form-data` (a `file` part, optional `metadata` JSON,
/// `object_id`, `key`, `mime_type`) or as JSON ([`CreateObject`]).
#[utoipa::path(post, path = "/v1/buckets/{bucket}/objects", tag = "objects",
    params(("bucket" = String, Path, description = "bucket id or name")),
    request_body(content(
        (CreateObject = "application/json"),
        (Object = "multipart/form-data"))),
    responses((status = 201, body = ObjectView), (status = 409, body = super::error::Problem),
        (status = 413, body = super::error::Problem), (status = 422, body = super::error::Problem),
        (status = 429, body = super::error::Problem)))]
pub async fn create_object(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
    request: Request,
) -> ApiResult<(StatusCode, Json<ObjectView>)> {
    let bucket = find_bucket(&state, &caller, &bucket).await?;
    // What the body may hold, held against the namespace's uploads in
    // flight until the object is stored.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let _upload = state.tenancy.upload(
        &bucket.namespace_id,
        declared.unwrap_or(state.max_object_bytes),
    )?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let upload = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        read_multipart(&state, multipart).await?
    } else if crate::engine::manifest::mime_essence(&content_type) == "application/json" {
        json_upload(&state, request).await?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the object as `multipart/form-data` or as JSON with `Content-Type: application/json`",
        ));
    };
    let object = store_upload(&state, &bucket, upload).await?;
    Ok((StatusCode::CREATED, Json(object.into())))
}

/// A JSON upload, spooled to disk as it arrives and read member by member
/// (`json_upload::read`): the content is never held in memory.
async fn json_upload(state: &AppState, request: Request) -> ApiResult<Upload> {
    let raw = SpoolFile(state.spool_dir.join(new_id("body")));
    let mut file = tokio::fs::File::create(&raw.0)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let mut body = request.into_body().into_data_stream();
    let (limit, mut received) = (json_body_limit(state.max_object_bytes), 0u64);
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(too_large(state.max_object_bytes));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(&e))?;
    }
    file.flush().await.map_err(|e| ApiError::internal(&e))?;
    drop(file);
    let content = SpoolFile(state.spool_dir.join(new_id("upload")));
    let (raw_path, content_path, max) = (raw.0.clone(), content.0.clone(), state.max_object_bytes);
    let read = tokio::task::spawn_blocking(move || {
        super::json_upload::read(&raw_path, &content_path, max)
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    let Some((size, sha256, head)) = read.content else {
        return Err(ApiError::invalid(
            "text",
            "give the content as `text` or `content_base64`",
        ));
    };
    Ok(Upload {
        object_id: read.object_id.map(ObjectId::from),
        key: read.key,
        mime_type: read.mime_type,
        metadata: read.metadata,
        content: Some(Spooled {
            file: content,
            size,
            sha256,
            head,
        }),
    })
}

async fn read_multipart(state: &AppState, mut multipart: Multipart) -> ApiResult<Upload> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(state.max_object_bytes)
        } else {
            ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    let mut upload = Upload {
        object_id: None,
        key: None,
        mime_type: None,
        metadata: None,
        content: None,
    };
    let mut file_seen = false;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" => {
                if file_seen {
                    return Err(ApiError::invalid("file", "give one `file` part"));
                }
                file_seen = true;
                if upload.key.is_none() {
                    upload.key = field.file_name().map(str::to_owned);
                }
                let part_type = field
                    .content_type()
                    .filter(|t| !t.eq_ignore_ascii_case("application/octet-stream"))
                    .map(str::to_owned);
                if upload.mime_type.is_none() {
                    upload.mime_type = part_type;
                }
                let spool = SpoolFile(state.spool_dir.join(new_id("upload")));
                let mut file = tokio::fs::File::create(&spool.0)
                    .await
                    .map_err(|e| ApiError::internal(&e))?;
                let (mut size, mut hash, mut head) = (0u64, Sha256::new(), Vec::new());
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    size += chunk.len() as u64;
                    if size > state.max_object_bytes {
                        return Err(too_large(state.max_object_bytes));
                    }
                    hash.update(&chunk);
                    if head.len() < HEAD {
                        head.extend_from_slice(&chunk[..chunk.len().min(HEAD - head.len())]);
                    }
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| ApiError::internal(&e))?;
                }
                file.flush().await.map_err(|e| ApiError::internal(&e))?;
                upload.content = Some(Spooled {
                    file: spool,
                    size,
                    sha256: hex::encode(hash.finalize()),
                    head,
                });
            }
            "metadata" | "object_id" | "key" | "mime_type" => {
                let text = field.text().await.map_err(bad)?;
                match name.as_str() {
                    "metadata" => {
                        let max = super::json_upload::MAX_METADATA_BYTES;
                        if text.len() as u64 > max {
                            return Err(ApiError::invalid(
                                "metadata",
                                format!("at most {} KiB as JSON", max >> 10),
                            ));
                        }
                        let value = serde_json::from_str(&text)
                            .map_err(|e| ApiError::invalid("metadata", format!("not JSON: {e}")))?;
                        upload.metadata = Some(value);
                    }
                    "object_id" => upload.object_id = Some(text.into()),
                    "key" => upload.key = Some(text),
                    _ => upload.mime_type = Some(text),
                }
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown part; expected file, metadata, object_id, key or mime_type",
                ));
            }
        }
    }
    if upload.content.is_none() {
        return Err(ApiError::invalid("file", "missing the `file` part"));
    }
    Ok(upload)
}

async fn store_upload(
    state: &AppState,
    bucket: &Bucket,
    upload: Upload,
) -> ApiResult<ObjectRecord> {
    let object_id = match upload.object_id {
        Some(id) => {
            check_object_id(&id)?;
            id
        }
        None => ObjectId::generate(),
    };
    let metadata = check_metadata(upload.metadata)?;
    let key = upload.key.unwrap_or_else(|| object_id.to_string());
    if key.is_empty() || key.len() > 1024 {
        return Err(ApiError::invalid("key", "must be 1–1024 bytes"));
    }
    let Some(content) = upload.content else {
        return Err(ApiError::invalid("file", "missing the content"));
    };
    let head = &content.head[..];
    let mime_type = match upload.mime_type {
        Some(m) => check_mime(&m)?,
        None => sniff_mime(std::path::Path::new(&key), head),
    };
    let blob_key = format!(
        "{}/{}",
        object_key(&bucket.namespace_id, &bucket.bucket_id, &object_id),
        ulid::Ulid::new().to_string().to_lowercase()
    );
    state.blobs.put_file(&blob_key, &content.file.0).await?;
    let (size_bytes, sha256) = (content.size, content.sha256);
    let object = ObjectRecord {
        object_id,
        bucket_id: bucket.bucket_id.clone(),
        namespace_id: bucket.namespace_id.clone(),
        key,
        mime_type,
        size_bytes,
        sha256,
        metadata,
        blob_key: blob_key.clone(),
        created_at: now(),
    };
    if let Err(e) = state.store.create_object(&object).await {
        if let Err(cleanup) = state.blobs.delete(&blob_key).await {
            tracing::warn!(error = %cleanup, "an unrecorded upload stays in the blob store");
        }
        return Err(e.into());
    }
    Ok(object)
}

async fn find_object(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    object_id: &ObjectId,
) -> ApiResult<ObjectRecord> {
    let bucket = find_bucket(state, caller, bucket).await?;
    state
        .store
        .object(&bucket.bucket_id, object_id)
        .await?
        .ok_or_else(|| ApiError::not_found("object", object_id))
}

/// `GET /v1/buckets/{bucket}/objects`.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects", tag = "objects",
    params(("bucket" = String, Path, description = "bucket id or name"), ListParams),
    responses((status = 200, body = List<ObjectView>)))]
pub async fn list_objects(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<List<ObjectView>>> {
    let bucket = find_bucket(&state, &caller, &bucket).await?;
    let page = state
        .store
        .list_objects(&bucket.bucket_id, &params.page("objects")?)
        .await?;
    Ok(Json(List::of(page, "objects", ObjectView::from)))
}

/// `GET /v1/buckets/{bucket}/objects/{object_id}`.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects/{object_id}", tag = "objects",
    params(("bucket" = String, Path, description = "bucket id or name"), ("object_id" = String, Path)),
    responses((status = 200, body = ObjectView), (status = 404, body = super::error::Problem)))]
pub async fn get_object(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, object_id)): Path<(String, ObjectId)>,
) -> ApiResult<Json<ObjectView>> {
    Ok(Json(
        find_object(&state, &caller, &bucket, &object_id)
            .await?
            .into(),
    ))
}

/// `GET /v1/buckets/{bucket}/objects/{object_id}/content`: the bytes, with
/// the object's MIME type and its SHA-256 as ETag.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects/{object_id}/content", tag = "objects",
    params(("bucket" = String, Path, description = "bucket id or name"), ("object_id" = String, Path)),
    responses((status = 200, description = "the content"), (status = 404, body = super::error::Problem)))]
pub async fn get_content(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, object_id)): Path<(String, ObjectId)>,
) -> ApiResult<Response> {
    let object = find_object(&state, &caller, &bucket, &object_id).await?;
    let reader = state.blobs.open(&object.blob_key).await?;
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(reader)).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&object.mime_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.size_bytes));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", object.sha256)) {
        headers.insert(header::ETAG, v);
    }
    // Uploaded bytes are a tenant's, not ours: a browser must neither guess
    // their type nor run them as a page of this origin.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if !shown_inline(&object.mime_type) {
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
    Ok(response)
}

/// Whether a browser may show content of type `mime` in place: media and
/// plain text, which run no script; anything it would render as a page or
/// a document (HTML, SVG, XML, PDF…) is downloaded instead.
fn shown_inline(mime: &str) -> bool {
    let essence = crate::engine::manifest::mime_essence(mime).to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/').unwrap_or(("", ""));
    match kind {
        "image" => !subtype.contains("svg") && !subtype.contains("xml"),
        "audio" | "video" => true,
        "text" => subtype == "plain",
        "application" => subtype == "json" || subtype == "octet-stream",
        _ => false,
    }
}

/// `DELETE /v1/buckets/{bucket}/objects/{object_id}`.
#[utoipa::path(delete, path = "/v1/buckets/{bucket}/objects/{object_id}", tag = "objects",
    params(("bucket" = String, Path, description = "bucket id or name"), ("object_id" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::Problem)))]
pub async fn delete_object(
    State(state): State<AppState>,
    caller: Caller,
    Path((bucket, object_id)): Path<(String, ObjectId)>,
) -> ApiResult<StatusCode> {
    let bucket = find_bucket(&state, &caller, &bucket).await?;
    let blob_key = state
        .store
        .delete_object(&bucket.bucket_id, &object_id)
        .await?;
    if let Err(e) = state.blobs.delete(&blob_key).await {
        tracing::warn!(error = %e, "a deleted object's content stays behind");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::shown_inline;

    #[test]
    fn only_content_that_runs_no_script_is_shown_in_place() {
        for (mime, inline) in [
            ("image/png", true),
            ("image/jpeg", true),
            ("text/plain; charset=utf-8", true),
            ("application/json", true),
            ("video/mp4", true),
            ("image/svg+xml", false),
            ("text/html", false),
            ("TEXT/HTML; charset=utf-8", false),
            ("application/xhtml+xml", false),
            ("application/pdf", false),
            ("text/xml", false),
            ("application/javascript", false),
            ("", false),
        ] {
            assert_eq!(shown_inline(mime), inline, "{mime}");
        }
    }
}
