//! Blobs in an S3 bucket: AWS S3 or any S3-compatible server (MinIO, Ceph,
//! R2…), with the standard AWS credential chain.
//!
//! Uploads stream from their file: one `PutObject` up to
//! [`S3Blobs::multipart_threshold`], a multipart upload of
//! [`S3Blobs::part_size`] parts above it, so no large object is held in
//! memory. Downloads stream. Every upload carries a SHA-256 checksum that
//! the server verifies. Throttling, 5xx answers and network errors are
//! retried with exponential backoff by the SDK's standard retry mode.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::io::AsyncReadExt as _;

use super::{BlobEntry, BlobError, BlobReader, BlobStore, Result, check_key};

/// Where an S3 blob store lives.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Location {
    /// The S3 bucket.
    pub bucket: String,
    /// Key prefix (no leading or trailing `/`; empty for none).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket/prefix` (the prefix is optional).
    pub fn parse(url: &str) -> std::result::Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{url}` is not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_bucket {
            return Err(format!(
                "`{bucket}` in `{url}` is not an S3 bucket name (3–63 lower-case letters, digits, `-`, `.`)"
            ));
        }
        let prefix = prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() && check_key(&prefix).is_err() {
            return Err(format!("`{prefix}` in `{url}` is not a key prefix"));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix,
        })
    }
}

/// How to reach the S3 service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible server; AWS when absent.
    pub endpoint: Option<String>,
    /// Region; from the AWS configuration chain when absent, else
    /// `us-east-1`.
    pub region: Option<String>,
    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint`.
    pub force_path_style: bool,
}

/// Blobs under a prefix of an S3 bucket.
#[derive(Clone)]
pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    location: S3Location,
    endpoint: Option<String>,
    /// Uploads larger than this go in parts.
    pub multipart_threshold: u64,
    /// Size of one part of a multipart upload (at least 5 MiB for S3).
    pub part_size: usize,
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Blobs")
            .field("location", &self.location)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl S3Blobs {
    /// A store on `location`, with credentials from the standard AWS chain
    /// (environment, profile files, web identity, instance metadata).
    pub async fn connect(location: S3Location, options: &S3Options) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(6)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .force_path_style(options.force_path_style);
        if shared.region().is_none() {
            config = config.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        Self::with_client(
            aws_sdk_s3::Client::from_conf(config.build()),
            location,
            options.endpoint.clone(),
        )
    }

    /// A store using `client` (configured by the caller).
    pub fn with_client(
        client: aws_sdk_s3::Client,
        location: S3Location,
        endpoint: Option<String>,
    ) -> Self {
        S3Blobs {
            client,
            location,
            endpoint,
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
        }
    }

    /// The S3 key of a blob key.
    fn s3_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(if self.location.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.location.prefix)
        })
    }

    fn error<E>(&self, key: &str, e: SdkError<E>) -> BlobError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        BlobError::Backend {
            key: key.to_owned(),
            cause: format!(
                "{} (s3://{}): {}",
                self.endpoint.as_deref().unwrap_or("AWS S3"),
                self.location.bucket,
                DisplayErrorContext(&e)
            )
            .into(),
        }
    }

    async fn put_multipart(&self, key: &str, s3_key: &str, path: &Path) -> Result<()> {
        let bucket = &self.location.bucket;
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(s3_key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| self.error(key, e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| BlobError::backend(key, std::io::Error::other("no upload id")))?
            .to_owned();
        let parts = self.upload_parts(key, s3_key, &upload_id, path).await;
        let completed = match parts {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(s3_key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.error(key, e)),
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Leave no parts behind to be billed for.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(s3_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        completed
    }

    /// Uploads `path` in parts, one part in memory at a time.
    async fn upload_parts(
        &self,
        key: &str,
        s3_key: &str,
        upload_id: &str,
        path: &Path,
    ) -> Result<Vec<CompletedPart>> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| BlobError::backend(key, e))?;
        let mut parts = Vec::new();
        for number in 1.. {
            let mut buffer = Vec::with_capacity(self.part_size);
            (&mut file)
                .take(self.part_size as u64)
                .read_to_end(&mut buffer)
                .await
                .map_err(|e| BlobError::backend(key, e))?;
            if buffer.is_empty() && number > 1 {
                break;
            }
            let last = buffer.len() < self.part_size;
            let part = self
                .client
                .upload_part()
                .bucket(&self.location.bucket)
                .key(s3_key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .body(ByteStream::from(buffer))
                .send()
                .await
                .map_err(|e| self.error(key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .set_checksum_sha256(part.checksum_sha256().map(str::to_owned))
                    .build(),
            );
            if last {
                break;
            }
        }
        Ok(parts)
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let s3_key = self.s3_key(key)?;
        match self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&s3_key)
            .send()
            .await
        {
            Ok(object) => Ok(object.body),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Err(BlobError::NotFound(key.to_owned()))
            }
            Err(e) => Err(self.error(key, e)),
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    fn describe(&self) -> String {
        let prefix = &self.location.prefix;
        match &self.endpoint {
            Some(endpoint) => format!("s3://{}/{prefix} at {endpoint}", self.location.bucket),
            None => format!("s3://{}/{prefix}", self.location.bucket),
        }
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.location.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("", e))
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        let s3_key = self.s3_key(key)?;
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| BlobError::backend(key, e))?
            .len();
        if size > self.multipart_threshold {
            return self.put_multipart(key, &s3_key, path).await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| BlobError::backend(key, e))?;
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&s3_key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error(key, e))
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<()> {
        let s3_key = self.s3_key(key)?;
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&s3_key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error(key, e))
    }

    async fn open(&self, key: &str) -> Result<BlobReader> {
        Ok(Box::pin(self.get(key).await?.into_async_read()))
    }

    async fn read(&self, key: &str) -> Result<Vec<u8>> {
        let body = self.get(key).await?;
        let bytes = body
            .collect()
            .await
            .map_err(|e| BlobError::backend(key, e))?;
        Ok(bytes.into_bytes().to_vec())
    }

    async fn size(&self, key: &str) -> Result<u64> {
        let s3_key = self.s3_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(&s3_key)
            .send()
            .await
        {
            Ok(head) => Ok(head.content_length().unwrap_or(0).max(0) as u64),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                Err(BlobError::NotFound(key.to_owned()))
            }
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn read_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let s3_key = self.s3_key(key)?;
        let range = format!("bytes={start}-{}", start + len - 1);
        let object = match self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&s3_key)
            .range(range)
            .send()
            .await
        {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(BlobError::NotFound(key.to_owned()));
            }
            Err(e) => return Err(self.error(key, e)),
        };
        Ok(object
            .body
            .collect()
            .await
            .map_err(|e| BlobError::backend(key, e))?
            .into_bytes())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let s3_key = self.s3_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.location.bucket)
            .key(&s3_key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error(key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobEntry>> {
        let s3_prefix = format!("{}/", self.s3_key(prefix)?);
        let strip = match self.location.prefix.as_str() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&s3_prefix)
            .into_paginator()
            .send();
        let mut entries = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&strip)) else {
                    continue;
                };
                let modified = object
                    .last_modified()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                    .unwrap_or(std::time::SystemTime::now());
                entries.push(BlobEntry {
                    key: key.to_owned(),
                    modified,
                });
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_with_and_without_prefix() {
        assert_eq!(
            S3Location::parse("s3://strata-data/prod/eu").expect("valid"),
            S3Location {
                bucket: "strata-data".into(),
                prefix: "prod/eu".into()
            }
        );
        assert_eq!(
            S3Location::parse("s3://strata-data").expect("valid").prefix,
            ""
        );
        for bad in [
            "file:///x",
            "s3://",
            "s3://UPPER/x",
            "s3://ab",
            "s3://ok-bucket/../x",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }
}
