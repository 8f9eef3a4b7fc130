//! Batch manifests: one Parquet file per extractor of a submitted batch,
//! listing the objects it will process, so that any worker can run the
//! batch from the blob store alone.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

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

/// Encodes `rows` as Parquet, with `metadata` (e.g. the extractor and its
/// parameters) in the file's key-value metadata.
pub fn write_manifest(
    key: &str,
    rows: &[ManifestRow],
    metadata: &[(&str, String)],
) -> Result<Bytes, ArtifactError> {
    let error = |e: &dyn std::fmt::Display| ArtifactError::Format {
        key: key.to_owned(),
        message: e.to_string(),
    };
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
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
    for part in rows.chunks(ROW_GROUP_ROWS) {
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

/// Decodes a manifest, row group by row group.
pub fn read_manifest(key: &str, bytes: Bytes) -> Result<Vec<ManifestRow>, ArtifactError> {
    let error = |e: &dyn std::fmt::Display| ArtifactError::Format {
        key: key.to_owned(),
        message: e.to_string(),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| error(&e))?
        .with_batch_size(ROW_GROUP_ROWS)
        .build()
        .map_err(|e| error(&e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| error(&e))?;
        if batch.schema().fields() != schema().fields() {
            return Err(error(&"unexpected columns"));
        }
        let text = |i: usize| batch.column(i).as_string::<i32>();
        let (ids, keys, mimes, shas, blobs, metadata) =
            (text(0), text(1), text(2), text(4), text(5), text(6));
        let sizes = batch.column(3).as_primitive::<UInt64Type>();
        let applicable = batch.column(7).as_boolean();
        for i in 0..batch.num_rows() {
            rows.push(ManifestRow {
                object_id: ids.value(i).to_owned(),
                key: keys.value(i).to_owned(),
                mime_type: mimes.value(i).to_owned(),
                size_bytes: sizes.value(i),
                sha256: shas.value(i).to_owned(),
                blob_key: blobs.value(i).to_owned(),
                metadata: metadata.is_valid(i).then(|| metadata.value(i).to_owned()),
                applicable: applicable.value(i),
            });
        }
    }
    Ok(rows)
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
        let bytes = write_manifest("m", &rows, &[("extractor", "x@1.0.0".into())]).expect("write");
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
}
