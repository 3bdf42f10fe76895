//! The values TiCDC v5 stores in etcd (facts §2), JSON-identical to Go's `encoding/json`.
//!
//! Rules shared by every type here:
//! - field names, `omitempty` and `null` exactly as Go writes them, and field order as Go's
//!   struct order, so [`encode`] reproduces TiCDC's bytes (map keys in Go's string order,
//!   Go's HTML-safe string escaping);
//! - **unknown fields survive**: every struct stored in etcd has
//!   `#[serde(flatten)] extra: Extra` holding the JSON fields it does not know. A value written
//!   by a newer TiCDC, or an rcdc additive field such as `upstream-uri`, must survive our
//!   decode → edit → encode (target-design §2); without `extra` serde would silently drop it.
//!   Unknown fields are written after the known ones, which is also where Go's (newer) struct
//!   fields usually sit;
//! - **Go nil vs empty**: a Go map, slice or pointer that may be nil is an `Option`: `None` is
//!   `null`, `Some(empty)` is `{}`/`[]`, and each round-trips as written (see [`TaskStatus`]);
//! - **missing fields** decode as Go's zero value, as `encoding/json` leaves them; the few
//!   exceptions that mirror TiCDC's `VerifyAndFix` are documented on [`ChangeFeedInfo`] and
//!   [`ReplicaConfig`];
//! - maps are `BTreeMap`, so everything is deterministic;
//! - enums are Rust enums with their Go encodings; an unknown value is a decode error naming
//!   it, never a panic.
//!
//! Known differences from Go's decoder, all for input TiCDC never writes: Go matches field
//! names case-insensitively and lets a duplicate key overwrite, and reads `null` for a scalar
//! as "leave the zero value"; serde matches exactly and rejects the other two.

mod capture;
mod changefeed;
mod codec;
mod config;
mod error;
mod status;
mod task;

pub use capture::CaptureInfo;
pub use changefeed::{
    sort_engine, AdminJobType, ChangeFeedInfo, FeedState, CYCLIC_CONFIG_OPT, GO_ZERO_TIME,
};
pub use codec::{decode, encode};
pub use config::{
    CyclicConfig, DispatchRule, FilterConfig, FilterTable, MounterConfig, MySqlReplicationRules,
    ReplicaConfig, SchedulerConfig, SinkConfig,
};
pub use error::{RunningError, FAST_FAIL_CODES};
pub use status::ChangeFeedStatus;
pub use task::{
    OperationStatus, TableOperation, TableReplicaInfo, TaskPosition, TaskStatus, TaskWorkload,
    WorkloadInfo, OPER_FLAG_MOVE_TABLE,
};

mod extra;

pub use extra::Extra;
