use proptest::prelude::*;

use super::*;
use crate::ids::TableId;

const INFO: &str = r#"{"sink-uri":"blackhole://","opts":{},"create-time":"2021-06-17T10:10:37.123456789+08:00","start-ts":425908866286305281,"target-ts":0,"admin-job-type":0,"sort-engine":"unified","config":{"case-sensitive":true,"enable-old-value":true,"force-replicate":false,"check-gc-safe-point":true,"filter":{"rules":["*.*"],"ignore-txn-start-ts":null},"mounter":{"worker-num":16},"sink":{"dispatchers":null,"protocol":"default"},"cyclic-replication":{"enable":false,"replica-id":0,"filter-replica-ids":null,"id-buckets":0,"sync-ddl":false},"scheduler":{"type":"table-number","polling-time":-1}},"state":"normal","history":null,"error":null,"sync-point-enabled":false,"sync-point-interval":600000000000,"creator-version":"v5.1.0"}"#;
const STATUS: &str =
    r#"{"resolved-ts":425908870000000000,"checkpoint-ts":425908869000000000,"admin-job-type":0}"#;
const TASK: &str = r#"{"tables":{"45":{"start-ts":425908866286305281,"mark-table-id":0}},"operation":null,"admin-job-type":0}"#;
const POSITION: &str = r#"{"checkpoint-ts":425908869000000000,"resolved-ts":425908870000000000,"count":0,"error":null}"#;
const WORKLOAD: &str = r#"{"45":{"workload":1}}"#;
const CAPTURE: &str = r#"{"id":"c1","address":"127.0.0.1:8300","version":"v5.1.0"}"#;

fn put(s: &mut GlobalState, k: &str, v: &str) -> ApplyOutcome {
    s.apply(k, Some(v.as_bytes()))
}

#[test]
fn builds_a_changefeed_from_its_five_key_kinds() {
    let mut s = GlobalState::default();
    put(&mut s, "/tidb/cdc/capture/c1", CAPTURE);
    put(&mut s, "/tidb/cdc/owner/694d7b9a3c1e0d01", "c1");
    put(&mut s, "/tidb/cdc/changefeed/info/cf", INFO);
    put(&mut s, "/tidb/cdc/job/cf", STATUS);
    put(&mut s, "/tidb/cdc/task/status/c1/cf", TASK);
    put(&mut s, "/tidb/cdc/task/position/c1/cf", POSITION);
    put(&mut s, "/tidb/cdc/task/workload/c1/cf", WORKLOAD);

    assert_eq!(s.captures().len(), 1);
    assert_eq!(
        s.owner_candidates().get("694d7b9a3c1e0d01"),
        Some(&CaptureId::from("c1"))
    );
    let cf = s.changefeed(&"cf".into()).expect("changefeed present");
    assert!(cf.info.is_some() && cf.status.is_some());
    assert!(cf.is_active_on(&"c1".into()));
    assert!(!cf.is_active_on(&"c2".into()));
    let tables = cf.task_statuses[&CaptureId::from("c1")]
        .tables
        .as_ref()
        .expect("tables");
    assert!(tables.contains_key(&TableId(45)));
    assert!(!cf.is_broken());
}

#[test]
fn a_changefeed_disappears_when_its_last_key_is_deleted() {
    let mut s = GlobalState::default();
    put(&mut s, "/tidb/cdc/job/cf", STATUS);
    put(&mut s, "/tidb/cdc/task/position/c1/cf", POSITION);
    s.apply("/tidb/cdc/job/cf", None);
    assert!(s.changefeed(&"cf".into()).is_some());
    s.apply("/tidb/cdc/task/position/c1/cf", None);
    assert!(s.changefeeds().is_empty());
}

#[test]
fn a_corrupt_value_marks_only_its_changefeed_broken() {
    let mut s = GlobalState::default();
    put(&mut s, "/tidb/cdc/changefeed/info/good", INFO);
    put(&mut s, "/tidb/cdc/changefeed/info/bad", INFO);
    let out = put(&mut s, "/tidb/cdc/changefeed/info/bad", "{not json");
    let ApplyOutcome::Corrupt(c) = out else {
        panic!("expected corrupt, got {out:?}")
    };
    assert_eq!(c.key, "/tidb/cdc/changefeed/info/bad");
    assert!(
        c.error.contains("/tidb/cdc/changefeed/info/bad"),
        "error names the key: {}",
        c.error
    );

    let bad = s
        .changefeed(&"bad".into())
        .expect("broken changefeed stays visible");
    assert!(bad.is_broken());
    assert!(
        bad.info.is_none(),
        "the typed view must not keep the stale value"
    );
    assert!(!s.changefeed(&"good".into()).expect("good").is_broken());

    // A good value repairs it.
    put(&mut s, "/tidb/cdc/changefeed/info/bad", INFO);
    assert!(!s.changefeed(&"bad".into()).expect("bad").is_broken());
}

#[test]
fn a_wrongly_typed_field_is_corrupt_not_a_panic() {
    let mut s = GlobalState::default();
    let out = put(
        &mut s,
        "/tidb/cdc/job/cf",
        r#"{"resolved-ts":"soon","checkpoint-ts":1}"#,
    );
    assert!(matches!(out, ApplyOutcome::Corrupt(_)));
    let out = put(
        &mut s,
        "/tidb/cdc/task/status/c1/cf",
        r#"{"tables":{"x":{}}}"#,
    );
    assert!(matches!(out, ApplyOutcome::Corrupt(_)));
    assert_eq!(s.changefeed(&"cf".into()).expect("cf").corrupt.len(), 2);
}

#[test]
fn an_empty_value_is_a_value_not_a_delete() {
    let mut s = GlobalState::default();
    put(&mut s, "/tidb/cdc/job/cf", STATUS);
    let out = s.apply("/tidb/cdc/job/cf", Some(b""));
    assert!(matches!(out, ApplyOutcome::Corrupt(_)), "{out:?}");
    assert!(s.changefeed(&"cf".into()).is_some());
}

#[test]
fn unknown_keys_are_ignored_and_counted() {
    let mut s = GlobalState::default();
    assert_eq!(
        put(&mut s, "/tidb/cdc/meta/__cdc_meta_version", "1"),
        ApplyOutcome::Ignored
    );
    assert_eq!(
        put(&mut s, "/tidb/cdc/meta/ticdc-delete-etcd-key-count", "3"),
        ApplyOutcome::Ignored
    );
    assert_eq!(put(&mut s, "/elsewhere/x", "1"), ApplyOutcome::Ignored);
    assert_eq!(s.unknown_keys().len(), 1);
    s.apply("/tidb/cdc/meta/__cdc_meta_version", None);
    assert!(s.unknown_keys().is_empty());
}

#[test]
fn a_corrupt_capture_is_recorded_globally() {
    let mut s = GlobalState::default();
    assert!(matches!(
        put(&mut s, "/tidb/cdc/capture/c1", "[]"),
        ApplyOutcome::Corrupt(_)
    ));
    assert!(s.captures().is_empty());
    assert_eq!(s.corrupt().len(), 1);
    s.apply("/tidb/cdc/capture/c1", None);
    assert!(s.corrupt().is_empty());
}

/// Values a random update may write to a key: good ones of each kind and garbage.
fn value_for(kind: usize, pick: u8) -> Option<String> {
    let good = [CAPTURE, INFO, STATUS, TASK, POSITION, WORKLOAD, "c1"];
    match pick % 4 {
        0 => None,
        1 => Some("{garbage".to_owned()),
        2 => Some(good[kind].to_owned()),
        _ => Some(good[kind].replace("0,", "7,")),
    }
}

fn key_for(kind: usize, cap: u8, cf: u8) -> String {
    let (cap, cf) = (format!("c{}", cap % 3), format!("cf{}", cf % 3));
    match kind {
        0 => format!("/tidb/cdc/capture/{cap}"),
        1 => format!("/tidb/cdc/changefeed/info/{cf}"),
        2 => format!("/tidb/cdc/job/{cf}"),
        3 => format!("/tidb/cdc/task/status/{cap}/{cf}"),
        4 => format!("/tidb/cdc/task/position/{cap}/{cf}"),
        5 => format!("/tidb/cdc/task/workload/{cap}/{cf}"),
        _ => format!("/tidb/cdc/owner/{cap}"),
    }
}

proptest! {
    /// Any sequence of updates gives the same state as building it from the final key set.
    #[test]
    fn incremental_apply_equals_building_from_the_final_keys(
        updates in proptest::collection::vec((0usize..7, any::<u8>(), any::<u8>(), any::<u8>()), 0..200)
    ) {
        let mut incremental = GlobalState::default();
        let mut final_keys = std::collections::BTreeMap::new();
        for (kind, cap, cf, pick) in updates {
            let key = key_for(kind, cap, cf);
            let value = value_for(kind, pick);
            incremental.apply(&key, value.as_deref().map(str::as_bytes));
            match value {
                Some(v) => { final_keys.insert(key, v); }
                None => { final_keys.remove(&key); }
            }
        }
        let mut rebuilt = GlobalState::default();
        for (k, v) in &final_keys {
            rebuilt.apply(k, Some(v.as_bytes()));
        }
        prop_assert_eq!(incremental, rebuilt);
    }
}
