use rcdc_state::{ChangefeedId, GlobalState};

use super::*;

/// The default upstream in these tests (as `cdc server --upstream` would set it).
const DEFAULT: &str = "demo://default";
const OTHER: &str = "demo://other";

/// One changefeed: id, state, checkpoint, and the upstream its info names (`None`: the
/// default).
type Feed<'a> = (&'a str, &'a str, u64, Option<&'a str>);

fn state(feeds: &[Feed]) -> GlobalState {
    let mut s = GlobalState::default();
    for (id, st, cp, upstream) in feeds {
        let upstream = upstream.map_or(String::new(), |u| format!(r#","upstream-uri":"{u}""#));
        let info =
            format!(r#"{{"sink-uri":"blackhole://","start-ts":1,"state":"{st}"{upstream}}}"#);
        s.apply(
            &format!("/tidb/cdc/changefeed/info/{id}"),
            Some(info.as_bytes()),
        );
        let status = format!(r#"{{"resolved-ts":{cp},"checkpoint-ts":{cp},"admin-job-type":0}}"#);
        s.apply(&format!("/tidb/cdc/job/{id}"), Some(status.as_bytes()));
    }
    s
}

fn info(s: &GlobalState, id: &str) -> ChangeFeedInfo {
    s.changefeed(&ChangefeedId::from(id))
        .and_then(|c| c.info.clone())
        .expect("info")
}

fn config() -> GcConfig {
    GcConfig {
        default_upstream: DEFAULT.to_owned(),
        ..GcConfig::default()
    }
}

fn updated(upstream: &str, min: u64) -> SafePointResult {
    SafePointResult::Updated {
        upstream: upstream.to_owned(),
        min_safe_point: Ts(min),
    }
}

fn failed(upstream: &str) -> SafePointResult {
    SafePointResult::Failed {
        upstream: upstream.to_owned(),
        error: "down".to_owned(),
    }
}

#[test]
fn bug_8_13_the_safe_point_is_min_live_checkpoint_minus_one() {
    let s = state(&[
        ("a", "normal", 500, None),
        ("b", "stopped", 300, None),
        ("c", "failed", 100, None),
        ("d", "finished", 50, None),
    ]);
    let mut gc = GcManager::new(config());
    let push = gc.tick(&s, 0);
    assert_eq!(push.len(), 1, "first tick pushes: {push:?}");
    assert_eq!(
        push[0].safe_point,
        Ts(299),
        "failed and finished feeds do not hold GC; minus one"
    );
    assert_eq!(
        (push[0].service_id.as_str(), push[0].ttl_secs),
        ("ticdc", 86_400)
    );
}

#[test]
fn issue_11_each_upstream_gets_the_min_of_its_own_changefeeds() {
    let s = state(&[
        ("a", "normal", 500, None),
        ("b", "stopped", 300, Some(DEFAULT)), // names the default: the same upstream
        ("c", "normal", 800, Some(OTHER)),
        ("d", "error", 900, Some(OTHER)),
        ("e", "failed", 10, Some(OTHER)), // does not hold GC
    ]);
    let mut gc = GcManager::new(GcConfig {
        ttl_secs: 77,
        ..config()
    });
    let pushes: Vec<(String, Ts, u64)> = gc
        .tick(&s, 0)
        .into_iter()
        .map(|p| (p.upstream, p.safe_point, p.ttl_secs))
        .collect();
    assert_eq!(
        pushes,
        vec![
            (DEFAULT.to_owned(), Ts(299), 77),
            (OTHER.to_owned(), Ts(799), 77)
        ],
        "one push per upstream, in URI order, each with the configured TTL"
    );
}

#[test]
fn issue_11_an_upstream_without_live_changefeeds_gets_no_push() {
    let s = state(&[
        ("a", "normal", 500, None),
        ("c", "failed", 100, Some(OTHER)),
        ("d", "finished", 100, Some("demo://done")),
    ]);
    let pushes = GcManager::new(config()).tick(&s, 0);
    let upstreams: Vec<&str> = pushes.iter().map(|p| p.upstream.as_str()).collect();
    assert_eq!(
        upstreams,
        vec![DEFAULT],
        "the others' service safe points lapse after their TTL"
    );
}

#[test]
fn nothing_is_pushed_without_a_live_changefeed() {
    let s = state(&[("c", "failed", 100, None)]);
    assert_eq!(
        GcManager::new(config()).tick(&s, 0),
        vec![],
        "v5 pushed u64::MAX here"
    );
}

#[test]
fn pushes_once_per_interval() {
    let s = state(&[
        ("a", "normal", 500, None),
        ("b", "normal", 500, Some(OTHER)),
    ]);
    let mut gc = GcManager::new(config());
    assert_eq!(gc.tick(&s, 0).len(), 2);
    assert_eq!(gc.tick(&s, 59_999), vec![]);
    assert_eq!(gc.tick(&s, 60_000).len(), 2);
}

#[test]
fn a_checkpoint_behind_the_upstream_safe_point_is_a_fast_fail_error() {
    let s = state(&[("a", "normal", 500, None)]);
    let a = info(&s, "a");
    let mut gc = GcManager::new(config());
    gc.tick(&s, 0);
    assert_eq!(
        gc.check_checkpoint(&a, Ts(10), "a"),
        None,
        "unknown until the upstream answered"
    );
    gc.on_result(updated(DEFAULT, 100), 0);
    let e = gc
        .check_checkpoint(&a, Ts(99), "127.0.0.1:8300")
        .expect("lost");
    assert!(e.is_fast_fail());
    assert_eq!(e.code, "CDC:ErrSnapshotLostByGC");
    assert!(
        e.message.contains("99") && e.message.contains("100"),
        "{}",
        e.message
    );
    assert_eq!(gc.check_checkpoint(&a, Ts(100), "a"), None);
}

/// Item 6 of issue #11: GC far ahead on one upstream must not fail a changefeed on another.
#[test]
fn issue_11_a_checkpoint_is_checked_only_against_its_own_upstream() {
    let s = state(&[
        ("long", "normal", 1_000, None), // on a long-retention upstream
        ("short", "normal", 1_000, Some(OTHER)), // its upstream's GC is far ahead
    ]);
    let (long, short) = (info(&s, "long"), info(&s, "short"));
    let mut gc = GcManager::new(config());
    assert_eq!(gc.tick(&s, 0).len(), 2);

    gc.on_result(updated(OTHER, 50_000), 0);
    assert_eq!(
        gc.check_checkpoint(&long, Ts(1_000), "a"),
        None,
        "its own upstream has not answered yet"
    );
    gc.on_result(updated(DEFAULT, 999), 0);
    assert_eq!(
        gc.check_checkpoint(&long, Ts(1_000), "a"),
        None,
        "another upstream's GC says nothing about this changefeed's data"
    );
    let lost = gc
        .check_checkpoint(&short, Ts(1_000), "a")
        .expect("behind its own upstream's GC");
    assert!(lost.message.contains("50000"), "{}", lost.message);

    // Answers arriving in the other order change nothing.
    gc.on_result(updated(OTHER, 50_000), 0);
    assert_eq!(gc.check_checkpoint(&long, Ts(1_000), "a"), None);
}

#[test]
fn failing_pushes_become_an_error_only_after_the_ttl() {
    let mut gc = GcManager::new(GcConfig {
        ttl_secs: 10,
        update_interval_ms: 1,
        ..config()
    });
    gc.on_result(updated(DEFAULT, 1), 0);
    assert_eq!(gc.on_result(failed(DEFAULT), 9_999), None);
    let e = gc.on_result(failed(DEFAULT), 10_000).expect("lapsed");
    assert!(e.contains("down"), "{e}");
}

/// The TTL of a failing upstream counts from its own last success, or from its first push:
/// not from the epoch, and not from another upstream's success.
#[test]
fn issue_11_failures_are_timed_per_upstream_from_the_first_push() {
    const T0: u64 = 1_700_000_000_000; // a real clock's "now"
    let s = state(&[
        ("a", "normal", 500, None),
        ("b", "normal", 500, Some(OTHER)),
    ]);
    let mut gc = GcManager::new(GcConfig {
        ttl_secs: 10,
        ..config()
    });
    gc.tick(&s, T0);
    assert_eq!(
        gc.on_result(failed(OTHER), T0 + 1),
        None,
        "a first failure is not 'failing for over the TTL'"
    );
    gc.on_result(updated(DEFAULT, 1), T0 + 9_000);
    assert_eq!(gc.on_result(failed(OTHER), T0 + 9_999), None);
    let e = gc
        .on_result(failed(OTHER), T0 + 10_000)
        .expect("OTHER lapsed though DEFAULT answered");
    assert!(e.contains(OTHER), "names the upstream: {e}");
    assert_eq!(gc.on_result(failed(DEFAULT), T0 + 10_000), None);
}

/// Recordings made before safe points were per upstream still parse, and an owner resumed
/// from one keeps its upstream's answer (then the only, default, upstream).
#[test]
fn recordings_from_before_per_upstream_safe_points_still_parse_and_resume() {
    let push: UpdateSafePoint =
        serde_json::from_str(r#"{"service_id":"ticdc","ttl_secs":86400,"safe_point":999}"#)
            .expect("old effect");
    assert_eq!(push.upstream, "", "the default upstream");
    let answer: SafePointResult =
        serde_json::from_str(r#"{"Updated":{"min_safe_point":9000}}"#).expect("old result");
    assert_eq!(answer, updated("", 9_000));

    let gc: GcManager = serde_json::from_str(
        r#"{"config":{"ttl_secs":86400,"update_interval_ms":60000},
            "last_push_ms":1000200,"last_success_ms":1000400,"upstream_min":9000}"#,
    )
    .expect("old resume line");
    let s = state(&[("a", "normal", 5_000, None)]);
    let e = gc
        .check_checkpoint(&info(&s, "a"), Ts(5_000), "a")
        .expect("the old answer still applies");
    assert!(e.message.contains("9000"), "{}", e.message);
    let round_trip: GcManager =
        serde_json::from_str(&serde_json::to_string(&gc).expect("json")).expect("new format");
    assert_eq!(format!("{round_trip:?}"), format!("{gc:?}"));
}

/// Item 6 of issue #11 through `Owner::tick`: each push is answered by its own upstream, and
/// only the changefeed behind its own upstream's GC is failed.
#[test]
fn issue_11_the_owner_fails_only_the_changefeed_behind_its_own_upstream() {
    use crate::owner::tick::{Owner, OwnerConfig, OwnerEffect, OwnerEffectResult, OwnerInput};
    let s = state(&[
        ("long", "normal", 1_000, None),
        ("short", "normal", 1_000, Some(OTHER)),
    ]);
    let mut owner = Owner::new(OwnerConfig {
        addr: "owner:8300".into(),
        gc: config(),
        ..Default::default()
    });
    let first = owner.tick(
        &s,
        &OwnerInput {
            now_ms: 1_000,
            ..Default::default()
        },
    );
    let pushes: Vec<UpdateSafePoint> = first
        .effects
        .into_iter()
        .filter_map(|e| match e {
            OwnerEffect::UpdateGcSafePoint(p) => Some(p),
            _ => None,
        })
        .collect();
    let upstreams: Vec<&str> = pushes.iter().map(|p| p.upstream.as_str()).collect();
    assert_eq!(upstreams, vec![DEFAULT, OTHER]);
    // OTHER's GC is far ahead; DEFAULT keeps what we asked for.
    let results = pushes
        .iter()
        .map(|p| {
            let min = if p.upstream == OTHER {
                Ts(50_000)
            } else {
                p.safe_point
            };
            OwnerEffectResult::GcSafePoint(SafePointResult::answer(p, Ok(min)))
        })
        .collect();
    let out = owner.tick(
        &s,
        &OwnerInput {
            now_ms: 1_100,
            results,
            ..Default::default()
        },
    );
    let lost: Vec<&str> = out
        .groups
        .iter()
        .flat_map(|g| &g.patches)
        .filter(|p| format!("{:?}", p.edit).contains("ErrSnapshotLostByGC"))
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(lost, vec!["/tidb/cdc/changefeed/info/short"]);
}

#[test]
fn issue_12_a_lower_minimum_is_pushed_at_once_a_higher_one_waits_for_the_round() {
    let mut s = state(&[("a", "normal", 500, None)]);
    let mut gc = GcManager::new(config());
    assert_eq!(gc.tick(&s, 0).len(), 1);
    s.clear_changes();
    assert_eq!(gc.tick(&s, 1_000), vec![], "nothing changed");

    // `a` advances: safe to push within the minute.
    let advanced = state(&[("a", "normal", 900, None)]);
    assert_eq!(gc.tick(&advanced, 2_000), vec![]);

    // `b` arrives with an older checkpoint: protected now.
    let older = state(&[("a", "normal", 900, None), ("b", "normal", 200, None)]);
    let push = gc.tick(&older, 3_000);
    assert_eq!(
        push.iter().map(|p| p.safe_point).collect::<Vec<_>>(),
        vec![Ts(199)]
    );
    let mut older = older;
    older.clear_changes();
    assert_eq!(gc.tick(&older, 4_000), vec![], "pushed once");
}

#[test]
fn issue_12_the_last_changefeed_of_an_upstream_gone_removes_its_safe_point() {
    let mut gc = GcManager::new(config());
    let both = state(&[
        ("a", "normal", 500, None),
        ("b", "normal", 700, Some(OTHER)),
    ]);
    assert_eq!(gc.tick(&both, 0).len(), 2);

    // `b` is removed: OTHER has no live changefeed left.
    let mut s = state(&[
        ("a", "normal", 500, None),
        ("b", "removed", 700, Some(OTHER)),
    ]);
    let push = gc.tick(&s, 1_000);
    assert_eq!(
        push,
        vec![UpdateSafePoint {
            upstream: OTHER.to_owned(),
            service_id: SERVICE_ID.to_owned(),
            ttl_secs: 0,
            safe_point: Ts(0),
        }],
        "a TTL-0 removal, at once; the default upstream waits for its round"
    );
    // The removal's answer does not bring it back, and nothing repeats.
    assert_eq!(gc.on_result(updated(OTHER, 0), 1_100), None);
    s.clear_changes();
    assert_eq!(gc.tick(&s, 2_000), vec![]);
    let round: Vec<String> = gc
        .tick(&s, 60_000)
        .into_iter()
        .map(|p| p.upstream)
        .collect();
    assert_eq!(round, vec![DEFAULT.to_owned()]);
}

#[test]
fn issue_12_a_failed_removal_is_sent_again_at_the_next_round_only() {
    let mut gc = GcManager::new(config());
    assert_eq!(
        gc.tick(&state(&[("b", "normal", 700, Some(OTHER))]), 0)
            .len(),
        1
    );
    let mut gone = state(&[("b", "removed", 700, Some(OTHER))]);
    let removal = gc.tick(&gone, 1_000);
    assert_eq!(
        removal.iter().map(|p| p.ttl_secs).collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(
        gc.on_result(failed(OTHER), 1_100),
        None,
        "no error for a removal"
    );
    gone.clear_changes();
    assert_eq!(gc.tick(&gone, 2_000), vec![], "not every tick");
    let again = gc.tick(&gone, 61_000);
    assert_eq!(
        again
            .iter()
            .map(|p| (p.upstream.as_str(), p.ttl_secs))
            .collect::<Vec<_>>(),
        vec![(OTHER, 0)],
        "sent again at the round"
    );
    gc.on_result(updated(OTHER, 0), 61_100);
    assert_eq!(gc.tick(&gone, 122_000), vec![], "answered: done");
}

#[test]
fn issue_12_each_cluster_prefix_has_its_own_service_id() {
    assert_eq!(service_id("/tidb/cdc"), "ticdc");
    assert_eq!(service_id("/t/a"), "ticdc-t-a");
    let mut gc = GcManager::new(GcConfig {
        service_id: service_id("/t/a"),
        ..config()
    });
    let push = gc.tick(&state(&[("a", "normal", 500, None)]), 0);
    assert_eq!(push[0].service_id, "ticdc-t-a");
}
