//! `cdc server` configuration (facts §7.3): defaults < the TOML file (`--config`, strict:
//! an unknown key is an error) < flags set explicitly. Then validation, with messages that
//! name the key and the bad value.
//!
//! The file accepts TiCDC's whole server key set, so a TiCDC config loads unchanged; keys that
//! rcdc does not use (kv-client tuning, `[debug]`; `[sorter]` is in `config/sorter.rs`) are checked for
//! type where rcdc knows them and otherwise ignored. rcdc adds `upstream`, `cluster-prefix`,
//! `record-dir` and `log-format`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::views::TimeZone;
use crate::pipeline::sorter::SorterConfig;
use crate::pipeline::table::TablePipelineConfig;

mod sorter;
use crate::security::{Role, SecurityConfig};
pub use sorter::SorterSettings;

/// The upstream of `cdc server` without `--upstream` (and without a PD behind `--pd`).
pub const DEFAULT_UPSTREAM: &str = "demo://";
/// `cdc server` flags; every one optional so "set explicitly" is known.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServerFlags {
    /// etcd endpoints, comma-separated (default http://127.0.0.1:2379).
    #[arg(long)]
    pub pd: Option<String>,
    /// Listen address of the HTTP API (default 127.0.0.1:8300).
    #[arg(long)]
    pub addr: Option<String>,
    /// Address advertised to the cluster (default: --addr).
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// Server config file (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Log level: trace, debug, info, warn, error (default info).
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format: text or json (default text).
    #[arg(long)]
    pub log_format: Option<String>,
    /// Data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Service GC safe point TTL in seconds (default 86400).
    #[arg(long)]
    pub gc_ttl: Option<u64>,
    /// Time zone for rendered times: System or an IANA name (default System).
    #[arg(long)]
    pub tz: Option<String>,
    /// Owner tick / status flush interval, e.g. 200ms.
    #[arg(long)]
    pub owner_flush_interval: Option<String>,
    /// Processor tick / position flush interval, e.g. 100ms.
    #[arg(long)]
    pub processor_flush_interval: Option<String>,
    /// Root prefix of the cluster's keys in etcd (default /tidb/cdc).
    #[arg(long)]
    pub cluster_prefix: Option<String>,
    /// Default upstream of changefeeds (default demo://).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Record each owner incarnation into this directory (for `cdc replay`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// CA certificate (PEM): turns TLS on for etcd, the API and forwarding.
    #[arg(long)]
    pub ca: Option<String>,
    /// This capture's certificate (PEM), for the API and as etcd client; needs --ca.
    #[arg(long)]
    pub cert: Option<String>,
    /// The key of --cert (PEM).
    #[arg(long)]
    pub key: Option<String>,
    /// Client certificate CNs the API accepts, comma-separated (default: any the CA signed).
    #[arg(long)]
    pub cert_allowed_cn: Option<String>,
    /// Deprecated in TiCDC and ignored: the sorter works under --data-dir.
    #[arg(long, hide = true)]
    pub sort_dir: Option<String>,
}

/// The resolved configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// etcd endpoints.
    pub pd: Vec<String>,
    /// Listen address.
    pub addr: String,
    /// Advertised address.
    pub advertise_addr: String,
    /// Log file; `None` = stderr.
    pub log_file: Option<PathBuf>,
    /// Log level.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Data directory: the sorter's spill files (`<data-dir>/tmp/sorter`) and recordings.
    pub data_dir: Option<PathBuf>,
    /// GC TTL.
    pub gc_ttl: Duration,
    /// The zone name as given.
    pub tz: String,
    /// Session TTL.
    pub capture_session_ttl: Duration,
    /// Owner flush interval.
    pub owner_flush_interval: Duration,
    /// Processor flush interval.
    pub processor_flush_interval: Duration,
    /// Sorter memory per table.
    pub per_table_memory_quota: u64,
    /// `[sorter]`.
    pub sorter: SorterSettings,
    /// Cluster key prefix.
    pub cluster_prefix: String,
    /// Default upstream (`None`: the TiDB cluster behind `--pd` when it is a PD, else
    /// [`DEFAULT_UPSTREAM`]; server start decides).
    pub upstream: Option<String>,
    /// Recording directory.
    pub record_dir: Option<PathBuf>,
    /// `[security]` / `--ca --cert --key --cert-allowed-cn` (files not read yet).
    pub security: SecurityConfig,
    /// Notes for the log (values reset to defaults).
    pub warnings: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            pd: vec!["http://127.0.0.1:2379".into()],
            addr: "127.0.0.1:8300".into(),
            advertise_addr: String::new(),
            log_file: None,
            log_level: "info".into(),
            log_format: "text".into(),
            data_dir: None,
            gc_ttl: Duration::from_secs(86_400),
            tz: "System".into(),
            capture_session_ttl: Duration::from_secs(10),
            owner_flush_interval: Duration::from_millis(200),
            processor_flush_interval: Duration::from_millis(100),
            per_table_memory_quota: 20 * 1024 * 1024,
            sorter: SorterSettings::default(),
            cluster_prefix: "/tidb/cdc".into(),
            upstream: None,
            record_dir: None,
            security: SecurityConfig::default(),
            warnings: vec![],
        }
    }
}

/// A configuration error, naming the key (or flag) and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        error: String,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("config file {path}: {error}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong (toml names the line, column and key).
        error: String,
    },
    /// The TLS settings do not go together.
    #[error("{0}")]
    Security(String),
    /// A value is out of range or malformed.
    #[error("invalid {key} {value:?}: {reason}")]
    Invalid {
        /// The key or flag.
        key: &'static str,
        /// The value given.
        value: String,
        /// Why.
        reason: String,
    },
}

fn invalid(key: &'static str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

// Parsed so that a TiCDC file is type-checked and accepted; rcdc does not use every key.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    addr: Option<String>,
    advertise_addr: Option<String>,
    log_file: Option<String>,
    log_level: Option<String>,
    data_dir: Option<String>,
    gc_ttl: Option<u64>,
    tz: Option<String>,
    capture_session_ttl: Option<u64>,
    owner_flush_interval: Option<String>,
    processor_flush_interval: Option<String>,
    per_table_memory_quota: Option<u64>,
    cluster_id: Option<String>,
    gc_tuner_memory_threshold: Option<u64>,
    max_memory_percentage: Option<u64>,
    newarch: Option<bool>,
    enable_legacy_safepoint: Option<bool>,
    memory_limit_percentage: Option<f64>,
    // rcdc additions.
    upstream: Option<String>,
    cluster_prefix: Option<String>,
    record_dir: Option<String>,
    log_format: Option<String>,
    log: Option<LogSection>,
    sorter: Option<sorter::SorterSection>,
    security: Option<SecuritySection>,
    kv_client: Option<KvClientSection>,
    /// TiCDC's internal tuning; accepted whole, not used.
    debug: Option<toml::Table>,
    /// New-architecture sections, accepted whole, not used.
    encryption: Option<toml::Table>,
}

// Parsed so that a TiCDC file is type-checked and accepted; rcdc does not use every key.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LogSection {
    error_output: Option<String>,
    file: Option<LogFileSection>,
}

// Parsed so that a TiCDC file is type-checked and accepted; rcdc does not use every key.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LogFileSection {
    max_size: Option<u64>,
    max_days: Option<u64>,
    max_backups: Option<u64>,
}

// Parsed so that a TiCDC file is type-checked and accepted; rcdc does not use every key.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SecuritySection {
    ca_path: Option<String>,
    cert_path: Option<String>,
    key_path: Option<String>,
    cert_allowed_cn: Option<Vec<String>>,
    mtls: Option<bool>,
    client_user_required: Option<bool>,
    client_allowed_user: Option<Vec<String>>,
}

// Parsed so that a TiCDC file is type-checked and accepted; rcdc does not use every key.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct KvClientSection {
    enable_multiplexing: Option<bool>,
    worker_concurrent: Option<u64>,
    grpc_stream_concurrent: Option<u64>,
    advance_interval_in_ms: Option<u64>,
    frontier_concurrent: Option<u64>,
    worker_pool_size: Option<u64>,
    region_scan_limit: Option<u64>,
    region_retry_duration: Option<String>,
}

/// Parses a Go duration string (`200ms`, `1m30s`).
pub fn parse_duration(key: &'static str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim())
        .map_err(|e| invalid(key, s, format!("not a duration like 200ms or 1m ({e})")))
}

/// Reads `--config` if given, then resolves.
pub fn resolve(flags: &ServerFlags) -> Result<ServerConfig, ConfigError> {
    let file = match &flags.config {
        Some(p) => Some((
            p.clone(),
            std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                path: p.display().to_string(),
                error: e.to_string(),
            })?,
        )),
        None => None,
    };
    resolve_with(flags, file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))
}

/// Where a TOML error at byte `offset` of `text` is: the line and column, and — when the line
/// is a `key = value` — the key (with its `[table]`) and the value as written, since toml's own
/// message for a bad value ("invalid value: integer `-5`, expected u64") names neither.
fn where_in(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or_default();
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.len() - line_start + 1;
    let line = text[line_start..].lines().next().unwrap_or_default();
    let table = before
        .lines()
        .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'))
        .next_back();
    let assignment = line
        .split_once('=')
        .map(|(k, v)| (k.trim(), v.split('#').next().unwrap_or_default().trim()))
        .filter(|(k, _)| !k.is_empty() && !k.starts_with('['));
    match assignment {
        Some((key, value)) => {
            let key = table.map_or_else(|| key.to_owned(), |t| format!("{}.{key}", t.trim()));
            format!("line {line_no}, column {col}: key {key} = {value}: ")
        }
        None => format!("line {line_no}, column {col}: "),
    }
}

/// Resolves from flags and an optional file's text: defaults < file < flags.
pub fn resolve_with(
    flags: &ServerFlags,
    file: Option<(&Path, &str)>,
) -> Result<ServerConfig, ConfigError> {
    let f: FileConfig = match file {
        Some((path, text)) => toml::from_str(text).map_err(|e: toml::de::Error| {
            let at = e
                .span()
                .map(|s| where_in(text, s.start))
                .unwrap_or_default();
            ConfigError::Parse {
                path: path.display().to_string(),
                error: format!("{at}{}", e.message()),
            }
        })?,
        None => FileConfig::default(),
    };
    let mut c = ServerConfig::default();
    let pick = |flag: &Option<String>, file: &Option<String>| flag.clone().or_else(|| file.clone());

    if let Some(pd) = &flags.pd {
        c.pd = pd
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if c.pd.is_empty() {
            return Err(invalid("--pd", pd, "give at least one etcd endpoint"));
        }
    }
    if let Some(a) = pick(&flags.addr, &f.addr) {
        c.addr = a;
    }
    c.advertise_addr = pick(&flags.advertise_addr, &f.advertise_addr).unwrap_or_default();
    c.log_file = flags.log_file.clone().or_else(|| {
        f.log_file
            .clone()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    if let Some(l) = pick(&flags.log_level, &f.log_level) {
        c.log_level = l;
    }
    if let Some(l) = pick(&flags.log_format, &f.log_format) {
        c.log_format = l;
    }
    c.data_dir = flags.data_dir.clone().or_else(|| {
        f.data_dir
            .clone()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    if let Some(t) = flags.gc_ttl.or(f.gc_ttl) {
        if t == 0 {
            return Err(invalid("gc-ttl", t, "must be > 0"));
        }
        c.gc_ttl = Duration::from_secs(t);
    }
    if let Some(tz) = pick(&flags.tz, &f.tz) {
        c.tz = tz;
    }
    if let Some(dir) = &flags.sort_dir {
        c.warnings.push(format!(
            "--sort-dir is deprecated and ignored ({dir}): the sorter works under --data-dir"
        ));
    }
    if let Some(ttl) = f.capture_session_ttl {
        if ttl < 5 {
            c.warnings.push(format!(
                "capture-session-ttl {ttl} is below 5 s; using 10 s"
            ));
        } else {
            c.capture_session_ttl = Duration::from_secs(ttl);
        }
    }
    if let Some(d) = pick(&flags.owner_flush_interval, &f.owner_flush_interval) {
        c.owner_flush_interval = parse_duration("owner-flush-interval", &d)?;
    }
    if let Some(d) = pick(&flags.processor_flush_interval, &f.processor_flush_interval) {
        c.processor_flush_interval = parse_duration("processor-flush-interval", &d)?;
    }
    if let Some(q) = f.per_table_memory_quota {
        if q != 0 {
            if q < 6 * 1024 * 1024 {
                return Err(invalid(
                    "per-table-memory-quota",
                    q,
                    "must be at least 6291456 (6 MiB), or 0 for the default",
                ));
            }
            c.per_table_memory_quota = q;
        }
    }
    if let Some(p) = pick(&flags.cluster_prefix, &f.cluster_prefix) {
        c.cluster_prefix = p;
    }
    if let Some(u) = pick(&flags.upstream, &f.upstream) {
        c.upstream = Some(u);
    }
    c.record_dir = flags
        .record
        .clone()
        .or_else(|| f.record_dir.clone().map(PathBuf::from));
    c.sorter = SorterSettings::resolve(f.sorter.as_ref())?;
    if let Some(k) = &f.kv_client {
        if k.worker_concurrent == Some(0) {
            return Err(invalid("kv-client.worker-concurrent", 0, "must be > 0"));
        }
        if k.region_scan_limit == Some(0) {
            return Err(invalid("kv-client.region-scan-limit", 0, "must be > 0"));
        }
    }
    c.security = security(flags, f.security.as_ref());
    validate(&mut c)?;
    Ok(c)
}

/// `--ca --cert --key --cert-allowed-cn` over `[security]`; an empty value is unset, as in
/// TiCDC's file where every key is present and empty.
fn security(flags: &ServerFlags, file: Option<&SecuritySection>) -> SecurityConfig {
    let path = |flag: &Option<String>, key: Option<&String>| {
        flag.as_ref()
            .or(key)
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
    };
    let allowed = match &flags.cert_allowed_cn {
        Some(list) => list.split(',').map(|cn| cn.trim().to_owned()).collect(),
        None => file
            .and_then(|s| s.cert_allowed_cn.clone())
            .unwrap_or_default(),
    };
    SecurityConfig {
        ca_path: path(&flags.ca, file.and_then(|s| s.ca_path.as_ref())),
        cert_path: path(&flags.cert, file.and_then(|s| s.cert_path.as_ref())),
        key_path: path(&flags.key, file.and_then(|s| s.key_path.as_ref())),
        cert_allowed_cn: allowed.into_iter().filter(|cn| !cn.is_empty()).collect(),
    }
}

/// The `--pd` endpoints' scheme must match TLS use (facts §7.3): https with a CA, http
/// without. Shared with `cdc cli`.
pub fn check_endpoint_schemes(endpoints: &[String], tls: bool) -> Result<(), ConfigError> {
    for ep in endpoints {
        let url =
            url::Url::parse(ep).map_err(|e| invalid("--pd", ep, format!("not a URL ({e})")))?;
        match (url.scheme(), tls) {
            ("https", false) => {
                return Err(invalid(
                    "--pd",
                    ep,
                    "https needs a CA (--ca or [security] ca-path)",
                ))
            }
            ("http", true) => {
                return Err(invalid(
                    "--pd",
                    ep,
                    "with TLS on (--ca or [security] ca-path) the endpoints must be https://",
                ))
            }
            ("http" | "https", _) => {}
            _ => return Err(invalid("--pd", ep, "the scheme must be http or https")),
        }
        if url.host_str().is_none() || url.port_or_known_default().is_none() {
            return Err(invalid("--pd", ep, "must name a host and port"));
        }
    }
    Ok(())
}

fn validate(c: &mut ServerConfig) -> Result<(), ConfigError> {
    if c.addr.trim().is_empty() {
        return Err(invalid("addr", &c.addr, "must not be empty"));
    }
    if c.advertise_addr.is_empty() {
        c.advertise_addr = c.addr.clone();
    }
    let (host, port) = c
        .advertise_addr
        .rsplit_once(':')
        .ok_or_else(|| invalid("advertise-addr", &c.advertise_addr, "must be host:port"))?;
    if port.parse::<u16>().is_err() {
        return Err(invalid(
            "advertise-addr",
            &c.advertise_addr,
            "the port is not a number",
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
    {
        return Err(invalid(
            "advertise-addr",
            &c.advertise_addr,
            "must name a reachable host, not an unspecified address like 0.0.0.0",
        ));
    }
    crate::logging::parse_level(&c.log_level).map_err(|_| {
        invalid(
            "log-level",
            &c.log_level,
            format!("use one of {}", crate::logging::LEVELS.join(", ")),
        )
    })?;
    if !matches!(c.log_format.as_str(), "text" | "json") {
        return Err(invalid("log-format", &c.log_format, "use text or json"));
    }
    timezone(&c.tz)?;
    c.security
        .check(Role::Server)
        .map_err(|e| ConfigError::Security(e.to_string()))?;
    check_endpoint_schemes(&c.pd, c.security.is_tls())?;
    if !c.cluster_prefix.starts_with('/')
        || c.cluster_prefix.ends_with('/')
        || c.cluster_prefix.len() < 2
    {
        return Err(invalid(
            "cluster-prefix",
            &c.cluster_prefix,
            "must start with / and not end with /, e.g. /tidb/cdc",
        ));
    }
    if let Some(u) = c
        .upstream
        .as_deref()
        .filter(|u| url::Url::parse(u).is_err())
    {
        return Err(invalid("upstream", u, "not a URI like demo://"));
    }
    if c.owner_flush_interval.is_zero() {
        return Err(invalid("owner-flush-interval", "0s", "must be > 0"));
    }
    if c.processor_flush_interval.is_zero() {
        return Err(invalid("processor-flush-interval", "0s", "must be > 0"));
    }
    Ok(())
}

/// `--tz`: `System`/`SYSTEM`/`Local` or an IANA zone known to chrono-tz.
pub fn timezone(tz: &str) -> Result<TimeZone, ConfigError> {
    if matches!(tz, "System" | "SYSTEM" | "system" | "Local" | "") {
        return Ok(TimeZone::Local);
    }
    tz.parse::<chrono_tz::Tz>()
        .map(TimeZone::Named)
        .map_err(|_| {
            invalid(
                "tz",
                tz,
                "unknown time zone; use System or an IANA name like Asia/Shanghai",
            )
        })
}

impl ServerConfig {
    /// The settings of every table pipeline the capture starts.
    pub fn table_pipeline(&self) -> TablePipelineConfig {
        TablePipelineConfig {
            // Validated to be at least 6 MiB; beyond the address space it is unlimited.
            sorter: SorterConfig {
                table_quota: usize::try_from(self.per_table_memory_quota).unwrap_or(usize::MAX),
                chunk_limit: usize::try_from(self.sorter.chunk_size_limit).unwrap_or(usize::MAX),
                ..SorterConfig::default()
            },
            ..TablePipelineConfig::default()
        }
    }

    /// Where the sorter spills: `[sorter] sort-dir` when set, else `<data-dir>/tmp/sorter`
    /// (TiCDC's place), with TiCDC's `/tmp/cdc_data` when there is no data dir.
    pub fn sort_dir(&self) -> PathBuf {
        match (&self.sorter.sort_dir, &self.data_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(data)) => data.join("tmp").join("sorter"),
            (None, None) => PathBuf::from("/tmp/cdc_data/tmp/sorter"),
        }
    }

    /// The `GET /config` answer: TiCDC's JSON keys, durations in nanoseconds like Go's.
    pub fn to_json(&self) -> serde_json::Value {
        let ns = |d: Duration| d.as_nanos() as u64;
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        serde_json::json!({
            "addr": self.addr,
            "advertise-addr": self.advertise_addr,
            "log-file": self.log_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "log-level": self.log_level,
            "data-dir": self.data_dir.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "gc-ttl": self.gc_ttl.as_secs(),
            "tz": self.tz,
            "capture-session-ttl": self.capture_session_ttl.as_secs(),
            "owner-flush-interval": ns(self.owner_flush_interval),
            "processor-flush-interval": ns(self.processor_flush_interval),
            "per-table-memory-quota": self.per_table_memory_quota,
            "sorter": self.sorter.to_json(&self.sort_dir()),
            "cluster-prefix": self.cluster_prefix,
            "upstream": crate::sink::mask_uri(self.upstream.as_deref().unwrap_or(DEFAULT_UPSTREAM)),
            "log-format": self.log_format,
            "record-dir": self.record_dir.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "security": {
                "ca-path": path(&self.security.ca_path),
                "cert-path": path(&self.security.cert_path),
                "key-path": path(&self.security.key_path),
                "cert-allowed-cn": self.security.cert_allowed_cn,
            },
        })
    }
}

#[cfg(test)]
mod tests;
