//! rcdc's PD client: the calls TiCDC v5's server makes on PD (facts §5), over the stubs of
//! `rcdc-proto`.
//!
//! - [`PdClient::connect`] asks each `--pd` endpoint for the members (GetMembers; the answer's
//!   `header.cluster_id` is the cluster id) and dials the leader's client URL. A background
//!   loop repeats GetMembers every [`PdOptions::member_interval`]; a call that meets "not
//!   leader" or an unreachable leader re-discovers at once and retries within its timeout, so a
//!   leader change does not reach the caller.
//! - [`PdClient::get_ts`]: one bidi `Tso` stream; concurrent callers share one request, and a
//!   timestamp never goes back, across reconnects and leader changes.
//! - Stores, regions, service GC safe points: typed unary calls.
//!
//! Every request carries the cluster id and every answer's header is checked: a foreign
//! cluster id is [`PdError::ClusterIdMismatch`], a header error [`PdError::Server`]. Every call
//! is bounded by [`PdOptions::request_timeout`]; retries use `backon`.
#![deny(missing_docs)]

mod backoff;
mod call;
mod client;
mod error;
mod members;
mod options;
mod tso;
pub mod version;

pub use client::{PdClient, RegionInfo};
pub use error::PdError;
pub use members::PdMember;
pub use options::PdOptions;
pub use rcdc_proto::{metapb, pdpb};
pub use tonic::transport::ClientTlsConfig;
pub use tso::{compose_ts, physical_ms, LOGICAL_BITS};
