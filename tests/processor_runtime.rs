//! The processor end to end on a real etcd: the EtcdWorker ticks `ProcessorReactor`, the
//! supervisor runs real table-pipeline tasks, and the task-status operation protocol
//! completes through etcd: add → pipeline started → Finished; position reported; remove →
//! stopped exactly at the boundary → Finished with the table's final checkpoint.

mod common;

use std::sync::Arc;

use common::*;
use parking_lot::Mutex;
use rcdc::pipeline::executor::DataPlaneRuntime;
use rcdc::pipeline::table::TablePipelineConfig;
use rcdc::processor::runtime::{supervise, ProcessorReactor};
use rcdc::processor::{ProcessorConfig, ProcessorManager};
use rcdc_reactor::testing::EtcdHarness;
use rcdc_state::model::{OperationStatus, TaskPosition, TaskStatus};
use rcdc_state::{ChangefeedId, GlobalState, KeyLayout, TableId, Ts};
use tokio::sync::mpsc;

fn ts(ms: u64) -> Ts {
    Ts::from_parts(ms, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operation_protocol_completes_through_etcd() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let layout = KeyLayout::new("/t/proc");
    let (cf, me) = (
        ChangefeedId::from("cf"),
        rcdc_state::CaptureId::from("cap-1"),
    );
    let t0 = ts(1_000_000);
    put(
        &store,
        &layout.capture(&me),
        r#"{"id":"cap-1","address":"127.0.0.1:8300","version":"test"}"#,
    )
    .await;
    put(
        &store,
        &layout.info(&cf),
        &format!(
            r#"{{"sink-uri":"blackhole://","start-ts":{},"state":"normal","config":{{}}}}"#,
            t0.0
        ),
    )
    .await;
    put(
        &store,
        &layout.status(&cf),
        &format!(
            r#"{{"resolved-ts":{0},"checkpoint-ts":{0},"admin-job-type":0}}"#,
            t0.0
        ),
    )
    .await;
    let mut status = TaskStatus::default();
    status.add_table(TableId(1), t0, t0);
    status.add_table(TableId(2), t0, t0);
    put(
        &store,
        &layout.task_status(&me, &cf),
        &String::from_utf8(rcdc_state::model::encode(&status).expect("json")).expect("utf8"),
    )
    .await;

    let now = Arc::new(Mutex::new(ts(1_005_000)));
    let pipelines = Arc::new(Mutex::new(Default::default()));
    let (tx, rx) = mpsc::unbounded_channel();
    let data_plane = DataPlaneRuntime::start(Default::default()).expect("data-plane runtime");
    let supervisor = tokio::spawn(supervise(
        rx,
        Arc::new(IdleFactory(Arc::new({
            let now = now.clone();
            move || *now.lock()
        }))),
        pipelines.clone(),
        TablePipelineConfig::default(),
        data_plane.executor(),
    ));
    let reactor = ProcessorReactor::new(
        ProcessorManager::new(me.clone(), ProcessorConfig::default()),
        pipelines.clone(),
        tx,
    );
    let worker = spawn(
        store.clone(),
        reactor,
        GlobalState::new(layout.clone()),
        rcdc_reactor::WorkerConfig {
            tick_interval: std::time::Duration::from_millis(10),
            ..rcdc_reactor::WorkerConfig::new(
                "processor",
                &layout.watch_prefix(),
                &layout.delete_counter(),
            )
        },
    );

    let task_status = || async {
        get(&store, &layout.task_status(&me, &cf))
            .await
            .map(|kv| serde_json::from_slice::<TaskStatus>(&kv.value).expect("status"))
    };
    let position = || async {
        get(&store, &layout.task_position(&me, &cf))
            .await
            .map(|kv| serde_json::from_slice::<TaskPosition>(&kv.value).expect("position"))
    };
    wait_until(DEADLINE, "both add operations finish", || async {
        task_status().await.is_some_and(|s| {
            s.operation
                .iter()
                .flat_map(|o| o.values())
                .all(|op| op.status == OperationStatus::Finished && op.done)
        })
    })
    .await;
    wait_until(
        DEADLINE,
        "the position reports the tables' progress",
        || async {
            position()
                .await
                .is_some_and(|p| p.checkpoint_ts == ts(1_005_000) && p.resolved_ts == ts(1_005_000))
        },
    )
    .await;
    *now.lock() = ts(1_009_000);
    wait_until(DEADLINE, "progress follows the upstream", || async {
        position()
            .await
            .is_some_and(|p| p.checkpoint_ts == ts(1_009_000))
    })
    .await;

    // The owner removes table 2 at a boundary in the future of the pipeline's checkpoint.
    let boundary = ts(1_012_000);
    let mut s = task_status().await.expect("status");
    s.operation = None; // the owner deletes finished ops
    s.remove_table(TableId(2), boundary, false);
    put(
        &store,
        &layout.task_status(&me, &cf),
        &String::from_utf8(rcdc_state::model::encode(&s).expect("json")).expect("utf8"),
    )
    .await;
    wait_until(DEADLINE, "the remove is processed", || async {
        task_status().await.and_then(|s| {
            s.operation
                .and_then(|o| o.get(&TableId(2)).map(|op| op.status))
        }) == Some(OperationStatus::Processed)
    })
    .await;
    *now.lock() = ts(1_020_000);
    wait_until(
        DEADLINE,
        "the remove finishes at exactly the boundary",
        || async {
            task_status()
                .await
                .and_then(|s| s.operation.and_then(|o| o.get(&TableId(2)).cloned()))
                .is_some_and(|op| {
                    op.status == OperationStatus::Finished && op.boundary_ts == boundary
                })
        },
    )
    .await;
    wait_until(
        DEADLINE,
        "table 2's pipeline is gone, table 1's runs on",
        || async {
            let p = pipelines.lock();
            !p.contains_key(&(cf.clone(), TableId(2)))
                && p.get(&(cf.clone(), TableId(1)))
                    .is_some_and(|t| t.checkpoint_ts == ts(1_020_000))
        },
    )
    .await;
    worker.stop().await.expect("clean stop");
    supervisor.abort();
}
