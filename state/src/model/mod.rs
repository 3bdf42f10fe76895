//! The values TiCDC v5 stores in etcd (facts §2), JSON-identical to Go's `encoding/json`.
//!
//! Rules shared by every type here:
//! - field names, `omitempty` and `null` exactly as Go writes them;
//! - every stored struct keeps the JSON fields it does not know in `extra`, so a value written
//!   by a newer TiCDC or rcdc survives our read-modify-write untouched (target-design §2);
//! - maps are `BTreeMap`, so encoding is deterministic;
//! - enums are Rust enums with their Go encodings; an unknown value is a decode error.

mod capture;
mod changefeed;
mod config;
pub(crate) use config::null_default;
mod error;
mod status;
mod task;

pub use capture::CaptureInfo;
pub use changefeed::{AdminJobType, ChangeFeedInfo, FeedState};
pub use config::{
    CyclicConfig, DispatchRule, FilterConfig, MounterConfig, ReplicaConfig, SchedulerConfig,
    SinkConfig,
};
pub use error::{RunningError, FAST_FAIL_CODES};
pub use status::ChangeFeedStatus;
pub use task::{
    OperationStatus, TableOperation, TableReplicaInfo, TaskPosition, TaskStatus, TaskWorkload,
    WorkloadInfo,
};

/// JSON fields a type does not know, kept for the round trip.
pub type Extra = serde_json::Map<String, serde_json::Value>;

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
