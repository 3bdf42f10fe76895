use super::replay::replay;
use super::*;
use crate::owner::tick::Owner;
use rcdc_state::GlobalState;

#[test]
fn values_round_trip_as_text_or_hex() {
    for bytes in [b"{\"a\":1}".to_vec(), vec![0xff, 0x00, 0x10]] {
        let v = RecordedValue::of(&bytes);
        let back: RecordedValue =
            serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back.bytes(), Some(bytes));
    }
    assert_eq!(RecordedValue::Hex { hex: "zz".into() }.bytes(), None);
}

fn record_a_run(dir: &std::path::Path, max_bytes: u64) -> std::path::PathBuf {
    let config = OwnerConfig::default();
    let mut rec = Recorder::create(dir, "cap", "/tidb/cdc", &config, max_bytes).unwrap();
    let mut owner = Owner::new(config);
    let mut state = GlobalState::default();
    let updates = vec![
        (
            "/tidb/cdc/capture/cap".to_owned(),
            Some(br#"{"id":"cap","address":"a:1","version":"v"}"#.to_vec()),
        ),
        (
            "/tidb/cdc/changefeed/info/cf".to_owned(),
            Some(
                br#"{"sink-uri":"blackhole://","start-ts":1000,"state":"normal","config":{}}"#
                    .to_vec(),
            ),
        ),
    ];
    rec.updates(&updates);
    for (k, v) in &updates {
        state.apply(k, v.as_deref());
    }
    for n in 0..3 {
        let input = OwnerInput {
            now_ms: 1_000 + n * 100,
            ..Default::default()
        };
        let out = owner.tick(&state, &input);
        rec.tick(&input, &out);
        state.clear_changes();
    }
    rec.path().to_owned()
}

#[test]
fn a_recording_replays_and_a_changed_input_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = record_a_run(dir.path(), DEFAULT_MAX_BYTES);
    let report = replay(&path, None).unwrap();
    assert_eq!(
        (report.ticks, report.updates, report.truncated),
        (3, 2, false)
    );
    // Change what the first tick decided: replay names that tick and shows the difference.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""visited":1"#), "{text}");
    std::fs::write(&path, text.replacen(r#""visited":1"#, r#""visited":7"#, 1)).unwrap();
    let err = replay(&path, None).unwrap_err().to_string();
    assert!(
        err.contains("tick 1 (line 3) differs") && err.contains("-   \"visited\": 7")
            || err.contains("\"visited\": 7"),
        "{err}"
    );
    let garbage = dir.path().join("bad.ndjson");
    std::fs::write(&garbage, "{\"type\":\"nope\"}\n").unwrap();
    let err = replay(&garbage, None).unwrap_err().to_string();
    assert!(err.contains("bad.ndjson:1: not a recording line"), "{err}");
}

#[test]
fn a_recording_stops_at_its_size_limit_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = record_a_run(dir.path(), 600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.len() < 800, "{}", text.len());
    assert!(
        text.trim_end().ends_with(r#""type":"truncated"}"#) || text.contains("\"truncated\""),
        "{text}"
    );
    let report = replay(&path, None).unwrap();
    assert!(report.truncated);
}
