//! Starting a sync's threads, and joining them when it ends or is closed.
//!
//! Closing never waits long for a resolver: a thread still in one a moment after the cancel
//! (blocked in a sleep, a socket read) is handed to the driver to interrupt after
//! [`INTERRUPT_AFTER`], and after [`STOP_GRACE`] the engine stops waiting for it. It ends on
//! its own once the resolver returns, seeing the sync cancelled: it delivers nothing more.

use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::finisher;
use crate::host::Host;
use crate::lock::lock;
use crate::timer;
use crate::worker::{finish_sync, queue, Driver};

/// How long a cancelled sync lets its resolvers stop on their own before it interrupts
/// those still running...
pub const INTERRUPT_AFTER: Duration = Duration::from_millis(200);

/// ...and how long it waits for its threads in all before it leaves the stuck ones be.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How often joining checks whether the threads are gone.
const JOIN_POLL: Duration = Duration::from_millis(5);

/// Why a sync could not start.
#[derive(Debug)]
pub enum StartError {
    /// It was started before.
    AlreadyStarted,
    /// The operating system refused a thread.
    Thread(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AlreadyStarted => write!(f, "this sync was started already"),
            StartError::Thread(err) => write!(f, "cannot start a thread: {err}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Starts the finisher and timer threads and queues the top-level tasks (which start the
/// workers). Only once.
pub fn start<H: Driver>(engine: &Arc<Engine<H>>) -> Result<(), StartError> {
    let Some(pending) = lock(&engine.pending).take() else {
        return Err(StartError::AlreadyStarted);
    };
    let finishing = Arc::clone(engine);
    let jobs = pending.jobs;
    engine
        .spawn("headwater-finisher", move || {
            finisher::run(&finishing, jobs)
        })
        .map_err(StartError::Thread)?;
    let ticking = Arc::clone(engine);
    let timer = std::thread::Builder::new()
        .name("headwater-timer".into())
        .spawn(move || timer::run(&ticking))
        .map_err(StartError::Thread)?;
    *lock(&engine.timer) = Some(timer);
    if pending.roots.is_empty() {
        finish_sync(engine);
        return Ok(());
    }
    // Queued under a hold, so the first root finishing cannot end the sync before the last
    // one is queued.
    engine.scheduler.hold();
    for task in pending.roots {
        queue(engine, task);
    }
    engine.scheduler.release_hold();
    Ok(())
}

/// What [`Joiner::step`] stopped at.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinStep {
    /// Every thread is joined (or left the pool with a timed-out task).
    Joined,
    /// These threads (as the driver names them) still run resolvers of a cancelled sync:
    /// interrupt them, and step again.
    Interrupt(Vec<u64>),
    /// Some threads did not stop within [`STOP_GRACE`]: the engine stopped waiting for them,
    /// which were running these `(table, client)` tasks.
    Abandoned(Vec<(usize, usize)>),
}

/// Joins the engine's threads, in steps that each end where the driver has something to do.
#[derive(Debug)]
pub struct Joiner<'a, H: Host> {
    engine: &'a Engine<H>,
    /// The joining thread, which must never join itself.
    current: ThreadId,
    started: Instant,
    interrupted: bool,
    pending: Vec<JoinHandle<()>>,
    panicked: usize,
}

impl<'a, H: Host> Joiner<'a, H> {
    /// Starts joining `engine`'s threads from the calling thread.
    pub fn new(engine: &'a Engine<H>) -> Self {
        Joiner {
            engine,
            current: std::thread::current().id(),
            started: Instant::now(),
            interrupted: false,
            pending: Vec::new(),
            panicked: 0,
        }
    }

    /// Waits until every thread is joined, or the driver must interrupt some, or the engine
    /// gives up on stuck ones. Blocks: call it where the threads can make progress (without
    /// the GIL, in the bindings).
    pub fn step(&mut self) -> JoinStep {
        let engine = self.engine;
        let outcome = loop {
            // An engine thread never joins itself: that could only happen if the last
            // reference to the sync were dropped on one of its worker threads.
            self.pending.extend(
                lock(&engine.threads)
                    .drain(..)
                    .filter(|t| t.thread().id() != self.current)
                    .filter(|t| !engine.running.has_left(t.thread().id())),
            );
            let (done, alive): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(JoinHandle::is_finished);
            self.panicked += done.into_iter().filter_map(|t| t.join().err()).count();
            self.pending = alive;
            if self.pending.is_empty() {
                break JoinStep::Joined;
            }
            let waited = self.started.elapsed();
            if !self.interrupted && waited >= INTERRUPT_AFTER && engine.is_cancelled() {
                self.interrupted = true;
                return JoinStep::Interrupt(engine.running.resolver_threads());
            }
            if waited >= STOP_GRACE {
                let stuck = engine.running.now();
                // The last worker out would have done this; a stuck one may never get out.
                finish_sync(engine);
                break JoinStep::Abandoned(stuck);
            }
            std::thread::sleep(JOIN_POLL);
        };
        if self.panicked > 0 {
            engine.fatal(format!("{} engine thread(s) panicked", self.panicked));
        }
        engine.stop_timer();
        outcome
    }
}
