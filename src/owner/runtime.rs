//! The owner's IO side: the EtcdWorker adapter around [`Owner`] and the executor of its
//! effects.
//!
//! The adapter drains operator requests and effect results that arrived since the last tick
//! (never waiting), runs the pure [`Owner::tick`], hands effects to the executor and returns
//! the patch groups to the worker. The executor talks to the upstream through the narrow
//! [`OwnerUpstream`] seam and sends results back for the next tick.
//!
//! The acknowledgement loop (target-design §3):
//! ```text
//! API ── request ──> waiting ──> Owner::tick ──> groups ──> EtcdWorker commits
//!  ^                    │                                        │
//!  └── answer ──────────┴── acknowledged / rejected <── next tick: TickContext::previous
//! ```
//! An operator is answered only once the group carrying the request's consequence committed
//! (or with a clear error after [`REQUEST_TIMEOUT`]); a dropped group sends the request
//! back through the owner's queues. Effects run on blocking threads, fed from a bounded
//! channel; what does not fit waits in a backlog where sink checkpoints coalesce per
//! changefeed.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rcdc_reactor::{RawKeys, Reactor, TickContext, TickOutput};
use rcdc_state::model::ChangeFeedInfo;
use rcdc_state::{ChangefeedId, GlobalState, Patch, TableId, Ts};
use tokio::sync::{mpsc, oneshot};

use super::gc::{SafePointResult, UpdateSafePoint};
use super::metrics::OwnerMetrics;
use super::tick::{Owner, OwnerEffect, OwnerEffectResult, OwnerInput, OwnerOutput, OwnerRequest};

/// What the owner needs from a changefeed's upstream.
pub trait OwnerUpstream: Send + Sync + 'static {
    /// The tables the changefeed replicates at `at` (after its filter).
    fn list_tables(
        &self,
        changefeed: &ChangefeedId,
        info: &ChangeFeedInfo,
        at: Ts,
    ) -> Result<BTreeSet<TableId>, String>;
    /// The first DDL after `after` (if any) and how far the upstream looked (its now).
    fn next_ddl(
        &self,
        changefeed: &ChangefeedId,
        info: &ChangeFeedInfo,
        after: Ts,
    ) -> Result<(Option<Ts>, Ts), String>;
    /// Sets the service GC safe point on the upstream `update.upstream` names (empty: the
    /// default upstream); returns that upstream's minimum safe point.
    fn update_gc_safe_point(&self, update: &UpdateSafePoint) -> Result<Ts, String>;
    /// Records the changefeed checkpoint in its sink.
    fn write_sink_checkpoint(
        &self,
        changefeed: &ChangefeedId,
        info: &ChangeFeedInfo,
        checkpoint: Ts,
    ) -> Result<(), String>;
}

/// An effect with the changefeed info it needs, for the executor.
#[derive(Debug)]
pub struct Effect {
    /// The effect.
    pub effect: OwnerEffect,
    /// The changefeed's info, for table listings.
    pub info: Option<ChangeFeedInfo>,
}

/// How long an operator waits for the owner to confirm a request by a commit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Effects in flight to the executor; more wait in the reactor's backlog.
const EFFECT_QUEUE: usize = 256;

/// What the API hands to the owner.
#[derive(Debug)]
enum Command {
    /// A request for `Owner::tick`, answered once it committed or was refused.
    Request(OwnerRequest, oneshot::Sender<Result<(), String>>),
    /// Step down: the owner worker finishes and the capture campaigns again.
    Resign,
}

/// Why the owner did not take a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// This capture is no longer the owner (the caller should find the new one).
    #[error("this capture is not the owner")]
    NotOwner,
    /// The owner refused the request (e.g. an unknown changefeed or capture).
    #[error("{0}")]
    Rejected(String),
    /// The owner took the request but could not confirm it in time (etcd unreachable, or
    /// ownership changing): it may still take effect.
    #[error("the owner did not confirm {request} within {waited:?}; it may still take effect (check the changefeed's state)")]
    Unconfirmed {
        /// The request, for the message.
        request: String,
        /// How long the caller waited.
        waited: Duration,
    },
}

/// Sends operator requests to the running owner (the API's handle).
#[derive(Clone, Debug)]
pub struct OwnerHandle(mpsc::UnboundedSender<Command>);

impl OwnerHandle {
    /// Queues a request and waits until it took effect (the group carrying it committed),
    /// was refused with the owner's reason, or [`REQUEST_TIMEOUT`] passed.
    pub async fn request(&self, request: OwnerRequest) -> Result<(), RequestError> {
        self.request_within(request, REQUEST_TIMEOUT).await
    }

    /// [`Self::request`] with a given deadline.
    pub async fn request_within(
        &self,
        request: OwnerRequest,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        let (tx, rx) = oneshot::channel();
        let described = format!("{request:?}");
        self.0
            .send(Command::Request(request, tx))
            .map_err(|_| RequestError::NotOwner)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(why))) => Err(RequestError::Rejected(why)),
            // The owner stopped before confirming: it may or may not have acted.
            Ok(Err(_)) | Err(_) => Err(RequestError::Unconfirmed {
                request: described,
                waited: timeout,
            }),
        }
    }

    /// Asks the owner to step down; false if it already has.
    pub fn resign(&self) -> bool {
        self.0.send(Command::Resign).is_ok()
    }

    /// Whether the owner behind this handle still runs.
    pub fn is_alive(&self) -> bool {
        !self.0.is_closed()
    }
}

/// The owner reactor driven by the capture's owner EtcdWorker.
pub struct OwnerReactor {
    owner: Owner,
    commands: mpsc::UnboundedReceiver<Command>,
    results: mpsc::UnboundedReceiver<OwnerEffectResult>,
    effects: mpsc::Sender<Effect>,
    /// Effects the bounded channel had no room for, oldest first.
    backlog: VecDeque<Effect>,
    /// Callers waiting for their request to take effect, oldest first.
    waiting: Vec<(OwnerRequest, oneshot::Sender<Result<(), String>>)>,
    metrics: OwnerMetrics,
    recording: Option<crate::record::Recording>,
}

impl OwnerReactor {
    /// Builds the adapter and the executor task (spawned on the current runtime); the
    /// executor ends when the adapter is dropped.
    pub fn spawn(owner: Owner, upstream: Arc<dyn OwnerUpstream>) -> (Self, OwnerHandle) {
        let (req_tx, commands) = mpsc::unbounded_channel();
        let (res_tx, results) = mpsc::unbounded_channel();
        let (effects, eff_rx) = mpsc::channel(EFFECT_QUEUE);
        tokio::spawn(execute(eff_rx, upstream, res_tx));
        (
            Self {
                owner,
                commands,
                results,
                effects,
                backlog: VecDeque::new(),
                waiting: Vec::new(),
                metrics: OwnerMetrics::default(),
                recording: None,
            },
            OwnerHandle(req_tx),
        )
    }

    /// Answers the waiting callers the tick decided about; identical requests are matched
    /// oldest first.
    fn answer(&mut self, out: &OwnerOutput) {
        let verdicts = out
            .rejected
            .iter()
            .map(|(r, why)| (r, Err(why.clone())))
            .chain(out.acknowledged.iter().map(|r| (r, Ok(()))));
        for (request, verdict) in verdicts {
            if let Some(i) = self.waiting.iter().position(|(r, _)| r == request) {
                let (_, reply) = self.waiting.remove(i);
                let _ = reply.send(verdict);
            }
        }
        // Callers that gave up need no answer.
        self.waiting.retain(|(_, reply)| !reply.is_closed());
    }

    /// Queues effects for the executor: into the bounded channel while it has room, the
    /// rest into the backlog, where a newer sink checkpoint replaces an older one of the
    /// same changefeed (only the latest matters).
    fn dispatch(&mut self, state: &GlobalState, effects: Vec<OwnerEffect>) {
        for effect in effects {
            let info = match &effect {
                OwnerEffect::ListTables { changefeed, .. }
                | OwnerEffect::FetchDdl { changefeed, .. }
                | OwnerEffect::WriteSinkCheckpoint { changefeed, .. } => {
                    state.changefeed(changefeed).and_then(|c| c.info.clone())
                }
                OwnerEffect::UpdateGcSafePoint(_) => None,
            };
            if let OwnerEffect::WriteSinkCheckpoint { changefeed, .. } = &effect {
                self.backlog.retain(|e| {
                    !matches!(&e.effect, OwnerEffect::WriteSinkCheckpoint { changefeed: c, .. } if c == changefeed)
                });
            }
            self.backlog.push_back(Effect { effect, info });
        }
        while let Some(e) = self.backlog.pop_front() {
            match self.effects.try_send(e) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(e)) => {
                    self.backlog.push_front(e);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.backlog.clear(); // the executor is gone with the owner
                    break;
                }
            }
        }
    }
}

/// The indices of the previous tick's groups that did not commit.
fn dropped_indices(ctx: &TickContext) -> Vec<usize> {
    ctx.dropped().map(|(i, _)| i).collect()
}

impl OwnerReactor {
    /// Records every batch of updates and every tick while the recording's switch is on
    /// (`cdc server --record`, or the HTTP API).
    pub fn with_recording(mut self, recording: crate::record::Recording) -> Self {
        self.recording = Some(recording);
        self
    }
}

impl Reactor for OwnerReactor {
    type State = GlobalState;
    type Patch = Patch;

    fn observe_updates(&mut self, updates: &[(String, Option<Vec<u8>>)], keys: &dyn RawKeys) {
        if let Some(r) = self.recording.as_mut() {
            let owner = &self.owner;
            r.before_tick(updates, keys, &|| serde_json::to_value(owner));
        }
    }

    fn tick(&mut self, state: &GlobalState, ctx: &TickContext) -> TickOutput<Patch> {
        let mut input = OwnerInput {
            now_ms: ctx.now_ms,
            dropped: dropped_indices(ctx),
            ..Default::default()
        };
        let mut resign = false;
        while let Ok(c) = self.commands.try_recv() {
            match c {
                Command::Request(r, reply) => {
                    input.requests.push(r.clone());
                    self.waiting.push((r, reply));
                }
                Command::Resign => resign = true,
            }
        }
        while let Ok(r) = self.results.try_recv() {
            input.results.push(r);
        }
        let out = self.owner.tick(state, &input);
        if let Some(r) = self.recording.as_mut() {
            r.after_tick(&input, &out);
        }
        self.answer(&out);
        self.metrics.observe(state, ctx.now_ms);
        for (request, why) in &out.rejected {
            tracing::warn!(?request, reason = %why, "owner request rejected");
        }
        let OwnerOutput {
            groups, effects, ..
        } = out;
        self.dispatch(state, effects);
        if resign {
            tracing::info!("owner resigning on request");
            self.metrics.clear();
        }
        TickOutput {
            groups: groups.into_iter().map(Into::into).collect(),
            // Finishing the owner worker makes the capture resign and campaign again.
            finished: resign,
        }
    }
}

/// Runs effects one at a time on the blocking pool (upstream calls and sink fsyncs block),
/// so they never hold the async threads that keep the session and the workers alive.
async fn execute(
    mut rx: mpsc::Receiver<Effect>,
    upstream: Arc<dyn OwnerUpstream>,
    results: mpsc::UnboundedSender<OwnerEffectResult>,
) {
    while let Some(effect) = rx.recv().await {
        // The reactor is gone (deposed, resigned): effects still buffered were decided by an
        // owner that no longer holds the fence, and must not run after its successor's.
        if results.is_closed() {
            return;
        }
        let failed = failure_of(&effect.effect);
        let upstream = upstream.clone();
        let result = match tokio::task::spawn_blocking(move || run_effect(effect, &*upstream)).await
        {
            Ok(Some(result)) => result,
            Ok(None) => continue,
            Err(e) => {
                // A result is owed: without one, a table listing or DDL query would stay "in
                // flight" forever.
                tracing::error!(error = %e, "owner effect panicked");
                match failed(format!("the effect panicked: {e}")) {
                    Some(result) => result,
                    None => continue,
                }
            }
        };
        if results.send(result).is_err() {
            return; // the owner is gone
        }
    }
}

/// The failure result an effect reports if it cannot run at all.
fn failure_of(effect: &OwnerEffect) -> impl FnOnce(String) -> Option<OwnerEffectResult> {
    let effect = effect.clone();
    move |error| match effect {
        OwnerEffect::ListTables { changefeed, .. } => {
            Some(OwnerEffectResult::TablesFailed { changefeed, error })
        }
        OwnerEffect::FetchDdl { changefeed, .. } => {
            Some(OwnerEffectResult::DdlFailed { changefeed, error })
        }
        OwnerEffect::WriteSinkCheckpoint { changefeed, .. } => {
            Some(OwnerEffectResult::SinkCheckpointFailed { changefeed, error })
        }
        OwnerEffect::UpdateGcSafePoint(update) => Some(OwnerEffectResult::GcSafePoint(
            SafePointResult::answer(&update, Err(error)),
        )),
    }
}

/// One effect against the upstream; `None` when it has nothing to report.
fn run_effect(
    Effect { effect, info }: Effect,
    upstream: &dyn OwnerUpstream,
) -> Option<OwnerEffectResult> {
    Some({
        match effect {
            OwnerEffect::ListTables { changefeed, at } => {
                let listed = info
                    .ok_or_else(|| "the changefeed has no info".to_owned())
                    .and_then(|info| upstream.list_tables(&changefeed, &info, at));
                match listed {
                    Ok(tables) => OwnerEffectResult::Tables { changefeed, tables },
                    Err(error) => OwnerEffectResult::TablesFailed { changefeed, error },
                }
            }
            OwnerEffect::FetchDdl { changefeed, after } => {
                // The DDL's IO side, not the tick: ticks stay deterministic and replayable.
                fail::fail_point!("owner-ddl", |m: Option<String>| {
                    Some(OwnerEffectResult::DdlFailed {
                        changefeed: changefeed.clone(),
                        error: format!(
                            "failpoint owner-ddl: {}",
                            m.as_deref().unwrap_or("injected")
                        ),
                    })
                });
                let found = info
                    .ok_or_else(|| "the changefeed has no info".to_owned())
                    .and_then(|info| upstream.next_ddl(&changefeed, &info, after));
                match found {
                    Ok((next, upto)) => OwnerEffectResult::Ddl {
                        changefeed,
                        after,
                        next,
                        upto,
                    },
                    Err(error) => OwnerEffectResult::DdlFailed { changefeed, error },
                }
            }
            OwnerEffect::WriteSinkCheckpoint {
                changefeed,
                checkpoint,
            } => {
                let written = info
                    .ok_or_else(|| "the changefeed has no info".to_owned())
                    .and_then(|info| {
                        upstream.write_sink_checkpoint(&changefeed, &info, checkpoint)
                    });
                match written {
                    Ok(()) => return None,
                    Err(error) => OwnerEffectResult::SinkCheckpointFailed { changefeed, error },
                }
            }
            OwnerEffect::UpdateGcSafePoint(update) => {
                let answer = upstream.update_gc_safe_point(&update);
                OwnerEffectResult::GcSafePoint(SafePointResult::answer(&update, answer))
            }
        }
    })
}

#[cfg(test)]
mod tests;
