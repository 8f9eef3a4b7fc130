//! What a plugin may hand the host: the output types documents can carry,
//! and a cap on everything a plugin controls (its manifest, the size of a
//! call's output, its messages, a document), each checked before the host
//! expands or keeps anything.
//!
//! Arrow types that share buffers (dictionaries, views, run-end encoding)
//! can decode to many times their encoded size, so none is an output type;
//! with the allowed types every value has bytes of its own in the IPC
//! stream, and a cap on the values of a call bounds what converting them to
//! documents costs.

use arrow_array::Array;
use arrow_data::ArrayData;
use arrow_schema::DataType;
use serde_json::{Map, Value};

/// Output columns a manifest may declare.
pub const MAX_OUTPUT_COLUMNS: usize = 256;
/// Entries of each of a manifest's lists (dependencies, inputs, MIME
/// patterns).
pub const MAX_LIST_ENTRIES: usize = 64;
/// Bytes of a column name or of a MIME pattern.
pub const MAX_NAME_BYTES: usize = 64;
/// Bytes of a description.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Bytes of a manifest's `params_schema`.
pub const MAX_PARAMS_SCHEMA_BYTES: usize = 64 << 10;
/// Bytes of a column's type as text.
pub const MAX_TYPE_BYTES: usize = 256;
/// Size of a fixed-size list type.
pub const MAX_LIST_SIZE: i32 = 65_536;
/// Levels of nesting of an output type (`List(List(Int32))` has 2).
pub const MAX_TYPE_DEPTH: usize = 4;
/// Bytes of Arrow IPC one call may return.
pub const MAX_CALL_BYTES: usize = 64 << 20;
/// Values (leaves of every column) one call may return.
pub const MAX_CALL_VALUES: usize = 4 << 20;
/// Bytes of one document's features as JSON, well under the 16 MiB a
/// MongoDB document may have.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;
/// Bytes of a message a plugin writes: an error (of a call, a row or a
/// parameter) or a log line.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// What output types may be, for error messages.
pub const OUTPUT_TYPES: &str = "booleans, integers, floats, strings, binary, and lists, \
    fixed-size lists and structs of those";

/// Checks that `data_type` is an output type documents can carry.
pub fn check_output_type(data_type: &DataType) -> Result<(), String> {
    check_type(data_type, 0)
}

fn check_type(data_type: &DataType, depth: usize) -> Result<(), String> {
    use DataType::*;
    if depth > MAX_TYPE_DEPTH {
        return Err(format!(
            "nests more than {MAX_TYPE_DEPTH} levels of lists and structs"
        ));
    }
    match data_type {
        Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float32
        | Float64 | Utf8 | LargeUtf8 | Binary | LargeBinary => Ok(()),
        List(field) | LargeList(field) => check_type(field.data_type(), depth + 1),
        FixedSizeList(field, size) => {
            if !(1..=MAX_LIST_SIZE).contains(size) {
                return Err(format!(
                    "a fixed-size list of {size} values (from 1 to {MAX_LIST_SIZE})"
                ));
            }
            check_type(field.data_type(), depth + 1)
        }
        Struct(fields) if fields.is_empty() => Err("a struct without fields".to_owned()),
        Struct(fields) => fields
            .iter()
            .try_for_each(|f| check_type(f.data_type(), depth + 1)),
        other => Err(format!(
            "{other} is not an output type (allowed: {OUTPUT_TYPES})"
        )),
    }
}

/// Values in `array`: its leaves' lengths, added up. For the allowed types
/// every one of them has bytes of its own in the IPC stream.
pub fn leaf_values(array: &dyn Array) -> usize {
    fn count(data: &ArrayData) -> usize {
        match data.child_data() {
            [] => data.len(),
            children => children.iter().map(count).sum(),
        }
    }
    count(&array.to_data())
}

/// `message`, cut to [`MAX_MESSAGE_BYTES`] (on a character boundary) with
/// how much was cut.
pub fn cut(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let total = message.len();
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!("… ({} more bytes cut)", total - end));
    message
}

/// Bytes of `value` as JSON text.
fn json_bytes(value: &Map<String, Value>) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// At least the bytes of `value` as JSON text, found without writing a
/// number: each counts as the longest a number can take, each string
/// character as an escape.
fn json_bytes_at_most(value: &Value) -> usize {
    /// More than any number takes (`-2.2250738585072014e-308` takes 24).
    const NUMBER: usize = 32;
    /// `\u001f`: the longest escape of one character's byte.
    const ESCAPE: usize = 6;
    let string = |s: &str| 2 + ESCAPE * s.len();
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => NUMBER,
        Value::String(s) => string(s),
        Value::Array(items) => {
            2 + items
                .iter()
                .map(|v| json_bytes_at_most(v) + 1)
                .sum::<usize>()
        }
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| string(k) + 2 + json_bytes_at_most(v))
                .sum::<usize>()
        }
    }
}

/// Keeps a document's features under [`MAX_DOCUMENT_BYTES`]: while they
/// are over it, the largest extractor's features are dropped; returns the
/// extractors dropped with the reason.
pub fn bound_features(features: &mut Map<String, Value>) -> Vec<(String, String)> {
    // Most documents are far under the limit: no need to measure them.
    if features
        .iter()
        .map(|(name, value)| name.len() + 4 + json_bytes_at_most(value))
        .sum::<usize>()
        <= MAX_DOCUMENT_BYTES
    {
        return Vec::new();
    }
    let mut sizes: Vec<(String, usize)> = features
        .iter()
        .filter_map(|(name, value)| match value {
            Value::Object(map) => Some((name.clone(), json_bytes(map))),
            _ => None,
        })
        .collect();
    let mut total: usize = sizes.iter().map(|(name, size)| name.len() + size + 4).sum();
    let mut dropped = Vec::new();
    sizes.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    for (name, size) in sizes {
        if total <= MAX_DOCUMENT_BYTES {
            break;
        }
        features.remove(&name);
        total -= name.len() + size + 4;
        dropped.push((
            name,
            format!(
                "output of {size} bytes as JSON would take the document over its limit of {} MiB",
                MAX_DOCUMENT_BYTES >> 20
            ),
        ));
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(t: &str, expected: Result<(), &str>) {
        let data_type: DataType = t.parse().expect("type");
        assert_eq!(
            check_output_type(&data_type),
            expected.map_err(str::to_owned),
            "{t}"
        );
    }

    #[test]
    fn only_types_documents_carry_are_outputs() {
        for ok in [
            "Boolean",
            "UInt64",
            "Float32",
            "Utf8",
            "LargeBinary",
            "List(Utf8)",
            "FixedSizeList(256 x Float32)",
            "Struct(\"a\": Utf8, \"b\": List(Int32))",
        ] {
            check(ok, Ok(()));
        }
        let not_output = |t: &str| format!("{t} is not an output type (allowed: {OUTPUT_TYPES})");
        check(
            "Dictionary(Int32, Utf8)",
            Err(&not_output("Dictionary(Int32, Utf8)")),
        );
        check(
            "FixedSizeList(1000 x Dictionary(Int32, Utf8))",
            Err(&not_output("Dictionary(Int32, Utf8)")),
        );
        check("Utf8View", Err(&not_output("Utf8View")));
        check("Null", Err(&not_output("Null")));
        check(
            "FixedSizeList(100000 x Float32)",
            Err("a fixed-size list of 100000 values (from 1 to 65536)"),
        );
        check("Struct()", Err("a struct without fields"));
        check(
            "List(List(List(List(List(Int8)))))",
            Err("nests more than 4 levels of lists and structs"),
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short".into()), "short");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = cut(long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!("… ({} more bytes cut)", MAX_MESSAGE_BYTES)));
    }

    #[test]
    fn the_largest_features_go_first_until_a_document_fits() {
        let big = |n: usize| serde_json::json!({ "text": "x".repeat(n) });
        let mut features = Map::new();
        features.insert("small".into(), big(10));
        features.insert("huge".into(), big(MAX_DOCUMENT_BYTES));
        features.insert("medium".into(), big(1000));
        let dropped = bound_features(&mut features);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0, "huge");
        assert!(dropped[0].1.contains("limit of 4 MiB"), "{}", dropped[0].1);
        assert_eq!(features.len(), 2);
    }

    #[test]
    fn the_quick_bound_is_never_below_the_json_size() {
        let values = [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!(i64::MIN),
            serde_json::json!(u64::MAX),
            serde_json::json!(-2.2250738585072014e-308),
            serde_json::json!(-1.7976931348623157e308),
            serde_json::json!(5e-324),
            serde_json::json!(-1.2345678901234567e-5),
            serde_json::json!(-1.2345678901234567e20),
            serde_json::json!("\u{1}\u{1f}\"\\\n é 中 😀"),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!({"\u{1}k\"": [1, [2.5, null, {"x": "\u{7f}"}], "s"], "": {}}),
        ];
        for value in values {
            let exact = serde_json::to_string(&value)
                .map(|s| s.len())
                .unwrap_or(usize::MAX);
            assert!(json_bytes_at_most(&value) >= exact, "{value}");
        }
    }

    #[test]
    fn features_near_the_limit_are_measured_exactly() {
        // Over the quick bound, under the limit: kept.
        let mut features = Map::new();
        features.insert(
            "plain".into(),
            serde_json::json!({ "text": "x".repeat(1 << 20) }),
        );
        assert!(bound_features(&mut features).is_empty());
        assert_eq!(features.len(), 1);
        // Under the limit in bytes, over it once escaped: dropped.
        let mut features = Map::new();
        let control = "\u{1}".repeat(MAX_DOCUMENT_BYTES / 4);
        features.insert("escaped".into(), serde_json::json!({ "text": control }));
        let dropped = bound_features(&mut features);
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(features.is_empty());
    }

    #[test]
    fn leaves_are_counted_through_lists() {
        let list = arrow_array::FixedSizeListArray::from_iter_primitive::<
            arrow_array::types::Int32Type,
            _,
            _,
        >(vec![Some(vec![Some(1); 8]); 3], 8);
        assert_eq!(leaf_values(&list), 24);
    }
}
