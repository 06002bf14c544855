//! Flushing accumulators to the finisher, in order.
//!
//! Ordering is the point of [`flush`]: output budget is reserved first, without holding the
//! accumulator's lock (that wait can be long), then the accumulator is emptied *and* its
//! contents sent to the finisher under the lock. Whoever flushes (the owner thread, the
//! timer, a state update), what leaves one accumulator reaches the finisher in the order it
//! was appended, so a state update is always emitted after the rows before it.

use std::sync::Mutex;

use headwater_core::CoreError;

use crate::accumulate::{Accumulator, Local, Registered};
use crate::buffer::Reservation;
use crate::engine::Engine;
use crate::host::Host;
use crate::lock::lock;
use crate::work::{Job, Work};

/// What [`flush`] did.
#[derive(Debug)]
pub enum Flushed<H: Host> {
    /// Sent to the finisher, or nothing to send (or the sync is cancelled).
    Done,
    /// The finisher is gone (the sync was cancelled): the caller abandons this where it may
    /// drop its rows.
    Refused(Work<H>),
}

/// Flushes `accumulator` to the finisher, in order with everything flushed from it before.
///
/// `reserve(bytes)` reserves output budget and may block; it is called without the
/// accumulator's lock held (and must release the GIL if the caller holds it). With
/// `skip_busy`, an accumulator in use, or not stale yet, is left alone (the timer's mode).
pub fn flush<H: Host>(
    engine: &Engine<H>,
    accumulator: &Mutex<Accumulator<H>>,
    reserve: impl FnOnce(usize) -> Option<Reservation>,
    skip_busy: bool,
) -> Result<Flushed<H>, CoreError> {
    let estimate = {
        let guard = if skip_busy {
            match accumulator.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(Flushed::Done),
            }
        } else {
            lock(accumulator)
        };
        if guard.is_empty() || (skip_busy && !guard.is_stale(&engine.options)) {
            return Ok(Flushed::Done);
        }
        guard.reservation()
    };
    let Some(reservation) = reserve(estimate) else {
        return Ok(Flushed::Done);
    };
    let mut guard = lock(accumulator);
    let table = &engine.tables()[guard.table()];
    let Some(bundle) = guard.take(table, &engine.scheduler)? else {
        // Someone else flushed it meanwhile.
        engine.ledger.output.cancel_reservation(reservation);
        return Ok(Flushed::Done);
    };
    match engine.send(Job::Finish(Work::Rows(bundle), reservation)) {
        Ok(()) => Ok(Flushed::Done),
        Err(Job::Finish(work, reservation)) => {
            engine.ledger.output.cancel_reservation(reservation);
            Ok(Flushed::Refused(work))
        }
        Err(Job::Shutdown) => Ok(Flushed::Done),
    }
}

/// Flushes a thread's `local` accumulators (only those of tables with children when
/// `parents_only`), each with [`flush`]; refused work is handed to `refused`.
pub fn flush_local<H: Host>(
    engine: &Engine<H>,
    local: &Local<H>,
    parents_only: bool,
    reserve: impl Fn(usize) -> Option<Reservation>,
    mut refused: impl FnMut(Work<H>),
) -> Result<(), CoreError> {
    for (table, accumulator) in local.accumulators().iter().enumerate() {
        let Some(accumulator) = accumulator else {
            continue;
        };
        if parents_only && engine.tables()[table].children.is_empty() {
            continue;
        }
        if let Flushed::Refused(work) = flush(engine, accumulator, &reserve, false)? {
            refused(work);
        }
    }
    Ok(())
}

/// Flushes every registered accumulator whose rows are older than the maximum latency (or
/// every non-empty one when `all`), from a thread that may block. Accumulators in use by
/// their thread are skipped unless `all`.
pub fn flush_registered<H: Host>(engine: &Engine<H>, all: bool) {
    let registered: Vec<Registered<H>> = lock(&engine.accumulators).clone();
    for entry in registered {
        match flush(
            engine,
            &entry.accumulator,
            |bytes| engine.ledger.output.reserve(bytes),
            !all,
        ) {
            Ok(Flushed::Done) => {}
            Ok(Flushed::Refused(work)) => work.abandon(&engine.scheduler),
            Err(err) => engine.fatal(format!("flushing rows failed: {err}")),
        }
    }
}
