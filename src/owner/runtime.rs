//! The owner's IO side: the EtcdWorker adapter around [`Owner`] and the executor of its
//! effects.
//!
//! The adapter drains operator requests and effect results that arrived since the last tick
//! (never waiting), runs the pure [`Owner::tick`], hands effects to the executor and returns
//! the patch groups to the worker. The executor talks to the upstream through the narrow
//! [`OwnerUpstream`] seam and sends results back for the next tick.

use std::collections::BTreeSet;
use std::sync::Arc;

use rcdc_reactor::{Reactor, TickContext, TickOutput};
use rcdc_state::model::ChangeFeedInfo;
use rcdc_state::{ChangefeedId, GlobalState, Patch, TableId, Ts};
use tokio::sync::mpsc;

use super::gc::{SafePointResult, UpdateSafePoint};
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
    /// Sets the service GC safe point; returns the upstream's minimum safe point.
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

/// Sends operator requests to the owner (the API's handle).
#[derive(Clone, Debug)]
pub struct OwnerHandle(mpsc::UnboundedSender<OwnerRequest>);

impl OwnerHandle {
    /// Queues a request for the next tick; false if this capture is no longer owner.
    pub fn send(&self, request: OwnerRequest) -> bool {
        self.0.send(request).is_ok()
    }
}

/// The owner reactor driven by the capture's owner EtcdWorker.
pub struct OwnerReactor {
    owner: Owner,
    requests: mpsc::UnboundedReceiver<OwnerRequest>,
    results: mpsc::UnboundedReceiver<OwnerEffectResult>,
    effects: mpsc::UnboundedSender<Effect>,
}

impl OwnerReactor {
    /// Builds the adapter and the executor task (spawned on the current runtime); the
    /// executor ends when the adapter is dropped.
    pub fn spawn(owner: Owner, upstream: Arc<dyn OwnerUpstream>) -> (Self, OwnerHandle) {
        let (req_tx, requests) = mpsc::unbounded_channel();
        let (res_tx, results) = mpsc::unbounded_channel();
        let (effects, eff_rx) = mpsc::unbounded_channel();
        tokio::spawn(execute(eff_rx, upstream, res_tx));
        (
            Self {
                owner,
                requests,
                results,
                effects,
            },
            OwnerHandle(req_tx),
        )
    }
}

impl Reactor for OwnerReactor {
    type State = GlobalState;
    type Patch = Patch;

    fn tick(&mut self, state: &GlobalState, ctx: &TickContext) -> TickOutput<Patch> {
        let mut input = OwnerInput {
            now_ms: ctx.now_ms,
            ..Default::default()
        };
        while let Ok(r) = self.requests.try_recv() {
            input.requests.push(r);
        }
        while let Ok(r) = self.results.try_recv() {
            input.results.push(r);
        }
        let out = self.owner.tick(state, &input);
        for (request, why) in &out.rejected {
            tracing::warn!(?request, reason = %why, "owner request rejected");
        }
        for effect in out.effects {
            let info = match &effect {
                OwnerEffect::ListTables { changefeed, .. }
                | OwnerEffect::WriteSinkCheckpoint { changefeed, .. } => {
                    state.changefeed(changefeed).and_then(|c| c.info.clone())
                }
                OwnerEffect::UpdateGcSafePoint(_) => None,
            };
            let _ = self.effects.send(Effect { effect, info });
        }
        TickOutput {
            groups: out.groups.into_iter().map(Into::into).collect(),
            finished: false,
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
                OwnerEffectResult::GcSafePoint(match upstream.update_gc_safe_point(&update) {
                    Ok(min_safe_point) => SafePointResult::Updated { min_safe_point },
                    Err(e) => SafePointResult::Failed(e),
                })
            }
        };
        if results.send(result).is_err() {
            return; // the owner is gone
        }
    }
}
