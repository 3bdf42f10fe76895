//! ReplicaConfig (facts §2.9): per-changefeed replication settings, with TiCDC's defaults.

use serde::{Deserialize, Deserializer, Serialize};

use super::Extra;

/// Reads `null` (a Go nil pointer) as the type's default.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The replica config of a changefeed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicaConfig {
    /// Table-name matching is case sensitive.
    #[serde(rename = "case-sensitive")]
    pub case_sensitive: bool,
    /// Carry old values of rows.
    #[serde(rename = "enable-old-value")]
    pub enable_old_value: bool,
    /// Replicate tables without a valid index too.
    #[serde(rename = "force-replicate")]
    pub force_replicate: bool,
    /// Check the GC safe point at create/resume.
    #[serde(rename = "check-gc-safe-point")]
    pub check_gc_safe_point: bool,
    /// Table filter.
    #[serde(deserialize_with = "null_default")]
    pub filter: FilterConfig,
    /// Mounter settings.
    #[serde(deserialize_with = "null_default")]
    pub mounter: MounterConfig,
    /// Sink settings.
    #[serde(deserialize_with = "null_default")]
    pub sink: SinkConfig,
    /// Cyclic replication settings.
    #[serde(rename = "cyclic-replication", deserialize_with = "null_default")]
    pub cyclic_replication: CyclicConfig,
    /// Scheduler settings.
    #[serde(deserialize_with = "null_default")]
    pub scheduler: SchedulerConfig,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            case_sensitive: true,
            enable_old_value: true,
            force_replicate: false,
            check_gc_safe_point: true,
            filter: FilterConfig::default(),
            mounter: MounterConfig::default(),
            sink: SinkConfig::default(),
            cyclic_replication: CyclicConfig::default(),
            scheduler: SchedulerConfig::default(),
            extra: Extra::new(),
        }
    }
}

/// Table filter rules. The tidb-tools rule lists (`do-tables`, `do-dbs`, `ignore-tables`,
/// `ignore-dbs`), omitted by Go when nil, live in `extra` and round-trip untouched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterConfig {
    /// Table-filter rules, default `["*.*"]`.
    pub rules: Vec<String>,
    /// Transactions to skip, by start ts.
    #[serde(rename = "ignore-txn-start-ts")]
    pub ignore_txn_start_ts: Option<Vec<u64>>,
    /// Unknown and omitempty fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            rules: vec!["*.*".to_owned()],
            ignore_txn_start_ts: None,
            extra: Extra::new(),
        }
    }
}

/// Mounter settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MounterConfig {
    /// Worker count, default 16.
    #[serde(rename = "worker-num")]
    pub worker_num: i64,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for MounterConfig {
    fn default() -> Self {
        Self {
            worker_num: 16,
            extra: Extra::new(),
        }
    }
}

/// One dispatcher rule of the sink config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DispatchRule {
    /// Table matchers.
    pub matcher: Vec<String>,
    /// Dispatcher name.
    pub dispatcher: String,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Sink settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkConfig {
    /// Dispatcher rules, or null.
    pub dispatchers: Option<Vec<DispatchRule>>,
    /// Protocol, default `default`.
    pub protocol: String,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            dispatchers: None,
            protocol: "default".to_owned(),
            extra: Extra::new(),
        }
    }
}

/// Cyclic replication settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CyclicConfig {
    /// Enabled.
    pub enable: bool,
    /// This cluster's replica id.
    #[serde(rename = "replica-id")]
    pub replica_id: u64,
    /// Replica ids whose changes are filtered out, or null.
    #[serde(rename = "filter-replica-ids")]
    pub filter_replica_ids: Option<Vec<u64>>,
    /// Id buckets.
    #[serde(rename = "id-buckets")]
    pub id_buckets: i64,
    /// Replicate DDL too.
    #[serde(rename = "sync-ddl")]
    pub sync_ddl: bool,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Scheduler settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// Scheduler type, default `table-number`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Polling time, default -1.
    #[serde(rename = "polling-time")]
    pub polling_time: i64,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            kind: "table-number".to_owned(),
            polling_time: -1,
            extra: Extra::new(),
        }
    }
}
