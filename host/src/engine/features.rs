//! A step's output columns as the features of documents: one JSON object
//! per row, read from the Arrow arrays value by value.
//!
//! The JSON is what Arrow's JSON writer gives for the output types
//! ([`limits::check_output_type`](super::limits::check_output_type)): a
//! row's and a struct's null values are left out; a null list item, NaN
//! and an infinite float are `null`; binary is lowercase hex; a 32-bit
//! float is the shortest decimal that reads back as it. Floats are closer:
//! a 64-bit float is itself and a 32-bit float's decimal is read with
//! correct rounding, where a round trip through JSON text (serde_json's
//! default parser) could land an ulp off.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, StructArray};
use arrow_schema::DataType;
use serde_json::{Map, Value};

/// Row `row` of the columns `names` / `columns` as a JSON object.
pub(super) fn row_object<'a>(
    names: impl IntoIterator<Item = &'a str>,
    columns: &[ArrayRef],
    row: usize,
) -> Map<String, Value> {
    let mut object = Map::new();
    for (name, column) in names.into_iter().zip(columns) {
        if column.is_valid(row) {
            object.insert(name.to_owned(), value(column.as_ref(), row));
        }
    }
    object
}

/// Value `i` of `array`.
fn value(array: &dyn Array, i: usize) -> Value {
    use DataType::*;
    if array.is_null(i) {
        return Value::Null;
    }
    match array.data_type() {
        Boolean => Value::Bool(array.as_boolean().value(i)),
        Int8 => array.as_primitive::<Int8Type>().value(i).into(),
        Int16 => array.as_primitive::<Int16Type>().value(i).into(),
        Int32 => array.as_primitive::<Int32Type>().value(i).into(),
        Int64 => array.as_primitive::<Int64Type>().value(i).into(),
        UInt8 => array.as_primitive::<UInt8Type>().value(i).into(),
        UInt16 => array.as_primitive::<UInt16Type>().value(i).into(),
        UInt32 => array.as_primitive::<UInt32Type>().value(i).into(),
        UInt64 => array.as_primitive::<UInt64Type>().value(i).into(),
        Float32 => float32(array.as_primitive::<Float32Type>().value(i)),
        Float64 => float64(array.as_primitive::<Float64Type>().value(i)),
        Utf8 => array.as_string::<i32>().value(i).into(),
        LargeUtf8 => array.as_string::<i64>().value(i).into(),
        Binary => hex::encode(array.as_binary::<i32>().value(i)).into(),
        LargeBinary => hex::encode(array.as_binary::<i64>().value(i)).into(),
        List(_) => list(array.as_list::<i32>().value(i).as_ref()),
        LargeList(_) => list(array.as_list::<i64>().value(i).as_ref()),
        FixedSizeList(..) => list(array.as_fixed_size_list().value(i).as_ref()),
        Struct(_) => Value::Object(struct_object(array.as_struct(), i)),
        // Never: outputs of other types are refused at the boundary.
        _ => Value::Null,
    }
}

fn list(items: &dyn Array) -> Value {
    Value::Array((0..items.len()).map(|i| value(items, i)).collect())
}

fn struct_object(array: &StructArray, i: usize) -> Map<String, Value> {
    let names = array.fields().iter().map(|f| f.name().as_str());
    row_object(names, array.columns(), i)
}

fn float64(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// The shortest decimal that reads back as `x`, as a 64-bit float: `0.1`
/// for `0.1f32`, not `0.10000000149011612`.
fn float32(x: f32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let mut buffer = [0u8; <f32 as lexical_core::FormattedSize>::FORMATTED_SIZE];
    match lexical_core::parse::<f64>(lexical_core::write(x, &mut buffer)) {
        Ok(wide) => float64(wide),
        Err(_) => float64(f64::from(x)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{
        FixedSizeListBuilder, Int32Builder, LargeListBuilder, ListBuilder, StringBuilder,
    };
    use arrow_array::{
        BinaryArray, BooleanArray, Float32Array, Float64Array, Int8Array, Int64Array,
        LargeBinaryArray, LargeStringArray, RecordBatch, StringArray, UInt64Array,
    };
    use arrow_buffer::NullBuffer;
    use arrow_schema::{Field, Fields};

    use super::*;

    /// Pseudo-random bits, the same on every run.
    fn bits(n: usize) -> Vec<u64> {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            })
            .collect()
    }

    /// Every output type, with nulls at every level and awkward values.
    fn every_type(rows: usize) -> RecordBatch {
        let random = bits(rows * 2);
        let mut f32s: Vec<Option<f32>> = random
            .iter()
            .take(rows)
            .map(|b| Some(f32::from_bits(*b as u32)))
            .collect();
        let mut f64s: Vec<Option<f64>> = random[rows..]
            .iter()
            .map(|b| Some(f64::from_bits(*b)))
            .collect();
        let specials = [
            0.0,
            -0.0,
            0.1,
            1.0,
            1e-7,
            3.4e38,
            f64::NAN,
            f64::INFINITY,
            5e-324,
        ];
        for (i, s) in specials.iter().enumerate() {
            f32s[i] = Some(*s as f32);
            f64s[i] = Some(*s);
        }
        f32s[specials.len()] = None;
        f64s[specials.len()] = None;
        let every = |k: usize| (0..rows).map(move |i| i % k != k - 1);
        let strings: StringArray = (0..rows)
            .map(|i| (i % 5 != 4).then(|| format!("r{i} \u{1}\"\\\n é 中 😀")))
            .collect();
        let mut list = ListBuilder::new(arrow_array::builder::Float32Builder::new());
        let mut large_list = LargeListBuilder::new(StringBuilder::new());
        let mut fixed = FixedSizeListBuilder::new(Int32Builder::new(), 3);
        for i in 0..rows {
            for k in 0..i % 4 {
                list.values()
                    .append_option((k != 1).then_some(k as f32 / 3.0));
                large_list
                    .values()
                    .append_option((k != 2).then(|| format!("{i}.{k}")));
            }
            list.append(i % 6 != 5);
            large_list.append(i % 7 != 6);
            for k in 0..3 {
                fixed
                    .values()
                    .append_option((k != 1 || i % 2 == 0).then_some(i as i32 * k));
            }
            fixed.append(i % 8 != 7);
        }
        let inner = StructArray::new(
            Fields::from(vec![Field::new("d", DataType::Float64, true)]),
            vec![Arc::new(Float64Array::from(
                (0..rows)
                    .map(|i| (i % 3 != 0).then_some(i as f64 * 0.25))
                    .collect::<Vec<_>>(),
            ))],
            None,
        );
        let structs = StructArray::new(
            Fields::from(vec![
                Field::new("a", DataType::Int8, true),
                Field::new("s", DataType::Utf8, true),
                Field::new("inner", inner.data_type().clone(), true),
            ]),
            vec![
                Arc::new(Int8Array::from(
                    (0..rows)
                        .map(|i| (i % 2 == 0).then_some(i as i8))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(strings.clone()),
                Arc::new(inner),
            ],
            Some(NullBuffer::from_iter(every(9))),
        );
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "bool",
                Arc::new(BooleanArray::from_iter(
                    (0..rows).map(|i| (i % 3 != 2).then_some(i % 2 == 0)),
                )),
            ),
            (
                "i64",
                Arc::new(Int64Array::from_iter(
                    (0..rows).map(|i| (i % 4 != 3).then_some(i64::MIN + i as i64 * 977)),
                )),
            ),
            (
                "u64",
                Arc::new(UInt64Array::from_iter_values(
                    (0..rows).map(|i| u64::MAX - i as u64),
                )),
            ),
            ("f32", Arc::new(Float32Array::from(f32s))),
            ("f64", Arc::new(Float64Array::from(f64s))),
            ("text", Arc::new(strings.clone())),
            (
                "large_text",
                Arc::new(LargeStringArray::from_iter(strings.iter())),
            ),
            (
                "bytes",
                Arc::new(BinaryArray::from_iter(
                    (0..rows).map(|i| (i % 3 != 1).then(|| vec![i as u8, 0, 255])),
                )),
            ),
            (
                "large_bytes",
                Arc::new(LargeBinaryArray::from_iter_values(
                    (0..rows).map(|i| vec![i as u8; i % 3]),
                )),
            ),
            ("list", Arc::new(list.finish())),
            ("large_list", Arc::new(large_list.finish())),
            ("fixed", Arc::new(fixed.finish())),
            ("struct", Arc::new(structs)),
        ];
        RecordBatch::try_from_iter(columns).expect("a batch of every type")
    }

    /// What Arrow's JSON writer and a JSON reader make of `batch`.
    fn through_json_text(batch: &RecordBatch) -> Vec<Map<String, Value>> {
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        writer.write(batch).expect("written");
        writer.finish().expect("finished");
        serde_json::from_slice(&writer.into_inner()).expect("read back")
    }

    /// Equal, but for 64-bit floats, which the JSON reader may put an ulp
    /// or two off.
    fn assert_same(ours: &Value, theirs: &Value, at: &str) {
        match (ours, theirs) {
            (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
                let (a, b) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                let ulps = (a.to_bits() as i64).abs_diff(b.to_bits() as i64);
                assert!(a == b || ulps <= 2, "{at}: {a:e} vs {b:e}");
            }
            (Value::Array(a), Value::Array(b)) => {
                assert_eq!(a.len(), b.len(), "{at}");
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    assert_same(x, y, &format!("{at}[{i}]"));
                }
            }
            (Value::Object(a), Value::Object(b)) => {
                let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
                assert_eq!(keys(a), keys(b), "{at}");
                for (k, x) in a {
                    assert_same(x, &b[k], &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(ours, theirs, "{at}"),
        }
    }

    #[test]
    fn rows_are_what_arrows_json_writer_gives() {
        let batch = every_type(600);
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let expected = through_json_text(&batch);
        assert_eq!(expected.len(), batch.num_rows());
        for (row, theirs) in expected.iter().enumerate() {
            let ours = row_object(names.iter().map(String::as_str), batch.columns(), row);
            assert_same(
                &Value::Object(ours),
                &Value::Object(theirs.clone()),
                &format!("row {row}"),
            );
        }
    }

    #[test]
    fn a_float32_is_its_shortest_decimal() {
        assert_eq!(float32(0.1).to_string(), "0.1");
        assert_eq!(float32(-3.4e38).as_f64(), Some(-3.4e38));
        assert_eq!(
            float32(312_985.0 + 0.125).as_f64(),
            Some(312985.13),
            "a tie rounds up"
        );
        assert_eq!(float32(f32::NAN), Value::Null);
        assert_eq!(float32(f32::NEG_INFINITY), Value::Null);
        assert_eq!(float64(1.0 / 3.0).as_f64(), Some(1.0 / 3.0));
    }
}
