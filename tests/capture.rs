//! The capture loop on a real etcd: one owner among several captures, failover after a crash
//! (measured), graceful shutdown hands ownership over at once, and a lost session comes back
//! with a new capture id. Each capture runs on its own runtime, so killing one drops all its
//! tasks without any cleanup, like a crashed process: its lease must expire on its own.

// Failover is measured in real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use rcdc::capture::election::current_owner;
use rcdc::capture::run::Roles;
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::testing::EtcdHarness;
use rcdc_reactor::{Reactor, TickContext, TickOutput};
use rcdc_state::model::CaptureInfo;
use rcdc_state::{CaptureId, Edit, GlobalState, Patch, PatchGroup};

const PREFIX: &str = "/t/capture-loop";
const TTL: Duration = Duration::from_secs(2);

/// Owner: records who owns in `<prefix>/meta/owned-by`. Processor: marks itself alive.
struct TestRoles;
struct Marker(String, String);

impl Reactor for Marker {
    type State = GlobalState;
    type Patch = Patch;
    fn tick(&mut self, _: &GlobalState, _: &TickContext) -> TickOutput<Patch> {
        let mut g = PatchGroup::new("marker");
        g.push(
            self.0.clone(),
            Edit::Put {
                value: self.1.clone(),
            },
        );
        TickOutput {
            groups: vec![g.into()],
            finished: false,
        }
    }
}

impl Roles for TestRoles {
    type Owner = Marker;
    type Processor = Marker;
    fn owner(&self, me: &CaptureInfo) -> Marker {
        Marker(format!("{PREFIX}/meta/owned-by"), me.id.to_string())
    }
    fn processor(&self, me: &CaptureInfo) -> Marker {
        Marker(format!("{PREFIX}/meta/alive/{}", me.id), "1".into())
    }
}

/// Both roles write the time their tick was given.
struct ClockRoles;
struct Stamp(String);

impl Reactor for Stamp {
    type State = GlobalState;
    type Patch = Patch;
    fn tick(&mut self, _: &GlobalState, ctx: &TickContext) -> TickOutput<Patch> {
        let mut g = PatchGroup::new("stamp");
        g.push(
            self.0.clone(),
            Edit::Put {
                value: ctx.now_ms.to_string(),
            },
        );
        TickOutput {
            groups: vec![g.into()],
            finished: false,
        }
    }
}

impl Roles for ClockRoles {
    type Owner = Stamp;
    type Processor = Stamp;
    fn owner(&self, _: &CaptureInfo) -> Stamp {
        Stamp(format!("{PREFIX}/meta/clock/owner"))
    }
    fn processor(&self, _: &CaptureInfo) -> Stamp {
        Stamp(format!("{PREFIX}/meta/clock/processor"))
    }
}

struct FixedClock;

impl rcdc_reactor::Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        1_234_567
    }
}

/// Regression (found by the simulation): the capture loop once built its workers with the
/// system clock, so ticks read wall time even when a clock was injected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_workers_tick_on_the_injected_clock() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let _cap = start_with_clock(
        etcd.endpoints(),
        "clocked",
        ClockRoles,
        PREFIX,
        TTL,
        std::sync::Arc::new(FixedClock),
    );
    for role in ["owner", "processor"] {
        let key = format!("{PREFIX}/meta/clock/{role}");
        wait_until(DEADLINE, &format!("the {role} ticked"), || async {
            get(&store, &key).await.is_some()
        })
        .await;
        let kv = get(&store, &key).await.expect("stamp");
        assert_eq!(kv.value, b"1234567", "the {role} read the injected clock");
    }
}

async fn owned_by<S: MetaStore>(store: &S) -> Option<String> {
    get(store, &format!("{PREFIX}/meta/owned-by"))
        .await
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_and_failover_after_a_crash_within_the_session_ttl() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let mut caps = [
        start(etcd.endpoints(), "a", TestRoles, PREFIX, TTL),
        start(etcd.endpoints(), "b", TestRoles, PREFIX, TTL),
        start(etcd.endpoints(), "c", TestRoles, PREFIX, TTL),
    ];
    wait_until(
        DEADLINE,
        "all three registered and one owner acting",
        || async { caps.iter().all(|c| c.id().is_some()) && owned_by(&store).await.is_some() },
    )
    .await;
    let owners: Vec<_> = caps.iter().filter(|c| c.is_owner()).collect();
    assert_eq!(owners.len(), 1, "exactly one owner");
    let first = owners[0].id().expect("id");
    assert_eq!(owned_by(&store).await, Some(first.to_string()));
    assert_eq!(
        current_owner(&store, &format!("{PREFIX}/owner"))
            .await
            .expect("owner"),
        Some(first.clone())
    );
    let (_, _) = store
        .get_prefix(&format!("{PREFIX}/meta/alive/"))
        .await
        .expect("list");
    wait_until(DEADLINE, "every processor worker ran", || async {
        store
            .get_prefix(&format!("{PREFIX}/meta/alive/"))
            .await
            .map(|(kvs, _)| kvs.len() == 3)
            .unwrap_or(false)
    })
    .await;

    let killed = caps.iter().position(|c| c.is_owner()).expect("owner");
    let crashed_at = Instant::now();
    caps[killed].kill();
    wait_until(DEADLINE, "another capture takes over", || async {
        owned_by(&store)
            .await
            .is_some_and(|o| o != first.to_string())
    })
    .await;
    let failover = crashed_at.elapsed();
    println!("failover after a crash: {failover:?} (session TTL {TTL:?})");
    assert!(
        failover < TTL + Duration::from_secs(3),
        "failover took {failover:?}"
    );
    let new_owner = owned_by(&store).await.expect("owner");
    assert!(caps.iter().enumerate().any(|(i, c)| i != killed
        && c.id().map(|id| id.to_string()) == Some(new_owner.clone())
        && c.is_owner()));
    wait_until(DEADLINE, "the crashed capture's key expires", || async {
        get(&store, &format!("{PREFIX}/capture/{first}"))
            .await
            .is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_resigns_and_hands_over_without_waiting_for_the_ttl() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let mut caps = [
        start(etcd.endpoints(), "a", TestRoles, PREFIX, TTL),
        start(etcd.endpoints(), "b", TestRoles, PREFIX, TTL),
    ];
    wait_until(DEADLINE, "an owner", || async {
        owned_by(&store).await.is_some() && caps.iter().all(|c| c.id().is_some())
    })
    .await;
    let i = caps.iter().position(|c| c.is_owner()).expect("owner");
    let old = caps[i].id().expect("id");
    let stopped_at = Instant::now();
    caps[i].stop_gracefully();
    assert!(
        get(&store, &format!("{PREFIX}/capture/{old}"))
            .await
            .is_none(),
        "the capture key is deleted on exit"
    );
    wait_until(DEADLINE, "the other capture takes over", || async {
        owned_by(&store).await.is_some_and(|o| o != old.to_string())
    })
    .await;
    let handover = stopped_at.elapsed();
    println!("hand-over after graceful shutdown: {handover:?}");
    assert!(
        handover < TTL,
        "a graceful hand-over must not wait for the TTL: {handover:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_comes_back_with_a_new_capture_id() {
    let etcd = EtcdHarness::start().await;
    let store = etcd.store().await;
    let cap = start(etcd.endpoints(), "a", TestRoles, PREFIX, TTL);
    wait_until(DEADLINE, "registered", || async { cap.id().is_some() }).await;
    let first = cap.id().expect("id");
    let (kvs, _) = store
        .get_prefix(&format!("{PREFIX}/capture/{first}"))
        .await
        .expect("list");
    let lease = kvs
        .first()
        .map(|kv| kv.lease)
        .expect("capture key with a lease");
    store
        .revoke_lease(lease)
        .await
        .expect("revoke: the session is lost");
    wait_until(DEADLINE, "re-registered under a new id", || async {
        cap.id().is_some_and(|id| id != first)
            && get(
                &store,
                &format!("{PREFIX}/capture/{}", cap.id().expect("id")),
            )
            .await
            .is_some()
    })
    .await;
    assert_eq!(cap.id(), Some(CaptureId::from("a-1")));
    wait_until(DEADLINE, "and it owns again", || async {
        owned_by(&store).await.as_deref() == Some("a-1")
    })
    .await;
}
