//! Arrow IPC stream encoding of one record batch, as it crosses the
//! component boundary.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamEncoder;
use arrow_schema::ArrowError;

/// Encodes one batch as an Arrow IPC stream (schema, batch, end marker).
/// The arrays' buffers are copied once, straight into the stream.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let parts = encode_batch_parts(batch)?;
    let mut stream = Vec::with_capacity(parts.iter().map(Buffer::len).sum());
    for part in &parts {
        stream.extend_from_slice(part);
    }
    Ok(stream)
}

/// The Arrow IPC stream of one batch as the pieces that, concatenated, make
/// it: the messages' metadata and padding are new, the arrays' buffers are
/// shared with `batch` (no copy). For a writer that copies the pieces to
/// their destination itself.
pub fn encode_batch_parts(batch: &RecordBatch) -> Result<Vec<Buffer>, ArrowError> {
    let mut encoder = StreamEncoder::try_new(&batch.schema())?;
    let mut parts = encoder.encode(batch)?;
    parts.extend(encoder.finish()?);
    Ok(parts)
}

/// Decodes an Arrow IPC stream holding exactly one batch. The batch's
/// buffers point into `bytes` where alignment allows: no copy.
pub fn decode_batch(bytes: Vec<u8>) -> Result<RecordBatch, ArrowError> {
    decode(bytes, StreamDecoder::new())
}

/// Like [`decode_batch`] but without validating the arrays (offsets, UTF-8).
///
/// Used by a component for the batches the host hands it: the host built
/// them from arrays it created or validated itself. The other direction,
/// the host reading what a plugin returns, always validates.
pub(crate) fn decode_trusted_batch(bytes: Vec<u8>) -> Result<RecordBatch, ArrowError> {
    // SAFETY: the bytes come from the host's IPC writer over valid arrays
    // (see above); a host that sent invalid arrays could only corrupt the
    // results of this sandboxed instance, never the host.
    let decoder = unsafe { StreamDecoder::new().with_skip_validation(true) };
    decode(bytes, decoder)
}

fn decode(bytes: Vec<u8>, mut decoder: StreamDecoder) -> Result<RecordBatch, ArrowError> {
    let mut buffer = Buffer::from_vec(bytes);
    let mut batch = None;
    while !buffer.is_empty() {
        if let Some(decoded) = decoder.decode(&mut buffer)? {
            if batch.is_some() {
                return Err(ArrowError::IpcError(
                    "expected one record batch, found more".into(),
                ));
            }
            batch = Some(decoded);
        }
    }
    decoder.finish()?;
    batch.ok_or_else(|| ArrowError::IpcError("stream holds no record batch".into()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray};

    use super::*;

    #[test]
    fn round_trip_keeps_rows_and_types() {
        let batch = RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as ArrayRef,
            ),
        ])
        .expect("batch");
        let decoded = decode_batch(encode_batch(&batch).expect("encode")).expect("decode");
        assert_eq!(decoded, batch);
        let sliced = batch.slice(1, 2);
        let decoded = decode_batch(encode_batch(&sliced).expect("encode")).expect("decode");
        assert_eq!(decoded, sliced);
    }

    #[test]
    fn the_stream_is_standard_arrow_ipc() {
        let lists = arrow_array::ListArray::from_iter_primitive::<
            arrow_array::types::Int32Type,
            _,
            _,
        >([Some(vec![Some(1), None]), None, Some(vec![])]);
        let batch =
            RecordBatch::try_from_iter([("l", Arc::new(lists) as ArrayRef)]).expect("batch");
        let stream = encode_batch(&batch).expect("encode");
        let reader = arrow_ipc::reader::StreamReader::try_new(stream.as_slice(), None)
            .expect("stream reader");
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("batches");
        assert_eq!(batches, [batch]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_batch(vec![0xff; 64]).is_err());
        assert!(decode_batch(Vec::new()).is_err());
    }
}
