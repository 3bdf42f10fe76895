//! The supervisor on its own: commands in, pipeline tasks run, progress in the shared map.

use std::time::Duration;

use rcdc_state::model::ChangeFeedInfo;
use rcdc_state::{ChangefeedId, TableId, Ts};

use super::*;
use crate::event::{RowChange, RowOp, TableEvent, Value};
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
    }
}

/// A source that returns `rows` (all of them, whatever the range), then the resolved mark.
struct Rows(Vec<RowChange>);

impl TableSource for Rows {
    fn now(&self) -> Ts {
        Ts::from_parts(2_000, 0)
    }
    fn fetch(&mut self, _: Ts, upto: Ts) -> Result<Vec<TableEvent>, String> {
        let mut out: Vec<TableEvent> = self.0.drain(..).map(TableEvent::Row).collect();
        out.push(TableEvent::Resolved(upto));
        Ok(out)
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

/// Hands out one prepared source per table.
struct Factory {
    sources: Mutex<BTreeMap<TableId, Box<dyn TableSource>>>,
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
        _: TableId,
    ) -> Result<Box<dyn TableSink>, String> {
        Ok(Box::new(Durable))
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
    };
    let factory: Arc<dyn PipelineFactory> = Arc::new(factory);
    let small = TablePipelineConfig {
        sorter_bytes: 100,
        ..Default::default()
    };
    for (table, config) in [(TableId(1), small), (TableId(2), Default::default())] {
        let pipelines = Arc::new(Mutex::new(Pipelines::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervise(rx, factory.clone(), pipelines.clone(), config));
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

/// What a [`Gated`] source tells the test.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    /// A fetch started and waits for the test's release.
    Entered,
    /// The source was dropped (its pipeline is gone).
    Dropped,
}

/// A source whose every fetch blocks until the test releases it, so a command can land while
/// a pull is in flight. A closed release channel fails the fetch.
struct Gated {
    events: std::sync::mpsc::Sender<Gate>,
    release: std::sync::mpsc::Receiver<()>,
}

impl TableSource for Gated {
    fn now(&self) -> Ts {
        Ts::from_parts(5_000, 0) // behind: the pipeline pulls slice after slice
    }
    fn fetch(&mut self, _: Ts, upto: Ts) -> Result<Vec<TableEvent>, String> {
        let _ = self.events.send(Gate::Entered);
        self.release
            .recv()
            .map_err(|_| "the test closed the gate".to_owned())?;
        Ok(vec![TableEvent::Resolved(upto)])
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = self.events.send(Gate::Dropped);
    }
}

async fn next_gate(events: &std::sync::mpsc::Receiver<Gate>) -> Gate {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(g) = events.try_recv() {
            return g;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the source is silent"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_in_flight_when_its_pipeline_is_cancelled_leaves_no_progress_entry() {
    let (events_tx, events) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let source = Gated {
        events: events_tx,
        release: release_rx,
    };
    let factory = Factory {
        sources: Mutex::new([(TableId(1), Box::new(source) as Box<dyn TableSource>)].into()),
    };
    let pipelines = Arc::new(Mutex::new(Pipelines::new()));
    let (tx, rx) = mpsc::unbounded_channel();
    let supervisor = tokio::spawn(supervise(
        rx,
        Arc::new(factory),
        pipelines.clone(),
        TablePipelineConfig::default(),
    ));
    tx.send(start(TableId(1))).expect("supervisor runs");
    assert_eq!(next_gate(&events).await, Gate::Entered);

    // The processor cancels the table while its first pull is in flight.
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

    // The pull completes. Whatever the cancelled run does next (pull again, or be dropped),
    // by then it has reported what that pull would report.
    release.send(()).expect("the fetch waits");
    let after = next_gate(&events).await;
    assert!(
        !pipelines.lock().contains_key(&key),
        "a cancelled pipeline's report came back after {after:?}: {:?}",
        pipelines.lock().get(&key)
    );
    drop(release); // a second fetch, if any, fails and the run ends
    drop(tx);
    supervisor.await.expect("supervisor ends");
    assert!(pipelines.lock().is_empty(), "{:?}", pipelines.lock());
}
