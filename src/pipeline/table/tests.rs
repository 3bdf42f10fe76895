use std::collections::BTreeMap;

use rcdc_state::{TableId, Ts};

use super::*;
use crate::event::{RowChange, RowOp, Value};
use crate::sink::SinkError;

/// A source with a fixed set of rows and a movable "now".
struct Scripted {
    rows: Vec<RowChange>,
    now: Arc<Mutex<Ts>>,
    fail_after: Option<Ts>,
}

impl TableSource for Scripted {
    fn now(&self) -> Ts {
        *self.now.lock()
    }
    fn fetch(
        &mut self,
        after: Ts,
        upto: Ts,
        emit: &mut dyn FnMut(TableEvent) -> Result<(), PullError>,
    ) -> Result<(), PullError> {
        if self.fail_after.is_some_and(|f| upto > f) {
            return Err(PullError::Source("snapshot lost".into()));
        }
        let mut out: Vec<TableEvent> = self
            .rows
            .iter()
            .filter(|r| r.commit_ts > after && r.commit_ts <= upto)
            .cloned()
            .map(TableEvent::Row)
            .rev()
            .collect();
        out.push(TableEvent::Resolved(upto));
        emit_all(out, emit)
    }
}

/// A sink that records what it durably has.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<(Vec<RowChange>, Ts)>>);

impl TableSink for Recording {
    fn write(&mut self, rows: &[RowChange]) -> Result<(), SinkError> {
        self.0.lock().0.extend_from_slice(rows);
        Ok(())
    }
    fn flush(&mut self, resolved: Ts) -> Result<Ts, SinkError> {
        let mut g = self.0.lock();
        g.1 = g.1.max(resolved);
        Ok(g.1)
    }
    fn close(&mut self) {}
    fn rows_written(&self) -> u64 {
        self.0.lock().0.len() as u64
    }
}

fn row(ts: u64, key: i64) -> RowChange {
    RowChange {
        table: TableId(7),
        schema: "demo".into(),
        table_name: "t7".into(),
        commit_ts: Ts::from_parts(ts, 0),
        start_ts: Ts::from_parts(ts - 1, 0),
        op: RowOp::Insert,
        key,
        columns: vec![("id".into(), Value::Int(key))],
        pre_columns: None,
    }
}

/// Table 7 of changefeed `cf`, starting at physical ms 1,000.
fn spawn_pipeline(
    source: Box<dyn TableSource>,
    sink: Box<dyn TableSink>,
    progress: &Arc<Mutex<Pipelines>>,
    stop_at: watch::Receiver<Option<Ts>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run_table_pipeline(
        Ts::from_parts(1_000, 0),
        source,
        sink,
        ProgressSlot::new(progress.clone(), ("cf".into(), TableId(7))),
        stop_at,
        config(),
        crate::pipeline::executor::DataPlaneRuntime::inline().executor(),
    ))
}

fn config() -> TablePipelineConfig {
    TablePipelineConfig {
        sorter: SorterConfig {
            table_quota: 1 << 20,
            ..Default::default()
        },
        poll_interval: Duration::from_millis(5),
        max_slice_ms: 1_000,
    }
}

async fn wait_for(
    progress: &Arc<Mutex<Pipelines>>,
    pred: impl Fn(&TableProgress) -> bool,
) -> TableProgress {
    let key = (ChangefeedId::from("cf"), TableId(7));
    for _ in 0..2_000 {
        if let Some(p) = progress.lock().get(&key).cloned() {
            if pred(&p) {
                return p;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "condition not reached; last: {:?}",
        progress.lock().get(&key)
    );
}

#[tokio::test]
async fn replicates_in_commit_order_and_reports_a_checkpoint() {
    let now = Arc::new(Mutex::new(Ts::from_parts(10_000, 0)));
    let rows = vec![row(3_000, 1), row(1_500, 2), row(9_000, 3), row(12_000, 4)];
    let source = Scripted {
        rows,
        now: now.clone(),
        fail_after: None,
    };
    let sink = Recording::default();
    let progress = Arc::new(Mutex::new(BTreeMap::new()));
    let (_stop, stop_rx) = watch::channel(None);
    let task = spawn_pipeline(Box::new(source), Box::new(sink.clone()), &progress, stop_rx);
    let p = wait_for(&progress, |p| p.checkpoint_ts >= Ts::from_parts(10_000, 0)).await;
    assert_eq!(p.state, TablePipelineState::Running);
    let keys: Vec<i64> = sink.0.lock().0.iter().map(|r| r.key).collect();
    assert_eq!(
        keys,
        vec![2, 1, 3],
        "commit order, and nothing past the upstream's now"
    );
    *now.lock() = Ts::from_parts(13_000, 0);
    wait_for(&progress, |p| p.checkpoint_ts >= Ts::from_parts(13_000, 0)).await;
    assert_eq!(sink.0.lock().0.len(), 4);
    task.abort();
}

#[tokio::test]
async fn stops_exactly_at_the_boundary() {
    let now = Arc::new(Mutex::new(Ts::from_parts(20_000, 0)));
    let rows = vec![row(2_000, 1), row(4_000, 2), row(6_000, 3)];
    let source = Scripted {
        rows,
        now,
        fail_after: None,
    };
    let sink = Recording::default();
    let progress = Arc::new(Mutex::new(BTreeMap::new()));
    let (stop, stop_rx) = watch::channel(Some(Ts::from_parts(4_000, 0)));
    let task = spawn_pipeline(Box::new(source), Box::new(sink.clone()), &progress, stop_rx);
    let p = wait_for(&progress, |p| {
        matches!(p.state, TablePipelineState::Stopped { .. })
    })
    .await;
    assert_eq!(
        p.state,
        TablePipelineState::Stopped {
            checkpoint_ts: Ts::from_parts(4_000, 0)
        }
    );
    assert_eq!(
        sink.0.lock().0.iter().map(|r| r.key).collect::<Vec<_>>(),
        vec![1, 2],
        "nothing past the boundary"
    );
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ends")
        .expect("no panic");
    drop(stop);
}

#[tokio::test]
async fn a_source_error_reports_failed() {
    let now = Arc::new(Mutex::new(Ts::from_parts(5_000, 0)));
    let source = Scripted {
        rows: vec![],
        now,
        fail_after: Some(Ts::from_parts(1_000, 0)),
    };
    let progress = Arc::new(Mutex::new(BTreeMap::new()));
    let (_stop, stop_rx) = watch::channel(None);
    let task = spawn_pipeline(
        Box::new(source),
        Box::new(Recording::default()),
        &progress,
        stop_rx,
    );
    let p = wait_for(&progress, |p| {
        matches!(p.state, TablePipelineState::Failed(_))
    })
    .await;
    assert_eq!(p.state, TablePipelineState::Failed("snapshot lost".into()));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("ends")
        .expect("no panic");
}

#[test]
fn a_replaced_runs_late_report_does_not_overwrite_the_new_run() {
    let progress = Arc::new(Mutex::new(Pipelines::new()));
    let key: (ChangefeedId, TableId) = ("cf".into(), TableId(7));
    let (t1, t2) = (Ts::from_parts(1_000, 0), Ts::from_parts(2_000, 0));
    let old = ProgressSlot::new(progress.clone(), key.clone());
    old.report(TablePipelineState::Running, t2, t2);
    old.retire(false);
    assert!(progress.lock().contains_key(&key), "kept for the new run");
    let new = ProgressSlot::new(progress.clone(), key.clone());
    new.report(TablePipelineState::Starting, t1, t1);
    old.report(TablePipelineState::Running, t2, t2); // a pull that was in flight
    assert_eq!(progress.lock()[&key].state, TablePipelineState::Starting);
    new.retire(true);
    new.report(TablePipelineState::Running, t2, t2);
    assert!(progress.lock().is_empty());
}

/// A sink that records the thread it is dropped on.
struct DropProbe(Arc<Mutex<Option<std::thread::ThreadId>>>);

impl TableSink for DropProbe {
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

impl Drop for DropProbe {
    fn drop(&mut self) {
        *self.0.lock() = Some(std::thread::current().id());
    }
}

/// Issue #14 item 3: dropping a run's work (spill files, sink files) is blocking IO; a run
/// aborted between pulls drops it on an async thread, which hands it to the blocking pool.
#[tokio::test]
async fn work_dropped_on_an_async_thread_is_dropped_on_the_blocking_pool() {
    let dropped_on = Arc::new(Mutex::new(None));
    let work = Work::new(WorkParts {
        source: Box::new(Scripted {
            rows: vec![],
            now: Arc::new(Mutex::new(Ts(0))),
            fail_after: None,
        }),
        sorter: Sorter::new(SorterConfig::default(), Ts(0), "cf-7".into()),
        sink: Box::new(DropProbe(dropped_on.clone())),
    });
    let here = std::thread::current().id();
    drop(work);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let on = loop {
        if let Some(on) = *dropped_on.lock() {
            break on;
        }
        assert!(tokio::time::Instant::now() < deadline, "never dropped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_ne!(on, here, "dropped on the async thread");

    // Outside a runtime there is no pool: dropped in place.
    let dropped_on = Arc::new(Mutex::new(None));
    let probe = DropProbe(dropped_on.clone());
    let on = std::thread::spawn(move || {
        drop(Work::new(WorkParts {
            source: Box::new(Scripted {
                rows: vec![],
                now: Arc::new(Mutex::new(Ts(0))),
                fail_after: None,
            }),
            sorter: Sorter::new(SorterConfig::default(), Ts(0), "cf-7".into()),
            sink: Box::new(probe),
        }));
        std::thread::current().id()
    })
    .join()
    .expect("thread");
    assert_eq!(*dropped_on.lock(), Some(on));
}
