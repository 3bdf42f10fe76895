use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rcdc_state::model::{OperationStatus, TableOperation, TaskStatus};
use rcdc_state::patch::TaskStatusEdit;
use rcdc_state::{
    CaptureId, ChangefeedId, ChangefeedState, Edit, GlobalState, KeyLayout, Patch, PatchOutcome,
    TableId, Ts,
};

use super::{ScheduleOutcome, ScheduleRequest, SchedulerConfig, TableScheduler};

const CHECKPOINT: Ts = Ts(100);

/// A cluster in memory: raw values, the decoded state, and a clock.
struct World {
    layout: KeyLayout,
    cf: ChangefeedId,
    kv: BTreeMap<String, Vec<u8>>,
    state: GlobalState,
    now_ms: u64,
}

fn cap(id: &str) -> CaptureId {
    CaptureId::new(id)
}

fn tables(ids: impl IntoIterator<Item = i64>) -> BTreeSet<TableId> {
    ids.into_iter().map(TableId).collect()
}

impl World {
    fn new(captures: &[&str]) -> Self {
        let mut w = World {
            layout: KeyLayout::default(),
            cf: ChangefeedId::new("cf-1"),
            kv: BTreeMap::new(),
            state: GlobalState::default(),
            now_ms: 1_000,
        };
        for c in captures {
            w.add_capture(c);
        }
        w
    }

    fn set(&mut self, key: String, value: Option<Vec<u8>>) {
        match &value {
            Some(v) => self.kv.insert(key.clone(), v.clone()),
            None => self.kv.remove(&key),
        };
        self.state.apply(&key, value.as_deref());
    }

    fn add_capture(&mut self, id: &str) {
        let info = format!(r#"{{"id":"{id}","address":"127.0.0.1:8300","version":"v5.1.0"}}"#);
        let key = self.layout.capture(&cap(id));
        self.set(key, Some(info.into_bytes()));
    }

    /// The capture's session ends; its task status stays until `preflight`.
    fn kill_capture(&mut self, id: &str) {
        let key = self.layout.capture(&cap(id));
        self.set(key, None);
    }

    /// What the owner's preflight does: delete task statuses of dead captures.
    fn preflight(&mut self) {
        let dead: Vec<CaptureId> = self
            .cf_state()
            .task_statuses
            .keys()
            .filter(|c| !self.state.captures().contains_key(*c))
            .cloned()
            .collect();
        for c in dead {
            let key = self.layout.task_status(&c, &self.cf);
            self.set(key, None);
        }
    }

    fn put_status(&mut self, capture: &str, json: &str) {
        let key = self.layout.task_status(&cap(capture), &self.cf);
        self.set(key, Some(json.as_bytes().to_vec()));
    }

    fn cf_state(&self) -> ChangefeedState {
        self.state.changefeed(&self.cf).cloned().unwrap_or_default()
    }

    fn tick(&self, s: &mut TableScheduler, current: &BTreeSet<TableId>) -> ScheduleOutcome {
        let out = s.tick(
            &self.layout,
            &self.cf_state(),
            self.state.captures(),
            current,
            CHECKPOINT,
            self.now_ms,
        );
        for g in &out.groups {
            assert!(
                g.label.starts_with("changefeed/cf-1/schedule "),
                "{}",
                g.label
            );
            let keys: BTreeSet<&str> = g.patches.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys.len(), 1, "one key per group: {}", g.label);
        }
        out
    }

    /// Commits every patch (each group atomically) and checks the single-holder invariant.
    fn commit(&mut self, out: &ScheduleOutcome) {
        for g in &out.groups {
            for p in &g.patches {
                self.apply(p);
            }
            self.assert_single_holder();
        }
    }

    fn apply(&mut self, p: &Patch) {
        let old = self.kv.get(&p.key).cloned();
        match p.apply(old.as_deref()).expect("patch applies") {
            PatchOutcome::Unchanged => {}
            PatchOutcome::Put(v) => self.set(p.key.clone(), Some(v)),
            PatchOutcome::Delete => self.set(p.key.clone(), None),
        }
    }

    fn tick_commit(
        &mut self,
        s: &mut TableScheduler,
        current: &BTreeSet<TableId>,
    ) -> ScheduleOutcome {
        let out = self.tick(s, current);
        self.commit(&out);
        out
    }

    fn status(&self, capture: &str) -> TaskStatus {
        self.cf_state()
            .task_statuses
            .get(&cap(capture))
            .cloned()
            .unwrap_or_default()
    }

    fn raw_status(&self, capture: &str) -> serde_json::Value {
        let key = self.layout.task_status(&cap(capture), &self.cf);
        self.kv
            .get(&key)
            .map(|v| serde_json::from_slice(v).expect("json"))
            .unwrap_or(serde_json::Value::Null)
    }

    fn tables_of(&self, capture: &str) -> Vec<i64> {
        self.status(capture)
            .tables
            .map(|t| t.keys().map(|t| t.0).collect())
            .unwrap_or_default()
    }

    fn ops_of(&self, capture: &str) -> BTreeMap<i64, TableOperation> {
        self.status(capture)
            .operation
            .map(|o| o.into_iter().map(|(t, op)| (t.0, op)).collect())
            .unwrap_or_default()
    }

    /// A processor acknowledging an op (`SetOpStatus`), as the processor would.
    fn ack(&mut self, capture: &str, table: i64, status: OperationStatus) {
        let boundary = (status == OperationStatus::Finished).then_some(Ts(150));
        let p = Patch::new(
            self.layout.task_status(&cap(capture), &self.cf),
            Edit::TaskStatus(TaskStatusEdit::SetOpStatus {
                table: TableId(table),
                status,
                boundary_ts: boundary,
            }),
        );
        self.apply(&p);
    }

    /// Every live capture's processor finishes every op it has.
    fn finish_all(&mut self) {
        let alive: Vec<CaptureId> = self.state.captures().keys().cloned().collect();
        for c in alive {
            for (t, op) in self.ops_of(c.as_str()) {
                if op.status != OperationStatus::Finished {
                    self.ack(c.as_str(), t, OperationStatus::Finished);
                }
            }
        }
    }

    /// Ticks, commits and finishes ops until the scheduler reports settled.
    fn settle(&mut self, s: &mut TableScheduler, current: &BTreeSet<TableId>) {
        for _ in 0..20 {
            let out = self.tick_commit(s, current);
            assert_eq!(out.error, None);
            if out.settled {
                return;
            }
            self.finish_all();
        }
        panic!("did not settle: {:?}", self.cf_state().task_statuses);
    }

    /// Every table is held (in `tables` or an unfinished op) by at most one live capture.
    fn assert_single_holder(&self) {
        let mut seen: BTreeMap<TableId, CaptureId> = BTreeMap::new();
        for (c, s) in &self.cf_state().task_statuses {
            if !self.state.captures().contains_key(c) {
                continue;
            }
            let mut held: BTreeSet<TableId> = s.tables.iter().flatten().map(|(t, _)| *t).collect();
            for (t, op) in s.operation.iter().flatten() {
                if !(op.delete && op.status == OperationStatus::Finished) {
                    held.insert(*t);
                }
            }
            for t in held {
                if let Some(other) = seen.insert(t, c.clone()) {
                    panic!("table {t} held by both {other} and {c}");
                }
            }
        }
    }

    fn counts(&self) -> Vec<(String, usize)> {
        self.state
            .captures()
            .keys()
            .map(|c| (c.to_string(), self.tables_of(c.as_str()).len()))
            .collect()
    }
}

fn scheduler() -> TableScheduler {
    TableScheduler::new(ChangefeedId::new("cf-1"), SchedulerConfig::default())
}

fn edits(out: &ScheduleOutcome) -> Vec<(String, TaskStatusEdit)> {
    out.groups
        .iter()
        .flat_map(|g| &g.patches)
        .map(|p| {
            let capture = p.key.rsplit('/').nth(1).unwrap_or_default().to_owned();
            match &p.edit {
                Edit::TaskStatus(e) => (capture, e.clone()),
                other => panic!("unexpected edit {other:?}"),
            }
        })
        .collect()
}

fn add(capture: &str, table: i64) -> (String, TaskStatusEdit) {
    (
        capture.to_owned(),
        TaskStatusEdit::AddTable {
            table: TableId(table),
            start_ts: CHECKPOINT,
            boundary_ts: CHECKPOINT,
        },
    )
}

fn move_out(capture: &str, table: i64, target: &str) -> (String, TaskStatusEdit) {
    (
        capture.to_owned(),
        TaskStatusEdit::MoveTableOut {
            table: TableId(table),
            boundary_ts: CHECKPOINT,
            target: cap(target),
        },
    )
}

fn delete_finished(capture: &str) -> (String, TaskStatusEdit) {
    (capture.to_owned(), TaskStatusEdit::DeleteFinishedOps)
}

fn replicating(table: i64) -> String {
    format!(r#""{table}":{{"start-ts":1,"mark-table-id":0}}"#)
}

fn status_json(held: &[i64], ops: &str) -> String {
    let t: Vec<String> = held.iter().map(|t| replicating(*t)).collect();
    format!(
        r#"{{"tables":{{{}}},"operation":{},"admin-job-type":0}}"#,
        t.join(","),
        if ops.is_empty() { "null" } else { ops }
    )
}

#[test]
fn initial_dispatch_spreads_10_tables_4_3_3_deterministically() {
    let mut w = World::new(&["a", "b", "c"]);
    let mut s = scheduler();
    let current = tables(1..=10);
    let out = w.tick_commit(&mut s, &current);
    assert!(!out.settled);
    assert_eq!(out.groups.len(), 3, "one group per capture's key");
    assert_eq!(w.tables_of("a"), vec![1, 4, 7, 10]);
    assert_eq!(w.tables_of("b"), vec![2, 5, 8]);
    assert_eq!(w.tables_of("c"), vec![3, 6, 9]);
    let raw = w.raw_status("a");
    assert_eq!(raw["tables"]["4"]["start-ts"], 100);
    assert_eq!(raw["operation"]["4"]["boundary_ts"], 100);
    assert_eq!(raw["operation"]["4"]["delete"], false);

    // Nothing new while the adds are in flight.
    let out = w.tick(&mut s, &current);
    assert!(out.groups.is_empty() && !out.settled);

    w.finish_all();
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(
        edits(&out),
        vec![
            delete_finished("a"),
            delete_finished("b"),
            delete_finished("c")
        ]
    );
    assert!(!out.settled);
    let out = w.tick_commit(&mut s, &current);
    assert!(out.groups.is_empty());
    assert!(
        out.settled,
        "balanced 4/3/3: the first-tick rebalance moves nothing"
    );
    assert!(w.ops_of("a").is_empty());

    // Same input, same output: a second world dispatches identically.
    let w2 = World::new(&["c", "b", "a"]);
    let out2 = w2.tick(&mut scheduler(), &current);
    let first = World::new(&["a", "b", "c"]).tick(&mut scheduler(), &current);
    assert_eq!(out2, first);
}

#[test]
fn tables_of_a_lost_capture_are_redispatched() {
    // (status deleted by preflight, status still there but the capture is dead)
    for status_vanishes in [true, false] {
        let mut w = World::new(&["a", "b", "c"]);
        let mut s = scheduler();
        let current = tables(1..=10);
        w.settle(&mut s, &current);
        w.kill_capture("c");
        if status_vanishes {
            w.preflight();
        }
        let out = w.tick_commit(&mut s, &current);
        assert_eq!(
            edits(&out),
            vec![add("b", 3), add("b", 9), add("a", 6)],
            "least-loaded first, ties by id ({status_vanishes})"
        );
        w.settle(&mut s, &current);
        assert_eq!(w.counts(), vec![("a".into(), 5), ("b".into(), 5)]);
    }
}

#[test]
fn dropped_table_gets_one_remove_op_and_is_not_readded() {
    let mut w = World::new(&["a", "b"]);
    let mut s = scheduler();
    w.settle(&mut s, &tables(1..=3));
    let current = tables([1, 2]);
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(
        edits(&out),
        vec![(
            "a".to_owned(),
            TaskStatusEdit::RemoveTable {
                table: TableId(3),
                boundary_ts: CHECKPOINT,
                is_move: false
            }
        )]
    );
    let op = &w.raw_status("a")["operation"]["3"];
    assert_eq!(op["delete"], true);
    assert!(op.get("flag").is_none());
    // Not acked yet: no second remove.
    let out = w.tick(&mut s, &current);
    assert!(out.groups.is_empty() && !out.settled);
    w.ack("a", 3, OperationStatus::Processed);
    assert!(w.tick(&mut s, &current).groups.is_empty());
    w.ack("a", 3, OperationStatus::Finished);
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(edits(&out), vec![delete_finished("a")]);
    w.settle(&mut s, &current);
    assert_eq!(w.tables_of("a"), vec![1]);
    assert_eq!(w.tables_of("b"), vec![2]);
}

#[test]
fn finished_ops_are_deleted_and_others_kept() {
    let mut w = World::new(&["a", "b"]);
    let ops = r#"{"1":{"done":true,"delete":false,"boundary_ts":5,"status":2},
                  "2":{"done":false,"delete":false,"boundary_ts":5,"status":1},
                  "3":{"done":false,"delete":false,"boundary_ts":5}}"#;
    w.put_status("a", &status_json(&[1, 2, 3], ops));
    w.put_status("b", &status_json(&[4], ""));
    let mut s = scheduler();
    let out = w.tick_commit(&mut s, &tables(1..=4));
    assert_eq!(edits(&out), vec![delete_finished("a")]);
    assert_eq!(
        w.ops_of("a").keys().copied().collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(!out.settled);
}

#[test]
fn move_table_end_to_end_hands_over_atomically() {
    let mut w = World::new(&["a", "b"]);
    let mut s = scheduler();
    let current = tables(1..=3);
    w.settle(&mut s, &current);
    assert_eq!(w.tables_of("a"), vec![1, 3]);
    s.request(ScheduleRequest::MoveTable {
        table: TableId(1),
        target: cap("b"),
    });
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(edits(&out), vec![move_out("a", 1, "b")]);
    let op = &w.raw_status("a")["operation"]["1"];
    assert_eq!(op["delete"], true);
    assert_eq!(op["flag"], 1);
    assert_eq!(op["rcdc-move-target"], "b");
    assert!(!w.tables_of("b").contains(&1));

    // The processor stops the table.
    w.ack("a", 1, OperationStatus::Processed);
    let out = w.tick(&mut s, &current);
    assert!(out.groups.is_empty() && !out.settled);
    w.ack("a", 1, OperationStatus::Finished);

    // The finished remove goes and the add on the target comes, one group per key: either
    // may commit alone without a second holder (a finished delete op holds nothing).
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(out.groups.len(), 2);
    assert_eq!(edits(&out), vec![delete_finished("a"), add("b", 1)]);
    assert!(w.ops_of("a").is_empty());
    assert_eq!(w.tables_of("b"), vec![1, 2]);
    w.settle(&mut s, &current);
    assert_eq!(w.tables_of("a"), vec![3]);
    assert_eq!(w.tables_of("b"), vec![1, 2]);
}

#[test]
fn bug_8_22_move_target_survives_owner_restart() {
    // b is the most loaded capture, so TiCDC's new owner (which forgot the target) would send
    // the table to the least-loaded capture c instead.
    let mut w = World::new(&["a", "b", "c"]);
    w.put_status("a", &status_json(&[1, 2], ""));
    w.put_status("b", &status_json(&[3, 4], ""));
    w.put_status("c", &status_json(&[5], ""));
    let current = tables(1..=5);
    let mut old_owner = scheduler();
    w.settle(&mut old_owner, &current);
    old_owner.request(ScheduleRequest::MoveTable {
        table: TableId(1),
        target: cap("b"),
    });
    let out = w.tick_commit(&mut old_owner, &current);
    assert_eq!(edits(&out), vec![move_out("a", 1, "b")]);
    drop(old_owner);

    // A new owner, with no memory of the move.
    let mut new_owner = scheduler();
    w.ack("a", 1, OperationStatus::Finished);
    let out = w.tick_commit(&mut new_owner, &current);
    assert_eq!(edits(&out), vec![delete_finished("a"), add("b", 1)]);
    assert_eq!(w.tables_of("b"), vec![1, 3, 4]);
    assert!(w.tables_of("c").len() == 1);
}

#[test]
fn a_move_whose_target_died_goes_to_the_least_loaded_capture() {
    let mut w = World::new(&["a", "b", "c"]);
    w.put_status("a", &status_json(&[1, 2], ""));
    w.put_status("b", &status_json(&[3], ""));
    w.put_status("c", &status_json(&[4, 5], ""));
    let current = tables(1..=5);
    let mut s = scheduler();
    w.settle(&mut s, &current);
    s.request(ScheduleRequest::MoveTable {
        table: TableId(1),
        target: cap("c"),
    });
    w.tick_commit(&mut s, &current);
    w.kill_capture("c");
    w.preflight();
    w.ack("a", 1, OperationStatus::Finished);
    let out = w.tick_commit(&mut s, &current);
    // a holds 2, b holds 3: the least-loaded are a and b with 1 each; then 4 and 5 follow.
    assert_eq!(
        edits(&out),
        vec![delete_finished("a"), add("a", 1), add("a", 5), add("b", 4)]
    );
}

#[test]
fn bug_8_20_remove_job_does_not_underflow_load() {
    // b holds table 1, which DDL dropped, and has no workload key; a holds table 3. TiCDC
    // computed b's load as 0 - 1 = u64::MAX for the remove job and sent new table 2 to a
    // (and to a forever after). Here b's load is 1 - 1 = 0, so b gets it (a tie-break by id
    // would have picked a, so this also fails if the remove is not accounted for).
    let mut w = World::new(&["a", "b"]);
    w.put_status("a", &status_json(&[3], ""));
    w.put_status("b", &status_json(&[1], ""));
    let workload = w.layout.task_workload(&cap("a"), &w.cf);
    w.set(workload, Some(br#"{"3":{"workload":1}}"#.to_vec()));
    let mut s = scheduler();
    let out = w.tick_commit(&mut s, &tables([2, 3]));
    assert_eq!(
        edits(&out),
        vec![
            (
                "b".to_owned(),
                TaskStatusEdit::RemoveTable {
                    table: TableId(1),
                    boundary_ts: CHECKPOINT,
                    is_move: false
                }
            ),
            add("b", 2),
        ]
    );

    // A capture with only a pending remove (no tables at all) is still the least loaded.
    let mut w = World::new(&["a", "b"]);
    let removing = r#"{"7":{"done":false,"delete":true,"boundary_ts":5}}"#;
    w.put_status("a", &status_json(&[], removing));
    w.put_status("b", &status_json(&[3], ""));
    let out = w.tick(&mut scheduler(), &tables([2, 3]));
    assert_eq!(edits(&out), vec![add("a", 2)]);
}

#[test]
fn bug_8_21_move_of_unknown_table_does_not_block_later_moves() {
    let mut w = World::new(&["a", "b"]);
    let mut s = scheduler();
    let current = tables(1..=4);
    w.settle(&mut s, &current);
    let mv = |t: i64, c: &str| ScheduleRequest::MoveTable {
        table: TableId(t),
        target: cap(c),
    };
    // TiCDC returned at the unknown table 999 without clearing the queue: no move ever again.
    s.request(mv(999, "b"));
    s.request(mv(1, "dead"));
    s.request(mv(2, "b"));
    s.request(mv(1, "b"));
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(edits(&out), vec![move_out("a", 1, "b")]);
    let rejected: Vec<(ScheduleRequest, bool)> = out
        .rejected
        .iter()
        .map(|(r, why)| (r.clone(), !why.is_empty()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (mv(999, "b"), true),
            (mv(1, "dead"), true),
            (mv(2, "b"), true),
        ]
    );
    assert!(
        out.rejected[0].1.contains("not replicated"),
        "{:?}",
        out.rejected
    );
    assert!(out.rejected[1].1.contains("not alive"));
    assert!(out.rejected[2].1.contains("already"));
    assert_eq!(s.pending_moves(), 0);
}

#[test]
fn a_move_of_a_busy_table_waits_in_the_queue() {
    let mut w = World::new(&["a", "b"]);
    let mut s = scheduler();
    let current = tables(1..=2);
    // Table 1 is being added on a.
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(edits(&out), vec![add("a", 1), add("b", 2)]);
    s.request(ScheduleRequest::MoveTable {
        table: TableId(1),
        target: cap("b"),
    });
    let out = w.tick_commit(&mut s, &current);
    assert!(out.groups.is_empty() && out.rejected.is_empty());
    assert_eq!(s.pending_moves(), 1);
    w.finish_all();
    // The finished add ops are deleted first; the move goes out once the table is idle.
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(
        edits(&out),
        vec![delete_finished("a"), delete_finished("b")]
    );
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(edits(&out), vec![move_out("a", 1, "b")]);
    assert_eq!(s.pending_moves(), 0);
}

#[test]
fn bug_8_19_periodic_rebalance_when_skewed() {
    let mut w = World::new(&["a", "b"]);
    let mut s = scheduler();
    w.settle(&mut s, &tables(1..=4));
    assert_eq!(w.tables_of("a"), vec![1, 3]);
    assert_eq!(w.tables_of("b"), vec![2, 4]);
    // DDL drops b's tables: 2/0, with no capture change and no API call. TiCDC never
    // rebalances this (periodic rebalance is a TODO there).
    let current = tables([1, 3]);
    w.settle(&mut s, &current);
    assert_eq!(w.counts(), vec![("a".into(), 2), ("b".into(), 0)]);
    w.now_ms += 30_000;
    let out = w.tick(&mut s, &current);
    assert!(out.groups.is_empty() && out.settled, "not due yet");

    w.now_ms += 60_000;
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(edits(&out), vec![move_out("a", 3, "b")]);
    w.settle(&mut s, &current);
    assert_eq!(w.counts(), vec![("a".into(), 1), ("b".into(), 1)]);
}

#[test]
fn periodic_rebalance_tolerates_the_configured_skew() {
    let mut w = World::new(&["a", "b"]);
    let mut s = TableScheduler::new(
        ChangefeedId::new("cf-1"),
        SchedulerConfig {
            rebalance_interval_ms: 1_000,
            rebalance_skew: 2,
            ..SchedulerConfig::default()
        },
    );
    w.settle(&mut s, &tables(1..=4));
    let current = tables([1, 3]);
    w.settle(&mut s, &current);
    w.now_ms += 5_000;
    let out = w.tick(&mut s, &current);
    assert!(out.groups.is_empty() && out.settled, "skew 2 is within 2");
    // An explicit request balances whatever the configured skew.
    s.request(ScheduleRequest::Rebalance);
    let out = w.tick(&mut s, &current);
    assert_eq!(edits(&out), vec![move_out("a", 3, "b")]);
}

#[test]
fn a_new_capture_gets_the_highest_table_ids_of_overloaded_captures() {
    let mut w = World::new(&["a", "b", "c"]);
    let mut s = scheduler();
    let current = tables(1..=10);
    w.settle(&mut s, &current);
    w.add_capture("d");
    let out = w.tick_commit(&mut s, &current);
    // 10 over 4 = 3/3/2/2; the ceil slots stay with the most loaded (a, then b by id).
    assert_eq!(
        edits(&out),
        vec![move_out("a", 10, "d"), move_out("c", 9, "d")]
    );
    w.settle(&mut s, &current);
    assert_eq!(
        w.counts(),
        vec![
            ("a".into(), 3),
            ("b".into(), 3),
            ("c".into(), 2),
            ("d".into(), 2)
        ]
    );
    assert_eq!(w.tables_of("d"), vec![9, 10]);
}

#[test]
fn rebalance_waits_until_the_changefeed_settles() {
    let mut w = World::new(&["a", "b"]);
    w.put_status("a", &status_json(&[1, 2, 3, 4], ""));
    let mut s = scheduler();
    let current = tables(1..=5);
    // First tick: table 5 is added; the first-tick rebalance must wait for it.
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(edits(&out), vec![add("b", 5)]);
    let out = w.tick_commit(&mut s, &current);
    assert!(out.groups.is_empty(), "op in flight: no rebalance yet");
    w.finish_all();
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(edits(&out), vec![delete_finished("b")]);
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(edits(&out), vec![move_out("a", 4, "b")]);
    w.settle(&mut s, &current);
    assert_eq!(w.counts(), vec![("a".into(), 3), ("b".into(), 2)]);
}

#[test]
fn no_add_while_another_capture_holds_the_table() {
    // (b's op for table 1, expected edits this tick)
    let cases: Vec<(&str, Vec<(String, TaskStatusEdit)>)> = vec![
        // A pending remove (not a move): wait, nothing is added anywhere.
        (
            r#"{"1":{"done":false,"delete":true,"boundary_ts":5}}"#,
            vec![],
        ),
        (
            r#"{"1":{"done":false,"delete":true,"boundary_ts":5,"status":1}}"#,
            vec![],
        ),
        // A pending move to a: still wait.
        (
            r#"{"1":{"done":false,"delete":true,"flag":1,"boundary_ts":5,"rcdc-move-target":"a"}}"#,
            vec![],
        ),
        // Finished: released and re-added in the same group.
        (
            r#"{"1":{"done":true,"delete":true,"boundary_ts":5,"status":2}}"#,
            vec![delete_finished("b"), add("a", 1)],
        ),
        (
            r#"{"1":{"done":true,"delete":true,"flag":1,"boundary_ts":5,"status":2,"rcdc-move-target":"b"}}"#,
            vec![delete_finished("b"), add("b", 1)],
        ),
    ];
    for (ops, want) in cases {
        let mut w = World::new(&["a", "b"]);
        w.put_status("a", &status_json(&[], ""));
        w.put_status("b", &status_json(&[2, 3], ops));
        let out = w.tick_commit(&mut scheduler(), &tables(1..=3));
        assert_eq!(edits(&out), want, "{ops}");
        assert!(!out.settled);
    }
}

#[test]
fn a_dropped_table_is_not_readded_by_a_finished_move() {
    let mut w = World::new(&["a", "b"]);
    let ops = r#"{"1":{"done":true,"delete":true,"flag":1,"boundary_ts":5,"status":2,"rcdc-move-target":"b"}}"#;
    w.put_status("a", &status_json(&[2], ops));
    let out = w.tick_commit(&mut scheduler(), &tables([2]));
    assert_eq!(edits(&out), vec![delete_finished("a")]);
}

#[test]
fn table_held_by_two_captures_reports_an_error_and_schedules_nothing() {
    let mut w = World::new(&["a", "b"]);
    let finished = r#"{"9":{"done":true,"delete":false,"boundary_ts":5,"status":2}}"#;
    w.put_status("a", &status_json(&[1, 9], finished));
    w.put_status("b", &status_json(&[1], ""));
    let mut s = scheduler();
    s.request(ScheduleRequest::MoveTable {
        table: TableId(9),
        target: cap("b"),
    });
    let out = w.tick(&mut s, &tables([1, 2, 9]));
    assert!(out.groups.is_empty());
    assert!(!out.settled);
    let err = out.error.expect("an error");
    assert!(
        err.contains("ErrTableListenReplicated") && err.contains("table 1"),
        "{err}"
    );
    assert_eq!(
        s.pending_moves(),
        1,
        "requests are kept for after the repair"
    );

    // A dead capture's leftover status is not a conflict.
    w.kill_capture("b");
    let out = w.tick(&mut s, &tables([1, 2, 9]));
    assert_eq!(out.error, None);
}

#[test]
fn a_corrupt_task_status_of_a_live_capture_stops_scheduling() {
    let mut w = World::new(&["a", "b"]);
    w.put_status("a", "{not json");
    let out = w.tick(&mut scheduler(), &tables([1]));
    assert!(out.groups.is_empty());
    assert!(out.error.expect("error").contains("does not decode"));
}

#[test]
fn no_captures_no_patches() {
    let w = World::new(&[]);
    let out = w.tick(&mut scheduler(), &tables([1, 2]));
    assert_eq!(
        out,
        ScheduleOutcome {
            settled: false, // tables nobody replicates: progress must wait
            ..Default::default()
        }
    );
}

/// A seeded random walk: captures come and go, DDL adds and drops tables, processors ack ops
/// at random, operators move tables and ask for rebalances, and the owner restarts. After every
/// commit no table has two live holders; once quiet, everything converges.
#[test]
fn random_walk_keeps_one_holder_and_converges() {
    random_walk(0.0);
}

/// Issue #11: per-key groups may each be dropped (a precondition, an indeterminate txn);
/// whichever subset commits, no table ever has two holders, and the requests of a tick with
/// a dropped group are re-queued and converge.
#[test]
fn random_walk_with_dropped_groups_keeps_one_holder_and_converges() {
    random_walk(0.3);
}

fn random_walk(drop_p: f64) {
    // How often each kind of edit was emitted, so the walk provably exercises all of them.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        // Capture ids are never reused (a restarted capture gets a new id, facts §4.2).
        let mut names: Vec<String> = vec!["a".into(), "b".into()];
        let mut w = World::new(&["a", "b"]);
        let mut s = scheduler();
        let mut current = tables(1..=12);
        for _ in 0..200 {
            w.now_ms += rng.gen_range(0..20_000);
            match rng.gen_range(0..100) {
                0..=1 => {
                    let alive: Vec<CaptureId> = w.state.captures().keys().cloned().collect();
                    if alive.len() > 1 {
                        w.kill_capture(alive[rng.gen_range(0..alive.len())].as_str());
                    }
                }
                2..=3 => {
                    let name = format!("n{}", names.len());
                    w.add_capture(&name);
                    names.push(name);
                }
                4..=7 => {
                    let t = TableId(rng.gen_range(1..=16));
                    if !current.remove(&t) {
                        current.insert(t);
                    }
                }
                8..=12 => s.request(ScheduleRequest::MoveTable {
                    table: TableId(rng.gen_range(1..=16)),
                    target: cap(&names[rng.gen_range(0..names.len())]),
                }),
                13 => s.request(ScheduleRequest::Rebalance),
                14 => s = scheduler(),
                15..=20 => w.preflight(),
                _ => {}
            }
            let out = w.tick(&mut s, &current);
            let mut all = true;
            for g in &out.groups {
                if drop_p > 0.0 && rng.gen_bool(drop_p) {
                    all = false;
                    continue;
                }
                for p in &g.patches {
                    w.apply(p);
                }
                w.assert_single_holder();
            }
            if !all {
                s.requeue(out.started.clone());
            }
            assert_eq!(out.error, None, "seed {seed}");
            for (_, e) in edits(&out) {
                let kind = match e {
                    TaskStatusEdit::AddTable { .. } => "add",
                    TaskStatusEdit::RemoveTable { .. } => "remove",
                    TaskStatusEdit::MoveTableOut { .. } => "move",
                    TaskStatusEdit::DeleteFinishedOps => "delete-finished",
                    _ => "other",
                };
                *seen.entry(kind).or_default() += 1;
            }
            *seen.entry("rejected").or_default() += out.rejected.len();
            // Processors ack some ops.
            let alive: Vec<CaptureId> = w.state.captures().keys().cloned().collect();
            for c in alive {
                for (t, op) in w.ops_of(c.as_str()) {
                    if op.status != OperationStatus::Finished && rng.gen_bool(0.4) {
                        let next = if op.status == OperationStatus::Dispatched && rng.gen_bool(0.5)
                        {
                            OperationStatus::Processed
                        } else {
                            OperationStatus::Finished
                        };
                        w.ack(c.as_str(), t, next);
                    }
                }
            }
        }
        // Quiet: preflight cleans up, processors ack everything, a periodic check comes due.
        w.preflight();
        w.settle(&mut s, &current);
        w.now_ms += 120_000;
        w.settle(&mut s, &current);
        let mut held = BTreeSet::new();
        for c in w.state.captures().keys() {
            held.extend(w.tables_of(c.as_str()).into_iter().map(TableId));
        }
        assert_eq!(held, current, "seed {seed}");
        let counts: Vec<usize> = w.counts().into_iter().map(|(_, n)| n).collect();
        let spread = counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0);
        assert!(spread <= 1, "seed {seed}: {counts:?}");
    }
    for kind in ["add", "remove", "move", "delete-finished", "rejected"] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 10,
            "{kind}: {seen:?}"
        );
    }
    assert_eq!(seen.get("other"), None);
}

/// Issue #11: a first dispatch goes in rounds of at most `max_ops_per_capture` ops per
/// capture, and no capture takes more than `max_tables_per_capture` tables (its TaskStatus
/// must stay one etcd value): tables nobody has room for stay unassigned, unsettled.
#[test]
fn dispatch_goes_in_rounds_and_stops_at_the_table_limit() {
    let mut w = World::new(&["a", "b"]);
    let mut s = TableScheduler::new(
        ChangefeedId::new("cf-1"),
        SchedulerConfig {
            max_ops_per_capture: 3,
            max_tables_per_capture: 8,
            ..SchedulerConfig::default()
        },
    );
    let current = tables(1..=20);
    let out = w.tick_commit(&mut s, &current);
    assert_eq!(
        edits(&out).len(),
        6,
        "3 adds per capture in the first round"
    );
    for _ in 0..10 {
        w.finish_all();
        let out = w.tick_commit(&mut s, &current);
        assert!(!out.settled, "4 tables have no room anywhere");
        for c in ["a", "b"] {
            assert!(w.ops_of(c).len() <= 3, "{c}: {:?}", w.ops_of(c));
        }
    }
    assert_eq!(w.counts(), vec![("a".into(), 8), ("b".into(), 8)]);
    // A capture joins: the rest finds room there.
    w.add_capture("c");
    w.settle(&mut s, &current);
    let counts = w.counts();
    assert!(counts.iter().all(|(_, n)| *n <= 8), "{counts:?}");
    assert!(w.tables_of("c").len() >= 4, "{counts:?}");
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<usize>(), 20);
}
