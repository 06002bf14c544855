//! headwater-core: the pure-Rust data layer behind headwater.
//!
//! It knows CloudQuery's schema conventions ([`schema`]), builds Arrow columns from values
//! pushed one at a time with row-level rollback ([`builder`]), conforms ready-made Arrow data to
//! a table schema ([`ingest`]), computes `_cq_id`s byte-compatible with the Go plugin SDK
//! ([`cq_id`]) and encodes Arrow IPC streams split under a message size limit ([`ipc`]).
//! Nothing here touches Python or the network; `headwater-engine` runs syncs on it and
//! `headwater-python` drives both.
#![deny(missing_docs)]

pub mod builder;
pub mod cq_id;
pub mod decimal;
pub mod error;
pub mod ingest;
pub mod ipc;
pub mod json;
pub mod net;
pub mod schema;
pub mod temporal;

pub use error::{CoreError, Result, RowFault};
