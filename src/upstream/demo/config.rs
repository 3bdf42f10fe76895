//! `demo://` URI parameters.

use std::collections::BTreeSet;

use rcdc_state::TableId;

use super::super::{parse_duration_ms, UpstreamError};
use super::gen::TSO_PER_SEC;

/// The default epoch: 2023-11-14T22:13:20Z, fixed so that runs are reproducible.
pub const DEFAULT_START_MS: u64 = 1_700_000_000_000;
/// Largest `rows-per-second` (per table).
pub const MAX_ROWS_PER_SECOND: u64 = 1_000_000;
/// Largest `key-space`.
pub const MAX_KEY_SPACE: u64 = 1 << 40;
/// Largest `tables`.
pub const MAX_TABLES: u64 = 10_000_000;
/// Largest number of DDL entries (each id of a range counts).
pub const MAX_DDL_ENTRIES: usize = 200_000;

/// The parameters a `demo://` URI accepts.
pub const PARAMS: &[&str] = &[
    "tables",
    "rows-per-second",
    "key-space",
    "txn-rows",
    "seed",
    "start",
    "ddl",
    "retention",
];

/// One scheduled DDL, relative to the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledDdl {
    /// Milliseconds after `start`.
    pub offset_ms: u64,
    /// Create (true) or drop (false).
    pub create: bool,
    /// The table.
    pub table: TableId,
}

/// The demo upstream's configuration (see the module docs of [`super`] for the URI form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// Tables `1..=tables` exist from the beginning.
    pub tables: u64,
    /// Row changes per second per table (0 = none).
    pub rows_per_second: u64,
    /// Keys `0..key_space` per table.
    pub key_space: u64,
    /// Rows per transaction (≤ `key_space`).
    pub txn_rows: u64,
    /// The workload's seed.
    pub seed: u64,
    /// The epoch in Unix milliseconds: writes begin after it, DDL offsets count from it.
    pub start_ms: u64,
    /// The DDL schedule, in the order given.
    pub ddl: Vec<ScheduledDdl>,
    /// How long history is kept, in ms; `None` = forever.
    pub retention_ms: Option<u64>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            tables: 16,
            rows_per_second: 1000,
            key_space: 1000,
            txn_rows: 4,
            seed: 42,
            start_ms: DEFAULT_START_MS,
            ddl: Vec::new(),
            retention_ms: Some(10 * 60_000),
        }
    }
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> UpstreamError {
    UpstreamError::InvalidParameter {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_int(name: &str, value: &str, min: u64, max: u64) -> Result<u64, UpstreamError> {
    let n: u64 = value
        .parse()
        .map_err(|_| invalid(name, value, "not a non-negative integer"))?;
    if n < min || n > max {
        return Err(invalid(name, value, format!("must be in {min}..={max}")));
    }
    Ok(n)
}

impl DemoConfig {
    /// Parses a `demo://` URI.
    pub fn from_uri(uri: &str) -> Result<Self, UpstreamError> {
        let bad_uri = |reason: String| UpstreamError::InvalidUri {
            uri: uri.to_owned(),
            reason,
        };
        let url = url::Url::parse(uri).map_err(|e| bad_uri(e.to_string()))?;
        if !url.scheme().eq_ignore_ascii_case("demo") {
            return Err(UpstreamError::UnsupportedScheme {
                scheme: url.scheme().to_owned(),
                uri: uri.to_owned(),
            });
        }
        if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
            return Err(bad_uri(format!(
                "unexpected host '{host}' (write 'demo://?param=value')"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
            return Err(bad_uri(
                "unexpected user, password or port (write 'demo://?param=value')".to_owned(),
            ));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(bad_uri(format!(
                "unexpected path '{}' (write 'demo://?param=value')",
                url.path()
            )));
        }
        if let Some(f) = url.fragment() {
            return Err(bad_uri(format!("unexpected fragment '#{f}'")));
        }
        let mut seen = BTreeSet::new();
        let mut config = DemoConfig::default();
        let mut txn_rows_given = false;
        for (name, value) in url.query_pairs() {
            let (name, value) = (name.as_ref(), value.as_ref());
            if !PARAMS.contains(&name) {
                return Err(UpstreamError::UnknownParameter {
                    name: name.to_owned(),
                    known: PARAMS.join(", "),
                });
            }
            if !seen.insert(name.to_owned()) {
                return Err(UpstreamError::DuplicateParameter {
                    name: name.to_owned(),
                });
            }
            match name {
                "tables" => config.tables = parse_int(name, value, 0, MAX_TABLES)?,
                "rows-per-second" => {
                    config.rows_per_second = parse_int(name, value, 0, MAX_ROWS_PER_SECOND)?
                }
                "key-space" => config.key_space = parse_int(name, value, 1, MAX_KEY_SPACE)?,
                "txn-rows" => {
                    config.txn_rows = parse_int(name, value, 1, MAX_KEY_SPACE)?;
                    txn_rows_given = true;
                }
                "seed" => config.seed = parse_int(name, value, 0, u64::MAX)?,
                // Keep (start + offsets) << 18 well inside u64.
                "start" => config.start_ms = parse_int(name, value, 0, 1 << 44)?,
                "ddl" => config.ddl = parse_ddl(value)?,
                "retention" => {
                    config.retention_ms = match value {
                        "none" | "forever" => None,
                        _ => {
                            let ms =
                                parse_duration_ms(value).map_err(|e| invalid(name, value, e))?;
                            if ms == 0 {
                                return Err(invalid(name, value, "must be positive or 'none'"));
                            }
                            Some(ms)
                        }
                    }
                }
                _ => {}
            }
        }
        if !txn_rows_given {
            config.txn_rows = config.txn_rows.min(config.key_space);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks cross-parameter rules; errors name the parameter at fault.
    pub fn validate(&self) -> Result<(), UpstreamError> {
        if self.tables > MAX_TABLES {
            return Err(invalid("tables", &self.tables.to_string(), "too many"));
        }
        if self.key_space == 0 || self.key_space > MAX_KEY_SPACE {
            return Err(invalid(
                "key-space",
                &self.key_space.to_string(),
                format!("must be in 1..={MAX_KEY_SPACE}"),
            ));
        }
        if self.txn_rows == 0 || self.txn_rows > self.key_space {
            return Err(invalid(
                "txn-rows",
                &self.txn_rows.to_string(),
                format!(
                    "must be in 1..=key-space ({}): a transaction writes distinct keys",
                    self.key_space
                ),
            ));
        }
        // The grid needs rows_per_second < TSO_PER_SEC (strictly increasing commit ts).
        if self.rows_per_second > MAX_ROWS_PER_SECOND
            || u128::from(self.rows_per_second) >= TSO_PER_SEC
        {
            return Err(invalid(
                "rows-per-second",
                &self.rows_per_second.to_string(),
                format!("must be at most {MAX_ROWS_PER_SECOND}"),
            ));
        }
        if self.start_ms > 1 << 44 {
            return Err(invalid("start", &self.start_ms.to_string(), "too large"));
        }
        // Each table is created at most once (unless initial), dropped at most once, after
        // its creation; ids are never reused, as in TiDB.
        let mut order: Vec<&ScheduledDdl> = self.ddl.iter().collect();
        order.sort_by_key(|d| d.offset_ms);
        let mut created = BTreeSet::new();
        let mut dropped = BTreeSet::new();
        for d in order {
            let id = d.table.0;
            let initial = id >= 1 && (id as u64) <= self.tables;
            let bad = |reason: String| invalid("ddl", &format_ddl(d), reason);
            if id <= 0 {
                return Err(bad("table ids must be positive".to_owned()));
            }
            if d.create {
                if initial || !created.insert(id) || dropped.contains(&id) {
                    return Err(bad(format!(
                        "table {id} already exists or existed (initial tables are 1..={})",
                        self.tables
                    )));
                }
            } else if !(initial || created.contains(&id)) || !dropped.insert(id) {
                return Err(bad(format!(
                    "table {id} does not exist at +{} ms",
                    d.offset_ms
                )));
            }
        }
        if self.ddl.len() > MAX_DDL_ENTRIES {
            return Err(invalid(
                "ddl",
                "...",
                format!("more than {MAX_DDL_ENTRIES} entries"),
            ));
        }
        if let Some(max) = self.ddl.iter().map(|d| d.offset_ms).max() {
            if self.start_ms.saturating_add(max) > 1 << 45 {
                return Err(invalid("ddl", &max.to_string(), "offset too large"));
            }
        }
        Ok(())
    }
}

fn format_ddl(d: &ScheduledDdl) -> String {
    let op = if d.create { "create" } else { "drop" };
    format!("{op}:{}@{}ms", d.table, d.offset_ms)
}

/// Parses `ddl=<op>:<ids>@<offset>[,...]`: `op` is `create` or `drop`, `ids` a table id or an
/// inclusive range `a-b`, `offset` a duration after `start` (`30s`, `1m30s`, `2500ms`).
pub fn parse_ddl(value: &str) -> Result<Vec<ScheduledDdl>, UpstreamError> {
    let mut out = Vec::new();
    if value.is_empty() {
        return Ok(out);
    }
    for entry in value.split(',') {
        let bad = |reason: String| invalid("ddl", entry, reason);
        let (op, rest) = entry.split_once(':').ok_or_else(|| {
            bad("expected <create|drop>:<table>@<offset>, e.g. create:17@30s".into())
        })?;
        let create = match op {
            "create" => true,
            "drop" => false,
            other => return Err(bad(format!("unknown DDL '{other}' (create or drop)"))),
        };
        let (ids, at) = rest
            .split_once('@')
            .ok_or_else(|| bad("missing '@<offset>', e.g. create:17@30s".into()))?;
        let offset_ms = parse_duration_ms(at).map_err(|e| bad(format!("offset: {e}")))?;
        let id = |s: &str| -> Result<i64, UpstreamError> {
            s.parse::<i64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(format!("table id '{s}' is not a positive integer")))
        };
        let (lo, hi) = match ids.split_once('-') {
            Some((a, b)) => (id(a)?, id(b)?),
            None => (id(ids)?, id(ids)?),
        };
        if lo > hi {
            return Err(bad(format!("empty table range {lo}-{hi}")));
        }
        if (hi - lo) as u64 >= MAX_DDL_ENTRIES as u64
            || out.len() + (hi - lo) as usize >= MAX_DDL_ENTRIES
        {
            return Err(bad(format!("more than {MAX_DDL_ENTRIES} DDL entries")));
        }
        out.extend((lo..=hi).map(|t| ScheduledDdl {
            offset_ms,
            create,
            table: TableId(t),
        }));
    }
    Ok(out)
}
