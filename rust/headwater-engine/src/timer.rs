//! The timer thread: flushes rows that have waited longer than the maximum latency, so a slow
//! API still streams its rows within about that long instead of when a batch fills up, and
//! gives up on resolvers past their time limit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;
use crate::flush::flush_registered;
use crate::worker::{expire_overdue, Driver};

/// Checks every accumulator about four times per latency period (and the resolvers' deadlines
/// as often, at least every quarter second) until the sync ends.
pub fn run<H: Driver>(engine: &Arc<Engine<H>>) {
    let tick = (engine.options.batch_max_latency / 4)
        .clamp(Duration::from_millis(5), Duration::from_millis(250));
    while !engine.shutting_down.load(Ordering::SeqCst) && !engine.is_cancelled() {
        std::thread::park_timeout(tick);
        expire_overdue(engine);
        flush_registered(engine, false);
    }
}
