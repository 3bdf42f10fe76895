//! The processor manager's recorded tick input: the clock and the pipeline reports that
//! changed since the file's previous tick (a capture with 10,000 tables would otherwise
//! write every report on every tick).

use serde::{Deserialize, Serialize};

use rcdc_state::{ChangefeedId, TableId, Ts};

use crate::processor::tick::{Pipelines, TablePipelineState, TableProgress};

/// One pipeline's report, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedPipeline {
    /// Its changefeed.
    pub changefeed: ChangefeedId,
    /// Its table.
    pub table: TableId,
    /// Every change up to here is in the sorter.
    pub resolved_ts: Ts,
    /// Every change up to here is in the sink.
    pub checkpoint_ts: Ts,
    /// Its state.
    pub state: TablePipelineState,
    /// Rows the run wrote (absent in recordings from before it was reported).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A pipeline the runtime no longer reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GonePipeline {
    /// Its changefeed.
    pub changefeed: ChangefeedId,
    /// Its table.
    pub table: TableId,
}

/// What a processor tick read besides the snapshot, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedProcessorInput {
    /// Injected time, Unix milliseconds.
    pub now_ms: u64,
    /// Reports new or changed since the previous recorded tick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<RecordedPipeline>,
    /// Pipelines gone since the previous recorded tick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<GonePipeline>,
}

impl RecordedProcessorInput {
    /// The difference from `before` to `now`, at `now_ms`.
    pub fn delta(now_ms: u64, before: &Pipelines, now: &Pipelines) -> Self {
        let changed = now
            .iter()
            .filter(|(k, p)| before.get(*k) != Some(*p))
            .map(|((changefeed, table), p)| RecordedPipeline {
                changefeed: changefeed.clone(),
                table: *table,
                resolved_ts: p.resolved_ts,
                checkpoint_ts: p.checkpoint_ts,
                state: p.state.clone(),
                rows: p.rows,
            })
            .collect();
        let gone = before
            .keys()
            .filter(|k| !now.contains_key(*k))
            .map(|(changefeed, table)| GonePipeline {
                changefeed: changefeed.clone(),
                table: *table,
            })
            .collect();
        Self {
            now_ms,
            changed,
            gone,
        }
    }

    /// Applies the difference to `pipelines` (replay).
    pub fn apply_to(&self, pipelines: &mut Pipelines) {
        for g in &self.gone {
            pipelines.remove(&(g.changefeed.clone(), g.table));
        }
        for p in &self.changed {
            pipelines.insert(
                (p.changefeed.clone(), p.table),
                TableProgress {
                    resolved_ts: p.resolved_ts,
                    checkpoint_ts: p.checkpoint_ts,
                    state: p.state.clone(),
                    rows: p.rows,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(ts: u64, state: TablePipelineState) -> TableProgress {
        TableProgress {
            resolved_ts: Ts(ts),
            checkpoint_ts: Ts(ts - 1),
            state,
            rows: 0,
        }
    }

    #[test]
    fn a_delta_carries_exactly_what_changed_and_rebuilds_the_reports() {
        let cf = ChangefeedId::from("cf");
        let mut before = Pipelines::new();
        before.insert(
            (cf.clone(), TableId(1)),
            progress(10, TablePipelineState::Running),
        );
        before.insert(
            (cf.clone(), TableId(2)),
            progress(10, TablePipelineState::Running),
        );
        before.insert(
            (cf.clone(), TableId(3)),
            progress(10, TablePipelineState::Running),
        );
        let mut now = before.clone();
        now.remove(&(cf.clone(), TableId(1)));
        now.insert(
            (cf.clone(), TableId(2)),
            progress(12, TablePipelineState::Running),
        );
        now.insert(
            (cf.clone(), TableId(4)),
            progress(5, TablePipelineState::Failed("sink gone".into())),
        );
        let d = RecordedProcessorInput::delta(7, &before, &now);
        assert_eq!(
            (d.changed.len(), d.gone.len()),
            (2, 1),
            "table 3 unchanged is left out: {d:?}"
        );
        let json = serde_json::to_string(&d).unwrap();
        let back: RecordedProcessorInput = serde_json::from_str(&json).unwrap();
        let mut rebuilt = before.clone();
        back.apply_to(&mut rebuilt);
        assert_eq!(rebuilt, now);
        assert_eq!(
            serde_json::to_string(&RecordedProcessorInput::delta(8, &now, &now)).unwrap(),
            r#"{"now_ms":8}"#
        );
    }
}
