//! The processor's IO side: the EtcdWorker adapter around [`ProcessorManager`] and the
//! supervisor that runs table pipelines on its commands.
//!
//! ```text
//! EtcdWorker ─tick─> ProcessorReactor ──(snapshot of Pipelines)──> ProcessorManager::tick
//!                          │ commands (+ changefeed info for starts)
//!                          v
//!                    supervise(): spawn / stop-at / cancel  run_table_pipeline tasks
//!                          │                                      │ progress
//!                          └──────────── Arc<Mutex<Pipelines>> <──┘
//! ```
//! The adapter never waits: it reads the progress map the tasks keep current and hands
//! commands to the supervisor through a channel. The adapter and the supervisor run on the
//! control plane's runtime; the pipeline tasks, and every pull and sink open, on the
//! data-plane runtime's threads (see [`crate::pipeline::executor`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rcdc_reactor::{RawKeys, Reactor, TickContext, TickOutput};
use rcdc_state::model::ChangeFeedInfo;
use rcdc_state::{ChangefeedId, GlobalState, Patch, TableId, Ts};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::tick::{
    PipelineCommand, Pipelines, ProcessorInput, ProcessorManager, TablePipelineState,
};
use crate::pipeline::executor::PipelineExecutor;
use crate::pipeline::table::{run_table_pipeline, ProgressSlot, TablePipelineConfig, TableSource};
use crate::record::processor::RecordedProcessorInput;
use crate::sink::TableSink;

/// Builds a table's source and sink from its changefeed's info.
pub trait PipelineFactory: Send + Sync + 'static {
    /// The table's change source (the changefeed's upstream).
    fn source(
        &self,
        changefeed: &ChangefeedId,
        info: &ChangeFeedInfo,
        table: TableId,
    ) -> Result<Box<dyn TableSource>, String>;
    /// The table's sink (the changefeed's sink URI).
    fn sink(
        &self,
        changefeed: &ChangefeedId,
        info: &ChangeFeedInfo,
        table: TableId,
    ) -> Result<Box<dyn TableSink>, String>;
}

/// A command for the supervisor; starts carry the changefeed info they need.
#[derive(Debug)]
pub struct Command {
    /// What to do.
    pub command: PipelineCommand,
    /// The changefeed's info, for starts.
    pub info: Option<ChangeFeedInfo>,
}

/// The processor-manager reactor driven by the capture's processor EtcdWorker.
pub struct ProcessorReactor {
    manager: ProcessorManager,
    pipelines: Arc<Mutex<Pipelines>>,
    commands: mpsc::UnboundedSender<Command>,
    metrics: super::metrics::ProcessorMetrics,
    recording: Option<crate::record::Recording>,
    /// The pipeline reports as of the recording file's previous tick (ticks record deltas).
    recorded: Pipelines,
}

impl ProcessorReactor {
    /// An adapter feeding `commands` to a supervisor that keeps `pipelines` current.
    pub fn new(
        manager: ProcessorManager,
        pipelines: Arc<Mutex<Pipelines>>,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self {
            manager,
            pipelines,
            commands,
            metrics: Default::default(),
            recording: None,
            recorded: Pipelines::new(),
        }
    }

    /// Records every batch of updates and every tick while the recording's switch is on
    /// (`cdc server --record`, or the HTTP API).
    pub fn with_recording(mut self, recording: crate::record::Recording) -> Self {
        self.recording = Some(recording);
        self
    }
}

impl Reactor for ProcessorReactor {
    type State = GlobalState;
    type Patch = Patch;

    fn observe_updates(&mut self, updates: &[(String, Option<Vec<u8>>)], keys: &dyn RawKeys) {
        if let Some(r) = self.recording.as_mut() {
            let manager = &self.manager;
            if r.before_tick(updates, keys, &|| serde_json::to_value(manager)) {
                self.recorded.clear();
            }
        }
    }

    fn tick(&mut self, state: &GlobalState, ctx: &TickContext) -> TickOutput<Patch> {
        // A copy, so the tick sees one consistent view while tasks keep reporting.
        let tables = self.pipelines.lock().clone();
        let out = self.manager.tick(
            state,
            &ProcessorInput {
                now_ms: ctx.now_ms,
                tables: &tables,
            },
        );
        let mut recorded = false;
        if let Some(r) = self.recording.as_mut() {
            recorded = r.is_active();
            if recorded {
                let input = RecordedProcessorInput::delta(ctx.now_ms, &self.recorded, &tables);
                r.after_tick(&input, &out);
            } else {
                r.after_tick(&(), &());
            }
        }
        for command in out.commands {
            let info = match &command {
                PipelineCommand::Start { changefeed, .. } => {
                    state.changefeed(changefeed).and_then(|c| c.info.clone())
                }
                _ => None,
            };
            // A closed channel means the supervisor is gone with the capture; nothing to do.
            let _ = self.commands.send(Command { command, info });
        }
        self.metrics
            .observe(self.manager.capture(), state, &tables, ctx.now_ms);
        if recorded {
            // The next recorded tick's delta is taken against this view.
            self.recorded = tables;
        }
        TickOutput {
            groups: out.groups.into_iter().map(Into::into).collect(),
            finished: false,
        }
    }
}

/// A pipeline run the supervisor started. Dropping it aborts the task, so pipelines on the
/// data-plane runtime never outlive their supervisor (a capture whose tasks are dropped).
struct Running {
    task: JoinHandle<()>,
    stop_at: watch::Sender<Option<Ts>>,
    slot: ProgressSlot,
}

impl Running {
    /// Ends the run: its reports stop (and with `remove` its entry goes) before the abort,
    /// so a pull still in flight cannot bring the entry back.
    fn end(self, remove: bool) {
        self.slot.retire(remove);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Executes pipeline commands until the channel closes, then cancels every pipeline.
/// Pipelines, and opening their sources and sinks, run on `executor`, never on the
/// supervisor's (the control plane's) threads.
pub async fn supervise(
    mut commands: mpsc::UnboundedReceiver<Command>,
    factory: Arc<dyn PipelineFactory>,
    pipelines: Arc<Mutex<Pipelines>>,
    config: TablePipelineConfig,
    executor: PipelineExecutor,
) {
    let mut running: BTreeMap<(ChangefeedId, TableId), Running> = BTreeMap::new();
    while let Some(Command { command, info }) = commands.recv().await {
        match command {
            PipelineCommand::Start {
                changefeed,
                table,
                start_ts,
            } => {
                let key = (changefeed, table);
                if let Some(old) = running.remove(&key) {
                    old.end(false); // the new run reports over its entry
                }
                let (stop_at, stop_rx) = watch::channel(None);
                let slot = ProgressSlot::new(pipelines.clone(), key.clone());
                let task = executor.spawn(open_and_run(
                    factory.clone(),
                    info,
                    start_ts,
                    slot.clone(),
                    stop_rx,
                    config.clone(),
                    executor.clone(),
                ));
                running.insert(
                    key,
                    Running {
                        task,
                        stop_at,
                        slot,
                    },
                );
            }
            PipelineCommand::StopAt {
                changefeed,
                table,
                boundary_ts,
            } => {
                if let Some(r) = running.get(&(changefeed, table)) {
                    let _ = r.stop_at.send(Some(boundary_ts));
                }
            }
            PipelineCommand::Cancel { changefeed, table } => {
                let key = (changefeed, table);
                match running.remove(&key) {
                    Some(r) => r.end(true),
                    None => {
                        pipelines.lock().remove(&key);
                    }
                }
            }
        }
    }
    for (_, r) in running {
        r.end(false);
    }
}

/// Opens a table's source and sink (blocking work: a file sink creates directories and
/// files), then runs its pipeline.
async fn open_and_run(
    factory: Arc<dyn PipelineFactory>,
    info: Option<ChangeFeedInfo>,
    start_ts: Ts,
    slot: ProgressSlot,
    stop_at: watch::Receiver<Option<Ts>>,
    config: TablePipelineConfig,
    executor: PipelineExecutor,
) {
    let (changefeed, table) = slot.key().clone();
    let open = move || -> Result<_, String> {
        let info = info.ok_or_else(|| format!("changefeed {changefeed} has no info"))?;
        Ok((
            factory.source(&changefeed, &info, table)?,
            factory.sink(&changefeed, &info, table)?,
        ))
    };
    let opened = match executor.run_blocking(open).await {
        Ok(opened) => opened,
        Err(e) => Err(e.to_string()),
    };
    match opened {
        Ok((source, sink)) => {
            run_table_pipeline(start_ts, source, sink, slot, stop_at, config, executor).await
        }
        Err(e) => {
            // Reported as a failed pipeline: the processor records the error in its
            // TaskPosition and backs off; other changefeeds are unaffected.
            let (changefeed, table) = slot.key();
            tracing::warn!(%changefeed, %table, error = %e, "cannot start table pipeline");
            slot.report(TablePipelineState::Failed(e), start_ts, start_ts);
        }
    }
}

#[cfg(test)]
mod tests;
