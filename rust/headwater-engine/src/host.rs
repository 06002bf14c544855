//! What the engine holds on behalf of whoever drives it.
//!
//! The engine never looks inside a parent row or a resolver's failure: it hands rows to child
//! tasks and failures to the output. [`Host`] names their types, so the Python bindings run
//! the engine with Python objects and the tests with plain Rust values, and every use is
//! monomorphised (no boxing, no dynamic dispatch per row).

/// The types the engine carries for its driver.
pub trait Host: Send + Sync + Sized + std::fmt::Debug + 'static {
    /// A row as a parent table's resolver yielded it, handed to its child tasks.
    type Row: Send + Sync + std::fmt::Debug + 'static;
    /// Why a resolver invocation failed, delivered in an error message of the output.
    type Failure: Send + std::fmt::Debug + 'static;
}
