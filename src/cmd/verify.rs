//! `cdc verify`: check a file sink against the demo upstream's oracle.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use clap::Args;
use rcdc::state::{ChangefeedId, Ts};

#[derive(Args)]
pub struct VerifyArgs {
    /// The demo upstream URI the changefeed replicated from.
    #[arg(long)]
    pub upstream: String,
    /// The file sink URI.
    #[arg(long)]
    sink_uri: String,
    /// Changefeed id (default: the only changefeed recorded in the sink).
    #[arg(short = 'c', long = "changefeed-id")]
    id: Option<String>,
    /// The changefeed's start ts (default: the one recorded in the sink).
    #[arg(long)]
    start_ts: Option<u64>,
    /// Check at this ts (default: the checkpoint recorded in the sink).
    #[arg(long)]
    ts: Option<u64>,
    /// The changefeed's enable-old-value (TiCDC's default true): every UPDATE must then carry
    /// the row it replaced, and none may with false.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_old_value: bool,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let upstream =
        rcdc::upstream::parse_upstream_uri(&args.upstream).map_err(|e| anyhow!("{e}"))?;
    let demo = upstream
        .as_demo()
        .ok_or_else(|| anyhow!("cdc verify needs a demo:// upstream (it has the oracle)"))?;
    let dir: PathBuf = match rcdc::sink::parse_sink_uri(&args.sink_uri)
        .map_err(|e| anyhow!("{e}"))?
    {
        rcdc::sink::SinkSpec::File(cfg) => {
            // Folding needs each row's commit ts; canal-json has it only in `_tidb`.
            if cfg.protocol == rcdc::sink::FileProtocol::CanalJson && !cfg.enable_tidb_extension {
                bail!(
                    "cdc verify needs each row's commit ts, which canal-json carries only \
                         with enable-tidb-extension=true in the sink URI (or use protocol=csv, \
                         which always has its commit-ts column)"
                );
            }
            cfg.dir
        }
        _ => bail!("cdc verify reads file:// sinks only"),
    };
    let id = match args.id {
        Some(id) => id,
        None => {
            let recorded = rcdc::sink::recorded_changefeeds(&dir).map_err(|e| anyhow!("{e}"))?;
            match recorded.as_slice() {
                [one] => one.clone(),
                [] => bail!(
                    "no changefeed has recorded a checkpoint in {} yet",
                    dir.display()
                ),
                many => bail!(
                    "several changefeeds in {}: {}; pick one with -c",
                    dir.display(),
                    many.join(", ")
                ),
            }
        }
    };
    let cf = ChangefeedId::from(id.as_str());
    let start = match args.start_ts {
        Some(ts) => Ts(ts),
        None => rcdc::sink::read_start_ts(&dir, &cf)
            .map_err(|e| anyhow!("{e}"))?
            .ok_or_else(|| {
                anyhow!(
                    "no start ts recorded for {id} in {}; pass --start-ts",
                    dir.display()
                )
            })?,
    };
    let at = match args.ts {
        Some(ts) => Ts(ts),
        None => rcdc::sink::read_checkpoint(&dir, &cf)
            .map_err(|e| anyhow!("{e}"))?
            .ok_or_else(|| anyhow!("no checkpoint recorded in {} yet; pass --ts", dir.display()))?,
    };
    let reports = rcdc::verify::verify(demo, &dir, &cf, start.prev(), at, args.enable_old_value)
        .map_err(|e| anyhow!(e))?;
    let mut bad = 0;
    for r in &reports {
        outln!(
            "table {}: {} keys compared, {} mismatches",
            r.table,
            r.compared,
            r.mismatches.len()
        )?;
        for m in r.mismatches.iter().take(5) {
            outln!("  {m}")?;
        }
        bad += r.mismatches.len();
    }
    outln!("verified at ts {at}: {bad} mismatches")?;
    if bad > 0 {
        bail!("{bad} mismatches");
    }
    Ok(())
}
