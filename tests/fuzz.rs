//! Fuzz targets for the `rcdc` crate (issue #16 item 4): sink and upstream URIs, the server and
//! changefeed TOML, the HTTP API's JSON bodies, the recording format and the sink files `cdc
//! verify` decodes. Each must answer arbitrary and mutated input with a value or an error,
//! never a panic. proptest stands in for cargo-fuzz (no nightly toolchain here); see
//! `tests/fuzz_support/mod.rs` for the generators and the corpus.
//!
//! Longer runs: `PROPTEST_CASES=100000 cargo test --test fuzz`.

mod fuzz_support;

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use fuzz_support as support;

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[test]
fn sink_uri() {
    support::fuzz(
        file!(),
        "sink-uri",
        3000,
        &[
            "file://",
            "blackhole://",
            "?protocol=",
            "csv",
            "canal-json",
            "&file-size=",
            "&flush-interval=",
            "&worker-count=",
            "&enable-tidb-extension=",
            "true",
            "%",
            "%zz",
            "@",
            ":",
            "[::1]",
        ],
        |bytes| {
            let uri = text(bytes);
            let parsed = rcdc::sink::parse_sink_uri(&uri);
            // Masking runs on whatever an operator typed, valid or not.
            let masked = rcdc::sink::mask_uri(&uri);
            if parsed.is_ok() {
                prop_assert!(rcdc::sink::parse_sink_uri(&masked).is_ok() || masked != *uri);
            }
            Ok(())
        },
    );
}

#[test]
fn upstream_uri() {
    support::fuzz(
        file!(),
        "upstream-uri",
        2000,
        &[
            "demo://",
            "pd://",
            "?tables=",
            "&seed=",
            "&ddl=",
            "drop:",
            "create:",
            "@",
            "&retention=",
            "&rows-per-second=",
            "&key-space=",
            "&txn-rows=",
            "&start=",
            "1h",
            "0",
        ],
        |bytes| {
            let _ = rcdc::upstream::parse_upstream_uri(&text(bytes));
            Ok(())
        },
    );
}

#[test]
fn server_toml() {
    let flags = rcdc::config::ServerFlags::default();
    support::fuzz(
        file!(),
        "server-toml",
        1500,
        &[
            "\n[",
            "]\n",
            " = ",
            "'",
            "\"\"\"",
            "[[",
            "addr",
            "tz",
            "-interval = '",
            "ms'",
        ],
        |bytes| {
            let _ = rcdc::config::resolve_with(&flags, Some((Path::new("cdc.toml"), &text(bytes))));
            Ok(())
        },
    );
}

#[test]
fn changefeed_toml() {
    support::fuzz(
        file!(),
        "changefeed-toml",
        1500,
        &[
            "\n[",
            "]\n",
            " = ",
            "'",
            "[[",
            "filter",
            "sink",
            "rules",
            "dispatchers",
            "{",
            "}",
        ],
        |bytes| {
            let _ = rcdc::meta::replica_config_from_toml(&text(bytes));
            Ok(())
        },
    );
}

#[test]
fn api_bodies() {
    use rcdc::api::{
        ChangefeedConfig, DrainRequest, LogLevelReq, MoveTableReq, RecordingReq, UpdateConfig,
    };
    support::fuzz(
        file!(),
        "api-body",
        2000,
        &["\"capture_id\":", "\"table_id\":"],
        |bytes| {
            let _ = serde_json::from_slice::<ChangefeedConfig>(bytes);
            let _ = serde_json::from_slice::<UpdateConfig>(bytes);
            let _ = serde_json::from_slice::<MoveTableReq>(bytes);
            let _ = serde_json::from_slice::<DrainRequest>(bytes);
            let _ = serde_json::from_slice::<LogLevelReq>(bytes);
            let _ = serde_json::from_slice::<RecordingReq>(bytes);
            Ok(())
        },
    );
}

#[test]
fn canal_json() {
    support::fuzz(
        file!(),
        "canal-json",
        2000,
        &[
            "\r\n",
            "\"data\":",
            "\"mysqlType\":",
            "\"bigint\"",
            "\"_tidb\":",
            "\"commitTs\":",
            "\"old\":",
            "\"type\":",
        ],
        |bytes| {
            for line in text(bytes).split('\n') {
                let _ = rcdc::sink::canal_json::decode(line.strip_suffix('\r').unwrap_or(line));
            }
            Ok(())
        },
    );
}

#[test]
fn csv() {
    support::fuzz(
        file!(),
        "csv",
        2000,
        &[
            "\r\n",
            "\"",
            "\"\"",
            ",",
            "\\N",
            "ticdc-meta$operation,",
            "\"I\",",
            "\"D\",",
        ],
        |bytes| {
            let _ = rcdc::sink::csv::decode_file(&text(bytes));
            Ok(())
        },
    );
}

/// The replayer on a file: whole recordings mutated bytewise (`support::fuzz`), and real
/// recordings with one line replaced by a structurally mutated line or cut short, which keeps
/// the header valid so the mutation reaches the tick replay.
#[test]
fn recording() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("r.ndjson");
    let replay = |bytes: &[u8]| -> Result<(), TestCaseError> {
        std::fs::write(&path, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let _ = rcdc::record::replay::replay(&path, Some(&mut std::io::sink()));
        Ok(())
    };
    support::fuzz(
        file!(),
        "recording",
        300,
        &["{\"kind\":", "\n", "\"tick\"", "\"header\""],
        replay,
    );

    let files: Vec<Vec<String>> = support::corpus("recording")
        .iter()
        .map(|f| text(f).lines().map(str::to_owned).collect())
        .collect();
    let lines: Vec<Value> = files
        .iter()
        .flatten()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let strategy = (
        prop::sample::select(files),
        any::<prop::sample::Index>(),
        any::<bool>(),
        support::json_mutations(lines),
    );
    let mut runner = TestRunner::new(Config {
        cases: support::cases(300),
        ..Config::default()
    });
    let result = runner.run(&strategy, |(mut file, at, cut, line)| {
        let i = at.index(file.len());
        file[i] = serde_json::to_string(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if cut {
            file.truncate(i + 1);
        }
        replay(file.join("\n").as_bytes())
    });
    if let Err(e) = result {
        panic!("fuzz target recording (line mutations): {e}");
    }
}
