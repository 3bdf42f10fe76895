//! `cdc-standin` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::cluster::{Store, StoreState};

/// Stand-ins for the parts of a TiDB cluster that cannot run here, speaking their real wire
/// protocol, so that rcdc's production code runs unchanged against them.
#[derive(Debug, Parser)]
#[command(name = "cdc-standin", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A PD cluster of one to a few members in front of a real etcd.
    #[command(long_about = crate::PD_LONG_HELP)]
    Pd(PdArgs),
}

/// `cdc-standin pd` flags.
#[derive(Clone, Debug, Parser)]
pub struct PdArgs {
    /// The real etcd's client URL: http://host:port, or https://host:port (with --ca, --cert
    /// and --key, which the stand-in presents to it). Its gRPC services are served on every
    /// member's port, and PD's own state (cluster id, GC safe points) is kept in it.
    #[arg(long, value_name = "URL")]
    pub etcd: String,

    /// One address per PD member, comma-separated (members pd-1, pd-2, ...; pd-1 starts as
    /// leader). Port 0 picks a free port; the ready line on stdout names the real ones.
    #[arg(
        long,
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ',',
        required = true
    )]
    pub listen: Vec<SocketAddr>,

    /// Where the TSO window is kept (locked while the stand-in runs).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// The cluster id of a fresh etcd (default: derived from the time, as PD does). On an etcd
    /// that already carries one it must match.
    #[arg(long, value_name = "N")]
    pub cluster_id: Option<u64>,

    /// A TiKV store, `id=N,address=HOST:PORT[,version=V][,state=Up|Offline|Tombstone]`;
    /// repeatable. Default: one store `id=1,address=127.0.0.1:20160,version=5.1.0`.
    #[arg(long = "store", value_name = "SPEC")]
    pub stores: Vec<StoreSpec>,

    /// What `GET /pd/api/v1/version` reports (a real PD v5.1.0 says `v5.1.0`).
    #[arg(long, value_name = "VERSION", default_value = crate::DEFAULT_PD_VERSION)]
    pub pd_version: String,

    /// How often the TSO physical time follows the clock (PD's
    /// `tso-update-physical-interval`).
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub tso_update_interval: Duration,

    /// How far ahead the TSO window is saved (PD's `tso-save-interval`).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    pub tso_save_interval: Duration,

    /// Log filter (tracing-subscriber syntax); `RUST_LOG` wins when set.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log_level: String,

    /// TLS, as a PD with `[security]` set: the CA that signs every certificate of the
    /// cluster. Every member then serves only TLS (gRPC and HTTP; a client certificate signed
    /// by this CA is required; member URLs become https://), and an https:// --etcd is dialled
    /// trusting it. Needs --cert and --key.
    #[arg(long, value_name = "PATH", requires_all = ["cert", "key"])]
    pub ca: Option<PathBuf>,
    /// The stand-in's certificate (PEM): served to clients, and presented to an https://
    /// --etcd as the stand-in's client certificate.
    #[arg(long, value_name = "PATH", requires = "ca")]
    pub cert: Option<PathBuf>,
    /// The key of --cert (PEM).
    #[arg(long, value_name = "PATH", requires = "ca")]
    pub key: Option<PathBuf>,
}

/// One `--store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSpec(pub Store);

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (mut id, mut address, mut version, mut state) = (None, None, None, StoreState::Up);
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            match k {
                "id" => id = Some(v.parse::<u64>().map_err(|e| format!("id {v:?}: {e}"))?),
                "address" => address = Some(v.to_string()),
                "version" => version = Some(v.to_string()),
                "state" => {
                    state = match v {
                        "Up" => StoreState::Up,
                        "Offline" => StoreState::Offline,
                        "Tombstone" => StoreState::Tombstone,
                        _ => return Err(format!("state {v:?}: one of Up, Offline, Tombstone")),
                    }
                }
                _ => return Err(format!("unknown key {k:?} (id, address, version, state)")),
            }
        }
        let id = id.ok_or("id=N is required")?;
        if id == 0 {
            return Err("store id 0 is not valid in PD".into());
        }
        Ok(Self(Store {
            id,
            address: address.ok_or("address=HOST:PORT is required")?,
            version: version.unwrap_or_else(|| crate::DEFAULT_STORE_VERSION.to_string()),
            state,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_spec_parses_and_names_its_errors() {
        let s: StoreSpec = "id=4,address=127.0.0.1:20161,version=3.0.0,state=Offline"
            .parse()
            .unwrap();
        assert_eq!(s.0.id, 4);
        assert_eq!(s.0.version, "3.0.0");
        assert_eq!(s.0.state, StoreState::Offline);
        let d: StoreSpec = "id=1,address=a:1".parse().unwrap();
        assert_eq!(d.0.version, crate::DEFAULT_STORE_VERSION);
        assert!("address=a:1"
            .parse::<StoreSpec>()
            .unwrap_err()
            .contains("id=N"));
        assert!("id=1,adress=a"
            .parse::<StoreSpec>()
            .unwrap_err()
            .contains("adress"));
        assert!("id=0,address=a:1"
            .parse::<StoreSpec>()
            .unwrap_err()
            .contains("0"));
    }

    #[test]
    fn listen_takes_a_comma_separated_list() {
        let cli = Cli::try_parse_from([
            "cdc-standin",
            "pd",
            "--etcd",
            "http://127.0.0.1:2379",
            "--listen",
            "127.0.0.1:1,127.0.0.1:2",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        let Command::Pd(a) = cli.command;
        assert_eq!(a.listen.len(), 2);
        assert_eq!(a.tso_save_interval, Duration::from_secs(3));
        let bad = Cli::try_parse_from([
            "cdc-standin",
            "pd",
            "--etcd",
            "x",
            "--listen",
            "nonsense",
            "--data-dir",
            "d",
        ])
        .unwrap_err();
        assert!(bad.to_string().contains("nonsense"), "{bad}");
    }
}
