//! The `columnar` interface: Arrow columns to and from WIT values, for
//! extractors written without an Arrow library (Python, JavaScript).
//!
//! A guest's output becomes the record batch the Arrow IPC path would have
//! decoded (the session's columns in their declared types, then `_error`),
//! and goes through the same checks after this module: row count, types,
//! value and byte caps. Here it is only converted, and every mismatch
//! (a column missing or out of order, a value of another kind, an integer
//! outside its type, a fixed-size list of another size, a row error for a
//! row that does not exist) is a named error, never a panic.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field};

use super::executor::ERROR_COLUMN;
use super::limits;
use super::manifest::ColumnSpec;
use crate::engine::columnar_bindings::exports::strata::extractor::columnar::{
    NamedValues, Output, Values,
};

/// The kinds of values the interface has: each Arrow type it carries is
/// one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Booleans,
    Integers,
    Floats,
    Strings,
    Binaries,
    IntegerLists,
    FloatLists,
    StringLists,
}

impl Kind {
    /// The kind of values `data_type` crosses the interface as, if any.
    fn of(data_type: &DataType) -> Option<Kind> {
        use DataType::*;
        Some(match data_type {
            Boolean => Kind::Booleans,
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => Kind::Integers,
            Float32 | Float64 => Kind::Floats,
            Utf8 | LargeUtf8 => Kind::Strings,
            Binary | LargeBinary => Kind::Binaries,
            List(item) | LargeList(item) | FixedSizeList(item, _) => match item.data_type() {
                Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => {
                    Kind::IntegerLists
                }
                Float32 | Float64 => Kind::FloatLists,
                Utf8 => Kind::StringLists,
                _ => return None,
            },
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Booleans => "booleans",
            Kind::Integers => "integers",
            Kind::Floats => "floats",
            Kind::Strings => "strings",
            Kind::Binaries => "binaries",
            Kind::IntegerLists => "integer-lists",
            Kind::FloatLists => "float-lists",
            Kind::StringLists => "string-lists",
        }
    }

    /// The Arrow type values of this kind are built in, before the cast to
    /// the column's own type.
    fn wide_type(self) -> DataType {
        let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
        match self {
            Kind::Booleans => DataType::Boolean,
            Kind::Integers => DataType::Int64,
            Kind::Floats => DataType::Float64,
            Kind::Strings => DataType::Utf8,
            Kind::Binaries => DataType::Binary,
            Kind::IntegerLists => list(DataType::Int64),
            Kind::FloatLists => list(DataType::Float64),
            Kind::StringLists => list(DataType::Utf8),
        }
    }
}

fn kind_of_values(values: &Values) -> Kind {
    match values {
        Values::Booleans(_) => Kind::Booleans,
        Values::Integers(_) => Kind::Integers,
        Values::Floats(_) => Kind::Floats,
        Values::Strings(_) => Kind::Strings,
        Values::Binaries(_) => Kind::Binaries,
        Values::IntegerLists(_) => Kind::IntegerLists,
        Values::FloatLists(_) => Kind::FloatLists,
        Values::StringLists(_) => Kind::StringLists,
    }
}

/// Why a type cannot cross the interface, or `Ok`.
pub fn check_type(data_type: &DataType) -> Result<(), String> {
    match Kind::of(data_type) {
        Some(_) => Ok(()),
        None => Err(format!(
            "{data_type} cannot cross the columnar interface (it carries booleans, integers, \
             floats, strings, binary, and lists of integers, floats or strings)"
        )),
    }
}

/// Casts that fail on a value the target type cannot hold.
const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: arrow_cast::display::FormatOptions::new(),
};

/// An input column as WIT values.
pub fn to_values(array: &dyn Array) -> Result<Values, String> {
    let kind = Kind::of(array.data_type())
        .ok_or_else(|| check_type(array.data_type()).err().unwrap_or_default())?;
    let wide = cast_with_options(array, &kind.wide_type(), &STRICT).map_err(|e| e.to_string())?;
    let rows = 0..wide.len();
    let valid = |i: usize| wide.is_valid(i);
    Ok(match kind {
        Kind::Booleans => {
            let a = wide.as_boolean();
            Values::Booleans(rows.map(|i| valid(i).then(|| a.value(i))).collect())
        }
        Kind::Integers => {
            let a = wide.as_primitive::<Int64Type>();
            Values::Integers(rows.map(|i| valid(i).then(|| a.value(i))).collect())
        }
        Kind::Floats => {
            let a = wide.as_primitive::<Float64Type>();
            Values::Floats(rows.map(|i| valid(i).then(|| a.value(i))).collect())
        }
        Kind::Strings => {
            let a = wide.as_string::<i32>();
            Values::Strings(
                rows.map(|i| valid(i).then(|| a.value(i).to_owned()))
                    .collect(),
            )
        }
        Kind::Binaries => {
            let a = wide.as_binary::<i32>();
            Values::Binaries(
                rows.map(|i| valid(i).then(|| a.value(i).to_vec()))
                    .collect(),
            )
        }
        Kind::IntegerLists => Values::IntegerLists(list_values(&wide, |items| {
            let items = items.as_primitive::<Int64Type>();
            items.iter().map(Option::unwrap_or_default).collect()
        })),
        Kind::FloatLists => Values::FloatLists(list_values(&wide, |items| {
            let items = items.as_primitive::<Float64Type>();
            items.iter().map(|v| v.unwrap_or(f64::NAN)).collect()
        })),
        Kind::StringLists => Values::StringLists(list_values(&wide, |items| {
            let items = items.as_string::<i32>();
            items
                .iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect()
        })),
    })
}

/// The rows of a `List` array, each list's items read by `items`.
fn list_values<T>(wide: &ArrayRef, items: impl Fn(&dyn Array) -> Vec<T>) -> Vec<Option<Vec<T>>> {
    let lists = wide.as_list::<i32>();
    (0..lists.len())
        .map(|i| lists.is_valid(i).then(|| items(lists.value(i).as_ref())))
        .collect()
}

/// The number of values in `values` (rows, not list items).
fn length(values: &Values) -> usize {
    match values {
        Values::Booleans(v) => v.len(),
        Values::Integers(v) => v.len(),
        Values::Floats(v) => v.len(),
        Values::Strings(v) => v.len(),
        Values::Binaries(v) => v.len(),
        Values::IntegerLists(v) => v.len(),
        Values::FloatLists(v) => v.len(),
        Values::StringLists(v) => v.len(),
    }
}

/// `values` as an array of their kind's wide type.
fn wide_array(values: Values) -> ArrayRef {
    fn lists<T, B: arrow_array::builder::ArrayBuilder>(
        rows: Vec<Option<Vec<T>>>,
        items: B,
        mut append: impl FnMut(&mut B, T),
    ) -> ArrayRef {
        let mut builder = ListBuilder::new(items);
        for row in rows {
            match row {
                Some(list) => {
                    for item in list {
                        append(builder.values(), item);
                    }
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
        Arc::new(builder.finish())
    }
    match values {
        Values::Booleans(v) => Arc::new(v.into_iter().collect::<arrow_array::BooleanArray>()),
        Values::Integers(v) => Arc::new(v.into_iter().collect::<arrow_array::Int64Array>()),
        Values::Floats(v) => Arc::new(v.into_iter().collect::<arrow_array::Float64Array>()),
        Values::Strings(v) => Arc::new(v.into_iter().collect::<StringArray>()),
        Values::Binaries(v) => {
            let mut b = BinaryBuilder::new();
            for value in v {
                b.append_option(value);
            }
            Arc::new(b.finish())
        }
        Values::IntegerLists(v) => lists(v, Int64Builder::new(), |b, x| b.append_value(x)),
        Values::FloatLists(v) => lists(v, Float64Builder::new(), |b, x| b.append_value(x)),
        Values::StringLists(v) => lists(v, StringBuilder::new(), |b, x| b.append_value(x)),
    }
}

/// A guest's `output` for `rows` rows as the record batch of `columns`
/// (and `_error` when rows failed) that the checks after a call expect.
pub fn to_batch(
    output: Output,
    rows: usize,
    columns: &[ColumnSpec],
) -> Result<RecordBatch, String> {
    let names: Vec<&str> = output.columns.iter().map(|c| c.name.as_str()).collect();
    let expected: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    if names != expected {
        return Err(format!(
            "returned columns [{}], expected [{}]",
            limits::cut(names.join(", ")),
            expected.join(", ")
        ));
    }
    let mut fields = Vec::with_capacity(columns.len() + 1);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len() + 1);
    for (NamedValues { name, values }, column) in output.columns.into_iter().zip(columns) {
        let declared = Kind::of(&column.data_type).ok_or_else(|| {
            format!(
                "column `{name}`: {}",
                check_type(&column.data_type).err().unwrap_or_default()
            )
        })?;
        let found = kind_of_values(&values);
        if found != declared {
            return Err(format!(
                "returned column `{name}` as {}, but it is {} ({})",
                found.name(),
                column.data_type,
                declared.name()
            ));
        }
        if length(&values) != rows {
            return Err(format!(
                "returned {} values in column `{name}` for {rows} rows",
                length(&values)
            ));
        }
        let wide = wide_array(values);
        let array = cast_with_options(&wide, &column.data_type, &STRICT)
            .map_err(|e| format!("column `{name}` does not fit {}: {e}", column.data_type))?;
        fields.push(Field::new(name, column.data_type.clone(), true));
        arrays.push(array);
    }
    if !output.errors.is_empty() {
        let mut messages: Vec<Option<String>> = vec![None; rows];
        for error in output.errors {
            let slot = messages
                .get_mut(error.row as usize)
                .ok_or_else(|| format!("returned an error for row {} of {rows}", error.row))?;
            let message = limits::cut(error.message);
            *slot = Some(match slot.take() {
                Some(first) => limits::cut(format!("{first}; {message}")),
                None => message,
            });
        }
        fields.push(Field::new(ERROR_COLUMN, DataType::Utf8, true));
        arrays.push(Arc::new(StringArray::from(messages)));
    }
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(
        Arc::new(arrow_schema::Schema::new(fields)),
        arrays,
        &options,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int8Type};

    use super::*;
    use crate::engine::columnar_bindings::exports::strata::extractor::columnar::RowError;

    fn spec(name: &str, t: &str) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            data_type: t.parse().expect("type"),
            nullable: true,
            description: String::new(),
        }
    }

    fn named(name: &str, values: Values) -> NamedValues {
        NamedValues {
            name: name.into(),
            values,
        }
    }

    fn output(columns: Vec<NamedValues>) -> Output {
        Output {
            columns,
            errors: Vec::new(),
        }
    }

    #[test]
    fn every_kind_comes_back_as_its_declared_type() {
        let columns = [
            spec("b", "Boolean"),
            spec("i", "Int8"),
            spec("u", "UInt32"),
            spec("f", "Float32"),
            spec("s", "LargeUtf8"),
            spec("x", "Binary"),
            spec("il", "List(Int16)"),
            spec("fl", "FixedSizeList(2 x Float32)"),
            spec("sl", "List(Utf8)"),
        ];
        let out = output(vec![
            named("b", Values::Booleans(vec![Some(true), None])),
            named("i", Values::Integers(vec![Some(-128), Some(127)])),
            named("u", Values::Integers(vec![Some(4_000_000_000), None])),
            named("f", Values::Floats(vec![Some(0.5), None])),
            named("s", Values::Strings(vec![Some("é".into()), None])),
            named("x", Values::Binaries(vec![Some(vec![0, 255]), None])),
            named("il", Values::IntegerLists(vec![Some(vec![1, -2]), None])),
            named("fl", Values::FloatLists(vec![Some(vec![1.0, 2.0]), None])),
            named(
                "sl",
                Values::StringLists(vec![Some(vec!["a".into()]), Some(vec![])]),
            ),
        ]);
        let batch = to_batch(out, 2, &columns).expect("converted");
        for (field, column) in batch.schema().fields().iter().zip(&columns) {
            assert_eq!(field.data_type(), &column.data_type, "{}", column.name);
        }
        assert_eq!(batch.column(1).as_primitive::<Int8Type>().value(0), -128);
        assert_eq!(batch.column(3).as_primitive::<Float32Type>().value(0), 0.5);
        assert!(batch.column(4).is_null(1));
        assert!(batch.column_by_name(ERROR_COLUMN).is_none());
        // And back: every kind crosses as it came.
        for (column, array) in columns.iter().zip(batch.columns()) {
            let values = to_values(array.as_ref()).expect("values");
            assert_eq!(
                kind_of_values(&values),
                Kind::of(&column.data_type).expect("kind"),
                "{}",
                column.name
            );
            assert_eq!(length(&values), 2);
        }
    }

    #[test]
    fn mismatches_are_named_errors() {
        let columns = [spec("n", "Int8")];
        let cases: Vec<(Output, &str)> = vec![
            (output(vec![]), "returned columns [], expected [n]"),
            (
                output(vec![named("m", Values::Integers(vec![Some(1)]))]),
                "returned columns [m], expected [n]",
            ),
            (
                output(vec![named("n", Values::Strings(vec![Some("1".into())]))]),
                "returned column `n` as strings, but it is Int8 (integers)",
            ),
            (
                output(vec![named("n", Values::Integers(vec![Some(1), Some(2)]))]),
                "returned 2 values in column `n` for 1 rows",
            ),
            (
                output(vec![named("n", Values::Integers(vec![Some(300)]))]),
                "column `n` does not fit Int8",
            ),
            (
                Output {
                    columns: vec![named("n", Values::Integers(vec![Some(1)]))],
                    errors: vec![RowError {
                        row: 1,
                        message: "no".into(),
                    }],
                },
                "returned an error for row 1 of 1",
            ),
        ];
        for (out, expected) in cases {
            let e = to_batch(out, 1, &columns).expect_err(expected);
            assert!(e.starts_with(expected), "{e}");
        }
        let fixed = [spec("v", "FixedSizeList(3 x Float32)")];
        let short = output(vec![named("v", Values::FloatLists(vec![Some(vec![1.0])]))]);
        let e = to_batch(short, 1, &fixed).expect_err("a list of the wrong size");
        assert!(e.contains("does not fit"), "{e}");
    }

    #[test]
    fn row_errors_become_the_error_column() {
        let columns = [spec("n", "Int64")];
        let out = Output {
            columns: vec![named("n", Values::Integers(vec![Some(1), None]))],
            errors: vec![
                RowError {
                    row: 1,
                    message: "first".into(),
                },
                RowError {
                    row: 1,
                    message: "x".repeat(10_000),
                },
            ],
        };
        let batch = to_batch(out, 2, &columns).expect("converted");
        let errors = batch
            .column_by_name(ERROR_COLUMN)
            .expect("errors")
            .as_string::<i32>();
        assert!(errors.is_null(0));
        assert!(errors.value(1).starts_with("first; xxx"));
        assert!(errors.value(1).len() < limits::MAX_MESSAGE_BYTES + 64);
    }

    #[test]
    fn only_carried_types_cross() {
        for t in [
            "Boolean",
            "UInt64",
            "Float64",
            "Utf8",
            "LargeBinary",
            "List(Utf8)",
            "LargeList(Float32)",
            "FixedSizeList(4 x Int32)",
            "FixedSizeList(2 x Utf8)",
        ] {
            assert_eq!(check_type(&t.parse().expect("type")), Ok(()), "{t}");
        }
        for t in [
            "Struct(\"a\": Int32)",
            "List(List(Int32))",
            "List(Boolean)",
            "Date32",
        ] {
            if let Ok(data_type) = t.parse::<DataType>() {
                assert!(check_type(&data_type).is_err(), "{t}");
            }
        }
        let too_big = arrow_array::UInt64Array::from(vec![u64::MAX]);
        assert!(
            to_values(&too_big).is_err(),
            "a UInt64 beyond s64 cannot cross"
        );
    }
}
