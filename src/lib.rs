//! rcdc: a change-data-capture server in the mold of TiCDC.
//!
//! Crate-per-role layout (see ARCHITECTURE.md): `rcdc-state` holds the model, key layout,
//! snapshot and patches (no IO); `rcdc-reactor` holds the EtcdWorker and meta-store backends;
//! this crate will hold the roles (capture, owner, processor, upstreams, sinks, API, CLI) as
//! one directory each, every role split into a pure `tick.rs` and its IO runtime.

pub mod api;
pub mod capture;
pub mod config;
pub mod data_plane;
pub mod event;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod logging;
pub mod meta;
pub mod owner;
pub mod pipeline;
pub mod processor;
pub mod record;
pub mod security;
pub mod server;
pub mod sink;
pub mod upstream;
pub mod verify;

pub use rcdc_reactor as reactor;
pub use rcdc_state as state;
