//! Tests of the processor tick. A tiny key/value "etcd" commits the patch groups (all or
//! nothing per group, through `Patch::apply`) and rebuilds the snapshot, and a fake runtime
//! executes the pipeline commands, so each tick sees what the previous one did.

use rcdc_state::model::{TableOperation, TaskPosition};
use rcdc_state::{KeyLayout, PatchError, PatchOutcome};

use super::*;

const CF: &str = "cf";
const ME: &str = "c1";

fn cf() -> ChangefeedId {
    CF.into()
}

fn progress(state: TablePipelineState, checkpoint: u64, resolved: u64) -> TableProgress {
    TableProgress {
        resolved_ts: Ts(resolved),
        checkpoint_ts: Ts(checkpoint),
        state,
        rows: 0,
    }
}

fn running(checkpoint: u64, resolved: u64) -> TableProgress {
    progress(TablePipelineState::Running, checkpoint, resolved)
}

struct World {
    kv: BTreeMap<String, Vec<u8>>,
    layout: KeyLayout,
    pipelines: Pipelines,
    now: u64,
    m: ProcessorManager,
}

impl World {
    /// A changefeed with status checkpoint 90 / resolved 100 and capture c1 at 10.0.0.1:8300.
    fn new() -> Self {
        let layout = KeyLayout::default();
        let mut w = Self {
            kv: BTreeMap::new(),
            layout,
            pipelines: BTreeMap::new(),
            now: 1_000_000,
            m: ProcessorManager::new(ME.into(), ProcessorConfig::default()),
        };
        w.put(
            &w.layout.capture(&ME.into()),
            r#"{"id":"c1","address":"10.0.0.1:8300","version":"v5.1.0"}"#,
        );
        w.put(
            &w.layout.info(&cf()),
            r#"{"sink-uri":"blackhole://","start-ts":5,"state":"normal","admin-job-type":0}"#,
        );
        w.status(0);
        w
    }
    fn put(&mut self, key: &str, value: &str) {
        self.kv.insert(key.to_owned(), value.as_bytes().to_vec());
    }
    fn status(&mut self, admin: u64) {
        let v = format!(r#"{{"resolved-ts":100,"checkpoint-ts":90,"admin-job-type":{admin}}}"#);
        self.put(&self.layout.status(&cf()), &v);
    }
    fn task_status_key(&self) -> String {
        self.layout.task_status(&ME.into(), &cf())
    }
    fn position_key(&self) -> String {
        self.layout.task_position(&ME.into(), &cf())
    }
    fn set_task_status(&mut self, json: &str) {
        self.put(&self.task_status_key(), json);
    }
    fn set_position(&mut self, checkpoint: u64, resolved: u64) {
        let v = format!(
            r#"{{"checkpoint-ts":{checkpoint},"resolved-ts":{resolved},"count":0,"error":null}}"#
        );
        self.put(&self.position_key(), &v);
    }
    fn pipeline(&mut self, table: i64, p: TableProgress) {
        self.pipelines.insert((cf(), TableId(table)), p);
    }
    fn state(&self) -> GlobalState {
        let mut s = GlobalState::default();
        for (k, v) in &self.kv {
            s.apply(k, Some(v));
        }
        s
    }
    /// Decides without committing or running anything.
    fn decide(&mut self) -> ProcessorOutput {
        let state = self.state();
        let input = ProcessorInput {
            now_ms: self.now,
            tables: &self.pipelines,
        };
        self.m.tick(&state, &input)
    }
    /// Commits each group atomically; a group with a failing patch is dropped.
    fn commit(&mut self, out: &ProcessorOutput) -> Vec<PatchError> {
        let mut errors = Vec::new();
        'groups: for g in &out.groups {
            assert!(
                g.label == format!("processor/{ME}/{CF}")
                    || g.label == format!("processor/{ME}/{CF}/workload"),
                "{}",
                g.label
            );
            let mut kv = self.kv.clone();
            for p in &g.patches {
                match p.apply(kv.get(&p.key).map(Vec::as_slice)) {
                    Ok(PatchOutcome::Unchanged) => {}
                    Ok(PatchOutcome::Put(v)) => {
                        kv.insert(p.key.clone(), v);
                    }
                    Ok(PatchOutcome::Delete) => {
                        kv.remove(&p.key);
                    }
                    Err(e) => {
                        errors.push(e);
                        continue 'groups;
                    }
                }
            }
            self.kv = kv;
        }
        errors
    }
    /// The fake runtime: starts report Starting at the start ts, cancels remove.
    fn run(&mut self, out: &ProcessorOutput) {
        for c in &out.commands {
            match c {
                PipelineCommand::Start {
                    changefeed,
                    table,
                    start_ts,
                } => {
                    let p = progress(TablePipelineState::Starting, start_ts.0, start_ts.0);
                    self.pipelines.insert((changefeed.clone(), *table), p);
                }
                PipelineCommand::Cancel { changefeed, table } => {
                    self.pipelines.remove(&(changefeed.clone(), *table));
                }
                PipelineCommand::StopAt { .. } => {}
            }
        }
    }
    /// Decide, commit, run.
    fn tick(&mut self) -> ProcessorOutput {
        let out = self.decide();
        let errors = self.commit(&out);
        assert!(errors.is_empty(), "{errors:?}");
        self.run(&out);
        out
    }
    fn task(&self) -> Option<TaskStatus> {
        let v = self.kv.get(&self.task_status_key())?;
        Some(serde_json::from_slice(v).expect("task status"))
    }
    fn op(&self, table: i64) -> Option<TableOperation> {
        self.task()?.operation?.remove(&TableId(table))
    }
    fn position(&self) -> Option<TaskPosition> {
        let v = self.kv.get(&self.position_key())?;
        Some(serde_json::from_slice(v).expect("position"))
    }
    fn workload(&self) -> Option<serde_json::Value> {
        let v = self.kv.get(&self.layout.task_workload(&ME.into(), &cf()))?;
        Some(serde_json::from_slice(v).expect("workload"))
    }
}

fn start(table: i64, ts: u64) -> PipelineCommand {
    PipelineCommand::Start {
        changefeed: cf(),
        table: TableId(table),
        start_ts: Ts(ts),
    }
}
fn stop_at(table: i64, ts: u64) -> PipelineCommand {
    PipelineCommand::StopAt {
        changefeed: cf(),
        table: TableId(table),
        boundary_ts: Ts(ts),
    }
}
fn cancel(table: i64) -> PipelineCommand {
    PipelineCommand::Cancel {
        changefeed: cf(),
        table: TableId(table),
    }
}

/// Table 45 is held and running steadily; table 47 carries the operation under test.
const HELD_45: &str = r#""45":{"start-ts":50,"mark-table-id":0}"#;
const HELD_45_47: &str =
    r#""45":{"start-ts":50,"mark-table-id":0},"47":{"start-ts":90,"mark-table-id":0}"#;

struct OpCase {
    name: &'static str,
    tables: &'static str,
    op: &'static str,
    pipeline_47: Option<TableProgress>,
    commands: Vec<PipelineCommand>,
    /// Expected (status code, boundary, done) of op 47 after the commit.
    after: (u64, u64, bool),
    /// TaskStatus patches: one per status change.
    status_patches: usize,
}

#[test]
fn every_operation_transition() {
    let cases = vec![
        OpCase {
            name: "add dispatched: start at the boundary, processed",
            tables: HELD_45_47,
            op: r#"{"done":false,"delete":false,"boundary_ts":90}"#,
            pipeline_47: None,
            commands: vec![start(47, 90)],
            after: (1, 90, false),
            status_patches: 1,
        },
        OpCase {
            name: "add dispatched with a pipeline already there: processed, no second start",
            tables: HELD_45_47,
            op: r#"{"done":false,"delete":false,"boundary_ts":90}"#,
            pipeline_47: Some(running(95, 99)),
            commands: vec![],
            after: (1, 90, false),
            status_patches: 1,
        },
        OpCase {
            name: "add processed, pipeline missing and not just started: back to dispatched",
            tables: HELD_45_47,
            op: r#"{"done":false,"delete":false,"boundary_ts":90,"status":1}"#,
            pipeline_47: None,
            commands: vec![],
            after: (0, 90, false),
            status_patches: 1,
        },
        OpCase {
            name: "add processed, caught up: finished and done",
            tables: HELD_45_47,
            op: r#"{"done":false,"delete":false,"boundary_ts":90,"status":1}"#,
            pipeline_47: Some(running(105, 110)),
            commands: vec![],
            after: (2, 90, true),
            status_patches: 1,
        },
        OpCase {
            name: "add processed, behind the position resolved: waits",
            tables: HELD_45_47,
            op: r#"{"done":false,"delete":false,"boundary_ts":90,"status":1}"#,
            pipeline_47: Some(running(100, 105)),
            commands: vec![],
            after: (1, 90, false),
            status_patches: 0,
        },
        OpCase {
            name: "remove dispatched: stop at the boundary, processed",
            tables: HELD_45,
            op: r#"{"done":false,"delete":true,"boundary_ts":95}"#,
            pipeline_47: Some(running(95, 99)),
            commands: vec![stop_at(47, 95)],
            after: (1, 95, false),
            status_patches: 1,
        },
        OpCase {
            name: "remove of a table without pipeline: straight to finished",
            tables: HELD_45,
            op: r#"{"done":false,"delete":true,"boundary_ts":95}"#,
            pipeline_47: None,
            commands: vec![],
            after: (2, 95, true),
            status_patches: 1,
        },
        OpCase {
            name: "remove processed, still running: waits",
            tables: HELD_45,
            op: r#"{"done":false,"delete":true,"boundary_ts":95,"status":1}"#,
            pipeline_47: Some(running(93, 99)),
            commands: vec![],
            after: (1, 95, false),
            status_patches: 0,
        },
        OpCase {
            name: "remove processed, stopped: finished at its checkpoint, cancelled",
            tables: HELD_45,
            op: r#"{"done":false,"delete":true,"boundary_ts":95,"status":1}"#,
            pipeline_47: Some(progress(
                TablePipelineState::Stopped {
                    checkpoint_ts: Ts(97),
                },
                97,
                99,
            )),
            commands: vec![cancel(47)],
            after: (2, 97, true),
            status_patches: 1,
        },
        OpCase {
            name: "remove processed, pipeline gone (processor recreated): finished",
            tables: HELD_45,
            op: r#"{"done":false,"delete":true,"boundary_ts":95,"status":1}"#,
            pipeline_47: None,
            commands: vec![],
            after: (2, 95, true),
            status_patches: 1,
        },
    ];
    for case in cases {
        let mut w = World::new();
        w.set_task_status(&format!(
            r#"{{"tables":{{{}}},"operation":{{"47":{}}},"admin-job-type":0}}"#,
            case.tables, case.op
        ));
        w.set_position(100, 110);
        w.pipeline(45, running(120, 130));
        if let Some(p) = case.pipeline_47 {
            w.pipeline(47, p);
        }
        let out = w.tick();
        assert_eq!(out.commands, case.commands, "{}", case.name);
        assert!(
            out.groups
                .iter()
                .filter(|g| !g.label.ends_with("/workload"))
                .count()
                <= 1,
            "{}: one group per changefeed (and its workload)",
            case.name
        );
        let op = w.op(47).expect("op kept");
        let got = (op.status.code(), op.boundary_ts.0, op.done);
        assert_eq!(got, case.after, "{}", case.name);
        let status_patches = out
            .groups
            .iter()
            .flat_map(|g| &g.patches)
            .filter(|p| matches!(p.edit, Edit::TaskStatus(_)))
            .count();
        assert_eq!(
            status_patches, case.status_patches,
            "{}: one patch per change",
            case.name
        );
    }
}

#[test]
fn a_just_started_table_is_not_reverted_until_the_report_times_out() {
    let mut w = World::new();
    w.set_task_status(&format!(
        r#"{{"tables":{{{HELD_45_47}}},"operation":{{"47":{{"done":false,"delete":false,"boundary_ts":90}}}},"admin-job-type":0}}"#
    ));
    w.set_position(100, 110);
    w.pipeline(45, running(120, 130));
    let out = w.decide();
    assert_eq!(out.commands, vec![start(47, 90)]);
    assert!(w.commit(&out).is_empty());
    // The runtime has not reported table 47 yet.
    w.now += 100;
    let out = w.decide();
    assert!(out.commands.is_empty());
    assert!(w.commit(&out).is_empty());
    assert_eq!(w.op(47).map(|o| o.status), Some(OperationStatus::Processed));
    // Still unreported after the timeout: missing, so back to dispatched, then restarted.
    w.now += ProcessorConfig::default().start_report_timeout_ms;
    w.tick();
    assert_eq!(
        w.op(47).map(|o| o.status),
        Some(OperationStatus::Dispatched)
    );
    let out = w.tick();
    assert_eq!(out.commands, vec![start(47, 90)]);
}

#[test]
fn bug_8_23_vanished_task_status_is_not_fatal() {
    for vanish in ["status", "op"] {
        let mut w = World::new();
        w.set_task_status(&format!(
            r#"{{"tables":{{{HELD_45_47}}},"operation":{{"47":{{"done":false,"delete":false,"boundary_ts":90}}}},"admin-job-type":0}}"#
        ));
        w.set_position(100, 110);
        w.pipeline(45, running(120, 130));
        let out = w.decide();
        w.run(&out);
        // Between the tick and the commit the owner removes the status, or the table and op.
        match vanish {
            "status" => {
                w.kv.remove(&w.task_status_key());
            }
            _ => w.set_task_status(&format!(
                r#"{{"tables":{{{HELD_45}}},"operation":{{}},"admin-job-type":0}}"#
            )),
        }
        let errors = w.commit(&out);
        assert!(
            matches!(errors.as_slice(), [PatchError::Precondition { .. }]),
            "{vanish}: {errors:?}"
        );
        // The next tick decides again on the fresh snapshot: the stray pipeline goes.
        let out = w.tick();
        assert!(out.commands.contains(&cancel(47)), "{vanish}: {out:?}");
        let expect_45 = vanish == "status";
        assert_eq!(out.commands.contains(&cancel(45)), expect_45, "{vanish}");
    }
}

#[test]
fn a_missing_position_is_created_at_the_changefeed_checkpoint_and_nothing_else() {
    let mut w = World::new();
    w.set_task_status(&format!(
        r#"{{"tables":{{{HELD_45}}},"operation":null,"admin-job-type":0}}"#
    ));
    let out = w.tick();
    assert!(out.commands.is_empty());
    assert_eq!(out.groups.len(), 1);
    assert_eq!(out.groups[0].patches.len(), 1);
    let p = w.position().expect("created");
    assert_eq!((p.checkpoint_ts, p.resolved_ts), (Ts(90), Ts(90)));
    // The next tick restarts the held table at max(start-ts 50, checkpoint 90).
    let out = w.tick();
    assert_eq!(out.commands, vec![start(45, 90)]);
}

#[test]
fn restart_starts_held_tables_without_ops_and_cancels_strays() {
    let mut w = World::new();
    w.set_task_status(
        r#"{"tables":{"45":{"start-ts":50,"mark-table-id":0},"46":{"start-ts":200,"mark-table-id":0},"48":{"start-ts":50,"mark-table-id":0}},
            "operation":{"48":{"done":true,"delete":false,"boundary_ts":90,"status":2},
                         "49":{"done":false,"delete":true,"boundary_ts":95,"status":1}},"admin-job-type":0}"#,
    );
    w.set_position(90, 90);
    w.pipeline(49, running(93, 99));
    w.pipeline(99, running(93, 99));
    let out = w.tick();
    // 48 has an (applied) op, so it waits for the owner; 49 is being removed; 99 is stray.
    assert_eq!(
        out.commands,
        vec![cancel(99), start(45, 90), start(46, 200)]
    );
    // Steady afterwards: nothing more to start or cancel.
    let out = w.tick();
    assert!(out.commands.is_empty(), "{out:?}");
}

#[test]
fn position_is_the_min_over_tables_and_its_checkpoint_never_goes_back() {
    let mut w = World::new();
    w.set_task_status(
        r#"{"tables":{"45":{"start-ts":50,"mark-table-id":0},"46":{"start-ts":50,"mark-table-id":0}},"operation":null,"admin-job-type":0}"#,
    );
    w.set_position(90, 100);
    w.pipeline(45, running(120, 130));
    w.pipeline(46, running(115, 125));
    w.tick();
    let p = w.position().expect("position");
    assert_eq!((p.checkpoint_ts, p.resolved_ts), (Ts(115), Ts(125)));
    // Unchanged progress writes nothing.
    let out = w.tick();
    assert!(out.groups.is_empty(), "{out:?}");
    // A checkpoint above a resolved ts is capped by it.
    w.pipeline(46, running(140, 135));
    w.tick();
    let p = w.position().expect("position");
    assert_eq!((p.checkpoint_ts, p.resolved_ts), (Ts(120), Ts(130)));
    // Table 46 restarts below: the reported checkpoint holds, resolved stays ≥ it.
    w.pipeline(46, progress(TablePipelineState::Starting, 90, 90));
    w.tick();
    let p = w.position().expect("position");
    assert_eq!((p.checkpoint_ts, p.resolved_ts), (Ts(120), Ts(120)));
    // And moves on once every table is past it.
    w.pipeline(46, running(150, 160));
    w.tick();
    let p = w.position().expect("position");
    assert_eq!((p.checkpoint_ts, p.resolved_ts), (Ts(120), Ts(130)));
    w.pipeline(45, running(155, 158));
    w.tick();
    let p = w.position().expect("position");
    assert_eq!((p.checkpoint_ts, p.resolved_ts), (Ts(150), Ts(158)));
}

#[test]
fn a_table_joining_through_an_add_op_may_lower_the_checkpoint_to_its_own_progress() {
    let mut w = World::new();
    w.set_task_status(&format!(
        r#"{{"tables":{{{HELD_45_47}}},"operation":{{"47":{{"done":false,"delete":false,"boundary_ts":90}}}},"admin-job-type":0}}"#
    ));
    w.set_position(110, 120);
    w.pipeline(45, running(120, 130));
    w.tick();
    let p = w.position().expect("position");
    // The new table starts at 90: reporting 110 would claim progress it has not made.
    assert_eq!((p.checkpoint_ts, p.resolved_ts), (Ts(90), Ts(90)));
    // Once the owner deleted the finished op and the table caught up, the floor applies again.
    w.set_task_status(&format!(
        r#"{{"tables":{{{HELD_45_47}}},"operation":{{}},"admin-job-type":0}}"#
    ));
    w.pipeline(47, running(125, 140));
    w.tick();
    let p = w.position().expect("position");
    assert_eq!((p.checkpoint_ts, p.resolved_ts), (Ts(120), Ts(130)));
    w.pipeline(47, running(100, 140));
    w.tick();
    assert_eq!(w.position().map(|p| p.checkpoint_ts), Some(Ts(120)));
}

#[test]
fn workload_lists_running_tables_and_is_written_only_on_change() {
    let mut w = World::new();
    w.set_task_status(
        r#"{"tables":{"45":{"start-ts":50,"mark-table-id":0},"46":{"start-ts":50,"mark-table-id":0}},"operation":null,"admin-job-type":0}"#,
    );
    w.set_position(90, 100);
    w.pipeline(45, running(120, 130));
    w.pipeline(46, progress(TablePipelineState::Starting, 90, 90));
    w.tick();
    assert_eq!(w.workload(), Some(serde_json::json!({"45":{"workload":1}})));
    let workload_patches = |out: &ProcessorOutput| {
        out.groups
            .iter()
            .flat_map(|g| &g.patches)
            .filter(|p| matches!(p.edit, Edit::TaskWorkload(_)))
            .count()
    };
    let out = w.tick();
    assert_eq!(workload_patches(&out), 0);
    w.pipeline(46, running(120, 130));
    let out = w.tick();
    assert_eq!(workload_patches(&out), 1);
    assert_eq!(
        w.workload(),
        Some(serde_json::json!({"45":{"workload":1},"46":{"workload":1}}))
    );
}

#[test]
fn a_failed_pipeline_reports_the_error_and_the_processor_restarts_after_backoff() {
    let mut w = World::new();
    w.set_task_status(
        r#"{"tables":{"45":{"start-ts":50,"mark-table-id":0},"46":{"start-ts":50,"mark-table-id":0}},"operation":null,"admin-job-type":0}"#,
    );
    w.set_position(100, 110);
    w.pipeline(45, running(120, 130));
    w.pipeline(
        46,
        progress(TablePipelineState::Failed("disk full".into()), 100, 110),
    );
    let out = w.tick();
    assert_eq!(out.commands, vec![cancel(45), cancel(46)]);
    let e = w.position().and_then(|p| p.error).expect("error");
    assert_eq!(e.addr, "10.0.0.1:8300");
    assert_eq!(e.code, PROCESSOR_UNKNOWN_ERROR);
    assert!(e.message.contains("disk full"), "{}", e.message);
    assert!(!w.m.has_processor(&cf()));

    // Backing off: nothing restarts before 1 s.
    w.now += 999;
    let out = w.tick();
    assert!(out.commands.is_empty() && out.groups.is_empty(), "{out:?}");
    w.now += 1;
    let out = w.tick();
    assert_eq!(out.commands, vec![start(45, 90), start(46, 90)]);

    // A second failure doubles the delay.
    w.pipeline(
        45,
        progress(TablePipelineState::Failed("again".into()), 90, 90),
    );
    w.tick();
    w.now += 1_999;
    assert!(w.tick().commands.is_empty());
    w.now += 1;
    assert_eq!(w.tick().commands, vec![start(45, 90), start(46, 90)]);

    // Healthy for the reset period: the next failure waits 1 s again.
    w.now += ProcessorConfig::default().backoff_reset_ms;
    w.tick();
    w.pipeline(
        45,
        progress(TablePipelineState::Failed("third".into()), 90, 90),
    );
    w.tick();
    w.now += 1_000;
    assert_eq!(w.tick().commands, vec![start(45, 90), start(46, 90)]);
}

#[test]
fn an_inactive_changefeed_cancels_its_pipelines_once_and_writes_nothing() {
    type Setup = (&'static str, fn(&mut World));
    let setups: Vec<Setup> = vec![
        ("stopped status", |w| w.status(1)),
        ("task status gone", |w| {
            w.kv.remove(&w.task_status_key());
        }),
        ("info gone", |w| {
            w.kv.remove(&w.layout.info(&cf()));
        }),
        ("changefeed gone", |w| {
            w.kv.retain(|k, _| !k.contains("/cf"));
        }),
    ];
    for (name, setup) in setups {
        let mut w = World::new();
        w.set_task_status(&format!(
            r#"{{"tables":{{{HELD_45}}},"operation":null,"admin-job-type":0}}"#
        ));
        w.set_position(100, 110);
        w.pipeline(45, running(120, 130));
        w.tick();
        assert!(w.m.has_processor(&cf()), "{name}");
        setup(&mut w);
        let out = w.decide();
        assert_eq!(out.commands, vec![cancel(45)], "{name}");
        assert!(out.groups.is_empty(), "{name}");
        assert!(!w.m.has_processor(&cf()), "{name}");
        // The runtime still reports it while tearing down: no second cancel.
        assert!(w.decide().commands.is_empty(), "{name}");
    }
}

#[test]
fn no_processor_work_for_a_capture_holding_nothing_of_the_changefeed() {
    let mut w = World::new();
    w.set_task_status(r#"{"tables":null,"operation":null,"admin-job-type":0}"#);
    w.put(
        &w.layout.task_status(&"c2".into(), &cf()),
        &format!(r#"{{"tables":{{{HELD_45}}},"operation":null,"admin-job-type":0}}"#),
    );
    let out = w.tick();
    assert_eq!(out, ProcessorOutput::default());
    assert!(!w.m.has_processor(&cf()));
    assert!(w.position().is_none());
}

#[test]
fn a_broken_changefeed_is_frozen() {
    let mut w = World::new();
    w.set_task_status(&format!(
        r#"{{"tables":{{{HELD_45}}},"operation":null,"admin-job-type":0}}"#
    ));
    w.set_position(100, 110);
    w.pipeline(45, running(120, 130));
    w.tick();
    w.put(&w.layout.status(&cf()), "{not json");
    let out = w.tick();
    assert_eq!(out, ProcessorOutput::default());
}

#[test]
fn a_failure_before_the_position_exists_creates_it_at_the_changefeed_checkpoint() {
    let mut w = World::new();
    w.set_task_status(&format!(
        r#"{{"tables":{{{HELD_45}}},"operation":null,"admin-job-type":0}}"#
    ));
    w.pipeline(
        45,
        progress(TablePipelineState::Failed("boom".into()), 0, 0),
    );
    let out = w.tick();
    assert_eq!(out.commands, vec![cancel(45)]);
    let p = w.position().expect("position");
    assert_eq!((p.checkpoint_ts, p.resolved_ts), (Ts(90), Ts(90)));
    assert_eq!(
        p.error.map(|e| e.code),
        Some(PROCESSOR_UNKNOWN_ERROR.to_owned())
    );
}

#[test]
fn the_row_count_adds_up_runs_that_restart_or_leave_and_continues_a_stored_count() {
    let run = |rows: u64| TableProgress {
        rows,
        ..running(10, 10)
    };
    let mut c = RowCount::default();
    let reports = |list: &[(i64, u64)]| -> Vec<(TableId, TableProgress)> {
        list.iter().map(|(t, r)| (TableId(*t), run(*r))).collect()
    };
    let observe = |c: &mut RowCount, list: &[(i64, u64)], stored: u64| {
        let r = reports(list);
        c.observe(r.iter().map(|(t, p)| (*t, p)), stored)
    };
    assert_eq!(observe(&mut c, &[(1, 0), (2, 0)], 7), None, "no row yet");
    assert!(c.is_empty(), "nothing to record while no row was written");
    assert_eq!(
        observe(&mut c, &[(1, 5), (2, 0)], 7),
        Some(12),
        "on top of the stored 7"
    );
    assert_eq!(observe(&mut c, &[(1, 8), (2, 3)], 12), Some(18));
    // Table 1 restarts (a new run counts from 0); table 2 moves away.
    assert_eq!(observe(&mut c, &[(1, 1)], 18), Some(19));
    assert_eq!(observe(&mut c, &[(1, 4)], 19), Some(22));
}
