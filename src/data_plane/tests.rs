use std::sync::Arc;

use rcdc_reactor::Clock;
use rcdc_state::Ts;

use super::*;
use crate::owner::gc::SERVICE_ID;

/// Ten minutes after both demos' start.
const NOW_MS: u64 = 1_600_000;
/// GC one minute behind now: far ahead of anything older.
const SHORT: &str = "demo://?start=1000000&retention=1m";
/// Never garbage-collects on its own.
const LONG: &str = "demo://?start=1000000&retention=none";

struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        NOW_MS
    }
}

fn push(upstream: &str, safe_point: Ts, ttl_secs: u64) -> UpdateSafePoint {
    UpdateSafePoint {
        upstream: upstream.to_owned(),
        service_id: SERVICE_ID.to_owned(),
        ttl_secs,
        safe_point,
    }
}

/// The stored service safe point of `uri` and its expiry.
fn held(plane: &DataPlane, uri: &str) -> Option<(Ts, u64)> {
    let upstream = plane.upstream(uri).expect("demo upstream");
    upstream
        .as_demo()
        .expect("a demo")
        .service_safe_point(SERVICE_ID)
}

#[test]
fn each_upstream_gets_its_own_safe_point_and_answers_its_own_minimum() {
    let plane = DataPlane::new(SHORT, Arc::new(FixedClock));
    // Both in use, as when pipelines of changefeeds on each run in this capture.
    plane.upstream(SHORT).expect("short");
    plane.upstream(LONG).expect("long");
    let old = Ts::from_parts(1_000_500, 0); // behind SHORT's GC, fine for LONG
    let recent = Ts::from_parts(1_580_000, 0);

    let long_min = plane
        .update_gc_safe_point(&push(LONG, old, 600))
        .expect("long answers");
    assert_eq!(
        long_min, old,
        "LONG's minimum is our own safe point, whatever SHORT's GC did"
    );
    // Empty: the default upstream.
    let short_min = plane
        .update_gc_safe_point(&push("", recent, 1_234))
        .expect("short answers");
    assert_eq!(short_min, recent);

    assert_eq!(
        held(&plane, LONG),
        Some((old, NOW_MS + 600_000)),
        "the push to SHORT did not move LONG's safe point"
    );
    assert_eq!(held(&plane, SHORT), Some((recent, NOW_MS + 1_234_000)));
}

#[test]
fn a_push_opens_an_upstream_no_pipeline_has_used_yet() {
    let plane = DataPlane::new(SHORT, Arc::new(FixedClock));
    let sp = Ts::from_parts(1_000_500, 0);
    let min = plane
        .update_gc_safe_point(&push(LONG, sp, 60))
        .expect("answers");
    assert_eq!(min, sp);
    assert_eq!(held(&plane, LONG), Some((sp, NOW_MS + 60_000)));
}

#[test]
fn a_push_to_an_unparsable_upstream_fails_naming_it() {
    let plane = DataPlane::new(SHORT, Arc::new(FixedClock));
    let e = plane
        .update_gc_safe_point(&push("nope://x", Ts(1), 60))
        .expect_err("no such scheme");
    assert!(e.contains("nope"), "{e}");
}

/// The sink learns `enable-old-value` from the changefeed's replica config: UPDATEs carry
/// `old` with it on and `null` with it off.
#[test]
fn the_table_sink_follows_the_changefeeds_enable_old_value() {
    use crate::sink::read_table_files;
    for old_value in [true, false] {
        let dir = tempfile::tempdir().expect("dir");
        let plane = DataPlane::new(LONG, Arc::new(FixedClock));
        let mut info = ChangeFeedInfo {
            sink_uri: format!(
                "file://{}?protocol=canal-json&enable-tidb-extension=true",
                dir.path().display()
            ),
            ..Default::default()
        };
        info.config.enable_old_value = old_value;
        let cf = ChangefeedId::from("cf");
        let mut source = plane.source(&cf, &info, TableId(1)).expect("source");
        let mut sink = plane.sink(&cf, &info, TableId(1)).expect("sink");
        let upto = Ts::from_parts(1_005_000, 0);
        let mut rows = Vec::new();
        source
            .fetch(Ts(0), upto, &mut |e| {
                if let TableEvent::Row(r) = e {
                    rows.push(r);
                }
                Ok(())
            })
            .expect("rows");
        sink.write(&rows).expect("write");
        sink.flush(upto).expect("flush");
        let got = read_table_files(dir.path(), &cf).expect("read");
        let updates: Vec<_> = got[0]
            .1
            .iter()
            .filter(|r| r.op == crate::event::RowOp::Update)
            .collect();
        assert!(!updates.is_empty());
        assert!(
            updates.iter().all(|r| r.old.is_some() == old_value),
            "enable-old-value {old_value}"
        );
    }
}
