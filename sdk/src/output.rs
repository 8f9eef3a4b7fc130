use arrow_array::ArrayRef;

/// Name of the optional output column holding row errors.
pub const ERROR_COLUMN: &str = "_error";

/// What a session returns for one batch: one array per declared column, and
/// optionally an error per row (`None` for rows that succeeded).
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub(crate) columns: Vec<ArrayRef>,
    pub(crate) errors: Vec<Option<String>>,
}

impl Output {
    /// The declared columns, in declaration order, one value per input row.
    pub fn new(columns: Vec<ArrayRef>) -> Self {
        Output {
            columns,
            errors: Vec::new(),
        }
    }

    /// Row errors: one entry per input row, `Some(reason)` for rows that
    /// failed. Their values in the columns should be null.
    pub fn with_errors(mut self, errors: Vec<Option<String>>) -> Self {
        self.errors = errors;
        self
    }
}
