//! The contract between the EtcdWorker and the pure state machines it drives.
//!
//! The worker owns all IO. Per round it:
//! 1. applies the watched updates to the reactor's [`ReactorState`] (batched since the last
//!    tick);
//! 2. calls [`Reactor::tick`] with that state and a [`TickContext`] (the injected clock, the
//!    revision the state reflects, and what happened to the previous tick's patches);
//! 3. commits the returned [`TickOutput::groups`] in revision-guarded transactions;
//! 4. does not tick again until the watch has delivered its own writes (so every tick sees a
//!    snapshot that includes them).
//!
//! A tick is a plain `fn`: it cannot await, sleep, read the wall clock or touch the network.
//! Everything it needs comes in through its arguments.

use std::fmt::Debug;

use rcdc_state::{GlobalState, Patch, PatchError, PatchOutcome, Revision};

/// The state a reactor reads, materialized from watched keys.
pub trait ReactorState: Send + 'static {
    /// Applies one change of a key under the watched prefix (`None` = deleted). Must not fail:
    /// bad values are the state's to record, not the worker's to die of.
    fn update(&mut self, key: &str, value: Option<&[u8]>);
    /// Called after each tick, so a state that logs changes can start a new log: the next
    /// tick then sees exactly what changed since this one.
    fn ticked(&mut self) {}
}

impl ReactorState for GlobalState {
    fn update(&mut self, key: &str, value: Option<&[u8]>) {
        if let rcdc_state::snapshot::ApplyOutcome::Corrupt(c) = self.apply(key, value) {
            tracing::warn!(key = %c.key, error = %c.error, "stored value does not decode; its changefeed is marked broken");
        }
    }

    fn ticked(&mut self) {
        self.clear_changes();
    }
}

/// A pure edit of one key, re-appliable to a newer value after a conflict.
pub trait KeyPatch: Send + Debug + 'static {
    /// The full key edited.
    fn key(&self) -> &str;
    /// Computes the new value from the current one.
    fn apply(&self, old: Option<&[u8]>) -> Result<PatchOutcome, PatchError>;
    /// Applies several patches of one key in order. The default applies them one by one; a
    /// patch type with typed values overrides it to decode and encode the value only once.
    fn apply_all(patches: &[&Self], old: Option<&[u8]>) -> Result<PatchOutcome, PatchError>
    where
        Self: Sized,
    {
        let mut cur: Option<Vec<u8>> = old.map(<[u8]>::to_vec);
        let mut changed = false;
        for p in patches {
            match p.apply(cur.as_deref())? {
                PatchOutcome::Unchanged => {}
                PatchOutcome::Put(v) => {
                    cur = Some(v);
                    changed = true;
                }
                PatchOutcome::Delete => {
                    cur = None;
                    changed = true;
                }
            }
        }
        Ok(match cur {
            _ if !changed => PatchOutcome::Unchanged,
            None if old.is_none() => PatchOutcome::Unchanged,
            None => PatchOutcome::Delete,
            Some(v) => PatchOutcome::Put(v),
        })
    }
}

impl KeyPatch for Patch {
    fn key(&self) -> &str {
        &self.key
    }
    fn apply(&self, old: Option<&[u8]>) -> Result<PatchOutcome, PatchError> {
        Patch::apply(self, old)
    }
    fn apply_all(patches: &[&Self], old: Option<&[u8]>) -> Result<PatchOutcome, PatchError> {
        Patch::apply_all(patches, old)
    }
}

/// Patches committed atomically (one txn), with a label that names them in errors.
#[derive(Debug)]
pub struct Group<P> {
    /// Names the group in logs and errors.
    pub label: String,
    /// Applied in order.
    pub patches: Vec<P>,
}

impl From<rcdc_state::PatchGroup> for Group<Patch> {
    fn from(g: rcdc_state::PatchGroup) -> Self {
        Group {
            label: g.label,
            patches: g.patches,
        }
    }
}

/// Why a group was not committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A patch's precondition no longer held against the newest value.
    Precondition(PatchError),
    /// The group alone is over etcd's per-txn limits; it can never commit as it is.
    TooLarge(String),
    /// The store refused the txn (for example a server whose request limits are lower than
    /// ours); nothing was applied.
    Rejected(String),
    /// The txn's outcome is unknown (timeout or broken connection after sending); the state
    /// was re-read, so the next tick sees whether it landed.
    Indeterminate(String),
}

impl DropReason {
    /// A short name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DropReason::Precondition(_) => "precondition",
            DropReason::TooLarge(_) => "too_large",
            DropReason::Rejected(_) => "rejected",
            DropReason::Indeterminate(_) => "indeterminate",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Precondition(e) => write!(f, "{e}"),
            DropReason::TooLarge(m) => write!(f, "too large: {m}"),
            DropReason::Rejected(m) => write!(f, "rejected by the store: {m}"),
            DropReason::Indeterminate(m) => write!(f, "outcome unknown: {m}"),
        }
    }
}

/// What became of one group a tick returned (the commit acknowledgement, target-design §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Committed (or had nothing to write: every patch found its value already in place).
    Committed,
    /// Not committed, and not retried by the worker: the reactor re-decides.
    Dropped(DropReason),
}

/// What a tick may read besides the state.
#[derive(Clone, Debug, Default)]
pub struct TickContext {
    /// Injected wall-clock time in Unix milliseconds (see [`Clock`]).
    pub now_ms: u64,
    /// The store revision the state reflects.
    pub revision: Revision,
    /// One outcome per group of the previous tick's output, in the same order. The worker
    /// never ticks while groups are pending, so every group of the previous tick is settled
    /// by the time the next one runs: a reactor can hold a one-shot input until the group
    /// carrying its consequence is reported here.
    pub previous: Vec<GroupOutcome>,
}

impl TickContext {
    /// The previous tick's groups that did not commit, as (index in that output, why).
    pub fn dropped(&self) -> impl Iterator<Item = (usize, &DropReason)> {
        self.previous
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                GroupOutcome::Committed => None,
                GroupOutcome::Dropped(r) => Some((i, r)),
            })
    }
}

/// What a tick returns.
#[derive(Debug)]
pub struct TickOutput<P> {
    /// Groups to commit, in order.
    pub groups: Vec<Group<P>>,
    /// The reactor is done: the worker commits `groups` and then returns.
    pub finished: bool,
}

impl<P> Default for TickOutput<P> {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            finished: false,
        }
    }
}

/// A pure state machine driven by the EtcdWorker.
pub trait Reactor: Send + 'static {
    /// The state it reads.
    type State: ReactorState;
    /// The patches it writes.
    type Patch: KeyPatch;
    /// One decision step. Sans-IO: everything it may read is in `state` and `ctx`.
    fn tick(&mut self, state: &Self::State, ctx: &TickContext) -> TickOutput<Self::Patch>;
    /// Called before every tick with the batch of updates the worker is about to apply to
    /// the state (the initial load and resyncs included; possibly empty) and the raw keys
    /// the state will reflect once they are applied: what a recording needs to rebuild the
    /// state offline, from the first tick or from any later one. The default ignores them.
    fn observe_updates(&mut self, updates: &[(String, Option<Vec<u8>>)], keys: &dyn RawKeys) {
        let _ = (updates, keys);
    }
}

/// Read access to the worker's raw copy of the watched keys (every key under the prefix
/// except the delete counter, with its value bytes), in key order.
pub trait RawKeys {
    /// Calls `f` for each key and value.
    fn for_each(&self, f: &mut dyn FnMut(&str, &[u8]));
}

/// A plain key map (tests, simulations, scripted recordings).
impl RawKeys for std::collections::BTreeMap<String, Vec<u8>> {
    fn for_each(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (k, v) in self {
            f(k, v);
        }
    }
}

/// The source of "now" for ticks; injected so that simulation and replay control time.
pub trait Clock: Send + Sync + 'static {
    /// Unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place that reads the wall clock; everything downstream gets it injected.
    #[allow(clippy::disallowed_methods)]
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}
