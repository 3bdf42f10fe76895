//! The EtcdWorker and its meta-store backends.
#![deny(missing_docs)]

pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
