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
