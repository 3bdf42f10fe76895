//! Shared support for the worker scenarios: a key/value reactor state, a reactor driven by a
//! closure, semantic test patches, and one fault-control interface over both backends (a real
//! etcd started by the test, and the in-process MVCC store).
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rcdc_reactor::store::mem::MemStore;
use rcdc_reactor::store::{KeyValue, MetaStore, Txn, TxnOp};
use rcdc_reactor::testing::EtcdHarness;
use rcdc_reactor::{
    EtcdWorker, KeyPatch, Reactor, ReactorState, TickContext, TickOutput, WorkerConfig,
    WorkerError, WorkerExit, WorkerStats,
};
use rcdc_state::{CaptureId, PatchError, PatchOutcome};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod certs;
pub mod cluster;
pub mod procs;
pub mod standin;

#[allow(unused_imports)] // not every test binary polls
pub use rcdc_reactor::testing::wait_until;

/// How long any scenario may wait for a condition.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The keys a reactor sees, raw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    pub kv: BTreeMap<String, Vec<u8>>,
}

impl ReactorState for KvState {
    fn update(&mut self, key: &str, value: Option<&[u8]>) {
        match value {
            Some(v) => self.kv.insert(key.to_owned(), v.to_vec()),
            None => self.kv.remove(key),
        };
    }
}

impl KvState {
    pub fn int(&self, key: &str) -> Option<i64> {
        self.kv
            .get(key)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
    }
}

/// Semantic edits for tests: the worker may re-apply them to newer values.
#[derive(Clone, Debug)]
pub enum TestPatch {
    Put(String, String),
    Delete(String),
    /// Create only if absent.
    Create(String, String),
    /// Add `delta` to an integer value (absent = 0); precondition: the result stays >= `min`.
    Add {
        key: String,
        delta: i64,
        min: i64,
    },
}

impl KeyPatch for TestPatch {
    fn key(&self) -> &str {
        match self {
            TestPatch::Put(k, _) | TestPatch::Delete(k) | TestPatch::Create(k, _) => k,
            TestPatch::Add { key, .. } => key,
        }
    }
    fn apply(&self, old: Option<&[u8]>) -> Result<PatchOutcome, PatchError> {
        let precondition = |reason: &str| PatchError::Precondition {
            key: self.key().to_owned(),
            reason: reason.to_owned(),
        };
        Ok(match self {
            TestPatch::Put(_, v) if old == Some(v.as_bytes()) => PatchOutcome::Unchanged,
            TestPatch::Put(_, v) => PatchOutcome::Put(v.clone().into_bytes()),
            TestPatch::Delete(_) if old.is_none() => PatchOutcome::Unchanged,
            TestPatch::Delete(_) => PatchOutcome::Delete,
            TestPatch::Create(_, v) => match old {
                None => PatchOutcome::Put(v.clone().into_bytes()),
                Some(_) => return Err(precondition("exists")),
            },
            TestPatch::Add { delta, min, .. } => {
                let cur: i64 = match old {
                    None => 0,
                    Some(b) => std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| precondition("not an integer"))?,
                };
                let next = cur + delta;
                if next < *min {
                    return Err(precondition("would go below the minimum"));
                }
                PatchOutcome::Put(next.to_string().into_bytes())
            }
        })
    }
}

/// A reactor whose tick is a closure, so each scenario states its decisions inline.
pub struct FnReactor<S, F> {
    f: F,
    ticks: u64,
    _s: std::marker::PhantomData<fn() -> S>,
}

impl<S, F> FnReactor<S, F>
where
    S: ReactorState,
    F: FnMut(u64, &S, &TickContext) -> TickOutput<TestPatch> + Send + 'static,
{
    pub fn new(f: F) -> Self {
        Self {
            f,
            ticks: 0,
            _s: std::marker::PhantomData,
        }
    }
}

impl<S, F> Reactor for FnReactor<S, F>
where
    S: ReactorState,
    F: FnMut(u64, &S, &TickContext) -> TickOutput<TestPatch> + Send + 'static,
{
    type State = S;
    type Patch = TestPatch;
    fn tick(&mut self, state: &S, ctx: &TickContext) -> TickOutput<TestPatch> {
        let n = self.ticks;
        self.ticks += 1;
        (self.f)(n, state, ctx)
    }
}

pub fn group(label: &str, patches: Vec<TestPatch>) -> rcdc_reactor::Group<TestPatch> {
    rcdc_reactor::Group {
        label: label.to_owned(),
        patches,
    }
}

pub fn out(groups: Vec<rcdc_reactor::Group<TestPatch>>) -> TickOutput<TestPatch> {
    TickOutput {
        groups,
        finished: false,
    }
}

/// A worker running on the test runtime.
pub struct Running {
    pub stats: Arc<WorkerStats>,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<WorkerExit, WorkerError>>,
}

impl Running {
    pub async fn stop(mut self) -> Result<WorkerExit, WorkerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.handle.await.expect("worker task panicked")
    }
    pub async fn join(self) -> Result<WorkerExit, WorkerError> {
        self.handle.await.expect("worker task panicked")
    }
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

pub fn config(prefix: &str) -> WorkerConfig {
    let mut c = WorkerConfig::new("test", prefix, &format!("{prefix}meta/delete-counter"));
    c.tick_interval = Duration::from_millis(5);
    c.retry_initial = Duration::from_millis(20);
    c.retry_max = Duration::from_millis(300);
    c
}

pub fn spawn<S: MetaStore, R: Reactor>(
    store: S,
    reactor: R,
    state: R::State,
    config: WorkerConfig,
) -> Running {
    let worker = EtcdWorker::new(store, reactor, state, config);
    let stats = worker.stats();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async move {
        let _ = rx.await;
    }));
    Running {
        stats,
        stop: Some(tx),
        handle,
    }
}

/// Read every key under `prefix`, hiding the delete counter like the worker does.
pub async fn list<S: MetaStore>(store: &S, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let (kvs, _) = store.get_prefix(prefix).await.expect("list");
    kvs.into_iter()
        .filter(|kv| !kv.key.ends_with("meta/delete-counter"))
        .map(|kv| (kv.key, kv.value))
        .collect()
}

pub async fn put<S: MetaStore>(store: &S, key: &str, value: &str) {
    let txn = Txn {
        success: vec![TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }],
        ..Txn::default()
    };
    store.txn(txn).await.expect("put");
}

pub async fn get<S: MetaStore>(store: &S, key: &str) -> Option<KeyValue> {
    let txn = Txn {
        success: vec![TxnOp::Get { key: key.into() }],
        ..Txn::default()
    };
    store
        .txn(txn)
        .await
        .expect("get")
        .gets
        .into_iter()
        .next()
        .flatten()
}

/// Faults a scenario can inject, the same way for both backends.
#[async_trait]
pub trait Faults: Send + Sync {
    /// The store becomes unreachable.
    async fn outage_begin(&self);
    /// The store is back (for etcd: restarted on the same data dir and ports).
    async fn outage_end(&self);
}

pub struct EtcdFaults(pub Arc<tokio::sync::Mutex<EtcdHarness>>);

#[async_trait]
impl Faults for EtcdFaults {
    async fn outage_begin(&self) {
        self.0.lock().await.stop();
    }
    async fn outage_end(&self) {
        self.0.lock().await.restart().await;
    }
}

pub struct MemFaults(pub MemStore);

#[async_trait]
impl Faults for MemFaults {
    async fn outage_begin(&self) {
        self.0.set_unavailable(true);
        self.0.break_watches();
    }
    async fn outage_end(&self) {
        self.0.set_unavailable(false);
    }
}

/// Generates `etcd` and `mem` tests for a scenario `async fn(store, faults)`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_real_etcd() {
                let harness = rcdc_reactor::testing::EtcdHarness::start().await;
                let store = harness.store().await;
                let faults = $crate::common::EtcdFaults(std::sync::Arc::new(
                    tokio::sync::Mutex::new(harness),
                ));
                super::$name(store, &faults).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_mem_store() {
                let store = rcdc_reactor::store::mem::MemStore::new();
                let faults = $crate::common::MemFaults(store.clone());
                super::$name(store, &faults).await;
            }
        }
    };
}

/// Runs a future to completion from inside a (multi-threaded) tick: tests use it to interfere
/// between a tick's decision and its commit. Never do this outside tests.
pub fn interfere<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

pub type Shared<T> = Arc<Mutex<T>>;
pub fn shared<T>(t: T) -> Shared<T> {
    Arc::new(Mutex::new(t))
}

/// A capture on its own runtime, so that `kill` drops every task like a crashed process.
pub struct TestCapture {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: tokio::sync::watch::Sender<bool>,
    status: tokio::sync::watch::Receiver<rcdc::capture::run::CaptureStatus>,
    done: Option<std::sync::mpsc::Receiver<()>>,
}

pub fn start<R: rcdc::capture::run::Roles>(
    endpoints: Vec<String>,
    name: &'static str,
    roles: R,
    prefix: &str,
    ttl: Duration,
) -> TestCapture {
    start_with_clock(
        endpoints,
        name,
        roles,
        prefix,
        ttl,
        Arc::new(rcdc_reactor::SystemClock),
    )
}

/// [`start`] with an injected clock for both workers.
#[allow(dead_code)]
pub fn start_with_clock<R: rcdc::capture::run::Roles>(
    endpoints: Vec<String>,
    name: &'static str,
    roles: R,
    prefix: &str,
    ttl: Duration,
    clock: Arc<dyn rcdc_reactor::Clock>,
) -> TestCapture {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let (status_tx, status) =
        tokio::sync::watch::channel(rcdc::capture::run::CaptureStatus::default());
    let (done_tx, done) = std::sync::mpsc::channel();
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let config = rcdc::capture::run::CaptureConfig {
        layout: rcdc_state::KeyLayout::new(prefix),
        advertise_addr: format!("{name}:8300"),
        version: "test".into(),
        session_ttl: ttl,
        owner_tick: Duration::from_millis(20),
        processor_tick: Duration::from_millis(20),
        reset_interval: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(10),
        new_id: Arc::new(move || {
            CaptureId::new(format!(
                "{name}-{}",
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ))
        }),
        clock,
    };
    runtime.spawn(async move {
        let config_store = rcdc_reactor::store::etcd::EtcdStoreConfig {
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            tls: None,
        };
        let store = rcdc_reactor::store::etcd::EtcdStore::connect(&endpoints, config_store)
            .await
            .expect("connect");
        rcdc::capture::run::run(store, config, Arc::new(roles), shutdown_rx, status_tx).await;
        let _ = done_tx.send(());
    });
    TestCapture {
        runtime: Some(runtime),
        shutdown,
        status,
        done: Some(done),
    }
}

impl TestCapture {
    pub fn id(&self) -> Option<CaptureId> {
        self.status.borrow().id.clone()
    }
    pub fn is_owner(&self) -> bool {
        self.status.borrow().is_owner
    }
    /// A crash: every task is dropped, nothing is cleaned up.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
    /// SIGTERM: resign, stop, revoke; waits for the loop to return.
    pub fn stop_gracefully(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(done) = self.done.take() {
            done.recv_timeout(Duration::from_secs(15))
                .expect("capture stops in time");
        }
    }
}

impl Drop for TestCapture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A table source with no rows whose time is whatever `now` says: pipelines make
/// resolved-only progress, which is all the control-plane tests need.
pub struct IdleSource(pub Arc<dyn Fn() -> rcdc_state::Ts + Send + Sync>);

impl rcdc::pipeline::table::TableSource for IdleSource {
    fn now(&self) -> rcdc_state::Ts {
        (self.0)()
    }
    fn fetch(
        &mut self,
        _: rcdc_state::Ts,
        upto: rcdc_state::Ts,
        emit: &mut dyn FnMut(
            rcdc::event::TableEvent,
        ) -> Result<(), rcdc::pipeline::table::PullError>,
    ) -> Result<(), rcdc::pipeline::table::PullError> {
        emit(rcdc::event::TableEvent::Resolved(upto))
    }
}

/// A sink whose flush makes everything durable at once.
pub struct DurableSink;

impl rcdc::sink::TableSink for DurableSink {
    fn write(&mut self, _: &[rcdc::event::RowChange]) -> Result<(), rcdc::sink::SinkError> {
        Ok(())
    }
    fn flush(&mut self, resolved: rcdc_state::Ts) -> Result<rcdc_state::Ts, rcdc::sink::SinkError> {
        Ok(resolved)
    }
    fn close(&mut self) {}
    fn rows_written(&self) -> u64 {
        0
    }
}

/// Idle sources and durable sinks for every table.
pub struct IdleFactory(pub Arc<dyn Fn() -> rcdc_state::Ts + Send + Sync>);

impl rcdc::processor::runtime::PipelineFactory for IdleFactory {
    fn source(
        &self,
        _: &rcdc_state::ChangefeedId,
        _: &rcdc_state::model::ChangeFeedInfo,
        _: rcdc_state::TableId,
    ) -> Result<Box<dyn rcdc::pipeline::table::TableSource>, String> {
        Ok(Box::new(IdleSource(self.0.clone())))
    }
    fn sink(
        &self,
        _: &rcdc_state::ChangefeedId,
        _: &rcdc_state::model::ChangeFeedInfo,
        _: rcdc_state::TableId,
    ) -> Result<Box<dyn rcdc::sink::TableSink>, String> {
        Ok(Box::new(DurableSink))
    }
}

/// A real etcd serving TLS with `pki`'s CA, requiring client certificates
/// (`--client-cert-auth`); the harness itself gets a certificate of its own.
pub async fn tls_etcd(pki: &certs::TestPki) -> EtcdHarness {
    let server = pki.issue("etcd", "etcd");
    let harness = pki.issue("harness", "harness");
    EtcdHarness::start_tls(rcdc_reactor::testing::EtcdTls {
        ca: pki.ca.clone(),
        server_cert: server.cert,
        server_key: server.key,
        client_cert: harness.cert,
        client_key: harness.key,
    })
    .await
}

/// The real owner and processor roles over `plane` (a demo upstream into real sinks), with
/// fast flushes, for in-process captures that replicate data.
pub fn data_roles(plane: Arc<rcdc::data_plane::DataPlane>) -> rcdc::capture::roles::ClusterRoles {
    rcdc::capture::roles::ClusterRoles {
        upstream: plane.clone(),
        pipelines: plane,
        owner: rcdc::owner::tick::OwnerConfig {
            flush_interval_ms: 100,
            ..Default::default()
        },
        processor: rcdc::processor::ProcessorConfig::default(),
        table: rcdc::pipeline::table::TablePipelineConfig {
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
        data_plane: rcdc::pipeline::executor::DataPlaneRuntime::start(Default::default())
            .expect("data-plane runtime"),
        owner_handle: Default::default(),
        record: None,
    }
}
