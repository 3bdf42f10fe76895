//! `cdc replay`: check recordings reproduce, print decisions, or dry-run an owner on a live
//! cluster (read-only).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use rcdc::meta::Meta;
use rcdc::reactor::store::etcd::{EtcdStore, EtcdStoreConfig};
use rcdc::reactor::{Clock, SystemClock};
use rcdc::state::KeyLayout;

/// `cdc replay` arguments.
#[derive(Args)]
pub struct ReplayArgs {
    /// A recording (`owner-*.ndjson`, `processor-*.ndjson`) or a directory of them (`cdc
    /// server --record DIR`).
    #[arg(required_unless_present = "from_etcd")]
    path: Option<PathBuf>,
    /// Print each tick's decisions.
    #[arg(long)]
    dump: bool,
    /// Dry run: load a live cluster's state (read-only) and print what an owner would do.
    #[arg(long, conflicts_with = "path")]
    from_etcd: bool,
    /// etcd endpoints for --from-etcd.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pd: String,
    /// Cluster prefix for --from-etcd.
    #[arg(long, default_value = "/tidb/cdc")]
    cluster_prefix: String,
    /// Upstream of changefeeds without their own, for --from-etcd.
    #[arg(long, default_value = "demo://")]
    upstream: String,
    /// Owner ticks to simulate with --from-etcd.
    #[arg(long, default_value_t = 5)]
    ticks: u64,
}

/// Runs `cdc replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    if args.from_etcd {
        return dry_run(args).await;
    }
    let path = args
        .path
        .ok_or_else(|| anyhow!("give a recording or a directory"))?;
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.clone()]
    };
    if files.is_empty() {
        bail!("no recordings (*.ndjson) in {}", path.display());
    }
    let stdout = std::io::stdout();
    for f in files {
        let mut lock = stdout.lock();
        let dump: Option<&mut dyn std::io::Write> = if args.dump { Some(&mut lock) } else { None };
        let report = rcdc::record::replay::replay(&f, dump)?;
        drop(lock);
        let role = report.role.map_or("?", |r| r.as_str());
        let resumed = if report.resumed {
            ", resumed mid-life"
        } else {
            ""
        };
        let ended = report
            .ended
            .as_deref()
            .map(|r| format!(" (ended: {r})"))
            .unwrap_or_default();
        outln!(
            "{}: {role}: {} ticks reproduced, {} updates applied{resumed}{ended}",
            f.display(),
            report.ticks,
            report.updates,
        )?;
    }
    Ok(())
}

async fn dry_run(args: ReplayArgs) -> anyhow::Result<()> {
    rcdc::upstream::parse_upstream_uri(&args.upstream).map_err(|e| anyhow!("{e}"))?;
    let store = EtcdStore::connect(&super::endpoints(&args.pd), EtcdStoreConfig::default())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let layout = KeyLayout::new(&args.cluster_prefix);
    // Read once, never write: the dry run works on a private copy.
    let kvs = Meta::new(Arc::new(store), layout.clone()).raw().await?;
    outln!(
        "dry run over {} keys under {} (nothing is written)",
        kvs.len(),
        args.cluster_prefix
    )?;
    let kvs = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    let plane = rcdc::data_plane::DataPlane::new(args.upstream.clone(), Arc::new(SystemClock));
    let mut out = std::io::stdout().lock();
    rcdc::record::dry_run::dry_run(
        kvs,
        &layout,
        &plane,
        SystemClock.now_ms(),
        args.ticks,
        200,
        &mut out,
    )?;
    Ok(())
}
