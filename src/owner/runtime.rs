//! The owner's IO side: the EtcdWorker adapter around [`Owner`] and the executor of its
//! effects.
//!
//! The adapter drains operator requests and effect results that arrived since the last tick
//! (never waiting), runs the pure [`Owner::tick`], hands effects to the executor and returns
//! the patch groups to the worker. The executor talks to the upstream through the narrow
//! [`OwnerUpstream`] seam and sends results back for the next tick.

use std::collections::BTreeSet;
use std::sync::Arc;

use rcdc_reactor::{RawKeys, Reactor, TickContext, TickOutput};
use rcdc_state::model::ChangeFeedInfo;
use rcdc_state::{ChangefeedId, GlobalState, Patch, TableId, Ts};
use tokio::sync::{mpsc, oneshot};

use super::gc::{SafePointResult, UpdateSafePoint};
use super::metrics::OwnerMetrics;
use super::tick::{Owner, OwnerEffect, OwnerEffectResult, OwnerInput, OwnerRequest};

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

/// What the API hands to the owner.
#[derive(Debug)]
enum Command {
    /// A request for `Owner::tick`, answered after the tick that saw it.
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
}

/// Sends operator requests to the running owner (the API's handle).
#[derive(Clone, Debug)]
pub struct OwnerHandle(mpsc::UnboundedSender<Command>);

impl OwnerHandle {
    /// Queues a request for the next tick and waits for that tick's verdict: accepted (the
    /// owner acts on it) or rejected with the owner's reason.
    pub async fn request(&self, request: OwnerRequest) -> Result<(), RequestError> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Command::Request(request, tx))
            .map_err(|_| RequestError::NotOwner)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(RequestError::Rejected(why)),
            Err(_) => Err(RequestError::NotOwner), // the owner stopped before its tick
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
    effects: mpsc::UnboundedSender<Effect>,
    metrics: OwnerMetrics,
    recording: Option<crate::record::Recording>,
}

impl OwnerReactor {
    /// Builds the adapter and the executor task (spawned on the current runtime); the
    /// executor ends when the adapter is dropped.
    pub fn spawn(owner: Owner, upstream: Arc<dyn OwnerUpstream>) -> (Self, OwnerHandle) {
        let (req_tx, commands) = mpsc::unbounded_channel();
        let (res_tx, results) = mpsc::unbounded_channel();
        let (effects, eff_rx) = mpsc::unbounded_channel();
        tokio::spawn(execute(eff_rx, upstream, res_tx));
        (
            Self {
                owner,
                commands,
                results,
                effects,
                metrics: OwnerMetrics::default(),
                recording: None,
            },
            OwnerHandle(req_tx),
        )
    }
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
            ..Default::default()
        };
        let mut waiting = Vec::new();
        let mut resign = false;
        while let Ok(c) = self.commands.try_recv() {
            match c {
                Command::Request(r, reply) => {
                    input.requests.push(r.clone());
                    waiting.push((r, reply));
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
        // Answer each waiting caller: rejected requests with the owner's reason, the rest
        // accepted. Identical requests in one tick are matched in order.
        let mut rejected = out.rejected.clone();
        for (request, reply) in waiting {
            let verdict = match rejected.iter().position(|(r, _)| *r == request) {
                Some(i) => Err(rejected.remove(i).1),
                None => Ok(()),
            };
            let _ = reply.send(verdict);
        }
        self.metrics.observe(state, ctx.now_ms);
        for (request, why) in &out.rejected {
            tracing::warn!(?request, reason = %why, "owner request rejected");
        }
        for effect in out.effects {
            let info = match &effect {
                OwnerEffect::ListTables { changefeed, .. }
                | OwnerEffect::FetchDdl { changefeed, .. }
                | OwnerEffect::WriteSinkCheckpoint { changefeed, .. } => {
                    state.changefeed(changefeed).and_then(|c| c.info.clone())
                }
                OwnerEffect::UpdateGcSafePoint(_) => None,
            };
            let _ = self.effects.send(Effect { effect, info });
        }
        if resign {
            tracing::info!("owner resigning on request");
            self.metrics.clear();
        }
        TickOutput {
            groups: out.groups.into_iter().map(Into::into).collect(),
            // Finishing the owner worker makes the capture resign and campaign again.
            finished: resign,
        }
    }
}

async fn execute(
    mut rx: mpsc::UnboundedReceiver<Effect>,
    upstream: Arc<dyn OwnerUpstream>,
    results: mpsc::UnboundedSender<OwnerEffectResult>,
) {
    while let Some(Effect { effect, info }) = rx.recv().await {
        let result = match effect {
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
                    Ok(()) => continue,
                    Err(error) => OwnerEffectResult::SinkCheckpointFailed { changefeed, error },
                }
            }
            OwnerEffect::UpdateGcSafePoint(update) => {
                let answer = upstream.update_gc_safe_point(&update);
                OwnerEffectResult::GcSafePoint(SafePointResult::answer(&update, answer))
            }
        };
        if results.send(result).is_err() {
            return; // the owner is gone
        }
    }
}
