//! The timer thread: flushes rows that have waited longer than the maximum latency, so a slow
//! API still streams its rows within about that long instead of when a batch fills up.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::accumulate::flush_registered;
use super::Shared;

/// Checks every accumulator about four times per latency period until the sync ends.
pub fn run(shared: &Shared) {
    let tick = (shared.options.max_latency / 4)
        .clamp(Duration::from_millis(5), Duration::from_millis(250));
    while !shared.shutting_down.load(Ordering::SeqCst) && !shared.is_cancelled() {
        std::thread::park_timeout(tick);
        flush_registered(shared, false);
    }
}
