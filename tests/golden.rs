//! Golden owner scenarios (issue #6): recordings under `tests/golden/` replayed in CI, with
//! `insta` snapshots of their decisions (`cdc replay --dump` output).
//!
//! The recordings are produced, never edited, by a deterministic scripted cluster (this
//! file's `Sim`: a key map for etcd, simulated processors acknowledging operations and
//! reporting positions, a scripted upstream) driving the real `Owner` through the real
//! `Recorder`. Regenerate them with:
//!
//! ```sh
//! RCDC_REGENERATE_GOLDEN=1 cargo test --test golden
//! ```
//!
//! and review the snapshot changes with `cargo insta review`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rcdc::owner::gc::SafePointResult;
use rcdc::owner::tick::{
    Owner, OwnerConfig, OwnerEffect, OwnerEffectResult, OwnerInput, OwnerRequest,
};
use rcdc::record::replay::replay;
use rcdc::record::{Recorder, Recording, RecordingControl, RecordingSettings, Role};
use rcdc_state::model::{OperationStatus, TaskStatus};
use rcdc_state::{GlobalState, PatchOutcome, TableId, Ts};
use std::sync::Arc;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A scripted cluster around one owner at a time.
struct Sim {
    kv: BTreeMap<String, Vec<u8>>,
    seen: BTreeMap<String, Vec<u8>>,
    live: GlobalState,
    owner: Owner,
    rec: Recorder,
    now: u64,
    tables: BTreeSet<i64>,
    ddl: Vec<u64>,
    gc_min: u64,
    results: Vec<OwnerEffectResult>,
    requests: Vec<OwnerRequest>,
    dir: PathBuf,
    name: String,
    incarnation: u32,
    ticks: usize,
    late: Option<Late>,
}

/// A second recording of the same run, switched on at tick `at` (as the HTTP API would):
/// its first file starts mid-life with a `resume` line.
struct Late {
    control: Arc<RecordingControl>,
    rec: Recording,
    at: usize,
}

fn config() -> OwnerConfig {
    OwnerConfig {
        addr: "owner:8300".into(),
        flush_interval_ms: 0,
        ..Default::default()
    }
}

impl Sim {
    fn new(dir: &Path, name: &str, captures: &[&str], tables: &[i64]) -> Self {
        let rec = Recorder::create(
            dir,
            Role::Owner,
            &format!("{name}-1"),
            "/tidb/cdc",
            &config(),
        )
        .expect("recorder");
        let mut s = Self {
            kv: BTreeMap::new(),
            seen: BTreeMap::new(),
            live: GlobalState::default(),
            owner: Owner::new(config()),
            rec,
            now: 1_000_000,
            tables: tables.iter().copied().collect(),
            ddl: vec![],
            gc_min: 0,
            results: vec![],
            requests: vec![],
            dir: dir.to_owned(),
            name: name.into(),
            incarnation: 1,
            ticks: 0,
            late: None,
        };
        for c in captures {
            s.add_capture(c);
        }
        s.kv.insert(
            "/tidb/cdc/changefeed/info/cf".into(),
            br#"{"sink-uri":"blackhole://","opts":{},"create-time":"2023-01-01T00:00:00Z","start-ts":1000,"target-ts":0,"admin-job-type":0,"sort-engine":"unified","config":{},"state":"normal","history":null,"error":null}"#.to_vec(),
        );
        s
    }

    fn add_capture(&mut self, c: &str) {
        self.kv.insert(
            format!("/tidb/cdc/capture/{c}"),
            format!(r#"{{"id":"{c}","address":"{c}:8300","version":"v0.1.0"}}"#).into_bytes(),
        );
    }

    /// A capture's session ended: its capture key is gone (its task keys stay, as in etcd).
    fn crash_capture(&mut self, c: &str) {
        self.kv.remove(&format!("/tidb/cdc/capture/{c}"));
    }

    /// A new owner takes over: a fresh `Owner`, a new recording starting with every key.
    fn change_owner(&mut self) {
        self.incarnation += 1;
        let next = Recorder::create(
            &self.dir,
            Role::Owner,
            &format!("{}-{}", self.name, self.incarnation),
            "/tidb/cdc",
            &config(),
        )
        .expect("recorder");
        std::mem::replace(&mut self.rec, next).end("the owner changed");
        if let Some(l) = self.late.as_mut() {
            // A new owner incarnation: a new recording (the old one ends on drop).
            l.rec = late_recording(&l.control, &self.name);
        }
        self.owner = Owner::new(config());
        self.live = GlobalState::default();
        self.seen.clear();
        self.results.clear();
    }

    /// One owner tick as the worker runs it: apply (and record) what changed, tick, record,
    /// apply the patches, answer effects for the next tick.
    fn tick(&mut self) {
        self.now += 200;
        let mut batch = vec![];
        for (k, v) in &self.kv {
            if self.seen.get(k) != Some(v) {
                batch.push((k.clone(), Some(v.clone())));
            }
        }
        for k in self.seen.keys().filter(|k| !self.kv.contains_key(*k)) {
            batch.push((k.clone(), None));
        }
        if !batch.is_empty() {
            self.rec.updates(&batch);
        }
        if let Some(l) = self.late.as_mut() {
            if self.ticks == l.at {
                l.control.set(true, None).expect("switch on");
            }
            let owner = &self.owner;
            l.rec
                .before_tick(&batch, &self.kv, &|| serde_json::to_value(owner));
        }
        self.ticks += 1;
        for (k, v) in &batch {
            self.live.apply(k, v.as_deref());
        }
        self.seen = self.kv.clone();
        let input = OwnerInput {
            now_ms: self.now,
            requests: std::mem::take(&mut self.requests),
            results: std::mem::take(&mut self.results),
            dropped: vec![],
        };
        let out = self.owner.tick(&self.live, &input);
        self.rec.tick(&input, &out);
        if let Some(l) = self.late.as_mut() {
            l.rec.after_tick(&input, &out);
        }
        self.live.clear_changes();
        for g in &out.groups {
            for p in &g.patches {
                match p.apply(self.kv.get(&p.key).map(Vec::as_slice)) {
                    Ok(PatchOutcome::Put(v)) => {
                        self.kv.insert(p.key.clone(), v);
                    }
                    Ok(PatchOutcome::Delete) => {
                        self.kv.remove(&p.key);
                    }
                    _ => {}
                }
            }
        }
        for e in out.effects {
            match e {
                OwnerEffect::ListTables { changefeed, .. } => {
                    self.results.push(OwnerEffectResult::Tables {
                        changefeed,
                        tables: self.tables.iter().map(|t| TableId(*t)).collect(),
                    })
                }
                OwnerEffect::FetchDdl { changefeed, after } => {
                    self.results.push(OwnerEffectResult::Ddl {
                        changefeed,
                        after,
                        next: self.ddl.iter().find(|d| **d > after.0).map(|d| Ts(*d)),
                        upto: Ts(1_000_000_000),
                    })
                }
                OwnerEffect::UpdateGcSafePoint(u) => {
                    self.results
                        .push(OwnerEffectResult::GcSafePoint(SafePointResult::Updated {
                            upstream: u.upstream,
                            min_safe_point: Ts(self.gc_min),
                        }))
                }
                OwnerEffect::WriteSinkCheckpoint { .. } => {}
            }
        }
    }

    /// Processors of live captures: finish every operation (drop removed tables) and report
    /// positions at `ts`.
    fn processors(&mut self, ts: u64) {
        let keys: Vec<String> = self
            .kv
            .keys()
            .filter(|k| k.starts_with("/tidb/cdc/task/status/"))
            .cloned()
            .collect();
        for k in keys {
            let capture = k["/tidb/cdc/task/status/".len()..]
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            if !self
                .kv
                .contains_key(&format!("/tidb/cdc/capture/{capture}"))
            {
                continue; // a crashed capture does nothing
            }
            let Ok(mut s) = serde_json::from_slice::<TaskStatus>(&self.kv[&k]) else {
                continue;
            };
            for op in s.operation.iter_mut().flat_map(|o| o.values_mut()) {
                op.status = OperationStatus::Finished;
                op.done = true;
            }
            self.kv
                .insert(k.clone(), serde_json::to_vec(&s).expect("json"));
            self.kv.insert(
                format!("/tidb/cdc/task/position/{capture}/cf"),
                format!(r#"{{"checkpoint-ts":{ts},"resolved-ts":{ts},"count":0,"error":null}}"#)
                    .into_bytes(),
            );
        }
    }

    fn run(&mut self, ticks: usize, ts: u64) {
        for _ in 0..ticks {
            self.tick();
            self.processors(ts);
        }
    }
}

type Scenario = fn(&mut Sim);

fn scenarios() -> Vec<(&'static str, &'static [&'static str], Scenario)> {
    vec![
        ("create", &["a", "b"], |s| s.run(8, 5_000)),
        ("scale-out", &["a", "b"], |s| {
            s.run(8, 5_000);
            s.add_capture("c");
            s.run(10, 6_000);
        }),
        ("capture-crash", &["a", "b", "c"], |s| {
            s.run(8, 5_000);
            s.crash_capture("b");
            s.run(10, 6_000);
        }),
        ("owner-change", &["a", "b"], |s| {
            s.run(8, 5_000);
            s.change_owner();
            s.run(8, 6_000);
        }),
        ("pause-resume", &["a", "b"], |s| {
            s.run(8, 5_000);
            s.requests.push(OwnerRequest::Admin(
                "cf".into(),
                rcdc::owner::feed_state::AdminJob::Pause,
            ));
            s.run(6, 5_000);
            s.requests.push(OwnerRequest::Admin(
                "cf".into(),
                rcdc::owner::feed_state::AdminJob::Resume,
            ));
            s.run(10, 7_000);
        }),
        ("remove", &["a", "b"], |s| {
            s.run(8, 5_000);
            s.requests.push(OwnerRequest::Admin(
                "cf".into(),
                rcdc::owner::feed_state::AdminJob::Remove,
            ));
            s.run(6, 5_000);
        }),
        ("ddl", &["a", "b"], |s| {
            s.ddl = vec![6_000]; // at 6,000: table 2 dropped, table 7 created
            s.run(8, 5_000);
            s.tables.remove(&2);
            s.tables.insert(7);
            s.run(16, 8_000); // held at 5,999 until the table set after the DDL is in place
        }),
        ("lost-snapshot", &["a", "b"], |s| {
            s.run(8, 5_000);
            s.gc_min = 9_000; // GC passed the checkpoint
            s.now += 120_000; // the next GC push is due
            s.run(6, 5_000);
        }),
    ]
}

fn produce(dir: &Path) {
    for (name, captures, script) in scenarios() {
        let mut sim = Sim::new(dir, name, captures, &[1, 2, 3, 4]);
        script(&mut sim);
    }
}

fn late_recording(control: &Arc<RecordingControl>, name: &str) -> Recording {
    Recording::new(
        control.clone(),
        Role::Owner,
        &format!("late-{name}"),
        "/tidb/cdc",
        &config(),
    )
}

/// Every scenario, recorded a second time from a switch flipped mid-run, replays from its
/// `resume` line: the owner's memory (scheduler, DDL barrier, GC, backoff, sweep) survives
/// serialization exactly.
#[test]
fn recordings_switched_on_mid_run_resume_and_replay() {
    // Every scenario runs at least 8 ticks before anything happens.
    for at in [1, 3, 5, 7] {
        let dir = tempfile::tempdir().expect("dir");
        for (name, captures, script) in scenarios() {
            let mut sim = Sim::new(dir.path(), name, captures, &[1, 2, 3, 4]);
            let control = RecordingControl::new(RecordingSettings {
                dir: Some(dir.path().join("late")),
                ..Default::default()
            });
            sim.late = Some(Late {
                rec: late_recording(&control, name),
                control,
                at,
            });
            script(&mut sim);
        }
        let mut resumed = 0;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("late"))
            .expect("late recordings")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        assert!(files.len() >= scenarios().len(), "{files:?}");
        for f in files {
            let report = replay(&f, None).unwrap_or_else(|e| panic!("switched on at {at}: {e}"));
            assert!(report.ticks > 0, "{}", f.display());
            resumed += usize::from(report.resumed);
        }
        assert_eq!(
            resumed,
            scenarios().len(),
            "one resumed file per scenario (at {at})"
        );
    }
}

/// Regenerates `tests/golden/` when `RCDC_REGENERATE_GOLDEN=1`; otherwise checks that the
/// committed recordings are exactly what the scripts produce today.
#[test]
fn golden_recordings_are_what_the_scripts_produce() {
    let fresh = tempfile::tempdir().expect("dir");
    produce(fresh.path());
    let dir = golden_dir();
    if std::env::var_os("RCDC_REGENERATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("golden dir");
        for e in std::fs::read_dir(fresh.path()).expect("read") {
            let p = e.expect("entry").path();
            std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(fresh.path())
        .expect("read")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 9, "{names:?}");
    for n in names {
        let want = std::fs::read_to_string(dir.join(&n)).unwrap_or_else(|e| {
            panic!("{n}: {e}; regenerate with RCDC_REGENERATE_GOLDEN=1 cargo test --test golden")
        });
        let got = std::fs::read_to_string(fresh.path().join(&n)).expect("fresh");
        assert!(
            want == got,
            "{n} differs from what its script produces; regenerate and review"
        );
    }
}

/// Every committed recording replays exactly; its decisions are snapshotted.
#[test]
fn golden_recordings_replay_and_their_decisions_match_the_snapshots() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "{files:?}");
    for f in files {
        let mut dump = Vec::new();
        let report = replay(&f, Some(&mut dump)).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.ticks > 0);
        let name = f.file_stem().expect("stem").to_string_lossy().into_owned();
        insta::assert_snapshot!(name, String::from_utf8_lossy(&dump));
    }
}
