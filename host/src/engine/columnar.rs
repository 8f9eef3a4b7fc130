//! The `columnar` interface: Arrow columns to and from WIT values, for
//! extractors written without an Arrow library (Python, JavaScript).
//!
//! A guest's output is lifted into the host under a byte budget
//! ([`Bounded`], [`BoundedList`]): each string and list is charged before it
//! is copied, so a guest that points many values at the same bytes stops at
//! [`limits::MAX_CALL_BYTES`] instead of making the host copy them again and
//! again. What it returns becomes the record batch the Arrow IPC path would
//! have decoded (the session's columns in their declared types, then
//! `_error`), which goes through the same checks after this module. Every
//! mismatch (a column missing or out of order, a value of another kind, an
//! integer outside its type, a fixed-size list of another size, more row
//! errors than rows, a row error for a row that does not exist)
//! is a named error, never a panic.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field};
use std::cell::Cell;

use wasmtime::ValRaw;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, ResourceAny, TypedFunc};

use super::executor::ERROR_COLUMN;
use super::limits;
use super::manifest::ColumnSpec;
use crate::engine::columnar_bindings::exports::strata::extractor::columnar::{NamedValues, Values};

thread_local! {
    /// Bytes the output being lifted on this thread may still bring into
    /// the host (lifting runs on the calling thread, on the call's fiber).
    static LIFT_BUDGET: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Gives the next output lifted on this thread [`limits::MAX_CALL_BYTES`].
pub(super) fn start_lifting() {
    LIFT_BUDGET.with(|b| b.set(limits::MAX_CALL_BYTES));
}

/// Takes `bytes` from the budget, or fails the lifting.
fn charge(bytes: usize) -> wasmtime::Result<()> {
    LIFT_BUDGET.with(|budget| match budget.get().checked_sub(bytes) {
        Some(left) => {
            budget.set(left);
            Ok(())
        }
        None => {
            budget.set(0);
            Err(wasmtime::format_err!(
                "returned more than {} MiB in one call, over the limit",
                limits::MAX_CALL_BYTES >> 20
            ))
        }
    })
}

/// The length half of a (pointer, length) pair in linear memory.
fn pair_length(bytes: &[u8]) -> usize {
    bytes
        .get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(usize::MAX, |b| u32::from_le_bytes(b) as usize)
}

/// Implements `ComponentType` and `Lift` for a wrapper of a string or list
/// type `$inner` that charges `$cost(length)` bytes before lifting.
macro_rules! bounded {
    ($wrapper:ident $(<$g:ident>)? : $inner:ty, $cost:expr) => {
        // SAFETY: the representation is exactly `$inner`'s (a pointer pair):
        // the type check, ABI and lifting are delegated to it.
        unsafe impl<$($g: ComponentType)?> ComponentType for $wrapper<$($g)?> {
            type Lower = [ValRaw; 2];
            const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;
            fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
                <$inner as ComponentType>::typecheck(ty, types)
            }
        }

        // SAFETY: lifts through `$inner`'s own implementation.
        unsafe impl<$($g: Lift)?> Lift for $wrapper<$($g)?> {
            fn linear_lift_from_flat(
                cx: &mut LiftContext<'_>,
                ty: InterfaceType,
                src: &Self::Lower,
            ) -> wasmtime::Result<Self> {
                charge($cost(src[1].get_u32() as usize))?;
                Ok($wrapper(<$inner as Lift>::linear_lift_from_flat(cx, ty, src)?))
            }

            fn linear_lift_from_memory(
                cx: &mut LiftContext<'_>,
                ty: InterfaceType,
                bytes: &[u8],
            ) -> wasmtime::Result<Self> {
                charge($cost(pair_length(bytes)))?;
                Ok($wrapper(<$inner as Lift>::linear_lift_from_memory(cx, ty, bytes)?))
            }
        }
    };
}

/// A string of the guest's output, lifted within the call's budget.
pub(super) struct Bounded(String);
/// A list of the guest's output, lifted within the call's budget.
pub(super) struct BoundedList<T>(Vec<T>);

bounded!(Bounded: String, |len: usize| len);
bounded!(BoundedList<T>: Vec<T>, |len: usize| len
    .saturating_mul(std::mem::size_of::<T>().max(1)));

/// `values` as a guest returns them.
#[derive(ComponentType, Lift)]
#[component(variant)]
pub(super) enum OutputValues {
    #[component(name = "booleans")]
    Booleans(BoundedList<Option<bool>>),
    #[component(name = "integers")]
    Integers(BoundedList<Option<i64>>),
    #[component(name = "floats")]
    Floats(BoundedList<Option<f64>>),
    #[component(name = "strings")]
    Strings(BoundedList<Option<Bounded>>),
    #[component(name = "binaries")]
    Binaries(BoundedList<Option<BoundedList<u8>>>),
    #[component(name = "integer-lists")]
    IntegerLists(BoundedList<Option<BoundedList<i64>>>),
    #[component(name = "float-lists")]
    FloatLists(BoundedList<Option<BoundedList<f64>>>),
    #[component(name = "string-lists")]
    StringLists(BoundedList<Option<BoundedList<Bounded>>>),
}

/// `named-values` as a guest returns them.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(super) struct OutputColumn {
    name: Bounded,
    values: OutputValues,
}

/// `row-error` as a guest returns it.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(super) struct OutputRowError {
    row: u32,
    message: Bounded,
}

/// `output` as a guest returns it.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(super) struct Output {
    columns: BoundedList<OutputColumn>,
    errors: BoundedList<OutputRowError>,
}

/// `session.process` of `columnar`, its output lifted within the call's
/// byte budget.
pub(super) type ProcessFunc =
    TypedFunc<(ResourceAny, u32, Vec<NamedValues>), (Result<Output, Bounded>,)>;

impl Bounded {
    /// The string.
    pub(super) fn into_string(self) -> String {
        self.0
    }
}

/// The kinds of values the interface has: each Arrow type it carries is
/// one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
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

impl OutputValues {
    fn kind(&self) -> Kind {
        match self {
            OutputValues::Booleans(_) => Kind::Booleans,
            OutputValues::Integers(_) => Kind::Integers,
            OutputValues::Floats(_) => Kind::Floats,
            OutputValues::Strings(_) => Kind::Strings,
            OutputValues::Binaries(_) => Kind::Binaries,
            OutputValues::IntegerLists(_) => Kind::IntegerLists,
            OutputValues::FloatLists(_) => Kind::FloatLists,
            OutputValues::StringLists(_) => Kind::StringLists,
        }
    }

    /// Values (rows, not list items).
    fn len(&self) -> usize {
        match self {
            OutputValues::Booleans(v) => v.0.len(),
            OutputValues::Integers(v) => v.0.len(),
            OutputValues::Floats(v) => v.0.len(),
            OutputValues::Strings(v) => v.0.len(),
            OutputValues::Binaries(v) => v.0.len(),
            OutputValues::IntegerLists(v) => v.0.len(),
            OutputValues::FloatLists(v) => v.0.len(),
            OutputValues::StringLists(v) => v.0.len(),
        }
    }

    /// The values as an array of their kind's wide type; a failed row's
    /// value is null, whatever the guest put there.
    fn into_array(self, failed: &[bool]) -> ArrayRef {
        fn rows<T, B: arrow_array::builder::ArrayBuilder>(
            values: Vec<Option<T>>,
            failed: &[bool],
            mut builder: B,
            mut append: impl FnMut(&mut B, Option<T>),
        ) -> ArrayRef {
            for (value, &failed) in values.into_iter().zip(failed) {
                append(&mut builder, if failed { None } else { value });
            }
            Arc::new(builder.finish())
        }
        fn list<T, B: arrow_array::builder::ArrayBuilder>(
            b: &mut ListBuilder<B>,
            value: Option<BoundedList<T>>,
            mut append: impl FnMut(&mut B, T),
        ) {
            match value {
                Some(items) => {
                    for item in items.0 {
                        append(b.values(), item);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        match self {
            OutputValues::Booleans(v) => rows(v.0, failed, BooleanBuilder::new(), |b, x| {
                b.append_option(x)
            }),
            OutputValues::Integers(v) => {
                rows(v.0, failed, Int64Builder::new(), |b, x| b.append_option(x))
            }
            OutputValues::Floats(v) => rows(v.0, failed, Float64Builder::new(), |b, x| {
                b.append_option(x)
            }),
            OutputValues::Strings(v) => rows(v.0, failed, StringBuilder::new(), |b, x| {
                b.append_option(x.map(|s| s.0))
            }),
            OutputValues::Binaries(v) => rows(v.0, failed, BinaryBuilder::new(), |b, x| {
                b.append_option(x.map(|bytes| bytes.0))
            }),
            OutputValues::IntegerLists(v) => {
                let builder = ListBuilder::new(Int64Builder::new());
                rows(v.0, failed, builder, |b, x| {
                    list(b, x, |items, item| items.append_value(item))
                })
            }
            OutputValues::FloatLists(v) => {
                let builder = ListBuilder::new(Float64Builder::new());
                rows(v.0, failed, builder, |b, x| {
                    list(b, x, |items, item| items.append_value(item))
                })
            }
            OutputValues::StringLists(v) => {
                let builder = ListBuilder::new(StringBuilder::new());
                rows(v.0, failed, builder, |b, x| {
                    list(b, x, |items, item: Bounded| items.append_value(item.0))
                })
            }
        }
    }
}

/// The kind of values a type crosses the interface as, or why it cannot.
pub(crate) fn check_type(data_type: &DataType) -> Result<Kind, String> {
    match Kind::of(data_type) {
        Some(kind) => Ok(kind),
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

/// Casts that make a value the target type cannot hold null (used once
/// such values' rows are null already).
const LENIENT: CastOptions<'static> = CastOptions {
    safe: true,
    format_options: arrow_cast::display::FormatOptions::new(),
};

/// An input column as WIT values, and the rows it could not carry: those
/// holding an unsigned integer beyond the interface's s64 (only a UInt64
/// can), which cross as null and fail with a row error.
pub fn to_values(array: &dyn Array) -> Result<(Values, Vec<usize>), String> {
    let kind = check_type(array.data_type())?;
    let unfit = rows_beyond_s64(array);
    let wide = if unfit.is_empty() {
        cast_with_options(array, &kind.wide_type(), &STRICT)
    } else {
        let mut mask = vec![false; array.len()];
        for &row in &unfit {
            mask[row] = true;
        }
        arrow_select::nullif::nullif(array, &BooleanArray::from(mask))
            .and_then(|nulled| cast_with_options(&nulled, &kind.wide_type(), &LENIENT))
    }
    .map_err(|e| e.to_string())?;
    let rows = 0..wide.len();
    let valid = |i: usize| wide.is_valid(i);
    let values = match kind {
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
    };
    Ok((values, unfit))
}

/// The rows of `array` (a UInt64 column, or lists of UInt64) holding a
/// value beyond `i64::MAX`, in order; no rows for any other type.
fn rows_beyond_s64(array: &dyn Array) -> Vec<usize> {
    fn beyond(values: &dyn Array) -> bool {
        values
            .as_primitive_opt::<UInt64Type>()
            .is_some_and(|a| a.iter().flatten().any(|v| i64::try_from(v).is_err()))
    }
    let items: Option<&ArrayRef> = match array.data_type() {
        DataType::List(_) => Some(array.as_list::<i32>().values()),
        DataType::LargeList(_) => Some(array.as_list::<i64>().values()),
        DataType::FixedSizeList(..) => Some(array.as_fixed_size_list().values()),
        _ => None,
    };
    // The common case, nothing beyond, is one pass over the values.
    if !beyond(items.map_or(array, |items| items.as_ref())) {
        return Vec::new();
    }
    let row = |i: usize| -> ArrayRef {
        match array.data_type() {
            DataType::List(_) => array.as_list::<i32>().value(i),
            DataType::LargeList(_) => array.as_list::<i64>().value(i),
            DataType::FixedSizeList(..) => array.as_fixed_size_list().value(i),
            _ => array.slice(i, 1),
        }
    };
    (0..array.len())
        .filter(|&i| array.is_valid(i) && beyond(row(i).as_ref()))
        .collect()
}

/// The rows of a `List` array, each list's items read by `items`.
fn list_values<T>(wide: &ArrayRef, items: impl Fn(&dyn Array) -> Vec<T>) -> Vec<Option<Vec<T>>> {
    let lists = wide.as_list::<i32>();
    (0..lists.len())
        .map(|i| lists.is_valid(i).then(|| items(lists.value(i).as_ref())))
        .collect()
}

/// A guest's `output` for `rows` rows as the record batch of `columns`
/// (and `_error` when rows failed) that the checks after a call expect.
/// `messages` holds the rows that failed before the call (one per row).
pub(super) fn to_batch(
    output: Output,
    columns: &[ColumnSpec],
    mut messages: Vec<Option<String>>,
) -> Result<RecordBatch, String> {
    let rows = messages.len();
    // Row errors first: a failed row's values are not read.
    let errors = output.errors.0;
    if errors.len() > rows {
        return Err(format!(
            "returned {} row errors for {rows} rows",
            errors.len()
        ));
    }
    for error in errors {
        let slot = messages
            .get_mut(error.row as usize)
            .ok_or_else(|| format!("returned an error for row {} of {rows}", error.row))?;
        let message = limits::cut(error.message.0);
        *slot = Some(match slot.take() {
            Some(first) => limits::cut(format!("{first}; {message}")),
            None => message,
        });
    }
    let failed: Vec<bool> = messages.iter().map(Option::is_some).collect();
    let returned = output.columns.0;
    let names: Vec<&str> = returned.iter().map(|c| c.name.0.as_str()).collect();
    let expected: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    if names != expected {
        return Err(limits::cut(format!(
            "returned columns [{}], expected [{}]",
            names.join(", "),
            expected.join(", ")
        )));
    }
    let mut fields = Vec::with_capacity(columns.len() + 1);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len() + 1);
    for (returned, column) in returned.into_iter().zip(columns) {
        let name = &column.name;
        let declared =
            check_type(&column.data_type).map_err(|e| format!("column `{name}`: {e}"))?;
        let values = returned.values;
        if values.kind() != declared {
            return Err(format!(
                "returned column `{name}` as {}, but it is {} ({})",
                values.kind().name(),
                column.data_type,
                declared.name()
            ));
        }
        if values.len() != rows {
            return Err(format!(
                "returned {} values in column `{name}` for {rows} rows",
                values.len()
            ));
        }
        let wide = values.into_array(&failed);
        let array = cast_with_options(&wide, &column.data_type, &STRICT)
            .map_err(|e| format!("column `{name}` does not fit {}: {e}", column.data_type))?;
        fields.push(Field::new(name, column.data_type.clone(), true));
        arrays.push(array);
    }
    if failed.iter().any(|&f| f) {
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
    use std::sync::Arc;

    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder};
    use arrow_array::{BinaryArray, BooleanArray, Float32Array, Int8Array, LargeStringArray};
    use arrow_schema::Fields;

    use super::*;

    fn kind_and_rows(values: &Values) -> (Kind, usize) {
        match values {
            Values::Booleans(v) => (Kind::Booleans, v.len()),
            Values::Integers(v) => (Kind::Integers, v.len()),
            Values::Floats(v) => (Kind::Floats, v.len()),
            Values::Strings(v) => (Kind::Strings, v.len()),
            Values::Binaries(v) => (Kind::Binaries, v.len()),
            Values::IntegerLists(v) => (Kind::IntegerLists, v.len()),
            Values::FloatLists(v) => (Kind::FloatLists, v.len()),
            Values::StringLists(v) => (Kind::StringLists, v.len()),
        }
    }

    #[test]
    fn every_carried_type_crosses_into_the_guest_as_its_kind() {
        let mut floats = ListBuilder::new(Float32Builder::new());
        floats.values().append_value(1.5);
        floats.values().append_null();
        floats.append(true);
        floats.append(false);
        let mut fixed = FixedSizeListBuilder::new(Float32Builder::new(), 2);
        fixed.values().append_slice(&[1.0, 2.0]);
        fixed.append(true);
        fixed.values().append_slice(&[0.0, 0.0]);
        fixed.append(false);
        let arrays: Vec<(ArrayRef, Kind)> = vec![
            (
                Arc::new(BooleanArray::from(vec![Some(true), None])),
                Kind::Booleans,
            ),
            (
                Arc::new(Int8Array::from(vec![Some(-128), None])),
                Kind::Integers,
            ),
            (
                Arc::new(Float32Array::from(vec![Some(0.5), None])),
                Kind::Floats,
            ),
            (
                Arc::new(LargeStringArray::from(vec![Some("é"), None])),
                Kind::Strings,
            ),
            (
                Arc::new(BinaryArray::from(vec![Some(&b"x"[..]), None])),
                Kind::Binaries,
            ),
            (Arc::new(floats.finish()), Kind::FloatLists),
            (Arc::new(fixed.finish()), Kind::FloatLists),
        ];
        for (array, kind) in arrays {
            let (values, unfit) = to_values(array.as_ref()).expect("crosses");
            assert_eq!(kind_and_rows(&values), (kind, 2), "{}", array.data_type());
            assert!(unfit.is_empty());
        }
        let (Values::FloatLists(lists), _) = to_values(&{
            let mut b = ListBuilder::new(Float32Builder::new());
            b.values().append_value(1.5);
            b.values().append_null();
            b.append(true);
            b.finish()
        })
        .expect("crosses") else {
            panic!("float lists");
        };
        let first = lists[0].as_ref().expect("a list");
        assert_eq!(first[0], 1.5);
        assert!(first[1].is_nan(), "a null inside a list crosses as NaN");
    }

    #[test]
    fn only_carried_types_cross() {
        let t = |s: &str| s.parse::<DataType>().expect("type");
        for name in [
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
            assert!(check_type(&t(name)).is_ok(), "{name}");
        }
        let refused = [
            t("List(List(Int32))"),
            t("List(Boolean)"),
            t("Date32"),
            DataType::Struct(Fields::from(vec![Field::new("a", DataType::Int32, true)])),
        ];
        for data_type in refused {
            let e = check_type(&data_type).expect_err("refused");
            assert!(e.contains("cannot cross the columnar interface"), "{e}");
        }
    }

    #[test]
    fn a_uint64_beyond_s64_fails_its_row_only() {
        let big = u64::MAX - 1;
        let scalars =
            arrow_array::UInt64Array::from(vec![Some(1), Some(big), None, Some(i64::MAX as u64)]);
        let (values, unfit) = to_values(&scalars).expect("crosses");
        assert_eq!(unfit, [1]);
        let Values::Integers(values) = values else {
            panic!("integers");
        };
        assert_eq!(values, [Some(1), None, None, Some(i64::MAX)]);

        let mut lists = ListBuilder::new(arrow_array::builder::UInt64Builder::new());
        for row in [&[1, 2][..], &[3, big], &[], &[big]] {
            lists.values().append_slice(row);
            lists.append(true);
        }
        let lists = lists.finish();
        // Sliced, as a chunk of a larger batch is: rows are the slice's.
        let (values, unfit) = to_values(&lists.slice(1, 3)).expect("crosses");
        assert_eq!(unfit, [0, 2]);
        let Values::IntegerLists(values) = values else {
            panic!("integer lists");
        };
        assert_eq!(values, [None, Some(vec![]), None]);
        let (_, unfit) = to_values(&lists.slice(0, 1)).expect("crosses");
        assert!(unfit.is_empty(), "a slice without the big values");
    }
}
