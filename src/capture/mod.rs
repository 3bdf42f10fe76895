//! The capture's connection to the cluster (target-design §5): a session lease that carries
//! its keys, and the owner election. Work in progress for issue #3: registration, the run
//! loop with the owner and processor workers, and graceful drain come next.
//!
//! - [`run`]: the capture loop: register, processor always, owner while elected, new id
//!   after a lost session, graceful shutdown.
//! - [`session`]: a lease kept alive in the background; reports when it is lost.
//! - [`election`]: TiCDC's election under `<prefix>/owner` (etcd concurrency semantics): the
//!   candidate whose key has the smallest create revision is the owner; winning yields the
//!   [`rcdc_reactor::Fence`] that every owner txn compares.

pub mod election;
pub mod roles;
pub mod run;
pub mod session;
