use std::path::Path;
use std::time::Duration;

use super::*;

fn file(text: &str) -> Result<ServerConfig, ConfigError> {
    resolve_with(
        &ServerFlags::default(),
        Some((Path::new("/etc/cdc.toml"), text)),
    )
}

fn err(flags: ServerFlags, text: Option<&str>) -> String {
    resolve_with(&flags, text.map(|t| (Path::new("/etc/cdc.toml"), t)))
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults_are_ticdc_v5s() {
    let c = resolve_with(&ServerFlags::default(), None).unwrap();
    assert_eq!(c.pd, ["http://127.0.0.1:2379"]);
    assert_eq!(
        (c.addr.as_str(), c.advertise_addr.as_str()),
        ("127.0.0.1:8300", "127.0.0.1:8300")
    );
    assert_eq!((c.log_level.as_str(), c.tz.as_str()), ("info", "System"));
    assert_eq!(c.gc_ttl, Duration::from_secs(86_400));
    assert_eq!(c.capture_session_ttl, Duration::from_secs(10));
    assert_eq!(c.owner_flush_interval, Duration::from_millis(200));
    assert_eq!(c.processor_flush_interval, Duration::from_millis(100));
    assert_eq!(c.per_table_memory_quota, 20 * 1024 * 1024);
    assert_eq!(
        (c.cluster_prefix.as_str(), c.upstream.as_deref()),
        ("/tidb/cdc", None),
        "no --upstream: server start picks the PD's cluster or demo://"
    );
}

#[test]
fn precedence_is_defaults_then_file_then_explicit_flags() {
    let text = "addr = '127.0.0.1:9000'\nlog-level = 'debug'\ngc-ttl = 100\nowner-flush-interval = '50ms'\n";
    let c = file(text).unwrap();
    assert_eq!(
        (c.addr.as_str(), c.log_level.as_str()),
        ("127.0.0.1:9000", "debug")
    );
    assert_eq!(c.gc_ttl, Duration::from_secs(100));
    assert_eq!(c.owner_flush_interval, Duration::from_millis(50));
    assert_eq!(
        c.processor_flush_interval,
        Duration::from_millis(100),
        "unset in the file: default"
    );
    let flags = ServerFlags {
        log_level: Some("warn".into()),
        gc_ttl: Some(7),
        ..Default::default()
    };
    let c = resolve_with(&flags, Some((Path::new("x.toml"), text))).unwrap();
    assert_eq!(c.log_level, "warn", "an explicit flag wins");
    assert_eq!(c.gc_ttl, Duration::from_secs(7));
    assert_eq!(
        c.addr, "127.0.0.1:9000",
        "a flag left unset does not override the file"
    );
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let e = file("adr = '1.2.3.4:1'\n").unwrap_err().to_string();
    assert!(
        e.starts_with("config file /etc/cdc.toml:") && e.contains("adr"),
        "{e}"
    );
    let e = file("[sorter]\nsort-dirr = '/x'\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sort-dirr"), "{e}");
    let e = file("gc-ttl = 'soon'\n").unwrap_err().to_string();
    assert!(e.contains("gc-ttl") || e.contains("invalid type"), "{e}");
    assert!(file("addr = \n")
        .unwrap_err()
        .to_string()
        .contains("line 1"));
}

/// Issue #15: a bad value names its key (with its table) and the value, not only the line.
#[test]
fn a_bad_value_names_its_key_and_value() {
    let e = file("addr = '127.0.0.1:8300'\ngc-ttl = -5\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("key gc-ttl = -5"), "{e}");
    let e = file("[sorter]\nnum-concurrent-worker = 'many' # comment\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("key sorter.num-concurrent-worker = 'many'"),
        "{e}"
    );
}

#[test]
fn a_full_ticdc_server_config_loads() {
    let text = r#"
addr = "127.0.0.1:8300"
advertise-addr = ""
log-file = ""
log-level = "info"
data-dir = ""
gc-ttl = 86400
tz = "System"
capture-session-ttl = 10
owner-flush-interval = "50ms"
processor-flush-interval = "50ms"
cluster-id = "default"
gc-tuner-memory-threshold = 0
per-table-memory-quota = 0
max-memory-percentage = 0
[log]
error-output = "stderr"
[log.file]
max-size = 300
max-days = 0
max-backups = 0
[sorter]
sort-dir = "/tmp/sorter"
cache-size-in-mb = 128
max-memory-percentage = 30
max-memory-consumption = 17179869184
num-workerpool-goroutine = 16
num-concurrent-worker = 4
chunk-size-limit = 134217728
[security]
ca-path = ""
cert-path = ""
key-path = ""
cert-allowed-cn = []
mtls = false
client-user-required = false
client-allowed-user = []
[kv-client]
enable-multiplexing = true
worker-concurrent = 8
grpc-stream-concurrent = 1
advance-interval-in-ms = 300
frontier-concurrent = 8
worker-pool-size = 0
region-scan-limit = 40
region-retry-duration = "1m"
[debug.db]
count = 8
[debug.scheduler]
heartbeat-tick = 2
check-balance-interval = "1m"
"#;
    let c = file(text).unwrap();
    assert_eq!(c.owner_flush_interval, Duration::from_millis(50));
    assert_eq!(
        c.per_table_memory_quota,
        20 * 1024 * 1024,
        "0 means the default"
    );
}

#[test]
fn per_table_memory_quota_is_every_pipelines_sorter_budget() {
    let c = file("per-table-memory-quota = 8388608\n").unwrap();
    assert_eq!(c.table_pipeline().sorter.table_quota, 8 << 20);
    // The other pipeline settings keep their defaults.
    let defaults = crate::pipeline::table::TablePipelineConfig::default();
    assert_eq!(c.table_pipeline().poll_interval, defaults.poll_interval);
    assert_eq!(c.table_pipeline().max_slice_ms, defaults.max_slice_ms);
    let unset = resolve_with(&ServerFlags::default(), None).unwrap();
    assert_eq!(unset.table_pipeline().sorter.table_quota, 20 << 20);
}

#[test]
fn every_validation_error_names_key_and_value() {
    let flag = |f: fn(&mut ServerFlags)| {
        let mut s = ServerFlags::default();
        f(&mut s);
        s
    };
    let cases: Vec<(ServerFlags, Option<&str>, &str)> = vec![
        (
            ServerFlags::default(),
            Some("gc-ttl = 0"),
            "invalid gc-ttl \"0\": must be > 0",
        ),
        (
            flag(|f| f.addr = Some(" ".into())),
            None,
            "invalid addr \" \": must not be empty",
        ),
        (
            flag(|f| f.advertise_addr = Some("0.0.0.0:8300".into())),
            None,
            "invalid advertise-addr \"0.0.0.0:8300\": must name a reachable host",
        ),
        (
            flag(|f| f.advertise_addr = Some("host".into())),
            None,
            "invalid advertise-addr \"host\": must be host:port",
        ),
        (
            flag(|f| f.advertise_addr = Some("host:http".into())),
            None,
            "the port is not a number",
        ),
        (
            flag(|f| f.log_level = Some("loud".into())),
            None,
            "invalid log-level \"loud\"",
        ),
        (
            flag(|f| f.log_format = Some("xml".into())),
            None,
            "invalid log-format \"xml\": use text or json",
        ),
        (
            flag(|f| f.tz = Some("Mars/Olympus".into())),
            None,
            "invalid tz \"Mars/Olympus\": unknown time zone",
        ),
        (
            flag(|f| f.pd = Some("127.0.0.1:2379".into())),
            None,
            "invalid --pd \"127.0.0.1:2379\"",
        ),
        (
            flag(|f| f.pd = Some("ftp://h:1".into())),
            None,
            "the scheme must be http or https",
        ),
        (
            flag(|f| f.pd = Some("https://h:2379".into())),
            None,
            "https needs a CA",
        ),
        (
            flag(|f| f.pd = Some(",".into())),
            None,
            "give at least one etcd endpoint",
        ),
        (
            flag(|f| f.owner_flush_interval = Some("5xs".into())),
            None,
            "invalid owner-flush-interval \"5xs\": not a duration",
        ),
        (
            flag(|f| f.processor_flush_interval = Some("0s".into())),
            None,
            "invalid processor-flush-interval",
        ),
        (
            flag(|f| f.cluster_prefix = Some("tidb/cdc".into())),
            None,
            "invalid cluster-prefix \"tidb/cdc\"",
        ),
        (
            flag(|f| f.cluster_prefix = Some("/tidb/".into())),
            None,
            "must start with / and not end with /",
        ),
        (
            flag(|f| f.upstream = Some("nope".into())),
            None,
            "invalid upstream \"nope\"",
        ),
        (
            ServerFlags::default(),
            Some("per-table-memory-quota = 1024"),
            "invalid per-table-memory-quota \"1024\": must be at least 6291456",
        ),
        (
            ServerFlags::default(),
            Some("[sorter]\nmax-memory-percentage = 101"),
            "invalid sorter.max-memory-percentage \"101\"",
        ),
        (
            ServerFlags::default(),
            Some("[sorter]\nnum-workerpool-goroutine = 0"),
            "invalid sorter.num-workerpool-goroutine",
        ),
        (
            ServerFlags::default(),
            Some("[sorter]\nchunk-size-limit = 1"),
            "invalid sorter.chunk-size-limit",
        ),
        (
            ServerFlags::default(),
            Some("[kv-client]\nworker-concurrent = 0"),
            "invalid kv-client.worker-concurrent",
        ),
        (
            ServerFlags::default(),
            Some("[kv-client]\nregion-scan-limit = 0"),
            "invalid kv-client.region-scan-limit",
        ),
    ];
    for (flags, text, want) in cases {
        let e = err(flags, text);
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
}

#[test]
fn a_short_session_ttl_is_reset_with_a_warning() {
    let c = file("capture-session-ttl = 3").unwrap();
    assert_eq!(c.capture_session_ttl, Duration::from_secs(10));
    assert_eq!(
        c.warnings,
        ["capture-session-ttl 3 is below 5 s; using 10 s"]
    );
    assert_eq!(
        file("capture-session-ttl = 6").unwrap().capture_session_ttl,
        Duration::from_secs(6)
    );
}

#[test]
fn durations_and_zones() {
    assert_eq!(
        parse_duration("x", "50ms").unwrap(),
        Duration::from_millis(50)
    );
    assert_eq!(
        parse_duration("x", "1m30s").unwrap(),
        Duration::from_secs(90)
    );
    assert!(parse_duration("x", "5xs").is_err());
    assert!(matches!(timezone("System"), Ok(TimeZone::Local)));
    assert!(matches!(timezone("Asia/Shanghai"), Ok(TimeZone::Named(_))));
    assert!(timezone("Nowhere/Land").is_err());
}

#[test]
fn the_config_route_answers_ticdc_keys_with_go_durations() {
    let c = file("owner-flush-interval = '50ms'\nupstream = 'demo://u:secret@x/'").unwrap();
    let j = c.to_json();
    assert_eq!(j["owner-flush-interval"], 50_000_000);
    assert_eq!(j["gc-ttl"], 86_400);
    assert!(!j.to_string().contains("secret"), "{j}");
}

/// Issue #12 item 5: TiCDC's `[security]` keys and `--ca --cert --key --cert-allowed-cn`.
#[test]
fn security_comes_from_the_file_and_flags_and_must_match_the_endpoints() {
    fn with(f: impl FnOnce(&mut ServerFlags)) -> ServerFlags {
        let mut flags = ServerFlags::default();
        f(&mut flags);
        flags
    }
    let text = "[security]\nca-path = '/f/ca.pem'\ncert-path = '/f/c.pem'\nkey-path = '/f/k.pem'\n\
                cert-allowed-cn = ['ops']";
    let https = |f: &mut ServerFlags| f.pd = Some("https://127.0.0.1:2379".into());
    let c = resolve_with(&with(https), Some((Path::new("/etc/cdc.toml"), text))).unwrap();
    assert_eq!(c.security.ca_path.as_deref(), Some(Path::new("/f/ca.pem")));
    assert_eq!(c.security.cert_allowed_cn, ["ops"]);
    let j = c.to_json();
    assert_eq!(j["security"]["cert-path"], "/f/c.pem");
    assert_eq!(j["security"]["cert-allowed-cn"], serde_json::json!(["ops"]));

    let flags = with(|f| {
        https(f);
        f.ca = Some("/x/ca.pem".into());
        f.cert_allowed_cn = Some("a, b".into());
    });
    let c = resolve_with(&flags, Some((Path::new("/etc/cdc.toml"), text))).unwrap();
    assert_eq!(c.security.ca_path.as_deref(), Some(Path::new("/x/ca.pem")));
    assert_eq!(c.security.key_path.as_deref(), Some(Path::new("/f/k.pem")));
    assert_eq!(c.security.cert_allowed_cn, ["a", "b"]);

    // TiCDC's file lists every key, empty: TLS stays off.
    let c = file("[security]\nca-path = ''\ncert-path = ''\nkey-path = ''\ncert-allowed-cn = []");
    assert!(!c.unwrap().security.is_tls());

    let cases = [
        (
            with(|f| f.ca = Some("/x/ca.pem".into())),
            None,
            "also needs --cert and --key",
        ),
        (
            with(|f| {
                https(f);
                f.ca = Some("/x/ca.pem".into());
                f.cert = Some("/x/c.pem".into());
            }),
            None,
            "--cert and --key (cert-path, key-path) go together",
        ),
        (
            Default::default(),
            Some(text),
            "the endpoints must be https://",
        ),
        (
            with(|f| f.cert_allowed_cn = Some("a".into())),
            None,
            "need --ca",
        ),
    ];
    for (flags, text, want) in cases {
        let e = err(flags, text);
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
}

#[test]
fn a_sort_dir_flag_is_accepted_with_a_deprecation_warning() {
    let flags = ServerFlags {
        sort_dir: Some("/tmp/sort".into()),
        ..ServerFlags::default()
    };
    let c = resolve_with(&flags, None).expect("accepted");
    assert_eq!(
        c.warnings,
        ["--sort-dir is deprecated and ignored (/tmp/sort): the sorter works under --data-dir"]
    );
}

/// Issue #14: the `[sorter]` keys TiCDC v5 honours are used, and their ranges checked.
#[test]
fn sorter_keys_are_used_and_checked() {
    let c = file(
        "data-dir = '/var/cdc'\n[sorter]\nmax-memory-percentage = 10\nmax-memory-consumption = 1073741824\nchunk-size-limit = 2097152\nnum-concurrent-worker = 3\n",
    )
    .unwrap();
    assert_eq!(c.sort_dir(), Path::new("/var/cdc/tmp/sorter"));
    assert_eq!(c.sorter.num_concurrent_worker, Some(3));
    let pipeline = c.table_pipeline();
    assert_eq!(
        pipeline.sorter.chunk_limit,
        2 << 20,
        "chunk-size-limit bounds a run in memory"
    );
    assert_eq!(pipeline.sorter.table_quota, 20 << 20);
    let memory = c.sorter.memory();
    assert!(memory.limit() <= 1 << 30, "the smaller of the two keys");
    assert_eq!(c.to_json()["sorter"]["sort-dir"], "/var/cdc/tmp/sorter");

    let c = file("data-dir = '/var/cdc'\n[sorter]\nsort-dir = '/fast/sorter'\n").unwrap();
    assert_eq!(
        c.sort_dir(),
        Path::new("/fast/sorter"),
        "an explicit sort-dir wins"
    );
    let c = resolve_with(&ServerFlags::default(), None).unwrap();
    assert_eq!(
        c.sort_dir(),
        Path::new("/tmp/cdc_data/tmp/sorter"),
        "TiCDC's place without a data dir"
    );

    for (text, key) in [
        (
            "[sorter]\nnum-concurrent-worker = 0\n",
            "sorter.num-concurrent-worker",
        ),
        (
            "[sorter]\nmax-memory-percentage = 101\n",
            "sorter.max-memory-percentage",
        ),
        (
            "[sorter]\nchunk-size-limit = 1000\n",
            "sorter.chunk-size-limit",
        ),
        (
            "[sorter]\nnum-workerpool-goroutine = 0\n",
            "sorter.num-workerpool-goroutine",
        ),
    ] {
        let e = file(text).unwrap_err().to_string();
        assert!(e.starts_with(&format!("invalid {key} ")), "{e}");
    }
}
