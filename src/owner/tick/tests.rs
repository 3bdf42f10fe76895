//! `Owner::tick` end to end without IO: a map stands in for etcd, patches are applied as the
//! worker would, and simulated processors acknowledge operations like the real protocol.

use std::collections::{BTreeMap, BTreeSet};

use rcdc_state::model::{OperationStatus, TaskStatus};
use rcdc_state::{GlobalState, PatchOutcome, TableId, Ts};

use super::*;

const CF: &str = "cf";

struct Cluster {
    kv: BTreeMap<String, Vec<u8>>,
    owner: Owner,
    now: u64,
    effects: Vec<OwnerEffect>,
    rejected: Vec<(OwnerRequest, String)>,
    /// The upstream's DDL commit ts, answered to `FetchDdl` (it looks up to `upstream_now`).
    ddl: Vec<u64>,
    upstream_now: u64,
    /// The owner's view, kept incrementally like the worker keeps it (so its change log
    /// drives which changefeeds a tick visits), and the key set it last saw.
    live: GlobalState,
    seen: BTreeMap<String, Vec<u8>>,
    /// Changefeeds visited by the last tick.
    visited: usize,
    /// Requests the owner acknowledged (their consequence committed).
    acknowledged: Vec<OwnerRequest>,
    /// Groups for which this returns true are reported dropped to the next tick; with
    /// `landed`, they are applied all the same (an indeterminate txn that did land).
    drop_if: Option<fn(&PatchGroup) -> bool>,
    landed: bool,
    dropped_next: Vec<usize>,
}

impl Cluster {
    fn new(captures: &[&str]) -> Self {
        let mut kv = BTreeMap::new();
        for c in captures {
            kv.insert(
                format!("/tidb/cdc/capture/{c}"),
                format!(r#"{{"id":"{c}","address":"{c}:8300","version":"v5.1.0"}}"#).into_bytes(),
            );
        }
        let info = r#"{"sink-uri":"blackhole://","start-ts":1000,"target-ts":0,"state":"normal","admin-job-type":0,"config":{}}"#;
        kv.insert(
            "/tidb/cdc/changefeed/info/cf".into(),
            info.as_bytes().to_vec(),
        );
        let config = OwnerConfig {
            addr: "owner:8300".into(),
            flush_interval_ms: 0,
            ..Default::default()
        };
        Self {
            kv,
            owner: Owner::new(config),
            now: 1_000_000,
            effects: vec![],
            rejected: vec![],
            ddl: vec![],
            upstream_now: 1_000_000_000,
            live: GlobalState::default(),
            seen: BTreeMap::new(),
            acknowledged: vec![],
            drop_if: None,
            landed: false,
            dropped_next: vec![],
            visited: 0,
        }
    }
    fn state(&self) -> GlobalState {
        let mut s = GlobalState::default();
        for (k, v) in &self.kv {
            s.apply(k, Some(v));
        }
        s
    }
    fn tick_with(&mut self, input: OwnerInput) {
        self.now += 100;
        let input = OwnerInput {
            now_ms: self.now,
            dropped: std::mem::take(&mut self.dropped_next),
            ..input
        };
        // Apply what changed since the last tick, as the worker would.
        for (k, v) in &self.kv {
            if self.seen.get(k) != Some(v) {
                self.live.apply(k, Some(v));
            }
        }
        for k in self.seen.keys().filter(|k| !self.kv.contains_key(*k)) {
            self.live.apply(k, None);
        }
        self.seen = self.kv.clone();
        assert_eq!(self.live, self.state(), "incremental view = full view");
        let out = self.owner.tick(&self.live, &input);
        self.live.clear_changes();
        self.visited = out.visited;
        for (index, g) in out.groups.into_iter().enumerate() {
            if self.drop_if.is_some_and(|f| f(&g)) {
                self.dropped_next.push(index);
                if !self.landed {
                    continue;
                }
            }
            for p in g.patches {
                match p
                    .apply(self.kv.get(&p.key).map(Vec::as_slice))
                    .expect("patch applies")
                {
                    PatchOutcome::Unchanged => {}
                    PatchOutcome::Put(v) => {
                        self.kv.insert(p.key, v);
                    }
                    PatchOutcome::Delete => {
                        self.kv.remove(&p.key);
                    }
                }
            }
        }
        self.effects.extend(out.effects);
        self.rejected.extend(out.rejected);
        self.acknowledged.extend(out.acknowledged);
    }
    fn tick(&mut self) {
        self.tick_with(OwnerInput::default());
        self.answer_ddl();
    }
    /// Answers pending FetchDdl effects from `self.ddl`.
    fn answer_ddl(&mut self) {
        let mut results = vec![];
        self.effects.retain(|e| match e {
            OwnerEffect::FetchDdl { changefeed, after } => {
                results.push(OwnerEffectResult::Ddl {
                    changefeed: changefeed.clone(),
                    after: *after,
                    next: self.ddl.iter().find(|d| **d > after.0).map(|d| Ts(*d)),
                    upto: Ts(self.upstream_now),
                });
                false
            }
            _ => true,
        });
        if !results.is_empty() {
            self.tick_with(OwnerInput {
                results,
                ..Default::default()
            });
        }
    }
    /// Answers pending ListTables effects with `tables`.
    fn answer_tables(&mut self, tables: &[i64]) -> bool {
        let asked = self
            .effects
            .iter()
            .any(|e| matches!(e, OwnerEffect::ListTables { .. }));
        self.effects
            .retain(|e| !matches!(e, OwnerEffect::ListTables { .. }));
        if asked {
            let set: BTreeSet<TableId> = tables.iter().map(|t| TableId(*t)).collect();
            self.tick_with(OwnerInput {
                results: vec![OwnerEffectResult::Tables {
                    changefeed: CF.into(),
                    tables: set,
                }],
                ..Default::default()
            });
        }
        asked
    }
    /// Processors: finish every op and report positions at `ts`.
    fn processors_ack(&mut self, ts: u64) {
        let keys: Vec<String> = self
            .kv
            .keys()
            .filter(|k| k.starts_with("/tidb/cdc/task/status/"))
            .cloned()
            .collect();
        for k in keys {
            let mut s: TaskStatus = serde_json::from_slice(&self.kv[&k]).expect("status");
            for op in s.operation.iter_mut().flat_map(|o| o.values_mut()) {
                op.status = OperationStatus::Finished;
                op.done = true;
            }
            self.kv
                .insert(k.clone(), serde_json::to_vec(&s).expect("json"));
            let capture = k
                .trim_start_matches("/tidb/cdc/task/status/")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let pos =
                format!(r#"{{"checkpoint-ts":{ts},"resolved-ts":{ts},"count":0,"error":null}}"#);
            self.kv.insert(
                format!("/tidb/cdc/task/position/{capture}/{CF}"),
                pos.into_bytes(),
            );
        }
    }
    fn holders(&self) -> BTreeMap<TableId, Vec<String>> {
        let mut h: BTreeMap<TableId, Vec<String>> = BTreeMap::new();
        let state = self.state();
        if let Some(cf) = state.changefeed(&CF.into()) {
            for (c, s) in &cf.task_statuses {
                for t in s.tables.iter().flat_map(|t| t.keys()) {
                    h.entry(*t).or_default().push(c.to_string());
                }
            }
        }
        h
    }
    fn status(&self) -> Option<(Ts, Ts)> {
        self.state()
            .changefeed(&CF.into())?
            .status
            .as_ref()
            .map(|s| (s.resolved_ts, s.checkpoint_ts))
    }
    /// Runs ticks with processor acks until the changefeed is settled and reports progress.
    fn run_until_settled(&mut self, ts: u64, tables: &[i64]) {
        for _ in 0..20 {
            self.tick();
            self.answer_tables(tables);
            self.processors_ack(ts);
        }
    }
}

#[test]
fn a_new_changefeed_gets_a_status_its_tables_dispatched_and_progress() {
    let mut c = Cluster::new(&["a", "b"]);
    c.tick();
    assert_eq!(
        c.status(),
        Some((Ts(999), Ts(999))),
        "preflight creates the status at start-ts − 1"
    );
    c.tick();
    assert!(
        c.answer_tables(&[1, 2, 3, 4, 5, 6]),
        "the owner asks the upstream for the table set"
    );
    let holders = c.holders();
    assert_eq!(holders.len(), 6);
    assert!(holders.values().all(|h| h.len() == 1));
    let per_capture = |name: &str| holders.values().filter(|h| h[0] == name).count();
    assert_eq!((per_capture("a"), per_capture("b")), (3, 3));
    c.run_until_settled(5_000, &[1, 2, 3, 4, 5, 6]);
    assert_eq!(c.status(), Some((Ts(5_000), Ts(5_000))));
}

#[test]
fn tables_of_a_crashed_capture_move_to_the_survivors() {
    let mut c = Cluster::new(&["a", "b", "c"]);
    c.run_until_settled(2_000, &[1, 2, 3, 4, 5, 6]);
    c.kv.remove("/tidb/cdc/capture/b"); // its session expired
    c.run_until_settled(3_000, &[1, 2, 3, 4, 5, 6]);
    let holders = c.holders();
    assert_eq!(holders.len(), 6, "every table is held again");
    assert!(holders.values().all(|h| h.len() == 1 && h[0] != "b"));
    assert!(
        !c.kv.keys().any(|k| k.contains("/b/")),
        "the dead capture's task keys are gone"
    );
    assert_eq!(c.status().map(|s| s.1), Some(Ts(3_000)));
}

#[test]
fn pause_stops_processors_and_resume_redispatches() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2, 3]);
    c.tick_with(OwnerInput {
        requests: vec![OwnerRequest::Admin(CF.into(), AdminJob::Pause)],
        ..Default::default()
    });
    c.tick(); // the deletes follow the committed state change
    assert!(
        !c.kv.keys().any(|k| k.starts_with("/tidb/cdc/task/")),
        "task keys deleted: processors stop"
    );
    c.run_until_settled(2_500, &[1, 2, 3]);
    assert!(
        c.holders().is_empty(),
        "a paused changefeed is not scheduled"
    );
    c.tick_with(OwnerInput {
        requests: vec![OwnerRequest::Admin(CF.into(), AdminJob::Resume)],
        ..Default::default()
    });
    c.run_until_settled(3_000, &[1, 2, 3]);
    assert_eq!(c.holders().len(), 3);
    assert_eq!(c.status().map(|s| s.1), Some(Ts(3_000)));
}

#[test]
fn remove_deletes_every_key_of_the_changefeed() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2, 3]);
    c.tick_with(OwnerInput {
        requests: vec![OwnerRequest::Admin(CF.into(), AdminJob::Remove)],
        ..Default::default()
    });
    c.tick();
    // Only the removed changefeed's record stays (its job key, admin job "remove").
    let left: Vec<&String> = c.kv.keys().filter(|k| k.contains("/cf")).collect();
    assert_eq!(left, ["/tidb/cdc/job/cf"]);
    assert!(c
        .live
        .changefeed(&CF.into())
        .is_some_and(|cf| cf.is_removed()));
    for _ in 0..3 {
        c.tick(); // and the owner leaves it alone
    }
    assert!(c.kv.contains_key("/tidb/cdc/job/cf"));
}

#[test]
fn requests_for_unknown_changefeeds_are_rejected_with_a_reason() {
    let mut c = Cluster::new(&["a"]);
    c.tick_with(OwnerInput {
        requests: vec![OwnerRequest::Admin("nope".into(), AdminJob::Pause)],
        ..Default::default()
    });
    assert_eq!(c.rejected.len(), 1);
    assert!(c.rejected[0].1.contains("nope"));
}

#[test]
fn a_broken_changefeed_is_left_alone() {
    let mut c = Cluster::new(&["a"]);
    c.kv.insert("/tidb/cdc/changefeed/info/cf".into(), b"{broken".to_vec());
    c.kv.insert(
        "/tidb/cdc/task/status/gone/cf".into(),
        br#"{"tables":null,"operation":null,"admin-job-type":0}"#.to_vec(),
    );
    let before = c.kv.clone();
    for _ in 0..5 {
        c.tick();
    }
    assert_eq!(
        c.kv, before,
        "nothing written for a changefeed the owner cannot read"
    );
}

#[test]
fn the_changefeed_finishes_at_its_target_ts() {
    let mut c = Cluster::new(&["a"]);
    let info = r#"{"sink-uri":"blackhole://","start-ts":1000,"target-ts":4000,"state":"normal","admin-job-type":0,"config":{}}"#;
    c.kv.insert(
        "/tidb/cdc/changefeed/info/cf".into(),
        info.as_bytes().to_vec(),
    );
    c.run_until_settled(9_000, &[1, 2]);
    let state = c.state();
    let cf = state.changefeed(&CF.into()).expect("cf");
    assert_eq!(cf.info.as_ref().map(|i| i.state), Some(FeedState::Finished));
    assert_eq!(
        cf.status.as_ref().map(|s| s.checkpoint_ts),
        Some(Ts(4_000)),
        "capped at the target"
    );
}

#[test]
fn the_gc_safe_point_is_pushed_as_an_effect() {
    let mut c = Cluster::new(&["a"]);
    c.run_until_settled(2_000, &[1]);
    let pushes: Vec<_> = c
        .effects
        .iter()
        .filter_map(|e| match e {
            OwnerEffect::UpdateGcSafePoint(p) => Some(p.safe_point),
            _ => None,
        })
        .collect();
    assert_eq!(
        pushes.first(),
        Some(&Ts(999)),
        "before the status exists the checkpoint is the start ts; the safe point is one below"
    );
}

#[test]
fn a_lost_snapshot_fails_the_changefeed() {
    let mut c = Cluster::new(&["a"]);
    c.run_until_settled(2_000, &[1]);
    c.tick_with(OwnerInput {
        results: vec![OwnerEffectResult::GcSafePoint(SafePointResult::Updated {
            upstream: String::new(),
            min_safe_point: Ts(10_000),
        })],
        ..Default::default()
    });
    c.tick();
    let state = c.state();
    let info = state
        .changefeed(&CF.into())
        .and_then(|cf| cf.info.clone())
        .expect("info");
    assert_eq!(info.state, FeedState::Failed);
    assert_eq!(
        info.error.map(|e| e.code),
        Some("CDC:ErrSnapshotLostByGC".to_owned())
    );
}

#[test]
fn a_ddl_holds_the_checkpoint_just_before_it_until_the_table_set_changes() {
    let mut c = Cluster::new(&["a", "b"]);
    c.ddl = vec![3_000]; // table 7 created, table 2 dropped at 3,000
    c.run_until_settled(2_500, &[1, 2, 3, 4, 5, 6]);
    assert_eq!(c.status(), Some((Ts(2_500), Ts(2_500))));
    // Processors run ahead of the DDL; the checkpoint stops at 2,999.
    for _ in 0..20 {
        c.tick();
        c.processors_ack(5_000);
    }
    assert_eq!(
        c.status().map(|s| s.1),
        Some(Ts(2_999)),
        "checkpoint held at ddl − 1"
    );
    let listed_at: Vec<Ts> = c
        .effects
        .iter()
        .filter_map(|e| match e {
            OwnerEffect::ListTables { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(listed_at, [Ts(3_000)], "tables re-listed at the DDL");
    // The table set after the DDL: 2 is gone, 7 is new; then progress moves past the DDL.
    c.run_until_settled(5_000, &[1, 3, 4, 5, 6, 7]);
    let holders = c.holders();
    assert!(
        holders.contains_key(&TableId(7)) && !holders.contains_key(&TableId(2)),
        "{holders:?}"
    );
    assert_eq!(c.status().map(|s| s.1), Some(Ts(5_000)));
}

#[test]
fn a_quiet_tick_visits_nothing_and_a_position_change_visits_one_changefeed() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(5_000, &[1, 2, 3, 4]);
    for _ in 0..5 {
        c.tick(); // let any deferred write and echo settle
    }
    c.now = c.now.saturating_sub(100); // no time passes: no sweep slice is due
    c.tick();
    assert_eq!(c.visited, 0, "nothing changed, nothing pending");
    c.processors_ack(6_000);
    c.tick();
    assert_eq!(c.visited, 1, "one changefeed's positions changed");
    assert_eq!(c.status(), Some((Ts(6_000), Ts(6_000))));
}

#[test]
fn progress_never_passes_a_table_nobody_can_take() {
    // Found by the demo's shutdown: every capture draining, one leaves; its tables cannot be
    // re-dispatched, and the checkpoint must wait for them instead of skipping them.
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(5_000, &[1, 2, 3, 4]);
    assert_eq!(c.status(), Some((Ts(5_000), Ts(5_000))));
    c.kv.insert(
        "/tidb/cdc/capture/a".into(),
        br#"{"id":"a","address":"a:8300","version":"v5.1.0","rcdc-draining":true}"#.to_vec(),
    );
    c.kv.remove("/tidb/cdc/capture/b"); // its session ended
    for _ in 0..10 {
        c.tick();
        c.processors_ack(9_000); // a's own tables move on
    }
    let held: Vec<TableId> = c.holders().into_keys().collect();
    assert!(held.len() < 4, "b's tables have nowhere to go: {held:?}");
    assert_eq!(
        c.status().map(|s| s.1),
        Some(Ts(5_000)),
        "checkpoint waits for the orphaned tables"
    );
}

#[test]
fn a_remote_drain_moves_every_table_off_its_capture_and_refuses_the_last_one() {
    let mut c = Cluster::new(&["a", "b", "c"]);
    c.run_until_settled(5_000, &[1, 2, 3, 4, 5, 6]);
    let held_by = |c: &Cluster, who: &str| {
        c.holders()
            .values()
            .filter(|h| h.iter().any(|x| x == who))
            .count()
    };
    assert!(held_by(&c, "a") > 0, "{:?}", c.holders());
    let drain = |who: &str| OwnerInput {
        requests: vec![OwnerRequest::Drain(CaptureId::from(who))],
        ..Default::default()
    };
    c.tick_with(drain("a"));
    assert_eq!(
        c.acknowledged,
        vec![OwnerRequest::Drain(CaptureId::from("a"))]
    );
    for _ in 0..10 {
        c.tick();
        c.processors_ack(6_000);
    }
    assert_eq!(held_by(&c, "a"), 0, "{:?}", c.holders());
    assert_eq!(c.holders().len(), 6, "every table still held once");
    assert_eq!(c.status().map(|s| s.1), Some(Ts(6_000)), "progress goes on");
    // b is the last capture that could take tables once c is drained too.
    c.tick_with(drain("c"));
    c.tick_with(drain("b"));
    c.tick_with(drain("nobody"));
    let why: Vec<&str> = c.rejected.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(
        why,
        [
            "cannot drain capture b: no other live capture can take its tables",
            "capture nobody does not exist"
        ]
    );
    // A drained capture that restarts (a new session: a new key) takes tables again.
    c.kv.remove("/tidb/cdc/capture/a");
    c.kv.remove("/tidb/cdc/capture/c");
    c.kv.insert(
        "/tidb/cdc/capture/a2".into(),
        br#"{"id":"a2","address":"a:8300","version":"v5.1.0"}"#.to_vec(),
    );
    for _ in 0..20 {
        c.tick();
        c.processors_ack(7_000);
    }
    assert!(held_by(&c, "a2") > 0, "{:?}", c.holders());
}

mod ack;
