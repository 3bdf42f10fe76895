//! `cdc cli changefeed statistics`: every `--interval`, the changefeed's rows written
//! (`count`, the sum of its task positions' counts), rows per second over the interval
//! (`ops`), and how far its checkpoint (`sink_gap`) and resolved ts (`replication_gap`) are
//! behind now — TiCDC's fields. It runs until interrupted, as TiCDC's does.

use std::time::Duration;

use anyhow::anyhow;
use rcdc::meta::Meta;
use rcdc::reactor::Clock;
use rcdc::state::{ChangefeedId, Ts};
use rcdc_pd::PdClient;
use serde_json::json;

/// Prints the statistics of `id` every `interval`; "now" is PD's TSO when `pd` is given (as
/// TiCDC's), else this machine's clock.
pub async fn statistics(
    meta: &Meta,
    id: &str,
    interval: Duration,
    pd: Option<PdClient>,
) -> anyhow::Result<()> {
    let id = ChangefeedId::from(id);
    let mut last: Option<(u64, tokio::time::Instant)> = None;
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        let state = meta.load().await?;
        let cf = state
            .changefeed(&id)
            .filter(|c| c.info.is_some())
            .ok_or_else(|| anyhow!("changefeed {id} does not exist"))?;
        let now_ms = match &pd {
            Some(pd) => Ts(pd.get_ts().await.map_err(|e| anyhow!("{e}"))?).physical_ms(),
            None => rcdc::reactor::SystemClock.now_ms(),
        };
        let count: u64 = cf.task_positions.values().map(|p| p.count).sum();
        let at = tokio::time::Instant::now();
        let ops = last.map_or(0, |(before, then)| {
            let secs = at.duration_since(then).as_secs_f64();
            (count.saturating_sub(before) as f64 / secs.max(0.001)) as u64
        });
        last = Some((count, at));
        let gap = |ts: Option<Ts>| {
            ts.map_or_else(
                || "unknown".to_owned(),
                |ts| format!("{}ms", now_ms.saturating_sub(ts.physical_ms())),
            )
        };
        let status = cf.status.as_ref();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ops": ops,
                "count": count,
                "sink_gap": gap(status.map(|s| s.checkpoint_ts)),
                "replication_gap": gap(status.map(|s| s.resolved_ts)),
            }))?
        )?;
    }
}
