//! Leader discovery: GetMembers on the known URLs in turn, a channel to the leader, and a
//! re-discovery that many failing callers share (PD Go client `base_client.go`: `initClusterID`,
//! `updateMember`, `memberLoop`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rcdc_proto::pdpb;
use rcdc_proto::pdpb::pd_client::PdClient as PdRpc;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::PdError;
use crate::options::normalize_endpoint;

/// A PD member as its GetMembers answer describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdMember {
    /// The member's name (`--name` of pd-server).
    pub name: String,
    /// Its id in the embedded etcd cluster.
    pub member_id: u64,
    /// Where clients reach it (PD's and etcd's gRPC, one port).
    pub client_urls: Vec<String>,
}

impl From<&pdpb::Member> for PdMember {
    fn from(m: &pdpb::Member) -> Self {
        Self {
            name: m.name.clone(),
            member_id: m.member_id,
            client_urls: m.client_urls.clone(),
        }
    }
}

/// The leader calls go to, with the generation that changes on every switch (so that callers
/// that saw the same failure re-discover only once).
#[derive(Clone)]
pub(crate) struct Leader {
    pub url: String,
    pub channel: Channel,
    pub generation: u64,
}

/// What one successful discovery learned.
struct Discovery {
    cluster_id: u64,
    leader_url: String,
    members: Vec<PdMember>,
}

/// Connection settings every channel shares.
#[derive(Clone)]
pub(crate) struct Dial {
    pub tls: Option<ClientTlsConfig>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub runtime: tokio::runtime::Handle,
}

/// PD's largest answers (a GetAllStores of a big cluster, a ScanRegions page) stay far below
/// this, but tonic's default 4 MiB is not a limit PD promises to respect.
pub(crate) const MAX_DECODING_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// The members, the leader and the channels to them.
pub(crate) struct Members {
    dial: Dial,
    /// The `--pd` endpoints, normalized: always asked after the members' own URLs.
    seeds: Vec<String>,
    cluster_id: OnceLock<u64>,
    /// One lazily connecting channel per URL, reused across leader changes.
    channels: Mutex<BTreeMap<String, Channel>>,
    leader: RwLock<Option<Leader>>,
    members: RwLock<Vec<PdMember>>,
    /// Held while re-discovering, so that concurrent failures share one discovery.
    discovery: tokio::sync::Mutex<()>,
}

impl Members {
    pub(crate) fn new(dial: Dial, seeds: Vec<String>) -> Self {
        Self {
            dial,
            seeds,
            cluster_id: OnceLock::new(),
            channels: Mutex::new(BTreeMap::new()),
            leader: RwLock::new(None),
            members: RwLock::new(Vec::new()),
            discovery: tokio::sync::Mutex::new(()),
        }
    }

    /// The cluster id found by the first discovery (0 before it).
    pub(crate) fn cluster_id(&self) -> u64 {
        self.cluster_id.get().copied().unwrap_or(0)
    }

    pub(crate) fn members(&self) -> Vec<PdMember> {
        self.members.read().clone()
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.dial.request_timeout
    }

    /// The current leader; `NoLeader` only before the first discovery succeeded.
    pub(crate) fn leader(&self) -> Result<Leader, PdError> {
        self.leader.read().clone().ok_or_else(|| PdError::NoLeader {
            endpoints: self.seeds.join(","),
            detail: "no discovery has succeeded yet".into(),
        })
    }

    /// A generated PD client on the leader's channel.
    pub(crate) fn rpc(channel: Channel) -> PdRpc<Channel> {
        PdRpc::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    /// The channel to `url`, created (lazily connecting) on first use.
    fn channel(&self, url: &str) -> Result<Channel, PdError> {
        if let Some(ch) = self.channels.lock().get(url) {
            return Ok(ch.clone());
        }
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| PdError::BadEndpoint {
                endpoint: url.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.dial.connect_timeout)
            .tcp_nodelay(true)
            // TiCDC's keepalive (10 s, 3 s): a dead leader under an idle TSO stream is noticed.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.dial.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| PdError::BadEndpoint {
                    endpoint: url.to_string(),
                    reason: format!("TLS configuration: {e}"),
                })?;
        }
        // The channel's worker task runs on the client's runtime, whoever calls first.
        let _runtime = self.dial.runtime.enter();
        let ch = endpoint.connect_lazy();
        self.channels.lock().insert(url.to_string(), ch.clone());
        Ok(ch)
    }

    /// GetMembers on one URL, within the request timeout.
    async fn get_members(&self, url: &str) -> Result<pdpb::GetMembersResponse, PdError> {
        let mut rpc = Self::rpc(self.channel(url)?);
        let req = pdpb::GetMembersRequest {
            header: Some(pdpb::RequestHeader {
                cluster_id: self.cluster_id(),
                sender_id: 0,
            }),
        };
        let timeout = self.dial.request_timeout;
        match tokio::time::timeout(timeout, rpc.get_members(req)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(PdError::from_status(url, "GetMembers", &status)),
            Err(_) => Err(PdError::Timeout {
                endpoint: url.to_string(),
                method: "GetMembers",
                after: timeout,
            }),
        }
    }

    /// Where to ask: the members' client URLs from the last answer, then the seeds.
    fn candidates(&self) -> Vec<String> {
        let tls = self.dial.tls.is_some();
        let mut out: Vec<String> = Vec::new();
        let known = self.members.read().clone();
        let member_urls = known.iter().flat_map(|m| m.client_urls.iter());
        for url in member_urls.filter_map(|u| normalize_endpoint(u, tls).ok()) {
            if !out.contains(&url) {
                out.push(url);
            }
        }
        for url in &self.seeds {
            if !out.contains(url) {
                out.push(url.clone());
            }
        }
        out
    }

    /// Asks each candidate in turn until one names a leader; checks the cluster id once it is
    /// known. Every failure is kept for the error message.
    async fn discover(&self) -> Result<Discovery, PdError> {
        let tls = self.dial.tls.is_some();
        let candidates = self.candidates();
        let mut failures: Vec<PdError> = Vec::new();
        for url in &candidates {
            let resp = match self.get_members(url).await {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::debug!(endpoint = %url, error = %e, "PD GetMembers failed");
                    failures.push(e);
                    continue;
                }
            };
            let got = resp.header.as_ref().map_or(0, |h| h.cluster_id);
            if let Some(&expected) = self.cluster_id.get() {
                if got != expected {
                    failures.push(PdError::ClusterIdMismatch {
                        endpoint: url.clone(),
                        method: "GetMembers",
                        expected,
                        got,
                    });
                    continue;
                }
            }
            let leader_url = resp
                .leader
                .as_ref()
                .and_then(|l| l.client_urls.first())
                .map(|u| normalize_endpoint(u, tls));
            match leader_url {
                Some(Ok(leader_url)) => {
                    return Ok(Discovery {
                        cluster_id: got,
                        leader_url,
                        members: resp.members.iter().map(PdMember::from).collect(),
                    })
                }
                Some(Err(e)) => failures.push(e),
                None => failures.push(PdError::NoLeader {
                    endpoints: url.clone(),
                    detail: "the member knows no leader (election in progress?)".into(),
                }),
            }
        }
        Err(summarize(&candidates, failures))
    }

    /// Discovers and switches to the leader found. The first success fixes the cluster id.
    pub(crate) async fn update(&self) -> Result<(), PdError> {
        let found = self.discover().await?;
        let cluster_id = *self.cluster_id.get_or_init(|| found.cluster_id);
        let channel = self.channel(&found.leader_url)?;
        *self.members.write() = found.members;
        let mut leader = self.leader.write();
        let previous = leader.as_ref().map(|l| (l.url.clone(), l.generation));
        match previous {
            Some((url, _)) if url == found.leader_url => {}
            previous => {
                let generation = previous.as_ref().map_or(1, |(_, g)| g + 1);
                tracing::info!(
                    cluster_id,
                    from = previous.as_ref().map_or("(none)", |(u, _)| u.as_str()),
                    to = %found.leader_url,
                    "PD leader"
                );
                *leader = Some(Leader {
                    url: found.leader_url,
                    channel,
                    generation,
                });
            }
        }
        Ok(())
    }

    /// Re-discovers after a call on leader `generation` failed, unless another caller already
    /// switched away from it. A failed discovery is logged; the caller's retry decides.
    pub(crate) async fn refresh(&self, generation: u64) {
        let _one_at_a_time = self.discovery.lock().await;
        let current = self.leader.read().as_ref().map(|l| l.generation);
        if current != Some(generation) {
            return;
        }
        if let Err(e) = self.update().await {
            tracing::warn!(error = %e, "PD leader discovery failed");
        }
    }

    /// The periodic check of the background member loop.
    pub(crate) async fn periodic(&self) {
        let _one_at_a_time = self.discovery.lock().await;
        if let Err(e) = self.update().await {
            tracing::warn!(error = %e, "PD member check failed");
        }
    }
}

/// One error for a discovery in which every candidate failed: `NotPd` if any server answered
/// without a PD service (the caller tells etcd from PD by it); the error itself if there was
/// one candidate; otherwise `NoLeader` listing every failure.
fn summarize(candidates: &[String], mut failures: Vec<PdError>) -> PdError {
    if let Some(not_pd) = failures.iter().find(|e| matches!(e, PdError::NotPd { .. })) {
        return not_pd.clone();
    }
    if failures.len() == 1 {
        return failures.swap_remove(0);
    }
    PdError::NoLeader {
        endpoints: candidates.join(","),
        detail: failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Runs the member loop: every `interval`, and at once when poked, ask who leads.
pub(crate) async fn member_loop(
    members: Arc<Members>,
    interval: Duration,
    poke: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = poke.notified() => {}
        }
        members.periodic().await;
    }
}
