//! The task queue of a sync: which resolver invocation runs next, within which limits.
//!
//! A sync is a tree of tasks. Each top-level table runs once per client (a *root* task, in the
//! order [`order_roots`] gives for the [`Strategy`]); each row of a table with child tables
//! starts one task per child table. [`Scheduler`] holds the queued tasks, one FIFO per depth,
//! and hands the next one to a worker only while three limits allow it, as the CloudQuery Go
//! SDK does: a global concurrency, a per-table concurrency and a per-depth concurrency (halved
//! at every level by default). Deeper tasks go first, so a parent's children are resolved
//! before more parents are started and the number of waiting tasks stays small.
//!
//! The queue itself is bounded too: a task that produces children faster than they are
//! resolved waits in [`Scheduler::wait_for_room`], *without* its slot, so the children can run
//! in its place and the sync can never deadlock on its own limits.
//!
//! A task can also be given up on while it runs: [`Scheduler::abandon`] takes its claim back
//! (a resolver past its time limit, stuck in code the driver cannot interrupt), so the rest of
//! the sync goes on and can end; the thread still holding the [`Slot`] may come back much
//! later, and whatever it then does with the slot is a no-op.
//!
//! The scheduler knows nothing about what a task does: the payload `T` is opaque. It is pure
//! synchronisation (a mutex and two condition variables) so the Python driver can block in it
//! with the GIL released.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use headwater_core::error::{CoreError, Result};

/// In which order the top-level `(table, client)` tasks start, as in the Go SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Table by table, each with all its clients in turn (the Go SDK's default).
    Dfs,
    /// Clients interleaved: every table with the first client, then every table with the
    /// second, ...; spreads load across accounts or regions.
    RoundRobin,
    /// The round-robin order shuffled with a fixed seed: repeatable from run to run, but
    /// spreading load across tables and clients.
    Shuffle {
        /// Seed of the shuffle; the same seed gives the same order.
        seed: u64,
    },
}

/// One of `total` disjoint parts of a sync (CloudQuery's `shard{num, total}`, `num` from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This part, from 1 to `total`.
    pub num: usize,
    /// How many parts.
    pub total: usize,
}

impl Shard {
    /// Checks `1 <= num <= total`.
    pub fn new(num: usize, total: usize) -> Result<Self> {
        if total == 0 || num == 0 || num > total {
            return Err(CoreError::InvalidArgument(format!(
                "shard {num} of {total}: the shard number must be between 1 and the total"
            )));
        }
        Ok(Shard { num, total })
    }

    /// This shard's part of `items`: a contiguous run, the runs of all shards covering
    /// `items` exactly once and differing in length by at most one.
    fn part<T>(&self, mut items: Vec<T>) -> Vec<T> {
        let start = (self.num - 1) * items.len() / self.total;
        let end = self.num * items.len() / self.total;
        items.truncate(end);
        items.split_off(start)
    }
}

/// The top-level tasks of a sync as `(table, client)` index pairs, in the strategy's order,
/// and of them only `shard`'s part when given.
///
/// `clients_per_table[t]` is the number of clients top-level table `t` runs with. The shard
/// is taken before shuffling (as the Go SDK does), so every shard agrees on the split.
pub fn order_roots(
    clients_per_table: &[usize],
    strategy: Strategy,
    shard: Option<Shard>,
) -> Vec<(usize, usize)> {
    let sharded = |roots: Vec<(usize, usize)>| match shard {
        Some(shard) => shard.part(roots),
        None => roots,
    };
    match strategy {
        Strategy::Dfs => sharded(
            clients_per_table
                .iter()
                .enumerate()
                .flat_map(|(table, &clients)| (0..clients).map(move |client| (table, client)))
                .collect(),
        ),
        Strategy::RoundRobin => sharded(round_robin(clients_per_table)),
        Strategy::Shuffle { seed } => {
            let mut roots = sharded(round_robin(clients_per_table));
            let mut rng = SplitMix64(seed);
            // Fisher-Yates, from the back.
            for i in (1..roots.len()).rev() {
                let bound = u64::try_from(i + 1).unwrap_or(u64::MAX);
                let j = usize::try_from(rng.next() % bound).unwrap_or(0);
                roots.swap(i, j);
            }
            roots
        }
    }
}

fn round_robin(clients_per_table: &[usize]) -> Vec<(usize, usize)> {
    let rounds = clients_per_table.iter().copied().max().unwrap_or(0);
    (0..rounds)
        .flat_map(|client| {
            clients_per_table
                .iter()
                .enumerate()
                .filter(move |(_, &clients)| client < clients)
                .map(move |(table, _)| (table, client))
        })
        .collect()
}

/// SplitMix64: a tiny, well-mixed generator; plenty for a repeatable shuffle.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The concurrency limits of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Tasks running at once, over all tables and depths.
    pub concurrency: usize,
    /// Tasks of one table running at once.
    pub per_table: usize,
    /// Tasks at depth `d` (0 = top-level tables) running at once; depths beyond the end of
    /// the list use its last value.
    pub per_depth: Vec<usize>,
    /// Queued tasks beyond which producers of child tasks wait (see
    /// [`Scheduler::wait_for_room`]).
    pub max_queued: usize,
}

impl Limits {
    /// The Go SDK's shape: `concurrency` in total and per table, halved at every depth (never
    /// below 1), and a queue of `16 * concurrency` tasks (at least 1024).
    pub fn go_style(concurrency: usize, max_depth: usize) -> Self {
        let concurrency = concurrency.max(1);
        let per_depth = (0..=max_depth)
            .map(|depth| (concurrency >> depth.min(63)).max(1))
            .collect();
        Limits {
            concurrency,
            per_table: concurrency,
            per_depth,
            max_queued: (16 * concurrency).max(1024),
        }
    }

    /// Checks that every limit is at least 1.
    pub fn validate(&self) -> Result<()> {
        let zero = |what: &str| Err(CoreError::InvalidArgument(format!("{what} must be >= 1")));
        if self.concurrency == 0 {
            return zero("concurrency");
        }
        if self.per_table == 0 {
            return zero("table concurrency");
        }
        if self.per_depth.is_empty() || self.per_depth.contains(&0) {
            return zero("every depth concurrency");
        }
        if self.max_queued == 0 {
            return zero("the task queue size");
        }
        Ok(())
    }

    fn depth_limit(&self, depth: usize) -> usize {
        self.per_depth
            .get(depth)
            .or(self.per_depth.last())
            .copied()
            .unwrap_or(1)
    }
}

/// One unit of work: resolving `table` at `depth`, with an opaque payload.
#[derive(Debug)]
pub struct Task<T> {
    /// Index of the table.
    pub table: usize,
    /// 0 for top-level tables, parent's depth + 1 for children.
    pub depth: usize,
    /// What the driver needs to run it.
    pub payload: T,
}

/// A running task's claim on the concurrency limits. Give it back with
/// [`Scheduler::finish`]; [`Scheduler::wait_for_room`] lends it out while waiting.
#[derive(Debug)]
#[must_use = "a slot must be given back with Scheduler::finish"]
pub struct Slot {
    table: usize,
    depth: usize,
    id: SlotId,
}

/// Names a [`Slot`] while its task runs, for [`Scheduler::abandon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId(u64);

impl Slot {
    /// Its name, to [`Scheduler::abandon`] the task from another thread.
    pub fn id(&self) -> SlotId {
        self.id
    }

    /// The task's table.
    pub fn table(&self) -> usize {
        self.table
    }

    /// The task's depth.
    pub fn depth(&self) -> usize {
        self.depth
    }
}

/// What [`Scheduler::next`] found.
#[derive(Debug)]
pub enum Next<T> {
    /// A task to run now, with its slot.
    Run(Task<T>, Slot),
    /// Nothing can start yet (queue empty or limits reached) but the sync is not over.
    Wait,
    /// Every task has finished: nothing is queued, running, waiting or held.
    Done,
    /// The sync was cancelled.
    Cancelled,
}

/// How many queued tasks [`Scheduler::next`] looks at per depth for one its limits allow.
const SCAN: usize = 64;

#[derive(Debug)]
struct State<T> {
    /// Queued tasks, one FIFO per depth.
    queues: Vec<VecDeque<Task<T>>>,
    queued: usize,
    running: usize,
    running_per_table: Vec<usize>,
    running_per_depth: Vec<usize>,
    /// Tasks waiting for room in the queue, without their slot.
    waiting: usize,
    /// Work that may still add tasks without holding a slot (e.g. a parent's rows whose
    /// children are started once the batch is finished).
    holds: usize,
    /// Worker threads registered, and how many of them wait for a task.
    workers: usize,
    idle: usize,
    cancelled: bool,
    /// The id of the last slot claimed.
    next_id: u64,
    /// Every slot handed out and not yet finished or abandoned, with its table and depth.
    live: HashMap<SlotId, (usize, usize)>,
    /// Live slots lent out (waiting for room, or suspended): they hold no claim now.
    lent: HashSet<SlotId>,
    /// Slots given up on with [`Scheduler::abandon`]: their claim is gone already.
    abandoned: HashSet<SlotId>,
}

impl<T> State<T> {
    fn done(&self) -> bool {
        self.queued == 0 && self.running == 0 && self.waiting == 0 && self.holds == 0
    }

    fn allows(&self, limits: &Limits, table: usize, depth: usize) -> bool {
        self.running < limits.concurrency
            && self.running_per_table[table] < limits.per_table
            && self.running_per_depth[depth] < limits.depth_limit(depth)
    }

    fn claim(&mut self, table: usize, depth: usize) -> Slot {
        self.running += 1;
        self.running_per_table[table] += 1;
        self.running_per_depth[depth] += 1;
        self.next_id += 1;
        let id = SlotId(self.next_id);
        self.live.insert(id, (table, depth));
        Slot { table, depth, id }
    }

    /// Takes a lent-out slot's claim back, unless it was abandoned meanwhile (which counted
    /// it out of `waiting` already).
    fn reclaim(&mut self, slot: &Slot) {
        if !self.lent.remove(&slot.id) {
            return;
        }
        self.waiting -= 1;
        self.running += 1;
        self.running_per_table[slot.table] += 1;
        self.running_per_depth[slot.depth] += 1;
    }

    /// Lends a running slot out: it keeps its name but no claim.
    fn lend(&mut self, slot: &Slot) {
        self.release(slot);
        self.lent.insert(slot.id);
        self.waiting += 1;
    }

    fn is_abandoned(&self, slot: &Slot) -> bool {
        !self.abandoned.is_empty() && self.abandoned.contains(&slot.id)
    }

    fn release(&mut self, slot: &Slot) {
        self.running -= 1;
        self.running_per_table[slot.table] -= 1;
        self.running_per_depth[slot.depth] -= 1;
    }

    fn ensure_depth(&mut self, depth: usize) {
        while self.queues.len() <= depth {
            self.queues.push(VecDeque::new());
            self.running_per_depth.push(0);
        }
    }
}

/// The task queue and concurrency limits of one sync, shared by its worker threads.
#[derive(Debug)]
pub struct Scheduler<T> {
    limits: Limits,
    state: Mutex<State<T>>,
    /// Signalled when a task may have become runnable, or the sync ended.
    work: Condvar,
    /// Signalled when the queue shrank or a slot was freed, for [`Self::wait_for_room`].
    room: Condvar,
}

impl<T> Scheduler<T> {
    /// A scheduler for `tables` tables under `limits`.
    pub fn new(limits: Limits, tables: usize) -> Result<Self> {
        limits.validate()?;
        Ok(Scheduler {
            state: Mutex::new(State {
                queues: Vec::new(),
                queued: 0,
                running: 0,
                running_per_table: vec![0; tables],
                running_per_depth: Vec::new(),
                waiting: 0,
                holds: 0,
                workers: 0,
                idle: 0,
                cancelled: false,
                next_id: 0,
                live: HashMap::new(),
                lent: HashSet::new(),
                abandoned: HashSet::new(),
            }),
            limits,
            work: Condvar::new(),
            room: Condvar::new(),
        })
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves counters that are still consistent enough
        // to cancel and shut down; never propagate the poison.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a task (whatever the queue's size: producers that can wait call
    /// [`Self::wait_for_room`] first); once cancelled, the task is dropped. Returns whether the driver should start another worker
    /// thread: no worker is idle and fewer than `concurrency` are busy.
    pub fn push(&self, task: Task<T>) -> Result<bool> {
        let mut state = self.lock();
        if state.cancelled {
            return Ok(false);
        }
        if task.table >= state.running_per_table.len() {
            return Err(CoreError::InvalidArgument(format!(
                "task for table {} of {}",
                task.table,
                state.running_per_table.len()
            )));
        }
        state.ensure_depth(task.depth);
        state.queues[task.depth].push_back(task);
        state.queued += 1;
        // Tasks waiting for room may be async ones, which hold no thread: saturate.
        let busy = state.workers.saturating_sub(state.waiting);
        let wanted = state.idle == 0 && busy < self.limits.concurrency && !state.cancelled;
        drop(state);
        self.work.notify_one();
        Ok(wanted)
    }

    /// Registers a worker thread; pair with [`Self::unregister_worker`].
    pub fn register_worker(&self) {
        self.lock().workers += 1;
    }

    /// Unregisters a worker thread that is exiting.
    pub fn unregister_worker(&self) {
        let mut state = self.lock();
        state.workers -= 1;
    }

    /// Number of registered worker threads.
    pub fn workers(&self) -> usize {
        self.lock().workers
    }

    /// The next task the limits allow, deepest first, without blocking.
    pub fn try_next(&self) -> Next<T> {
        let mut state = self.lock();
        self.take(&mut state)
    }

    fn take(&self, state: &mut State<T>) -> Next<T> {
        if state.cancelled {
            return Next::Cancelled;
        }
        for depth in (0..state.queues.len()).rev() {
            let found = state.queues[depth]
                .iter()
                .take(SCAN)
                .position(|task| state.allows(&self.limits, task.table, depth));
            if let Some(index) = found {
                let task = state.queues[depth]
                    .remove(index)
                    .expect("index found in this queue");
                state.queued -= 1;
                let slot = state.claim(task.table, depth);
                if state.waiting > 0 {
                    self.room.notify_all();
                }
                return Next::Run(task, slot);
            }
        }
        if state.done() {
            Next::Done
        } else {
            Next::Wait
        }
    }

    /// The next task, blocking until one can start, the sync is over or it is cancelled.
    /// Returns [`Next::Run`], [`Next::Done`] or [`Next::Cancelled`], never [`Next::Wait`].
    pub fn next(&self) -> Next<T> {
        let mut state = self.lock();
        loop {
            match self.take(&mut state) {
                Next::Wait => {}
                other => return other,
            }
            state.idle += 1;
            state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
            state.idle -= 1;
        }
    }

    /// Gives back the slot of a task that ended (normally, with an error or cancelled); a
    /// no-op for a slot that was [abandoned](Self::abandon).
    pub fn finish(&self, slot: Slot) {
        let mut state = self.lock();
        if state.abandoned.remove(&slot.id) {
            return;
        }
        state.live.remove(&slot.id);
        state.release(&slot);
        let done = state.done();
        let waiting = state.waiting > 0;
        drop(state);
        if done {
            self.work.notify_all();
        } else {
            self.work.notify_one();
        }
        if waiting {
            self.room.notify_all();
        }
    }

    /// Whether the queue has room for more tasks.
    pub fn has_room(&self) -> bool {
        self.lock().queued < self.limits.max_queued
    }

    /// Blocks while the queue is full, lending `slot` out meanwhile so queued tasks can run in
    /// its place; then takes a slot for the same table and depth back. Returns `false` (with
    /// the slot still held) if the sync is cancelled.
    /// Returns `false` too once the task was [abandoned](Self::abandon).
    pub fn wait_for_room(&self, slot: &Slot) -> bool {
        let mut state = self.lock();
        if state.is_abandoned(slot) {
            return false;
        }
        if state.queued < self.limits.max_queued {
            return !state.cancelled;
        }
        state.lend(slot);
        self.work.notify_all();
        loop {
            if state.cancelled
                || state.is_abandoned(slot)
                || (state.queued < self.limits.max_queued
                    && state.allows(&self.limits, slot.table, slot.depth))
            {
                break;
            }
            state = self.room.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.reclaim(slot);
        !state.cancelled && !state.is_abandoned(slot)
    }

    /// Non-blocking half of [`Self::wait_for_room`] for tasks that cannot block their thread
    /// (async resolvers on an event loop): lends the slot out. Poll [`Self::try_resume`].
    pub fn suspend(&self, slot: &Slot) {
        let mut state = self.lock();
        if state.is_abandoned(slot) {
            return;
        }
        state.lend(slot);
        drop(state);
        self.work.notify_all();
    }

    /// Takes the slot lent out by [`Self::suspend`] back if the queue has room and the limits
    /// allow it (or the sync was cancelled); returns whether it did.
    pub fn try_resume(&self, slot: &Slot) -> bool {
        let mut state = self.lock();
        if state.is_abandoned(slot) {
            return true;
        }
        let ready = state.cancelled
            || (state.queued < self.limits.max_queued
                && state.allows(&self.limits, slot.table, slot.depth));
        if ready {
            state.reclaim(slot);
        }
        ready
    }

    /// Takes the slot lent out by [`Self::suspend`] back at once, even beyond the limits, for a
    /// task that ends while suspended and gives it straight back with [`Self::finish`].
    pub fn resume_now(&self, slot: &Slot) {
        let mut state = self.lock();
        if state.is_abandoned(slot) {
            return;
        }
        state.reclaim(slot);
    }

    /// Gives up on a running task: its claim on the limits goes back now (the sync can go
    /// on, and end, without it), and whatever the thread holding its [`Slot`] later does with
    /// the slot is a no-op. Returns `false` if that slot was finished already.
    pub fn abandon(&self, id: SlotId) -> bool {
        let mut state = self.lock();
        let Some((table, depth)) = state.live.remove(&id) else {
            return false;
        };
        if state.lent.remove(&id) {
            state.waiting -= 1;
        } else {
            state.running -= 1;
            state.running_per_table[table] -= 1;
            state.running_per_depth[depth] -= 1;
        }
        state.abandoned.insert(id);
        let done = state.done();
        drop(state);
        if done {
            self.work.notify_all();
        } else {
            self.work.notify_one();
        }
        self.room.notify_all();
        true
    }

    /// Notes work in progress outside any slot that may still queue tasks, so the sync is
    /// not over before it ends; pair with [`Self::release_hold`].
    pub fn hold(&self) {
        self.lock().holds += 1;
    }

    /// Ends a [`Self::hold`].
    pub fn release_hold(&self) {
        let mut state = self.lock();
        state.holds -= 1;
        let done = state.done();
        drop(state);
        if done {
            self.work.notify_all();
        }
    }

    /// Cancels the sync: queued tasks are dropped and every blocked call returns.
    pub fn cancel(&self) -> Vec<Task<T>> {
        let mut state = self.lock();
        state.cancelled = true;
        let dropped = state.queues.iter_mut().flat_map(|q| q.drain(..)).collect();
        state.queued = 0;
        drop(state);
        self.work.notify_all();
        self.room.notify_all();
        dropped
    }

    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Whether the sync is over (or cancelled).
    pub fn is_over(&self) -> bool {
        let state = self.lock();
        state.cancelled || state.done()
    }

    /// Waits up to `timeout` for the sync to be over; returns whether it is.
    pub fn wait_over(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .work
            .wait_timeout_while(state, timeout, |s| !(s.cancelled || s.done()))
            .unwrap_or_else(|e| e.into_inner());
        state.cancelled || state.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn limits(concurrency: usize, per_table: usize, per_depth: Vec<usize>) -> Limits {
        Limits {
            concurrency,
            per_table,
            per_depth,
            max_queued: 1024,
        }
    }

    fn task(table: usize, depth: usize, payload: u32) -> Task<u32> {
        Task {
            table,
            depth,
            payload,
        }
    }

    #[test]
    fn dfs_goes_table_by_table() {
        assert_eq!(
            order_roots(&[2, 1, 3], Strategy::Dfs, None),
            vec![(0, 0), (0, 1), (1, 0), (2, 0), (2, 1), (2, 2)]
        );
    }

    #[test]
    fn round_robin_interleaves_clients() {
        assert_eq!(
            order_roots(&[2, 1, 3], Strategy::RoundRobin, None),
            vec![(0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (2, 2)]
        );
    }

    #[test]
    fn shuffle_is_a_repeatable_permutation() {
        let counts = [5, 3, 7, 1];
        let a = order_roots(&counts, Strategy::Shuffle { seed: 42 }, None);
        let b = order_roots(&counts, Strategy::Shuffle { seed: 42 }, None);
        let c = order_roots(&counts, Strategy::Shuffle { seed: 43 }, None);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        let mut expected = order_roots(&counts, Strategy::Dfs, None);
        expected.sort_unstable();
        assert_eq!(sorted, expected);
        assert_ne!(a, order_roots(&counts, Strategy::RoundRobin, None));
    }

    #[test]
    fn shards_partition_the_roots() {
        let counts = [3, 4, 1, 5];
        let all = order_roots(&counts, Strategy::Dfs, None);
        for total in 1..=16 {
            let mut union = Vec::new();
            for num in 1..=total {
                let shard = Shard::new(num, total).unwrap();
                let part = order_roots(&counts, Strategy::Dfs, Some(shard));
                assert!(part.len() <= all.len().div_ceil(total));
                union.extend(part);
            }
            assert_eq!(union, all, "{total} shards");
        }
        for strategy in [Strategy::RoundRobin, Strategy::Shuffle { seed: 7 }] {
            let mut union: Vec<_> = (1..=3)
                .flat_map(|num| order_roots(&counts, strategy, Some(Shard::new(num, 3).unwrap())))
                .collect();
            union.sort_unstable();
            let mut all = all.clone();
            all.sort_unstable();
            assert_eq!(union, all);
        }
        assert!(Shard::new(0, 3).is_err());
        assert!(Shard::new(4, 3).is_err());
        assert!(Shard::new(1, 0).is_err());
    }

    #[test]
    fn go_style_halves_per_depth() {
        let limits = Limits::go_style(100, 4);
        assert_eq!(limits.per_depth, vec![100, 50, 25, 12, 6]);
        assert_eq!(limits.depth_limit(9), 6);
        assert_eq!(Limits::go_style(1, 3).per_depth, vec![1, 1, 1, 1]);
        assert!(Limits::go_style(0, 0).validate().is_ok());
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut bad = Limits::go_style(4, 1);
        bad.per_table = 0;
        assert!(Scheduler::<u32>::new(bad, 1).is_err());
        let mut bad = Limits::go_style(4, 1);
        bad.per_depth = vec![2, 0];
        assert!(bad.validate().is_err());
    }

    #[test]
    fn deeper_tasks_go_first_and_fifo_within_a_depth() {
        let s = Scheduler::new(limits(10, 10, vec![10]), 3).unwrap();
        s.push(task(0, 0, 1)).unwrap();
        s.push(task(1, 1, 2)).unwrap();
        s.push(task(2, 2, 3)).unwrap();
        s.push(task(1, 1, 4)).unwrap();
        let mut order = Vec::new();
        while let Next::Run(t, slot) = s.try_next() {
            order.push(t.payload);
            s.finish(slot);
        }
        assert_eq!(order, vec![3, 2, 4, 1]);
        assert!(matches!(s.try_next(), Next::Done));
    }

    #[test]
    fn limits_are_enforced() {
        let s = Scheduler::new(limits(3, 2, vec![3, 1]), 2).unwrap();
        for i in 0..3 {
            s.push(task(0, 0, i)).unwrap();
        }
        s.push(task(1, 1, 10)).unwrap();
        s.push(task(1, 1, 11)).unwrap();
        let Next::Run(a, sa) = s.try_next() else {
            panic!()
        };
        assert_eq!(a.payload, 10); // depth 1 first
        assert!(matches!(s.try_next(), Next::Run(t, _) if t.payload == 0));
        assert!(matches!(s.try_next(), Next::Run(t, _) if t.payload == 1));
        // global limit 3 reached; table 0 is at its limit of 2 anyway
        assert!(matches!(s.try_next(), Next::Wait));
        s.finish(sa);
        // depth-1 limit is 1 but now free; table 1 runs
        assert!(matches!(s.try_next(), Next::Run(t, _) if t.payload == 11));
        assert!(matches!(s.try_next(), Next::Wait));
    }

    #[test]
    fn a_task_blocked_by_its_table_does_not_block_others() {
        let s = Scheduler::new(limits(10, 1, vec![10]), 2).unwrap();
        s.push(task(0, 0, 1)).unwrap();
        s.push(task(0, 0, 2)).unwrap();
        s.push(task(1, 0, 3)).unwrap();
        let Next::Run(_, _first) = s.try_next() else {
            panic!()
        };
        assert!(matches!(s.try_next(), Next::Run(t, _) if t.payload == 3));
    }

    #[test]
    fn holds_keep_the_sync_open() {
        let s = Scheduler::<u32>::new(limits(1, 1, vec![1]), 1).unwrap();
        assert!(matches!(s.try_next(), Next::Done));
        s.hold();
        assert!(matches!(s.try_next(), Next::Wait));
        s.release_hold();
        assert!(matches!(s.try_next(), Next::Done));
    }

    #[test]
    fn push_asks_for_workers_until_concurrency() {
        let s = Scheduler::new(limits(2, 2, vec![2]), 1).unwrap();
        assert!(s.push(task(0, 0, 1)).unwrap());
        s.register_worker();
        assert!(s.push(task(0, 0, 2)).unwrap());
        s.register_worker();
        assert!(!s.push(task(0, 0, 3)).unwrap());
    }

    #[test]
    fn cancel_wakes_blocked_workers_and_drops_the_queue() {
        let s = Arc::new(Scheduler::new(limits(1, 1, vec![1]), 1).unwrap());
        s.push(task(0, 0, 1)).unwrap();
        let Next::Run(_, slot) = s.next() else {
            panic!()
        };
        s.push(task(0, 0, 2)).unwrap();
        let waiter = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || matches!(s.next(), Next::Cancelled))
        };
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(s.cancel().len(), 1);
        assert!(waiter.join().unwrap());
        s.finish(slot);
        assert!(s.is_over());
    }

    #[test]
    fn waiting_for_room_lends_the_slot_to_the_children() {
        // One slot in all, a queue of 2: the parent fills the queue, then must wait while its
        // children run in its slot, and gets the slot back afterwards.
        let mut l = limits(1, 1, vec![1]);
        l.max_queued = 2;
        let s = Arc::new(Scheduler::new(l, 2).unwrap());
        s.push(task(0, 0, 0)).unwrap();
        let Next::Run(_, parent) = s.next() else {
            panic!()
        };
        let resolved = Arc::new(AtomicUsize::new(0));
        let worker = {
            let (s, resolved) = (Arc::clone(&s), Arc::clone(&resolved));
            std::thread::spawn(move || loop {
                match s.next() {
                    Next::Run(_, slot) => {
                        resolved.fetch_add(1, Ordering::SeqCst);
                        s.finish(slot);
                    }
                    _ => return,
                }
            })
        };
        for child in 0..10 {
            assert!(s.wait_for_room(&parent));
            s.push(task(1, 1, child)).unwrap();
        }
        s.finish(parent);
        worker.join().unwrap();
        assert_eq!(resolved.load(Ordering::SeqCst), 10);
        assert!(s.is_over());
    }

    #[test]
    fn suspend_and_resume_without_blocking() {
        let mut l = limits(1, 1, vec![1]);
        l.max_queued = 1;
        let s = Scheduler::new(l, 2).unwrap();
        s.push(task(0, 0, 0)).unwrap();
        let Next::Run(_, parent) = s.try_next() else {
            panic!()
        };
        s.push(task(1, 1, 1)).unwrap();
        assert!(!s.has_room());
        s.suspend(&parent);
        assert!(!s.try_resume(&parent));
        let Next::Run(_, child) = s.try_next() else {
            panic!()
        };
        assert!(!s.try_resume(&parent)); // room now, but the only slot is the child's
        s.finish(child);
        assert!(s.try_resume(&parent));
        s.finish(parent);
        assert!(matches!(s.try_next(), Next::Done));
    }

    #[test]
    fn an_abandoned_task_frees_its_slot_and_its_late_finish_is_a_no_op() {
        let s = Scheduler::new(limits(1, 1, vec![1]), 1).unwrap();
        s.push(task(0, 0, 0)).unwrap();
        s.push(task(0, 0, 1)).unwrap();
        let Next::Run(_, stuck) = s.try_next() else {
            panic!()
        };
        assert!(matches!(s.try_next(), Next::Wait)); // the only slot is taken
        assert!(s.abandon(stuck.id()));
        assert!(!s.abandon(stuck.id())); // once only
        let Next::Run(_, next) = s.try_next() else {
            panic!("the abandoned task's slot should be free")
        };
        s.finish(next);
        assert!(matches!(s.try_next(), Next::Done));
        // The stuck thread comes back: nothing it does with its slot counts any more.
        assert!(!s.wait_for_room(&stuck));
        s.finish(stuck);
        assert!(matches!(s.try_next(), Next::Done));
    }

    #[test]
    fn abandoning_a_waiting_task_wakes_it_and_ends_its_wait() {
        let mut l = limits(1, 1, vec![1, 1]);
        l.max_queued = 1;
        let s = Arc::new(Scheduler::new(l, 2).unwrap());
        s.push(task(0, 0, 0)).unwrap();
        let Next::Run(_, parent) = s.try_next() else {
            panic!()
        };
        s.push(task(1, 1, 1)).unwrap(); // the queue is full: the parent must wait
        let id = parent.id();
        let waiter = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let resumed = s.wait_for_room(&parent);
                s.finish(parent);
                resumed
            })
        };
        // The child runs in the lent slot; the parent is given up on meanwhile.
        let Next::Run(_, child) = s.next() else {
            panic!()
        };
        assert!(s.abandon(id));
        assert!(!waiter.join().unwrap());
        s.finish(child);
        assert!(matches!(s.try_next(), Next::Done));
    }

    #[test]
    fn abandoning_a_suspended_task_ends_the_sync_without_it() {
        let mut l = limits(1, 1, vec![1, 1]);
        l.max_queued = 1;
        let s = Scheduler::new(l, 2).unwrap();
        s.push(task(0, 0, 0)).unwrap();
        let Next::Run(_, parent) = s.try_next() else {
            panic!()
        };
        s.push(task(1, 1, 1)).unwrap();
        s.suspend(&parent);
        assert!(s.abandon(parent.id()));
        let Next::Run(_, child) = s.try_next() else {
            panic!()
        };
        s.finish(child);
        assert!(matches!(s.try_next(), Next::Done));
        assert!(s.try_resume(&parent)); // it may go on to end; nothing is claimed
        s.resume_now(&parent);
        s.finish(parent);
        assert!(matches!(s.try_next(), Next::Done));
    }

    #[test]
    fn many_threads_resolve_a_tree_exactly_once() {
        // 4 roots, each with 50 children, each with 3 grandchildren, on 8 threads.
        let s = Arc::new(Scheduler::new(Limits::go_style(8, 2), 3).unwrap());
        for root in 0..4 {
            s.push(task(0, 0, root)).unwrap();
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, seen) = (Arc::clone(&s), Arc::clone(&seen));
                std::thread::spawn(move || loop {
                    let Next::Run(t, slot) = s.next() else { return };
                    seen.lock().unwrap().push((t.depth, t.payload));
                    let fan_out = [50, 3, 0][t.depth];
                    for i in 0..fan_out {
                        assert!(s.wait_for_room(&slot));
                        s.push(task(t.depth + 1, t.depth + 1, t.payload * 100 + i))
                            .unwrap();
                    }
                    s.finish(slot);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4 + 4 * 50 + 4 * 50 * 3);
        assert!(s.is_over());
    }
}
