//! The EtcdWorker and its meta-store backends.
//!
//! - [`store`]: the [`store::MetaStore`] seam with an etcd backend and an in-process MVCC
//!   backend (tests, simulation);
//! - [`reactor`]: the [`Reactor`] contract: a pure tick over a materialized state;
//! - [`worker`]: the [`EtcdWorker`] that drives a reactor against a store (target-design §4).
#![deny(missing_docs)]

mod metrics;
pub mod reactor;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

pub use reactor::{
    Clock, DropReason, Group, GroupOutcome, KeyPatch, RawKeys, Reactor, ReactorState, SystemClock,
    TickContext, TickOutput,
};
#[cfg(feature = "testing")]
pub use worker::check_group_fits;
pub use worker::{
    EtcdWorker, Fence, TxnLimits, WorkerConfig, WorkerError, WorkerExit, WorkerStats,
};
