//! The sync engine's Python side: [`headwater_engine`] run with Python objects.
//!
//! The engine (scheduler, accumulators, finisher, timer, state ordering, running tasks) is
//! pure Rust; what lives here is what touches Python, and the one job each module has:
//! - [`host`] holds what the bindings keep per sync (each table's conversion plan and
//!   resolver callables, the clients, the sink);
//! - [`sink::Sink`] is the one way back into Python: messages, log events, interrupts and
//!   async resolvers all go through the one sink object the Python side hands the engine;
//! - [`worker`] is the body of the engine's worker threads: it calls a table's resolver with
//!   the GIL held, and releases the GIL while it waits;
//! - [`drive`] steps what a resolver returns and appends its rows to the thread's
//!   accumulator, running the table's row hooks;
//! - async resolvers run on an asyncio event loop owned by the Python side; an
//!   [`async_task::AsyncTask`] handle feeds their items into the same accumulators;
//! - [`state::TaskState`] is a resolver's access to incremental state (cursors);
//! - [`engine::SyncEngine`] is the Python-facing iterator over the output, and cancels and
//!   joins everything when closed.

mod async_task;
mod drive;
mod engine;
mod host;
mod sink;
mod state;
mod worker;

pub use engine::register;
