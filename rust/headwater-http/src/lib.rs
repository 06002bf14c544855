//! headwater-http: what headwater's Python API clients hand to Rust.
//!
//! The network part of each request, a connection pool with TLS (rustls) that reads whole
//! answers under a deadline and a size limit ([`transport`]), and the token bucket and
//! concurrency cap that every thread and task of a sync shares ([`ratelimit`]). It is a crate
//! of its own so that `headwater-core` (schemas, Arrow builders, `_cq_id`, IPC) carries no TLS
//! stack. Nothing here touches Python; `headwater-python` drives it.
#![deny(missing_docs)]

pub mod error;
pub mod ratelimit;
pub mod transport;

pub use error::{Error, Result};
