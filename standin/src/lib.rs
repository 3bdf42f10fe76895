//! `cdc-standin pd`: a PD stand-in that speaks PD's real gRPC protocol with PD v5.1's
//! semantics and faults, in front of a real etcd, so that `cdc server --pd http://<stand-in>`
//! (or `https://` with TLS) runs rcdc's production code path unchanged (target-design §8
//! "Stand-ins"; `shared/design/tikv-pd-protocol.md` §5, §7(b)).
//!
//! ```text
//! cdc-standin pd --etcd http://127.0.0.1:2379 \
//!     --listen 127.0.0.1:2479,127.0.0.1:2579,127.0.0.1:2679 --data-dir /tmp/standin \
//!     [--cluster-id N] [--store id=1,address=127.0.0.1:20160,version=5.1.0 ...] \
//!     [--pd-version v5.1.0] [--tso-update-interval 50ms] [--tso-save-interval 3s] \
//!     [--ca ca.pem --cert pd.pem --key pd-key.pem]
//! ```
//!
//! Each `--listen` address is one PD member (`pd-1`, `pd-2`, ...; `pd-1` starts as leader).
//! Members share one state in the process. When every listener is bound, one line goes to
//! stdout: `cdc-standin pd ready: cluster_id=N leader=pd-1 members=pd-1=http://...,...`.
//!
//! # One port, like PD
//! Every member serves on its single port:
//! - gRPC `pdpb.PD` ([`pd`]): GetMembers, Tso, GetStore, GetAllStores, GetRegion,
//!   GetRegionByID, ScanRegions, GetGCSafePoint, UpdateServiceGCSafePoint;
//! - every other gRPC path (etcd's KV, Watch, Lease, Cluster, Maintenance, Auth, election,
//!   lock) forwarded to the real etcd, streams and trailers included ([`proxy`]);
//! - HTTP/1.1: `GET /pd/api/v1/version` (`{"version":"v5.1.0"}`), `GET /pd/api/v1/health`, the
//!   control routes below, and everything else (e.g. `GET /health`) forwarded to etcd.
//!
//! # TLS, like PD with `[security]` set
//! With `--ca --cert --key` (given together) every member's port speaks only TLS ([`tls`]):
//! ALPN `h2` for gRPC and `http/1.1` for the HTTP routes, a client certificate signed by the
//! CA required (PD with `cert-allowed-cn` unset), member URLs `https://`. A refused handshake
//! is logged naming the client's address. An `https://` `--etcd` is dialled with the same CA
//! and certificate, by the stand-in's etcd client and by the forwarding alike; a certificate
//! problem with it stops the start naming etcd's URL and why.
//!
//! # State kept like PD keeps it
//! - The cluster id in etcd at `/pd/cluster_id` (8 bytes big-endian), created on a fresh etcd.
//! - Service GC safe points in etcd at `/pd/<cluster_id>/gc/safe_point/service/<id>` as PD's
//!   JSON, with PD 5.1's rules ([`gc`]); the GC safe point at `/pd/<cluster_id>/gc/safe_point`.
//! - The TSO window in `<data-dir>/tso-window` ([`tso`]): timestamps stay monotonic across
//!   restarts on the same data dir.
//!
//! # Control routes (any member; JSON bodies)
#![doc = include_str!("control_routes.md")]

pub mod cli;
pub mod cluster;
pub mod error;
pub mod gc;
pub mod http;
pub mod meta;
pub mod pd;
pub mod proxy;
pub mod server;
pub mod tls;
pub mod tso;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::cli::{Cli, Command, PdArgs};
use crate::cluster::{Cluster, Store, StoreState};
use crate::error::{Result, StandinError};
use crate::pd::{GcState, PdService};
use crate::server::Dispatcher;
use crate::tls::StandinTls;
use crate::tso::{Clock, SystemClock, Tso};

/// What `GET /pd/api/v1/version` reports unless `--pd-version` says otherwise.
pub const DEFAULT_PD_VERSION: &str = "v5.1.0";
/// The version of a store given without one.
pub const DEFAULT_STORE_VERSION: &str = "5.1.0";

/// The long help of `cdc-standin pd`.
pub const PD_LONG_HELP: &str = concat!(
    "A PD stand-in: each --listen address is one PD member serving PD's gRPC (pdpb.PD), \
     etcd's gRPC (forwarded to --etcd) and PD's HTTP API on one port.\n\nControl routes:\n",
    include_str!("control_routes.md")
);

/// Parses `args` (program name first) and runs the stand-in until it fails or is killed.
/// Errors go to stderr as one line naming what failed; the exit code is 1 (2 for bad usage).
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let Command::Pd(args) = cli.command;
    init_logging(&args.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cdc-standin: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(async { start(args).await?.wait().await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdc-standin: {}", chain(&e));
            ExitCode::from(1)
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A running stand-in: its cluster state and the tasks serving it (aborted on drop).
pub struct Standin {
    pub cluster: Arc<Cluster>,
    tasks: JoinSet<()>,
}

impl Standin {
    /// Every member's URL, in member order.
    pub fn urls(&self) -> Vec<String> {
        self.cluster.members.iter().map(|m| m.url.clone()).collect()
    }

    /// Runs until a serving task ends (which only a bug makes happen).
    pub async fn wait(mut self) -> Result<()> {
        let why = match self.tasks.join_next().await {
            Some(Err(e)) => e.to_string(),
            Some(Ok(())) => "it returned".to_string(),
            None => "there were none".to_string(),
        };
        Err(StandinError::TaskEnded(why))
    }
}

/// A cluster id for a fresh etcd, shaped like PD's: Unix seconds in the high half, a
/// per-start number in the low half.
fn fresh_cluster_id(clock: &dyn Clock) -> u64 {
    let ms = clock.now_ms().max(0) as u64;
    let low = ((u64::from(std::process::id()) << 10) | (ms % 1000)) as u32;
    ((ms / 1000) << 32) | u64::from(low)
}

/// Binds every member, connects etcd, opens the data dir and starts serving. Everything that
/// can fail at start fails here, naming the address, endpoint or path.
pub async fn start(args: PdArgs) -> Result<Standin> {
    rcdc_tls::install_crypto_provider();
    let tls = StandinTls::load(&args)?;
    let etcd_tls = tls::etcd_link(&args.etcd, tls.as_ref())?;
    let acceptor = match &tls {
        Some(tls) => Some(TlsAcceptor::from(tls.server_config()?)),
        None => None,
    };
    let proxy = proxy::EtcdProxy::new(&args.etcd, etcd_tls)?;
    let (listeners, addrs) = bind_all(&args.listen).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (kv, cluster_id) = meta::connect(
        &args.etcd,
        etcd_tls,
        args.cluster_id,
        fresh_cluster_id(&*clock),
    )
    .await?;
    let save_ms = i64::try_from(args.tso_save_interval.as_millis()).unwrap_or(i64::MAX);
    let tso = Arc::new(Tso::open(&args.data_dir, clock, save_ms)?);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let cluster = Arc::new(Cluster::new(
        cluster_id,
        args.pd_version,
        &addrs,
        scheme,
        stores(args.stores),
        tso.clone(),
    ));
    let gc = Arc::new(GcState::new(gc::ServiceSafePoints::new(kv)));
    let mut tasks = JoinSet::new();
    tasks.spawn(tso_update_loop(tso, args.tso_update_interval));
    for (i, listener) in listeners.into_iter().enumerate() {
        let svc = PdService::new(i, cluster.clone(), gc.clone(), args.tso_update_interval);
        let dispatcher = Dispatcher {
            pd: pd_handler(svc),
            proxy: proxy.clone(),
            http: http::router(cluster.clone()),
        };
        let member = server::Member::new(i, cluster.clone(), dispatcher, acceptor.clone());
        tasks.spawn(member.run(listener));
    }
    let members: Vec<String> = cluster
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, m.url))
        .collect();
    tracing::info!(cluster_id, etcd = %args.etcd, members = %members.join(","), "cdc-standin pd started");
    println!(
        "cdc-standin pd ready: cluster_id={cluster_id} leader={} members={}",
        cluster.members[0].name,
        members.join(",")
    );
    Ok(Standin { cluster, tasks })
}

/// Binds every `--listen` address; returns the listeners and their real addresses (port 0
/// picked one).
async fn bind_all(listen: &[SocketAddr]) -> Result<(Vec<TcpListener>, Vec<SocketAddr>)> {
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for addr in listen {
        let listener = server::bind(*addr).await?;
        addrs.push(listener.local_addr().map_err(|source| StandinError::Bind {
            addr: *addr,
            source,
        })?);
        listeners.push(listener);
    }
    Ok((listeners, addrs))
}

/// The `--store` flags, or one default store.
fn stores(specs: Vec<cli::StoreSpec>) -> Vec<Store> {
    if specs.is_empty() {
        vec![Store {
            id: 1,
            address: "127.0.0.1:20160".into(),
            version: DEFAULT_STORE_VERSION.into(),
            state: StoreState::Up,
        }]
    } else {
        specs.into_iter().map(|s| s.0).collect()
    }
}

fn pd_handler(svc: PdService) -> server::PdHandler {
    let server = rcdc_proto::pdpb::pd_server::PdServer::new(svc);
    Arc::new(move |req| {
        let mut server = server.clone();
        Box::pin(async move {
            match tower_service::Service::call(&mut server, req).await {
                Ok(resp) => resp.map(axum::body::Body::new),
                Err(never) => match never {},
            }
        })
    })
}

/// PD's TSO update loop: the physical time follows the clock every interval. A failure to
/// save the window is logged and retried next time; the oracle never passes its saved bound.
async fn tso_update_loop(tso: Arc<Tso>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The window save fsyncs: off the async workers.
        let t = tso.clone();
        match tokio::task::spawn_blocking(move || t.update()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "TSO update failed; timestamps stall until it succeeds")
            }
            Err(e) => tracing::error!(error = %e, "TSO update task failed"),
        }
    }
}
