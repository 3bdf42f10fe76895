//! `cdc replay`: re-runs a recorded owner offline and checks every tick reproduces.

use std::io::{BufRead, Write};
use std::path::Path;

use rcdc_state::{Edit, GlobalState, KeyLayout};

use super::{Line, FORMAT, VERSION};
use crate::owner::tick::{Owner, OwnerEffect, OwnerInput, OwnerOutput};

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
    /// The recording ended with a `truncated` line.
    pub truncated: bool,
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
    let mut owner: Option<(Owner, GlobalState)> = None;
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
        match parsed {
            Line::Header {
                format,
                version,
                role,
                cluster_prefix,
                owner_config,
                ..
            } => {
                if format != FORMAT || version != VERSION || role != "owner" {
                    return Err(bad(format!(
                        "unsupported recording {format} v{version} of role {role} (this build reads {FORMAT} v{VERSION}, owner)"
                    )));
                }
                owner = Some((
                    Owner::new(owner_config),
                    GlobalState::new(KeyLayout::new(&cluster_prefix)),
                ));
            }
            Line::Updates { kvs } => {
                let (_, state) = owner
                    .as_mut()
                    .ok_or_else(|| bad("updates before the header".into()))?;
                for kv in kvs {
                    let value = match &kv.value {
                        Some(v) => Some(
                            v.bytes()
                                .ok_or_else(|| bad(format!("bad hex value of {}", kv.key)))?,
                        ),
                        None => None,
                    };
                    state.apply(&kv.key, value.as_deref());
                    report.updates += 1;
                }
            }
            Line::Tick { n, input, output } => {
                let (o, state) = owner
                    .as_mut()
                    .ok_or_else(|| bad("a tick before the header".into()))?;
                let replayed = o.tick(state, &input);
                state.clear_changes();
                if let Some(w) = dump.as_deref_mut() {
                    let _ = write_decisions(w, n, &input, &replayed);
                }
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
            }
            Line::Truncated { .. } => {
                report.truncated = true;
                break;
            }
        }
    }
    Ok(report)
}

fn to_pretty(out: &OwnerOutput) -> String {
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
                format!("set GC safe point {} (ttl {} s)", u.safe_point, u.ttl_secs)
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
