//! Groups fit etcd's txn limits by construction (target-design §3, issue #11): whatever the
//! owner and the processor managers emit, through a first dispatch, pause, resume, the loss of
//! most captures, a rebalance onto a new capture, a drain and a remove, every group alone fits one txn (≤ 128 ops with the delete
//! counter and the owner's fence, ≤ 1.25 MiB), checked with the worker's own planner.
//!
//! The cluster is pure: a key map stands in for etcd, the real `Owner` and one real
//! `ProcessorManager` per capture tick against it, and a fake runtime reports every started
//! pipeline as running at the changefeed's current ts.

use std::collections::{BTreeMap, BTreeSet};

use rcdc::owner::feed_state::AdminJob;
use rcdc::owner::scheduler::{ScheduleRequest, SchedulerConfig};
use rcdc::owner::tick::{
    Owner, OwnerConfig, OwnerEffect, OwnerEffectResult, OwnerInput, OwnerRequest,
};
use rcdc::processor::tick::{
    PipelineCommand, Pipelines, ProcessorInput, ProcessorManager, TablePipelineState, TableProgress,
};
use rcdc::processor::ProcessorConfig;
use rcdc_reactor::{check_group_fits, Group, TxnLimits};
use rcdc_state::model::FeedState;
use rcdc_state::{CaptureId, ChangefeedId, GlobalState, PatchGroup, PatchOutcome, TableId, Ts};

const CF: &str = "cf";
/// A real TSO (2021), so values have their real size.
const START: u64 = 425_000_000_000_000_000;

struct Cluster {
    kv: BTreeMap<String, Vec<u8>>,
    /// The decoded view of `kv`, kept incrementally as the workers keep theirs.
    live: GlobalState,
    owner: Owner,
    processors: BTreeMap<CaptureId, (ProcessorManager, Pipelines)>,
    tables: BTreeSet<TableId>,
    results: Vec<OwnerEffectResult>,
    now: u64,
    ts: u64,
    groups_checked: usize,
    largest: (usize, String),
}

impl Cluster {
    fn new(captures: usize, tables: i64) -> Self {
        let mut c = Cluster {
            kv: BTreeMap::new(),
            live: GlobalState::default(),
            owner: Owner::new(OwnerConfig {
                addr: "owner:8300".into(),
                ..Default::default()
            }),
            processors: BTreeMap::new(),
            tables: (1..=tables).map(TableId).collect(),
            results: vec![],
            now: 1_000_000,
            ts: START,
            groups_checked: 0,
            largest: (0, String::new()),
        };
        for i in 0..captures {
            c.add_capture(&format!("c{i:03}"));
        }
        let info = format!(
            r#"{{"sink-uri":"blackhole://","start-ts":{START},"target-ts":0,"state":"normal","admin-job-type":0,"config":{{}}}}"#
        );
        c.put(
            format!("/tidb/cdc/changefeed/info/{CF}"),
            Some(info.into_bytes()),
        );
        c
    }

    fn add_capture(&mut self, name: &str) {
        let v = format!(r#"{{"id":"{name}","address":"{name}:8300","version":"v5.1.0"}}"#);
        self.put(format!("/tidb/cdc/capture/{name}"), Some(v.into_bytes()));
        let id = CaptureId::new(name);
        let manager = ProcessorManager::new(id.clone(), ProcessorConfig::default());
        self.processors.insert(id, (manager, Pipelines::new()));
    }

    fn kill_capture(&mut self, name: &str) {
        self.put(format!("/tidb/cdc/capture/{name}"), None);
        self.processors.remove(&CaptureId::new(name));
    }

    fn put(&mut self, key: String, value: Option<Vec<u8>>) {
        self.live.apply(&key, value.as_deref());
        match value {
            Some(v) => self.kv.insert(key, v),
            None => self.kv.remove(&key),
        };
    }

    /// Checks each group with the worker's planner, then commits it.
    fn commit(&mut self, groups: Vec<PatchGroup>) {
        for g in groups {
            let group: Group<_> = g.clone().into();
            // Only the keys the group touches matter to its size.
            let touched: BTreeMap<String, Vec<u8>> = g
                .patches
                .iter()
                .filter_map(|p| self.kv.get(&p.key).map(|v| (p.key.clone(), v.clone())))
                .collect();
            if let Err(why) = check_group_fits(&touched, &group, &TxnLimits::default()) {
                panic!(
                    "a group does not fit one txn: {why}; holdings {:?}",
                    self.holdings()
                );
            }
            self.groups_checked += 1;
            let size: usize = g.patches.iter().map(|p| p.key.len()).sum::<usize>()
                + g.patches
                    .iter()
                    .map(|p| self.kv.get(&p.key).map_or(0, Vec::len))
                    .max()
                    .unwrap_or(0);
            if size > self.largest.0 {
                self.largest = (size, g.label.clone());
            }
            let mut by_key: BTreeMap<String, Vec<&rcdc_state::Patch>> = BTreeMap::new();
            for p in &g.patches {
                by_key.entry(p.key.clone()).or_default().push(p);
            }
            for (key, patches) in by_key {
                match rcdc_state::Patch::apply_all(&patches, self.kv.get(&key).map(Vec::as_slice)) {
                    Ok(PatchOutcome::Put(v)) => self.put(key, Some(v)),
                    Ok(PatchOutcome::Delete) => self.put(key, None),
                    Ok(PatchOutcome::Unchanged) | Err(_) => {}
                }
            }
        }
    }

    fn tick(&mut self, requests: Vec<OwnerRequest>) {
        self.now += 200;
        self.ts += 10 << 18; // 10 ms of physical time
        let input = OwnerInput {
            now_ms: self.now,
            requests,
            results: std::mem::take(&mut self.results),
            dropped: vec![],
        };
        let out = self.owner.tick(&self.live, &input);
        self.live.clear_changes();
        for e in &out.effects {
            if let OwnerEffect::ListTables { changefeed, .. } = e {
                self.results.push(OwnerEffectResult::Tables {
                    changefeed: changefeed.clone(),
                    tables: self.tables.clone(),
                });
            }
            if let OwnerEffect::FetchDdl { changefeed, after } = e {
                self.results.push(OwnerEffectResult::Ddl {
                    changefeed: changefeed.clone(),
                    after: *after,
                    next: None,
                    upto: Ts(self.ts),
                });
            }
        }
        self.commit(out.groups);
        // The processors tick on the same view, as concurrent captures would.
        let ts = Ts(self.ts);
        let mut groups = Vec::new();
        for (manager, pipelines) in self.processors.values_mut() {
            let out = manager.tick(
                &self.live,
                &ProcessorInput {
                    now_ms: self.now,
                    tables: pipelines,
                },
            );
            run_commands(pipelines, out.commands, ts);
            groups.extend(out.groups);
        }
        self.commit(groups);
    }

    fn feed_state(&self) -> Option<FeedState> {
        self.live
            .changefeed(&ChangefeedId::new(CF))?
            .info
            .as_ref()
            .map(|i| i.state)
    }

    /// Tables held per capture.
    fn holdings(&self) -> BTreeMap<CaptureId, usize> {
        let mut out = BTreeMap::new();
        if let Some(cf) = self.live.changefeed(&ChangefeedId::new(CF)) {
            for (capture, s) in &cf.task_statuses {
                if self.live.captures().contains_key(capture) {
                    out.insert(capture.clone(), s.tables.as_ref().map_or(0, |t| t.len()));
                }
            }
        }
        out
    }

    fn held_by(&self, capture: &str) -> usize {
        self.holdings()
            .get(&CaptureId::new(capture))
            .copied()
            .unwrap_or(0)
    }

    /// Largest minus smallest table count over the live captures.
    fn spread(&self) -> usize {
        let mut counts: Vec<usize> = self
            .live
            .captures()
            .keys()
            .map(|c| self.holdings().get(c).copied().unwrap_or(0))
            .collect();
        counts.sort_unstable();
        counts.last().copied().unwrap_or(0) - counts.first().copied().unwrap_or(0)
    }

    /// Settles, then ticks until `done` holds.
    fn settle_until(&mut self, what: &str, done: impl Fn(&Cluster) -> bool) {
        for _ in 0..200 {
            self.settle(what);
            if done(self) {
                return;
            }
        }
        panic!("{what}: not done; holdings {:?}", self.holdings());
    }

    /// Ticks until every table has exactly one holder and no op is in flight.
    fn settle(&mut self, what: &str) {
        for _ in 0..400 {
            self.tick(vec![]);
            let Some(cf) = self.live.changefeed(&ChangefeedId::new(CF)) else {
                continue;
            };
            let mut held = 0;
            let mut busy = false;
            for s in cf.task_statuses.values() {
                held += s.tables.as_ref().map_or(0, |t| t.len());
                busy |= s.operation.as_ref().is_some_and(|o| !o.is_empty());
            }
            if held == self.tables.len() && !busy {
                return;
            }
        }
        panic!("{what}: the cluster did not settle");
    }
}

/// The fake runtime: every pipeline runs at `ts`; a stop reports its boundary.
fn run_commands(pipelines: &mut Pipelines, commands: Vec<PipelineCommand>, ts: Ts) {
    for p in pipelines.values_mut() {
        if p.state == TablePipelineState::Running || p.state == TablePipelineState::Starting {
            p.state = TablePipelineState::Running;
            p.resolved_ts = ts;
            p.checkpoint_ts = ts;
        }
    }
    for c in commands {
        match c {
            PipelineCommand::Start {
                changefeed,
                table,
                start_ts,
            } => {
                pipelines.insert(
                    (changefeed, table),
                    TableProgress {
                        resolved_ts: start_ts,
                        checkpoint_ts: start_ts,
                        state: TablePipelineState::Running,
                        rows: 0,
                    },
                );
            }
            PipelineCommand::StopAt {
                changefeed,
                table,
                boundary_ts,
            } => {
                if let Some(p) = pipelines.get_mut(&(changefeed, table)) {
                    p.checkpoint_ts = p.checkpoint_ts.max(boundary_ts);
                    p.state = TablePipelineState::Stopped {
                        checkpoint_ts: p.checkpoint_ts,
                    };
                }
            }
            PipelineCommand::Cancel { changefeed, table } => {
                pipelines.remove(&(changefeed, table));
            }
        }
    }
}

fn admin(job: AdminJob) -> Vec<OwnerRequest> {
    vec![OwnerRequest::Admin(ChangefeedId::new(CF), job)]
}

/// The whole life of one changefeed of `tables` tables over `captures` captures.
fn lifecycle(captures: usize, tables: i64) {
    let case = format!("{captures} captures × {tables} tables");
    let mut c = Cluster::new(captures, tables);
    c.settle(&format!("{case}: first dispatch"));

    c.tick(admin(AdminJob::Pause));
    for _ in 0..3 {
        c.tick(vec![]);
    }
    assert_eq!(c.feed_state(), Some(FeedState::Stopped), "{case}");
    assert!(
        !c.kv.keys().any(|k| k.starts_with("/tidb/cdc/task/")),
        "{case}: paused, every task key deleted"
    );
    c.tick(admin(AdminJob::Resume));
    c.settle(&format!("{case}: resume"));

    // Most captures die at once (as many as leaves room for every table): their task keys
    // go (preflight), their tables move.
    let names: Vec<String> = c.processors.keys().map(|id| id.to_string()).collect();
    let cap = SchedulerConfig::default().max_tables_per_capture;
    let keep = names
        .len()
        .div_ceil(3)
        .max((tables as usize).div_ceil(cap))
        .min(names.len());
    for name in &names[keep..] {
        c.kill_capture(name);
    }
    c.add_capture("late");
    c.settle(&format!("{case}: after losing captures"));

    // A rebalance onto the new capture: its moves go in rounds within the op limit.
    c.tick(vec![OwnerRequest::Schedule(
        ChangefeedId::new(CF),
        ScheduleRequest::Rebalance,
    )]);
    c.settle_until(&format!("{case}: rebalance"), |c| c.spread() <= 1);

    // One capture drains (graceful shutdown): every table moves off it, in rounds.
    let leaving = c
        .processors
        .keys()
        .next()
        .map(|id| id.to_string())
        .unwrap_or_default();
    if c.processors.len() > 1 {
        let v = format!(
            r#"{{"id":"{leaving}","address":"{leaving}:8300","version":"v5.1.0","rcdc-draining":true}}"#
        );
        c.put(format!("/tidb/cdc/capture/{leaving}"), Some(v.into_bytes()));
        if (tables as usize) <= cap * (c.processors.len() - 1) {
            c.settle_until(&format!("{case}: drain"), |c| c.held_by(&leaving) == 0);
        } else {
            // The others cannot take it all: they fill up to their table limit, no further.
            for _ in 0..100 {
                c.tick(vec![]);
            }
            let holdings = c.holdings();
            assert!(
                holdings
                    .iter()
                    .all(|(id, n)| *n <= cap || id.as_str() == leaving),
                "{case}: a capture past the table limit: {holdings:?}"
            );
        }
        // It leaves for good; its tables go to whoever has room.
        c.kill_capture(&leaving);
    }

    c.tick(admin(AdminJob::Remove));
    for _ in 0..5 {
        c.tick(vec![]);
    }
    assert!(
        c.kv.keys()
            .all(|k| k.starts_with("/tidb/cdc/capture/") || k.starts_with("/tidb/cdc/job/")),
        "{case}: removed, only capture keys and the removed changefeed's record remain"
    );
    println!(
        "{case}: {} groups, all fit; largest ~{} KiB ({})",
        c.groups_checked,
        c.largest.0 / 1024,
        c.largest.1
    );
}

/// The shapes that stress one group most: many captures (many task keys per changefeed), and
/// many tables on few captures (large TaskStatus values). 40,000 tables on 3 captures is
/// TiCDC's recommended cluster maximum on the fewest captures.
#[test]
fn every_group_fits_one_txn_through_a_changefeeds_life() {
    for (captures, tables) in [(1, 10), (150, 3_000), (3, 40_000)] {
        lifecycle(captures, tables);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 6, ..Default::default() })]
    /// The same for random shapes.
    #[test]
    fn every_group_fits_for_random_shapes(captures in 1usize..=120, tables in 1i64..=5_000) {
        lifecycle(captures, tables);
    }
}
