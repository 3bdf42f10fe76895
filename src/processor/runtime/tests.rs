//! The supervisor on its own: commands in, pipeline tasks run, progress in the shared map.

use std::time::Duration;

use rcdc_state::model::ChangeFeedInfo;
use rcdc_state::{ChangefeedId, TableId, Ts};

use super::*;
use crate::event::{RowChange, RowOp, TableEvent, Value};
use crate::pipeline::executor::{DataPlaneRuntime, DataPlaneRuntimeConfig};
use crate::pipeline::sorter::SorterConfig;
use crate::pipeline::table::{emit_all, PullError};
use crate::processor::tick::TableProgress;
use crate::sink::SinkError;

fn start_ts() -> Ts {
    Ts::from_parts(1_000, 0)
}

fn row(ms: u64, key: i64) -> RowChange {
    RowChange {
        table: TableId(1),
        schema: "demo".into(),
        table_name: "t1".into(),
        commit_ts: Ts::from_parts(ms, 0),
        start_ts: Ts::from_parts(ms - 1, 0),
        op: RowOp::Insert,
        key,
        columns: vec![("id".into(), Value::Int(key))],
        pre_columns: None,
    }
}

/// A source that returns `rows` (all of them, whatever the range), then the resolved mark.
struct Rows(Vec<RowChange>);

impl TableSource for Rows {
    fn now(&self) -> Ts {
        Ts::from_parts(2_000, 0)
    }
    fn fetch(
        &mut self,
        _: Ts,
        upto: Ts,
        emit: &mut dyn FnMut(TableEvent) -> Result<(), PullError>,
    ) -> Result<(), PullError> {
        let mut out: Vec<TableEvent> = self.0.drain(..).map(TableEvent::Row).collect();
        out.push(TableEvent::Resolved(upto));
        emit_all(out, emit)
    }
}

struct Durable;

impl TableSink for Durable {
    fn write(&mut self, _: &[RowChange]) -> Result<(), SinkError> {
        Ok(())
    }
    fn flush(&mut self, resolved: Ts) -> Result<Ts, SinkError> {
        Ok(resolved)
    }
    fn close(&mut self) {}
    fn rows_written(&self) -> u64 {
        0
    }
}

/// Hands out one prepared source per table, and a prepared sink or a durable one.
#[derive(Default)]
struct Factory {
    sources: Mutex<BTreeMap<TableId, Box<dyn TableSource>>>,
    sinks: Mutex<BTreeMap<TableId, Box<dyn TableSink>>>,
}

impl PipelineFactory for Factory {
    fn source(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        table: TableId,
    ) -> Result<Box<dyn TableSource>, String> {
        self.sources
            .lock()
            .remove(&table)
            .ok_or_else(|| format!("no source for table {table}"))
    }
    fn sink(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        table: TableId,
    ) -> Result<Box<dyn TableSink>, String> {
        Ok(self
            .sinks
            .lock()
            .remove(&table)
            .unwrap_or(Box::new(Durable)))
    }
}

fn start(table: TableId) -> Command {
    Command {
        command: PipelineCommand::Start {
            changefeed: "cf".into(),
            table,
            start_ts: start_ts(),
        },
        info: Some(ChangeFeedInfo::default()),
    }
}

async fn wait_for(
    pipelines: &Arc<Mutex<Pipelines>>,
    table: TableId,
    what: &str,
    pred: impl Fn(&TableProgress) -> bool,
) -> TableProgress {
    let key = (ChangefeedId::from("cf"), table);
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(p) = pipelines.lock().get(&key).filter(|p| pred(p)) {
                return p.clone();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    match found {
        Ok(p) => p,
        Err(_) => panic!("{what}: not reached; last {:?}", pipelines.lock().get(&key)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_get_the_supervisors_sorter_budget() {
    // Two rows of ~80 bytes each arrive before their resolved mark: a 100-byte budget cannot
    // hold them, the default one can. The failure names the budget the pipeline was given.
    let rows = || vec![row(1_500, 1), row(1_600, 2)];
    let factory = Factory {
        sources: Mutex::new(
            [
                (TableId(1), Box::new(Rows(rows())) as Box<dyn TableSource>),
                (TableId(2), Box::new(Rows(rows())) as Box<dyn TableSource>),
            ]
            .into_iter()
            .collect(),
        ),
        ..Default::default()
    };
    let factory: Arc<dyn PipelineFactory> = Arc::new(factory);
    let data_plane = isolated();
    let small = TablePipelineConfig {
        sorter: SorterConfig {
            table_quota: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    for (table, config) in [(TableId(1), small), (TableId(2), Default::default())] {
        let pipelines = Arc::new(Mutex::new(Pipelines::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervise(
            rx,
            factory.clone(),
            pipelines.clone(),
            config,
            data_plane.executor(),
        ));
        tx.send(start(table)).expect("supervisor runs");
        let p = wait_for(&pipelines, table, "the first pull ends", |p| {
            !matches!(p.state, TablePipelineState::Starting)
        })
        .await;
        if table == TableId(1) {
            assert!(
                matches!(&p.state, TablePipelineState::Failed(e) if e.contains("of 100 bytes")),
                "{p:?}"
            );
        } else {
            assert_eq!(p.state, TablePipelineState::Running, "{p:?}");
        }
        drop(tx);
        supervisor.await.expect("supervisor ends");
    }
}

/// What a [`Gate`] tells the test.
#[derive(Debug, PartialEq, Eq)]
enum GateEvent {
    /// The pipeline reached the gate and waits for the test's release.
    Entered,
    /// The gate was dropped with the source or sink holding it (its pipeline is gone).
    Dropped,
}

/// A point where a pipeline blocks until the test releases it, so that a command can land
/// exactly there. A closed release channel fails the pass.
struct Gate {
    events: std::sync::mpsc::Sender<GateEvent>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Gate {
    fn new() -> (
        Self,
        std::sync::mpsc::Receiver<GateEvent>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (events, events_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let gate = Gate {
            events,
            release: Mutex::new(release_rx),
        };
        (gate, events_rx, release)
    }

    fn pass(&self) -> bool {
        let _ = self.events.send(GateEvent::Entered);
        self.release.lock().recv().is_ok()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.events.send(GateEvent::Dropped);
    }
}

/// A source behind by seconds whose every fetch waits at the gate.
struct GatedFetch(Gate);

impl TableSource for GatedFetch {
    fn now(&self) -> Ts {
        Ts::from_parts(5_000, 0) // behind: the pipeline pulls slice after slice
    }
    fn fetch(
        &mut self,
        _: Ts,
        upto: Ts,
        emit: &mut dyn FnMut(TableEvent) -> Result<(), PullError>,
    ) -> Result<(), PullError> {
        if !self.0.pass() {
            return Err(PullError::Source("the test closed the gate".into()));
        }
        emit(TableEvent::Resolved(upto))
    }
}

/// A durable sink whose `rows_written` after the first pull waits at the gate: the pipeline
/// reads it between the pull and the pull's report.
struct GatedCount {
    gate: Gate,
    calls: std::sync::atomic::AtomicU32,
}

impl TableSink for GatedCount {
    fn write(&mut self, _: &[RowChange]) -> Result<(), SinkError> {
        Ok(())
    }
    fn flush(&mut self, resolved: Ts) -> Result<Ts, SinkError> {
        Ok(resolved)
    }
    fn close(&mut self) {}
    fn rows_written(&self) -> u64 {
        // Call 1 is at the pipeline's start, call 2 right after its first pull.
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.gate.pass();
        }
        0
    }
}

async fn next_event(events: &std::sync::mpsc::Receiver<GateEvent>) -> GateEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(g) = events.try_recv() {
            return g;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pipeline never reached the gate"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Pipelines on a runtime of their own, as in production.
fn isolated() -> DataPlaneRuntime {
    DataPlaneRuntime::start(DataPlaneRuntimeConfig {
        worker_threads: 1,
        max_pulls: 2,
    })
    .expect("data-plane runtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_in_flight_when_its_pipeline_is_cancelled_leaves_no_progress_entry() {
    let (gate, events, release) = Gate::new();
    let factory = Factory {
        sources: Mutex::new(
            [(
                TableId(1),
                Box::new(GatedFetch(gate)) as Box<dyn TableSource>,
            )]
            .into(),
        ),
        ..Default::default()
    };
    cancel_at_the_gate(isolated(), factory, events, release).await;
}

/// The narrow race: the pull is done, its report not yet made, when the cancel lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_racing_a_cancel_leaves_no_progress_entry() {
    for data_plane in [DataPlaneRuntime::inline(), isolated()] {
        let (gate, events, release) = Gate::new();
        let sink = GatedCount {
            gate,
            calls: Default::default(),
        };
        let factory = Factory {
            sources: Mutex::new(
                [(TableId(1), Box::new(Rows(vec![])) as Box<dyn TableSource>)].into(),
            ),
            sinks: Mutex::new([(TableId(1), Box::new(sink) as Box<dyn TableSink>)].into()),
        };
        cancel_at_the_gate(data_plane, factory, events, release).await;
    }
}

/// Starts table 1, cancels it while its pipeline waits at the gate, then opens the gate.
async fn cancel_at_the_gate(
    data_plane: DataPlaneRuntime,
    factory: Factory,
    events: std::sync::mpsc::Receiver<GateEvent>,
    release: std::sync::mpsc::Sender<()>,
) {
    let pipelines = Arc::new(Mutex::new(Pipelines::new()));
    let (tx, rx) = mpsc::unbounded_channel();
    let supervisor = tokio::spawn(supervise(
        rx,
        Arc::new(factory),
        pipelines.clone(),
        TablePipelineConfig::default(),
        data_plane.executor(),
    ));
    tx.send(start(TableId(1))).expect("supervisor runs");
    assert_eq!(next_event(&events).await, GateEvent::Entered);

    tx.send(Command {
        command: PipelineCommand::Cancel {
            changefeed: "cf".into(),
            table: TableId(1),
        },
        info: None,
    })
    .expect("supervisor runs");
    let key = (ChangefeedId::from("cf"), TableId(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pipelines.lock().contains_key(&key) {
        assert!(tokio::time::Instant::now() < deadline, "cancel not applied");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    // Whatever the cancelled run does next (reach the gate again, or be dropped), by then it
    // has made the report that was due.
    release.send(()).expect("the pipeline waits");
    let after = next_event(&events).await;
    assert!(
        !pipelines.lock().contains_key(&key),
        "a cancelled pipeline's report came back ({after:?} next): {:?}",
        pipelines.lock().get(&key)
    );
    drop(release); // a run still going fails at its next pass and ends
    drop(tx);
    supervisor.await.expect("supervisor ends");
    assert!(pipelines.lock().is_empty(), "{:?}", pipelines.lock());
}
