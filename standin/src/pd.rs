//! `pdpb.PD` as one member of PD v5.1 answers it (`server/grpc_service.go`).
//!
//! - `GetMembers` is answered by every member, leader or not, without checks.
//! - Every other unary call first runs PD's `validateRequest`: a follower answers gRPC
//!   `Unavailable` "not leader", then a wrong `header.cluster_id` gets `FailedPrecondition`
//!   "mismatch cluster id, need N but got M".
//! - `Tso` checks only the cluster id (PD relies on its leader lease there); on a follower
//!   the allocator refuses with gRPC `Unknown` "[PD:tso:ErrGenerateTimestamp]generate
//!   timestamp failed, requested pd is not leader of cluster", which ends the stream.
//! - Errors PD returns as plain Go errors reach the client as gRPC `Unknown` with PD's text.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rcdc_proto::metapb;
use rcdc_proto::pdpb::{self, pd_server::Pd};
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::{Cluster, Region, Store, StoreState};
use crate::gc::{GcError, ServiceSafePoints};
use crate::tso::{Timestamp, TsoError};

/// How many times a TSO request waits for the next physical update after a logical overflow
/// (PD's `maxRetryCount`).
const TSO_MAX_RETRY: usize = 10;

/// What one member serves; cheap to clone (one per member, all sharing the cluster).
#[derive(Clone)]
pub struct PdService {
    member: usize,
    cluster: Arc<Cluster>,
    gc: Arc<GcState>,
    tso_update_interval: Duration,
}

/// The service safe points and PD's `serviceSafePointLock`, shared by all members.
pub struct GcState {
    store: ServiceSafePoints,
    lock: tokio::sync::Mutex<()>,
}

impl GcState {
    pub fn new(store: ServiceSafePoints) -> Self {
        Self {
            store,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

impl PdService {
    pub fn new(
        member: usize,
        cluster: Arc<Cluster>,
        gc: Arc<GcState>,
        tso_update_interval: Duration,
    ) -> Self {
        Self {
            member,
            cluster,
            gc,
            tso_update_interval,
        }
    }

    fn header(&self) -> Option<pdpb::ResponseHeader> {
        Some(pdpb::ResponseHeader {
            cluster_id: self.cluster.cluster_id,
            error: None,
        })
    }

    fn check_cluster_id(&self, header: Option<&pdpb::RequestHeader>) -> Result<(), Status> {
        let got = header.map_or(0, |h| h.cluster_id);
        if got != self.cluster.cluster_id {
            return Err(Status::failed_precondition(format!(
                "mismatch cluster id, need {} but got {got}",
                self.cluster.cluster_id
            )));
        }
        Ok(())
    }

    /// PD's `validateRequest`: leadership first, then the cluster id.
    fn validate(&self, header: Option<&pdpb::RequestHeader>) -> Result<(), Status> {
        if !self.cluster.is_leader(self.member) {
            return Err(Status::unavailable("not leader"));
        }
        self.check_cluster_id(header)
    }

    /// One TSO allocation as PD's global allocator makes it, with its retries on overflow.
    async fn allocate(&self, count: u32) -> Result<Timestamp, Status> {
        if self.cluster.tso_failing() {
            return Err(Status::unavailable(
                "TSO failure injected by cdc-standin (PUT /standin/tso)",
            ));
        }
        if !self.cluster.is_leader(self.member) {
            return Err(Status::unknown(
                "[PD:tso:ErrGenerateTimestamp]generate timestamp failed, requested pd is not leader of cluster",
            ));
        }
        for _ in 0..TSO_MAX_RETRY {
            match self.cluster.tso.generate(count) {
                Ok(ts) => return Ok(ts),
                Err(TsoError::LogicalOverflow) => {
                    tracing::error!(
                        "logical part outside of max logical interval, please check ntp time"
                    );
                    tokio::time::sleep(self.tso_update_interval).await;
                }
                Err(e) => return Err(Status::unknown(e.to_string())),
            }
        }
        Err(Status::unknown(
            "[PD:tso:ErrGenerateTimestamp]generate timestamp failed, generate global tso maximum number of retries exceeded",
        ))
    }

    async fn tso_one(&self, req: pdpb::TsoRequest) -> Result<pdpb::TsoResponse, Status> {
        self.check_cluster_id(req.header.as_ref())?;
        let ts = self.allocate(req.count).await?;
        Ok(pdpb::TsoResponse {
            header: self.header(),
            count: req.count,
            timestamp: Some(pdpb::Timestamp {
                physical: ts.physical,
                logical: ts.logical,
                suffix_bits: 0,
            }),
        })
    }

    fn member_pb(&self, i: usize) -> pdpb::Member {
        let m = &self.cluster.members[i];
        pdpb::Member {
            name: m.name.clone(),
            member_id: m.member_id,
            peer_urls: vec![m.url.clone()],
            client_urls: vec![m.url.clone()],
        }
    }
}

fn store_pb(s: &Store) -> metapb::Store {
    let state = match s.state {
        StoreState::Up => metapb::StoreState::Up,
        StoreState::Offline => metapb::StoreState::Offline,
        StoreState::Tombstone => metapb::StoreState::Tombstone,
    };
    metapb::Store {
        id: s.id,
        address: s.address.clone(),
        state: state as i32,
        version: s.version.clone(),
        ..Default::default()
    }
}

fn region_pb(r: &Region) -> (metapb::Region, metapb::Peer) {
    let peers: Vec<metapb::Peer> = r
        .peers
        .iter()
        .map(|&(id, store_id)| metapb::Peer {
            id,
            store_id,
            ..Default::default()
        })
        .collect();
    let leader = peers
        .iter()
        .find(|p| p.id == r.leader)
        .cloned()
        .unwrap_or_default();
    let region = metapb::Region {
        id: r.id,
        start_key: r.start_key.clone(),
        end_key: r.end_key.clone(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: r.conf_ver,
            version: r.version,
        }),
        peers,
    };
    (region, leader)
}

fn gc_status(e: GcError) -> Status {
    Status::unknown(e.to_string())
}

type TsoStream = Pin<Box<dyn Stream<Item = Result<pdpb::TsoResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        _req: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        let leader = self.member_pb(self.cluster.leader());
        Ok(Response::new(pdpb::GetMembersResponse {
            header: self.header(),
            members: (0..self.cluster.members.len())
                .map(|i| self.member_pb(i))
                .collect(),
            // The stand-in's etcd is not made of PD members; the PD leader stands for it, as
            // PD keeps its leader on the etcd leader when it can.
            etcd_leader: Some(leader.clone()),
            leader: Some(leader),
            tso_allocator_leaders: Default::default(),
        }))
    }

    type TsoStream = TsoStream;

    async fn tso(
        &self,
        req: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        let inbound = req.into_inner();
        let svc = self.clone();
        // One answer per request, in order; the first error ends the stream with its status.
        let out = futures::stream::unfold(Some((inbound, svc)), |state| async move {
            let (mut inbound, svc) = state?;
            match inbound.message().await {
                Ok(Some(req)) => match svc.tso_one(req).await {
                    Ok(resp) => Some((Ok(resp), Some((inbound, svc)))),
                    Err(status) => Some((Err(status), None)),
                },
                Ok(None) => None,
                Err(status) => {
                    tracing::debug!(%status, "TSO stream closed by the client");
                    None
                }
            }
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_store(
        &self,
        req: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let req = req.into_inner();
        self.validate(req.header.as_ref())?;
        let store = self.cluster.store(req.store_id).ok_or_else(|| {
            Status::unknown(format!("invalid store ID {}, not found", req.store_id))
        })?;
        Ok(Response::new(pdpb::GetStoreResponse {
            header: self.header(),
            store: Some(store_pb(&store)),
            stats: Some(pdpb::StoreStats {
                store_id: store.id,
                ..Default::default()
            }),
        }))
    }

    async fn get_all_stores(
        &self,
        req: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let req = req.into_inner();
        self.validate(req.header.as_ref())?;
        let stores = self
            .cluster
            .stores()
            .iter()
            .filter(|s| !(req.exclude_tombstone_stores && s.state == StoreState::Tombstone))
            .map(store_pb)
            .collect();
        Ok(Response::new(pdpb::GetAllStoresResponse {
            header: self.header(),
            stores,
        }))
    }

    async fn get_region(
        &self,
        req: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = req.into_inner();
        self.validate(req.header.as_ref())?;
        Ok(Response::new(self.region_response(
            self.cluster.region_by_key(&req.region_key),
        )))
    }

    async fn get_region_by_id(
        &self,
        req: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = req.into_inner();
        self.validate(req.header.as_ref())?;
        Ok(Response::new(
            self.region_response(self.cluster.region_by_id(req.region_id)),
        ))
    }

    async fn scan_regions(
        &self,
        req: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let req = req.into_inner();
        self.validate(req.header.as_ref())?;
        let mut resp = pdpb::ScanRegionsResponse {
            header: self.header(),
            ..Default::default()
        };
        for r in self
            .cluster
            .scan_regions(&req.start_key, &req.end_key, req.limit)
        {
            let (region, leader) = region_pb(&r);
            // The legacy parallel lists, for clients older than `regions`.
            resp.region_metas.push(region.clone());
            resp.leaders.push(leader);
            resp.regions.push(pdpb::Region {
                region: Some(region),
                leader: Some(leader),
                ..Default::default()
            });
        }
        Ok(Response::new(resp))
    }

    async fn get_gc_safe_point(
        &self,
        req: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        let req = req.into_inner();
        self.validate(req.header.as_ref())?;
        let safe_point = self
            .gc
            .store
            .gc_safe_point()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        Ok(Response::new(pdpb::GetGcSafePointResponse {
            header: self.header(),
            safe_point,
        }))
    }

    async fn update_service_gc_safe_point(
        &self,
        req: Request<pdpb::UpdateServiceGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateServiceGcSafePointResponse>, Status> {
        let req = req.into_inner();
        // PD holds the lock across the whole request, validation included.
        let _guard = self.gc.lock.lock().await;
        self.validate(req.header.as_ref())?;
        let service_id = String::from_utf8_lossy(&req.service_id).into_owned();
        if req.ttl <= 0 {
            self.gc.store.remove(&service_id).await.map_err(gc_status)?;
        }
        // "Now" is a fresh TSO's physical time in seconds, not this machine's clock.
        let now = self.allocate(1).await?.physical.div_euclid(1000);
        let reply = self
            .gc
            .store
            .update(&service_id, req.ttl, req.safe_point, now)
            .await
            .map_err(gc_status)?;
        Ok(Response::new(pdpb::UpdateServiceGcSafePointResponse {
            header: self.header(),
            service_id: reply.service_id.into_bytes(),
            ttl: reply.ttl,
            min_safe_point: reply.min_safe_point,
        }))
    }
}

impl PdService {
    fn region_response(&self, region: Option<Region>) -> pdpb::GetRegionResponse {
        let mut resp = pdpb::GetRegionResponse {
            header: self.header(),
            ..Default::default()
        };
        // PD answers an unknown region with just the header.
        if let Some(r) = region {
            let (region, leader) = region_pb(&r);
            resp.region = Some(region);
            resp.leader = Some(leader);
        }
        resp
    }
}
