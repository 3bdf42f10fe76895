//! Upstreams: where a changefeed's changes come from (target-design §8).
//!
//! [`Upstream`] is the seam the owner and processor runtimes use: the current TSO, the tables
//! at a ts, the DDL stream, per-table change streams between two timestamps, and the GC safe
//! point. Everything is synchronous; the demo upstream is pure computation, and a networked
//! upstream would be called from `spawn_blocking`.
//!
//! Implemented:
//! - `demo://?...` — [`demo::DemoUpstream`], a deterministic synthetic workload with an oracle
//!   (see [`demo`] for its parameters).
//! - `pd://host:port,...` — [`pd::PdUpstream`], the TiDB cluster behind `cdc server --pd`:
//!   PD's time and GC, rows from the demo workload until the TiKV change feed is built. Only
//!   the capture's own cluster, made at server start (it needs a connected PD client), so
//!   [`parse_upstream_uri`] refuses other `pd://` URIs.
//!
//! [`parse_upstream_uri`] turns a URI into an upstream; every rejection names the bad part.

pub mod demo;
pub mod pd;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use rcdc_state::{TableId, Ts};

use crate::event::{TableEvent, TableSchema};

pub use demo::{DemoConfig, DemoUpstream};

/// A table's qualified name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// Schema (database) name.
    pub schema: String,
    /// Table name.
    pub table: String,
}

/// What a DDL did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DdlKind {
    /// The table exists from the DDL's commit ts on (inclusive).
    CreateTable,
    /// The table no longer exists at the DDL's commit ts; its last row change is older.
    DropTable,
}

/// One DDL of the upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DdlEvent {
    /// Commit ts of the DDL; distinct per DDL, ordered.
    pub commit_ts: Ts,
    /// What happened.
    pub kind: DdlKind,
    /// The table it applies to.
    pub table: TableId,
    /// The table's name.
    pub name: TableName,
    /// The SQL text, for sinks that write DDL.
    pub query: String,
}

/// Errors of upstream URIs and upstream calls. Every variant names what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// A networked upstream did not answer, or answered an error.
    #[error("upstream {upstream} is unavailable: {reason}")]
    Unavailable {
        /// The upstream's URI.
        upstream: String,
        /// The call and what went wrong.
        reason: String,
    },
    /// The upstream cannot do this yet; the message says what instead.
    #[error("upstream {upstream}: {what} is not supported by rcdc yet")]
    NotSupported {
        /// The upstream's URI.
        upstream: String,
        /// What was asked.
        what: String,
    },
    /// The URI does not parse, or a part other than a parameter is wrong.
    #[error("invalid upstream URI '{uri}': {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong, naming the offending part.
        reason: String,
    },
    /// The URI's scheme names no upstream rcdc implements.
    #[error("unsupported upstream scheme '{scheme}' in '{uri}' (supported: demo)")]
    UnsupportedScheme {
        /// The scheme.
        scheme: String,
        /// The URI as given.
        uri: String,
    },
    /// A query parameter the upstream does not know.
    #[error("unknown upstream parameter '{name}' (known: {known})")]
    UnknownParameter {
        /// The parameter's name.
        name: String,
        /// The parameters the upstream accepts, comma-separated.
        known: String,
    },
    /// A parameter given more than once.
    #[error("upstream parameter '{name}' given more than once")]
    DuplicateParameter {
        /// The parameter's name.
        name: String,
    },
    /// A parameter whose value is malformed or out of range.
    #[error("invalid value '{value}' for upstream parameter '{name}': {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: String,
        /// The value as given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The requested changes are older than the upstream's GC horizon: they are gone.
    #[error(
        "snapshot lost: changes of table {table} after ts {after} were garbage-collected \
         (GC horizon {horizon} at ts {at}, retention {retention_ms} ms)"
    )]
    SnapshotLost {
        /// The table asked for.
        table: TableId,
        /// The exclusive start of the requested range.
        after: Ts,
        /// The oldest ts whose snapshot is still kept.
        horizon: Ts,
        /// The ts the horizon was evaluated at.
        at: Ts,
        /// The upstream's retention.
        retention_ms: u64,
    },
    /// The table never exists in this upstream.
    #[error("table {0} does not exist in the upstream")]
    UnknownTable(TableId),
    /// `after > upto`.
    #[error("invalid ts range: after {after} is greater than upto {upto}")]
    InvalidRange {
        /// Exclusive start.
        after: Ts,
        /// Inclusive end.
        upto: Ts,
    },
    /// The range holds more row changes than one call may return; ask for a smaller slice.
    #[error(
        "ts range ({after}, {upto}] of table {table} holds about {rows} row changes, \
         more than the {limit} one call may return"
    )]
    RangeTooLarge {
        /// The table asked for.
        table: TableId,
        /// Exclusive start.
        after: Ts,
        /// Inclusive end.
        upto: Ts,
        /// Row changes in the range.
        rows: u64,
        /// The limit.
        limit: u64,
    },
}

/// The data-plane seam of target-design §8. Implementations are shared between the owner and
/// every table pipeline of a capture, hence `Send + Sync`.
pub trait Upstream: Send + Sync + std::fmt::Debug {
    /// The current TSO for wall-clock (or simulated) Unix milliseconds `now_ms`.
    fn now(&self, now_ms: u64) -> Ts;

    /// A fresh current ts, asked of the upstream now (PD's TSO), where [`Upstream::now`] may
    /// be a cached one: what a new changefeed starts from. May block on the network.
    fn fresh_now(&self, now_ms: u64) -> Result<Ts, UpstreamError> {
        Ok(self.now(now_ms))
    }

    /// The tables that exist at `ts`.
    fn tables_at(&self, ts: Ts) -> Result<BTreeSet<TableId>, UpstreamError>;

    /// A table's name, if the table exists at any time.
    fn table_name(&self, table: TableId) -> Option<TableName>;

    /// A table's definition and version (what a storage sink records in `schema.json`), if
    /// the table exists at any time.
    fn table_schema(&self, table: TableId) -> Option<TableSchema>;

    /// DDL events with `after < commit_ts <= upto`, in commit-ts order.
    fn ddl_events(&self, after: Ts, upto: Ts) -> Vec<DdlEvent>;

    /// A table's row changes with `after < commit_ts <= upto` in commit-ts order (rows of one
    /// transaction share a commit ts and touch distinct keys), then `Resolved(upto)`.
    ///
    /// Fails with [`UpstreamError::SnapshotLost`] if `after` is older than the GC horizon
    /// evaluated at `upto` (see [`Upstream::check_snapshot`] to check against "now" instead).
    fn table_events(
        &self,
        table: TableId,
        after: Ts,
        upto: Ts,
    ) -> Result<Vec<TableEvent>, UpstreamError>;

    /// [`Upstream::table_events`] one event at a time, without collecting them (a table
    /// pipeline's slice may hold more rows than its sorter's memory); `visit` returns
    /// `Break` to stop early. Upstreams that can stream override it.
    fn visit_table_events(
        &self,
        table: TableId,
        after: Ts,
        upto: Ts,
        visit: &mut dyn FnMut(TableEvent) -> ControlFlow<()>,
    ) -> Result<(), UpstreamError> {
        for event in self.table_events(table, after, upto)? {
            if visit(event).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Fails with [`UpstreamError::SnapshotLost`] if a read after `after` is no longer
    /// possible at `now` (the GC horizon at `now` has passed it).
    fn check_snapshot(&self, table: TableId, after: Ts, now: Ts) -> Result<(), UpstreamError>;

    /// The GC safe point at wall-clock `now_ms`: snapshots older than it are gone.
    fn gc_safe_point(&self, now_ms: u64) -> Ts;

    /// Sets (or with `ttl_secs == 0` removes) `service`'s service safe point at wall-clock
    /// `now_ms`; returns the upstream's minimum safe point. A changefeed whose checkpoint is
    /// below the returned value has lost its snapshot.
    fn update_service_safe_point(
        &self,
        service: &str,
        ttl_secs: u64,
        safe_point: Ts,
        now_ms: u64,
    ) -> Result<Ts, UpstreamError>;

    /// The demo upstream behind this one, for its oracle (`cdc verify`, the simulator).
    fn as_demo(&self) -> Option<&DemoUpstream> {
        None
    }
}

/// Parses an upstream URI. Supported schemes: `demo` (see [`demo`]).
pub fn parse_upstream_uri(uri: &str) -> Result<Box<dyn Upstream>, UpstreamError> {
    let scheme = uri_scheme(uri)?;
    match scheme.as_str() {
        "demo" => Ok(Box::new(DemoUpstream::from_uri(uri)?)),
        "pd" => Err(UpstreamError::NotSupported {
            upstream: uri.to_owned(),
            what: "a pd:// upstream other than the cluster behind cdc server --pd".to_owned(),
        }),
        _ => Err(UpstreamError::UnsupportedScheme {
            scheme,
            uri: uri.to_owned(),
        }),
    }
}

/// The URI's scheme, lower-cased.
fn uri_scheme(uri: &str) -> Result<String, UpstreamError> {
    let invalid = |reason: String| UpstreamError::InvalidUri {
        uri: uri.to_owned(),
        reason,
    };
    let Some((scheme, _)) = uri.split_once(':') else {
        return Err(invalid(
            "missing scheme (expected e.g. 'demo://')".to_owned(),
        ));
    };
    let ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !ok {
        return Err(invalid(format!("malformed scheme '{scheme}'")));
    }
    Ok(scheme.to_ascii_lowercase())
}

/// Parses a Go-style duration into milliseconds: `0`, or one or more `<integer><unit>` with
/// units `ms`, `s`, `m`, `h` (e.g. `30s`, `1m30s`, `2500ms`, `1h`).
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "expected a number at '{rest}' (e.g. 30s, 1m30s, 2500ms)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("number too large in '{s}'"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("missing unit after {n} (ms, s, m or h)")),
            other => return Err(format!("unknown unit '{other}' (ms, s, m or h)")),
        };
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration '{s}' is too large"))?;
    }
    Ok(total)
}
