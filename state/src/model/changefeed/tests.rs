use serde_json::{json, Value};

use super::*;
use crate::model::{decode, encode};

/// Facts §2.2's example, on one line.
const FACTS_INFO: &str = r#"{"sink-uri":"mysql://root@127.0.0.1:3306/","opts":{},"create-time":"2021-06-17T10:10:37.123456789+08:00","start-ts":425908866286305281,"target-ts":0,"admin-job-type":0,"sort-engine":"unified","config":{"case-sensitive":true,"enable-old-value":true,"force-replicate":false,"check-gc-safe-point":true,"filter":{"rules":["*.*"],"ignore-txn-start-ts":null},"mounter":{"worker-num":16},"sink":{"dispatchers":null,"protocol":"default"},"cyclic-replication":{"enable":false,"replica-id":0,"filter-replica-ids":null,"id-buckets":0,"sync-ddl":false},"scheduler":{"type":"table-number","polling-time":-1}},"state":"normal","history":null,"error":null,"sync-point-enabled":false,"sync-point-interval":600000000000,"creator-version":"v5.1.0"}"#;

fn to_string(v: &impl Serialize) -> String {
    String::from_utf8(encode(v).expect("encode")).expect("utf8")
}

#[test]
fn the_facts_example_round_trips_byte_for_byte() {
    let info: ChangeFeedInfo = decode(FACTS_INFO.as_bytes()).expect("decode");
    assert_eq!(info.state, FeedState::Normal);
    assert_eq!(info.sync_point_interval, 600_000_000_000);
    assert_eq!(info.opts, Some(BTreeMap::new()));
    assert_eq!(info.config, ReplicaConfig::default());
    // Byte equality checks the field order too; value equality is the weaker check.
    let out = to_string(&info);
    assert_eq!(out, FACTS_INFO);
    let a: Value = serde_json::from_str(&out).expect("json");
    let b: Value = serde_json::from_str(FACTS_INFO).expect("json");
    assert_eq!(a, b);
    // Stable: a second round trip changes nothing.
    let again: ChangeFeedInfo = decode(out.as_bytes()).expect("decode");
    assert_eq!(to_string(&again), out);
}

#[test]
fn unknown_fields_survive_top_level_and_nested() {
    let go = FACTS_INFO
        .replace(
            r#""creator-version":"v5.1.0""#,
            r#""creator-version":"v5.1.0","upstream-uri":"demo://","some-future-field":{"x":1}"#,
        )
        .replace(
            r#""mounter":{"worker-num":16}"#,
            r#""mounter":{"worker-num":16,"some-future-field":{"x":1}}"#,
        )
        .replace(
            r#""protocol":"default"}"#,
            r#""protocol":"default","some-future-field":{"x":1}}"#,
        );
    let info: ChangeFeedInfo = decode(go.as_bytes()).expect("decode");
    assert_eq!(info.extra["upstream-uri"], json!("demo://"));
    // Unknown fields sit after the known ones here, so even the bytes come back the same.
    assert_eq!(to_string(&info), go);
}

#[test]
fn error_and_history_round_trip_and_null_is_none() {
    let go = FACTS_INFO
        .replace(
            r#""history":null,"error":null"#,
            r#""history":[1623895837000,1623895838000],"error":{"addr":"127.0.0.1:8300","code":"CDC:ErrSnapshotLostByGC","message":"lost"}"#,
        )
        .replace(r#""opts":{}"#, r#""opts":null"#)
        .replace(r#""state":"normal""#, r#""state":"failed""#)
        .replace(r#""admin-job-type":0"#, r#""admin-job-type":1"#);
    let info: ChangeFeedInfo = decode(go.as_bytes()).expect("decode");
    assert_eq!(
        info.history,
        Some(vec![1_623_895_837_000, 1_623_895_838_000])
    );
    assert!(info.error.as_ref().is_some_and(RunningError::is_fast_fail));
    assert_eq!(info.opts, None);
    assert_eq!(info.state, FeedState::Failed);
    assert_eq!(info.admin_job_type, AdminJobType::Stop);
    assert_eq!(to_string(&info), go);

    let empty_history = FACTS_INFO.replace(r#""history":null"#, r#""history":[]"#);
    let info: ChangeFeedInfo = decode(empty_history.as_bytes()).expect("decode");
    assert_eq!(info.history, Some(vec![]), "[] is not nil");
    assert_eq!(to_string(&info), empty_history);
}

#[test]
fn missing_fields_take_go_zero_values_and_config_defaults() {
    let info: ChangeFeedInfo = decode(br#"{"sink-uri":"blackhole://"}"#).expect("decode");
    assert_eq!(
        info,
        ChangeFeedInfo {
            sink_uri: "blackhole://".into(),
            ..Default::default()
        }
    );
    assert_eq!(info.create_time, GO_ZERO_TIME);
    assert_eq!(info.config, ReplicaConfig::default());
    assert_eq!(
        to_string(&ChangeFeedInfo::default()),
        format!(
            r#"{{"sink-uri":"","opts":null,"create-time":"0001-01-01T00:00:00Z","start-ts":0,"target-ts":0,"admin-job-type":0,"sort-engine":"","config":{},"state":"normal","history":null,"error":null,"sync-point-enabled":false,"sync-point-interval":0,"creator-version":""}}"#,
            to_string(&ReplicaConfig::default())
        )
    );
}

#[test]
fn verify_and_fix_fills_the_sort_engine_and_nil_sub_configs() {
    let go = r#"{"sink-uri":"blackhole://","start-ts":5,"config":{"filter":null,"sink":null,"mounter":null,"cyclic-replication":null,"scheduler":null},"sort-engine":""}"#;
    let mut info: ChangeFeedInfo = decode(go.as_bytes()).expect("decode");
    info.verify_and_fix();
    assert_eq!(info.sort_engine, sort_engine::UNIFIED);
    assert_eq!(info.config.filter.rules, Some(vec!["*.*".to_owned()]));
    assert_eq!(info.config.sink.protocol, "default");
    assert_eq!(info.config.mounter.worker_num, 16);
    let null_config: ChangeFeedInfo =
        decode(br#"{"sink-uri":"x","config":null}"#).expect("null config");
    assert_eq!(null_config.config, ReplicaConfig::default());
    // A set engine is left alone.
    let mut info = ChangeFeedInfo {
        sort_engine: sort_engine::MEMORY.into(),
        ..Default::default()
    };
    info.verify_and_fix();
    assert_eq!(info.sort_engine, "memory");
}

#[test]
fn feed_states_encode_as_strings_and_map_to_admin_job_types() {
    for (state, name, job) in [
        (FeedState::Normal, "normal", AdminJobType::None),
        (FeedState::Error, "error", AdminJobType::Stop),
        (FeedState::Failed, "failed", AdminJobType::Stop),
        (FeedState::Stopped, "stopped", AdminJobType::Stop),
        (FeedState::Removed, "removed", AdminJobType::Remove),
        (FeedState::Finished, "finished", AdminJobType::Finish),
    ] {
        assert_eq!(state.admin_job_type(), job, "{state}");
        assert_eq!(to_string(&state), format!("\"{name}\""));
        assert_eq!(state.as_str(), name);
        assert_eq!(
            decode::<FeedState>(format!("\"{name}\"").as_bytes()).expect("decode"),
            state
        );
    }
    assert_eq!(
        decode::<FeedState>(b"\"\"").expect("go zero value"),
        FeedState::Normal
    );
}

#[test]
fn unknown_enum_values_are_decode_errors_naming_the_value() {
    let err = decode::<FeedState>(b"\"paused\"").expect_err("paused");
    assert!(err.to_string().contains("paused"), "{err}");
    let err = decode::<FeedState>(b"\"Normal\"").expect_err("case matters");
    assert!(err.to_string().contains("Normal"), "{err}");
    let bad_state = FACTS_INFO.replace(r#""state":"normal""#, r#""state":"warning""#);
    let err = decode::<ChangeFeedInfo>(bad_state.as_bytes()).expect_err("inside info");
    assert!(err.to_string().contains("warning"), "{err}");
    for bad in ["5", "-1", "\"1\"", "1.5"] {
        let json = FACTS_INFO.replace(
            r#""admin-job-type":0"#,
            &format!(r#""admin-job-type":{bad}"#),
        );
        assert!(decode::<ChangeFeedInfo>(json.as_bytes()).is_err(), "{bad}");
    }
    let err = decode::<AdminJobType>(b"7").expect_err("7");
    assert!(
        err.to_string().contains("unknown admin job type 7"),
        "{err}"
    );
}

#[test]
fn admin_job_types_encode_as_integers() {
    for (job, code, stop, name) in [
        (AdminJobType::None, 0, false, "noop"),
        (AdminJobType::Stop, 1, true, "stop changefeed"),
        (AdminJobType::Resume, 2, false, "resume changefeed"),
        (AdminJobType::Remove, 3, true, "remove changefeed"),
        (AdminJobType::Finish, 4, true, "finish changefeed"),
    ] {
        assert_eq!(job.code(), code);
        assert_eq!(AdminJobType::from_code(code), Some(job));
        assert_eq!(to_string(&job), code.to_string());
        assert_eq!(job.is_stop_state(), stop, "{job}");
        assert_eq!(job.to_string(), name);
    }
    assert_eq!(AdminJobType::from_code(5), None);
}

#[test]
fn derived_timestamps_follow_ticdc() {
    let mut info: ChangeFeedInfo = decode(FACTS_INFO.as_bytes()).expect("decode");
    assert_eq!(info.start_ts(), Ts(425_908_866_286_305_281));
    assert_eq!(info.target_ts(), Ts::MAX);
    info.target_ts = Ts(7);
    assert_eq!(info.target_ts(), Ts(7));

    // start-ts 0: TiCDC uses create-time at whole-second precision,
    // 2021-06-17T02:10:37Z = 1623895837 s; the .123456789 is dropped as Go's Unix() does.
    info.start_ts = Ts(0);
    assert_eq!(info.start_ts(), Ts::from_parts(1_623_895_837_000, 0));
    assert_eq!(info.start_ts().0, 1_623_895_837_000 << 18);
    info.create_time = "not a time".into();
    assert_eq!(info.start_ts(), Ts(0));
    info.create_time = GO_ZERO_TIME.into();
    assert_eq!(info.start_ts(), Ts(0), "before 1970 is not representable");

    let status = ChangeFeedStatus {
        checkpoint_ts: Ts(42),
        ..Default::default()
    };
    assert_eq!(info.checkpoint_ts(Some(&status)), Ts(42));
    info.start_ts = Ts(9);
    assert_eq!(info.checkpoint_ts(None), Ts(9));
}

#[test]
fn rfc3339_parsing_handles_zones_fractions_and_rejects_junk() {
    assert_eq!(parse_rfc3339_unix_secs("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339_unix_secs("1970-01-01T01:00:00.999999999+01:00"),
        Some(0)
    );
    assert_eq!(
        parse_rfc3339_unix_secs("2000-03-01T00:00:00-00:30"),
        Some(951_870_600)
    );
    assert_eq!(
        parse_rfc3339_unix_secs("2024-02-29T23:59:59Z"),
        Some(1_709_251_199)
    );
    assert_eq!(
        parse_rfc3339_unix_secs("0001-01-01T00:00:00Z"),
        Some(-62_135_596_800)
    );
    for junk in [
        "garbage",
        "",
        "2021-06-17",
        "2021-06-17T10:10:37",
        "2021-06-17T10:10:37.Z",
        "2021-13-17T10:10:37Z",
        "2021-06-17T24:10:37Z",
        "+021-06-17T10:10:37Z",
        "2021-06-17T10:10:37+0800",
        "2021-06-17T10:10:37Zjunk",
        "2021-06-17 10:10:37Z",
    ] {
        assert_eq!(parse_rfc3339_unix_secs(junk), None, "{junk:?}");
    }
}

#[test]
fn unmarshal_hands_an_enabled_cyclic_config_to_opts_and_decode_does_not() {
    let cyclic = r#"{"enable":true,"replica-id":1,"filter-replica-ids":[2,3],"id-buckets":4,"sync-ddl":true}"#;
    let go = FACTS_INFO.replace(
        r#""cyclic-replication":{"enable":false,"replica-id":0,"filter-replica-ids":null,"id-buckets":0,"sync-ddl":false}"#,
        &format!(r#""cyclic-replication":{cyclic}"#),
    );
    let info = ChangeFeedInfo::unmarshal(go.as_bytes()).expect("unmarshal");
    assert_eq!(
        info.opts,
        Some(BTreeMap::from([(
            CYCLIC_CONFIG_OPT.to_owned(),
            cyclic.to_owned()
        )]))
    );
    let plain: ChangeFeedInfo = decode(go.as_bytes()).expect("decode");
    assert_eq!(
        plain.opts,
        Some(BTreeMap::new()),
        "the snapshot's decode adds nothing"
    );

    // Null opts (where Go's nil map would panic) get a map; cyclic off leaves opts alone.
    let null_opts = go.replace(r#""opts":{}"#, r#""opts":null"#);
    let info = ChangeFeedInfo::unmarshal(null_opts.as_bytes()).expect("unmarshal");
    assert_eq!(info.opts.map(|o| o.len()), Some(1));
    let info = ChangeFeedInfo::unmarshal(FACTS_INFO.as_bytes()).expect("unmarshal");
    assert_eq!(info.opts, Some(BTreeMap::new()));
    assert!(ChangeFeedInfo::unmarshal(b"fake value").is_err());
}
