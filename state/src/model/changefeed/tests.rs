use super::*;

const FACTS_INFO: &str = r#"{"sink-uri":"mysql://root@127.0.0.1:3306/","opts":{},"create-time":"2021-06-17T10:10:37.123456789+08:00","start-ts":425908866286305281,"target-ts":0,"admin-job-type":0,"sort-engine":"unified","config":{"case-sensitive":true,"enable-old-value":true,"force-replicate":false,"check-gc-safe-point":true,"filter":{"rules":["*.*"],"ignore-txn-start-ts":null},"mounter":{"worker-num":16},"sink":{"dispatchers":null,"protocol":"default"},"cyclic-replication":{"enable":false,"replica-id":0,"filter-replica-ids":null,"id-buckets":0,"sync-ddl":false},"scheduler":{"type":"table-number","polling-time":-1}},"state":"normal","history":null,"error":null,"sync-point-enabled":false,"sync-point-interval":600000000000,"creator-version":"v5.1.0"}"#;

#[test]
fn the_facts_example_round_trips_byte_for_byte() {
    let info: ChangeFeedInfo = serde_json::from_str(FACTS_INFO).expect("decode");
    assert_eq!(info.state, FeedState::Normal);
    assert_eq!(info.sync_point_interval, 600_000_000_000);
    assert_eq!(serde_json::to_string(&info).expect("encode"), FACTS_INFO);
}

#[test]
fn the_default_replica_config_is_ticdcs() {
    let info: ChangeFeedInfo = serde_json::from_str(FACTS_INFO).expect("decode");
    assert_eq!(info.config, ReplicaConfig::default());
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
            r#""mounter":{"worker-num":16,"m-extra":3}"#,
        )
        .replace(r#""rules":["*.*"]"#, r#""rules":["*.*"],"do-dbs":["a"]"#);
    let info: ChangeFeedInfo = serde_json::from_str(&go).expect("decode");
    // Unknown fields come back after the known ones of their object, so compare as values.
    let back: serde_json::Value = serde_json::to_value(&info).expect("encode");
    let want: serde_json::Value = serde_json::from_str(&go).expect("json");
    assert_eq!(back, want);
    assert_eq!(back["config"]["filter"]["do-dbs"], serde_json::json!(["a"]));
}

#[test]
fn null_sub_configs_and_empty_sort_engine_are_fixed_on_load() {
    let go = r#"{"sink-uri":"blackhole://","start-ts":5,"config":{"filter":null,"sink":null,"mounter":null,"cyclic-replication":null,"scheduler":null},"sort-engine":""}"#;
    let mut info: ChangeFeedInfo = serde_json::from_str(go).expect("decode");
    info.verify_and_fix();
    assert_eq!(info.sort_engine, "unified");
    assert_eq!(info.config.filter.rules, vec!["*.*".to_owned()]);
    assert_eq!(info.config.sink.protocol, "default");
    let missing: ChangeFeedInfo =
        serde_json::from_str(r#"{"sink-uri":"x","config":null}"#).expect("null config");
    assert_eq!(missing.config, ReplicaConfig::default());
}

#[test]
fn enums_encode_like_go_and_reject_unknown_values() {
    for (state, job) in [
        (FeedState::Normal, 0),
        (FeedState::Finished, 4),
        (FeedState::Error, 1),
        (FeedState::Stopped, 1),
        (FeedState::Failed, 1),
        (FeedState::Removed, 3),
    ] {
        assert_eq!(state.admin_job_type().code(), job, "{state}");
        let json = serde_json::to_string(&state).expect("encode");
        assert_eq!(json, format!("\"{state}\""));
    }
    let err = serde_json::from_str::<FeedState>("\"paused\"").expect_err("paused");
    assert!(err.to_string().contains("paused"), "{err}");
    assert_eq!(
        serde_json::from_str::<FeedState>("\"\"").expect("go zero value"),
        FeedState::Normal
    );
    assert!(
        AdminJobType::Stop.is_stop_state()
            && AdminJobType::Remove.is_stop_state()
            && AdminJobType::Finish.is_stop_state()
    );
    assert!(!AdminJobType::None.is_stop_state() && !AdminJobType::Resume.is_stop_state());
    assert_eq!(AdminJobType::Remove.to_string(), "remove changefeed");
}

#[test]
fn derived_timestamps() {
    let mut info: ChangeFeedInfo = serde_json::from_str(FACTS_INFO).expect("decode");
    assert_eq!(info.start_ts(), Ts(425908866286305281));
    assert_eq!(info.target_ts(), Ts::MAX);
    info.target_ts = Ts(7);
    assert_eq!(info.target_ts(), Ts(7));
    info.start_ts = Ts(0);
    // 2021-06-17T02:10:37.123Z
    assert_eq!(info.start_ts().physical_ms(), 1_623_895_837_123);
    info.create_time = "not a time".into();
    assert_eq!(info.start_ts(), Ts(0));
    let status = ChangeFeedStatus {
        checkpoint_ts: Ts(42),
        ..Default::default()
    };
    assert_eq!(info.checkpoint_ts(Some(&status)), Ts(42));
    assert_eq!(info.checkpoint_ts(None), info.start_ts());
}

#[test]
fn rfc3339_parsing_handles_zones_and_fractions() {
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00.5+01:00"), Some(500));
    assert_eq!(
        parse_rfc3339_ms("2000-03-01T00:00:00-00:30"),
        Some(951_870_600_000)
    );
    assert_eq!(parse_rfc3339_ms("garbage"), None);
}
