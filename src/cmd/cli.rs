//! `cdc cli`: TiCDC v5's operator commands. Reads come from etcd (`--pd`); the owner's actions
//! (pause, resume, remove) go to the owner's HTTP API, found through the election key like
//! v5 did, or to `--server` when given (any capture forwards to the owner). Output is JSON
//! shaped like TiCDC's; an error is one line and a non-zero exit.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use rcdc::api::views::{changefeed_list, StateFilter, TimeZone};
use rcdc::meta::{replica_config_from_toml, ChangefeedUpdate, Meta, NewChangefeed};
use rcdc::reactor::store::etcd::{EtcdStore, EtcdStoreConfig};
use rcdc::reactor::Clock;
use rcdc::security::{Role, Security, SecurityConfig};
use rcdc::state::{CaptureId, ChangefeedId, KeyLayout};
use serde_json::{json, Value};

/// `cdc cli` global flags.
#[derive(Args)]
pub struct CliArgs {
    /// etcd endpoints, comma-separated.
    #[arg(long, default_value = "http://127.0.0.1:2379", global = true)]
    pd: String,
    /// Root prefix of the cluster's keys in etcd.
    #[arg(long, default_value = "/tidb/cdc", global = true)]
    cluster_prefix: String,
    /// A capture's address (host:port) for owner actions; default: the owner, from etcd.
    #[arg(long, global = true)]
    server: Option<String>,
    /// Log level of the CLI itself (accepted for TiCDC compatibility).
    #[arg(long, default_value = "warn", global = true)]
    log_level: String,
    /// CA certificate (PEM): TLS to etcd (https:// endpoints) and to the captures' API.
    #[arg(long, global = true)]
    ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) presented to etcd and the API; needs --ca and --key.
    #[arg(long, global = true)]
    cert: Option<std::path::PathBuf>,
    /// The key of --cert (PEM).
    #[arg(long, global = true)]
    key: Option<std::path::PathBuf>,
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
    /// Processors (a changefeed's work on one capture).
    #[command(subcommand)]
    Processor(ProcessorCommand),
    /// Commands that read or change raw metadata.
    #[command(subcommand, name = "unsafe")]
    Unsafe(UnsafeCommand),
    /// PD's timestamp oracle.
    #[command(subcommand)]
    Tso(TsoCommand),
}

#[derive(Subcommand)]
enum TsoCommand {
    /// Print a TSO from the PD at --pd.
    Query,
}

#[derive(Args)]
struct ChangefeedFlags {
    /// Sink URI.
    #[arg(long)]
    sink_uri: Option<String>,
    /// Target ts (0 = none).
    #[arg(long)]
    target_ts: Option<u64>,
    /// Changefeed config file (TiCDC's replica TOML).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum ChangefeedCommand {
    /// Create a changefeed.
    Create {
        /// Changefeed id (default: a random UUID).
        #[arg(short = 'c', long = "changefeed-id")]
        id: Option<String>,
        /// Start ts (0 = now).
        #[arg(long, default_value_t = 0)]
        start_ts: u64,
        /// Upstream URI (default: the cluster's `--upstream`).
        #[arg(long)]
        upstream: Option<String>,
        /// Do not ask for confirmation (rcdc never asks; accepted for TiCDC scripts).
        #[arg(long)]
        no_confirm: bool,
        /// Sort engine (only `unified`).
        #[arg(long, default_value = "unified")]
        sort_engine: String,
        /// Deprecated in TiCDC and ignored: the server's --data-dir decides.
        #[arg(long, hide = true)]
        sort_dir: Option<String>,
        /// Time zone the sink URI is checked in: System or an IANA name (the changefeed's
        /// times follow the server's --tz, as in TiCDC).
        #[arg(long)]
        tz: Option<String>,
        /// Sync points (not supported yet: no rcdc sink writes them).
        #[arg(long)]
        sync_point: bool,
        /// Sync point interval (not supported yet).
        #[arg(long)]
        sync_interval: Option<String>,
        #[command(flatten)]
        flags: ChangefeedFlags,
    },
    /// Update a stopped changefeed's sink URI, target ts or config.
    Update {
        /// Changefeed id.
        #[arg(short = 'c', long = "changefeed-id")]
        id: String,
        /// Accepted for TiCDC scripts.
        #[arg(long)]
        no_confirm: bool,
        #[command(flatten)]
        flags: ChangefeedFlags,
    },
    /// List changefeeds (removed and finished ones with `-a`).
    List {
        /// Include removed and finished changefeeds.
        #[arg(short = 'a', long = "all")]
        all: bool,
    },
    /// Show a changefeed.
    Query {
        /// Changefeed id.
        #[arg(short = 'c', long = "changefeed-id")]
        id: String,
        /// Only the state, checkpoint and error.
        #[arg(short = 's', long = "simple")]
        simple: bool,
    },
    /// Pause a changefeed.
    Pause {
        /// Changefeed id.
        #[arg(short = 'c', long = "changefeed-id")]
        id: String,
    },
    /// Resume a changefeed.
    Resume {
        /// Changefeed id.
        #[arg(short = 'c', long = "changefeed-id")]
        id: String,
        /// Accepted for TiCDC scripts.
        #[arg(long)]
        no_confirm: bool,
    },
    /// Print a changefeed's rows and lag every interval, until interrupted.
    Statistics {
        /// Changefeed id.
        #[arg(short = 'c', long = "changefeed-id")]
        id: String,
        /// Seconds between reports.
        #[arg(short = 'I', long, default_value_t = 10)]
        interval: u64,
    },
    /// Remove a changefeed and all its metadata.
    Remove {
        /// Changefeed id.
        #[arg(short = 'c', long = "changefeed-id")]
        id: String,
        /// Also delete the removed changefeed's record (then `list -a` no longer shows it).
        #[arg(short = 'f', long = "force")]
        force: bool,
    },
}

#[derive(Subcommand)]
enum CaptureCommand {
    /// List captures.
    List,
    /// Move a capture's tables to the other captures (before stopping or upgrading it).
    Drain {
        /// The capture to drain.
        #[arg(long = "capture-id")]
        capture: String,
        /// Ask once and print how many tables are left, instead of waiting until none is.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the drain to finish.
        #[arg(long, default_value = "10m", value_parser = |s: &str| rcdc::config::parse_duration("--timeout", s))]
        timeout: std::time::Duration,
    },
}

#[derive(Subcommand)]
enum ProcessorCommand {
    /// List processors.
    List,
    /// Show one processor's task status and position.
    Query {
        /// Changefeed id.
        #[arg(short = 'c', long = "changefeed-id")]
        id: String,
        /// Capture id.
        #[arg(short = 'p', long = "capture-id")]
        capture: String,
    },
}

#[derive(Subcommand)]
enum UnsafeCommand {
    /// Print every key and value under the cluster prefix (sink passwords masked).
    ShowMetadata {
        /// Accepted as TiCDC's every `unsafe` command is (nothing to confirm).
        #[arg(long)]
        no_confirm: bool,
    },
    /// Delete every key under the cluster prefix (and, on a PD, the service GC safe point).
    Reset {
        /// Do not ask for confirmation.
        #[arg(long)]
        no_confirm: bool,
    },
    /// Remove the cluster's service GC safe point from PD.
    DeleteServiceGcSafepoint {
        /// Accepted as TiCDC's every `unsafe` command is (nothing to confirm).
        #[arg(long)]
        no_confirm: bool,
    },
}

fn print(v: &Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

fn read_config(
    path: &Option<std::path::PathBuf>,
) -> anyhow::Result<Option<rcdc::state::model::ReplicaConfig>> {
    let Some(p) = path else { return Ok(None) };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    replica_config_from_toml(&text)
        .map(Some)
        .map_err(|e| anyhow!("{}: {e}", p.display()))
}

/// Runs one `cdc cli` command.
pub async fn run(args: CliArgs) -> anyhow::Result<()> {
    rcdc::logging::parse_level(&args.log_level).map_err(|e| anyhow!(e))?;
    let endpoints = super::endpoints(&args.pd);
    let security = SecurityConfig {
        ca_path: args.ca.clone(),
        cert_path: args.cert.clone(),
        key_path: args.key.clone(),
        cert_allowed_cn: vec![],
    }
    .load(Role::Client)?;
    rcdc::config::check_endpoint_schemes(&endpoints, security.is_tls())?;
    // Without it a certificate problem would surface as "etcd unavailable" after a timeout.
    rcdc::security::probe_etcd(&endpoints, &security, rcdc::security::PROBE_TIMEOUT).await?;
    let config = EtcdStoreConfig {
        tls: security.client_tls_config(),
        ..EtcdStoreConfig::default()
    };
    let store = EtcdStore::connect(&endpoints, config)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let meta = Meta::new(Arc::new(store), KeyLayout::new(&args.cluster_prefix));
    let tz = TimeZone::Local;
    let api = Api {
        server: args.server.as_deref(),
        security: &security,
        pd: &endpoints,
    };
    // An async block, so that `?` in the arms lands in `outcome` too.
    let outcome = async {
        match args.command {
        CliCommand::Tso(TsoCommand::Query) => super::cli_pd::tso_query(&endpoints, &security).await,
        CliCommand::Changefeed(cmd) => changefeed(&meta, api, tz, cmd).await,
        CliCommand::Capture(CaptureCommand::Drain { capture, no_wait, timeout }) => {
            super::cli_capture::drain(&meta, api, &capture, !no_wait, timeout).await
        }
        CliCommand::Capture(CaptureCommand::List) => {
            let state = meta.load().await?;
            let owner = meta.owner().await?;
            let list: Vec<Value> = state
                .captures()
                .iter()
                .map(|(id, c)| json!({ "id": id, "is-owner": owner.as_ref() == Some(id), "address": c.address }))
                .collect();
            print(&Value::Array(list))
        }
        CliCommand::Processor(ProcessorCommand::List) => {
            let state = meta.load().await?;
            let list: Vec<Value> = rcdc::api::views::processor_list(&state)
                .into_iter()
                .map(|p| json!({ "changefeed-id": p["changefeed_id"], "capture-id": p["capture_id"] }))
                .collect();
            print(&Value::Array(list))
        }
        CliCommand::Processor(ProcessorCommand::Query { id, capture }) => {
            let state = meta.load().await?;
            let (cf_id, cap) = (
                ChangefeedId::from(id.as_str()),
                CaptureId::new(capture.clone()),
            );
            let cf = state
                .changefeed(&cf_id)
                .ok_or_else(|| anyhow!("changefeed {id} does not exist"))?;
            let (status, position) = (cf.task_statuses.get(&cap), cf.task_positions.get(&cap));
            if status.is_none() && position.is_none() {
                bail!("no processor of changefeed {id} on capture {capture}");
            }
            print(&json!({ "status": status, "position": position }))
        }
        CliCommand::Unsafe(UnsafeCommand::ShowMetadata { no_confirm: _ }) => super::cli_unsafe::show_metadata(&meta).await,
        CliCommand::Unsafe(UnsafeCommand::Reset { no_confirm }) => {
            super::cli_unsafe::reset(&meta, &endpoints, &security, no_confirm).await
        }
        CliCommand::Unsafe(UnsafeCommand::DeleteServiceGcSafepoint { no_confirm: _ }) => {
            super::cli_unsafe::delete_service_gc_safepoint(&meta, &endpoints, &security).await
        }
    }
    }
    .await;
    outcome.map_err(|e| name_etcd(e, &endpoints))
}

/// An etcd failure names the endpoints asked (the store's own message names the call).
fn name_etcd(e: anyhow::Error, endpoints: &[String]) -> anyhow::Error {
    let from_etcd = e.chain().any(|c| {
        c.downcast_ref::<rcdc::reactor::store::StoreError>()
            .is_some()
            || matches!(
                c.downcast_ref::<rcdc::meta::MetaError>(),
                Some(rcdc::meta::MetaError::Store(_))
            )
    });
    match from_etcd {
        true => e.context(format!("etcd at {}", endpoints.join(","))),
        false => e,
    }
}

/// Where and how owner actions reach a capture's API.
#[derive(Clone, Copy)]
pub(super) struct Api<'a> {
    /// `--server`, else the owner found in etcd.
    pub server: Option<&'a str>,
    pub security: &'a Security,
    /// The `--pd` endpoints, for PD calls.
    pub pd: &'a [String],
}

async fn changefeed(
    meta: &Meta,
    api: Api<'_>,
    tz: TimeZone,
    cmd: ChangefeedCommand,
) -> anyhow::Result<()> {
    match cmd {
        ChangefeedCommand::Create {
            id,
            start_ts,
            upstream,
            no_confirm: _,
            sort_engine,
            sort_dir,
            tz,
            sync_point,
            sync_interval,
            flags,
        } => {
            if sort_engine != "unified" {
                bail!("invalid --sort-engine {sort_engine:?}: rcdc sorts in memory (use unified)");
            }
            if sync_point || sync_interval.is_some() {
                bail!("--sync-point and --sync-interval are not supported yet: no rcdc sink writes sync points");
            }
            if let Some(tz) = &tz {
                rcdc::config::timezone(tz)?;
            }
            if sort_dir.is_some() {
                eprintln!("Warning: --sort-dir is deprecated and ignored for a changefeed: each cdc server sorts under its own --data-dir");
            }
            let sink_uri = flags
                .sink_uri
                .ok_or_else(|| anyhow!("--sink-uri is required"))?;
            let new = NewChangefeed {
                id: id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                sink_uri,
                start_ts,
                target_ts: flags.target_ts.unwrap_or(0),
                upstream,
                config: read_config(&flags.config)?,
            };
            create(meta, api, new).await
        }
        ChangefeedCommand::Update {
            id,
            no_confirm: _,
            flags,
        } => {
            let update = ChangefeedUpdate {
                sink_uri: flags.sink_uri,
                target_ts: flags.target_ts,
                config: read_config(&flags.config)?,
            };
            if update.sink_uri.is_none() && update.target_ts.is_none() && update.config.is_none() {
                bail!("nothing to update: give --sink-uri, --target-ts or --config");
            }
            let id = ChangefeedId::from(id.as_str());
            let info = meta.update_changefeed(&id, update).await?;
            let mut shown = serde_json::to_value(&info)?;
            if let Some(uri) = shown.get_mut("sink-uri") {
                *uri = json!(rcdc::sink::mask_uri(&info.sink_uri));
            }
            outln!("Update changefeed config successfully!\nID: {id}\nInfo: {shown}")?;
            Ok(())
        }
        ChangefeedCommand::List { all } => {
            let state = meta.load().await?;
            let filter = if all {
                StateFilter::All
            } else {
                StateFilter::Default
            };
            let list: Vec<Value> = changefeed_list(&state, &filter, tz)
                .into_iter()
                .map(|c| {
                    json!({
                        "id": c["id"],
                        "summary": {
                            "state": c["state"],
                            "tso": c["checkpoint_tso"],
                            "checkpoint": c["checkpoint_time"],
                            "error": c.get("error").cloned().unwrap_or(Value::Null),
                        }
                    })
                })
                .collect();
            print(&Value::Array(list))
        }
        ChangefeedCommand::Query { id, simple } => {
            let state = meta.load().await?;
            let cf_id = ChangefeedId::from(id.as_str());
            if simple {
                let v = rcdc::api::simple_status(&state, &cf_id, tz)
                    .ok_or_else(|| anyhow!("changefeed {id} does not exist"))?;
                return print(&v);
            }
            let cf = state
                .changefeed(&cf_id)
                .filter(|c| c.info.is_some())
                .ok_or_else(|| anyhow!("changefeed {id} does not exist"))?;
            let mut info = serde_json::to_value(&cf.info)?;
            if let (Some(uri), Some(i)) = (info.get_mut("sink-uri"), &cf.info) {
                *uri = json!(rcdc::sink::mask_uri(&i.sink_uri));
            }
            let count: u64 = cf.task_positions.values().map(|p| p.count).sum();
            let tasks: Vec<Value> = cf
                .task_statuses
                .iter()
                .map(|(c, s)| json!({ "capture-id": c, "status": s }))
                .collect();
            print(
                &json!({ "info": info, "status": cf.status, "count": count, "task-status": tasks }),
            )
        }
        ChangefeedCommand::Statistics { id, interval } => {
            let pd = super::cli_pd::probe(api.pd, api.security).await?;
            let every = std::time::Duration::from_secs(interval);
            super::cli_stats::statistics(meta, &id, every, pd).await
        }
        ChangefeedCommand::Pause { id } => owner_action(meta, api, &id, "pause").await,
        ChangefeedCommand::Resume { id, no_confirm: _ } => {
            owner_action(meta, api, &id, "resume").await
        }
        ChangefeedCommand::Remove { id, force } => {
            let cf = ChangefeedId::from(id.as_str());
            let state = meta.load().await?;
            let live = state.changefeed(&cf).is_some_and(|c| c.info.is_some());
            // A removed changefeed only has its record left, for --force to delete.
            if live || !force {
                owner_action(meta, api, &id, "remove").await?;
            }
            if force && !meta.delete_removed_record(&cf).await? && !live {
                bail!("changefeed {id} does not exist");
            }
            Ok(())
        }
    }
}

/// `changefeed create`: checks the start-ts against the changefeed's upstream as the captures
/// see it — its --upstream, else the cluster's default: the TiDB cluster itself when --pd is a
/// PD (as TiCDC's CLI asks PD), else what the owner says — then writes the changefeed.
async fn create(meta: &Meta, api: Api<'_>, new: NewChangefeed) -> anyhow::Result<()> {
    let pd = super::cli_pd::probe(api.pd, api.security).await?;
    let default_upstream = match &pd {
        Some(_) => (rcdc::upstream::pd::pd_uri(api.pd), None),
        None => cluster_default_upstream(meta, &api).await,
    };
    let guard = super::cli_pd::create_guard(default_upstream, new.upstream.as_deref(), pd).await?;
    let now = rcdc::reactor::SystemClock.now_ms();
    let (id, info) = meta.create_changefeed(new, now, &guard).await?;
    let mut shown = serde_json::to_value(&info)?;
    if let Some(uri) = shown.get_mut("sink-uri") {
        *uri = json!(rcdc::sink::mask_uri(&info.sink_uri));
    }
    outln!("Create changefeed successfully!\nID: {id}\nInfo: {shown}")?;
    Ok(())
}

/// The default upstream of a cluster on a plain etcd, from the owner's (or `--server`'s)
/// `GET /config`. With no capture answering it is `cdc server`'s default, `demo://`, with the
/// reason it may not be (for a warning).
async fn cluster_default_upstream(meta: &Meta, api: &Api<'_>) -> (String, Option<String>) {
    let fetch = async {
        let address = capture_address(meta, api.server).await?;
        let config: Value = api
            .security
            .http_client(std::time::Duration::from_secs(10))?
            .get(api.security.api_url(&address, "/config"))
            .send()
            .await?
            .json()
            .await?;
        config["upstream"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no upstream in {address}'s /config"))
    };
    match fetch.await {
        Ok(uri) => (uri, None),
        Err(e) => {
            let demo = rcdc::config::DEFAULT_UPSTREAM;
            let why = format!("the cluster's default upstream is unknown ({e:#}); the start-ts is checked against {demo}, cdc server's default");
            (demo.to_owned(), Some(why))
        }
    }
}

/// Sends pause/resume/remove to the owner's API (or `--server`, which forwards).
async fn owner_action(meta: &Meta, api: Api<'_>, id: &str, action: &str) -> anyhow::Result<()> {
    let address = capture_address(meta, api.server).await?;
    owner_request(api.security, &address, id, action).await
}

/// `--server`'s address, else the owner's.
pub(super) async fn capture_address(meta: &Meta, server: Option<&str>) -> anyhow::Result<String> {
    Ok(match server {
        Some(s) => s
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned(),
        None => {
            let owner = meta
                .owner()
                .await?
                .ok_or_else(|| anyhow!("the cluster has no owner; is any cdc server running?"))?;
            let state = meta.load().await?;
            state
                .captures()
                .get(&owner)
                .map(|c| c.address.clone())
                .ok_or_else(|| anyhow!("owner {owner} has no capture info"))?
        }
    })
}

/// Sends one owner action to the capture at `address` and reports its answer.
async fn owner_request(
    security: &Security,
    address: &str,
    id: &str,
    action: &str,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/changefeeds/{id}");
    let (method, path) = match action {
        "remove" => (reqwest::Method::DELETE, path),
        other => (reqwest::Method::POST, format!("{path}/{other}")),
    };
    call_api(security, address, method, &path, None).await?;
    Ok(())
}

/// One call to the API of the capture at `address`; its JSON answer (`null` when empty), or
/// the capture's `error_msg`.
pub(super) async fn call_api(
    security: &Security,
    address: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    // Past the owner's confirmation deadline and a forward's, so the CLI prints their answer.
    let http = security
        .http_client(rcdc::owner::runtime::REQUEST_TIMEOUT + std::time::Duration::from_secs(20))?;
    let mut request = http.request(method.clone(), security.api_url(address, path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => match rcdc::security::api_tls_failure(security, address, &e).await {
            Some(tls) => return Err(tls.into()),
            None => return Err(e).with_context(|| format!("reaching the capture at {address}")),
        },
    };
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    match body["error_msg"].as_str() {
        Some(msg) => bail!("{msg}"),
        None => bail!("{method} {path} failed with HTTP {status}"),
    }
}
