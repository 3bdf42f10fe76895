//! A cluster in one test process, on a real etcd: three captures run the real owner and
//! processor managers through the capture loop; a changefeed of six tables is dispatched,
//! replicates (the checkpoint advances, monotonically), and survives a crash of the owner
//! capture: a new owner re-dispatches the dead capture's tables within the session TTL plus a
//! few ticks (measured). The upstream and sink are test doubles here; the demo upstream and
//! file sink take their place in issue #4's end-to-end test.

// The doubles read the wall clock to play an upstream whose time moves; failover is timed.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use rcdc::capture::roles::ClusterRoles;
use rcdc::owner::gc::UpdateSafePoint;
use rcdc::owner::runtime::OwnerUpstream;
use rcdc::owner::tick::OwnerConfig;
use rcdc::pipeline::executor::DataPlaneRuntime;
use rcdc::pipeline::table::TablePipelineConfig;
use rcdc::processor::ProcessorConfig;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_state::model::ChangeFeedInfo;
use rcdc_state::{ChangefeedId, GlobalState, KeyLayout, TableId, Ts};

const PREFIX: &str = "/t/cluster";
const TTL: Duration = Duration::from_secs(2);

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
        Ok((1..=6).map(TableId).collect())
    }
    fn next_ddl(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        _: Ts,
    ) -> Result<(Option<Ts>, Ts), String> {
        Ok((None, now_ts())) // no DDL ever
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

fn roles() -> ClusterRoles {
    ClusterRoles {
        upstream: Arc::new(Upstream),
        pipelines: Arc::new(IdleFactory(Arc::new(now_ts))),
        owner: OwnerConfig {
            flush_interval_ms: 50,
            ..Default::default()
        },
        processor: ProcessorConfig::default(),
        table: TablePipelineConfig {
            poll_interval: Duration::from_millis(20),
            ..Default::default()
        },
        data_plane: DataPlaneRuntime::start(Default::default()).expect("data-plane runtime"),
        owner_handle: Default::default(),
        record: None,
    }
}

/// Table → holders (from `tables` of live captures), ops in flight, and the checkpoint.
async fn view<S: MetaStore>(store: &S) -> (BTreeMap<TableId, Vec<String>>, usize, Option<Ts>) {
    let (kvs, _) = store.get_prefix(&format!("{PREFIX}/")).await.expect("list");
    let mut state = GlobalState::new(KeyLayout::new(PREFIX));
    for kv in &kvs {
        state.apply(&kv.key, Some(&kv.value));
    }
    let mut holders: BTreeMap<TableId, Vec<String>> = BTreeMap::new();
    let mut ops = 0;
    let mut checkpoint = None;
    if let Some(cf) = state.changefeed(&"cf".into()) {
        for (capture, status) in &cf.task_statuses {
            if !state.captures().contains_key(capture) {
                continue;
            }
            for t in status.tables.iter().flat_map(|t| t.keys()) {
                holders.entry(*t).or_default().push(capture.to_string());
            }
            ops += status.operation.as_ref().map_or(0, |o| o.len());
        }
        checkpoint = cf.status.as_ref().map(|s| s.checkpoint_ts);
    }
    (holders, ops, checkpoint)
}

/// Tables a live capture holds or has an operation for (a hand-over in progress counts).
async fn covered<S: MetaStore>(store: &S) -> usize {
    let (kvs, _) = store.get_prefix(&format!("{PREFIX}/")).await.expect("list");
    let mut state = GlobalState::new(KeyLayout::new(PREFIX));
    for kv in &kvs {
        state.apply(&kv.key, Some(&kv.value));
    }
    let mut tables = BTreeSet::new();
    if let Some(cf) = state.changefeed(&"cf".into()) {
        for (capture, status) in cf
            .task_statuses
            .iter()
            .filter(|(c, _)| state.captures().contains_key(*c))
        {
            let _ = capture;
            tables.extend(status.tables.iter().flat_map(|t| t.keys().copied()));
            tables.extend(status.operation.iter().flat_map(|o| o.keys().copied()));
        }
    }
    tables.len()
}

fn all_held_once(holders: &BTreeMap<TableId, Vec<String>>) -> bool {
    holders.len() == 6 && holders.values().all(|h| h.len() == 1)
}

/// Starts one capture per name, waits until all registered and one owns, then creates the
/// changefeed `cf` (blackhole sink) starting now. Returns the captures and the start ts.
async fn cluster_with_changefeed(
    etcd: &EtcdHarness,
    names: &[&'static str],
) -> (Vec<TestCapture>, Ts) {
    let store = etcd.store().await;
    let caps: Vec<TestCapture> = names
        .iter()
        .map(|n| start(etcd.endpoints(), n, roles(), PREFIX, TTL))
        .collect();
    wait_until(DEADLINE, "captures registered and an owner", || async {
        caps.iter().all(|c| c.id().is_some()) && caps.iter().any(|c| c.is_owner())
    })
    .await;
    let start_ts = now_ts();
    let info = format!(
        r#"{{"sink-uri":"blackhole://","opts":{{}},"start-ts":{},"target-ts":0,"admin-job-type":0,"sort-engine":"unified","config":{{}},"state":"normal","history":null,"error":null}}"#,
        start_ts.0
    );
    put(&store, &format!("{PREFIX}/changefeed/info/cf"), &info).await;
    (caps, start_ts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changefeed_is_dispatched_replicates_and_survives_an_owner_crash() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let (mut caps, start_ts) = cluster_with_changefeed(&etcd, &["a", "b", "c"]).await;

    wait_until(
        DEADLINE,
        "all six tables held once, settled, checkpoint past the start",
        || async {
            let (holders, ops, cp) = view(&store).await;
            all_held_once(&holders) && ops == 0 && cp.is_some_and(|c| c > start_ts)
        },
    )
    .await;
    let (holders, _, _) = view(&store).await;
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for h in holders.values() {
        *per.entry(h[0].clone()).or_default() += 1;
    }
    assert_eq!(
        per.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "spread 2/2/2: {per:?}"
    );

    // Crash the owner capture.
    let owner = caps.iter().position(|c| c.is_owner()).expect("owner");
    let dead = caps[owner].id().expect("id").to_string();
    let crashed_at = Instant::now();
    let crash_ts = now_ts();
    caps[owner].kill();
    let last_cp = std::sync::Arc::new(parking_lot::Mutex::new(Ts(0)));
    wait_until(
        DEADLINE,
        "every table held by a live capture again and progress past the crash",
        || async {
            let (holders, ops, cp) = view(&store).await;
            if let Some(cp) = cp {
                let mut last = last_cp.lock();
                assert!(
                    cp >= *last,
                    "checkpoint went backwards: {:?} -> {cp:?}",
                    *last
                );
                *last = cp;
            }
            all_held_once(&holders)
                && !holders.values().any(|h| h[0] == dead)
                && ops == 0
                && cp.is_some_and(|c| c > crash_ts)
        },
    )
    .await;
    let recovered = crashed_at.elapsed();
    println!("owner capture crashed: all its tables replicating elsewhere and checkpoint past the crash after {recovered:?} (session TTL {TTL:?})");
    assert!(recovered < TTL + Duration::from_secs(5), "{recovered:?}");
    let live_owners = caps
        .iter()
        .enumerate()
        .filter(|(i, c)| *i != owner && c.is_owner())
        .count();
    assert_eq!(
        live_owners, 1,
        "exactly one new owner among the live captures"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_capture_gets_its_share_through_a_rebalance() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let (mut caps, _) = cluster_with_changefeed(&etcd, &["a", "b"]).await;
    let spread = || async {
        let (holders, ops, _) = view(&store).await;
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for h in holders.values() {
            *per.entry(h[0].clone()).or_default() += 1;
        }
        (all_held_once(&holders) && ops == 0).then_some(per)
    };
    wait_until(DEADLINE, "3/3 over two captures", || async {
        spread().await.is_some_and(|p| p.values().all(|n| *n == 3))
    })
    .await;
    caps.push(start(etcd.endpoints(), "c", roles(), PREFIX, TTL));
    wait_until(DEADLINE, "2/2/2 after the third capture joins", || async {
        spread()
            .await
            .is_some_and(|p| p.len() == 3 && p.values().all(|n| *n == 2))
    })
    .await;
}

/// Graceful shutdown drains: the leaving capture's tables move to the others *before* it
/// deregisters, so no table is ever unheld and its status is empty when its key disappears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_drains_tables_before_leaving() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let (mut caps, _) = cluster_with_changefeed(&etcd, &["a", "b", "c"]).await;
    wait_until(DEADLINE, "settled 2/2/2", || async {
        let (holders, ops, _) = view(&store).await;
        all_held_once(&holders) && ops == 0
    })
    .await;
    let leaving = caps
        .iter()
        .position(|c| !c.is_owner())
        .expect("a non-owner");
    let id = caps[leaving].id().expect("id").to_string();

    // Sample while the capture leaves.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (store, stop, id) = (store.clone(), stop.clone(), id.clone());
        tokio::spawn(async move {
            let mut violations = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let n = covered(&store).await;
                if n < 6 {
                    violations.push(format!(
                        "only {n} tables in a live capture's tables or operations"
                    ));
                }
                let registered = get(&store, &format!("{PREFIX}/capture/{id}"))
                    .await
                    .is_some();
                let status = get(&store, &format!("{PREFIX}/task/status/{id}/cf")).await;
                let holds = status
                    .and_then(|kv| {
                        serde_json::from_slice::<rcdc_state::model::TaskStatus>(&kv.value).ok()
                    })
                    .is_some_and(|s| !s.is_empty());
                if !registered && holds {
                    violations.push("deregistered while still holding tables".to_owned());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            violations
        })
    };
    let started = Instant::now();
    tokio::task::block_in_place(|| caps[leaving].stop_gracefully());
    println!("graceful stop with drain took {:?}", started.elapsed());
    wait_until(DEADLINE, "the others hold everything, settled", || async {
        let (holders, ops, _) = view(&store).await;
        all_held_once(&holders) && ops == 0 && !holders.values().any(|h| h[0] == id)
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let violations = sampler.await.expect("sampler");
    assert!(violations.is_empty(), "{violations:?}");
}
