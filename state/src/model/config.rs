//! ReplicaConfig (facts §2.9): per-changefeed replication settings.
//!
//! Two kinds of "default" meet here, and they differ on purpose:
//! - `Default::default()` is TiCDC's `GetDefaultReplicaConfig()`, what a new changefeed gets;
//! - decoding fills a *missing field* with Go's zero value (`false`, `0`, `""`, `null`), as
//!   `encoding/json` does, while a *missing or null sub-object* (`filter`, `mounter`, `sink`,
//!   `cyclic-replication`, `scheduler`) becomes its TiCDC default, as `VerifyAndFix` does on
//!   every load. So `{"mounter":{}}` reads as worker-num 0 but `{"mounter":null}` as 16.

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::codec::null_default;
use super::Extra;

/// The replica config of a changefeed (Go `config.ReplicaConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaConfig {
    /// Table-name matching is case sensitive (default true).
    #[serde(rename = "case-sensitive", default)]
    pub case_sensitive: bool,
    /// Carry old values of rows (default true).
    #[serde(rename = "enable-old-value", default)]
    pub enable_old_value: bool,
    /// Replicate tables without a valid index too (default false).
    #[serde(rename = "force-replicate", default)]
    pub force_replicate: bool,
    /// Check the GC safe point at create/resume (default true).
    #[serde(rename = "check-gc-safe-point", default)]
    pub check_gc_safe_point: bool,
    /// Table filter.
    #[serde(default, deserialize_with = "null_default")]
    pub filter: FilterConfig,
    /// Mounter settings.
    #[serde(default, deserialize_with = "null_default")]
    pub mounter: MounterConfig,
    /// Sink settings.
    #[serde(default, deserialize_with = "null_default")]
    pub sink: SinkConfig,
    /// Cyclic replication settings.
    #[serde(
        rename = "cyclic-replication",
        default,
        deserialize_with = "null_default"
    )]
    pub cyclic_replication: CyclicConfig,
    /// Scheduler settings.
    #[serde(default, deserialize_with = "null_default")]
    pub scheduler: SchedulerConfig,
    /// Fields this version does not know, written back unchanged so that a newer writer's
    /// settings survive our read-modify-write.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for ReplicaConfig {
    /// TiCDC's `GetDefaultReplicaConfig()`.
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

/// Table filter rules (Go `config.FilterConfig`).
///
/// Go embeds tidb-tools' `*MySQLReplicationRules` here: its four fields appear in the JSON only
/// when that pointer is set, and then all four (each possibly `null`). That is modelled as
/// [`Self::mysql_replication_rules`], with hand-written serde so the field order is Go's:
/// `rules`, the four rule lists, `ignore-txn-start-ts`, then the unknown fields (among them
/// `ddl-allow-list`, which Go writes last and only when non-empty, as base64 because its
/// element type is a byte; we keep it opaque).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterConfig {
    /// Table-filter rules; the default is `["*.*"]`, `None` is Go's nil (`null`).
    pub rules: Option<Vec<String>>,
    /// The embedded MySQL-style rules, `None` when Go's pointer is nil (fields omitted).
    pub mysql_replication_rules: Option<MySqlReplicationRules>,
    /// Transactions to skip, by start ts; `None` is `null`.
    pub ignore_txn_start_ts: Option<Vec<u64>>,
    /// Unknown and opaque fields, kept in their order.
    pub extra: Extra,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            rules: Some(vec!["*.*".to_owned()]),
            mysql_replication_rules: None,
            ignore_txn_start_ts: None,
            extra: Extra::new(),
        }
    }
}

/// The JSON keys of [`MySqlReplicationRules`], which live at the filter's own level.
const MYSQL_RULE_KEYS: [&str; 4] = ["do-tables", "do-dbs", "ignore-tables", "ignore-dbs"];

impl Serialize for FilterConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("rules", &self.rules)?;
        if let Some(r) = &self.mysql_replication_rules {
            m.serialize_entry("do-tables", &r.do_tables)?;
            m.serialize_entry("do-dbs", &r.do_dbs)?;
            m.serialize_entry("ignore-tables", &r.ignore_tables)?;
            m.serialize_entry("ignore-dbs", &r.ignore_dbs)?;
        }
        m.serialize_entry("ignore-txn-start-ts", &self.ignore_txn_start_ts)?;
        for (k, v) in self.extra.iter() {
            // A known key smuggled into `extra` would be written twice; the typed field wins.
            let known = k == "rules" || k == "ignore-txn-start-ts";
            if !known && !MYSQL_RULE_KEYS.contains(&k.as_str()) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for FilterConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read the object whole, then split known from unknown keys in one ordered pass.
        let all = serde_json::Map::<String, Value>::deserialize(d)?;
        let mut out = FilterConfig {
            rules: None,
            mysql_replication_rules: None,
            ignore_txn_start_ts: None,
            extra: Extra::new(),
        };
        let mut mysql = serde_json::Map::new();
        for (k, v) in all {
            match k.as_str() {
                "rules" => out.rules = field(&k, v)?,
                "ignore-txn-start-ts" => out.ignore_txn_start_ts = field(&k, v)?,
                _ if MYSQL_RULE_KEYS.contains(&k.as_str()) => {
                    mysql.insert(k, v);
                }
                _ => {
                    out.extra.insert(k, v);
                }
            }
        }
        // Go allocates the embedded struct as soon as any of its keys appears, even as null.
        if !mysql.is_empty() {
            out.mysql_replication_rules = Some(field("filter rules", Value::Object(mysql))?);
        }
        Ok(out)
    }
}

/// Decodes one field of a hand-split object, naming it in the error.
fn field<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    name: &str,
    v: Value,
) -> Result<T, E> {
    serde_json::from_value(v).map_err(|e| E::custom(format!("filter field {name:?}: {e}")))
}

/// tidb-tools' `MySQLReplicationRules`: MySQL-style allow and block lists. Go writes all four
/// lists (each `null` when nil) whenever the rules are set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MySqlReplicationRules {
    /// Allowed tables.
    #[serde(rename = "do-tables", default)]
    pub do_tables: Option<Vec<FilterTable>>,
    /// Allowed schemas.
    #[serde(rename = "do-dbs", default)]
    pub do_dbs: Option<Vec<String>>,
    /// Blocked tables.
    #[serde(rename = "ignore-tables", default)]
    pub ignore_tables: Option<Vec<FilterTable>>,
    /// Blocked schemas.
    #[serde(rename = "ignore-dbs", default)]
    pub ignore_dbs: Option<Vec<String>>,
}

/// A qualified table name in [`MySqlReplicationRules`] (tidb-tools `filter.Table`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterTable {
    /// Schema (database) name.
    #[serde(rename = "db-name", default)]
    pub db_name: String,
    /// Table name.
    #[serde(rename = "tbl-name", default)]
    pub tbl_name: String,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Mounter settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MounterConfig {
    /// Worker count, default 16.
    #[serde(rename = "worker-num", default)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRule {
    /// Table matchers; `None` is Go's nil (`null`).
    #[serde(default)]
    pub matcher: Option<Vec<String>>,
    /// Dispatcher name (`default`, `ts`, `rowid`, `table`, ...).
    #[serde(default)]
    pub dispatcher: String,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Sink settings.
///
/// Decoding also accepts TiCDC v4.0's layout `dispatch-rules: [{db-name, tbl-name, rule}]`, as
/// TiCDC's `ReplicaConfig.UnmarshalJSON` does on every decode: each old rule is appended to
/// `dispatchers` with matcher `db.tbl`, and the old key is dropped, so the next write stores
/// the new layout (the one known key that deliberately does not round-trip).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SinkConfigWire")]
pub struct SinkConfig {
    /// Dispatcher rules; `None` is Go's nil (`null`).
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

/// The decoded shape of [`SinkConfig`], including the v1 rules.
#[derive(Deserialize)]
struct SinkConfigWire {
    #[serde(default)]
    dispatchers: Option<Vec<DispatchRule>>,
    #[serde(default)]
    protocol: String,
    #[serde(rename = "dispatch-rules", default)]
    v1_rules: Option<Vec<V1DispatchRule>>,
    #[serde(flatten)]
    extra: Extra,
}

/// TiCDC v4.0's dispatch rule (`pkg/config/outdated/v1.go`).
#[derive(Deserialize)]
struct V1DispatchRule {
    #[serde(rename = "db-name", default)]
    db_name: String,
    #[serde(rename = "tbl-name", default)]
    tbl_name: String,
    #[serde(default)]
    rule: String,
}

impl From<SinkConfigWire> for SinkConfig {
    fn from(w: SinkConfigWire) -> Self {
        let mut dispatchers = w.dispatchers;
        for old in w.v1_rules.unwrap_or_default() {
            dispatchers.get_or_insert_with(Vec::new).push(DispatchRule {
                matcher: Some(vec![format!("{}.{}", old.db_name, old.tbl_name)]),
                dispatcher: old.rule,
                extra: Extra::new(),
            });
        }
        SinkConfig {
            dispatchers,
            protocol: w.protocol,
            extra: w.extra,
        }
    }
}

/// Cyclic replication settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CyclicConfig {
    /// Enabled.
    #[serde(default)]
    pub enable: bool,
    /// This cluster's replica id.
    #[serde(rename = "replica-id", default)]
    pub replica_id: u64,
    /// Replica ids whose changes are filtered out; `None` is `null`.
    #[serde(rename = "filter-replica-ids", default)]
    pub filter_replica_ids: Option<Vec<u64>>,
    /// Id buckets.
    #[serde(rename = "id-buckets", default)]
    pub id_buckets: i64,
    /// Replicate DDL too.
    #[serde(rename = "sync-ddl", default)]
    pub sync_ddl: bool,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Scheduler settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// Scheduler type, default `table-number`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Polling time, default -1.
    #[serde(rename = "polling-time", default)]
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

#[cfg(test)]
mod tests;
