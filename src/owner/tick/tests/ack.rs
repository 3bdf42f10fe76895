//! The commit acknowledgement (target-design §3, issue #11): one-shot inputs are consumed only
//! when the group carrying their consequence committed; dropped groups re-queue them.

use super::*;

fn pause() -> OwnerRequest {
    OwnerRequest::Admin(CF.into(), AdminJob::Pause)
}

fn is_state_group(g: &PatchGroup) -> bool {
    g.label.ends_with("/state")
}

fn feed_state(c: &Cluster) -> Option<FeedState> {
    c.state()
        .changefeed(&CF.into())?
        .info
        .as_ref()
        .map(|i| i.state)
}

#[test]
fn a_pause_is_acknowledged_only_after_its_group_committed() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2, 3]);
    c.tick_with(OwnerInput {
        requests: vec![pause()],
        ..Default::default()
    });
    assert_eq!(feed_state(&c), Some(FeedState::Stopped));
    assert!(c.acknowledged.is_empty(), "not before the commit is known");
    c.tick();
    assert_eq!(c.acknowledged, vec![pause()]);
    assert!(c.rejected.is_empty());
}

#[test]
fn a_dropped_pause_is_decided_again_and_acknowledged_when_it_lands() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2, 3]);
    c.drop_if = Some(is_state_group);
    c.tick_with(OwnerInput {
        requests: vec![pause()],
        ..Default::default()
    });
    c.tick();
    c.tick();
    assert_eq!(feed_state(&c), Some(FeedState::Normal), "never landed");
    assert!(c.acknowledged.is_empty() && c.rejected.is_empty());
    c.drop_if = None;
    c.tick();
    assert_eq!(feed_state(&c), Some(FeedState::Stopped));
    c.tick();
    assert_eq!(c.acknowledged, vec![pause()], "exactly once");
    assert!(
        !c.kv.keys().any(|k| k.starts_with("/tidb/cdc/task/")),
        "and its processors stopped"
    );
}

#[test]
fn a_pause_whose_outcome_was_lost_but_landed_is_acknowledged_not_refused() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2, 3]);
    c.drop_if = Some(is_state_group);
    c.landed = true;
    c.tick_with(OwnerInput {
        requests: vec![pause()],
        ..Default::default()
    });
    c.drop_if = None;
    c.tick();
    c.tick();
    assert_eq!(feed_state(&c), Some(FeedState::Stopped));
    assert_eq!(c.acknowledged, vec![pause()]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
}

#[test]
fn a_remove_whose_outcome_was_lost_but_landed_is_acknowledged() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2, 3]);
    let remove = OwnerRequest::Admin(CF.into(), AdminJob::Remove);
    c.drop_if = Some(is_state_group);
    c.landed = true;
    c.tick_with(OwnerInput {
        requests: vec![remove.clone()],
        ..Default::default()
    });
    c.drop_if = None;
    for _ in 0..3 {
        c.tick();
    }
    assert_eq!(c.acknowledged, vec![remove]);
    assert!(c
        .kv
        .keys()
        .all(|k| k.starts_with("/tidb/cdc/capture/") || k == "/tidb/cdc/job/cf"));
}

#[test]
fn an_owner_error_whose_group_is_dropped_is_recorded_later() {
    let mut c = Cluster::new(&["a"]);
    c.run_until_settled(2_000, &[1, 2]);
    c.drop_if = Some(is_state_group);
    c.tick_with(OwnerInput {
        results: vec![OwnerEffectResult::SinkCheckpointFailed {
            changefeed: CF.into(),
            error: "disk full".into(),
        }],
        ..Default::default()
    });
    c.tick();
    assert_eq!(feed_state(&c), Some(FeedState::Normal), "dropped twice");
    c.drop_if = None;
    c.tick();
    let state = c.state();
    let info = state
        .changefeed(&CF.into())
        .and_then(|cf| cf.info.clone())
        .expect("info");
    assert_eq!(info.state, FeedState::Error);
    let error = info.error.expect("the error is recorded");
    assert!(error.message.contains("disk full"), "{error:?}");
    assert_eq!(info.history.map(|h| h.len()), Some(1), "recorded once");
}

#[test]
fn the_sink_checkpoint_follows_only_a_committed_status_write() {
    let mut c = Cluster::new(&["a"]);
    c.run_until_settled(2_000, &[1, 2]);
    c.effects.clear();
    c.drop_if = Some(|g| g.label.ends_with("/progress"));
    c.processors_ack(2_500);
    c.tick();
    c.tick();
    let sink_writes = |c: &Cluster| {
        c.effects
            .iter()
            .filter(|e| matches!(e, OwnerEffect::WriteSinkCheckpoint { .. }))
            .count()
    };
    assert_eq!(sink_writes(&c), 0, "no sink checkpoint past etcd's");
    c.drop_if = None;
    c.tick();
    assert_eq!(sink_writes(&c), 0, "not in the tick that writes the status");
    c.tick();
    assert!(c.effects.contains(&OwnerEffect::WriteSinkCheckpoint {
        changefeed: CF.into(),
        checkpoint: Ts(2_500),
    }));
}

#[test]
fn a_move_is_acknowledged_after_its_group_and_requeued_when_dropped() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2, 3, 4]);
    let holder = c.holders()[&TableId(1)][0].clone();
    let target = if holder == "a" { "b" } else { "a" };
    let request = OwnerRequest::Schedule(
        CF.into(),
        ScheduleRequest::MoveTable {
            table: TableId(1),
            target: CaptureId::new(target),
        },
    );
    c.drop_if = Some(|g| g.label.contains("/schedule"));
    c.tick_with(OwnerInput {
        requests: vec![request.clone()],
        ..Default::default()
    });
    c.tick();
    assert!(c.acknowledged.is_empty() && c.rejected.is_empty());
    c.drop_if = None;
    c.tick();
    c.tick();
    assert_eq!(c.acknowledged, vec![request]);
    c.run_until_settled(3_000, &[1, 2, 3, 4]);
    assert_eq!(c.holders()[&TableId(1)], vec![target.to_owned()]);
}

/// Pause and remove with the changefeed's task keys on 150 captures: every group fits one
/// txn (126 keys at most), and both complete.
#[test]
fn pause_and_remove_over_150_captures_fit_etcd_txns() {
    let names: Vec<String> = (0..150).map(|i| format!("c{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut c = Cluster::new(&refs);
    let tables: Vec<i64> = (1..=300).collect();
    c.run_until_settled(2_000, &tables);
    assert_eq!(c.holders().len(), 300);
    let check = |out: &OwnerOutput| {
        for g in &out.groups {
            let keys: BTreeSet<&str> = g.patches.iter().map(|p| p.key.as_str()).collect();
            assert!(keys.len() <= 126, "{} touches {} keys", g.label, keys.len());
        }
    };
    for job in [AdminJob::Pause, AdminJob::Remove] {
        let state = c.state();
        let out = c.owner.tick(
            &state,
            &OwnerInput {
                now_ms: c.now + 100,
                requests: vec![OwnerRequest::Admin(CF.into(), job)],
                ..Default::default()
            },
        );
        check(&out);
        // Start over from a fresh owner fed the same way, through the harness.
        c.owner = Owner::new(c.owner.config.clone());
        c.tick_with(OwnerInput {
            requests: vec![OwnerRequest::Admin(CF.into(), job)],
            ..Default::default()
        });
        c.tick();
        assert!(
            !c.kv.keys().any(|k| k.starts_with("/tidb/cdc/task/")),
            "{job:?}: every task key deleted"
        );
        if job == AdminJob::Pause {
            assert_eq!(feed_state(&c), Some(FeedState::Stopped));
            c.tick_with(OwnerInput {
                requests: vec![OwnerRequest::Admin(CF.into(), AdminJob::Resume)],
                ..Default::default()
            });
            c.run_until_settled(3_000, &tables);
        }
    }
    assert!(c
        .kv
        .keys()
        .all(|k| k.starts_with("/tidb/cdc/capture/") || k == "/tidb/cdc/job/cf"));
}

#[test]
fn a_table_held_by_two_captures_stops_the_changefeed_with_a_visible_error() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2]);
    // Corrupt the assignment: table 1 on both captures.
    for capture in ["a", "b"] {
        let key = format!("/tidb/cdc/task/status/{capture}/{CF}");
        let mut s: TaskStatus = serde_json::from_slice(&c.kv[&key]).expect("status");
        s.tables.get_or_insert_with(Default::default).insert(
            TableId(1),
            serde_json::from_str(r#"{"start-ts":1000,"mark-table-id":0}"#).expect("json"),
        );
        c.kv.insert(key, serde_json::to_vec(&s).expect("json"));
    }
    for _ in 0..3 {
        c.tick();
    }
    let info = c
        .state()
        .changefeed(&CF.into())
        .and_then(|cf| cf.info.clone())
        .expect("info");
    assert_eq!(info.state, FeedState::Error);
    let error = info.error.expect("visible error");
    assert_eq!(error.code, "CDC:ErrTableListenReplicated");
    // After the backoff it runs again from clean task keys, one holder per table.
    c.now += 5_000;
    c.run_until_settled(3_000, &[1, 2]);
    assert!(c.holders().values().all(|h| h.len() == 1));
    assert_eq!(feed_state(&c), Some(FeedState::Normal));
}

#[test]
fn an_undecodable_task_status_stops_the_changefeed_with_a_visible_error() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2]);
    let key = format!("/tidb/cdc/task/status/a/{CF}");
    c.kv.insert(key.clone(), b"{not json".to_vec());
    for _ in 0..3 {
        c.tick();
    }
    let info = c
        .state()
        .changefeed(&CF.into())
        .and_then(|cf| cf.info.clone())
        .expect("info");
    assert_eq!(info.state, FeedState::Error);
    let error = info.error.expect("visible error");
    assert_eq!(error.code, "CDC:ErrDecodeFailed");
    assert!(error.message.contains(&key), "{error:?}");
    assert!(!c.kv.contains_key(&key), "the corrupt key is deleted");
    c.now += 5_000;
    c.run_until_settled(3_000, &[1, 2]);
    assert_eq!(feed_state(&c), Some(FeedState::Normal));
    assert_eq!(c.holders().len(), 2);
}

#[test]
fn a_remove_that_landed_unseen_is_acknowledged_on_an_everything_tick_too() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2, 3]);
    let remove = OwnerRequest::Admin(CF.into(), AdminJob::Remove);
    c.drop_if = Some(is_state_group);
    c.landed = true;
    c.tick_with(OwnerInput {
        requests: vec![remove.clone()],
        ..Default::default()
    });
    c.drop_if = None;
    // A GC answer makes the next tick visit every changefeed the state has (not this one).
    c.tick_with(OwnerInput {
        results: vec![OwnerEffectResult::GcSafePoint(SafePointResult::Updated {
            upstream: String::new(),
            min_safe_point: Ts(1),
        })],
        ..Default::default()
    });
    c.tick();
    assert_eq!(c.acknowledged, vec![remove]);
}

#[test]
fn schedule_requests_for_a_changefeed_that_does_not_run_are_refused() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until_settled(2_000, &[1, 2, 3]);
    c.tick_with(OwnerInput {
        requests: vec![pause()],
        ..Default::default()
    });
    c.tick();
    let rebalance = OwnerRequest::Schedule(CF.into(), ScheduleRequest::Rebalance);
    c.tick_with(OwnerInput {
        requests: vec![rebalance.clone()],
        ..Default::default()
    });
    c.tick();
    assert!(
        c.rejected
            .iter()
            .any(|(r, why)| *r == rebalance && why.contains("not running")),
        "{:?}",
        c.rejected
    );
}
