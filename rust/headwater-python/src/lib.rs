//! `headwater._core`: conversion and glue between Python and headwater's Rust crates.
//!
//! The engine and the data layer are pure Rust (`headwater-engine`, `headwater-core`); this
//! crate holds what touches Python: reading Python rows into headwater-core's column builders
//! ([`rows`], [`values`], [`pyjson`], and [`ffi_read`], the one module with `unsafe` code,
//! which reads common values in place), the `BatchBuilder` class and the IPC functions
//! ([`batch`]), the sync engine's Python side, which runs headwater-engine with Python
//! resolvers and objects ([`sync`]), the rate limiter API clients share ([`ratelimit`]) and
//! their HTTP transport ([`transport`]), and the mapping of engine errors onto
//! `headwater.errors` ([`errors`]). The public Python API lives in `python/headwater`, which
//! wraps these.

mod batch;
mod context;
mod errors;
mod fault;
mod ffi_read;
mod plan;
mod pyjson;
mod ratelimit;
mod rows;
mod sync;
mod transport;
mod values;

use pyo3::prelude::*;

/// The native module. `gil_used = false`: it keeps no unsynchronised global state, so it can
/// run on free-threaded CPython.
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<batch::BatchBuilder>()?;
    m.add_function(wrap_pyfunction!(batch::encode_schema_ipc, m)?)?;
    m.add_function(wrap_pyfunction!(batch::encode_data_ipc, m)?)?;
    sync::register(m)?;
    m.add_class::<ratelimit::RateLimiter>()?;
    m.add_class::<transport::HttpTransport>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
