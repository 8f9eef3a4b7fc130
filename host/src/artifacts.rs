//! Batch manifests: one Parquet file per extractor of a submitted batch,
//! listing the objects it will process, so that any worker can run the
//! batch from the blob store alone.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;

use crate::blob::{BlobError, BlobStore};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, Length};

/// Rows per Parquet row group (and per record batch read back).
const ROW_GROUP_ROWS: usize = 8192;

/// Why a manifest could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Parquet or Arrow failed.
    #[error("manifest `{key}`: {message}")]
    Format {
        /// Blob key of the manifest.
        key: String,
        /// What failed.
        message: String,
    },
}

/// One object of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// The object.
    pub object_id: String,
    /// Its key (e.g. a path).
    pub key: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Content size in bytes.
    pub size_bytes: u64,
    /// Hex SHA-256 of the content, checked when it is read.
    pub sha256: String,
    /// Where the content lives; empty when the object was deleted before
    /// the batch was submitted.
    pub blob_key: String,
    /// The object's metadata, as JSON text.
    pub metadata: Option<String>,
    /// Whether the extractor accepts the object's MIME type.
    pub applicable: bool,
}

/// Blob key of the manifest of `extractor` in a batch, written by the
/// submit attempt `attempt`.
pub fn manifest_key(
    namespace_id: &str,
    batch_id: &str,
    attempt: &str,
    collection_id: &str,
    extractor: &str,
) -> String {
    format!("manifests/{namespace_id}/{batch_id}/{attempt}/{collection_id}/{extractor}.parquet")
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("object_id", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("mime_type", DataType::Utf8, false),
        Field::new("size_bytes", DataType::UInt64, false),
        Field::new("sha256", DataType::Utf8, false),
        Field::new("blob_key", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("applicable", DataType::Boolean, false),
    ]))
}

/// Encodes `rows` as Parquet in row groups of `group_rows` rows, with
/// `metadata` (e.g. the extractor and its parameters) in the file's
/// key-value metadata.
pub fn write_manifest(
    key: &str,
    rows: &[ManifestRow],
    metadata: &[(&str, String)],
    group_rows: usize,
) -> Result<Bytes, ArtifactError> {
    let group_rows = group_rows.clamp(1, ROW_GROUP_ROWS);
    let error = |e: &dyn std::fmt::Display| ArtifactError::Format {
        key: key.to_owned(),
        message: e.to_string(),
    };
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .set_key_value_metadata(Some(
            metadata
                .iter()
                .map(|(k, v)| KeyValue::new((*k).to_owned(), v.clone()))
                .collect(),
        ))
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema(), Some(props)).map_err(|e| error(&e))?;
    for part in rows.chunks(group_rows) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                part.iter().map(|r| &r.object_id),
            )),
            Arc::new(StringArray::from_iter_values(part.iter().map(|r| &r.key))),
            Arc::new(StringArray::from_iter_values(
                part.iter().map(|r| &r.mime_type),
            )),
            Arc::new(UInt64Array::from_iter_values(
                part.iter().map(|r| r.size_bytes),
            )),
            Arc::new(StringArray::from_iter_values(
                part.iter().map(|r| &r.sha256),
            )),
            Arc::new(StringArray::from_iter_values(
                part.iter().map(|r| &r.blob_key),
            )),
            Arc::new(StringArray::from_iter(
                part.iter().map(|r| r.metadata.as_deref()),
            )),
            Arc::new(BooleanArray::from_iter(
                part.iter().map(|r| Some(r.applicable)),
            )),
        ];
        let batch = RecordBatch::try_new(schema(), columns).map_err(|e| error(&e))?;
        writer.write(&batch).map_err(|e| error(&e))?;
    }
    writer.close().map_err(|e| error(&e))?;
    Ok(Bytes::from(out))
}

/// Decodes a manifest held in memory.
pub fn read_manifest(key: &str, bytes: Bytes) -> Result<Vec<ManifestRow>, ArtifactError> {
    stream_manifest(key, bytes, None)?.collect()
}

/// The rows of a manifest (only those of `rows`, a range of row numbers,
/// when given), decoded one row group at a time from `source`: only the
/// footer and the row group being read are in memory, and row groups
/// outside `rows` are never read.
pub fn stream_manifest<R: ChunkReader + 'static>(
    key: &str,
    source: R,
    rows: Option<std::ops::Range<u64>>,
) -> Result<impl Iterator<Item = Result<ManifestRow, ArtifactError>> + Send, ArtifactError> {
    let owned = key.to_owned();
    let error = move |e: &dyn std::fmt::Display| ArtifactError::Format {
        key: owned.clone(),
        message: e.to_string(),
    };
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(source)
        .map_err(|e| error(&e))?
        .with_batch_size(ROW_GROUP_ROWS);
    let (mut skip, mut take) = (0u64, u64::MAX);
    if let Some(range) = rows {
        let mut groups = Vec::new();
        let mut first_row = None;
        let mut start = 0u64;
        for (i, group) in builder.metadata().row_groups().iter().enumerate() {
            let end = start + group.num_rows().max(0) as u64;
            if end > range.start && start < range.end {
                groups.push(i);
                first_row.get_or_insert(start);
            }
            start = end;
        }
        skip = range.start.saturating_sub(first_row.unwrap_or(range.start));
        take = range.end.saturating_sub(range.start);
        builder = builder.with_row_groups(groups);
    }
    let reader = builder.build().map_err(|e| error(&e))?;
    Ok(reader
        .flat_map(move |batch| {
            let rows: Vec<Result<ManifestRow, ArtifactError>> = match batch {
                Err(e) => vec![Err(error(&e))],
                Ok(batch) if batch.schema().fields() != schema().fields() => {
                    vec![Err(error(&"unexpected columns"))]
                }
                Ok(batch) => decode(&batch).into_iter().map(Ok).collect(),
            };
            rows
        })
        .skip(skip as usize)
        .take(take.min(usize::MAX as u64) as usize))
}

fn decode(batch: &RecordBatch) -> Vec<ManifestRow> {
    let text = |i: usize| batch.column(i).as_string::<i32>();
    let (ids, keys, mimes, shas, blobs, metadata) =
        (text(0), text(1), text(2), text(4), text(5), text(6));
    let sizes = batch.column(3).as_primitive::<UInt64Type>();
    let applicable = batch.column(7).as_boolean();
    (0..batch.num_rows())
        .map(|i| ManifestRow {
            object_id: ids.value(i).to_owned(),
            key: keys.value(i).to_owned(),
            mime_type: mimes.value(i).to_owned(),
            size_bytes: sizes.value(i),
            sha256: shas.value(i).to_owned(),
            blob_key: blobs.value(i).to_owned(),
            metadata: metadata.is_valid(i).then(|| metadata.value(i).to_owned()),
            applicable: applicable.value(i),
        })
        .collect()
}

/// A blob read by byte ranges, for Parquet: the reader asks for the
/// footer and then for one column chunk at a time. Blocks on the blob
/// store, so use it off the async runtime.
#[derive(Clone)]
pub struct BlobSource {
    blobs: Arc<dyn BlobStore>,
    key: String,
    len: u64,
    handle: tokio::runtime::Handle,
    /// Set when a read from the blob store failed: what the reader reports
    /// then is the store's failure, not the blob's content.
    read_failed: Arc<std::sync::atomic::AtomicBool>,
}

/// Bytes fetched at once by a sequential read.
const READ_BLOCK: u64 = 1 << 20;

impl BlobSource {
    /// A source over the blob `key`.
    pub fn open(
        blobs: Arc<dyn BlobStore>,
        key: &str,
        handle: tokio::runtime::Handle,
    ) -> Result<Self, BlobError> {
        let len = handle.block_on(blobs.size(key))?;
        Ok(BlobSource {
            blobs,
            key: key.to_owned(),
            len,
            handle,
            read_failed: Arc::default(),
        })
    }

    /// Whether a read from the blob store has failed (shared by clones):
    /// an error of the reader is then transient, not a bad blob.
    pub fn read_failed(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.read_failed.clone()
    }

    fn fetch(&self, start: u64, len: u64) -> std::io::Result<Bytes> {
        self.handle
            .block_on(self.blobs.read_range(&self.key, start, len))
            .map_err(|e| {
                self.read_failed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                std::io::Error::other(e)
            })
    }
}

impl Length for BlobSource {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for BlobSource {
    type T = BlobRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<BlobRead> {
        Ok(BlobRead {
            source: self.clone(),
            position: start,
            buffer: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let bytes = self
            .fetch(start, length as u64)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        if bytes.len() != length {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "wanted {length} bytes at {start}, got {}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// A sequential read of a [`BlobSource`], a block at a time.
pub struct BlobRead {
    source: BlobSource,
    position: u64,
    buffer: Bytes,
}

impl std::io::Read for BlobRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buffer.is_empty() {
            if self.position >= self.source.len {
                return Ok(0);
            }
            let len = READ_BLOCK.min(self.source.len - self.position);
            self.buffer = self.source.fetch(self.position, len)?;
            self.position += self.buffer.len() as u64;
            if self.buffer.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buffer.len());
        out[..n].copy_from_slice(&self.buffer.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_across_row_groups() {
        let rows: Vec<ManifestRow> = (0..ROW_GROUP_ROWS + 3)
            .map(|i| ManifestRow {
                object_id: format!("obj_{i:06}"),
                key: format!("docs/{i}.txt"),
                mime_type: "text/plain".into(),
                size_bytes: i as u64,
                sha256: format!("{i:064x}"),
                blob_key: if i == 5 {
                    String::new()
                } else {
                    format!("objects/{i}")
                },
                metadata: (i % 2 == 0).then(|| format!("{{\"i\":{i}}}")),
                applicable: i % 3 != 0,
            })
            .collect();
        let bytes = write_manifest(
            "m",
            &rows,
            &[("extractor", "x@1.0.0".into())],
            ROW_GROUP_ROWS,
        )
        .expect("write");
        let meta = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).expect("parquet");
        assert_eq!(meta.metadata().num_row_groups(), 2);
        let kv = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .expect("key-value metadata");
        assert!(
            kv.iter()
                .any(|k| k.key == "extractor" && k.value.as_deref() == Some("x@1.0.0"))
        );
        assert_eq!(read_manifest("m", bytes).expect("read"), rows);
        let garbage = read_manifest("bad", Bytes::from_static(b"not parquet"));
        assert!(garbage.expect_err("garbage").to_string().contains("`bad`"));
    }

    #[test]
    fn a_range_of_rows_reads_only_its_row_groups() {
        let rows: Vec<ManifestRow> = (0..25)
            .map(|i| ManifestRow {
                object_id: format!("obj_{i:02}"),
                key: format!("{i}.txt"),
                mime_type: "text/plain".into(),
                size_bytes: 1,
                sha256: String::new(),
                blob_key: format!("objects/{i}"),
                metadata: None,
                applicable: true,
            })
            .collect();
        let bytes = write_manifest("m", &rows, &[], 10).expect("write");
        let meta = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).expect("parquet");
        assert_eq!(meta.metadata().num_row_groups(), 3);
        for range in [0..10, 10..20, 20..25, 5..15, 24..25] {
            let read: Vec<ManifestRow> = stream_manifest("m", bytes.clone(), Some(range.clone()))
                .expect("open")
                .collect::<Result<_, _>>()
                .expect("read");
            assert_eq!(
                read,
                rows[range.start as usize..range.end as usize],
                "{range:?}"
            );
        }
    }
}
