//! The data plane cannot starve the control plane (issue #11, item 4): one capture on a real
//! etcd runs a changefeed whose table pipelines are far behind (every pull is a catch-up
//! slice) and whose sink burns CPU on every write, enough to saturate every core. Over four
//! session TTLs the capture keeps its session (same capture id, still owner) and both etcd
//! workers keep ticking at close to their interval. The figures are printed. A negative
//! control runs the same load on the control plane's threads and loses the session.

// The CPU-hogging sink spins on the wall clock, and tick gaps are timed.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use parking_lot::Mutex;
use rcdc::capture::roles::ClusterRoles;
use rcdc::capture::run::Roles;
use rcdc::owner::gc::UpdateSafePoint;
use rcdc::owner::runtime::OwnerUpstream;
use rcdc::owner::tick::OwnerConfig;
use rcdc::pipeline::executor::DataPlaneRuntime;
use rcdc::pipeline::table::{TablePipelineConfig, TableSource};
use rcdc::processor::runtime::PipelineFactory;
use rcdc::processor::ProcessorConfig;
use rcdc::sink::{SinkError, TableSink};
use rcdc_reactor::testing::EtcdHarness;
use rcdc_reactor::{RawKeys, Reactor, TickContext, TickOutput};
use rcdc_state::model::{CaptureInfo, ChangeFeedInfo};
use rcdc_state::{ChangefeedId, TableId, Ts};

const PREFIX: &str = "/t/isolation";
const TTL: Duration = Duration::from_secs(2);
/// Ticks of both workers (see `common::start`).
const TICK: Duration = Duration::from_millis(20);
const TABLES: i64 = 32;
/// CPU burnt by every sink write: one pull of a catch-up slice.
const BURN: Duration = Duration::from_millis(100);
/// How long the control plane is watched under load.
const WINDOW: Duration = Duration::from_secs(8);

fn now_ts() -> Ts {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ts::from_parts(ms, 0)
}

struct Upstream;

impl OwnerUpstream for Upstream {
    fn list_tables(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        _: Ts,
    ) -> Result<BTreeSet<TableId>, String> {
        Ok((1..=TABLES).map(TableId).collect())
    }
    fn next_ddl(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        _: Ts,
    ) -> Result<(Option<Ts>, Ts), String> {
        Ok((None, now_ts()))
    }
    fn update_gc_safe_point(&self, _: &UpdateSafePoint) -> Result<Ts, String> {
        Ok(Ts(0))
    }
    fn write_sink_checkpoint(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        _: Ts,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// A sink that spins for [`BURN`] on every flush (once per pull, rows or not), counting them.
struct HogSink(Arc<AtomicU64>);

impl TableSink for HogSink {
    fn write(&mut self, _: &[rcdc::event::RowChange]) -> Result<(), SinkError> {
        Ok(())
    }
    fn flush(&mut self, resolved: Ts) -> Result<Ts, SinkError> {
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < BURN {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(resolved)
    }
    fn close(&mut self) {}
    fn rows_written(&self) -> u64 {
        0
    }
}

struct HogFactory(Arc<AtomicU64>);

impl PipelineFactory for HogFactory {
    fn source(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        _: TableId,
    ) -> Result<Box<dyn TableSource>, String> {
        Ok(Box::new(IdleSource(Arc::new(now_ts))))
    }
    fn sink(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        _: TableId,
    ) -> Result<Box<dyn TableSink>, String> {
        Ok(Box::new(HogSink(self.0.clone())))
    }
}

/// Tick count and the longest gap between two ticks of one worker role.
#[derive(Default)]
struct TickLog {
    inner: Mutex<(u64, Option<Instant>, Duration)>,
}

impl TickLog {
    fn tick(&self) {
        let mut g = self.inner.lock();
        let now = Instant::now();
        if let Some(last) = g.1 {
            g.2 = g.2.max(now - last);
        }
        g.0 += 1;
        g.1 = Some(now);
    }
    /// (ticks, longest gap) since the last reset; a worker silent since its last tick counts
    /// as a gap up to now.
    fn take(&self) -> (u64, Duration) {
        let mut g = self.inner.lock();
        let now = Instant::now();
        let gap = g.1.map_or(g.2, |last| g.2.max(now - last));
        let out = (g.0, gap);
        *g = (0, Some(now), Duration::ZERO);
        out
    }
}

/// A reactor that logs its ticks and otherwise is `R`.
struct Logged<R> {
    inner: R,
    log: Arc<TickLog>,
}

impl<R: Reactor> Reactor for Logged<R> {
    type State = R::State;
    type Patch = R::Patch;
    fn observe_updates(&mut self, updates: &[(String, Option<Vec<u8>>)], keys: &dyn RawKeys) {
        self.inner.observe_updates(updates, keys);
    }
    fn tick(&mut self, state: &R::State, ctx: &TickContext) -> TickOutput<R::Patch> {
        self.log.tick();
        self.inner.tick(state, ctx)
    }
}

/// The real roles, with both workers' ticks logged.
struct LoggedRoles {
    roles: ClusterRoles,
    owner: Arc<TickLog>,
    processor: Arc<TickLog>,
}

impl Roles for LoggedRoles {
    type Owner = Logged<<ClusterRoles as Roles>::Owner>;
    type Processor = Logged<<ClusterRoles as Roles>::Processor>;
    fn owner(&self, me: &CaptureInfo) -> Self::Owner {
        Logged {
            inner: self.roles.owner(me),
            log: self.owner.clone(),
        }
    }
    fn processor(&self, me: &CaptureInfo) -> Self::Processor {
        Logged {
            inner: self.roles.processor(me),
            log: self.processor.clone(),
        }
    }
}

/// What the control plane went through while the data plane was saturated.
struct Outcome {
    /// When the session (or ownership) was lost, and whether etcd still had the capture key.
    lost: Option<(Duration, bool)>,
    elapsed: Duration,
    /// Cores the sinks kept busy (writes × burn / elapsed).
    cores: f64,
    owner: (u64, Duration),
    processor: (u64, Duration),
}

/// One scenario at a time: each saturates the machine, and must not skew the other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One capture whose changefeed saturates the data plane; the control plane is watched for
/// [`WINDOW`] (or until the session is lost).
async fn under_load(data_plane: DataPlaneRuntime) -> Outcome {
    let _alone = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let writes = Arc::new(AtomicU64::new(0));
    let (owner_ticks, processor_ticks) =
        (Arc::new(TickLog::default()), Arc::new(TickLog::default()));
    let roles = LoggedRoles {
        roles: ClusterRoles {
            upstream: Arc::new(Upstream),
            pipelines: Arc::new(HogFactory(writes.clone())),
            owner: OwnerConfig {
                flush_interval_ms: 50,
                ..Default::default()
            },
            processor: ProcessorConfig::default(),
            table: TablePipelineConfig::default(),
            data_plane,
            owner_handle: Default::default(),
            record: None,
        },
        owner: owner_ticks.clone(),
        processor: processor_ticks.clone(),
    };
    let capture = start(etcd.endpoints(), "a", roles, PREFIX, TTL);
    wait_until(DEADLINE, "the capture is registered and owner", || async {
        capture.is_owner()
    })
    .await;
    let me = capture.id().expect("registered");

    // Every table starts ten minutes behind: each pull is a one-second catch-up slice.
    let start_ts = Ts::from_parts(now_ts().physical_ms() - 600_000, 0);
    let info = format!(
        r#"{{"sink-uri":"blackhole://","opts":{{}},"start-ts":{},"target-ts":0,"admin-job-type":0,"sort-engine":"unified","config":{{}},"state":"normal","history":null,"error":null}}"#,
        start_ts.0
    );
    put(&store, &format!("{PREFIX}/changefeed/info/cf"), &info).await;
    wait_until(DEADLINE, "the sinks are being written", || async {
        writes.load(Ordering::Relaxed) >= 2 * TABLES as u64
    })
    .await;

    let (writes_before, began) = (writes.load(Ordering::Relaxed), Instant::now());
    owner_ticks.take();
    processor_ticks.take();
    // The session as etcd sees it: the capture key lives on the session's lease. (The
    // capture's own view can be stale: a starved keep-alive cannot even notice the loss.)
    let capture_key = rcdc_state::KeyLayout::new(PREFIX).capture(&me);
    let mut lost = None;
    while began.elapsed() < WINDOW {
        let registered = get(&store, &capture_key).await.is_some();
        if !registered || capture.id().as_ref() != Some(&me) || !capture.is_owner() {
            lost = Some((began.elapsed(), registered));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = began.elapsed();
    let (owner, processor) = (owner_ticks.take(), processor_ticks.take());
    let cores = (writes.load(Ordering::Relaxed) - writes_before) as f64 * BURN.as_secs_f64()
        / elapsed.as_secs_f64();
    println!(
        "under load for {elapsed:?}: sinks burnt {cores:.2} cores; owner {} ticks (longest gap \
         {:?}), processor {} ticks (longest gap {:?}); tick interval {TICK:?}, session TTL \
         {TTL:?}; session lost: {lost:?}",
        owner.0, owner.1, processor.0, processor.1
    );
    Outcome {
        lost,
        elapsed,
        cores,
        owner,
        processor,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_data_plane_does_not_starve_the_session_or_the_etcd_workers() {
    let data_plane = DataPlaneRuntime::start(Default::default()).expect("data-plane runtime");
    let out = under_load(data_plane).await;
    assert_eq!(
        out.lost, None,
        "the capture lost its session or ownership after (elapsed, capture key still in etcd)"
    );
    assert!(
        out.cores >= 0.5,
        "the data plane was not under load: {:.2} cores",
        out.cores
    );
    let expected = (out.elapsed.as_millis() / TICK.as_millis()) as u64;
    for (role, (ticks, gap)) in [("owner", out.owner), ("processor", out.processor)] {
        assert!(gap < TTL / 4, "{role} worker stalled for {gap:?}");
        assert!(
            ticks >= expected / 2,
            "{role} worker ticked {ticks} times, expected ~{expected}"
        );
    }
}

/// The negative control: the same load on the control plane's own threads (the inline
/// executor) loses the session, so the test above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_load_on_the_control_planes_threads_loses_the_session() {
    let out = under_load(DataPlaneRuntime::inline()).await;
    assert!(
        out.lost.is_some(),
        "the session survived pipelines on its own thread"
    );
}
