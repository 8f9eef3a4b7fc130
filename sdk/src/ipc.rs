//! Arrow IPC stream encoding of one record batch, as it crosses the
//! component boundary.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_data::UnsafeFlag;
use arrow_ipc::Message;
use arrow_ipc::reader::{RecordBatchDecoder, StreamDecoder};
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
/// the host reading what a plugin returns, always validates. (arrow-ipc's
/// `StreamDecoder` does not pass its skip-validation flag on to record
/// batches, so the two messages are read here.)
pub(crate) fn decode_trusted_batch(bytes: Vec<u8>) -> Result<RecordBatch, ArrowError> {
    let stream = Buffer::from_vec(bytes);
    let (schema, at) = message(&stream, 0)?;
    let schema = schema
        .header_as_schema()
        .ok_or_else(|| ipc_error("the stream does not start with a schema"))?;
    let schema = Arc::new(arrow_ipc::convert::try_fb_to_schema(schema)?);
    let (message, at) = message(&stream, at)?;
    let batch = message
        .header_as_record_batch()
        .ok_or_else(|| ipc_error("expected a record batch after the schema"))?;
    let body_length = usize::try_from(message.bodyLength())
        .ok()
        .filter(|length| {
            at.checked_add(*length)
                .is_some_and(|end| end <= stream.len())
        })
        .ok_or_else(|| ipc_error("the record batch's body is cut short"))?;
    let body = stream.slice_with_length(at, body_length);
    let dictionaries = HashMap::new();
    let version = message.version();
    let mut trusted = UnsafeFlag::new();
    // SAFETY: the bytes come from the host's IPC writer over valid arrays
    // (see above); a host that sent invalid arrays could only corrupt the
    // results of this sandboxed instance, never the host.
    unsafe { trusted.set(true) };
    RecordBatchDecoder::try_new(&body, batch, schema, &dictionaries, &version)?
        .with_skip_validation(trusted)
        .read_record_batch()
}

/// The stream message whose framing starts at `at`, and where its metadata
/// ends (its body, if any, follows).
fn message(stream: &[u8], mut at: usize) -> Result<(Message<'_>, usize), ArrowError> {
    let word = |at: usize| -> Result<u32, ArrowError> {
        stream
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| ipc_error("the stream ends inside a message"))
    };
    if word(at)? == u32::MAX {
        at += 4;
    }
    let length = word(at)? as usize;
    at += 4;
    let metadata = stream
        .get(at..)
        .and_then(|rest| rest.get(..length))
        .ok_or_else(|| ipc_error("the stream ends inside a message"))?;
    let message = arrow_ipc::root_as_message(metadata)
        .map_err(|e| ipc_error(&format!("unreadable message: {e}")))?;
    Ok((message, at + length))
}

fn ipc_error(message: &str) -> ArrowError {
    ArrowError::IpcError(message.to_owned())
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
    batch.ok_or_else(|| ipc_error("stream holds no record batch"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray};

    use super::*;

    fn sample() -> RecordBatch {
        RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as ArrayRef,
            ),
        ])
        .expect("batch")
    }

    #[test]
    fn round_trip_keeps_rows_and_types() {
        let batch = sample();
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
    fn trusted_decoding_reads_what_the_encoder_writes_without_validating() {
        let batch = sample();
        for batch in [batch.clone(), batch.slice(1, 2)] {
            let decoded = decode_trusted_batch(encode_batch(&batch).expect("encode"));
            assert_eq!(decoded.expect("decode"), batch);
        }
        // Invalid UTF-8 passes the trusted path only.
        let offsets = arrow_buffer::OffsetBuffer::new(vec![0, 2].into());
        // SAFETY: the array is only encoded, never read as text.
        let invalid = unsafe { StringArray::new_unchecked(offsets, vec![0xff, 0xfe].into(), None) };
        let batch =
            RecordBatch::try_from_iter([("s", Arc::new(invalid) as ArrayRef)]).expect("batch");
        let stream = encode_batch(&batch).expect("encode");
        assert!(decode_batch(stream.clone()).is_err());
        assert_eq!(decode_trusted_batch(stream).expect("trusted").num_rows(), 1);
    }

    #[test]
    fn a_cut_stream_is_an_error_on_both_paths() {
        let stream = encode_batch(&sample()).expect("encode");
        // The last 8 bytes are the end-of-stream marker, which is optional.
        for cut in 0..stream.len() - 8 {
            let part = stream[..cut].to_vec();
            assert!(decode_batch(part.clone()).is_err(), "cut at {cut}");
            assert!(decode_trusted_batch(part).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_batch(vec![0xff; 64]).is_err());
        assert!(decode_batch(Vec::new()).is_err());
    }
}
