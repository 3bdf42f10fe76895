//! ChangeFeedInfo and its enums (facts §2.2, §2.8).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{null_default, ChangeFeedStatus, Extra, ReplicaConfig, RunningError};
use crate::ids::Ts;

/// The admin job type, stored as an integer (facts §2.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdminJobType {
    /// 0, "noop".
    #[default]
    None,
    /// 1, "stop changefeed".
    Stop,
    /// 2, "resume changefeed".
    Resume,
    /// 3, "remove changefeed".
    Remove,
    /// 4, "finish changefeed" (owner-internal).
    Finish,
}

impl AdminJobType {
    /// The Go integer.
    pub fn code(self) -> u64 {
        match self {
            AdminJobType::None => 0,
            AdminJobType::Stop => 1,
            AdminJobType::Resume => 2,
            AdminJobType::Remove => 3,
            AdminJobType::Finish => 4,
        }
    }
    /// From the Go integer; `None` for values TiCDC does not define.
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => AdminJobType::None,
            1 => AdminJobType::Stop,
            2 => AdminJobType::Resume,
            3 => AdminJobType::Remove,
            4 => AdminJobType::Finish,
            _ => return None,
        })
    }
    /// Whether a changefeed with this job type must not run (stop, remove, finish).
    pub fn is_stop_state(self) -> bool {
        matches!(
            self,
            AdminJobType::Stop | AdminJobType::Remove | AdminJobType::Finish
        )
    }
}

impl fmt::Display for AdminJobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminJobType::None => "noop",
            AdminJobType::Stop => "stop changefeed",
            AdminJobType::Resume => "resume changefeed",
            AdminJobType::Remove => "remove changefeed",
            AdminJobType::Finish => "finish changefeed",
        })
    }
}

impl Serialize for AdminJobType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.code())
    }
}

impl<'de> Deserialize<'de> for AdminJobType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u64::deserialize(d)?;
        AdminJobType::from_code(code).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown admin job type {code} (expected 0..=4)"))
        })
    }
}

/// A changefeed's state (facts §2.8).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FeedState {
    /// Replicating. Go's zero value `""` reads as normal.
    #[default]
    #[serde(alias = "")]
    Normal,
    /// Stopped after repeated errors; retried by the owner.
    Error,
    /// Failed for good (fast-fail error or retry time exhausted).
    Failed,
    /// Paused by an operator.
    Stopped,
    /// Removed (deprecated: a removed changefeed's keys are deleted).
    Removed,
    /// Reached its target ts.
    Finished,
}

impl FeedState {
    /// The admin job type the owner writes together with this state (facts §2.8).
    pub fn admin_job_type(self) -> AdminJobType {
        match self {
            FeedState::Normal => AdminJobType::None,
            FeedState::Finished => AdminJobType::Finish,
            FeedState::Error | FeedState::Stopped | FeedState::Failed => AdminJobType::Stop,
            FeedState::Removed => AdminJobType::Remove,
        }
    }
    /// The lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedState::Normal => "normal",
            FeedState::Error => "error",
            FeedState::Failed => "failed",
            FeedState::Stopped => "stopped",
            FeedState::Removed => "removed",
            FeedState::Finished => "finished",
        }
    }
}

impl fmt::Display for FeedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `<prefix>/changefeed/info/<id>`: what to replicate where (facts §2.2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeFeedInfo {
    /// Where to write.
    #[serde(rename = "sink-uri", default)]
    pub sink_uri: String,
    /// Extra sink options; Go writes `{}` from the CLI, `null` for a nil map.
    #[serde(default)]
    pub opts: Option<BTreeMap<String, String>>,
    /// RFC3339Nano creation time, as Go wrote it.
    #[serde(rename = "create-time", default)]
    pub create_time: String,
    /// Start ts; 0 means "the TSO of create-time".
    #[serde(rename = "start-ts", default)]
    pub start_ts: Ts,
    /// Target ts; 0 means none.
    #[serde(rename = "target-ts", default)]
    pub target_ts: Ts,
    /// Mirrors `state` (facts §2.8).
    #[serde(rename = "admin-job-type", default)]
    pub admin_job_type: AdminJobType,
    /// `memory`, `file` or `unified`; empty becomes `unified` on load.
    #[serde(rename = "sort-engine", default)]
    pub sort_engine: String,
    /// The replica config; Go panics on a nil one, we read null as the defaults.
    #[serde(default, deserialize_with = "null_default")]
    pub config: ReplicaConfig,
    /// The feed state.
    #[serde(default)]
    pub state: FeedState,
    /// Error times in Unix milliseconds (Go `ErrorHis`), or null.
    #[serde(default)]
    pub history: Option<Vec<i64>>,
    /// The last error, or null.
    #[serde(default)]
    pub error: Option<RunningError>,
    /// Sync points on/off.
    #[serde(rename = "sync-point-enabled", default)]
    pub sync_point_enabled: bool,
    /// Sync point interval in nanoseconds (Go `time.Duration`).
    #[serde(rename = "sync-point-interval", default)]
    pub sync_point_interval: i64,
    /// Version of the creating CLI.
    #[serde(rename = "creator-version", default)]
    pub creator_version: String,
    /// Unknown fields (for example rcdc's own additions read by an older rcdc), kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChangeFeedInfo {
    /// `start-ts` if set, else the TSO of `create-time` (0 if that does not parse).
    pub fn start_ts(&self) -> Ts {
        if self.start_ts.0 > 0 {
            return self.start_ts;
        }
        parse_rfc3339_ms(&self.create_time)
            .map(|ms| Ts::from_parts(ms, 0))
            .unwrap_or_default()
    }

    /// The status checkpoint if a status exists, else the start ts.
    pub fn checkpoint_ts(&self, status: Option<&ChangeFeedStatus>) -> Ts {
        status
            .map(|s| s.checkpoint_ts)
            .unwrap_or_else(|| self.start_ts())
    }

    /// The target ts, `Ts::MAX` when unset.
    pub fn target_ts(&self) -> Ts {
        if self.target_ts.0 > 0 {
            self.target_ts
        } else {
            Ts::MAX
        }
    }

    /// TiCDC's `VerifyAndFix`, run on every load: an empty sort engine becomes `unified`.
    /// (Null sub-configs already decode as their defaults.)
    pub fn verify_and_fix(&mut self) {
        if self.sort_engine.is_empty() {
            self.sort_engine = "unified".to_owned();
        }
    }
}

/// Unix milliseconds of an RFC3339 timestamp such as `2021-06-17T10:10:37.123456789+08:00`.
fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(10) != Some(&b'T') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        let padded = format!("{frac:0<3}");
        millis = padded.get(0..3)?.parse().ok()?;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let m = oh * 60 + om;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

#[cfg(test)]
mod tests;
