use serde_json::json;

use super::*;
use crate::model::{decode, encode};

/// The `config` object of facts §2.2's example: TiCDC's defaults as Go writes them.
const GO_DEFAULT: &str = r#"{"case-sensitive":true,"enable-old-value":true,"force-replicate":false,"check-gc-safe-point":true,"filter":{"rules":["*.*"],"ignore-txn-start-ts":null},"mounter":{"worker-num":16},"sink":{"dispatchers":null,"protocol":"default"},"cyclic-replication":{"enable":false,"replica-id":0,"filter-replica-ids":null,"id-buckets":0,"sync-ddl":false},"scheduler":{"type":"table-number","polling-time":-1}}"#;

fn round_trip(go: &str) -> String {
    let c: ReplicaConfig = decode(go.as_bytes()).expect("decode");
    String::from_utf8(encode(&c).expect("encode")).expect("utf8")
}

#[test]
fn default_is_ticdcs_and_encodes_byte_for_byte() {
    assert_eq!(
        String::from_utf8(encode(&ReplicaConfig::default()).expect("encode")).expect("utf8"),
        GO_DEFAULT
    );
    let c: ReplicaConfig = decode(GO_DEFAULT.as_bytes()).expect("decode");
    assert_eq!(c, ReplicaConfig::default());
}

#[test]
fn missing_scalars_are_go_zero_values_but_missing_sub_objects_are_defaults() {
    let c: ReplicaConfig = decode(b"{}").expect("decode");
    assert!(!c.case_sensitive && !c.enable_old_value && !c.check_gc_safe_point);
    assert_eq!(c.filter, FilterConfig::default());
    assert_eq!(c.mounter.worker_num, 16);
    assert_eq!(c.scheduler, SchedulerConfig::default());

    let c: ReplicaConfig = decode(
        br#"{"filter":null,"mounter":null,"sink":null,"cyclic-replication":null,"scheduler":null}"#,
    )
    .expect("decode nulls");
    assert_eq!(c.mounter, MounterConfig::default());
    assert_eq!(c.sink, SinkConfig::default());
    assert_eq!(c.cyclic_replication, CyclicConfig::default());

    // An empty sub-object is not nil in Go: its fields are zero values.
    let c: ReplicaConfig =
        decode(br#"{"mounter":{},"filter":{},"scheduler":{}}"#).expect("decode empties");
    assert_eq!(c.mounter.worker_num, 0);
    assert_eq!(c.filter.rules, None);
    assert_eq!(c.scheduler.kind, "");
    assert_eq!(
        encode(&c.filter).expect("encode"),
        br#"{"rules":null,"ignore-txn-start-ts":null}"#
    );
}

#[test]
fn unknown_fields_survive_at_every_level() {
    let go = r#"{"case-sensitive":true,"enable-old-value":true,"force-replicate":false,"check-gc-safe-point":true,"filter":{"rules":["*.*"],"ignore-txn-start-ts":null,"ddl-allow-list":"AQI=","f-x":1},"mounter":{"worker-num":16,"some-future-field":{"x":1}},"sink":{"dispatchers":[{"matcher":["a.*"],"dispatcher":"ts","d-x":[1]}],"protocol":"canal-json","s-x":null},"cyclic-replication":{"enable":false,"replica-id":0,"filter-replica-ids":[1,2],"id-buckets":0,"sync-ddl":false,"c-x":"y"},"scheduler":{"type":"table-number","polling-time":-1,"p-x":true},"consistent":{"level":"none"},"some-future-field":{"x":1}}"#;
    // Unknown fields come after the known ones in Go's structs too, so the bytes match.
    assert_eq!(round_trip(go), go);
    let c: ReplicaConfig = decode(go.as_bytes()).expect("decode");
    assert_eq!(c.extra["consistent"], json!({"level": "none"}));
    assert_eq!(c.filter.extra["ddl-allow-list"], json!("AQI="));
}

#[test]
fn mysql_rules_appear_only_when_set_and_then_all_four_in_go_order() {
    let go = r#"{"rules":["*.*"],"do-tables":[{"db-name":"d","tbl-name":"t"}],"do-dbs":null,"ignore-tables":null,"ignore-dbs":["mysql"],"ignore-txn-start-ts":[5],"ddl-allow-list":"AQI="}"#;
    let f: FilterConfig = decode(go.as_bytes()).expect("decode");
    let rules = f.mysql_replication_rules.as_ref().expect("rules");
    assert_eq!(rules.do_tables.as_ref().expect("do")[0].tbl_name, "t");
    assert_eq!(rules.ignore_dbs, Some(vec!["mysql".to_owned()]));
    assert_eq!(encode(&f).expect("encode"), go.as_bytes());

    // One key, even null, makes Go allocate the embedded struct; it then writes all four.
    let f: FilterConfig = decode(br#"{"ignore-dbs":null,"rules":null}"#).expect("decode");
    assert_eq!(
        f.mysql_replication_rules,
        Some(MySqlReplicationRules::default())
    );
    assert_eq!(
        encode(&f).expect("encode"),
        br#"{"rules":null,"do-tables":null,"do-dbs":null,"ignore-tables":null,"ignore-dbs":null,"ignore-txn-start-ts":null}"#
    );
}

#[test]
fn filter_errors_name_the_field() {
    let err = decode::<FilterConfig>(br#"{"rules":"*.*"}"#).expect_err("not a list");
    assert!(err.to_string().contains("\"rules\""), "{err}");
    let err = decode::<FilterConfig>(br#"{"do-dbs":[1]}"#).expect_err("not strings");
    assert!(err.to_string().contains("filter rules"), "{err}");
}

#[test]
fn v1_dispatch_rules_are_converted_like_ticdc() {
    let go = r#"{"dispatchers":[{"matcher":["x.*"],"dispatcher":"ts"}],"protocol":"default","dispatch-rules":[{"db-name":"d","tbl-name":"t","rule":"rowid"}]}"#;
    let s: SinkConfig = decode(go.as_bytes()).expect("decode");
    let d = s.dispatchers.as_ref().expect("dispatchers");
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].matcher, Some(vec!["d.t".to_owned()]));
    assert_eq!(d[1].dispatcher, "rowid");
    assert!(s.extra.is_empty(), "the v1 key is consumed");
    assert_eq!(
        encode(&s).expect("encode"),
        br#"{"dispatchers":[{"matcher":["x.*"],"dispatcher":"ts"},{"matcher":["d.t"],"dispatcher":"rowid"}],"protocol":"default"}"#
    );
    // No v1 rules: a nil dispatcher list stays nil.
    let s: SinkConfig =
        decode(br#"{"dispatchers":null,"protocol":"avro","dispatch-rules":[]}"#).expect("decode");
    assert_eq!(s.dispatchers, None);
    assert!(decode::<SinkConfig>(br#"{"dispatch-rules":[null]}"#).is_err());
}

#[test]
fn go_nil_slices_stay_null_and_empty_slices_stay_empty() {
    let go = r#"{"matcher":null,"dispatcher":""}"#;
    let r: DispatchRule = decode(go.as_bytes()).expect("decode");
    assert_eq!(r.matcher, None);
    assert_eq!(encode(&r).expect("encode"), go.as_bytes());
    let go = r#"{"matcher":[],"dispatcher":""}"#;
    let r: DispatchRule = decode(go.as_bytes()).expect("decode");
    assert_eq!(r.matcher, Some(vec![]));
    assert_eq!(encode(&r).expect("encode"), go.as_bytes());
}
