//! The `cdc` binary: argument parsing and the edge where errors become one clear line and a
//! non-zero exit. Everything else lives in the library.

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use rcdc::config::ServerFlags;
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
    Server(ServerFlags),
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

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let args: Vec<String> = std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            if let Some(why) = cmd::ticdc_only::not_supported(&args) {
                eprintln!("Error: {why}");
                std::process::exit(2);
            }
            e.exit()
        }
        Err(e) => e.exit(), // --help, --version
    };
    // At process start, before any site can run (the `fail` crate's FAILPOINTS variable).
    #[cfg(feature = "failpoints")]
    if let Err(e) = rcdc::failpoints::configure_from_env() {
        eprintln!("Error: {e}");
        std::process::exit(2);
    }
    if let Err(e) = run(cli) {
        let reader_gone = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if reader_gone {
            // `cdc cli ... | head`: the reader has what it wanted.
            return;
        }
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
    rcdc::security::install_crypto_provider();
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

async fn server(flags: ServerFlags) -> anyhow::Result<()> {
    // Startup order (facts §4.1): configuration, logging, time zone, then the server.
    let resolved = rcdc::config::resolve(&flags)?;
    if let Some(u) = &resolved.upstream {
        rcdc::upstream::parse_upstream_uri(u).with_context(|| "bad --upstream")?;
    }
    let format = if resolved.log_format == "json" {
        rcdc::logging::LogFormat::Json
    } else {
        rcdc::logging::LogFormat::Text
    };
    let set_log_level =
        rcdc::logging::init(&resolved.log_level, resolved.log_file.as_deref(), format)
            .map_err(|e| anyhow!(e))?;
    for w in &resolved.warnings {
        tracing::warn!("{w}");
    }
    #[cfg(feature = "failpoints")]
    rcdc::failpoints::log_status();
    let tz = rcdc::config::timezone(&resolved.tz)?;
    // Read and check the certificate files now: a bad one names its file and exits.
    let security = resolved
        .security
        .load(rcdc::security::Role::Server)
        .map_err(|e| anyhow!("{e}"))?;
    let mut table_pipeline = resolved.table_pipeline();
    table_pipeline.sorter.memory = std::sync::Arc::new(resolved.sorter.memory());
    let mut data_plane = rcdc::pipeline::executor::DataPlaneRuntimeConfig::default();
    if let Some(workers) = resolved.sorter.num_concurrent_worker {
        data_plane.max_pulls = workers;
    }
    let config = ServerConfig {
        endpoints: resolved.pd.clone(),
        addr: resolved.addr.clone(),
        advertise_addr: resolved.advertise_addr.clone(),
        cluster_prefix: resolved.cluster_prefix.clone(),
        upstream: resolved.upstream.clone(),
        session_ttl: resolved.capture_session_ttl,
        owner_flush_interval: resolved.owner_flush_interval,
        gc_ttl: resolved.gc_ttl,
        processor_flush_interval: resolved.processor_flush_interval,
        tz,
        table_pipeline,
        sort_dir: resolved.sort_dir(),
        data_plane,
        config_json: resolved.to_json(),
        set_log_level,
        recording: rcdc::record::RecordingControl::new(rcdc::record::RecordingSettings {
            enabled: resolved.record_dir.is_some(),
            // Where the API turns recording on when --record was not given.
            dir: resolved
                .record_dir
                .clone()
                .or_else(|| resolved.data_dir.as_ref().map(|d| d.join("recordings"))),
            allowed_dirs: resolved
                .record_dir
                .iter()
                .chain(resolved.data_dir.iter())
                .cloned()
                .collect(),
            ..Default::default()
        }),
        security,
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
