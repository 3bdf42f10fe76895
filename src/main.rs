//! The `cdc` binary: argument parsing and the edge where errors become one clear line and a
//! non-zero exit. Everything else lives in the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use rcdc::server::{serve, ServerConfig};

#[derive(Parser)]
#[command(
    name = "cdc",
    version,
    about = "rcdc: change data capture in the mold of TiCDC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a capture.
    Server(ServerArgs),
    /// Manage the cluster.
    Cli(cmd::cli::CliArgs),
    /// Check a file sink against the demo upstream's oracle.
    Verify(cmd::verify::VerifyArgs),
    /// Re-run recorded owner ticks and check they reproduce; or dry-run an owner on a live
    /// cluster (--from-etcd, read-only).
    Replay(cmd::replay::ReplayArgs),
    /// Print the version.
    Version,
}

#[derive(Args)]
struct ServerArgs {
    /// etcd endpoints, comma-separated.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pd: String,
    /// Address of this capture (advertised to the cluster).
    #[arg(long, default_value = "127.0.0.1:8300")]
    addr: String,
    /// Advertised address, if different from --addr.
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Root prefix of the cluster's keys in etcd.
    #[arg(long, default_value = "/tidb/cdc")]
    cluster_prefix: String,
    /// Default upstream of changefeeds.
    #[arg(long, default_value = "demo://")]
    upstream: String,
    /// Record each owner incarnation into this directory (for `cdc replay`).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

mod cmd;

/// `--pd`'s comma-separated endpoint list.
pub(crate) fn endpoints(pd: &str) -> Vec<String> {
    pd.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    match cli.command {
        Command::Version => {
            println!("rcdc v{}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Server(args) => rt.block_on(server(args)),
        Command::Cli(args) => rt.block_on(cmd::cli::run(args)),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Replay(args) => rt.block_on(cmd::replay::run(args)),
    }
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    rcdc::upstream::parse_upstream_uri(&args.upstream).with_context(|| "bad --upstream")?;
    let set_log_level =
        rcdc::logging::init(&args.log_level, None, Default::default()).map_err(|e| anyhow!(e))?;
    let config = ServerConfig {
        endpoints: endpoints(&args.pd),
        advertise_addr: args.advertise_addr.unwrap_or_else(|| args.addr.clone()),
        addr: args.addr,
        cluster_prefix: args.cluster_prefix,
        upstream: args.upstream,
        session_ttl: Duration::from_secs(10),
        owner_flush_interval: Duration::from_millis(200),
        processor_flush_interval: Duration::from_millis(100),
        tz: Default::default(),
        config_json: serde_json::json!({}),
        set_log_level,
        record_dir: args.record,
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    serve(config, rx).await.map_err(|e| anyhow!("{e}"))
}
