//! A fake PD cluster for the client's tests: two or three members, each a tonic server of
//! `rcdc-proto`'s `pdpb.PD` stubs on its own 127.0.0.1 port, sharing one state (the real
//! members share etcd). Like PD v5.1, a member that does not lead answers everything but
//! GetMembers with `Unavailable` "not leader", and a wrong request cluster id with
//! `FailedPrecondition` "mismatch cluster id". The test flips faults in [`State`].

#![allow(dead_code)] // each test binary uses part of it

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rcdc_pd::pdpb::pd_server::{Pd, PdServer};
use rcdc_pd::{metapb, pdpb};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// What the members share, and the faults.
#[derive(Default)]
pub struct State {
    pub cluster_id: u64,
    /// The index of the leading member; `None` during an "election".
    pub leader: Option<usize>,
    /// Members answering every call with `Unavailable` "member down".
    pub down: BTreeSet<usize>,
    /// Members that never answer.
    pub silent: BTreeSet<usize>,
    /// Members that answer every call with `Unimplemented`, as a server without PD does.
    pub unimplemented: BTreeSet<usize>,
    /// A cluster id a member puts in its answers instead of the real one.
    pub answer_cluster_id: BTreeMap<usize, u64>,
    /// An error put in every answer's header (except GetMembers').
    pub header_error: Option<(pdpb::ErrorType, String)>,
    pub tso_physical: i64,
    pub tso_logical: i64,
    /// The count of every TsoRequest served, in order.
    pub tso_counts: Vec<u32>,
    /// How long each TSO answer takes.
    pub tso_delay: Duration,
    /// Bumped to break every open Tso stream at its next request.
    pub stream_epoch: u64,
    pub stores: Vec<metapb::Store>,
    /// Regions sorted by start key, with their leaders.
    pub regions: Vec<(metapb::Region, metapb::Peer)>,
    /// ScanRegions fills only the legacy `region_metas`/`leaders` (an older PD).
    pub legacy_scan: bool,
    pub gc_safe_point: u64,
    /// Service safe points: id -> (safe point, TTL).
    pub service_safe_points: BTreeMap<Vec<u8>, (u64, i64)>,
    /// Calls per (member, method).
    pub calls: BTreeMap<(usize, &'static str), u64>,
    /// Requests whose header had a wrong cluster id (the client must never send one).
    pub bad_headers: u64,
}

impl State {
    pub fn calls_to(&self, member: usize, method: &'static str) -> u64 {
        self.calls.get(&(member, method)).copied().unwrap_or(0)
    }
}

/// A running fake cluster. Dropping it stops the servers.
pub struct FakePd {
    pub state: Arc<Mutex<State>>,
    pub urls: Vec<String>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

pub const CLUSTER_ID: u64 = 6_950_000_000_000_000_001;
/// 2023-11-14T22:13:20Z, in ms.
pub const START_PHYSICAL: i64 = 1_700_000_000_000;

impl FakePd {
    /// `n` members on free ports; member 0 leads.
    pub async fn start(n: usize) -> FakePd {
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(bind("127.0.0.1:0").await);
        }
        Self::start_on(listeners).await
    }

    /// Members serving the given listeners; member 0 leads.
    pub async fn start_on(listeners: Vec<TcpListener>) -> FakePd {
        let state = Arc::new(Mutex::new(State {
            cluster_id: CLUSTER_ID,
            leader: Some(0),
            tso_physical: START_PHYSICAL,
            ..State::default()
        }));
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("local addr"))
            .collect();
        let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
        let mut servers = Vec::new();
        for (idx, listener) in listeners.into_iter().enumerate() {
            let member = Member {
                idx,
                state: state.clone(),
                urls: Arc::new(urls.clone()),
            };
            let serve = tonic::transport::Server::builder()
                .add_service(PdServer::new(member))
                .serve_with_incoming(TcpListenerStream::new(listener));
            servers.push(tokio::spawn(async move {
                let _ = serve.await;
            }));
        }
        FakePd {
            state,
            urls,
            servers,
        }
    }

    pub fn set_leader(&self, leader: Option<usize>) {
        self.state.lock().leader = leader;
    }

    /// Tso requests served so far.
    pub fn tso_counts(&self) -> Vec<u32> {
        self.state.lock().tso_counts.clone()
    }
}

impl Drop for FakePd {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}

pub async fn bind(addr: &str) -> TcpListener {
    TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"))
}

/// A URL where nothing listens (a port bound and released).
pub async fn dead_url() -> String {
    let l = bind("127.0.0.1:0").await;
    let addr = l.local_addr().expect("local addr");
    drop(l);
    format!("http://{addr}")
}

/// One member's service.
#[derive(Clone)]
struct Member {
    idx: usize,
    state: Arc<Mutex<State>>,
    urls: Arc<Vec<String>>,
}

/// How a member treats a call before its method runs.
enum Gate {
    Pass,
    Silent,
    Refuse(Status),
}

impl Member {
    /// Counts the call and applies the faults; returns the header to answer with.
    async fn enter(
        &self,
        method: &'static str,
        header: Option<&pdpb::RequestHeader>,
    ) -> Result<pdpb::ResponseHeader, Status> {
        let gate = self.gate(method, header);
        match gate {
            Gate::Pass => Ok(self.response_header(method)),
            Gate::Silent => futures::future::pending().await,
            Gate::Refuse(status) => Err(status),
        }
    }

    fn gate(&self, method: &'static str, header: Option<&pdpb::RequestHeader>) -> Gate {
        let mut s = self.state.lock();
        *s.calls.entry((self.idx, method)).or_default() += 1;
        if s.silent.contains(&self.idx) {
            return Gate::Silent;
        }
        if s.down.contains(&self.idx) {
            return Gate::Refuse(Status::unavailable("member down"));
        }
        if s.unimplemented.contains(&self.idx) {
            return Gate::Refuse(Status::unimplemented("unknown service pdpb.PD"));
        }
        if method == "GetMembers" {
            return Gate::Pass;
        }
        if s.leader != Some(self.idx) {
            return Gate::Refuse(Status::unavailable("not leader"));
        }
        let got = header.map_or(0, |h| h.cluster_id);
        if got != s.cluster_id {
            s.bad_headers += 1;
            return Gate::Refuse(Status::failed_precondition(format!(
                "mismatch cluster id, need {} but got {got}",
                s.cluster_id
            )));
        }
        Gate::Pass
    }

    fn response_header(&self, method: &'static str) -> pdpb::ResponseHeader {
        let s = self.state.lock();
        let cluster_id = s
            .answer_cluster_id
            .get(&self.idx)
            .copied()
            .unwrap_or(s.cluster_id);
        let error = match (&s.header_error, method) {
            (_, "GetMembers") | (None, _) => None,
            (Some((kind, message)), _) => Some(pdpb::Error {
                r#type: *kind as i32,
                message: message.clone(),
            }),
        };
        pdpb::ResponseHeader { cluster_id, error }
    }

    fn member(&self, idx: usize) -> pdpb::Member {
        pdpb::Member {
            name: format!("pd-{idx}"),
            member_id: 100 + idx as u64,
            peer_urls: vec![],
            client_urls: vec![self.urls[idx].clone()],
        }
    }

    /// One TSO answer on a stream opened at `epoch`.
    async fn tso_answer(
        &self,
        epoch: u64,
        req: pdpb::TsoRequest,
    ) -> Result<pdpb::TsoResponse, Status> {
        let header = self.enter("Tso", req.header.as_ref()).await?;
        let delay = {
            let s = self.state.lock();
            if s.stream_epoch != epoch {
                return Err(Status::unavailable("TSO stream reset"));
            }
            s.tso_delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut s = self.state.lock();
        s.tso_logical += i64::from(req.count);
        if s.tso_logical >= 1 << 18 {
            s.tso_physical += 1;
            s.tso_logical = i64::from(req.count);
        }
        s.tso_counts.push(req.count);
        Ok(pdpb::TsoResponse {
            header: Some(header),
            count: req.count,
            timestamp: Some(pdpb::Timestamp {
                physical: s.tso_physical,
                logical: s.tso_logical,
                suffix_bits: 0,
            }),
        })
    }
}

fn region_contains(region: &metapb::Region, key: &[u8]) -> bool {
    region.start_key.as_slice() <= key
        && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

#[tonic::async_trait]
impl Pd for Member {
    async fn get_members(
        &self,
        request: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        let header = self
            .enter("GetMembers", request.get_ref().header.as_ref())
            .await?;
        let leader = self.state.lock().leader;
        Ok(Response::new(pdpb::GetMembersResponse {
            header: Some(header),
            members: (0..self.urls.len()).map(|i| self.member(i)).collect(),
            leader: leader.map(|i| self.member(i)),
            etcd_leader: leader.map(|i| self.member(i)),
            tso_allocator_leaders: BTreeMap::new(),
        }))
    }

    type TsoStream = ReceiverStream<Result<pdpb::TsoResponse, Status>>;

    async fn tso(
        &self,
        request: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let me = self.clone();
        let epoch = self.state.lock().stream_epoch;
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                let answer = me.tso_answer(epoch, req).await;
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_store(
        &self,
        request: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let req = request.into_inner();
        let mut header = self.enter("GetStore", req.header.as_ref()).await?;
        let store = self
            .state
            .lock()
            .stores
            .iter()
            .find(|s| s.id == req.store_id)
            .cloned();
        if store.is_none() && header.error.is_none() {
            // PD v5.1's answer for an unknown store.
            header.error = Some(pdpb::Error {
                r#type: pdpb::ErrorType::Unknown as i32,
                message: format!("invalid store ID {}, not found", req.store_id),
            });
        }
        Ok(Response::new(pdpb::GetStoreResponse {
            header: Some(header),
            store,
            stats: None,
        }))
    }

    async fn get_all_stores(
        &self,
        request: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let req = request.into_inner();
        let header = self.enter("GetAllStores", req.header.as_ref()).await?;
        let tombstone = metapb::StoreState::Tombstone as i32;
        let stores = self
            .state
            .lock()
            .stores
            .iter()
            .filter(|s| !(req.exclude_tombstone_stores && s.state == tombstone))
            .cloned()
            .collect();
        Ok(Response::new(pdpb::GetAllStoresResponse {
            header: Some(header),
            stores,
        }))
    }

    async fn get_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        let header = self.enter("GetRegion", req.header.as_ref()).await?;
        let found = self
            .state
            .lock()
            .regions
            .iter()
            .find(|(r, _)| region_contains(r, &req.region_key))
            .cloned();
        Ok(Response::new(pdpb::GetRegionResponse {
            header: Some(header),
            region: found.as_ref().map(|(r, _)| r.clone()),
            leader: found.map(|(_, p)| p),
            ..Default::default()
        }))
    }

    async fn get_region_by_id(
        &self,
        request: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        let header = self.enter("GetRegionByID", req.header.as_ref()).await?;
        let found = self
            .state
            .lock()
            .regions
            .iter()
            .find(|(r, _)| r.id == req.region_id)
            .cloned();
        Ok(Response::new(pdpb::GetRegionResponse {
            header: Some(header),
            region: found.as_ref().map(|(r, _)| r.clone()),
            leader: found.map(|(_, p)| p),
            ..Default::default()
        }))
    }

    async fn scan_regions(
        &self,
        request: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let req = request.into_inner();
        let header = self.enter("ScanRegions", req.header.as_ref()).await?;
        let s = self.state.lock();
        let limit = if req.limit > 0 {
            req.limit as usize
        } else {
            usize::MAX
        };
        let found: Vec<(metapb::Region, metapb::Peer)> = s
            .regions
            .iter()
            .filter(|(r, _)| {
                r.end_key.is_empty() || r.end_key.as_slice() > req.start_key.as_slice()
            })
            .filter(|(r, _)| {
                req.end_key.is_empty() || r.start_key.as_slice() < req.end_key.as_slice()
            })
            .take(limit)
            .cloned()
            .collect();
        let regions = if s.legacy_scan {
            Vec::new()
        } else {
            found
                .iter()
                .map(|(r, p)| pdpb::Region {
                    region: Some(r.clone()),
                    leader: Some(*p),
                    ..Default::default()
                })
                .collect()
        };
        Ok(Response::new(pdpb::ScanRegionsResponse {
            header: Some(header),
            region_metas: found.iter().map(|(r, _)| r.clone()).collect(),
            leaders: found.iter().map(|(_, p)| *p).collect(),
            regions,
        }))
    }

    async fn get_gc_safe_point(
        &self,
        request: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        let header = self
            .enter("GetGCSafePoint", request.get_ref().header.as_ref())
            .await?;
        Ok(Response::new(pdpb::GetGcSafePointResponse {
            header: Some(header),
            safe_point: self.state.lock().gc_safe_point,
        }))
    }

    /// PD's rules without expiry: TTL ≤ 0 removes; a safe point below the minimum is not
    /// stored; the answer is the minimum.
    async fn update_service_gc_safe_point(
        &self,
        request: Request<pdpb::UpdateServiceGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateServiceGcSafePointResponse>, Status> {
        let req = request.into_inner();
        let header = self
            .enter("UpdateServiceGCSafePoint", req.header.as_ref())
            .await?;
        let mut s = self.state.lock();
        if req.ttl <= 0 {
            s.service_safe_points.remove(&req.service_id);
        } else {
            let min = s.service_safe_points.values().map(|(sp, _)| *sp).min();
            if min.is_none_or(|min| req.safe_point >= min) {
                s.service_safe_points
                    .insert(req.service_id.clone(), (req.safe_point, req.ttl));
            }
        }
        let min = s
            .service_safe_points
            .iter()
            .min_by_key(|(_, (sp, _))| *sp)
            .map(|(id, (sp, ttl))| (id.clone(), *sp, *ttl))
            .unwrap_or_default();
        Ok(Response::new(pdpb::UpdateServiceGcSafePointResponse {
            header: Some(header),
            service_id: min.0,
            ttl: min.2,
            min_safe_point: min.1,
        }))
    }
}
