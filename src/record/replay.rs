//! `cdc replay`: re-runs a recorded owner or processor manager offline and checks every tick
//! reproduces.

use std::io::{BufRead, Write};
use std::path::Path;

use rcdc_state::{Edit, GlobalState, KeyLayout};

use super::processor::RecordedProcessorInput;
use super::{Line, RecordedKv, Role, FORMAT, VERSION};
use crate::owner::tick::{Owner, OwnerEffect, OwnerInput, OwnerOutput};
use crate::processor::tick::{
    PipelineCommand, Pipelines, ProcessorInput, ProcessorManager, ProcessorOutput,
};

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The recording.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not a recording line.
    #[error("{path}:{line}: not a recording line: {error}")]
    Format {
        /// The recording.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        error: String,
    },
    /// A tick decided differently from the recording.
    #[error("{path}: tick {tick} (line {line}) differs from the recording:\n{diff}")]
    Diverged {
        /// The recording.
        path: String,
        /// Tick number.
        tick: u64,
        /// Line number.
        line: usize,
        /// A readable diff of the outputs.
        diff: String,
    },
}

/// What a replay checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Ticks re-run and matched.
    pub ticks: u64,
    /// Key updates applied.
    pub updates: u64,
    /// Which reactor it recorded.
    pub role: Option<Role>,
    /// It started mid-life (a `resume` line).
    pub resumed: bool,
    /// Why it ended, if it says so (an `end` line).
    pub ended: Option<String>,
}

/// A reactor being replayed.
enum Replayer {
    Owner(Box<Owner>),
    Processor {
        manager: ProcessorManager,
        pipelines: Pipelines,
    },
}

impl Replayer {
    fn fresh(role: Role, capture: &str, config: serde_json::Value) -> Result<Self, String> {
        Ok(match role {
            Role::Owner => Replayer::Owner(Box::new(Owner::new(
                serde_json::from_value(config).map_err(|e| format!("owner config: {e}"))?,
            ))),
            Role::Processor => Replayer::Processor {
                manager: ProcessorManager::new(
                    capture.into(),
                    serde_json::from_value(config).map_err(|e| format!("processor config: {e}"))?,
                ),
                pipelines: Pipelines::new(),
            },
        })
    }

    fn resume(&mut self, memory: serde_json::Value) -> Result<(), String> {
        match self {
            Replayer::Owner(o) => {
                *o = serde_json::from_value(memory).map_err(|e| format!("owner memory: {e}"))?
            }
            Replayer::Processor { manager, .. } => {
                *manager =
                    serde_json::from_value(memory).map_err(|e| format!("processor memory: {e}"))?
            }
        }
        Ok(())
    }

    /// Runs tick `n` on `input`; returns the replayed output as JSON.
    fn tick(
        &mut self,
        state: &GlobalState,
        n: u64,
        input: serde_json::Value,
        dump: Option<&mut dyn Write>,
    ) -> Result<serde_json::Value, String> {
        let encode = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| format!("encoding the replayed output: {e}"))
        };
        match self {
            Replayer::Owner(o) => {
                let input: OwnerInput =
                    serde_json::from_value(input).map_err(|e| format!("owner input: {e}"))?;
                let out = o.tick(state, &input);
                if let Some(w) = dump {
                    let _ = write_decisions(w, n, &input, &out);
                }
                encode(serde_json::to_value(&out))
            }
            Replayer::Processor { manager, pipelines } => {
                let input: RecordedProcessorInput =
                    serde_json::from_value(input).map_err(|e| format!("processor input: {e}"))?;
                input.apply_to(pipelines);
                let out = manager.tick(
                    state,
                    &ProcessorInput {
                        now_ms: input.now_ms,
                        tables: pipelines,
                    },
                );
                if let Some(w) = dump {
                    let _ = write_processor_decisions(w, n, &input, &out);
                }
                encode(serde_json::to_value(&out))
            }
        }
    }
}

/// Replays one recording; with `dump`, writes each tick's decisions there.
pub fn replay(path: &Path, mut dump: Option<&mut dyn Write>) -> Result<ReplayReport, ReplayError> {
    let name = path.display().to_string();
    let io = |source| ReplayError::Io {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut report = ReplayReport::default();
    let mut reactor: Option<(Replayer, GlobalState)> = None;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let text = line.map_err(io)?;
        if text.trim().is_empty() {
            continue;
        }
        let bad = |error: String| ReplayError::Format {
            path: name.clone(),
            line: line_no,
            error,
        };
        let parsed: Line = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let started = |r: &mut Option<(Replayer, GlobalState)>, what: &str| {
            r.take()
                .ok_or_else(|| bad(format!("{what} before the header")))
        };
        match parsed {
            Line::Header {
                format,
                version,
                role,
                capture,
                cluster_prefix,
                config,
            } => {
                if format != FORMAT || version != VERSION {
                    return Err(bad(format!(
                        "unsupported recording {format} v{version} (this build reads {FORMAT} v{VERSION})"
                    )));
                }
                if reactor.is_some() {
                    return Err(bad("a second header".into()));
                }
                report.role = Some(role);
                reactor = Some((
                    Replayer::fresh(role, &capture, config).map_err(bad)?,
                    GlobalState::new(KeyLayout::new(&cluster_prefix)),
                ));
            }
            Line::Resume { memory, kvs } => {
                let (mut r, mut state) = started(&mut reactor, "resume")?;
                if report.ticks > 0 || report.updates > 0 {
                    return Err(bad("resume after updates or ticks".into()));
                }
                r.resume(memory).map_err(bad)?;
                for kv in &kvs {
                    state.apply(
                        &kv.key,
                        Some(&value_of(kv).map_err(&bad)?.unwrap_or_default()),
                    );
                }
                // The live state's change log holds only what the next updates change.
                state.clear_changes();
                report.resumed = true;
                reactor = Some((r, state));
            }
            Line::Updates { kvs } => {
                let (r, mut state) = started(&mut reactor, "updates")?;
                for kv in &kvs {
                    state.apply(&kv.key, value_of(kv).map_err(&bad)?.as_deref());
                    report.updates += 1;
                }
                reactor = Some((r, state));
            }
            Line::Tick { n, input, output } => {
                let (mut r, mut state) = started(&mut reactor, "a tick")?;
                let replayed = r
                    .tick(
                        &state,
                        n,
                        input,
                        dump.as_mut().map(|w| &mut **w as &mut dyn Write),
                    )
                    .map_err(&bad)?;
                state.clear_changes();
                // The recording masked its secrets; so must what replay recomputed from it.
                let mut replayed = replayed;
                super::secrets::mask_secrets(&mut replayed);
                let (want, got) = (to_pretty(&output), to_pretty(&replayed));
                if want != got {
                    return Err(ReplayError::Diverged {
                        path: name.clone(),
                        tick: n,
                        line: line_no,
                        diff: diff(&want, &got),
                    });
                }
                report.ticks += 1;
                reactor = Some((r, state));
            }
            Line::End { reason } => {
                report.ended = Some(reason);
                break;
            }
        }
    }
    Ok(report)
}

fn value_of(kv: &RecordedKv) -> Result<Option<Vec<u8>>, String> {
    match &kv.value {
        Some(v) => v
            .bytes()
            .map(Some)
            .ok_or_else(|| format!("bad hex value of {}", kv.key)),
        None => Ok(None),
    }
}

fn to_pretty(out: &serde_json::Value) -> String {
    serde_json::to_string_pretty(out).unwrap_or_else(|e| format!("<unserializable: {e}>"))
}

/// The first differing line with three lines of context, `-` recorded, `+` replayed.
fn diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let first = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    let from = first.saturating_sub(3);
    let mut out = String::new();
    for l in &w[from..first] {
        out.push_str(&format!("  {l}\n"));
    }
    for l in w.iter().skip(first).take(4) {
        out.push_str(&format!("- {l}\n"));
    }
    for l in g.iter().skip(first).take(4) {
        out.push_str(&format!("+ {l}\n"));
    }
    out
}

/// One tick in words: inputs, then each decision (`cdc replay --dump`, the dry run).
pub fn write_decisions(
    w: &mut dyn Write,
    n: u64,
    input: &OwnerInput,
    out: &OwnerOutput,
) -> std::io::Result<()> {
    writeln!(
        w,
        "tick {n} at {} ms: visited {} changefeed(s)",
        input.now_ms, out.visited
    )?;
    for r in &input.requests {
        writeln!(w, "  request  {r:?}")?;
    }
    for r in &input.results {
        writeln!(w, "  result   {r:?}")?;
    }
    if !input.dropped.is_empty() {
        writeln!(
            w,
            "  dropped  groups {:?} of the previous tick",
            input.dropped
        )?;
    }
    for r in &out.acknowledged {
        writeln!(w, "  done     {r:?}")?;
    }
    for g in &out.groups {
        writeln!(w, "  write    {}", g.label)?;
        for p in &g.patches {
            writeln!(w, "           {} {}", p.key, describe(&p.edit))?;
        }
    }
    for e in &out.effects {
        let what = match e {
            OwnerEffect::ListTables { changefeed, at } => {
                format!("list tables of {changefeed} at {at}")
            }
            OwnerEffect::FetchDdl { changefeed, after } => {
                format!("ask for {changefeed}'s next DDL after {after}")
            }
            OwnerEffect::UpdateGcSafePoint(u) => {
                format!(
                    "set GC safe point {} on {} (ttl {} s)",
                    u.safe_point,
                    crate::owner::gc::describe_upstream(&u.upstream),
                    u.ttl_secs
                )
            }
            OwnerEffect::WriteSinkCheckpoint {
                changefeed,
                checkpoint,
            } => {
                format!("record checkpoint {checkpoint} in {changefeed}'s sink")
            }
        };
        writeln!(w, "  effect   {what}")?;
    }
    for (r, why) in &out.rejected {
        writeln!(w, "  refused  {r:?}: {why}")?;
    }
    Ok(())
}

fn describe(edit: &Edit) -> String {
    match edit {
        Edit::Delete => "deleted".into(),
        Edit::Put { .. } | Edit::Create { .. } => "written".into(),
        other => format!("{other:?}"),
    }
}

/// One processor tick in words: pipeline reports, commands, writes.
pub fn write_processor_decisions(
    w: &mut dyn Write,
    n: u64,
    input: &RecordedProcessorInput,
    out: &ProcessorOutput,
) -> std::io::Result<()> {
    writeln!(
        w,
        "tick {n} at {} ms: {} pipeline report(s) changed, {} gone",
        input.now_ms,
        input.changed.len(),
        input.gone.len()
    )?;
    for p in &input.changed {
        writeln!(
            w,
            "  report   {}/{} {:?} resolved {} checkpoint {}",
            p.changefeed, p.table, p.state, p.resolved_ts, p.checkpoint_ts
        )?;
    }
    for g in &input.gone {
        writeln!(w, "  report   {}/{} gone", g.changefeed, g.table)?;
    }
    for c in &out.commands {
        let what = match c {
            PipelineCommand::Start {
                changefeed,
                table,
                start_ts,
            } => format!("start {changefeed}/{table} after {start_ts}"),
            PipelineCommand::StopAt {
                changefeed,
                table,
                boundary_ts,
            } => format!("stop {changefeed}/{table} once its checkpoint reaches {boundary_ts}"),
            PipelineCommand::Cancel { changefeed, table } => {
                format!("cancel {changefeed}/{table}")
            }
        };
        writeln!(w, "  command  {what}")?;
    }
    for g in &out.groups {
        writeln!(w, "  write    {}", g.label)?;
        for p in &g.patches {
            writeln!(w, "           {} {}", p.key, describe(&p.edit))?;
        }
    }
    Ok(())
}
