use rcdc_state::GlobalState;

use super::*;

fn state(feeds: &[(&str, &str, u64)]) -> GlobalState {
    let mut s = GlobalState::default();
    for (id, st, cp) in feeds {
        let info = format!(r#"{{"sink-uri":"blackhole://","start-ts":1,"state":"{st}"}}"#);
        s.apply(
            &format!("/tidb/cdc/changefeed/info/{id}"),
            Some(info.as_bytes()),
        );
        let status = format!(r#"{{"resolved-ts":{cp},"checkpoint-ts":{cp},"admin-job-type":0}}"#);
        s.apply(&format!("/tidb/cdc/job/{id}"), Some(status.as_bytes()));
    }
    s
}

#[test]
fn bug_8_13_the_safe_point_is_min_live_checkpoint_minus_one() {
    let s = state(&[
        ("a", "normal", 500),
        ("b", "stopped", 300),
        ("c", "failed", 100),
        ("d", "finished", 50),
    ]);
    let mut gc = GcManager::new(GcConfig::default());
    let push = gc.tick(&s, 0).expect("first tick pushes");
    assert_eq!(
        push.safe_point,
        Ts(299),
        "failed and finished feeds do not hold GC; minus one"
    );
    assert_eq!((push.service_id.as_str(), push.ttl_secs), ("ticdc", 86_400));
}

#[test]
fn nothing_is_pushed_without_a_live_changefeed() {
    let s = state(&[("c", "failed", 100)]);
    assert_eq!(
        GcManager::new(GcConfig::default()).tick(&s, 0),
        None,
        "v5 pushed u64::MAX here"
    );
}

#[test]
fn pushes_once_per_interval() {
    let s = state(&[("a", "normal", 500)]);
    let mut gc = GcManager::new(GcConfig::default());
    assert!(gc.tick(&s, 0).is_some());
    assert!(gc.tick(&s, 59_999).is_none());
    assert!(gc.tick(&s, 60_000).is_some());
}

#[test]
fn a_checkpoint_behind_the_upstream_safe_point_is_a_fast_fail_error() {
    let mut gc = GcManager::new(GcConfig::default());
    assert_eq!(
        gc.check_checkpoint(Ts(10), "a"),
        None,
        "unknown until the upstream answered"
    );
    gc.on_result(
        SafePointResult::Updated {
            min_safe_point: Ts(100),
        },
        0,
    );
    let e = gc.check_checkpoint(Ts(99), "127.0.0.1:8300").expect("lost");
    assert!(e.is_fast_fail());
    assert!(
        e.message.contains("99") && e.message.contains("100"),
        "{}",
        e.message
    );
    assert_eq!(gc.check_checkpoint(Ts(100), "a"), None);
}

#[test]
fn failing_pushes_become_an_error_only_after_the_ttl() {
    let mut gc = GcManager::new(GcConfig {
        ttl_secs: 10,
        update_interval_ms: 1,
    });
    gc.on_result(
        SafePointResult::Updated {
            min_safe_point: Ts(1),
        },
        0,
    );
    assert_eq!(
        gc.on_result(SafePointResult::Failed("down".into()), 9_999),
        None
    );
    let e = gc
        .on_result(SafePointResult::Failed("down".into()), 10_000)
        .expect("lapsed");
    assert!(e.contains("down"), "{e}");
}
