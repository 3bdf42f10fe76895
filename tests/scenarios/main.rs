//! TiCDC's control-plane integration scenarios (pingcap/tiflow `tests/` at 43c40f9d), one test
//! per scenario, named after it, on real `cdc server` processes and a real etcd (the shared
//! fixture is `common::cluster`). Each module's doc says what TiCDC's script asserts and what
//! the test asserts; where data flows, `cdc verify` checks the file sink against the demo
//! upstream's oracle. Scenarios that need injected faults are built only with the `failpoints`
//! feature (the `--all-features` suite). A scenario that needs what rcdc lacks names the gap and
//! is `#[ignore]`d with the reason.
// The demo upstream and the checkpoint are wall-clock times, as an operator sees them.
#![allow(clippy::disallowed_methods)]

#[path = "../common/mod.rs"]
mod common;

// Scenarios that inject faults are built with the `failpoints` feature only (their tests are
// gated too).

mod availability;
mod batch_add_table;
mod capture_session_done_during_task;
mod capture_suicide_while_balance_table;
mod changefeed_auto_stop;
mod changefeed_error;
mod changefeed_finish;
mod changefeed_pause_resume;
mod changefeed_reconstruct;
mod cli;
mod drop_many_tables;
mod gc_safepoint;
#[cfg(feature = "failpoints")]
mod kill_owner_with_ddl;
mod move_table;
mod multi_capture;
mod multi_changefeed;
mod owner_remove_table_error;
#[cfg(feature = "failpoints")]
mod processor_err_chan;
#[cfg(feature = "failpoints")]
mod processor_panic;
#[cfg(feature = "failpoints")]
mod processor_stop_delay;
#[cfg(feature = "failpoints")]
mod sink_hang;
#[cfg(feature = "failpoints")]
mod sink_retry;
