//! rcdc's control-plane state, with no IO.
//!
//! - [`ids`]: newtypes for capture, changefeed and table ids, timestamps and revisions;
//! - [`model`]: the TiCDC v5 values stored in etcd (JSON-compatible, unknown fields kept);
//! - [`key`]: the etcd key layout under a configurable root prefix;
//! - [`snapshot`]: [`GlobalState`], the materialized view of every key, updated incrementally;
//! - [`patch`]: patches as data, each a pure edit of one key's old value.
//!
//! This crate must stay free of tokio, etcd-client, hyper and clocks: the reactors that read it
//! are replayed deterministically (target-design §3, §9).
#![deny(missing_docs)]

pub mod ids;
pub mod key;
pub mod model;
pub mod patch;
pub mod snapshot;

pub use ids::{CaptureId, ChangefeedId, Revision, TableId, Ts};
pub use key::{CdcKey, KeyLayout};
pub use patch::{Edit, Patch, PatchError, PatchGroup, PatchOutcome};
pub use snapshot::{ChangeKinds, ChangefeedState, Changes, GlobalState};
