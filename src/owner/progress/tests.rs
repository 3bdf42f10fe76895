use rcdc_state::GlobalState;

use super::*;

fn cf(keys: &[(&str, &str)]) -> ChangefeedState {
    let mut s = GlobalState::default();
    for (k, v) in keys {
        s.apply(&format!("/tidb/cdc/{k}"), Some(v.as_bytes()));
    }
    s.changefeed(&"cf".into()).cloned().unwrap_or_default()
}

const HOLDS_1: &str =
    r#"{"tables":{"1":{"start-ts":1,"mark-table-id":0}},"operation":null,"admin-job-type":0}"#;

fn pos(cp: u64, rs: u64) -> String {
    format!(r#"{{"checkpoint-ts":{cp},"resolved-ts":{rs},"count":0,"error":null}}"#)
}

#[test]
fn resolved_and_checkpoint_are_minimums_over_captures_and_the_barrier() {
    let c = cf(&[
        (
            "job/cf",
            r#"{"resolved-ts":0,"checkpoint-ts":0,"admin-job-type":0}"#,
        ),
        ("task/status/c1/cf", HOLDS_1),
        ("task/status/c2/cf", HOLDS_1),
        ("task/position/c1/cf", &pos(100, 150)),
        ("task/position/c2/cf", &pos(120, 140)),
    ]);
    assert_eq!(
        compute(&c, Ts(1_000)),
        Some(Progress {
            resolved_ts: Ts(140),
            checkpoint_ts: Ts(100)
        })
    );
    assert_eq!(
        compute(&c, Ts(130)),
        Some(Progress {
            resolved_ts: Ts(130),
            checkpoint_ts: Ts(100)
        })
    );
}

#[test]
fn an_operation_in_flight_caps_the_resolved_ts() {
    let c = cf(&[
        (
            "task/status/c1/cf",
            r#"{"tables":{"1":{"start-ts":90,"mark-table-id":0}},"operation":{"1":{"done":false,"delete":false,"boundary_ts":110}},"admin-job-type":0}"#,
        ),
        ("task/position/c1/cf", &pos(100, 150)),
    ]);
    assert_eq!(compute(&c, Ts::MAX).map(|p| p.resolved_ts), Some(Ts(110)));
}

#[test]
fn unknown_until_every_capture_holding_tables_has_reported() {
    let c = cf(&[
        ("task/status/c1/cf", HOLDS_1),
        ("task/status/c2/cf", HOLDS_1),
        ("task/position/c1/cf", &pos(100, 150)),
    ]);
    assert_eq!(compute(&c, Ts::MAX), None);
    // A capture with an empty status and no position does not block progress.
    let c = cf(&[
        ("task/status/c1/cf", HOLDS_1),
        (
            "task/status/c2/cf",
            r#"{"tables":null,"operation":null,"admin-job-type":0}"#,
        ),
        ("task/position/c1/cf", &pos(100, 150)),
    ]);
    assert!(compute(&c, Ts::MAX).is_some());
}

/// tests/scenarios/move_table.rs found this: a capture whose last table moved away keeps its
/// last position, which no processor advances any more.
#[test]
fn a_capture_holding_nothing_does_not_hold_progress_back() {
    let c = cf(&[
        ("task/status/c1/cf", HOLDS_1),
        (
            "task/status/c2/cf",
            r#"{"tables":{},"operation":{},"admin-job-type":0}"#,
        ),
        ("task/position/c1/cf", &pos(100, 150)),
        ("task/position/c2/cf", &pos(40, 40)),
    ]);
    assert_eq!(
        compute(&c, Ts::MAX),
        Some(Progress {
            resolved_ts: Ts(150),
            checkpoint_ts: Ts(100)
        })
    );
}

#[test]
fn the_checkpoint_never_goes_backwards_nor_passes_resolved() {
    // A new add op with an older boundary pulls resolved below the stored checkpoint (TiCDC v5
    // would then write a smaller checkpoint).
    let c = cf(&[
        (
            "job/cf",
            r#"{"resolved-ts":200,"checkpoint-ts":180,"admin-job-type":0}"#,
        ),
        (
            "task/status/c1/cf",
            r#"{"tables":{"2":{"start-ts":150,"mark-table-id":0}},"operation":{"2":{"done":false,"delete":false,"boundary_ts":150}},"admin-job-type":0}"#,
        ),
        ("task/position/c1/cf", &pos(190, 210)),
    ]);
    let p = compute(&c, Ts::MAX).expect("known");
    assert_eq!(p.checkpoint_ts, Ts(180), "monotonic");
    assert!(p.checkpoint_ts <= p.resolved_ts);
}

#[test]
fn writes_only_on_change_and_at_most_once_per_flush_interval() {
    let layout = KeyLayout::default();
    let c = cf(&[(
        "job/cf",
        r#"{"resolved-ts":10,"checkpoint-ts":5,"admin-job-type":0}"#,
    )]);
    let mut w = ProgressWriter::new("cf".into(), 200);
    let same = Progress {
        resolved_ts: Ts(10),
        checkpoint_ts: Ts(5),
    };
    assert!(
        w.tick(&layout, &c, same, 0).is_none(),
        "unchanged: no write"
    );
    let moved = Progress {
        resolved_ts: Ts(20),
        checkpoint_ts: Ts(15),
    };
    let p = w.tick(&layout, &c, moved, 1_000).expect("changed: write");
    assert_eq!(p.key, "/tidb/cdc/job/cf");
    assert!(
        w.tick(&layout, &c, moved, 1_100).is_none(),
        "within the flush interval"
    );
    assert!(w.tick(&layout, &c, moved, 1_200).is_some());
}

/// The definition `compute` implements with one ordered walk: a lookup per capture.
fn compute_by_lookup(cf: &ChangefeedState, barrier_ts: Ts) -> Option<Progress> {
    let mut resolved = barrier_ts;
    for (capture, status) in &cf.task_statuses {
        match cf.task_positions.get(capture) {
            Some(_) if status.is_empty() => {}
            Some(p) => resolved = resolved.min(p.resolved_ts),
            None if !status.is_empty() => return None,
            None => {}
        }
        for op in status.operation.iter().flat_map(|ops| ops.values()) {
            resolved = resolved.min(op.boundary_ts);
        }
    }
    let mut checkpoint = resolved;
    for (capture, p) in &cf.task_positions {
        if cf.task_statuses.get(capture).is_some_and(|s| !s.is_empty()) {
            checkpoint = checkpoint.min(p.checkpoint_ts);
        }
    }
    let stored = cf
        .status
        .as_ref()
        .map(|s| s.checkpoint_ts)
        .unwrap_or_default();
    let checkpoint = checkpoint.max(stored);
    Some(Progress {
        resolved_ts: resolved.max(checkpoint),
        checkpoint_ts: checkpoint,
    })
}

proptest::proptest! {
    #[test]
    fn the_ordered_walk_equals_the_lookup_definition(
        statuses in proptest::collection::btree_map(0u8..8, (proptest::bool::ANY, proptest::option::of(1u64..50)), 0..6),
        positions in proptest::collection::btree_map(0u8..8, (1u64..60, 1u64..60), 0..6),
        stored in 0u64..40,
        barrier in 1u64..80,
    ) {
        let mut keys: Vec<(String, String)> = vec![(
            "job/cf".into(),
            format!(r#"{{"resolved-ts":{stored},"checkpoint-ts":{stored},"admin-job-type":0}}"#),
        )];
        for (c, (holds, op)) in &statuses {
            let tables = if *holds { r#"{"1":{"start-ts":1,"mark-table-id":0}}"# } else { "{}" };
            let ops = op.map_or("null".to_owned(), |b| {
                format!(r#"{{"2":{{"delete":false,"boundary_ts":{b},"status":1}}}}"#)
            });
            keys.push((
                format!("task/status/c{c}/cf"),
                format!(r#"{{"tables":{tables},"operation":{ops},"admin-job-type":0}}"#),
            ));
        }
        for (c, (cp, rs)) in &positions {
            keys.push((format!("task/position/c{c}/cf"), pos(*cp, *rs)));
        }
        let refs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let state = cf(&refs);
        proptest::prop_assert_eq!(state.task_statuses.len(), statuses.len());
        proptest::prop_assert_eq!(state.task_positions.len(), positions.len());
        proptest::prop_assert_eq!(compute(&state, Ts(barrier)), compute_by_lookup(&state, Ts(barrier)));
    }
}
