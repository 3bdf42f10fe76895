//! The `cdc` binary: argument parsing and the edge where errors become one clear line and a
//! non-zero exit. Everything else lives in the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use rcdc::reactor::store::etcd::{EtcdStore, EtcdStoreConfig};
use rcdc::reactor::store::{Compare, CompareTarget, MetaStore, Txn, TxnOp};
use rcdc::server::{serve, ServerConfig};
use rcdc::state::ids::is_valid_changefeed_id;
use rcdc::state::model::{encode, ChangeFeedInfo, ChangeFeedStatus, FeedState};
use rcdc::state::{ChangefeedId, KeyLayout, Revision, Ts};

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
    Cli(CliArgs),
    /// Check a file sink against the demo upstream's oracle.
    Verify(VerifyArgs),
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
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Args)]
struct CliArgs {
    /// etcd endpoints, comma-separated.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pd: String,
    /// Root prefix of the cluster's keys in etcd.
    #[arg(long, default_value = "/tidb/cdc")]
    cluster_prefix: String,
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Subcommand)]
enum CliCommand {
    /// Changefeeds.
    #[command(subcommand)]
    Changefeed(ChangefeedCommand),
    /// Captures.
    #[command(subcommand)]
    Capture(CaptureCommand),
}

#[derive(Subcommand)]
enum ChangefeedCommand {
    /// Create a changefeed.
    Create {
        /// Changefeed id.
        #[arg(short = 'c', long = "changefeed-id")]
        id: String,
        /// Sink URI.
        #[arg(long)]
        sink_uri: String,
        /// Start ts (0 = now).
        #[arg(long, default_value_t = 0)]
        start_ts: u64,
        /// Upstream URI (default: the cluster's).
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Print a changefeed's info and status.
    Query {
        /// Changefeed id.
        #[arg(short = 'c', long = "changefeed-id")]
        id: String,
    },
}

#[derive(Subcommand)]
enum CaptureCommand {
    /// List captures.
    List,
}

#[derive(Args)]
struct VerifyArgs {
    /// The demo upstream URI the changefeed replicated from.
    #[arg(long)]
    upstream: String,
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
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

fn endpoints(pd: &str) -> Vec<String> {
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
        Command::Cli(args) => rt.block_on(cli_command(args)),
        Command::Verify(args) => verify(args),
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

async fn connect(pd: &str) -> anyhow::Result<EtcdStore> {
    EtcdStore::connect(&endpoints(pd), EtcdStoreConfig::default())
        .await
        .map_err(|e| anyhow!("{e}"))
}

async fn cli_command(args: CliArgs) -> anyhow::Result<()> {
    let store = connect(&args.pd).await?;
    let layout = KeyLayout::new(&args.cluster_prefix);
    match args.command {
        CliCommand::Changefeed(ChangefeedCommand::Create {
            id,
            sink_uri,
            start_ts,
            upstream,
        }) => {
            if !is_valid_changefeed_id(&id) {
                bail!("invalid changefeed id {id:?}: it must match ^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$ and be at most 128 characters");
            }
            rcdc::sink::parse_sink_uri(&sink_uri).map_err(|e| anyhow!("{e}"))?;
            if let Some(u) = &upstream {
                rcdc::upstream::parse_upstream_uri(u).map_err(|e| anyhow!("{e}"))?;
            }
            let now_ms = rcdc::reactor::Clock::now_ms(&rcdc::reactor::SystemClock);
            let start = if start_ts == 0 {
                Ts::from_parts(now_ms, 0)
            } else {
                Ts(start_ts)
            };
            let mut info = ChangeFeedInfo {
                sink_uri,
                start_ts: start,
                opts: Some(Default::default()),
                state: FeedState::Normal,
                sort_engine: "unified".into(),
                creator_version: format!("v{}", env!("CARGO_PKG_VERSION")),
                ..Default::default()
            };
            if let Some(u) = upstream {
                info.extra.insert(
                    rcdc::data_plane::UPSTREAM_URI_FIELD.into(),
                    serde_json::Value::String(u),
                );
            }
            let cf = ChangefeedId::from(id.as_str());
            let (info_key, job_key) = (layout.info(&cf), layout.status(&cf));
            let txn = Txn {
                compares: vec![
                    Compare {
                        key: info_key.clone(),
                        target: CompareTarget::CreateRevision(Revision(0)),
                    },
                    Compare {
                        key: job_key,
                        target: CompareTarget::CreateRevision(Revision(0)),
                    },
                ],
                success: vec![TxnOp::Put {
                    key: info_key,
                    value: encode(&info)?,
                    lease: 0,
                }],
                failure: vec![],
            };
            if !store.txn(txn).await.map_err(|e| anyhow!("{e}"))?.succeeded {
                bail!("changefeed {id} already exists");
            }
            println!(
                "Create changefeed successfully!\nID: {id}\nInfo: {}",
                String::from_utf8_lossy(&encode(&info)?)
            );
            Ok(())
        }
        CliCommand::Changefeed(ChangefeedCommand::Query { id }) => {
            let cf = ChangefeedId::from(id.as_str());
            let info = get_value(&store, layout.info(&cf))
                .await?
                .ok_or_else(|| anyhow!("changefeed {id} does not exist"))?;
            let info: serde_json::Value =
                serde_json::from_slice(&info).context("decoding the changefeed info")?;
            let status = match get_value(&store, layout.status(&cf)).await? {
                Some(v) => Some(
                    serde_json::from_slice::<ChangeFeedStatus>(&v)
                        .context("decoding the changefeed status")?,
                ),
                None => None,
            };
            let out = serde_json::json!({ "info": info, "status": status });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        CliCommand::Capture(CaptureCommand::List) => {
            let owner = rcdc::capture::election::current_owner(&store, &layout.owner_prefix())
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let (kvs, _) = store
                .get_prefix(&layout.capture_prefix())
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let mut list = Vec::new();
            for kv in kvs {
                let c: rcdc::state::model::CaptureInfo = serde_json::from_slice(&kv.value)
                    .with_context(|| format!("decoding {}", kv.key))?;
                list.push(serde_json::json!({ "id": c.id, "is-owner": owner.as_ref() == Some(&c.id), "address": c.address }));
            }
            println!("{}", serde_json::to_string_pretty(&list)?);
            Ok(())
        }
    }
}

async fn get_value(store: &EtcdStore, key: String) -> anyhow::Result<Option<Vec<u8>>> {
    let (kvs, _) = store.get_prefix(&key).await.map_err(|e| anyhow!("{e}"))?;
    Ok(kvs.into_iter().find(|kv| kv.key == key).map(|kv| kv.value))
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let upstream =
        rcdc::upstream::parse_upstream_uri(&args.upstream).map_err(|e| anyhow!("{e}"))?;
    let demo = upstream
        .as_demo()
        .ok_or_else(|| anyhow!("cdc verify needs a demo:// upstream (it has the oracle)"))?;
    let dir: PathBuf =
        match rcdc::sink::parse_sink_uri(&args.sink_uri).map_err(|e| anyhow!("{e}"))? {
            rcdc::sink::SinkSpec::File(cfg) => cfg.dir,
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
    let reports =
        rcdc::verify::verify(demo, &dir, &cf, start.prev(), at).map_err(|e| anyhow!(e))?;
    let mut bad = 0;
    for r in &reports {
        println!(
            "table {}: {} keys compared, {} mismatches",
            r.table,
            r.compared,
            r.mismatches.len()
        );
        for m in r.mismatches.iter().take(5) {
            println!("  {m}");
        }
        bad += r.mismatches.len();
    }
    println!("verified at ts {at}: {bad} mismatches");
    if bad > 0 {
        bail!("{bad} mismatches");
    }
    Ok(())
}
