//! The dry-run owner (`cdc replay --from-etcd`): what an owner would do next on a live
//! cluster's state, computed offline. It reads the keys once and never writes: its patches
//! are applied to a private copy so later ticks show the follow-on decisions; table listings
//! and DDL queries are answered read-only from the upstream; GC and sink writes are only
//! printed.

use std::collections::BTreeMap;
use std::io::Write;

use rcdc_state::{GlobalState, KeyLayout, PatchOutcome};

use super::replay::write_decisions;
use crate::owner::runtime::OwnerUpstream;
use crate::owner::tick::{Owner, OwnerConfig, OwnerEffect, OwnerEffectResult, OwnerInput};

/// Runs `ticks` owner ticks, `tick_ms` apart from `now_ms`, over `kvs`; writes the decisions.
pub fn dry_run(
    kvs: BTreeMap<String, Vec<u8>>,
    layout: &KeyLayout,
    upstream: &dyn OwnerUpstream,
    now_ms: u64,
    ticks: u64,
    tick_ms: u64,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut kv = kvs;
    let mut owner = Owner::new(OwnerConfig {
        addr: "dry-run".into(),
        flush_interval_ms: tick_ms,
        ..Default::default()
    });
    let mut results = Vec::new();
    let mut dropped = Vec::new();
    for n in 1..=ticks {
        let mut state = GlobalState::new(layout.clone());
        for (k, v) in &kv {
            state.apply(k, Some(v));
        }
        let input = OwnerInput {
            now_ms: now_ms + (n - 1) * tick_ms,
            requests: vec![],
            results: std::mem::take(&mut results),
            dropped: std::mem::take(&mut dropped),
        };
        let decided = owner.tick(&state, &input);
        write_decisions(out, n, &input, &decided)?;
        for (index, g) in decided.groups.iter().enumerate() {
            for p in &g.patches {
                match p.apply(kv.get(&p.key).map(Vec::as_slice)) {
                    Ok(PatchOutcome::Put(v)) => {
                        kv.insert(p.key.clone(), v);
                    }
                    Ok(PatchOutcome::Delete) => {
                        kv.remove(&p.key);
                    }
                    Ok(PatchOutcome::Unchanged) => {}
                    Err(e) => {
                        writeln!(out, "  (group {} would be dropped: {e})", g.label)?;
                        dropped.push(index);
                    }
                }
            }
        }
        for e in decided.effects {
            let info =
                |cf: &rcdc_state::ChangefeedId| state.changefeed(cf).and_then(|c| c.info.clone());
            match e {
                OwnerEffect::ListTables { changefeed, at } => {
                    let Some(i) = info(&changefeed) else { continue };
                    results.push(match upstream.list_tables(&changefeed, &i, at) {
                        Ok(tables) => OwnerEffectResult::Tables { changefeed, tables },
                        Err(error) => OwnerEffectResult::TablesFailed { changefeed, error },
                    });
                }
                OwnerEffect::FetchDdl { changefeed, after } => {
                    let Some(i) = info(&changefeed) else { continue };
                    results.push(match upstream.next_ddl(&changefeed, &i, after) {
                        Ok((next, upto)) => OwnerEffectResult::Ddl {
                            changefeed,
                            after,
                            next,
                            upto,
                        },
                        Err(error) => OwnerEffectResult::DdlFailed { changefeed, error },
                    });
                }
                // Writes to the upstream or the sink: printed above, never executed.
                OwnerEffect::UpdateGcSafePoint(_) | OwnerEffect::WriteSinkCheckpoint { .. } => {}
            }
        }
    }
    Ok(())
}
