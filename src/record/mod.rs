//! Recordings of the owner and processor-manager reactors, for deterministic replay
//! (target-design §9).
//!
//! A recording is a stream of files per reactor and capture, `<role>-<capture>-<n>.ndjson`
//! (`role` is `owner` or `processor`; `n` grows), one JSON object per line (format
//! `rcdc-recording`, version 2):
//!
//! ```text
//! {"type":"header","format":"rcdc-recording","version":2,"role":"owner","capture":"…","cluster_prefix":"/tidb/cdc","config":{…}}
//! {"type":"resume","memory":{…},"kvs":[{"key":"/tidb/cdc/…","value":"{…}"},…]}
//! {"type":"updates","kvs":[{"key":"/tidb/cdc/…","value":"{…}"},{"key":"…","value":null}]}
//! {"type":"tick","n":1,"input":{…},"output":{…}}
//! {"type":"end","reason":"…"}
//! ```
//!
//! - `header`: the role and its configuration, enough to build a fresh reactor.
//! - `resume` (only when the file starts after the reactor has already ticked: recording
//!   turned on at runtime, or a rotation): the reactor's memory and every raw key as the
//!   state will hold them once the next `updates` are applied. Replay materializes the keys,
//!   starts a new change log, and then applies the `updates`, which gives exactly the state
//!   and change log the live tick saw (applying a key is idempotent, and which changefeeds a
//!   key marks as changed depends on the key alone).
//! - `updates`: the batch the EtcdWorker applied before the next tick (without `resume`, the
//!   first one is the initial load). A `null` value is a delete; a value that is not UTF-8
//!   is `{"hex":"…"}`.
//! - `tick`: everything the tick read besides the snapshot, and everything it decided. The
//!   owner's input is [`OwnerInput`](crate::owner::tick::OwnerInput) and output
//!   [`OwnerOutput`](crate::owner::tick::OwnerOutput); the processor manager's input is the
//!   clock plus the pipeline reports that changed since the file's previous tick
//!   ([`processor::RecordedProcessorInput`]) and output
//!   [`ProcessorOutput`](crate::processor::tick::ProcessorOutput).
//! - `end`: why the file stops (turned off, rotated into the next file).
//!
//! Because ticks are pure, replaying a file through a fresh or resumed reactor must reproduce
//! every output exactly ([`replay`]). Each file stands alone. Disk use is bounded by rotation
//! ([`control`]): a file that reaches its size limit ends and the next starts with a
//! `resume`; the oldest files of a stream are deleted beyond the file count limit.

pub mod control;
pub mod dry_run;
pub mod processor;
mod recorder;
pub mod replay;
mod secrets;

use serde::{Deserialize, Serialize};

pub use control::{Recording, RecordingControl, RecordingSettings, RecordingStatus};
pub use recorder::Recorder;

/// The format name in every header.
pub const FORMAT: &str = "rcdc-recording";
/// The format version this build writes and reads.
pub const VERSION: u32 = 2;
/// Default size at which a recording file ends and the next begins.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Default number of files kept per reactor and capture (older ones are deleted).
pub const DEFAULT_MAX_FILES: usize = 4;

/// Which reactor a recording is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `Owner::tick`.
    Owner,
    /// `ProcessorManager::tick`.
    Processor,
}

impl Role {
    /// The name used in file names and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Processor => "processor",
        }
    }
}

/// A recorded value: UTF-8 text as is, anything else hex-encoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordedValue {
    /// A UTF-8 value (every value rcdc and TiCDC write).
    Text(String),
    /// Other bytes.
    Hex {
        /// Lower-case hex.
        hex: String,
    },
}

impl RecordedValue {
    fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => RecordedValue::Text(s.to_owned()),
            Err(_) => RecordedValue::Hex {
                hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            },
        }
    }

    /// The bytes; `None` if the hex is malformed.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            RecordedValue::Text(s) => Some(s.as_bytes().to_vec()),
            RecordedValue::Hex { hex } => (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect(),
        }
    }
}

/// One key update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedKv {
    /// The key.
    pub key: String,
    /// The new value; `None` = deleted.
    pub value: Option<RecordedValue>,
}

/// One line of a recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// First line: what was recorded and how to build the reactor.
    Header {
        /// [`FORMAT`].
        format: String,
        /// [`VERSION`].
        version: u32,
        /// Which reactor.
        role: Role,
        /// The capture that ran it.
        capture: String,
        /// The cluster's key prefix.
        cluster_prefix: String,
        /// The reactor's configuration (`OwnerConfig` or `ProcessorConfig`).
        config: serde_json::Value,
    },
    /// The file starts mid-life: the reactor's memory and the raw keys.
    Resume {
        /// The reactor (`Owner` or `ProcessorManager`) as it was before the next tick.
        memory: serde_json::Value,
        /// Every key, as the state holds them after the next `updates`.
        kvs: Vec<RecordedKv>,
    },
    /// Updates applied before the next tick.
    Updates {
        /// In order.
        kvs: Vec<RecordedKv>,
    },
    /// One tick's input and output.
    Tick {
        /// Tick number within the file, from 1.
        n: u64,
        /// What it read besides the snapshot.
        input: serde_json::Value,
        /// What it decided.
        output: serde_json::Value,
    },
    /// The file stops here.
    End {
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests;
