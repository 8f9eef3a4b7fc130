use arrow_schema::ArrowError;

/// Why a call failed.
///
/// Returned from [`crate::Session::process`], it fails the whole call; to
/// fail one row, record it with [`crate::Output::error`] instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input has no column of that name.
    #[error("input has no column `{name}` (it has: {available})")]
    MissingColumn {
        /// The column asked for.
        name: String,
        /// The columns the input has, comma-separated.
        available: String,
    },
    /// The column exists with another type.
    #[error("input column `{name}` is {actual}, expected {expected}")]
    WrongType {
        /// The column asked for.
        name: String,
        /// The type the extractor expects.
        expected: String,
        /// The type the input has.
        actual: String,
    },
    /// The output does not match the declared columns.
    #[error("output does not match the declared columns: {0}")]
    Output(String),
    /// Arrow could not encode, decode or build a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An error with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Error::Other(message.into())
    }
}
