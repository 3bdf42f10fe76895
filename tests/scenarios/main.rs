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

mod availability;
mod capture_session_done_during_task;
mod capture_suicide_while_balance_table;
mod changefeed_auto_stop;
mod changefeed_error;
mod changefeed_finish;
mod changefeed_pause_resume;
mod changefeed_reconstruct;
mod cli;
mod gc_safepoint;
mod multi_capture;
