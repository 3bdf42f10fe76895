//! Table-driven tests of the feed state machine. A tiny key/value "etcd" applies the patches
//! and rebuilds the snapshot, so each step sees what the previous one wrote (like TiCDC's
//! ReactorStateTester, but pure).

use std::collections::BTreeMap;

use rcdc_state::model::{AdminJobType, FeedState};
use rcdc_state::{GlobalState, PatchOutcome};

use super::*;

const CF: &str = "cf";

struct Tester {
    kv: BTreeMap<String, Vec<u8>>,
    layout: KeyLayout,
}

impl Tester {
    fn new(state: &str) -> Self {
        let layout = KeyLayout::default();
        let admin: FeedState = serde_json::from_str(&format!("\"{state}\"")).expect("state");
        let admin = admin.admin_job_type().code();
        let mut kv = BTreeMap::new();
        kv.insert(
            layout.info(&CF.into()),
            format!(r#"{{"sink-uri":"blackhole://","start-ts":5,"state":"{state}","admin-job-type":{admin},"history":null,"error":null}}"#).into_bytes(),
        );
        kv.insert(
            layout.status(&CF.into()),
            format!(r#"{{"resolved-ts":9,"checkpoint-ts":8,"admin-job-type":{admin}}}"#)
                .into_bytes(),
        );
        kv.insert("/tidb/cdc/task/status/c1/cf".into(), br#"{"tables":{"1":{"start-ts":5,"mark-table-id":0}},"operation":null,"admin-job-type":0}"#.to_vec());
        kv.insert(
            "/tidb/cdc/task/position/c1/cf".into(),
            br#"{"checkpoint-ts":8,"resolved-ts":9,"count":0,"error":null}"#.to_vec(),
        );
        Self { kv, layout }
    }
    fn processor_error(&mut self, code: &str) {
        let v = format!(
            r#"{{"checkpoint-ts":8,"resolved-ts":9,"count":0,"error":{{"addr":"a","code":"{code}","message":"boom"}}}}"#
        );
        self.kv
            .insert("/tidb/cdc/task/position/c1/cf".into(), v.into_bytes());
    }
    fn state(&self) -> GlobalState {
        let mut s = GlobalState::default();
        for (k, v) in &self.kv {
            s.apply(k, Some(v));
        }
        s
    }
    fn tick(&mut self, m: &mut FeedStateMachine, now_ms: u64) -> FeedDecision {
        let state = self.state();
        let empty = ChangefeedState::default();
        let cf = state.changefeed(&CF.into()).unwrap_or(&empty);
        let d = m.tick(&self.layout, cf, now_ms);
        m.confirm(true);
        for p in d.patches.iter().chain(&d.cleanup) {
            match p
                .apply(self.kv.get(&p.key).map(Vec::as_slice))
                .expect("patch applies")
            {
                PatchOutcome::Unchanged => {}
                PatchOutcome::Put(v) => {
                    self.kv.insert(p.key.clone(), v);
                }
                PatchOutcome::Delete => {
                    self.kv.remove(&p.key);
                }
            }
        }
        d
    }
    fn feed_state(&self) -> Option<FeedState> {
        self.state()
            .changefeed(&CF.into())?
            .info
            .as_ref()
            .map(|i| i.state)
    }
    fn status_admin(&self) -> Option<AdminJobType> {
        self.state()
            .changefeed(&CF.into())?
            .status
            .as_ref()
            .map(|s| s.admin_job_type)
    }
    fn has_task_keys(&self) -> bool {
        self.kv.keys().any(|k| k.starts_with("/tidb/cdc/task/"))
    }
}

fn machine() -> FeedStateMachine {
    FeedStateMachine::new(CF.into(), FeedStateConfig::default())
}

#[test]
fn admin_jobs_follow_the_allowed_transitions() {
    use AdminJob::*;
    use FeedState::*;
    // (from, job, expected state after, rejected?)
    let cases = [
        (Normal, Pause, Stopped, false),
        (Error, Pause, Stopped, false),
        (Stopped, Pause, Stopped, true),
        (Failed, Pause, Failed, true),
        (Finished, Pause, Finished, true),
        (Stopped, Resume, Normal, false),
        (Error, Resume, Normal, false),
        (Failed, Resume, Normal, false),
        (Finished, Resume, Normal, false),
        (Normal, Resume, Normal, true),
    ];
    for (from, job, to, rejected) in cases {
        let mut t = Tester::new(from.as_str());
        let mut m = machine();
        m.push_admin_job(job);
        let d = t.tick(&mut m, 1_000);
        assert_eq!(t.feed_state(), Some(to), "{from} + {job:?}");
        assert_eq!(
            t.status_admin(),
            Some(to.admin_job_type()),
            "{from} + {job:?}: status mirrors the state"
        );
        assert_eq!(
            !d.rejected.is_empty(),
            rejected,
            "{from} + {job:?}: {:?}",
            d.rejected
        );
        assert_eq!(d.should_run, to == Normal, "{from} + {job:?}");
        // The task keys go on the visit after the state change committed.
        t.tick(&mut m, 1_100);
        assert_eq!(
            t.has_task_keys(),
            to == Normal,
            "{from} + {job:?}: processors stop when not running"
        );
    }
}

#[test]
fn a_rejected_job_says_why() {
    let mut t = Tester::new("stopped");
    let mut m = machine();
    m.push_admin_job(AdminJob::Pause);
    let d = t.tick(&mut m, 0);
    assert_eq!(
        d.rejected,
        vec![(
            AdminJob::Pause,
            "changefeed cf is stopped; cannot pause".to_owned()
        )]
    );
}

#[test]
fn remove_deletes_every_key_from_any_state() {
    for from in ["normal", "error", "failed", "stopped", "finished"] {
        let mut t = Tester::new(from);
        let mut m = machine();
        m.push_admin_job(AdminJob::Remove);
        t.tick(&mut m, 0);
        // The info goes and the status stays as the removed changefeed's record; the owner
        // deletes the task keys of a changefeed without info on its next visit (see
        // `Owner::tick`).
        assert!(
            t.kv.keys()
                .all(|k| k.starts_with("/tidb/cdc/task/") || k == "/tidb/cdc/job/cf"),
            "{from}: {:?}",
            t.kv.keys().collect::<Vec<_>>()
        );
        let record: serde_json::Value =
            serde_json::from_slice(&t.kv["/tidb/cdc/job/cf"]).expect("status");
        assert_eq!(record["admin-job-type"], 3, "{from}: {record}");
    }
}

#[test]
fn errors_back_off_exponentially_before_reinitialising() {
    let mut t = Tester::new("normal");
    let mut m = machine();
    let mut now = 10_000;
    let mut delays = Vec::new();
    for _ in 0..8 {
        t.processor_error("CDC:ErrProcessorUnknown");
        let d = t.tick(&mut m, now);
        assert!(!d.should_run);
        assert_eq!(t.feed_state(), Some(FeedState::Error));
        // Not before the delay...
        let waited = m.timing.retry_at_ms.expect("retry scheduled") - now;
        delays.push(waited);
        assert!(!t.tick(&mut m, now + waited - 1).should_run);
        assert!(
            !t.has_task_keys(),
            "processors are stopped during the backoff"
        );
        // ...then again.
        now += waited;
        assert!(t.tick(&mut m, now).should_run);
        assert_eq!(t.feed_state(), Some(FeedState::Normal));
    }
    assert_eq!(
        delays,
        vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
    );
}

#[test]
fn the_error_is_recorded_with_a_trimmed_history_and_cleared_from_the_position() {
    let mut t = Tester::new("normal");
    let mut m = machine();
    t.processor_error("CDC:ErrProcessorUnknown");
    t.tick(&mut m, 500_000);
    let s = t.state();
    let cf = s.changefeed(&CF.into()).expect("cf");
    let info = cf.info.as_ref().expect("info");
    assert_eq!(
        info.error.as_ref().map(|e| e.code.as_str()),
        Some("CDC:ErrProcessorUnknown")
    );
    assert_eq!(info.history, Some(vec![500_000]));
}

#[test]
fn a_fast_fail_error_fails_at_once() {
    let mut t = Tester::new("normal");
    let mut m = machine();
    t.processor_error("CDC:ErrSnapshotLostByGC");
    assert!(!t.tick(&mut m, 0).should_run);
    assert_eq!(t.feed_state(), Some(FeedState::Failed));
    assert_eq!(t.status_admin(), Some(AdminJobType::Stop));
    // And it stays failed: no retry.
    assert!(!t.tick(&mut m, 10_000_000).should_run);
    assert_eq!(t.feed_state(), Some(FeedState::Failed));
}

#[test]
fn failing_longer_than_max_retry_turns_failed() {
    let mut t = Tester::new("normal");
    let mut m = FeedStateMachine::new(
        CF.into(),
        FeedStateConfig {
            max_retry_ms: 5_000,
            ..Default::default()
        },
    );
    let mut now = 0;
    while t.feed_state() != Some(FeedState::Failed) {
        t.processor_error("CDC:ErrProcessorUnknown");
        t.tick(&mut m, now);
        now += m.backoff_ms();
        t.tick(&mut m, now);
        assert!(now < 60_000, "must fail within the configured time");
    }
    assert!(now >= 5_000);
}

#[test]
fn a_healthy_period_resets_the_backoff() {
    let mut t = Tester::new("normal");
    let mut m = machine();
    for now in [0, 1_000, 3_000] {
        t.processor_error("CDC:ErrProcessorUnknown");
        t.tick(&mut m, now);
        let retry = m.timing.retry_at_ms.unwrap_or(now);
        t.tick(&mut m, retry);
    }
    assert!(m.backoff_ms() > 1_000);
    t.tick(&mut m, 1_000_000); // healthy since the last retry
    t.tick(&mut m, 1_000_000 + 10 * 60_000);
    assert_eq!(m.backoff_ms(), 1_000);
}

#[test]
fn bug_8_12_a_stopped_feed_never_turns_error_from_stale_errors() {
    let mut t = Tester::new("stopped");
    let mut m = machine();
    m.report_error(RunningError {
        code: "CDC:ErrGCTTLExceeded".into(),
        ..Default::default()
    });
    t.processor_error("CDC:ErrProcessorUnknown");
    t.tick(&mut m, 0);
    assert_eq!(t.feed_state(), Some(FeedState::Stopped));
    m.push_admin_job(AdminJob::Remove);
    t.tick(&mut m, 1);
    let left: Vec<&String> = t.kv.keys().collect();
    assert_eq!(
        left,
        ["/tidb/cdc/job/cf"],
        "removal is not blocked (the record stays)"
    );
}

#[test]
fn reaching_the_target_finishes_the_feed() {
    let mut t = Tester::new("normal");
    let mut m = machine();
    m.mark_finished();
    assert!(!t.tick(&mut m, 0).should_run);
    assert_eq!(t.feed_state(), Some(FeedState::Finished));
    assert_eq!(t.status_admin(), Some(AdminJobType::Finish));
    t.tick(&mut m, 100);
    assert!(!t.has_task_keys());
}

#[test]
fn a_broken_or_absent_changefeed_is_left_alone() {
    let mut t = Tester::new("normal");
    t.kv.insert(t.layout.info(&CF.into()), b"{corrupt".to_vec());
    let mut m = machine();
    m.push_admin_job(AdminJob::Pause);
    let d = t.tick(&mut m, 0);
    assert!(d.patches.is_empty() && !d.should_run);
    assert!(t.has_task_keys(), "nothing deleted on a partial view");
    let d = machine().tick(&KeyLayout::default(), &ChangefeedState::default(), 0);
    assert_eq!(d, FeedDecision::default());
}

/// Recordings made before admin jobs carried a retry flag stored bare jobs; they still resume.
#[test]
fn owner_memory_from_before_retries_still_decodes() {
    let old = serde_json::json!({
        "id": "cf",
        "config": FeedStateConfig::default(),
        "jobs": ["Pause", "Resume"],
        "owner_errors": [],
        "finish": false,
        "backoff_ms": 1000,
        "retry_at_ms": null,
        "failing_since_ms": null,
        "healthy_since_ms": null
    });
    let mut m: FeedStateMachine = serde_json::from_value(old).expect("old memory decodes");
    let mut t = Tester::new("normal");
    t.tick(&mut m, 0);
    assert_eq!(
        t.feed_state(),
        Some(FeedState::Stopped),
        "the queued pause runs"
    );
}
