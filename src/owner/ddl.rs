//! The DDL barrier of one changefeed (facts §4.9, simplified to what changes the table set):
//! the checkpoint may not pass a DDL until the table set after it is in effect.
//!
//! Pure: the owner asks the upstream for the next DDL as an effect and feeds the answer back.
//! The barrier is the last ts known to be safe:
//! - `Clear { safe }`: no DDL in (checkpoint, safe]; the checkpoint may go up to `safe`, and
//!   once it is there the owner asks again (the upstream's "now" has moved on).
//! - `Pending { at }`: a DDL at `at`; the checkpoint may go up to `at − 1`. When it is there
//!   (every table caught up to just before the DDL), the owner re-lists the tables at `at`
//!   and the scheduler adds created and removes dropped tables before anything moves on.

use rcdc_state::Ts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Known {
    Clear { safe: Ts },
    Pending { at: Ts },
}

/// What the owner should do for the barrier this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DdlStep {
    /// Nothing.
    Wait,
    /// Ask the upstream for the first DDL after `after`.
    Fetch {
        /// Exclusive lower bound.
        after: Ts,
    },
    /// The checkpoint reached the DDL at `at`: re-list tables at `at`.
    Apply {
        /// The DDL's commit ts.
        at: Ts,
    },
}

/// One changefeed's DDL barrier.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DdlBarrier {
    known: Known,
    fetching: bool,
}

impl DdlBarrier {
    /// A barrier for a changefeed (re)starting at `checkpoint`: nothing known beyond it.
    pub fn new(checkpoint: Ts) -> Self {
        Self {
            known: Known::Clear { safe: checkpoint },
            fetching: false,
        }
    }

    /// The highest ts the checkpoint may reach now.
    pub fn barrier(&self) -> Ts {
        match self.known {
            Known::Clear { safe } => safe,
            Known::Pending { at } => at.prev(),
        }
    }

    /// Decides, given the changefeed's checkpoint; call only when the scheduler is settled.
    pub fn step(&mut self, checkpoint: Ts) -> DdlStep {
        match self.known {
            Known::Pending { at } if checkpoint >= at.prev() => {
                self.known = Known::Clear { safe: at };
                DdlStep::Apply { at }
            }
            Known::Clear { safe } if !self.fetching && checkpoint >= safe => {
                self.fetching = true;
                DdlStep::Fetch { after: safe }
            }
            _ => DdlStep::Wait,
        }
    }

    /// The upstream's answer to `Fetch { after }`: the next DDL, or none up to `upto`.
    pub fn on_fetched(&mut self, after: Ts, next: Option<Ts>, upto: Ts) {
        let Known::Clear { safe } = self.known else {
            return; // a DDL is already pending; a late answer changes nothing
        };
        if after != safe {
            return; // an answer to an earlier question
        }
        self.fetching = false;
        self.known = match next {
            Some(at) if at > safe => Known::Pending { at },
            _ => Known::Clear {
                safe: safe.max(upto),
            },
        };
    }

    /// The fetch failed; the next tick asks again.
    pub fn on_failed(&mut self) {
        self.fetching = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_stops_just_before_a_ddl_until_the_table_set_is_applied() {
        let mut b = DdlBarrier::new(Ts(100));
        assert_eq!(b.barrier(), Ts(100), "nothing known beyond the start");
        assert_eq!(b.step(Ts(100)), DdlStep::Fetch { after: Ts(100) });
        assert_eq!(b.step(Ts(100)), DdlStep::Wait, "one question at a time");
        b.on_fetched(Ts(100), None, Ts(500));
        assert_eq!(b.barrier(), Ts(500));
        assert_eq!(b.step(Ts(300)), DdlStep::Wait, "not at the barrier yet");
        assert_eq!(b.step(Ts(500)), DdlStep::Fetch { after: Ts(500) });
        b.on_fetched(Ts(500), Some(Ts(700)), Ts(900));
        assert_eq!(b.barrier(), Ts(699), "up to just before the DDL");
        assert_eq!(b.step(Ts(600)), DdlStep::Wait);
        assert_eq!(b.step(Ts(699)), DdlStep::Apply { at: Ts(700) });
        assert_eq!(b.barrier(), Ts(700), "past the DDL once applied");
        assert_eq!(b.step(Ts(699)), DdlStep::Wait);
        assert_eq!(b.step(Ts(700)), DdlStep::Fetch { after: Ts(700) });
    }

    #[test]
    fn stale_and_failed_answers() {
        let mut b = DdlBarrier::new(Ts(10));
        assert_eq!(b.step(Ts(10)), DdlStep::Fetch { after: Ts(10) });
        b.on_fetched(Ts(5), Some(Ts(8)), Ts(9)); // an older question's answer
        assert_eq!(b.barrier(), Ts(10));
        b.on_failed();
        assert_eq!(
            b.step(Ts(10)),
            DdlStep::Fetch { after: Ts(10) },
            "asked again"
        );
        b.on_fetched(Ts(10), Some(Ts(10)), Ts(20)); // not after `safe`: ignored as a DDL
        assert_eq!(b.barrier(), Ts(20));
    }
}
