//! The `demo://` upstream: a deterministic synthetic workload with an exact oracle
//! (target-design §8).
//!
//! # URI
//! `demo://?tables=16&rows-per-second=1000&key-space=1000&txn-rows=4&seed=42&start=1700000000000&ddl=create:17@30s,drop:3@1m&retention=10m`
//!
//! | parameter | default | meaning |
//! |---|---|---|
//! | `tables` | 16 | tables `1..=tables` (schema `demo`, names `t<id>`) exist from the beginning |
//! | `rows-per-second` | 1000 | row changes per second **per table** (0 = an idle workload) |
//! | `key-space` | 1000 | each table's keys are `0..key-space` (column `id`) |
//! | `txn-rows` | 4 (capped at `key-space`) | rows per transaction, distinct keys, ≤ `key-space` |
//! | `seed` | 42 | the workload's seed |
//! | `start` | 1700000000000 | the epoch (Unix ms): writes begin after it, DDL offsets count from it |
//! | `ddl` | none | `create:<id>@<offset>` / `drop:<id>@<offset>`, comma-separated; `<id>` may be a range `a-b`; offsets are durations after `start` (`30s`, `1m30s`, `2500ms`) |
//! | `retention` | `10m` | history kept; older snapshots are garbage-collected (`none` = forever) |
//!
//! Unknown, repeated or malformed parameters are errors naming the parameter. Limits:
//! `rows-per-second` ≤ 1,000,000, `key-space` ≤ 2^40, `tables` ≤ 10,000,000; one
//! `table_events` call returns at most [`MAX_EVENTS_PER_CALL`] rows (callers pull in slices).
//!
//! # Generator
//! Nothing is stateful: every value is a hash of `(seed, table, …)` (see `demo/gen.rs`).
//! - **Time grid.** A table's transactions are numbered `j = 0, 1, …`; transaction `j`
//!   commits at `base + floor(j · key-space · 2^18·1000 / (rows-per-second · txns-per-round))`
//!   TSO units (so rows arrive at exactly `rows-per-second` on average), where `base` is the
//!   table's creation ts (the epoch for initial tables) plus a per-table phase.
//!   Start ts is 1–50 ms before the commit ts. A dropped table has no commit at or after its
//!   drop ts.
//! - **Rounds.** Transactions are grouped in rounds of `ceil(key-space / txn-rows)`; round `r`
//!   writes every key exactly once, in the order of a keyed permutation `π_r` of the key space
//!   (a Feistel network with an O(1) inverse). Transaction `q` of a round writes positions
//!   `q·txn-rows ..` of `π_r`.
//! - **Ops.** A key is deleted in round `r ≥ 1` iff `coin(k, r) ∧ ¬coin(k, r−1)` (coins are
//!   hashes, p = 1/8), so deletes never repeat; the write after a delete and a key's first
//!   write (round 0) are inserts; every other write is an update. The image of a write is a
//!   hash of `(k, r)`; a delete carries the image of round `r − 1`.
//! - **Old values.** An update in round `r` follows a non-delete write in round `r − 1`, so
//!   its pre-image (`RowChange::pre_columns`) is the image of round `r − 1`; a delete's
//!   pre-image is the row it removes; an insert has none.
//!
//! # Oracle
//! "The last write to key `k` at or before `T`": find the last transaction `J ≤ T` by
//! arithmetic on the grid, its round `r = J / txns-per-round`, and `k`'s position `π_r⁻¹(k)`;
//! the write is in round `r` if that position's transaction is `≤ J`, else in round `r − 1`.
//! O(1) hashes, independent of history. [`DemoUpstream::rows_in_window`] costs
//! O(min(key-space, writes in the window)) such steps (plus map inserts).

mod config;
mod gen;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::{Mutex, PoisonError};

use rcdc_state::{TableId, Ts};

use self::gen::{hash, tag, Grid, Perm};
use super::{DdlEvent, DdlKind, TableName, Upstream, UpstreamError};
use crate::event::{ColumnDef, ColumnType, RowChange, RowOp, TableEvent, TableSchema, Value};

pub use config::{parse_ddl, DemoConfig, ScheduledDdl, DEFAULT_START_MS, PARAMS};

/// The schema of every demo table.
pub const SCHEMA: &str = "demo";
/// Most row changes one [`Upstream::table_events`] call returns.
pub const MAX_EVENTS_PER_CALL: u64 = 2_000_000;

/// A delete coin comes up when the top this-many bits of its hash are zero (p = 1/8).
const DELETE_COIN_BITS: u32 = 3;

/// A row image: column name and value, the key column `id` first.
pub type Columns = Vec<(String, Value)>;

/// A table's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Life {
    /// Existed before the epoch.
    initial: bool,
    /// Creation ts (the epoch for initial tables); writes commit after it.
    created: Ts,
    /// Drop ts; writes commit before it.
    dropped: Option<Ts>,
}

/// The demo upstream (see the module docs).
#[derive(Debug)]
pub struct DemoUpstream {
    config: DemoConfig,
    grid: Grid,
    /// Transactions per round: `ceil(key_space / txn_rows)`.
    txns_per_round: u64,
    epoch: Ts,
    /// DDL events in commit-ts order.
    ddl: Vec<DdlEvent>,
    /// Tables touched by DDL; other ids in `1..=tables` are initial and never dropped.
    lives: BTreeMap<TableId, Life>,
    /// Service safe points: service → (safe point, expiry in Unix ms).
    services: Mutex<BTreeMap<String, (Ts, u64)>>,
}

impl DemoUpstream {
    /// Parses a `demo://` URI.
    pub fn from_uri(uri: &str) -> Result<Self, UpstreamError> {
        Self::new(DemoConfig::from_uri(uri)?)
    }

    /// The upstream for `config`.
    pub fn new(config: DemoConfig) -> Result<Self, UpstreamError> {
        config.validate()?;
        let epoch = Ts::from_parts(config.start_ms, 0);
        let mut order: Vec<ScheduledDdl> = config.ddl.clone();
        order.sort_by_key(|d| d.offset_ms);
        let mut ddl = Vec::with_capacity(order.len());
        let mut lives = BTreeMap::new();
        let mut prev: Option<(u64, u64)> = None;
        for d in order {
            let logical = match prev {
                Some((off, l)) if off == d.offset_ms => l + 1,
                _ => 1,
            };
            prev = Some((d.offset_ms, logical));
            let commit_ts = Ts::from_parts(config.start_ms + d.offset_ms, logical);
            let name = table_name(d.table);
            let (kind, query) = if d.create {
                lives.insert(
                    d.table,
                    Life {
                        initial: false,
                        created: commit_ts,
                        dropped: None,
                    },
                );
                (DdlKind::CreateTable, create_table_query(&name))
            } else {
                let life = lives.entry(d.table).or_insert(Life {
                    initial: true,
                    created: epoch,
                    dropped: None,
                });
                life.dropped = Some(commit_ts);
                let q = format!("DROP TABLE `{}`.`{}`", name.schema, name.table);
                (DdlKind::DropTable, q)
            };
            ddl.push(DdlEvent {
                commit_ts,
                kind,
                table: d.table,
                name,
                query,
            });
        }
        let txns_per_round = config.key_space.div_ceil(config.txn_rows);
        Ok(DemoUpstream {
            grid: Grid::new(config.rows_per_second, config.key_space, txns_per_round),
            txns_per_round,
            epoch,
            ddl,
            lives,
            services: Mutex::new(BTreeMap::new()),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DemoConfig {
        &self.config
    }

    /// `service`'s stored service safe point and its expiry (Unix ms), if any (expired
    /// entries are dropped only by the next update, as PD does).
    pub fn service_safe_point(&self, service: &str) -> Option<(Ts, u64)> {
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services.get(service).copied()
    }

    /// The oldest ts whose snapshot is still kept at `at` (0 with infinite retention).
    pub fn gc_horizon(&self, at: Ts) -> Ts {
        match self.config.retention_ms {
            Some(ms) => Ts(at.0.saturating_sub(ms << Ts::LOGICAL_BITS)),
            None => Ts(0),
        }
    }

    fn life(&self, table: TableId) -> Option<Life> {
        if let Some(l) = self.lives.get(&table) {
            return Some(*l);
        }
        (table.0 >= 1 && (table.0 as u64) <= self.config.tables).then_some(Life {
            initial: true,
            created: self.epoch,
            dropped: None,
        })
    }

    /// Commit ts of transaction 0 of `table`.
    fn base(&self, table: TableId, life: &Life) -> u64 {
        let phase =
            1 + hash(&[self.config.seed, tag::PHASE, table.0 as u64]) % self.grid.min_step();
        life.created.0.saturating_add(phase)
    }

    /// Transactions of `table` with `after < commit_ts <= upto` within its lifetime.
    fn txns_in(&self, table: TableId, life: &Life, after: Ts, upto: Ts) -> Option<(u64, u64)> {
        let base = self.base(table, life);
        let hi = match life.dropped {
            Some(d) => upto.min(d.prev()),
            None => upto,
        };
        let j_hi = self.grid.last_upto(hi.0.checked_sub(base)?)?;
        let j_lo = match after.0.checked_sub(base) {
            Some(x) => self.grid.first_after(x),
            None => 0,
        };
        (j_lo <= j_hi).then_some((j_lo, j_hi))
    }

    /// Row changes of `table` with `after < commit_ts <= upto` (0 for an unknown table or an
    /// invalid range: the scan reports those).
    fn rows_between(&self, table: TableId, after: Ts, upto: Ts) -> u64 {
        self.life(table)
            .and_then(|life| self.txns_in(table, &life, after, upto.max(after)))
            .map_or(0, |(lo, hi)| {
                (hi - lo + 1).saturating_mul(self.config.txn_rows)
            })
    }

    /// The round's permutation, reusing the last one while consecutive transactions share a
    /// round (scans walk transactions in order).
    fn perm_cached(&self, table: TableId, round: u64, cache: &mut Option<(u64, Perm)>) -> Perm {
        match *cache {
            Some((r, p)) if r == round => p,
            _ => {
                let p = self.perm(table, round);
                *cache = Some((round, p));
                p
            }
        }
    }

    fn perm(&self, table: TableId, round: u64) -> Perm {
        let key = hash(&[self.config.seed, tag::PERM, table.0 as u64, round]);
        Perm::new(self.config.key_space, key)
    }

    /// Positions `lo..hi` of the round that transaction `j` writes.
    fn txn_positions(&self, j: u64) -> (u64, u64, u64) {
        let round = j / self.txns_per_round;
        let lo = (j % self.txns_per_round) * self.config.txn_rows;
        let hi = (lo + self.config.txn_rows).min(self.config.key_space);
        (round, lo, hi)
    }

    fn coin(&self, table: TableId, key: u64, round: u64) -> bool {
        hash(&[self.config.seed, tag::DELETE, table.0 as u64, key, round])
            >> (64 - DELETE_COIN_BITS)
            == 0
    }

    fn deleted(&self, table: TableId, key: u64, round: u64) -> bool {
        round >= 1 && self.coin(table, key, round) && !self.coin(table, key, round - 1)
    }

    fn op(&self, table: TableId, key: u64, round: u64) -> RowOp {
        if self.deleted(table, key, round) {
            RowOp::Delete
        } else if round == 0 || self.deleted(table, key, round - 1) {
            RowOp::Insert
        } else {
            RowOp::Update
        }
    }

    /// The row image an insert/update of `key` in `round` writes.
    fn image(&self, table: TableId, key: u64, round: u64) -> Columns {
        let h = hash(&[self.config.seed, tag::IMAGE, table.0 as u64, key, round]);
        vec![
            ("id".to_owned(), Value::Int(key as i64)),
            (
                "v".to_owned(),
                Value::Text(format!("r{round}-{:08x}", h as u32)),
            ),
            ("n".to_owned(), Value::Int((h >> 34) as i64)),
        ]
    }

    /// The op and image of `key`'s write in `round` (a delete carries the previous image).
    fn write(&self, table: TableId, key: u64, round: u64) -> (RowOp, Columns) {
        match self.op(table, key, round) {
            RowOp::Delete => (
                RowOp::Delete,
                self.image(table, key, round.saturating_sub(1)),
            ),
            op => (op, self.image(table, key, round)),
        }
    }

    /// The row `key`'s write in `round` replaced (TiCDC's `PreColumns`): the image of round
    /// `r − 1` for an update or a delete, none for an insert.
    fn pre_image(&self, table: TableId, key: u64, round: u64, op: RowOp) -> Option<Columns> {
        match op {
            RowOp::Insert => None,
            RowOp::Update | RowOp::Delete => Some(self.image(table, key, round.saturating_sub(1))),
        }
    }

    fn commit_ts(&self, base: u64, j: u64) -> Ts {
        Ts(base.saturating_add(self.grid.offset(j)))
    }

    fn start_ts(&self, table: TableId, j: u64, commit: Ts) -> Ts {
        let back = 1 + hash(&[self.config.seed, tag::START, table.0 as u64, j]) % 50;
        Ts(commit.0.saturating_sub(back << Ts::LOGICAL_BITS))
    }

    /// The transaction and round of `key`'s last write at or before `at`.
    fn last_write_txn(&self, table: TableId, life: &Life, key: u64, at: Ts) -> Option<(u64, u64)> {
        let (_, j_max) = self.txns_in(table, life, Ts(0), at)?;
        let round = j_max / self.txns_per_round;
        for r in [Some(round), round.checked_sub(1)].into_iter().flatten() {
            let pos = self.perm(table, r).invert(key);
            let j = r * self.txns_per_round + pos / self.config.txn_rows;
            if j <= j_max {
                return Some((j, r));
            }
        }
        None
    }

    /// Oracle: the last write to `key` of `table` at or before `at`: its commit ts, op and
    /// image (for a delete, the row it removed). O(1) hashes.
    pub fn last_write(&self, table: TableId, key: i64, at: Ts) -> Option<(Ts, RowOp, Columns)> {
        let life = self.life(table)?;
        let key = u64::try_from(key)
            .ok()
            .filter(|&k| k < self.config.key_space)?;
        let (j, r) = self.last_write_txn(table, &life, key, at)?;
        let (op, image) = self.write(table, key, r);
        Some((self.commit_ts(self.base(table, &life), j), op, image))
    }

    /// Oracle for an UPDATE's old value: the row `key` held just before `commit_ts` (the
    /// last write before it, unless that was a delete). `None` if the key did not exist.
    pub fn row_before(&self, table: TableId, key: i64, commit_ts: Ts) -> Option<Columns> {
        match self.last_write(table, key, commit_ts.prev())? {
            (_, RowOp::Delete, _) => None,
            (_, _, image) => Some(image),
        }
    }

    /// The table whose name is `name`, if the demo ever has it (names are `demo.t<id>`).
    pub fn table_id_of(&self, schema: &str, table: &str) -> Option<TableId> {
        let id: i64 = table.strip_prefix('t')?.parse().ok()?;
        let id = TableId(id);
        (schema == SCHEMA && format!("t{id}") == table && self.life(id).is_some()).then_some(id)
    }

    /// Oracle for `cdc verify`: every key whose last write at or before `upto` lies in
    /// `(after, upto]`, with its final image (`None` if that write was a delete). Keys not
    /// written in the window are absent. O(min(key-space, writes in the window)).
    pub fn rows_in_window(
        &self,
        table: TableId,
        after: Ts,
        upto: Ts,
    ) -> BTreeMap<i64, Option<Columns>> {
        let Some(life) = self.life(table) else {
            return BTreeMap::new();
        };
        let Some((j_lo, j_hi)) = self.txns_in(table, &life, after, upto) else {
            return BTreeMap::new();
        };
        let writes = (j_hi - j_lo + 1).saturating_mul(self.config.txn_rows);
        if writes < self.config.key_space {
            self.window_by_scan(table, j_lo, j_hi)
        } else {
            self.window_by_keys(table, &life, j_lo, upto)
        }
    }

    /// Scans transactions `j_hi` down to `j_lo`; the first write seen per key is its last.
    fn window_by_scan(
        &self,
        table: TableId,
        j_lo: u64,
        j_hi: u64,
    ) -> BTreeMap<i64, Option<Columns>> {
        let mut out = BTreeMap::new();
        let mut perm: Option<(u64, Perm)> = None;
        for j in (j_lo..=j_hi).rev() {
            let (round, lo, hi) = self.txn_positions(j);
            let p = self.perm_cached(table, round, &mut perm);
            for pos in lo..hi {
                let key = p.apply(pos);
                out.entry(key as i64)
                    .or_insert_with(|| match self.op(table, key, round) {
                        RowOp::Delete => None,
                        _ => Some(self.image(table, key, round)),
                    });
            }
        }
        out
    }

    /// Asks the oracle for every key.
    fn window_by_keys(
        &self,
        table: TableId,
        life: &Life,
        j_lo: u64,
        upto: Ts,
    ) -> BTreeMap<i64, Option<Columns>> {
        let mut out = BTreeMap::new();
        for key in 0..self.config.key_space {
            let Some((j, r)) = self.last_write_txn(table, life, key, upto) else {
                continue;
            };
            if j >= j_lo {
                let row = match self.op(table, key, r) {
                    RowOp::Delete => None,
                    _ => Some(self.image(table, key, r)),
                };
                out.insert(key as i64, row);
            }
        }
        out
    }

    fn lost(&self, table: TableId, after: Ts, at: Ts) -> Result<(), UpstreamError> {
        let horizon = self.gc_horizon(at);
        match self.config.retention_ms {
            Some(retention_ms) if after < horizon => Err(UpstreamError::SnapshotLost {
                table,
                after,
                horizon,
                at,
                retention_ms,
            }),
            _ => Ok(()),
        }
    }
}

/// The definition every demo table has (see the `CREATE TABLE` above) at `version`.
pub fn demo_table_schema(version: Ts, query: String) -> TableSchema {
    let col = |name: &str, sql_type, is_pk: bool| ColumnDef {
        name: name.to_owned(),
        sql_type,
        nullable: !is_pk,
        is_pk,
    };
    TableSchema {
        version,
        query,
        columns: vec![
            col("id", ColumnType::BigInt, true),
            col("v", ColumnType::Text, false),
            col("n", ColumnType::BigInt, false),
        ],
    }
}

fn create_table_query(name: &TableName) -> String {
    format!(
        "CREATE TABLE `{}`.`{}` (`id` BIGINT PRIMARY KEY, `v` TEXT, `n` BIGINT)",
        name.schema, name.table
    )
}

fn table_name(table: TableId) -> TableName {
    TableName {
        schema: SCHEMA.to_owned(),
        table: format!("t{table}"),
    }
}

impl Upstream for DemoUpstream {
    fn now(&self, now_ms: u64) -> Ts {
        Ts::from_parts(now_ms, 0)
    }

    fn tables_at(&self, ts: Ts) -> Result<BTreeSet<TableId>, UpstreamError> {
        let mut out: BTreeSet<TableId> = (1..=self.config.tables as i64)
            .map(TableId)
            .filter(|t| !self.lives.contains_key(t))
            .collect();
        for (t, life) in &self.lives {
            let born = life.initial || life.created <= ts;
            if born && life.dropped.is_none_or(|d| ts < d) {
                out.insert(*t);
            }
        }
        Ok(out)
    }

    fn table_name(&self, table: TableId) -> Option<TableName> {
        self.life(table).map(|_| table_name(table))
    }

    /// The table's version is its creation: the `CREATE TABLE`'s commit ts, or the epoch for
    /// the initial tables (created before it; the demo has no other DDL on a table).
    fn table_schema(&self, table: TableId) -> Option<TableSchema> {
        let life = self.life(table)?;
        Some(demo_table_schema(
            life.created,
            create_table_query(&table_name(table)),
        ))
    }

    fn ddl_events(&self, after: Ts, upto: Ts) -> Vec<DdlEvent> {
        let lo = self.ddl.partition_point(|d| d.commit_ts <= after);
        let hi = self.ddl.partition_point(|d| d.commit_ts <= upto);
        self.ddl.get(lo..hi).map(<[_]>::to_vec).unwrap_or_default()
    }

    fn table_events(
        &self,
        table: TableId,
        after: Ts,
        upto: Ts,
    ) -> Result<Vec<TableEvent>, UpstreamError> {
        // Collected, so bounded: callers that want more pull in slices, or visit.
        let rows = self.rows_between(table, after, upto);
        if rows > MAX_EVENTS_PER_CALL {
            return Err(UpstreamError::RangeTooLarge {
                table,
                after,
                upto,
                rows,
                limit: MAX_EVENTS_PER_CALL,
            });
        }
        let mut out = Vec::with_capacity(rows as usize + 1);
        self.visit_table_events(table, after, upto, &mut |ev| {
            out.push(ev);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    fn visit_table_events(
        &self,
        table: TableId,
        after: Ts,
        upto: Ts,
        visit: &mut dyn FnMut(TableEvent) -> ControlFlow<()>,
    ) -> Result<(), UpstreamError> {
        if after > upto {
            return Err(UpstreamError::InvalidRange { after, upto });
        }
        let life = self.life(table).ok_or(UpstreamError::UnknownTable(table))?;
        self.lost(table, after, upto)?;
        if let Some((j_lo, j_hi)) = self.txns_in(table, &life, after, upto) {
            let name = table_name(table);
            let base = self.base(table, &life);
            let mut perm: Option<(u64, Perm)> = None;
            for j in j_lo..=j_hi {
                let commit_ts = self.commit_ts(base, j);
                let start_ts = self.start_ts(table, j, commit_ts);
                let (round, lo, hi) = self.txn_positions(j);
                let p = self.perm_cached(table, round, &mut perm);
                for pos in lo..hi {
                    let key = p.apply(pos);
                    let (op, columns) = self.write(table, key, round);
                    let pre_columns = self.pre_image(table, key, round, op);
                    let row = RowChange {
                        table,
                        schema: name.schema.clone(),
                        table_name: name.table.clone(),
                        commit_ts,
                        start_ts,
                        op,
                        key: key as i64,
                        columns,
                        pre_columns,
                    };
                    if visit(TableEvent::Row(row)).is_break() {
                        return Ok(());
                    }
                }
            }
        }
        let _ = visit(TableEvent::Resolved(upto));
        Ok(())
    }

    fn check_snapshot(&self, table: TableId, after: Ts, now: Ts) -> Result<(), UpstreamError> {
        self.lost(table, after, now)
    }

    fn gc_safe_point(&self, now_ms: u64) -> Ts {
        self.gc_horizon(self.now(now_ms))
    }

    /// In memory. The demo's GC does not wait for services: the GC safe point is always
    /// `now − retention`. A safe point behind it is not stored (as PD refuses to move a
    /// service behind GC). The answer is `max(GC safe point, min live service safe point)`,
    /// so a caller whose checkpoint is below it has lost its snapshot.
    fn update_service_safe_point(
        &self,
        service: &str,
        ttl_secs: u64,
        safe_point: Ts,
        now_ms: u64,
    ) -> Result<Ts, UpstreamError> {
        let gc = self.gc_safe_point(now_ms);
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services.retain(|_, (_, expires)| *expires > now_ms);
        if ttl_secs == 0 {
            services.remove(service);
        } else if safe_point >= gc {
            let expires = now_ms.saturating_add(ttl_secs.saturating_mul(1_000));
            services.insert(service.to_owned(), (safe_point, expires));
        }
        let min = services.values().map(|(ts, _)| *ts).min();
        Ok(min.map_or(gc, |m| m.max(gc)))
    }

    fn as_demo(&self) -> Option<&DemoUpstream> {
        Some(self)
    }
}
