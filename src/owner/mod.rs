//! The owner: per-changefeed decisions, as pure functions of the snapshot and injected time
//! (target-design §6). Work in progress for issue #3: the pieces below are complete and
//! tested on their own; `Owner::tick`, which composes them and emits effects, comes next.
//!
//! - [`runtime`]: the EtcdWorker adapter and the effect executor (IO).
//! - [`tick`]: [`tick::Owner::tick`] composes the pieces below per changefeed.
//! - [`feed_state`]: the changefeed state machine (admin jobs, error history, exponential
//!   backoff, failing).
//! - [`progress`]: resolved ts and a monotonic checkpoint, written once per flush interval.
//! - [`gc`]: the GC safe point as an effect, and the lost-snapshot check.
//! - [`scheduler`]: the table scheduler (dispatch, re-dispatch, rebalance, move table) on the
//!   task-status operation protocol.

pub mod ddl;
pub mod drain;
pub mod feed_state;
pub mod gc;
pub mod metrics;
pub mod progress;
pub mod runtime;
pub mod scheduler;
pub mod tick;
