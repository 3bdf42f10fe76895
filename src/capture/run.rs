//! The capture's run loop (target-design §5, facts §4.2–§4.4):
//!
//! ```text
//! loop (rate-limited):
//!   new capture id ─> session lease ─> register <prefix>/capture/<id> on the lease
//!   ├─ processor worker, always
//!   └─ campaign ─> owner worker, fenced by the election key ─> (resigned) campaign again
//!   session lost ──> stop both, loop with a new id
//!   shutdown ──────> drain (tables move to other captures, bounded), resign if owner, stop
//!                    both, revoke the lease (deletes our keys), return
//! ```
//!
//! The reactors are built by a [`Roles`] factory, so this loop is the same for the real owner
//! and processor manager and for the trivial reactors of its tests. A dead etcd is retried
//! with backoff, never a crash.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rcdc_reactor::store::{MetaStore, Txn, TxnOp};
use rcdc_reactor::{EtcdWorker, Reactor, WorkerConfig, WorkerError};
use rcdc_state::model::{CaptureInfo, TaskStatus};
use rcdc_state::{CaptureId, GlobalState, KeyLayout, Patch};
use tokio::sync::watch;

use super::election::{campaign, resign};
use super::session::Session;

/// Builds the reactors for one capture incarnation.
pub trait Roles: Send + Sync + 'static {
    /// The owner reactor.
    type Owner: Reactor<State = GlobalState, Patch = Patch>;
    /// The processor-manager reactor.
    type Processor: Reactor<State = GlobalState, Patch = Patch>;
    /// A fresh owner for a capture that just won the election.
    fn owner(&self, me: &CaptureInfo) -> Self::Owner;
    /// A fresh processor manager for a new capture incarnation.
    fn processor(&self, me: &CaptureInfo) -> Self::Processor;
}

/// Capture settings.
#[derive(Clone)]
pub struct CaptureConfig {
    /// Key layout (cluster prefix).
    pub layout: KeyLayout,
    /// Advertised `host:port`.
    pub advertise_addr: String,
    /// Version string written into CaptureInfo.
    pub version: String,
    /// Session TTL (`capture-session-ttl`).
    pub session_ttl: Duration,
    /// Owner worker tick interval (`owner-flush-interval`).
    pub owner_tick: Duration,
    /// Processor worker tick interval (`processor-flush-interval`).
    pub processor_tick: Duration,
    /// Minimum time between two resets after the first two (TiCDC: 20 s).
    pub reset_interval: Duration,
    /// On graceful shutdown, how long to wait for this capture's tables to move to others.
    pub drain_timeout: Duration,
    /// New capture ids (random UUIDs in production; injected so tests are deterministic).
    pub new_id: Arc<dyn Fn() -> CaptureId + Send + Sync>,
    /// The clock the reactors' ticks read (the system clock in production; simulation
    /// injects virtual time).
    pub clock: Arc<dyn rcdc_reactor::Clock>,
}

/// What a capture incarnation's owner role is doing, for the API (`is_owner`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStatus {
    /// The current capture id, if registered.
    pub id: Option<CaptureId>,
    /// Whether this capture currently runs the owner.
    pub is_owner: bool,
}

enum Ended {
    SessionLost,
    Shutdown,
}

/// Runs a capture until `shutdown` becomes true. `status` is kept current for the API.
pub async fn run<S, R>(
    store: S,
    config: CaptureConfig,
    roles: Arc<R>,
    mut shutdown: watch::Receiver<bool>,
    status: watch::Sender<CaptureStatus>,
) where
    S: MetaStore + Clone,
    R: Roles,
{
    let mut resets = 0u32;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        if resets >= 2 {
            // Two immediate resets, then at most one per interval (facts §9: 0.05/s, burst 2).
            if wait_or_shutdown(&mut shutdown, config.reset_interval).await {
                return;
            }
        }
        resets += 1;
        let me = CaptureInfo {
            id: (config.new_id)(),
            address: config.advertise_addr.clone(),
            version: config.version.clone(),
            extra: Default::default(),
        };
        let session = match Session::open(store.clone(), config.session_ttl).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a session; retrying");
                if wait_or_shutdown(&mut shutdown, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                resets = resets.saturating_sub(1); // an unreachable etcd is not a reset
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        match incarnation(
            &store,
            &config,
            roles.as_ref(),
            &me,
            &session,
            &mut shutdown,
            &status,
        )
        .await
        {
            Ended::Shutdown => {
                session.close().await; // revokes the lease: capture and election keys go
                let _ = status.send(CaptureStatus::default());
                return;
            }
            Ended::SessionLost => {
                tracing::warn!(capture = %me.id, "session lost; restarting with a new capture id");
                session.close().await;
                let _ = status.send(CaptureStatus::default());
            }
        }
    }
}

/// Completes once shutdown is requested. Returns `()` rather than the channel's read guard,
/// which must not live across the awaits of a `select!` branch (it is not `Send`).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Returns true if shutdown was requested during the wait.
async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stop = tokio::select! {
        _ = tokio::time::sleep(d) => None,
        _ = stop_requested(shutdown) => Some(true),
    };
    stop.unwrap_or_else(|| *shutdown.borrow())
}

fn worker_config(config: &CaptureConfig, role: &str, tick: Duration) -> WorkerConfig {
    let mut c = WorkerConfig::new(
        role,
        &config.layout.watch_prefix(),
        &config.layout.delete_counter(),
    );
    c.tick_interval = tick;
    c
}

async fn incarnation<S: MetaStore + Clone, R: Roles>(
    store: &S,
    config: &CaptureConfig,
    roles: &R,
    me: &CaptureInfo,
    session: &Session<S>,
    shutdown: &mut watch::Receiver<bool>,
    status: &watch::Sender<CaptureStatus>,
) -> Ended {
    let key = config.layout.capture(&me.id);
    let value = match serde_json::to_vec(me) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode capture info");
            return Ended::SessionLost;
        }
    };
    let register = Txn {
        success: vec![TxnOp::Put {
            key,
            value,
            lease: session.lease(),
        }],
        ..Txn::default()
    };
    if let Err(e) = store.txn(register).await {
        tracing::warn!(error = %e, "cannot register the capture");
        return Ended::SessionLost;
    }
    tracing::info!(capture = %me.id, addr = %me.address, "capture registered");
    let _ = status.send(CaptureStatus {
        id: Some(me.id.clone()),
        is_owner: false,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let processor = EtcdWorker::new(
        store.clone(),
        roles.processor(me),
        GlobalState::new(config.layout.clone()),
        worker_config(config, "processor", config.processor_tick),
    )
    .with_clock(config.clock.clone());
    let mut processor = tokio::spawn(processor.run(stopped(stop_rx.clone())));

    let owner_prefix = config.layout.owner_prefix();
    let ended = loop {
        // Campaign, unless the session ends or we are told to stop.
        let fence = tokio::select! {
            r = campaign(store, &owner_prefix, session.lease(), &me.id) => r,
            _ = session.wait_lost() => break Ended::SessionLost,
            _ = stop_requested(shutdown) => {
                drain(store, config, me, session).await;
                break Ended::Shutdown;
            }
            r = &mut processor => {
                tracing::warn!(result = ?r, "processor worker ended; restarting the capture");
                break Ended::SessionLost;
            }
        };
        let fence = match fence {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "campaign failed");
                if session.is_lost() {
                    break Ended::SessionLost;
                }
                if wait_or_shutdown(shutdown, Duration::from_millis(500)).await {
                    break Ended::Shutdown;
                }
                continue;
            }
        };
        tracing::info!(capture = %me.id, key = %fence.key, "became the owner");
        let _ = status.send(CaptureStatus {
            id: Some(me.id.clone()),
            is_owner: true,
        });
        let mut cfg = worker_config(config, "owner", config.owner_tick);
        cfg.fence = Some(fence.clone());
        let owner = EtcdWorker::new(
            store.clone(),
            roles.owner(me),
            GlobalState::new(config.layout.clone()),
            cfg,
        )
        .with_clock(config.clock.clone());
        let (owner_stop_tx, owner_stop_rx) = watch::channel(false);
        let mut owner = tokio::spawn(owner.run(stopped(owner_stop_rx)));
        let outcome = tokio::select! {
            r = &mut owner => Some(r),
            _ = session.wait_lost() => None,
            _ = stop_requested(shutdown) => {
                // The owner keeps running while we drain: it is what moves our tables.
                drain(store, config, me, session).await;
                let _ = owner_stop_tx.send(true);
                let _ = (&mut owner).await;
                if let Err(e) = resign(store, &fence).await {
                    tracing::warn!(error = %e, "resign failed; the election key goes with the lease");
                }
                break Ended::Shutdown;
            }
        };
        let _ = owner_stop_tx.send(true);
        let _ = status.send(CaptureStatus {
            id: Some(me.id.clone()),
            is_owner: false,
        });
        match outcome {
            None => {
                owner.abort();
                break Ended::SessionLost;
            }
            Some(Ok(Err(WorkerError::Fenced { .. }))) => break Ended::SessionLost,
            Some(other) => {
                // The owner reactor finished (a resign request): step down, campaign again.
                tracing::info!(result = ?other, "owner stepped down");
                if let Err(e) = resign(store, &fence).await {
                    tracing::warn!(error = %e, "resign failed");
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(5), &mut processor)
        .await
        .is_err()
    {
        processor.abort();
    }
    ended
}

/// Graceful drain (target-design §5): when other captures are alive, mark this capture as
/// draining so the owner moves its tables away, and wait — at most `drain_timeout` — until it
/// holds nothing. Best effort: on timeout or a store error the capture leaves anyway and its
/// tables are re-dispatched as for a crash.
async fn drain<S: MetaStore + Clone>(
    store: &S,
    config: &CaptureConfig,
    me: &CaptureInfo,
    session: &Session<S>,
) {
    let my_key = config.layout.capture(&me.id);
    let others = match store.get_prefix(&config.layout.capture_prefix()).await {
        Ok((kvs, _)) => kvs
            .iter()
            .filter(|kv| kv.key != my_key)
            .filter(|kv| {
                serde_json::from_slice::<CaptureInfo>(&kv.value).is_ok_and(|c| !c.is_draining())
            })
            .count(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list captures; leaving without draining");
            return;
        }
    };
    if others == 0 {
        return; // nobody to take the tables
    }
    let mut info = me.clone();
    info.set_draining(true);
    let Ok(value) = serde_json::to_vec(&info) else {
        return;
    };
    let mark = Txn {
        success: vec![TxnOp::Put {
            key: my_key,
            value,
            lease: session.lease(),
        }],
        ..Txn::default()
    };
    if let Err(e) = store.txn(mark).await {
        tracing::warn!(error = %e, "cannot mark the capture as draining; leaving without draining");
        return;
    }
    tracing::info!(capture = %me.id, "draining: waiting for tables to move to other captures");
    let deadline = tokio::time::Instant::now() + config.drain_timeout;
    let prefix = config.layout.task_status_prefix(&me.id);
    loop {
        if let Ok((kvs, _)) = store.get_prefix(&prefix).await {
            let empty = kvs.iter().all(|kv| {
                serde_json::from_slice::<TaskStatus>(&kv.value).is_ok_and(|s| s.is_empty())
            });
            if empty {
                tracing::info!(capture = %me.id, "drained");
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(capture = %me.id, timeout = ?config.drain_timeout, "drain timed out; leaving anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `f` for at most `d`.
pub async fn bounded<F: Future>(d: Duration, f: F) -> Option<F::Output> {
    tokio::time::timeout(d, f).await.ok()
}
