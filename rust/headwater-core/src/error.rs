//! The one error type of headwater-core. The Python bindings map each variant onto the
//! `headwater.HeadwaterError` hierarchy.

use arrow_schema::ArrowError;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A schema is not a valid CloudQuery table schema, or data does not fit it.
    #[error("{0}")]
    Schema(String),
    /// One row could not be converted; see [`RowFault`].
    #[error("{0}")]
    Row(Box<RowFault>),
    /// A single row is larger, once IPC-encoded, than the message size limit.
    #[error(
        "row {row} alone encodes to {bytes} bytes, more than the {limit}-byte message limit; \
         it cannot be split further"
    )]
    MessageTooLarge {
        /// Index of the row inside the batch that was being encoded.
        row: usize,
        /// Encoded size of that one row.
        bytes: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// An invalid argument (a limit of zero, a length mismatch, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The operating system's random number generator failed (random `_cq_id`s).
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// Arrow itself refused something (IPC, casts, array construction).
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// Why one value of one row could not be stored, with everything a user needs to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFault {
    /// Table name.
    pub table: String,
    /// Column name; `None` when the row itself is malformed (wrong length, wrong kind).
    pub column: Option<String>,
    /// Index of the row in the input.
    pub row: usize,
    /// The Arrow type the column expects, as Arrow prints it (or the extension name).
    pub expected: String,
    /// The type of the offending value (a Python type name on the Python path).
    pub value_type: String,
    /// A truncated representation of the offending value.
    pub value_repr: String,
    /// What was wrong with it.
    pub reason: String,
}

impl std::fmt::Display for RowFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table {:?}", self.table)?;
        if let Some(column) = &self.column {
            write!(f, ", column {column:?}")?;
        }
        write!(
            f,
            ", row {}: expected {}, got {} {}: {}",
            self.row, self.expected, self.value_type, self.value_repr, self.reason
        )
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
