//! The gRPC method paths: generated servers on 127.0.0.1 answer raw calls made with the paths
//! written out by hand (`/<package>.<Service>/<Method>`, as kvproto's Go and C++ stubs send
//! them). Each fake method answers with a marker naming itself, so a call routed to the wrong
//! method, or not routed at all (Unimplemented), fails the test.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

use crate::{cdcpb, errorpb, kvrpcpb, pdpb, tikvpb};

/// One fake behind all three services.
pub(super) struct Fake;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A response header whose cluster id says which PD method answered.
fn marked(marker: u64) -> Option<pdpb::ResponseHeader> {
    Some(pdpb::ResponseHeader {
        cluster_id: marker,
        error: None,
    })
}

/// A region error whose message says which TiKV method answered.
fn named(method: &str) -> Option<errorpb::Error> {
    Some(errorpb::Error {
        message: method.to_string(),
        ..Default::default()
    })
}

#[tonic::async_trait]
impl pdpb::pd_server::Pd for Fake {
    async fn get_members(
        &self,
        _: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        Ok(Response::new(pdpb::GetMembersResponse {
            header: marked(1),
            ..Default::default()
        }))
    }

    type TsoStream = BoxStream<pdpb::TsoResponse>;

    async fn tso(
        &self,
        request: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        // Echo each request's count, marked 2.
        let out = request.into_inner().map(|req| {
            req.map(|r| pdpb::TsoResponse {
                header: marked(2),
                count: r.count,
                timestamp: None,
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_store(
        &self,
        _: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        Ok(Response::new(pdpb::GetStoreResponse {
            header: marked(3),
            ..Default::default()
        }))
    }

    async fn get_all_stores(
        &self,
        _: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        Ok(Response::new(pdpb::GetAllStoresResponse {
            header: marked(4),
            ..Default::default()
        }))
    }

    async fn get_region(
        &self,
        _: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        Ok(Response::new(pdpb::GetRegionResponse {
            header: marked(5),
            ..Default::default()
        }))
    }

    async fn get_region_by_id(
        &self,
        _: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        Ok(Response::new(pdpb::GetRegionResponse {
            header: marked(6),
            ..Default::default()
        }))
    }

    async fn scan_regions(
        &self,
        _: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        Ok(Response::new(pdpb::ScanRegionsResponse {
            header: marked(7),
            ..Default::default()
        }))
    }

    async fn get_gc_safe_point(
        &self,
        _: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        Ok(Response::new(pdpb::GetGcSafePointResponse {
            header: marked(8),
            ..Default::default()
        }))
    }

    async fn update_service_gc_safe_point(
        &self,
        _: Request<pdpb::UpdateServiceGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateServiceGcSafePointResponse>, Status> {
        Ok(Response::new(pdpb::UpdateServiceGcSafePointResponse {
            header: marked(9),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl cdcpb::change_data_server::ChangeData for Fake {
    type EventFeedStream = BoxStream<cdcpb::ChangeDataEvent>;

    async fn event_feed(
        &self,
        request: Request<Streaming<cdcpb::ChangeDataRequest>>,
    ) -> Result<Response<Self::EventFeedStream>, Status> {
        // One event per request, for the requested region.
        let out = request.into_inner().map(|req| {
            req.map(|r| cdcpb::ChangeDataEvent {
                events: vec![cdcpb::Event {
                    region_id: r.region_id,
                    request_id: r.request_id,
                    ..Default::default()
                }],
                resolved_ts: None,
            })
        });
        Ok(Response::new(Box::pin(out)))
    }
}

#[tonic::async_trait]
impl tikvpb::tikv_server::Tikv for Fake {
    async fn kv_get(
        &self,
        _: Request<kvrpcpb::GetRequest>,
    ) -> Result<Response<kvrpcpb::GetResponse>, Status> {
        Ok(Response::new(kvrpcpb::GetResponse {
            region_error: named("KvGet"),
            ..Default::default()
        }))
    }

    async fn kv_scan(
        &self,
        _: Request<kvrpcpb::ScanRequest>,
    ) -> Result<Response<kvrpcpb::ScanResponse>, Status> {
        Ok(Response::new(kvrpcpb::ScanResponse {
            region_error: named("KvScan"),
            ..Default::default()
        }))
    }

    async fn kv_check_txn_status(
        &self,
        _: Request<kvrpcpb::CheckTxnStatusRequest>,
    ) -> Result<Response<kvrpcpb::CheckTxnStatusResponse>, Status> {
        Ok(Response::new(kvrpcpb::CheckTxnStatusResponse {
            region_error: named("KvCheckTxnStatus"),
            ..Default::default()
        }))
    }

    async fn kv_check_secondary_locks(
        &self,
        _: Request<kvrpcpb::CheckSecondaryLocksRequest>,
    ) -> Result<Response<kvrpcpb::CheckSecondaryLocksResponse>, Status> {
        Ok(Response::new(kvrpcpb::CheckSecondaryLocksResponse {
            region_error: named("KvCheckSecondaryLocks"),
            ..Default::default()
        }))
    }

    async fn kv_scan_lock(
        &self,
        _: Request<kvrpcpb::ScanLockRequest>,
    ) -> Result<Response<kvrpcpb::ScanLockResponse>, Status> {
        Ok(Response::new(kvrpcpb::ScanLockResponse {
            region_error: named("KvScanLock"),
            ..Default::default()
        }))
    }

    async fn kv_resolve_lock(
        &self,
        _: Request<kvrpcpb::ResolveLockRequest>,
    ) -> Result<Response<kvrpcpb::ResolveLockResponse>, Status> {
        Ok(Response::new(kvrpcpb::ResolveLockResponse {
            region_error: named("KvResolveLock"),
            ..Default::default()
        }))
    }
}

/// Serves the three fake services on a free 127.0.0.1 port; returns a channel to it.
async fn serve() -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = Server::builder()
        .add_service(pdpb::pd_server::PdServer::new(Fake))
        .add_service(cdcpb::change_data_server::ChangeDataServer::new(Fake))
        .add_service(tikvpb::tikv_server::TikvServer::new(Fake))
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the fake")
}

/// A unary call on a raw path, with prost's codec.
async fn unary<Req, Resp>(channel: &Channel, path: &'static str, req: Req) -> Result<Resp, Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let resp = grpc
        .unary(Request::new(req), PathAndQuery::from_static(path), codec)
        .await?;
    Ok(resp.into_inner())
}

/// A bidi call on a raw path: sends `reqs`, returns the first `reqs.len()` answers.
async fn bidi<Req, Resp>(channel: &Channel, path: &'static str, reqs: Vec<Req>) -> Vec<Resp>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    let n = reqs.len();
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let resp = grpc
        .streaming(
            Request::new(futures::stream::iter(reqs)),
            PathAndQuery::from_static(path),
            codec,
        )
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut stream = resp.into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        match stream.message().await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => panic!("{path}: stream ended early"),
            Err(e) => panic!("{path}: stream failed: {e}"),
        }
    }
    out
}

fn pd_marker(header: Option<pdpb::ResponseHeader>) -> u64 {
    header.map_or(0, |h| h.cluster_id)
}

#[tokio::test]
async fn pd_method_paths() {
    let ch = serve().await;
    let r: pdpb::GetMembersResponse = unary(
        &ch,
        "/pdpb.PD/GetMembers",
        pdpb::GetMembersRequest::default(),
    )
    .await
    .expect("GetMembers");
    assert_eq!(pd_marker(r.header), 1);
    let r: pdpb::GetStoreResponse =
        unary(&ch, "/pdpb.PD/GetStore", pdpb::GetStoreRequest::default())
            .await
            .expect("GetStore");
    assert_eq!(pd_marker(r.header), 3);
    let r: pdpb::GetAllStoresResponse = unary(
        &ch,
        "/pdpb.PD/GetAllStores",
        pdpb::GetAllStoresRequest::default(),
    )
    .await
    .expect("GetAllStores");
    assert_eq!(pd_marker(r.header), 4);
    let r: pdpb::GetRegionResponse =
        unary(&ch, "/pdpb.PD/GetRegion", pdpb::GetRegionRequest::default())
            .await
            .expect("GetRegion");
    assert_eq!(pd_marker(r.header), 5);
    let r: pdpb::GetRegionResponse = unary(
        &ch,
        "/pdpb.PD/GetRegionByID",
        pdpb::GetRegionByIdRequest::default(),
    )
    .await
    .expect("GetRegionByID");
    assert_eq!(pd_marker(r.header), 6);
    let r: pdpb::ScanRegionsResponse = unary(
        &ch,
        "/pdpb.PD/ScanRegions",
        pdpb::ScanRegionsRequest::default(),
    )
    .await
    .expect("ScanRegions");
    assert_eq!(pd_marker(r.header), 7);
    let r: pdpb::GetGcSafePointResponse = unary(
        &ch,
        "/pdpb.PD/GetGCSafePoint",
        pdpb::GetGcSafePointRequest::default(),
    )
    .await
    .expect("GetGCSafePoint");
    assert_eq!(pd_marker(r.header), 8);
    let r: pdpb::UpdateServiceGcSafePointResponse = unary(
        &ch,
        "/pdpb.PD/UpdateServiceGCSafePoint",
        pdpb::UpdateServiceGcSafePointRequest::default(),
    )
    .await
    .expect("UpdateServiceGCSafePoint");
    assert_eq!(pd_marker(r.header), 9);

    let answers: Vec<pdpb::TsoResponse> = bidi(
        &ch,
        "/pdpb.PD/Tso",
        vec![
            pdpb::TsoRequest {
                count: 3,
                ..Default::default()
            },
            pdpb::TsoRequest {
                count: 5,
                ..Default::default()
            },
        ],
    )
    .await;
    let got: Vec<(u64, u32)> = answers
        .into_iter()
        .map(|a| (pd_marker(a.header), a.count))
        .collect();
    assert_eq!(got, vec![(2, 3), (2, 5)]);
}

#[tokio::test]
async fn a_wrongly_spelled_path_is_unimplemented() {
    // The negative control: paths are case-sensitive, so Go's `GetRegionByID` is not prost's
    // `GetRegionById`, and `pdpb.Pd` is not `pdpb.PD`.
    let ch = serve().await;
    for path in [
        "/pdpb.Pd/GetMembers",
        "/pdpb.PD/GetRegionById",
        "/cdcpb.ChangeData/Eventfeed",
    ] {
        let path: &'static str = path;
        let err =
            unary::<_, pdpb::GetMembersResponse>(&ch, path, pdpb::GetMembersRequest::default())
                .await
                .expect_err(path);
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{path}: {err}");
    }
}

#[tokio::test]
async fn change_data_event_feed_path() {
    let ch = serve().await;
    let req = cdcpb::ChangeDataRequest {
        region_id: 7,
        request_id: 70,
        ..Default::default()
    };
    let answers: Vec<cdcpb::ChangeDataEvent> =
        bidi(&ch, "/cdcpb.ChangeData/EventFeed", vec![req]).await;
    let ev = &answers[0].events[0];
    assert_eq!((ev.region_id, ev.request_id), (7, 70));
}

#[tokio::test]
async fn tikv_method_paths() {
    let ch = serve().await;
    let msg = |e: Option<errorpb::Error>| e.map(|e| e.message).unwrap_or_default();
    let r: kvrpcpb::GetResponse = unary(&ch, "/tikvpb.Tikv/KvGet", kvrpcpb::GetRequest::default())
        .await
        .expect("KvGet");
    assert_eq!(msg(r.region_error), "KvGet");
    let r: kvrpcpb::ScanResponse =
        unary(&ch, "/tikvpb.Tikv/KvScan", kvrpcpb::ScanRequest::default())
            .await
            .expect("KvScan");
    assert_eq!(msg(r.region_error), "KvScan");
    let r: kvrpcpb::CheckTxnStatusResponse = unary(
        &ch,
        "/tikvpb.Tikv/KvCheckTxnStatus",
        kvrpcpb::CheckTxnStatusRequest::default(),
    )
    .await
    .expect("KvCheckTxnStatus");
    assert_eq!(msg(r.region_error), "KvCheckTxnStatus");
    let r: kvrpcpb::CheckSecondaryLocksResponse = unary(
        &ch,
        "/tikvpb.Tikv/KvCheckSecondaryLocks",
        kvrpcpb::CheckSecondaryLocksRequest::default(),
    )
    .await
    .expect("KvCheckSecondaryLocks");
    assert_eq!(msg(r.region_error), "KvCheckSecondaryLocks");
    let r: kvrpcpb::ScanLockResponse = unary(
        &ch,
        "/tikvpb.Tikv/KvScanLock",
        kvrpcpb::ScanLockRequest::default(),
    )
    .await
    .expect("KvScanLock");
    assert_eq!(msg(r.region_error), "KvScanLock");
    let r: kvrpcpb::ResolveLockResponse = unary(
        &ch,
        "/tikvpb.Tikv/KvResolveLock",
        kvrpcpb::ResolveLockRequest::default(),
    )
    .await
    .expect("KvResolveLock");
    assert_eq!(msg(r.region_error), "KvResolveLock");
}

#[tokio::test]
async fn generated_clients_use_the_same_paths() {
    // The generated clients against the generated servers, for completeness: the stubs the PD
    // client and the stand-in use are the ones whose paths were checked above.
    let ch = serve().await;
    let mut pd = pdpb::pd_client::PdClient::new(ch.clone());
    let r = pd
        .get_region_by_id(pdpb::GetRegionByIdRequest::default())
        .await
        .expect("GetRegionByID");
    assert_eq!(pd_marker(r.into_inner().header), 6);
    let mut kv = tikvpb::tikv_client::TikvClient::new(ch);
    let r = kv
        .kv_scan(kvrpcpb::ScanRequest::default())
        .await
        .expect("KvScan");
    assert_eq!(
        r.into_inner()
            .region_error
            .map(|e| e.message)
            .unwrap_or_default(),
        "KvScan"
    );
}
