use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};

use crate::Error;

/// The rows handed to a session, with typed access to columns by name.
#[derive(Debug, Clone)]
pub struct Input {
    batch: RecordBatch,
}

impl Input {
    /// Wraps a record batch.
    pub fn new(batch: RecordBatch) -> Self {
        Input { batch }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The underlying batch.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// The column `name`, or an error listing the columns there are.
    pub fn column(&self, name: &str) -> Result<&ArrayRef, Error> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| Error::MissingColumn {
                name: name.to_owned(),
                available: self
                    .batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The `Utf8` column `name`.
    pub fn utf8(&self, name: &str) -> Result<&StringArray, Error> {
        self.typed(name, "Utf8")
    }

    /// The `Binary` column `name`.
    pub fn binary(&self, name: &str) -> Result<&BinaryArray, Error> {
        self.typed(name, "Binary")
    }

    fn typed<A: Array + 'static>(&self, name: &str, expected: &str) -> Result<&A, Error> {
        let column = self.column(name)?;
        column
            .as_any()
            .downcast_ref::<A>()
            .ok_or_else(|| Error::WrongType {
                name: name.to_owned(),
                expected: expected.to_owned(),
                actual: column.data_type().to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Int32Array;

    use super::*;

    #[test]
    fn column_errors_name_the_column() {
        let batch =
            RecordBatch::try_from_iter([("n", Arc::new(Int32Array::from(vec![1])) as ArrayRef)])
                .expect("batch");
        let input = Input::new(batch);
        let missing = input.utf8("text").expect_err("missing");
        assert_eq!(
            missing.to_string(),
            "input has no column `text` (it has: n)"
        );
        let wrong = input.utf8("n").expect_err("wrong type");
        assert_eq!(
            wrong.to_string(),
            "input column `n` is Int32, expected Utf8"
        );
    }
}
