//! `PdClient`: connect, the background loops, and the typed calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use rcdc_proto::pdpb::pd_client::PdClient as PdRpc;
use rcdc_proto::{metapb, pdpb};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::backoff::connect_backoff;
use crate::call::{check_answer, request_header, retry_until, Answer};
use crate::error::PdError;
use crate::members::{member_loop, Dial, Members, PdMember};
use crate::options::{normalize_endpoints, PdOptions};
use crate::tso;

/// A region and the peer that leads it, as PD knows them.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionInfo {
    /// The region: id, range (memcomparable-encoded keys), epoch, peers.
    pub region: metapb::Region,
    /// Its leader, if PD knows one.
    pub leader: Option<metapb::Peer>,
}

/// A client of one PD cluster. Cheap to clone; the background tasks stop when the last clone
/// is dropped.
#[derive(Clone)]
pub struct PdClient {
    inner: Arc<Inner>,
}

struct Inner {
    members: Arc<Members>,
    /// Wakes the member loop at once (a call timed out).
    poke: Arc<Notify>,
    tso: mpsc::Sender<tso::Waiter>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How many `get_ts` callers may queue while a TSO request is in flight.
const TSO_QUEUE: usize = 100_000;

/// How long past its deadline a `get_ts` caller waits for the dispatcher's verdict.
const TSO_GRACE: Duration = Duration::from_millis(100);

impl PdClient {
    /// Finds the cluster behind `endpoints` (URLs or bare host:port, as `--pd` takes them) and
    /// its leader, retrying with TiCDC's connect backoff while nothing answers. Fails at once
    /// with [`PdError::NotPd`] when a server answers without a PD service, and with
    /// [`PdError::ClusterIdMismatch`] / [`PdError::BadEndpoint`] which retrying cannot fix.
    pub async fn connect(endpoints: &[String], options: PdOptions) -> Result<PdClient, PdError> {
        let seeds = normalize_endpoints(endpoints, options.tls.is_some())?;
        let runtime = match &options.runtime {
            Some(handle) => handle.clone(),
            None => tokio::runtime::Handle::current(),
        };
        let dial = Dial {
            tls: options.tls.clone(),
            connect_timeout: options.connect_timeout,
            request_timeout: options.request_timeout,
            runtime: runtime.clone(),
        };
        let members = Arc::new(Members::new(dial, seeds));
        (|| members.update())
            .retry(connect_backoff(options.connect_retries))
            // A silent member (Timeout) may come back; a wrong server will not.
            .when(|e: &PdError| e.is_retryable() || matches!(e, PdError::Timeout { .. }))
            .notify(|e: &PdError, delay| {
                tracing::warn!(error = %e, ?delay, "PD not ready, retrying");
            })
            .await?;
        tracing::info!(
            cluster_id = members.cluster_id(),
            leader = %members.leader().map(|l| l.url).unwrap_or_default(),
            "connected to PD"
        );
        let poke = Arc::new(Notify::new());
        let (tso, waiters) = mpsc::channel(TSO_QUEUE);
        let tasks = vec![
            runtime
                .spawn(member_loop(
                    members.clone(),
                    options.member_interval,
                    poke.clone(),
                ))
                .abort_handle(),
            runtime
                .spawn(tso::dispatch(
                    members.clone(),
                    poke.clone(),
                    waiters,
                    options.max_tso_batch,
                ))
                .abort_handle(),
        ];
        Ok(PdClient {
            inner: Arc::new(Inner {
                members,
                poke,
                tso,
                tasks,
            }),
        })
    }

    /// The cluster id every answer is checked against.
    pub fn cluster_id(&self) -> u64 {
        self.inner.members.cluster_id()
    }

    /// The URL calls go to now.
    pub fn leader_url(&self) -> String {
        self.inner
            .members
            .leader()
            .map(|l| l.url)
            .unwrap_or_default()
    }

    /// The members as the last GetMembers answer listed them.
    pub fn members(&self) -> Vec<PdMember> {
        self.inner.members.members()
    }

    /// A new timestamp, above every one this client returned before. Concurrent callers share
    /// one TSO request.
    pub async fn get_ts(&self) -> Result<u64, PdError> {
        let timeout = self.inner.members.request_timeout();
        let deadline = Instant::now() + timeout;
        let (reply, answer) = oneshot::channel();
        let waiter = tso::Waiter { reply, deadline };
        self.inner
            .tso
            .send(waiter)
            .await
            .map_err(|_| PdError::Closed)?;
        // The dispatcher answers by the deadline (with the reason if it failed); the grace only
        // covers the hand-over, so that its reason, not a bare timeout, reaches the caller.
        match tokio::time::timeout_at(deadline + TSO_GRACE, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PdError::Closed),
            Err(_) => {
                self.inner.poke.notify_one();
                Err(PdError::Timeout {
                    endpoint: self.leader_url(),
                    method: "Tso",
                    after: timeout,
                })
            }
        }
    }

    /// Every store, without tombstones if `exclude_tombstone`.
    pub async fn get_all_stores(
        &self,
        exclude_tombstone: bool,
    ) -> Result<Vec<metapb::Store>, PdError> {
        let answer = self
            .unary("GetAllStores", |mut rpc, header| async move {
                rpc.get_all_stores(pdpb::GetAllStoresRequest {
                    header,
                    exclude_tombstone_stores: exclude_tombstone,
                })
                .await
            })
            .await?;
        Ok(answer.stores)
    }

    /// One store. PD answers an unknown id with a header error, which comes back as
    /// [`PdError::Server`].
    pub async fn get_store(&self, store_id: u64) -> Result<metapb::Store, PdError> {
        let (url, answer) = self
            .unary_from("GetStore", |mut rpc, header| async move {
                rpc.get_store(pdpb::GetStoreRequest { header, store_id })
                    .await
            })
            .await?;
        answer.store.ok_or_else(|| PdError::Protocol {
            endpoint: url,
            method: "GetStore",
            detail: format!("no store in the answer for store {store_id}"),
        })
    }

    /// Up to `limit` regions (all if `limit` ≤ 0) from the one containing `start_key` to
    /// `end_key` (memcomparable-encoded; an empty end is the end of the key space), with their
    /// leaders. Reads `regions`, or the legacy `region_metas` + `leaders` of an older PD.
    pub async fn scan_regions(
        &self,
        start_key: &[u8],
        end_key: &[u8],
        limit: i32,
    ) -> Result<Vec<RegionInfo>, PdError> {
        let (start_key, end_key) = (start_key.to_vec(), end_key.to_vec());
        let answer = self
            .unary("ScanRegions", |mut rpc, header| {
                let req = pdpb::ScanRegionsRequest {
                    header,
                    start_key: start_key.clone(),
                    limit,
                    end_key: end_key.clone(),
                };
                async move { rpc.scan_regions(req).await }
            })
            .await?;
        Ok(regions_of(answer))
    }

    /// The region with this id, or `None` if PD does not know it.
    pub async fn get_region_by_id(&self, region_id: u64) -> Result<Option<RegionInfo>, PdError> {
        let answer = self
            .unary("GetRegionByID", |mut rpc, header| async move {
                rpc.get_region_by_id(pdpb::GetRegionByIdRequest { header, region_id })
                    .await
            })
            .await?;
        Ok(answer.region.map(|region| RegionInfo {
            region,
            leader: answer.leader,
        }))
    }

    /// Sets (or, with `ttl_secs` ≤ 0, removes) the service safe point of `service_id` for
    /// `ttl_secs`, and returns the cluster's minimum service safe point. PD keeps a request
    /// below the current minimum without error but without storing it (facts §5), so compare
    /// the answer with `safe_point`.
    pub async fn update_service_gc_safe_point(
        &self,
        service_id: &str,
        ttl_secs: i64,
        safe_point: u64,
    ) -> Result<u64, PdError> {
        let service_id = service_id.as_bytes().to_vec();
        let answer = self
            .unary("UpdateServiceGCSafePoint", |mut rpc, header| {
                let req = pdpb::UpdateServiceGcSafePointRequest {
                    header,
                    service_id: service_id.clone(),
                    ttl: ttl_secs,
                    safe_point,
                };
                async move { rpc.update_service_gc_safe_point(req).await }
            })
            .await?;
        Ok(answer.min_safe_point)
    }

    /// The cluster's GC safe point (what TiKV may have collected up to).
    pub async fn get_gc_safe_point(&self) -> Result<u64, PdError> {
        let answer = self
            .unary("GetGCSafePoint", |mut rpc, header| async move {
                rpc.get_gc_safe_point(pdpb::GetGcSafePointRequest { header })
                    .await
            })
            .await?;
        Ok(answer.safe_point)
    }

    async fn unary<A, F, Fut>(&self, method: &'static str, call: F) -> Result<A, PdError>
    where
        A: Answer,
        F: Fn(PdRpc<Channel>, Option<pdpb::RequestHeader>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<A>, tonic::Status>>,
    {
        Ok(self.unary_from(method, call).await?.1)
    }

    /// One unary call to the leader, with the cluster id in its header and checked in the
    /// answer's; "not leader" or an unreachable leader re-checks the members and retries
    /// within the request timeout. Returns the URL that answered, and the answer.
    async fn unary_from<A, F, Fut>(
        &self,
        method: &'static str,
        call: F,
    ) -> Result<(String, A), PdError>
    where
        A: Answer,
        F: Fn(PdRpc<Channel>, Option<pdpb::RequestHeader>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<A>, tonic::Status>>,
    {
        let members = &self.inner.members;
        let cluster_id = members.cluster_id();
        let attempt = || async {
            let leader = members.leader()?;
            match call(
                Members::rpc(leader.channel.clone()),
                request_header(cluster_id),
            )
            .await
            {
                Ok(answer) => {
                    let answer = check_answer(&leader.url, method, cluster_id, answer.into_inner());
                    answer.map(|a| (leader.url, a))
                }
                Err(status) => {
                    let e = PdError::from_status(&leader.url, method, &status);
                    if e.suggests_leader_change() {
                        members.refresh(leader.generation).await;
                    }
                    Err(e)
                }
            }
        };
        let timeout = members.request_timeout();
        let deadline = Instant::now() + timeout;
        let on_timeout = || {
            // The leader may hang rather than refuse: have the member loop look now.
            self.inner.poke.notify_one();
            PdError::Timeout {
                endpoint: self.leader_url(),
                method,
                after: timeout,
            }
        };
        retry_until(deadline, attempt, on_timeout).await
    }
}

/// The regions of a ScanRegions answer: `regions` if PD filled it, else the legacy parallel
/// lists (`leaders[i]` leads `region_metas[i]`; an empty peer means no known leader).
fn regions_of(answer: pdpb::ScanRegionsResponse) -> Vec<RegionInfo> {
    if !answer.regions.is_empty() {
        return answer
            .regions
            .into_iter()
            .filter_map(|r| {
                r.region.map(|region| RegionInfo {
                    region,
                    leader: r.leader,
                })
            })
            .collect();
    }
    let mut leaders = answer.leaders.into_iter();
    answer
        .region_metas
        .into_iter()
        .map(|region| RegionInfo {
            region,
            leader: leaders.next().filter(|p| *p != metapb::Peer::default()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64) -> metapb::Region {
        metapb::Region {
            id,
            ..Default::default()
        }
    }

    fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            role: 0,
        }
    }

    #[test]
    fn scan_regions_prefers_regions_and_falls_back_to_legacy_lists() {
        let legacy = pdpb::ScanRegionsResponse {
            region_metas: vec![region(1), region(2)],
            leaders: vec![peer(11, 1), metapb::Peer::default()],
            ..Default::default()
        };
        let got = regions_of(legacy.clone());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].leader, Some(peer(11, 1)));
        assert_eq!(got[1].leader, None, "an empty peer is no leader");

        let both = pdpb::ScanRegionsResponse {
            regions: vec![pdpb::Region {
                region: Some(region(3)),
                leader: Some(peer(33, 3)),
                ..Default::default()
            }],
            ..legacy
        };
        let got = regions_of(both);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].region.id, 3);
        assert_eq!(got[0].leader, Some(peer(33, 3)));
    }
}
