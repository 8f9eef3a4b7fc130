//! A JSON upload (`POST …/objects` with `text` or `content_base64`) read
//! without holding it: the request body is spooled to disk as it arrives,
//! then its members are read one at a time and the content is decoded
//! straight into a second file, hashed on the way. Memory stays a few
//! buffers whatever the object's size; small fields and `metadata` are
//! capped while they are read.

use std::fs::File;
use std::io::{BufReader, Read, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use sha2::{Digest, Sha256};
use struson::reader::{JsonReader, JsonStreamReader, ValueType};

use super::{ApiError, ApiResult};

/// Bytes of `metadata` as JSON an object may have.
pub const MAX_METADATA_BYTES: u64 = 64 << 10;
/// Bytes of a small field (`object_id`, `key`, `mime_type`).
const MAX_FIELD_BYTES: u64 = 4096;

/// What a JSON upload held, its content in `content`.
#[derive(Debug, Default)]
pub struct JsonUpload {
    pub object_id: Option<String>,
    pub key: Option<String>,
    pub mime_type: Option<String>,
    pub metadata: Option<Value>,
    /// Size, SHA-256 (hex) and first bytes of the content, once written.
    pub content: Option<(u64, String, Vec<u8>)>,
}

/// A reader that counts what it hands out, and refuses to hand out more
/// than a budget once one is set (the bytes one member may take).
struct Metered<R> {
    inner: R,
    read: Arc<AtomicU64>,
    /// Where reading must stop, as a total; `u64::MAX` without a budget.
    stop_at: Arc<AtomicU64>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.read.load(Ordering::Relaxed);
        let room = self.stop_at.load(Ordering::Relaxed).saturating_sub(read);
        if room == 0 {
            return Err(std::io::Error::other("over its size limit"));
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads the JSON object spooled at `body`, writing its content to
/// `content` (at most `max_content` bytes, or 413).
pub fn read(body: &Path, content: &Path, max_content: u64) -> ApiResult<JsonUpload> {
    let file = File::open(body).map_err(|e| ApiError::internal(&e))?;
    let (read, stop_at) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(u64::MAX)),
    );
    let metered = Metered {
        inner: BufReader::new(file),
        read: read.clone(),
        stop_at: stop_at.clone(),
    };
    let mut json = JsonStreamReader::new(metered);
    // The reader buffers ahead: a budget counts from what it has taken.
    let budget = |bytes: u64| {
        let at = read.load(Ordering::Relaxed);
        stop_at.store(
            at.saturating_add(bytes).saturating_add(64 << 10),
            Ordering::Relaxed,
        );
    };
    let unbounded = || stop_at.store(u64::MAX, Ordering::Relaxed);
    let malformed = |e: &dyn std::fmt::Display| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("the body is not a JSON object: {e}"),
        )
    };
    let mut upload = JsonUpload::default();
    json.begin_object().map_err(|e| malformed(&e))?;
    while json.has_next().map_err(|e| malformed(&e))? {
        budget(MAX_FIELD_BYTES);
        let name = json.next_name_owned().map_err(|e| malformed(&e))?;
        let null = json.peek().map_err(|e| malformed(&e))? == ValueType::Null;
        if null {
            json.next_null().map_err(|e| malformed(&e))?;
            continue;
        }
        match name.as_str() {
            "text" | "content_base64" => {
                if upload.content.is_some() {
                    return Err(ApiError::invalid(
                        "text",
                        "give `text` or `content_base64`, not both",
                    ));
                }
                unbounded();
                let string = json.next_string_reader().map_err(|e| malformed(&e))?;
                let written = if name == "text" {
                    write_content(string, content, max_content)
                } else {
                    let decoder = base64::read::DecoderReader::new(
                        Trimmed(string),
                        &base64::engine::general_purpose::STANDARD,
                    );
                    write_content(decoder, content, max_content).map_err(|e| match e.status {
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE => e,
                        _ => {
                            ApiError::invalid("content_base64", format!("not base64: {}", e.detail))
                        }
                    })
                }?;
                upload.content = Some(written);
            }
            "metadata" => {
                budget(MAX_METADATA_BYTES);
                let value: Value = json.deserialize_next().map_err(|_| {
                    ApiError::invalid(
                        "metadata",
                        format!(
                            "must be a JSON object of at most {} KiB",
                            MAX_METADATA_BYTES >> 10
                        ),
                    )
                })?;
                if serde_json::to_vec(&value).map_or(0, |v| v.len()) as u64 > MAX_METADATA_BYTES {
                    return Err(ApiError::invalid(
                        "metadata",
                        format!("at most {} KiB as JSON", MAX_METADATA_BYTES >> 10),
                    ));
                }
                upload.metadata = Some(value);
            }
            field @ ("object_id" | "key" | "mime_type") => {
                let value = json.next_string().map_err(|_| {
                    ApiError::invalid(
                        field,
                        format!("must be a string of at most {MAX_FIELD_BYTES} bytes"),
                    )
                })?;
                let slot = match field {
                    "object_id" => &mut upload.object_id,
                    "key" => &mut upload.key,
                    _ => &mut upload.mime_type,
                };
                *slot = Some(value);
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown field; expected object_id, key, mime_type, text, content_base64 or metadata",
                ));
            }
        }
    }
    json.end_object().map_err(|e| malformed(&e))?;
    unbounded();
    json.consume_trailing_whitespace()
        .map_err(|e| malformed(&e))?;
    Ok(upload)
}

/// Copies `from` into the file `to`, at most `max` bytes (413 past them);
/// returns the size, SHA-256 and first bytes.
fn write_content(mut from: impl Read, to: &Path, max: u64) -> ApiResult<(u64, String, Vec<u8>)> {
    let mut file = File::create(to).map_err(|e| ApiError::internal(&e))?;
    let (mut size, mut hash, mut head) = (0u64, Sha256::new(), Vec::new());
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(ApiError::bad_request(e.to_string()));
            }
        };
        size += n as u64;
        if size > max {
            return Err(super::objects::too_large(max));
        }
        let chunk = &buffer[..n];
        hash.update(chunk);
        if head.len() < super::objects::HEAD {
            head.extend_from_slice(&chunk[..n.min(super::objects::HEAD - head.len())]);
        }
        file.write_all(chunk).map_err(|e| ApiError::internal(&e))?;
    }
    file.flush().map_err(|e| ApiError::internal(&e))?;
    Ok((size, hex::encode(hash.finalize()), head))
}

/// Base64 text without the whitespace a client may wrap it in.
struct Trimmed<R>(R);

impl<R: Read> Read for Trimmed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.0.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                if !buf[i].is_ascii_whitespace() {
                    buf[kept] = buf[i];
                    kept += 1;
                }
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(body: &str, max: u64) -> ApiResult<(JsonUpload, Vec<u8>)> {
        let dir = tempfile::tempdir().expect("dir");
        let (raw, content) = (dir.path().join("body"), dir.path().join("content"));
        std::fs::write(&raw, body).expect("write");
        let upload = read(&raw, &content, max)?;
        let bytes = std::fs::read(&content).unwrap_or_default();
        Ok((upload, bytes))
    }

    #[test]
    fn content_is_decoded_into_the_file_and_fields_are_read() {
        let (u, bytes) = upload(
            r#"{"object_id": "a", "content_base64": "aGVs\nbG8=", "metadata": {"k": 1}, "key": null}"#,
            100,
        )
        .expect("read");
        assert_eq!(bytes, b"hello");
        assert_eq!(u.object_id.as_deref(), Some("a"));
        assert_eq!(u.key, None);
        assert_eq!(u.metadata, Some(serde_json::json!({"k": 1})));
        let (size, sha, head) = u.content.expect("content");
        assert_eq!((size, head.as_slice()), (5, &b"hello"[..]));
        assert_eq!(sha, hex::encode(Sha256::digest(b"hello")));
        let (u, bytes) = upload(r#"{"text": "Bonjour à tous"}"#, 100).expect("text");
        assert_eq!(bytes, "Bonjour à tous".as_bytes());
        assert!(u.content.is_some());
    }

    #[test]
    fn bad_or_large_input_names_the_field() {
        let field = |body: &str, max: u64| {
            let e = upload(body, max).expect_err("refused");
            (
                e.status.as_u16(),
                e.invalid_params.first().map(|p| p.name.clone()),
            )
        };
        assert_eq!(
            field(r#"{"content_base64": "!!!"}"#, 100),
            (422, Some("content_base64".into()))
        );
        assert_eq!(field(r#"{"text": "0123456789"}"#, 5), (413, None));
        let big = format!(r#"{{"metadata": {{"k": "{}"}}}}"#, "x".repeat(200 << 10));
        assert_eq!(field(&big, 100), (422, Some("metadata".into())));
        let long_id = format!(r#"{{"object_id": "{}"}}"#, "x".repeat(200 << 10));
        assert_eq!(field(&long_id, 100), (422, Some("object_id".into())));
        assert_eq!(field(r#"{"colour": 1}"#, 100), (422, Some("colour".into())));
        assert_eq!(
            field(r#"{"text": "a", "content_base64": "YQ=="}"#, 100),
            (422, Some("text".into()))
        );
        assert_eq!(field(r#"[1]"#, 100), (400, None));
    }
}
