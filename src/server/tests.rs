use std::sync::Arc;
use std::time::Duration;

use super::*;

fn server_config(upstream: &str, gc_ttl: Duration) -> ServerConfig {
    with_pipelines(upstream, gc_ttl, TablePipelineConfig::default())
}

fn with_pipelines(
    upstream: &str,
    gc_ttl: Duration,
    table_pipeline: TablePipelineConfig,
) -> ServerConfig {
    ServerConfig {
        endpoints: vec!["http://127.0.0.1:2379".into()],
        addr: "127.0.0.1:8300".into(),
        advertise_addr: "127.0.0.1:8300".into(),
        cluster_prefix: "/tidb/cdc".into(),
        upstream: Some(upstream.into()),
        session_ttl: Duration::from_secs(10),
        owner_flush_interval: Duration::from_millis(250),
        processor_flush_interval: Duration::from_millis(100),
        gc_ttl,
        tz: TimeZone::default(),
        table_pipeline,
        sort_dir: std::env::temp_dir().join("rcdc-unused-sort-dir"),
        data_plane: DataPlaneRuntimeConfig::default(),
        config_json: serde_json::Value::Null,
        set_log_level: Arc::new(|_| Ok(())),
        recording: crate::record::RecordingControl::new(Default::default()),
        security: Security::plain(),
    }
}

/// Item 10 of issue #11: `--gc-ttl` was validated and shown at `/config` but the owner
/// pushed safe points with the default TTL.
#[test]
fn issue_11_the_owner_pushes_safe_points_with_the_configured_gc_ttl() {
    let owner = owner_config(
        &server_config("demo://?seed=3", Duration::from_secs(600)),
        "demo://?seed=3",
    );
    assert_eq!(owner.gc.ttl_secs, 600);
    assert_eq!(owner.flush_interval_ms, 250);
}

/// The owner groups changefeeds by upstream: those naming none belong to `--upstream`, so a
/// changefeed naming that URI explicitly shares their safe point instead of overwriting it.
#[test]
fn issue_11_the_owner_knows_the_default_upstream() {
    let owner = owner_config(
        &server_config("demo://?seed=3", Duration::from_secs(600)),
        "demo://?seed=3",
    );
    assert_eq!(owner.gc.default_upstream, "demo://?seed=3");
}

/// Item 10 of issue #11: `per-table-memory-quota` was validated but every pipeline used the
/// default sorter budget.
#[test]
fn the_capture_starts_pipelines_with_the_configured_sorter_budget() {
    let table = TablePipelineConfig {
        sorter: crate::pipeline::sorter::SorterConfig {
            table_quota: 8 << 20,
            ..Default::default()
        },
        ..Default::default()
    };
    let plane = Arc::new(DataPlane::new("demo://", Arc::new(SystemClock)));
    let roles = cluster_roles(
        &with_pipelines("demo://", Duration::from_secs(600), table),
        "demo://",
        plane,
        DataPlaneRuntime::inline(),
        Default::default(),
    );
    assert_eq!(roles.table.sorter.table_quota, 8 << 20);
    assert_eq!(
        roles.owner.gc.ttl_secs, 600,
        "the owner's settings come along"
    );
}
