//! Sink URI parsing, validation and masking.

use std::path::PathBuf;

use super::uri::parse_go_duration_ms;
use super::*;

fn err(uri: &str) -> String {
    match parse_sink_uri(uri) {
        Ok(spec) => panic!("{uri} should be rejected, got {spec:?}"),
        Err(e) => {
            assert!(matches!(e, SinkError::InvalidUri { .. }), "{e:?}");
            e.to_string()
        }
    }
}

fn file_cfg(uri: &str) -> FileSinkConfig {
    match parse_sink_uri(uri) {
        Ok(SinkSpec::File(cfg)) => cfg,
        other => panic!("{uri}: expected a file sink, got {other:?}"),
    }
}

#[test]
fn good_uris() {
    assert_eq!(parse_sink_uri("blackhole://").unwrap(), SinkSpec::Blackhole);
    assert_eq!(
        parse_sink_uri("BLACKHOLE://?whatever=1").unwrap(),
        SinkSpec::Blackhole
    );

    let cfg = file_cfg("file:///data/cdc?protocol=canal-json");
    assert_eq!(
        cfg,
        FileSinkConfig {
            dir: PathBuf::from("/data/cdc"),
            protocol: FileProtocol::CanalJson,
            file_size: 64 * 1024 * 1024,
            flush_interval_ms: 5_000,
            worker_count: 16,
            enable_tidb_extension: false,
            enable_old_value: true,
        }
    );

    let cfg = file_cfg(
        "file:///data/my%20cdc/?protocol=CSV&file-size=1048576&flush-interval=1m30s&worker-count=4",
    );
    assert_eq!(cfg.dir, PathBuf::from("/data/my cdc/"));
    assert_eq!(cfg.protocol, FileProtocol::Csv);
    assert_eq!(cfg.file_size, 1_048_576);
    assert_eq!(cfg.flush_interval_ms, 90_000);
    assert_eq!(cfg.worker_count, 4);

    let cfg = file_cfg("file://localhost/tmp/x?protocol=csv&flush-interval=2s");
    assert_eq!(cfg.dir, PathBuf::from("/tmp/x"));
    assert_eq!(cfg.flush_interval_ms, 2_000);
    assert_eq!(
        file_cfg("file:///x?protocol=csv&flush-interval=10m").flush_interval_ms,
        600_000
    );
    assert_eq!(
        file_cfg("file:///x?protocol=csv&file-size=536870912").file_size,
        512 * 1024 * 1024
    );
}

#[test]
fn bad_uris_name_the_offending_part() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("   ", "empty"),
        ("/data/cdc", "not a URI"),
        ("foo://x", "unknown sink scheme 'foo'"),
        (
            "kafka://broker/topic?protocol=canal-json",
            "'kafka' is not supported",
        ),
        ("s3://bucket/prefix?protocol=csv", "'s3' is not supported"),
        ("mysql://root:secret@db:3306/", "'mysql' is not supported"),
        ("file:///data/cdc", "needs a protocol parameter"),
        ("file:///data/cdc?protocol=", "'protocol' is empty"),
        (
            "file:///data/cdc?protocol=avro",
            "protocol 'avro' is not supported by the file sink",
        ),
        (
            "file:///data/cdc?protocol=open-protocol",
            "protocol 'open-protocol'",
        ),
        (
            "file:///data/cdc?protocol=jsonl",
            "unknown protocol 'jsonl'",
        ),
        ("file://data/cdc?protocol=csv", "host 'data'"),
        ("file://./cdc?protocol=csv", "host '.'"),
        ("file://?protocol=csv", "directory is empty"),
        ("file:///?protocol=csv", "directory is empty"),
        ("file://", "directory is empty"),
        ("file:///a/../b?protocol=csv", "'..'"),
        (
            "file:///d?protocol=csv&protocol=csv",
            "'protocol' is given more than once",
        ),
        (
            "file:///d?protocol=csv&file-size=abc",
            "file-size 'abc' is not a whole number",
        ),
        ("file:///d?protocol=csv&file-size=-1", "file-size '-1'"),
        (
            "file:///d?protocol=csv&file-size=1024",
            "file-size 1024 is out of range",
        ),
        (
            "file:///d?protocol=csv&file-size=999999999999",
            "file-size 999999999999 is out of range",
        ),
        (
            "file:///d?protocol=csv&flush-interval=5",
            "flush-interval '5' is not a duration",
        ),
        (
            "file:///d?protocol=csv&flush-interval=fast",
            "flush-interval 'fast'",
        ),
        (
            "file:///d?protocol=csv&flush-interval=1s",
            "flush-interval '1s' is out of range",
        ),
        (
            "file:///d?protocol=csv&flush-interval=11m",
            "flush-interval '11m' is out of range",
        ),
        (
            "file:///d?protocol=csv&worker-count=0",
            "worker-count 0 is out of range",
        ),
        (
            "file:///d?protocol=csv&worker-count=many",
            "worker-count 'many'",
        ),
        (
            "file:///d?protocol=csv&fil-size=1",
            "unknown parameter 'fil-size'",
        ),
        ("file:///d?protocol=csv#frag", "fragment"),
    ];
    for (uri, want) in cases {
        let msg = err(uri);
        assert!(
            msg.contains(want),
            "{uri:?}: message {msg:?} lacks {want:?}"
        );
    }
}

#[test]
fn enable_tidb_extension_is_a_go_bool_named_when_malformed() {
    for (v, want) in [
        ("true", true),
        ("1", true),
        ("T", true),
        ("false", false),
        ("0", false),
    ] {
        let uri = format!("file:///x?protocol=canal-json&enable-tidb-extension={v}");
        assert_eq!(file_cfg(&uri).enable_tidb_extension, want, "{v}");
    }
    assert!(!file_cfg("file:///x?protocol=canal-json").enable_tidb_extension);
    for v in ["yes", "", "TrUe", "2"] {
        let e = err(&format!("file:///x?protocol=csv&enable-tidb-extension={v}"));
        assert!(
            e.contains(&format!("enable-tidb-extension '{v}' is not a boolean")),
            "{e}"
        );
    }
    let e = err("file:///x?protocol=csv&enable-tidb-extension=true&enable-tidb-extension=true");
    assert!(
        e.contains("'enable-tidb-extension' is given more than once"),
        "{e}"
    );
    // enable-old-value is the changefeed's setting, not the URI's.
    let e = err("file:///x?protocol=csv&enable-old-value=true");
    assert!(e.contains("unknown parameter 'enable-old-value'"), "{e}");
}

#[test]
fn errors_mask_passwords() {
    let msg = err("mysql://root:s3cr3t@db:3306/?worker-count=4");
    assert!(!msg.contains("s3cr3t"), "{msg}");
    assert!(msg.contains("mysql://root:xxxxx@db:3306/"), "{msg}");
    let msg = err("file://u:pw@host/x?protocol=csv");
    assert!(!msg.contains("pw@"), "{msg}");
    assert!(msg.contains("u:xxxxx@host"), "{msg}");
}

#[test]
fn mask_uri_cases() {
    let cases: &[(&str, &str)] = &[
        (
            "mysql://root:123456@127.0.0.1:3306/",
            "mysql://root:xxxxx@127.0.0.1:3306/",
        ),
        (
            "mysql://root@127.0.0.1:3306/",
            "mysql://root@127.0.0.1:3306/",
        ),
        ("mysql://root:p@ss@h:1/?a=1", "mysql://root:xxxxx@h:1/?a=1"),
        (
            "kafka://b:9092/t?protocol=canal-json&sasl-password=pw&sasl-user=u",
            "kafka://b:9092/t?protocol=canal-json&sasl-password=xxxxx&sasl-user=u",
        ),
        (
            "s3://bkt/p?access-key=AK&secret-access-key=SK",
            "s3://bkt/p?access-key=xxxxx&secret-access-key=xxxxx",
        ),
        ("file:///data?protocol=csv", "file:///data?protocol=csv"),
        ("blackhole://", "blackhole://"),
        ("not a uri", "not a uri"),
        ("x://u:p", "x://u:p"),
        ("x://u:p@", "x://u:xxxxx@"),
    ];
    for (uri, want) in cases {
        assert_eq!(mask_uri(uri), *want, "{uri}");
    }
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration_ms("5s"), Some(5_000));
    assert_eq!(parse_go_duration_ms("2500ms"), Some(2_500));
    assert_eq!(parse_go_duration_ms("1m30s"), Some(90_000));
    assert_eq!(parse_go_duration_ms("1.5h"), Some(5_400_000));
    assert_eq!(parse_go_duration_ms("0"), Some(0));
    for bad in ["", "5", "s", "5x", "1..2s", "-1s", "5 s"] {
        assert_eq!(parse_go_duration_ms(bad), None, "{bad}");
    }
}
