use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rcdc_state::{GlobalState, PatchOutcome, TableId, Ts};

use super::processor::RecordedProcessorInput;
use super::replay::replay;
use super::*;
use crate::owner::tick::{Owner, OwnerConfig, OwnerInput};
use crate::processor::tick::{
    Pipelines, ProcessorConfig, ProcessorInput, ProcessorManager, TablePipelineState, TableProgress,
};

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

fn record_an_owner_run(dir: &Path, sink_uri: &str) -> PathBuf {
    let config = OwnerConfig::default();
    let mut rec = Recorder::create(dir, Role::Owner, "cap", "/tidb/cdc", &config).unwrap();
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
                format!(
                    r#"{{"sink-uri":"{sink_uri}","start-ts":1000,"state":"normal","config":{{}}}}"#
                )
                .into_bytes(),
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
    let path = rec.path().to_owned();
    rec.end("done");
    path
}

#[test]
fn an_owner_recording_replays_and_a_changed_output_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = record_an_owner_run(dir.path(), "blackhole://");
    assert!(path.ends_with("owner-cap-1.ndjson"), "{}", path.display());
    let report = replay(&path, None).unwrap();
    assert_eq!(
        (report.ticks, report.updates, report.role, report.resumed),
        (3, 2, Some(Role::Owner), false)
    );
    assert_eq!(report.ended.as_deref(), Some("done"));
    // Change what the first tick decided: replay names that tick and shows the difference.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""visited":1"#), "{text}");
    std::fs::write(&path, text.replacen(r#""visited":1"#, r#""visited":7"#, 1)).unwrap();
    let err = replay(&path, None).unwrap_err().to_string();
    assert!(
        err.contains("tick 1 (line 3) differs") && err.contains("\"visited\": 7"),
        "{err}"
    );
    let garbage = dir.path().join("bad.ndjson");
    std::fs::write(&garbage, "{\"type\":\"nope\"}\n").unwrap();
    let err = replay(&garbage, None).unwrap_err().to_string();
    assert!(err.contains("bad.ndjson:1: not a recording line"), "{err}");
    let v1 = dir.path().join("v1.ndjson");
    std::fs::write(
        &v1,
        r#"{"type":"header","format":"rcdc-recording","version":1,"role":"owner","capture":"c","cluster_prefix":"/tidb/cdc","config":{}}"#,
    )
    .unwrap();
    let err = replay(&v1, None).unwrap_err().to_string();
    assert!(
        err.contains("unsupported recording rcdc-recording v1"),
        "{err}"
    );
}

#[test]
fn a_recording_holds_no_password_and_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let path = record_an_owner_run(dir.path(), "blackhole://root:s3cret@host/?password=p4ss");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("s3cret") && !text.contains("p4ss"),
        "a secret was recorded: {text}"
    );
    assert!(text.contains("root:xxxxx@host"), "{text}");
    let report = replay(&path, None).unwrap();
    assert_eq!(report.ticks, 3);
}

/// A capture holding table 1 of changefeed `cf`.
fn processor_keys() -> BTreeMap<String, Vec<u8>> {
    [
        (
            "/tidb/cdc/capture/cap",
            r#"{"id":"cap","address":"a:1","version":"v"}"#,
        ),
        (
            "/tidb/cdc/changefeed/info/cf",
            r#"{"sink-uri":"blackhole://","start-ts":5,"state":"normal","admin-job-type":0}"#,
        ),
        (
            "/tidb/cdc/job/cf",
            r#"{"resolved-ts":100,"checkpoint-ts":90,"admin-job-type":0}"#,
        ),
        (
            "/tidb/cdc/task/status/cap/cf",
            r#"{"tables":{"1":{"start-ts":90,"mark-table-id":0}},"operation":null,"admin-job-type":0}"#,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
    .collect()
}

/// Runs a processor manager over `reports` (one per tick), committing its patches, through
/// a `Recording` as the runtime adapter does.
fn record_a_processor_run(
    recording: &mut Recording,
    reports: &[Option<TableProgress>],
    before_tick: &dyn Fn(usize),
) -> Vec<crate::processor::tick::ProcessorOutput> {
    let mut manager = ProcessorManager::new("cap".into(), ProcessorConfig::default());
    let mut kv = processor_keys();
    let mut seen = BTreeMap::new();
    let mut state = GlobalState::default();
    let mut recorded = Pipelines::new();
    let mut outputs = Vec::new();
    for (i, report) in reports.iter().enumerate() {
        before_tick(i);
        let batch: Vec<(String, Option<Vec<u8>>)> = kv
            .iter()
            .filter(|(k, v)| seen.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        seen = kv.clone();
        let m = &manager;
        if recording.before_tick(&batch, &kv, &|| serde_json::to_value(m)) {
            recorded.clear();
        }
        for (k, v) in &batch {
            state.apply(k, v.as_deref());
        }
        let mut tables = Pipelines::new();
        if let Some(p) = report {
            tables.insert(("cf".into(), TableId(1)), p.clone());
        }
        let now_ms = 1_000 + i as u64 * 100;
        let out = manager.tick(
            &state,
            &ProcessorInput {
                now_ms,
                tables: &tables,
            },
        );
        let input = RecordedProcessorInput::delta(now_ms, &recorded, &tables);
        recording.after_tick(&input, &out);
        recorded = tables;
        state.clear_changes();
        for p in out.groups.iter().flat_map(|g| &g.patches) {
            if let Ok(PatchOutcome::Put(v)) = p.apply(kv.get(&p.key).map(Vec::as_slice)) {
                kv.insert(p.key.clone(), v);
            }
        }
        outputs.push(out);
    }
    outputs
}

fn processor_recording(control: &std::sync::Arc<RecordingControl>) -> Recording {
    Recording::new(
        control.clone(),
        Role::Processor,
        "cap",
        "/tidb/cdc",
        &ProcessorConfig::default(),
    )
}

fn on(dir: &Path) -> std::sync::Arc<RecordingControl> {
    RecordingControl::new(RecordingSettings {
        enabled: true,
        dir: Some(dir.to_owned()),
        ..Default::default()
    })
}

#[test]
fn a_processor_recording_replays_its_commands_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let control = on(dir.path());
    let mut rec = processor_recording(&control);
    let running = |resolved: u64, state| TableProgress {
        resolved_ts: Ts(resolved),
        checkpoint_ts: Ts(resolved - 5),
        state,
        rows: 0,
    };
    let outs = record_a_processor_run(
        &mut rec,
        &[
            None,
            None,
            Some(running(95, TablePipelineState::Starting)),
            Some(running(120, TablePipelineState::Running)),
            Some(running(120, TablePipelineState::Running)),
            Some(running(130, TablePipelineState::Failed("sink gone".into()))),
        ],
        &|_| {},
    );
    assert!(
        outs.iter().take(2).any(|o| !o.commands.is_empty()),
        "the table is started: {outs:?}"
    );
    assert!(
        outs.iter().any(|o| !o.groups.is_empty()),
        "positions are written"
    );
    drop(rec);
    assert!(control.status().files.is_empty());
    let path = dir.path().join("processor-cap-1.ndjson");
    let mut dump = Vec::new();
    let report = replay(&path, Some(&mut dump)).unwrap();
    assert_eq!((report.ticks, report.role), (6, Some(Role::Processor)));
    assert_eq!(report.ended.as_deref(), Some("the reactor stopped"));
    let dump = String::from_utf8(dump).unwrap();
    assert!(dump.contains("command  start cf/1 after"), "{dump}");
    assert!(dump.contains("0 pipeline report(s) changed"), "{dump}");
    assert!(dump.contains("Failed(\"sink gone\")"), "{dump}");
    assert!(dump.contains("command  cancel cf/1"), "{dump}");
    // Tamper with a recorded command: the replay points at it.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""start_ts":90"#), "{text}");
    std::fs::write(
        &path,
        text.replacen(r#""start_ts":90"#, r#""start_ts":91"#, 1),
    )
    .unwrap();
    let err = replay(&path, None).unwrap_err().to_string();
    assert!(
        err.contains("tick 2 (line 5) differs") && err.contains("-         \"start_ts\": 91"),
        "{err}"
    );
}

#[test]
fn the_api_may_point_recording_only_inside_the_allowed_dirs() {
    let root = tempfile::tempdir().unwrap();
    let control = RecordingControl::new(RecordingSettings {
        allowed_dirs: vec![root.path().to_owned()],
        ..Default::default()
    });
    let inside = root.path().join("rec/a");
    control.set(true, Some(inside.clone())).unwrap();
    assert_eq!(control.status().settings.dir, Some(inside));
    for bad in [
        PathBuf::from("/etc"),
        root.path().join("../escape"),
        PathBuf::from("relative/elsewhere"),
    ] {
        let err = control
            .set(true, Some(bad.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("must be inside the capture's --data-dir or --record")
                && err.contains(&root.path().display().to_string()),
            "{}: {err}",
            bad.display()
        );
    }
    // A symlink inside the root that points outside it does not get out.
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
    let err = control
        .set(true, Some(root.path().join("link/rec")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be inside"), "{err}");
    assert!(
        !outside.path().join("rec").exists(),
        "nothing created outside"
    );
    let none = RecordingControl::new(RecordingSettings::default());
    let err = none.set(true, Some(root.path().to_owned())).unwrap_err();
    assert!(err
        .to_string()
        .contains("start the capture with --data-dir or --record"));
}

#[test]
fn recording_turned_on_mid_run_resumes_and_rotation_keeps_every_file_replayable() {
    let dir = tempfile::tempdir().unwrap();
    let control = RecordingControl::new(RecordingSettings {
        max_file_bytes: 1_500,
        max_files: 2,
        allowed_dirs: vec![dir.path().to_owned()],
        ..Default::default()
    });
    assert_eq!(
        control.set(true, None),
        Err(control::RecordingError::NoDirectory)
    );
    control.set(false, Some(dir.path().to_owned())).unwrap();
    let mut rec = processor_recording(&control);
    let reports: Vec<_> = (0..40)
        .map(|i| {
            Some(TableProgress {
                resolved_ts: Ts(100 + i),
                checkpoint_ts: Ts(100 + i),
                state: TablePipelineState::Running,
                rows: 0,
            })
        })
        .collect();
    // Off for 3 ticks, on for 30 (rotating every ~1.5 kB), then off.
    let flip = |i: usize| match i {
        3 => control.set(true, None).unwrap(),
        33 => control.set(false, None).unwrap(),
        _ => {}
    };
    record_a_processor_run(&mut rec, &reports, &flip);
    let files = recorder::stream_files(dir.path(), Role::Processor, "cap").unwrap();
    assert_eq!(files.len(), 2, "older files are deleted: {files:?}");
    assert!(files[1].0 > 2, "it rotated: {files:?}");
    let mut ticks = 0;
    for (i, (_, path)) in files.iter().enumerate() {
        let report = replay(path, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.resumed, "{} starts mid-life", path.display());
        let reason = report.ended.unwrap_or_default();
        if i + 1 == files.len() {
            assert_eq!(reason, "recording turned off");
        } else {
            assert!(
                reason.starts_with("rotated at 1500 bytes; continues in"),
                "{reason}"
            );
        }
        ticks += report.ticks;
    }
    assert!((2..30).contains(&ticks), "{ticks}");
    let status = control.status();
    assert!(
        !status.settings.enabled && status.files.is_empty(),
        "{status:?}"
    );

    // A directory that cannot be written turns recording off and says why.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "a file, not a directory").unwrap();
    let control = on(&blocked);
    let mut rec = Recording::new(control.clone(), Role::Owner, "cap", "/p", &());
    rec.before_tick(&[], &BTreeMap::new(), &|| Ok(serde_json::Value::Null));
    let status = control.status();
    assert!(!status.settings.enabled, "{status:?}");
    assert!(status
        .last_error
        .is_some_and(|e| e.contains("cannot record the owner") && e.contains("blocked")),);
}

proptest! {
    /// The `resume` line's premise: materializing the keys *after* a batch, starting a new
    /// change log and applying the batch again gives the state and change log that applying
    /// the batch to the state *before* it gave.
    #[test]
    fn resuming_from_the_keys_after_a_batch_reproduces_state_and_change_log(
        batches in prop::collection::vec(
            prop::collection::vec((0usize..KEYS.len(), 0usize..VALUES.len()), 0..8),
            1..6,
        )
    ) {
        let mut live = GlobalState::default();
        let mut kv: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for batch in batches {
            let batch: Vec<(String, Option<Vec<u8>>)> = batch
                .into_iter()
                .map(|(k, v)| (KEYS[k].to_owned(), VALUES[v].map(|v| v.as_bytes().to_vec())))
                .collect();
            live.clear_changes();
            for (k, v) in &batch {
                live.apply(k, v.as_deref());
                match v {
                    Some(v) => kv.insert(k.clone(), v.clone()),
                    None => kv.remove(k),
                };
            }
            let mut resumed = GlobalState::default();
            for (k, v) in &kv {
                resumed.apply(k, Some(v));
            }
            resumed.clear_changes();
            for (k, v) in &batch {
                resumed.apply(k, v.as_deref());
            }
            prop_assert_eq!(&resumed, &live);
            prop_assert_eq!(resumed.changes(), live.changes());
        }
    }
}

const KEYS: &[&str] = &[
    "/tidb/cdc/capture/a",
    "/tidb/cdc/capture/b",
    "/tidb/cdc/changefeed/info/cf",
    "/tidb/cdc/job/cf",
    "/tidb/cdc/task/status/a/cf",
    "/tidb/cdc/task/position/a/cf",
    "/tidb/cdc/task/workload/b/cf",
    "/tidb/cdc/task/position/b/cf2",
    "/tidb/cdc/owner/22",
    "/tidb/cdc/something/new",
];

const VALUES: &[Option<&str>] = &[
    None,
    Some("{not json"),
    Some(r#"{"id":"a","address":"a:1","version":"v"}"#),
    Some(r#"{"sink-uri":"blackhole://","start-ts":5,"state":"normal","admin-job-type":0}"#),
    Some(r#"{"resolved-ts":100,"checkpoint-ts":90,"admin-job-type":0}"#),
    Some(r#"{"checkpoint-ts":7,"resolved-ts":9,"count":0,"error":null}"#),
    Some(r#"{"tables":{"1":{"start-ts":90}},"operation":null,"admin-job-type":0}"#),
    Some(r#"{"1":{"workload":1}}"#),
    Some(""),
];
