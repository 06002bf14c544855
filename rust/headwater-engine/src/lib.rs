//! headwater-engine: the sync engine, in pure Rust.
//!
//! A sync runs resolvers (*tasks*: one table, one client, one parent row) on worker threads
//! and turns what they yield into record batches, within concurrency limits and a memory
//! budget. The pieces, and the one job each has:
//! - [`scheduler`] decides which task runs next, within the concurrency limits;
//! - [`worker`] starts worker threads on demand and ends tasks; what a worker does with a
//!   task (call the resolver, read its rows) is the driver's ([`worker::Driver`]);
//! - rows go into per-thread [`accumulate::Accumulator`]s, which [`flush`] sends to the
//!   [`finisher`] thread when full (by rows, bytes, or age, checked by the [`timer`] thread);
//!   the finisher finishes the arrays, hashes `_cq_id`, starts the child tasks of a parent
//!   table's rows and queues the batch in the [`buffer`], whose byte budget blocks producers
//!   while the consumer is slow;
//! - a state update leaves only after the rows it covers and everything their child tasks
//!   produced ([`epoch`]), and is withheld when some of those rows are lost; [`state`] keeps
//!   the values;
//! - [`running`] lists the tasks running now, gives up on one past its time limit, and names
//!   what a cancelled sync interrupted; [`read_ahead`] decides when rows a resolver yields
//!   quickly are converted in groups;
//! - [`engine::Engine`] is what the threads share, and [`lifecycle`] starts them and joins
//!   them when the sync ends or is cancelled.
//!
//! The engine is generic over what its driver holds ([`host::Host`]: the parent row handed to
//! child tasks, the resolver failure): `headwater-python` runs it with Python objects, its
//! tests with plain Rust values. What the bindings call once per row is generic or
//! `#[inline]`, so it inlines across the crate boundary (release builds have no cross-crate
//! LTO). Nothing here touches Python.
#![deny(missing_docs)]

pub mod accumulate;
pub mod buffer;
pub mod engine;
pub mod epoch;
pub mod finisher;
pub mod flush;
pub mod host;
pub mod ledger;
pub mod lifecycle;
pub mod lock;
pub mod output;
pub mod read_ahead;
pub mod running;
pub mod scheduler;
pub mod state;
pub mod table;
pub mod task;
pub mod timer;
pub mod work;
pub mod worker;
