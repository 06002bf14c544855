//! The engine's central rules, driven by a plain-Rust driver: ordering of state updates,
//! backpressure, cancellation, failure isolation, concurrency limits and abandoning a task
//! past its time limit.
//!
//! Each resolver is a script of [`Step`]s; rows are `i64` ids in one primary-key column, and a
//! parent row handed to child tasks is its id. Waits are on condition variables the test
//! controls, and every wait on the engine's output is bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use headwater_core::builder::Values;
use headwater_core::schema;
use headwater_engine::accumulate::{Local, Owner};
use headwater_engine::buffer::Pop;
use headwater_engine::engine::{Config, Engine};
use headwater_engine::flush::{flush, flush_local, Flushed};
use headwater_engine::host::Host;
use headwater_engine::lifecycle::{self, JoinStep, Joiner};
use headwater_engine::lock::lock;
use headwater_engine::output::{Failure, Output};
use headwater_engine::scheduler::{Limits, Next, Slot, Task};
use headwater_engine::table::{OnRowError, Options, Table};
use headwater_engine::task::{EngineTask, Payload};
use headwater_engine::worker::{end_task, queue_release, Driver, Left, TaskContext};

/// Longest any test waits for the engine's output before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A gate resolvers wait at until the test opens it, counting who arrived.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut state = lock(&self.state);
        state.1 += 1;
        self.changed.notify_all();
        while !state.0 {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn open(&self) {
        lock(&self.state).0 = true;
        self.changed.notify_all();
    }

    fn wait_for(&self, arrivals: usize) {
        let mut state = lock(&self.state);
        while state.1 < arrivals {
            let (next, timeout) = self.changed.wait_timeout(state, PATIENCE).unwrap();
            assert!(!timeout.timed_out(), "resolvers never reached the gate");
            state = next;
        }
    }
}

/// One thing a resolver does.
#[derive(Debug, Clone)]
enum Step {
    /// Yields a row.
    Row(i64),
    /// Sets a state key.
    State(&'static str, &'static str),
    /// Raises.
    Fail(&'static str),
    /// Waits at a gate.
    Wait(Arc<Gate>),
}

type Script = dyn Fn(usize, Option<i64>, usize) -> Vec<Step> + Send + Sync;

/// The test driver: resolvers are scripts of steps, by table, parent row and client.
struct TestHost {
    script: Box<Script>,
    /// Tasks running now, and the most ever running at once.
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl std::fmt::Debug for TestHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHost").finish_non_exhaustive()
    }
}

impl Host for TestHost {
    type Row = i64;
    type Failure = String;
}

impl Driver for TestHost {
    fn work(engine: &Arc<Engine<Self>>) -> Left {
        let mut local = Local::new(Owner::Thread(std::thread::current().id()));
        loop {
            let next = match engine.scheduler.try_next() {
                Next::Wait => {
                    flush_all(engine, &local);
                    engine.scheduler.next()
                }
                other => other,
            };
            match next {
                Next::Run(task, slot) => {
                    if run(engine, &mut local, task, slot) == Left::Pool {
                        return Left::Pool;
                    }
                }
                Next::Wait => {}
                Next::Done | Next::Cancelled => break,
            }
        }
        flush_all(engine, &local);
        Left::Done
    }
}

fn flush_all(engine: &Engine<TestHost>, local: &Local<TestHost>) {
    flush_local(
        engine,
        local,
        false,
        |bytes| engine.ledger.output.reserve(bytes),
        |work| work.abandon(&engine.scheduler),
    )
    .unwrap();
}

fn run(
    engine: &Arc<Engine<TestHost>>,
    local: &mut Local<TestHost>,
    task: EngineTask<TestHost>,
    slot: Slot,
) -> Left {
    let host = &engine.host;
    let now = host.running.fetch_add(1, Ordering::SeqCst) + 1;
    host.most_running.fetch_max(now, Ordering::SeqCst);
    let mut cx = TaskContext::new(engine, task, &slot, 0);
    let _current = cx.ticket.enter();
    let parent = cx.parent.as_ref().map(|p| *p.row);
    for step in (host.script)(cx.table, parent, cx.client) {
        if engine.is_cancelled() || cx.ticket.timed_out() {
            break;
        }
        match step {
            Step::Row(id) => append(engine, local, &mut cx, id),
            Step::State(key, value) => {
                let closed = cx.epoch.close((key.to_owned(), value.to_owned())).unwrap();
                engine.ledger.state.set(key.to_owned(), value.to_owned());
                let owner = Owner::Thread(std::thread::current().id());
                if let Some(work) = queue_release(engine, owner, cx.table, closed) {
                    work.abandon(&engine.scheduler);
                }
            }
            Step::Fail(message) => {
                cx.failed();
                engine
                    .ledger
                    .fail(cx.table, Some(cx.client), Failure::Host(message.into()));
                break;
            }
            Step::Wait(gate) => gate.pass(),
        }
    }
    host.running.fetch_sub(1, Ordering::SeqCst);
    if !engine.running.end(&cx.ticket) {
        return Left::Pool;
    }
    let errors = end_task(
        engine,
        local,
        &cx,
        |bytes| engine.ledger.output.reserve(bytes),
        |work| work.abandon(&engine.scheduler),
    );
    assert!(errors.is_empty(), "{errors:?}");
    engine.scheduler.finish(slot);
    Left::Done
}

fn append(
    engine: &Engine<TestHost>,
    local: &mut Local<TestHost>,
    cx: &mut TaskContext<TestHost>,
    id: i64,
) {
    let accumulator = Arc::clone(engine.accumulator(local, cx.table).unwrap());
    let has_children = !engine.tables()[cx.table].children.is_empty();
    let full = {
        let mut guard = lock(&accumulator);
        match guard.builders[0].parts_mut().1 {
            Values::Int64(column) => column.push(id),
            other => panic!("the id column is an int64 column, not {other:?}"),
        }
        let held = if has_children {
            cx.epoch
                .get()
                .map(|epoch| headwater_engine::accumulate::HeldRow {
                    row: Arc::new(id),
                    client: cx.client,
                    epoch,
                })
        } else {
            None
        };
        guard.appended(&engine.options, cx.parent.as_ref().map(|p| p.id), held)
    };
    cx.rows_kept += 1;
    if full {
        let flushed = flush(
            engine,
            &accumulator,
            |bytes| engine.ledger.output.reserve(bytes),
            false,
        )
        .unwrap();
        if let Flushed::Refused(work) = flushed {
            work.abandon(&engine.scheduler);
        }
    }
}

fn schema(name: &str) -> SchemaRef {
    let uuid = |name: &str, nullable| {
        Field::new(name, DataType::FixedSizeBinary(16), nullable)
            .with_metadata([(schema::EXTENSION_NAME.into(), "uuid".into())].into())
    };
    Arc::new(
        Schema::new(vec![
            uuid(schema::CQ_ID, false),
            uuid(schema::CQ_PARENT_ID, true),
            Field::new("id", DataType::Int64, false)
                .with_metadata([(schema::PRIMARY_KEY.into(), "true".into())].into()),
        ])
        .with_metadata([(schema::TABLE_NAME.into(), name.into())].into()),
    )
}

/// How a test sync is set up.
struct Setup {
    /// Parent index of each table (`None`: top-level).
    tables: Vec<Option<usize>>,
    /// `(table, client)` of each root task.
    roots: Vec<(usize, usize)>,
    concurrency: usize,
    batch_max_rows: usize,
    max_buffer_bytes: usize,
    resolver_timeout: Option<Duration>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            tables: vec![None],
            roots: vec![(0, 0)],
            concurrency: 8,
            batch_max_rows: 1000,
            max_buffer_bytes: 64 << 20,
            resolver_timeout: None,
        }
    }
}

fn engine(
    setup: Setup,
    script: impl Fn(usize, Option<i64>, usize) -> Vec<Step> + Send + Sync + 'static,
) -> Arc<Engine<TestHost>> {
    let mut tables: Vec<Table> = Vec::new();
    for (index, parent) in setup.tables.iter().enumerate() {
        let depth = parent.map_or(0, |p| tables[p].depth + 1);
        tables.push(Table::new(schema(&format!("t{index}")), depth));
        if let Some(p) = parent {
            tables[*p].children.push(index);
        }
    }
    let max_depth = tables.iter().map(|t| t.depth).max().unwrap_or(0);
    let roots = setup
        .roots
        .iter()
        .map(|&(table, client)| Task {
            table,
            depth: 0,
            payload: Payload::root(client),
        })
        .collect();
    let config = Config {
        limits: Limits::go_style(setup.concurrency, max_depth),
        options: Options {
            batch_max_rows: setup.batch_max_rows,
            batch_max_bytes: 8 << 20,
            batch_max_latency: Duration::from_millis(20),
            on_row_error: OnRowError::Skip,
            resolver_timeout: setup.resolver_timeout,
        },
        max_buffer_bytes: setup.max_buffer_bytes,
    };
    let host = TestHost {
        script: Box::new(script),
        running: AtomicUsize::new(0),
        most_running: AtomicUsize::new(0),
    };
    Engine::new(tables, roots, config, HashMap::new(), host).unwrap()
}

/// What a consumer saw, in order.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Rows(usize, Vec<i64>),
    State(usize, String, String),
    Error(usize, String),
}

/// Reads the output until it closes.
fn drain(engine: &Engine<TestHost>) -> Vec<Seen> {
    let mut seen = Vec::new();
    loop {
        match engine.ledger.output.pop(PATIENCE) {
            Pop::Item(Output::Insert { table, batch }) => {
                let ids = batch
                    .column_by_name("id")
                    .unwrap()
                    .as_primitive::<Int64Type>();
                seen.push(Seen::Rows(table, ids.values().to_vec()));
            }
            Pop::Item(Output::State { table, key, value }) => {
                seen.push(Seen::State(table, key, value))
            }
            Pop::Item(Output::Error { table, failure, .. }) => seen.push(Seen::Error(
                table,
                match failure {
                    Failure::Host(text) | Failure::Text(text) => text,
                    Failure::TimedOut(_) => "timed out".into(),
                },
            )),
            Pop::Timeout => panic!("the sync did not end; saw {seen:?}"),
            Pop::Closed => return seen,
        }
    }
}

fn join(engine: &Engine<TestHost>) {
    let mut joiner = Joiner::new(engine);
    loop {
        match joiner.step() {
            JoinStep::Joined => return,
            JoinStep::Interrupt(_) => {}
            JoinStep::Abandoned(stuck) => panic!("threads did not stop: {stuck:?}"),
        }
    }
}

/// Runs a sync to its end; returns what came out.
fn sync(engine: &Arc<Engine<TestHost>>) -> Vec<Seen> {
    lifecycle::start(engine).unwrap();
    let seen = drain(engine);
    join(engine);
    assert!(engine.finished());
    assert_eq!(engine.scheduler.workers(), 0);
    seen
}

/// Where in `seen` table `table`'s row `id` came out.
fn position_of_row(seen: &[Seen], table: usize, id: i64) -> usize {
    seen.iter()
        .position(|s| matches!(s, Seen::Rows(t, ids) if *t == table && ids.contains(&id)))
        .unwrap_or_else(|| panic!("row {id} of table {table} never came out: {seen:?}"))
}

fn position_of_state(seen: &[Seen]) -> Option<usize> {
    seen.iter().position(|s| matches!(s, Seen::State(..)))
}

/// A parent table whose rows 1 and 2 come before a state update and row 3 after it; each
/// parent row has two child rows, and the child task of parent row `failing` (if any) fails
/// after its first row.
fn parent_with_children(failing: Option<i64>) -> Arc<Engine<TestHost>> {
    let setup = Setup {
        tables: vec![None, Some(0)],
        batch_max_rows: 1,
        ..Setup::default()
    };
    engine(setup, move |table, parent, _| match (table, parent) {
        (0, _) => vec![
            Step::Row(1),
            Step::Row(2),
            Step::State("cursor", "2"),
            Step::Row(3),
        ],
        (_, Some(p)) if Some(p) == failing => vec![Step::Row(p * 10), Step::Fail("child failed")],
        (_, Some(p)) => vec![Step::Row(p * 10), Step::Row(p * 10 + 1)],
        (_, None) => unreachable!("a child task always has a parent"),
    })
}

#[test]
fn a_state_update_comes_after_its_rows_and_their_children_rows() {
    let engine = parent_with_children(None);
    let seen = sync(&engine);
    let state = position_of_state(&seen).expect("the update was delivered");
    assert_eq!(
        seen[state],
        Seen::State(0, "cursor".into(), "2".into()),
        "{seen:?}"
    );
    for (table, id) in [(0, 1), (0, 2), (1, 10), (1, 11), (1, 20), (1, 21)] {
        assert!(
            position_of_row(&seen, table, id) < state,
            "row {id} of table {table} came after the update: {seen:?}"
        );
    }
    assert_eq!(engine.ledger.state.snapshot()["cursor"], "2");
    let tables = engine.tables();
    assert_eq!(tables[0].counters.rows.load(Ordering::SeqCst), 3);
    assert_eq!(tables[1].counters.rows.load(Ordering::SeqCst), 6);
    assert_eq!(tables[0].counters.withheld.load(Ordering::SeqCst), 0);
}

#[test]
fn a_state_update_is_withheld_when_rows_it_covers_are_lost() {
    let engine = parent_with_children(Some(1));
    let seen = sync(&engine);
    assert_eq!(position_of_state(&seen), None, "{seen:?}");
    assert!(!engine.ledger.state.snapshot().contains_key("cursor"));
    let tables = engine.tables();
    assert_eq!(tables[0].counters.withheld.load(Ordering::SeqCst), 1);
    assert_eq!(tables[1].counters.errors.load(Ordering::SeqCst), 1);
    // The failure stays with its task: the sibling child tasks delivered everything.
    for id in [20, 21, 30, 31] {
        position_of_row(&seen, 1, id);
    }
    assert!(seen.contains(&Seen::Error(1, "child failed".into())));
}

#[test]
fn a_failed_parent_keeps_the_rows_before_its_failure_and_their_children_run() {
    let setup = Setup {
        tables: vec![None, Some(0)],
        roots: vec![(0, 0), (0, 1)],
        ..Setup::default()
    };
    let engine = engine(setup, |table, parent, client| match (table, client) {
        (0, 0) => vec![Step::Row(1), Step::State("cursor", "1"), Step::Fail("boom")],
        (0, _) => vec![Step::Row(2)],
        _ => vec![Step::Row(parent.unwrap() * 10)],
    });
    let seen = sync(&engine);
    for (table, id) in [(0, 1), (0, 2), (1, 10), (1, 20)] {
        position_of_row(&seen, table, id);
    }
    assert!(seen.contains(&Seen::Error(0, "boom".into())));
    // The update covers row 1 only, which was delivered with its child: it is not withheld.
    assert_eq!(engine.ledger.state.snapshot()["cursor"], "1");
    let tables = engine.tables();
    assert_eq!(tables[0].counters.errors.load(Ordering::SeqCst), 1);
    assert_eq!(tables[0].counters.rows.load(Ordering::SeqCst), 2);
    assert_eq!(tables[1].counters.rows.load(Ordering::SeqCst), 2);
}

#[test]
fn producers_block_on_the_byte_budget_and_memory_stays_bounded() {
    let rows: i64 = 20_000;
    let setup = Setup {
        batch_max_rows: 100,
        max_buffer_bytes: 4096,
        ..Setup::default()
    };
    let engine = engine(setup, move |_, _, _| (0..rows).map(Step::Row).collect());
    let seen = sync(&engine);
    let delivered: usize = seen
        .iter()
        .map(|s| match s {
            Seen::Rows(_, ids) => ids.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(delivered, rows as usize);
    // 200 batches of 100 rows (each id, `_cq_id` and `_cq_parent_id` making 4 KiB) went
    // through, yet at no time were more than a couple held.
    assert!(
        engine.ledger.output.peak() <= 16 << 10,
        "peak {} bytes",
        engine.ledger.output.peak()
    );
}

#[test]
fn an_item_larger_than_the_whole_budget_still_passes() {
    let setup = Setup {
        batch_max_rows: 500,
        max_buffer_bytes: 1,
        ..Setup::default()
    };
    let engine = engine(setup, |_, _, _| (0..2_000).map(Step::Row).collect());
    let seen = sync(&engine);
    let mut ids: Vec<i64> = seen
        .iter()
        .flat_map(|s| match s {
            Seen::Rows(0, ids) => ids.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..2_000).collect::<Vec<_>>());
}

#[test]
fn cancelling_joins_every_thread_and_names_what_it_interrupted() {
    let gate = Arc::new(Gate::default());
    let setup = Setup {
        tables: vec![None, None],
        roots: vec![(0, 0), (1, 0), (1, 1)],
        concurrency: 3,
        ..Setup::default()
    };
    let waiting = Arc::clone(&gate);
    let engine = engine(setup, move |_, _, _| {
        vec![Step::Row(1), Step::Wait(Arc::clone(&waiting)), Step::Row(2)]
    });
    lifecycle::start(&engine).unwrap();
    gate.wait_for(3);
    drop(engine.cancel());
    gate.open();
    assert!(matches!(engine.ledger.output.pop(PATIENCE), Pop::Closed));
    join(&engine);
    assert!(engine.finished());
    assert_eq!(engine.scheduler.workers(), 0);
    assert_eq!(engine.running.now(), Vec::new());
    assert_eq!(engine.running.interrupted(), vec![(0, 0), (1, 0), (1, 1)]);
    assert!(engine.is_cancelled());
}

#[test]
fn tasks_never_run_beyond_the_concurrency_limit() {
    let setup = Setup {
        roots: (0..12).map(|client| (0, client)).collect(),
        concurrency: 2,
        ..Setup::default()
    };
    let engine = engine(setup, |_, _, client| {
        (0..50)
            .map(|k| Step::Row(client as i64 * 100 + k))
            .collect()
    });
    let seen = sync(&engine);
    let most = engine.host.most_running.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} tasks ran at once");
    let delivered: usize = seen
        .iter()
        .map(|s| match s {
            Seen::Rows(_, ids) => ids.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(delivered, 600);
}

#[test]
fn a_task_past_its_time_limit_is_abandoned_and_the_sync_ends_without_it() {
    let gate = Arc::new(Gate::default());
    let setup = Setup {
        roots: vec![(0, 0), (0, 1)],
        resolver_timeout: Some(Duration::from_millis(50)),
        ..Setup::default()
    };
    let stuck = Arc::clone(&gate);
    let engine = engine(setup, move |_, _, client| match client {
        0 => vec![Step::Row(1), Step::Wait(Arc::clone(&stuck)), Step::Row(2)],
        _ => vec![Step::Row(3)],
    });
    let seen = sync(&engine);
    assert!(
        seen.contains(&Seen::Error(0, "timed out".into())),
        "{seen:?}"
    );
    position_of_row(&seen, 0, 3);
    assert!(
        !seen
            .iter()
            .any(|s| matches!(s, Seen::Rows(_, ids) if ids.contains(&2))),
        "a row yielded after the timeout was delivered: {seen:?}"
    );
    assert_eq!(engine.tables()[0].counters.errors.load(Ordering::SeqCst), 1);
    // The stuck resolver comes back on its own once released; it delivers nothing more.
    gate.open();
}
