//! What PD keeps in its etcd, kept in the real etcd behind the stand-in under PD's own keys:
//! the cluster id (`/pd/cluster_id`, 8 bytes big-endian) and everything under
//! `/pd/<cluster_id>/` (here: GC safe points). State shared by the members and kept across
//! restarts lives there, as it does in PD.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp};

use crate::error::{Result, StandinError};
use crate::tls::StandinTls;

/// PD's key for the cluster id.
const CLUSTER_ID_KEY: &str = "/pd/cluster_id";
/// Every etcd request the stand-in makes is bounded by this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the real etcd, rooted at `/pd/<cluster_id>` once the id is known.
#[derive(Clone)]
pub struct PdKv {
    kv: KvClient,
    endpoint: String,
    root: String,
}

impl std::fmt::Debug for PdKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdKv")
            .field("endpoint", &self.endpoint)
            .field("root", &self.root)
            .finish()
    }
}

/// Connects to etcd and reads (or, on a fresh etcd, creates) the cluster id, as PD's
/// `initOrGetClusterID` does: one txn that writes the id only if the key was never created.
/// `requested` fixes the id of a fresh cluster; on an etcd that has one already it must match.
/// `tls`: how to reach an `https://` etcd (see [`crate::tls::etcd_link`]); a certificate
/// problem is an error naming etcd and why.
pub async fn connect(
    endpoint: &str,
    tls: Option<&StandinTls>,
    requested: Option<u64>,
    fresh_id: u64,
) -> Result<(PdKv, u64)> {
    let unreachable = |source| StandinError::EtcdUnreachable {
        endpoint: endpoint.to_string(),
        source,
    };
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    if let Some(tls) = tls {
        tls.probe_etcd(endpoint).await?;
        opts = opts.with_tls(tls.etcd_options());
    }
    let client = Client::connect([endpoint], Some(opts))
        .await
        .map_err(unreachable)?;
    let mut kv = client.kv_client();
    let wanted = requested.unwrap_or(fresh_id);
    let txn = Txn::new()
        .when([Compare::create_revision(
            CLUSTER_ID_KEY,
            CompareOp::Equal,
            0,
        )])
        .and_then([TxnOp::put(CLUSTER_ID_KEY, wanted.to_be_bytes(), None)])
        .or_else([TxnOp::get(CLUSTER_ID_KEY, None)]);
    // The first request is where an unreachable etcd shows (connect is lazy).
    let resp = kv.txn(txn).await.map_err(unreachable)?;
    let stored = if resp.succeeded() {
        tracing::info!(cluster_id = wanted, "cluster id created");
        wanted
    } else {
        let value = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .unwrap_or_default();
        let bytes: [u8; 8] =
            value
                .as_slice()
                .try_into()
                .map_err(|_| StandinError::CorruptValue {
                    endpoint: endpoint.to_string(),
                    key: CLUSTER_ID_KEY.to_string(),
                    why: format!("{} bytes, PD writes 8", value.len()),
                })?;
        u64::from_be_bytes(bytes)
    };
    if let Some(requested) = requested.filter(|r| *r != stored) {
        return Err(StandinError::ClusterIdConflict {
            endpoint: endpoint.to_string(),
            stored,
            requested,
        });
    }
    let pd_kv = PdKv {
        kv,
        endpoint: endpoint.to_string(),
        root: format!("/pd/{stored}"),
    };
    Ok((pd_kv, stored))
}

impl PdKv {
    /// The endpoint, for error messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `/pd/<cluster_id>/<rel>`.
    pub fn key(&self, rel: &str) -> String {
        format!("{}/{}", self.root, rel)
    }

    fn err(&self, what: &'static str) -> impl FnOnce(etcd_client::Error) -> StandinError + '_ {
        move |source| StandinError::Etcd {
            endpoint: self.endpoint.clone(),
            what,
            source,
        }
    }

    /// Every (key, value) under `prefix` (an absolute key), in key order.
    pub async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let opts = GetOptions::new().with_prefix();
        let mut kv = self.kv.clone();
        let resp = bounded(kv.get(prefix, Some(opts)))
            .await
            .map_err(self.err("scan"))?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect())
    }

    /// The value of one absolute key.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut kv = self.kv.clone();
        let resp = bounded(kv.get(key, None)).await.map_err(self.err("get"))?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Puts one absolute key.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<()> {
        let mut kv = self.kv.clone();
        bounded(kv.put(key, value, None))
            .await
            .map_err(self.err("put"))?;
        Ok(())
    }

    /// Deletes one absolute key.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let mut kv = self.kv.clone();
        bounded(kv.delete(key, None))
            .await
            .map_err(self.err("delete"))?;
        Ok(())
    }
}

/// Runs an etcd request with the stand-in's timeout; a timeout reads as etcd's own
/// `DeadlineExceeded` so callers see one error type.
async fn bounded<T>(
    fut: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> std::result::Result<T, etcd_client::Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(etcd_client::Error::GRpcStatus(
            tonic::Status::deadline_exceeded(format!("no answer within {REQUEST_TIMEOUT:?}")),
        )),
    }
}
