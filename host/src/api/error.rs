//! RFC 9457 problem details: the one shape of every API error.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::blob::BlobError;
use crate::store::StoreError;

/// An API error, rendered as `application/problem+json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short slug of the problem type, e.g. `not-found`.
    pub kind: &'static str,
    /// What went wrong, for a human.
    pub detail: String,
    /// The offending input fields, each with the reason.
    pub invalid_params: Vec<InvalidParam>,
    /// Seconds after which trying again may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// One offending input field.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InvalidParam {
    /// Field name or JSON path, e.g. `extractors[1].params.k`.
    pub name: String,
    /// Why it was refused.
    pub reason: String,
}

/// The problem document (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI identifying the problem type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Explanation of this occurrence.
    pub detail: String,
    /// The offending input fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_params: Vec<InvalidParam>,
}

/// An API result.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `status`, problem slug `kind` and `detail`.
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            detail: detail.into(),
            invalid_params: Vec::new(),
            retry_after: None,
        }
    }

    /// 429: a limit of the caller's namespace is reached; trying again
    /// after `retry_after` seconds may succeed.
    pub fn too_many(detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too-many-requests", detail)
        }
    }

    /// 400: the request cannot be read.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 404: no such resource in this namespace.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{kind} `{id}` not found"),
        )
    }

    /// 503: a pipeline that cannot be planned just now, or 422 naming the
    /// field of one that cannot be planned at all; `prefix` leads the
    /// field's path.
    pub fn pipeline(e: crate::pipeline::PipelineError, prefix: &str) -> Self {
        if e.unavailable {
            ApiError {
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{}; try again", e.message),
                )
            }
        } else {
            Self::invalid(format!("{prefix}{}", e.field), e.message)
        }
    }

    /// 403: the caller may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 409: the resource's state or an existing resource forbids this.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 422 naming one invalid field.
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        let (name, reason) = (name.into(), reason.into());
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "invalid-request",
            detail: format!("`{name}`: {reason}"),
            invalid_params: vec![InvalidParam { name, reason }],
            retry_after: None,
        }
    }

    /// 422 naming several invalid fields.
    pub fn invalid_many(detail: impl Into<String>, params: Vec<InvalidParam>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "invalid-request",
            detail: detail.into(),
            invalid_params: params,
            retry_after: None,
        }
    }

    /// 500: hides `source` from the client and logs it.
    pub fn internal(source: &dyn std::error::Error) -> Self {
        tracing::error!(error = %DisplayChain(source), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; the error is in its log",
        )
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("urn:strata:problem:{}", self.kind),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            invalid_params: self.invalid_params.clone(),
        }
    }
}

/// Formats an error with its chain of sources.
struct DisplayChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => ApiError::not_found(kind, &id),
            StoreError::Conflict(detail) => ApiError::conflict(detail),
            e @ (StoreError::Batch(_) | StoreError::Taken { .. }) => {
                ApiError::conflict(e.to_string())
            }
            StoreError::Forbidden(detail) => ApiError::forbidden(detail),
            e @ (StoreError::Backend(_) | StoreError::LeaseLost(_)) => ApiError::internal(&e),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        ApiError::internal(&e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        let status = e.status();
        let detail = e.body_text();
        match e {
            JsonRejection::JsonDataError(_) => {
                // "Failed to deserialize …: <path>: <reason>": name the field.
                let reason = detail
                    .split_once(": ")
                    .map_or(detail.as_str(), |(_, rest)| rest);
                let (name, why) = match reason.split_once(": ") {
                    Some((path, why)) if !path.contains(' ') => (path.to_owned(), why.to_owned()),
                    _ => (field_of(reason), reason.to_owned()),
                };
                ApiError::invalid(name, why)
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                status,
                "unsupported-media-type",
                "expected a JSON body with `Content-Type: application/json`",
            ),
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                status,
                "payload-too-large",
                "the request body is larger than the server accepts",
            ),
            _ => ApiError::new(status, "malformed-json", detail),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        match e {
            // A route without the parameters its handler reads: the
            // server's own fault, not the request's.
            PathRejection::MissingPathParams(_) => ApiError::internal(&e),
            e => ApiError::bad_request(e.body_text()),
        }
    }
}

/// The field a serde message names (e.g. "missing field `bucket_name`").
fn field_of(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map_or_else(|| "body".to_owned(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(
            field_of("missing field `bucket_name` at line 1 column 2"),
            "bucket_name"
        );
        assert_eq!(field_of("expected a string"), "body");
    }

    #[test]
    fn a_problem_has_the_rfc_9457_members() {
        let e = ApiError::invalid("limit", "must be at least 1");
        let v = serde_json::to_value(e.problem()).expect("serializes");
        assert_eq!(v["type"], "urn:strata:problem:invalid-request");
        assert_eq!(v["title"], "Unprocessable Entity");
        assert_eq!(v["status"], 422);
        assert_eq!(v["invalid_params"][0]["name"], "limit");
    }
}
