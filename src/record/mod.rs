//! Recordings of the owner reactor, for deterministic replay (target-design §9).
//!
//! A recording is one file per owner incarnation, `owner-<capture>-<n>.ndjson`, one JSON
//! object per line (format `rcdc-recording`, version 1):
//!
//! ```text
//! {"type":"header","format":"rcdc-recording","version":1,"role":"owner","capture":"…","cluster_prefix":"/tidb/cdc","owner_config":{…}}
//! {"type":"updates","kvs":[{"key":"/tidb/cdc/…","value":"{…}"},{"key":"…","value":null}]}
//! {"type":"tick","n":1,"input":{"now_ms":…,"requests":[…],"results":[…]},"output":{"groups":[…],"effects":[…],"rejected":[…],"visited":3}}
//! {"type":"truncated","reason":"…"}
//! ```
//!
//! `updates` holds the batch the EtcdWorker applied to the snapshot before the next tick (the
//! first one is the initial load; a `null` value is a delete; a value that is not UTF-8 is
//! `{"hex":"…"}`). `tick` holds everything `Owner::tick` read besides the snapshot and
//! everything it decided. Because the tick is pure, replaying the updates and inputs through
//! a fresh `Owner` must reproduce every output exactly ([`replay`]).
//!
//! Disk use is bounded: a recording stops (with a `truncated` line) at `max_bytes`; the next
//! owner incarnation starts a new file.

pub mod dry_run;
pub mod replay;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::owner::tick::{OwnerConfig, OwnerInput, OwnerOutput};

/// The format name in every header.
pub const FORMAT: &str = "rcdc-recording";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Default per-recording size limit.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// First line: what was recorded and how to rebuild the reactor.
    Header {
        /// [`FORMAT`].
        format: String,
        /// [`VERSION`].
        version: u32,
        /// `owner`.
        role: String,
        /// The capture that ran it.
        capture: String,
        /// The cluster's key prefix.
        cluster_prefix: String,
        /// The owner's configuration.
        owner_config: OwnerConfig,
    },
    /// Updates applied before the next tick.
    Updates {
        /// In order.
        kvs: Vec<RecordedKv>,
    },
    /// One tick's input and output.
    Tick {
        /// Tick number, from 1.
        n: u64,
        /// What it read besides the snapshot.
        input: OwnerInput,
        /// What it decided.
        output: OwnerOutput,
    },
    /// The recording stopped here.
    Truncated {
        /// Why.
        reason: String,
    },
}

/// Writes one owner recording.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
    max_bytes: u64,
    ticks: u64,
}

impl Recorder {
    /// Starts `owner-<capture>-<n>.ndjson` in `dir` (the first free `n`) with its header.
    pub fn create(
        dir: &Path,
        capture: &str,
        cluster_prefix: &str,
        owner_config: &OwnerConfig,
        max_bytes: u64,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut n = 1;
        let path = loop {
            let p = dir.join(format!("owner-{capture}-{n}.ndjson"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let file = File::create(&path)?;
        let mut r = Self {
            path,
            out: Some(BufWriter::new(file)),
            written: 0,
            max_bytes,
            ticks: 0,
        };
        r.write(&Line::Header {
            format: FORMAT.into(),
            version: VERSION,
            role: "owner".into(),
            capture: capture.into(),
            cluster_prefix: cluster_prefix.into(),
            owner_config: owner_config.clone(),
        });
        Ok(r)
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a batch of updates about to be applied.
    pub fn updates(&mut self, updates: &[(String, Option<Vec<u8>>)]) {
        let kvs = updates
            .iter()
            .map(|(k, v)| RecordedKv {
                key: k.clone(),
                value: v.as_deref().map(RecordedValue::of),
            })
            .collect();
        self.write(&Line::Updates { kvs });
    }

    /// Records one tick and flushes, so a crash loses at most the tick in progress.
    pub fn tick(&mut self, input: &OwnerInput, output: &OwnerOutput) {
        self.ticks += 1;
        let line = serde_json::json!({
            "type": "tick",
            "n": self.ticks,
            "input": input,
            "output": output,
        });
        self.write_value(&line);
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                self.fail(&e.to_string());
            }
        }
    }

    fn write(&mut self, line: &Line) {
        match serde_json::to_value(line) {
            Ok(v) => self.write_value(&v),
            Err(e) => self.fail(&e.to_string()),
        }
    }

    fn write_value(&mut self, v: &serde_json::Value) {
        let Some(out) = self.out.as_mut() else { return };
        let mut bytes = v.to_string().into_bytes();
        bytes.push(b'\n');
        if self.written + bytes.len() as u64 > self.max_bytes {
            let end = serde_json::json!({"type": "truncated", "reason": format!("size limit {} bytes reached", self.max_bytes)});
            let _ = writeln!(out, "{end}");
            let _ = out.flush();
            tracing::warn!(path = %self.path.display(), "recording stopped at its size limit");
            self.out = None;
            return;
        }
        self.written += bytes.len() as u64;
        if let Err(e) = out.write_all(&bytes) {
            self.fail(&e.to_string());
        }
    }

    fn fail(&mut self, error: &str) {
        tracing::warn!(path = %self.path.display(), error, "recording stopped: write failed");
        self.out = None;
    }
}

#[cfg(test)]
mod tests;
