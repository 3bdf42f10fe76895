//! Steps 7 and 8 of the processor tick: the TaskPosition and the TaskWorkload (see the
//! parent module's doc for the checkpoint floor and why joined tables are exempt from it).

use std::collections::BTreeMap;

use rcdc_state::patch::{TaskPositionEdit, WorkloadEdit};
use rcdc_state::{Edit, TableId, Ts};

use super::{Processor, Run, TablePipelineState};

impl Run<'_> {
    /// Min checkpoint and resolved over live pipelines; see the module doc for the floor.
    /// `(floor, reported_resolved)` is the stored position; a new row `count` rides along
    /// with a ts change (it never causes a write of its own).
    pub(super) fn handle_position(
        &mut self,
        p: &mut Processor,
        (floor, reported_resolved): (Ts, Ts),
        count: Option<u64>,
        key: String,
    ) {
        let mut settled: Option<(Ts, Ts)> = None;
        let mut joined: Option<(Ts, Ts)> = None;
        let mut caught_up: Vec<TableId> = Vec::new();
        let fold = |acc: &mut Option<(Ts, Ts)>, cp: Ts, res: Ts| {
            let cp = cp.min(res);
            *acc = Some(match *acc {
                None => (cp, res),
                Some((c, r)) => (c.min(cp), r.min(res)),
            });
        };
        let live = self
            .live()
            .filter(|(_, prog)| !matches!(prog.state, TablePipelineState::Failed(_)))
            .map(|(t, prog)| (t, prog.checkpoint_ts, prog.resolved_ts));
        let pending = p.pending.iter().map(|(t, s)| (*t, s.start_ts, s.start_ts));
        for (t, cp, res) in live.chain(pending) {
            if p.joined.contains(&t) {
                if cp.min(res) >= floor {
                    caught_up.push(t);
                    fold(&mut settled, cp, res);
                } else {
                    fold(&mut joined, cp, res);
                }
            } else {
                fold(&mut settled, cp, res);
            }
        }
        let has_op = |t: &TableId| {
            self.view
                .task
                .operation
                .as_ref()
                .is_some_and(|o| o.contains_key(t))
        };
        for t in caught_up {
            // Keep the exemption while the add op exists: the op may still be re-driven.
            if !has_op(&t) {
                p.joined.remove(&t);
            }
        }
        let checkpoint = match (settled, joined) {
            (None, None) => return,
            (Some((c, _)), None) => c.max(floor),
            (None, Some((c, _))) => c,
            (Some((c, _)), Some((jc, _))) => c.max(floor).min(jc),
        };
        let min_resolved = match (settled, joined) {
            (Some((_, r)), Some((_, jr))) => r.min(jr),
            (Some((_, r)), None) | (None, Some((_, r))) => r,
            (None, None) => return,
        };
        let resolved = min_resolved.max(checkpoint);
        if (checkpoint, resolved) != (floor, reported_resolved) {
            self.group.push(
                key,
                Edit::TaskPosition(TaskPositionEdit::SetTs {
                    checkpoint_ts: checkpoint,
                    resolved_ts: resolved,
                    count,
                }),
            );
        }
    }

    /// `{table: {workload: 1}}` for running pipelines, written only on change. The
    /// comparison walks both sorted sequences without building the wanted map, which is
    /// only built when it differs (a BTreeMap per changefeed per tick was most of a steady
    /// tick's cost at 10,000 tables).
    pub(super) fn handle_workload(&mut self) {
        let running = || {
            self.live()
                .filter(|(_, prog)| prog.state == TablePipelineState::Running)
                .map(|(t, _)| t)
        };
        let capture = &self.manager.capture;
        let current = self.view.cf.workloads.get(capture);
        let same = match current {
            None => running().next().is_none(),
            Some(w) => {
                let mut want = running();
                let mut have = w.0.iter();
                loop {
                    match (want.next(), have.next()) {
                        (None, None) => break true,
                        (Some(t), Some((ht, info))) if t == *ht && info.workload == 1 => {}
                        _ => break false,
                    }
                }
            }
        };
        if !same {
            let wanted: BTreeMap<TableId, u64> = running().map(|t| (t, 1)).collect();
            let key = self.state.layout().task_workload(capture, self.id);
            self.group.push(
                key,
                Edit::TaskWorkload(WorkloadEdit::Set { tables: wanted }),
            );
        }
    }
}
