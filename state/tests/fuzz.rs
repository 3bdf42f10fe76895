//! Fuzz targets for the pure state crate (issue #16 item 4): the etcd value decoders of every
//! model type and the key parser. proptest stands in for cargo-fuzz (no nightly toolchain
//! here); see `tests/fuzz_support/mod.rs` for the generators and the corpus.
//!
//! Longer runs: `PROPTEST_CASES=100000 cargo test -p rcdc-state --test fuzz`.

#[path = "../../tests/fuzz_support/mod.rs"]
mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rcdc_state::key::{CdcKey, KeyLayout};
use rcdc_state::model::{
    decode, encode, CaptureInfo, ChangeFeedInfo, ChangeFeedStatus, ReplicaConfig, TaskPosition,
    TaskStatus, TaskWorkload,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Field names and values the model uses, so that mutations reach past the first field.
const MODEL_DICT: &[&str] = &[
    "\"sink-uri\":",
    "\"admin-job-type\":",
    "\"state\":",
    "\"tables\":",
    "\"operation\":",
    "\"status\":",
    "\"error\":",
    "\"config\":",
    "\"filter\":",
    "\"create-time\":",
    "\"0001-01-01T00:00:00Z\"",
    "\"workload\":",
    "\"start-ts\":",
];

/// A value that decodes re-encodes, and the encoding decodes to the same value and encodes to
/// the same bytes again.
fn round_trip<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(value) = decode::<T>(bytes) else {
        return Ok(());
    };
    let encoded = encode(&value).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let again: T = decode(&encoded).map_err(|e| {
        TestCaseError::fail(format!(
            "re-decode of {}: {e}",
            String::from_utf8_lossy(&encoded)
        ))
    })?;
    prop_assert_eq!(
        &again,
        &value,
        "encoded: {}",
        String::from_utf8_lossy(&encoded)
    );
    let twice = encode(&again).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    prop_assert_eq!(twice, encoded);
    Ok(())
}

/// An unknown top-level field added to a valid value survives decode → encode as written.
fn unknown_field_kept<T>(target: &str, default: u32)
where
    T: DeserializeOwned + Serialize,
{
    let seeds: Vec<Value> = support::corpus(target)
        .iter()
        .filter_map(|s| serde_json::from_slice(s).ok())
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: support::cases(default),
        ..Config::default()
    });
    let result = runner.run(
        &support::with_unknown_field(seeds),
        |(input, key, value)| {
            let bytes =
                serde_json::to_vec(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let Ok(decoded) = decode::<T>(&bytes) else {
                return Ok(());
            };
            let encoded = encode(&decoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Value =
                serde_json::from_slice(&encoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back.get(&key), Some(&value), "encoded: {}", back);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("unknown fields of {target}: {e}");
    }
}

macro_rules! model_target {
    ($name:ident, $unknown:ident, $ty:ty, $target:literal) => {
        #[test]
        fn $name() {
            support::fuzz(file!(), $target, 1500, MODEL_DICT, round_trip::<$ty>);
        }

        #[test]
        fn $unknown() {
            unknown_field_kept::<$ty>($target, 300);
        }
    };
}

model_target!(
    changefeed_info,
    changefeed_info_unknown_fields,
    ChangeFeedInfo,
    "model-changefeed-info"
);
model_target!(
    changefeed_status,
    changefeed_status_unknown_fields,
    ChangeFeedStatus,
    "model-changefeed-status"
);
model_target!(
    task_status,
    task_status_unknown_fields,
    TaskStatus,
    "model-task-status"
);
model_target!(
    task_position,
    task_position_unknown_fields,
    TaskPosition,
    "model-task-position"
);
model_target!(
    capture_info,
    capture_info_unknown_fields,
    CaptureInfo,
    "model-capture-info"
);
model_target!(
    replica_config,
    replica_config_unknown_fields,
    ReplicaConfig,
    "model-replica-config"
);

// TaskWorkload is a bare table map (no struct, so no place for unknown fields: every key is
// a table id).
#[test]
fn task_workload() {
    support::fuzz(
        file!(),
        "model-task-workload",
        1500,
        MODEL_DICT,
        round_trip::<TaskWorkload>,
    );
}

/// The key parser never panics, and a key it parses renders back to the same string, except
/// the one shape that names nothing new: `<prefix>/owner/` is the bare owner key
/// `<prefix>/owner` (lease ""), as TiCDC's parser has it.
fn key_round_trip(bytes: &[u8]) -> Result<(), TestCaseError> {
    let key = String::from_utf8_lossy(bytes);
    for layout in [
        KeyLayout::default(),
        KeyLayout::new("cdc/"),
        KeyLayout::new(""),
    ] {
        let Some(parsed) = layout.parse(&key) else {
            continue;
        };
        let rendered = layout.encode(&parsed);
        let bare_owner = matches!(&parsed, CdcKey::Owner { lease } if lease.is_empty())
            && key.as_ref() == format!("{}/owner/", layout.prefix());
        if parsed != CdcKey::Unknown && !bare_owner {
            prop_assert_eq!(&rendered, key.as_ref());
        }
        if parsed != CdcKey::Unknown {
            prop_assert_eq!(layout.parse(&rendered), Some(parsed));
        }
    }
    Ok(())
}

#[test]
fn key() {
    support::fuzz(
        file!(),
        "key",
        5000,
        &[
            "/tidb/cdc",
            "/owner",
            "/owner/",
            "/capture/",
            "/changefeed/info/",
            "/job/",
            "/task/status/",
            "/task/position/",
            "/task/workload/",
            "/meta/ticdc-delete-etcd-key-count",
            "//",
        ],
        key_round_trip,
    );
}
