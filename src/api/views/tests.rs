use rcdc_state::model::{
    encode, CaptureInfo, ChangeFeedInfo, ChangeFeedStatus, TaskPosition, TaskStatus,
};
use rcdc_state::{GlobalState, KeyLayout, TableId, Ts};

use super::*;

const T0: u64 = 1_700_000_000_000;

fn tz() -> TimeZone {
    TimeZone::Named(chrono_tz::UTC)
}

fn state() -> GlobalState {
    let layout = KeyLayout::default();
    let mut s = GlobalState::new(layout.clone());
    let put = |s: &mut GlobalState, k: String, v: Vec<u8>| {
        s.apply(&k, Some(&v));
    };
    for (id, addr) in [("cap-a", "127.0.0.1:8300"), ("cap-b", "127.0.0.1:8301")] {
        let c = CaptureInfo {
            id: CaptureId::new(id),
            address: addr.into(),
            version: "v0.1.0".into(),
            extra: Default::default(),
        };
        put(&mut s, layout.capture(&c.id), encode(&c).unwrap());
    }
    let feeds = [
        ("alpha", FeedState::Normal, "mysql://root:hunter2@db:3306/"),
        ("beta", FeedState::Stopped, "blackhole://"),
        ("gamma", FeedState::Removed, "blackhole://"),
    ];
    for (id, st, sink) in feeds {
        let cf = ChangefeedId::from(id);
        let info = ChangeFeedInfo {
            sink_uri: sink.into(),
            start_ts: Ts::from_parts(T0, 0),
            state: st,
            create_time: "2023-11-14T22:13:20Z".into(),
            ..Default::default()
        };
        put(&mut s, layout.info(&cf), encode(&info).unwrap());
    }
    let alpha = ChangefeedId::from("alpha");
    let status = ChangeFeedStatus {
        resolved_ts: Ts::from_parts(T0 + 2_000, 0),
        checkpoint_ts: Ts::from_parts(T0 + 1_500, 0),
        ..Default::default()
    };
    put(&mut s, layout.status(&alpha), encode(&status).unwrap());
    let mut ts = TaskStatus::default();
    ts.add_table(TableId(7), Ts::from_parts(T0, 0), Ts::from_parts(T0, 0));
    put(
        &mut s,
        layout.task_status(&CaptureId::new("cap-a"), &alpha),
        encode(&ts).unwrap(),
    );
    let pos = TaskPosition {
        checkpoint_ts: Ts::from_parts(T0 + 1_500, 0),
        resolved_ts: Ts::from_parts(T0 + 2_000, 0),
        count: 3,
        ..Default::default()
    };
    put(
        &mut s,
        layout.task_position(&CaptureId::new("cap-a"), &alpha),
        encode(&pos).unwrap(),
    );
    // A status key without info (facts §8.28: v5 panicked listing this).
    put(
        &mut s,
        layout.status(&ChangefeedId::from("orphan")),
        encode(&status).unwrap(),
    );
    s
}

#[test]
fn list_filters_by_state_and_never_panics_on_a_missing_info() {
    let s = state();
    let ids = |f: &StateFilter| -> Vec<String> {
        changefeed_list(&s, f, tz())
            .iter()
            .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(ids(&StateFilter::Default), ["alpha", "beta"]);
    assert_eq!(ids(&StateFilter::All), ["alpha", "beta", "gamma", "orphan"]);
    assert_eq!(ids(&StateFilter::parse("stopped").unwrap()), ["beta"]);
    assert!(StateFilter::parse("sleepy")
        .unwrap_err()
        .contains("invalid state \"sleepy\""));
    insta::assert_json_snapshot!(
        "changefeed_list_default",
        changefeed_list(&s, &StateFilter::Default, tz())
    );
}

#[test]
fn detail_masks_the_sink_password_and_lists_tasks() {
    let s = state();
    let d = changefeed_detail(&s, &ChangefeedId::from("alpha"), tz()).unwrap();
    assert!(!d.to_string().contains("hunter2"));
    insta::assert_json_snapshot!("changefeed_detail", d);
    assert!(changefeed_detail(&s, &ChangefeedId::from("orphan"), tz()).is_none());
}

#[test]
fn captures_and_processors() {
    let s = state();
    let owner = CaptureId::new("cap-b");
    insta::assert_json_snapshot!("captures", capture_list(&s, Some(&owner)));
    insta::assert_json_snapshot!("processors", processor_list(&s));
    let p = processor_detail(&s, &ChangefeedId::from("alpha"), &CaptureId::new("cap-a"));
    insta::assert_json_snapshot!("processor_detail", p);
    assert!(processor_detail(&s, &ChangefeedId::from("alpha"), &CaptureId::new("cap-b")).is_none());
}

#[test]
fn times_render_like_go_in_the_chosen_zone() {
    let ts = Ts::from_parts(T0 + 1_234, 0);
    assert_eq!(tz().format(ts), "2023-11-14 22:13:21.234");
    let shanghai = TimeZone::Named(chrono_tz::Asia::Shanghai);
    assert_eq!(shanghai.format(ts), "2023-11-15 06:13:21.234");
}
