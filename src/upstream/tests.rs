use super::*;

fn err(uri: &str) -> String {
    match parse_upstream_uri(uri) {
        Ok(u) => panic!("{uri} parsed: {u:?}"),
        Err(e) => e.to_string(),
    }
}

fn config(uri: &str) -> DemoConfig {
    match DemoConfig::from_uri(uri) {
        Ok(c) => c,
        Err(e) => panic!("{uri}: {e}"),
    }
}

#[test]
fn defaults_and_every_parameter() {
    assert_eq!(config("demo://"), DemoConfig::default());
    assert_eq!(config("demo:"), DemoConfig::default());
    assert_eq!(config("DEMO:///"), DemoConfig::default());
    let c = config(
        "demo://?tables=3&rows-per-second=10&key-space=7&txn-rows=2&seed=9&start=1000\
         &ddl=create:4@1m30s&retention=2500ms",
    );
    assert_eq!(
        c,
        DemoConfig {
            tables: 3,
            rows_per_second: 10,
            key_space: 7,
            txn_rows: 2,
            seed: 9,
            start_ms: 1000,
            ddl: vec![demo::ScheduledDdl {
                offset_ms: 90_000,
                create: true,
                table: rcdc_state::TableId(4),
            }],
            retention_ms: Some(2_500),
        }
    );
    assert_eq!(config("demo://?retention=none").retention_ms, None);
    assert_eq!(
        config("demo://?key-space=2").txn_rows,
        2,
        "default txn-rows capped"
    );
    // Percent-encoded values decode.
    assert_eq!(config("demo://?ddl=drop%3A1%402s").ddl.len(), 1);
}

#[test]
fn errors_name_the_culprit() {
    for (uri, needles) in [
        (
            "mysql://root@x:3306/",
            &["unsupported upstream scheme 'mysql'"][..],
        ),
        (
            "pd://127.0.0.1:2379",
            &[
                "pd://127.0.0.1:2379",
                "other than the cluster behind cdc server --pd",
            ],
        ),
        ("tikv://127.0.0.1:2379", &["'tikv'"]),
        ("no-scheme", &["missing scheme"]),
        (
            "demo://?tabels=3",
            &["unknown upstream parameter 'tabels'", "tables"],
        ),
        ("demo://?tables=x", &["'x'", "'tables'", "integer"]),
        ("demo://?tables=-1", &["'tables'"]),
        ("demo://?rows-per-second=1e3", &["'rows-per-second'"]),
        (
            "demo://?rows-per-second=99999999999",
            &["'rows-per-second'", "must be in"],
        ),
        ("demo://?key-space=0", &["'key-space'", "1..="]),
        (
            "demo://?key-space=3&txn-rows=4",
            &["'txn-rows'", "key-space"],
        ),
        ("demo://?seed=18446744073709551616", &["'seed'"]),
        ("demo://?retention=10", &["'retention'", "unit"]),
        ("demo://?retention=0s", &["'retention'", "positive"]),
        ("demo://?retention=5d", &["'retention'", "unknown unit 'd'"]),
        ("demo://?start=soon", &["'start'"]),
        ("demo://?seed=1&seed=2", &["'seed' given more than once"]),
        ("demo://somehost?seed=1", &["unexpected host 'somehost'"]),
        ("demo://?seed=1#frag", &["fragment"]),
        ("demo:///path", &["unexpected path '/path'"]),
    ] {
        let e = err(uri);
        for n in needles {
            assert!(e.contains(n), "{uri}: '{e}' lacks '{n}'");
        }
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration_ms("0"), Ok(0));
    assert_eq!(parse_duration_ms("1h2m3s4ms"), Ok(3_723_004));
    assert_eq!(parse_duration_ms("2500ms"), Ok(2_500));
    assert!(parse_duration_ms("").is_err());
    assert!(parse_duration_ms("s").is_err());
    assert!(parse_duration_ms("1.5s").is_err());
    assert!(parse_duration_ms("99999999999999999999h").is_err());
}
