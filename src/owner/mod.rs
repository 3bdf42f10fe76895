//! The owner: per-changefeed decisions, as pure functions of the snapshot and injected time
//! (target-design §6). Work in progress for issue #3: the pieces below are complete and
//! tested on their own; `Owner::tick`, which composes them and emits effects, comes next.
//!
//! - [`feed_state`]: the changefeed state machine (admin jobs, error history, exponential
//!   backoff, failing).

pub mod feed_state;
