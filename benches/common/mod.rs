//! The one synthetic-state generator every tick bench uses (issue #7): tiers of captures,
//! changefeeds and tables, TiCDC-shaped JSON applied through `GlobalState::apply`, and churn
//! (task position updates) to apply between ticks.
#![allow(dead_code)] // each bench uses part of it

use std::collections::BTreeSet;

use rcdc_state::{GlobalState, TableId};

/// Captures / changefeeds / tables.
#[derive(Clone, Copy, Debug)]
pub struct Tier {
    pub name: &'static str,
    pub captures: usize,
    pub changefeeds: usize,
    pub tables: usize,
}

pub const S: Tier = Tier {
    name: "S",
    captures: 3,
    changefeeds: 10,
    tables: 1_000,
};
pub const M: Tier = Tier {
    name: "M",
    captures: 20,
    changefeeds: 1_000,
    tables: 100_000,
};
pub const L: Tier = Tier {
    name: "L",
    captures: 100,
    changefeeds: 10_000,
    tables: 1_000_000,
};

/// Issue #3's quick measurement: 1,000 changefeeds over 10 captures (10 tables each).
pub const C1000X10: Tier = Tier {
    name: "1000cf_10cap",
    captures: 10,
    changefeeds: 1_000,
    tables: 10_000,
};

/// `RCDC_BENCH_QUICK=1`: few samples, small tiers only (the CI smoke run).
pub fn quick() -> bool {
    std::env::var_os("RCDC_BENCH_QUICK").is_some()
}

/// The tiers to run: all, or S and M in quick mode.
pub fn tiers() -> Vec<Tier> {
    if quick() {
        vec![S]
    } else {
        vec![S, M, L]
    }
}

/// Criterion settings for the mode.
pub fn criterion() -> criterion::Criterion {
    let c = criterion::Criterion::default();
    if quick() {
        c.sample_size(10)
            .warm_up_time(std::time::Duration::from_millis(200))
            .measurement_time(std::time::Duration::from_millis(500))
    } else {
        c.sample_size(30)
            .warm_up_time(std::time::Duration::from_secs(1))
            .measurement_time(std::time::Duration::from_secs(4))
    }
}

pub const START: u64 = 445_644_800_000_000_000;

pub fn cf(f: usize) -> String {
    format!("cf-{f}")
}

pub fn capture(c: usize) -> String {
    format!("capture-{c}")
}

/// Table ids of changefeed `f`: `per_cf` consecutive ids.
pub fn tables_of(tier: Tier, f: usize) -> BTreeSet<TableId> {
    let per_cf = tier.tables / tier.changefeeds;
    (0..per_cf)
        .map(|t| TableId((f * per_cf + t + 1) as i64))
        .collect()
}

pub fn position(ts: u64) -> Vec<u8> {
    format!(r#"{{"checkpoint-ts":{ts},"resolved-ts":{ts},"count":0,"error":null}}"#).into_bytes()
}

/// A steady cluster: every table dispatched round-robin over the captures, positions
/// reported at `START + 1`, statuses written. Returns the state and the (capture, changefeed)
/// position keys (the churn targets).
pub fn steady(tier: Tier) -> (GlobalState, Vec<String>) {
    let mut s = GlobalState::default();
    for c in 0..tier.captures {
        let v = format!(
            r#"{{"id":"{}","address":"10.0.{}.{}:8300","version":"v5.1.0"}}"#,
            capture(c),
            c / 256,
            c % 256
        );
        s.apply(
            &format!("/tidb/cdc/capture/{}", capture(c)),
            Some(v.as_bytes()),
        );
    }
    let mut position_keys = Vec::new();
    for f in 0..tier.changefeeds {
        let info = format!(
            r#"{{"sink-uri":"blackhole://","start-ts":{START},"state":"normal","config":{{}}}}"#
        );
        s.apply(
            &format!("/tidb/cdc/changefeed/info/{}", cf(f)),
            Some(info.as_bytes()),
        );
        let st = format!(
            r#"{{"resolved-ts":{0},"checkpoint-ts":{0},"admin-job-type":0}}"#,
            START + 1
        );
        s.apply(&format!("/tidb/cdc/job/{}", cf(f)), Some(st.as_bytes()));
        let mut per_capture: Vec<Vec<String>> = vec![vec![]; tier.captures];
        for (i, t) in tables_of(tier, f).into_iter().enumerate() {
            per_capture[(i + f) % tier.captures].push(format!(
                r#""{}":{{"start-ts":{START},"mark-table-id":0}}"#,
                t.0
            ));
        }
        for (c, tables) in per_capture.into_iter().enumerate() {
            if tables.is_empty() {
                continue;
            }
            let status = format!(
                r#"{{"tables":{{{}}},"operation":null,"admin-job-type":0}}"#,
                tables.join(",")
            );
            s.apply(
                &format!("/tidb/cdc/task/status/{}/{}", capture(c), cf(f)),
                Some(status.as_bytes()),
            );
            let key = format!("/tidb/cdc/task/position/{}/{}", capture(c), cf(f));
            s.apply(&key, Some(&position(START + 1)));
            position_keys.push(key);
        }
    }
    s.clear_changes();
    (s, position_keys)
}

/// A deterministic pseudo-random walk over indexes (splitmix64), so churn is spread.
pub struct Walk(u64);

impl Walk {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}
