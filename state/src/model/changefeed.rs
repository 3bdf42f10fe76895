//! ChangeFeedInfo and its enums (facts §2.2, §2.8).
//!
//! Go's nil vs empty: `opts`, `history` and `error` are `Option`s, so `null` and `{}`/`[]`
//! each come back as they were written.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codec::{decode, encode, null_default};
use super::{ChangeFeedStatus, Extra, ReplicaConfig, RunningError};
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

/// A changefeed's state (facts §2.8), stored as a lowercase string.
///
/// Go's type is a plain string, so Go would accept any value; we reject a string that is not
/// one of TiCDC's states with a decode error naming it. Go's zero value `""` is the exception:
/// TiCDC's owner runs such a feed and its first tick rewrites the state as `normal`, so we read
/// it as [`FeedState::Normal`] straight away.
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

/// The sort engines TiCDC knows; `sort-engine` stays a string because Go accepts any.
pub mod sort_engine {
    /// In-memory sorting.
    pub const MEMORY: &str = "memory";
    /// File-based sorting (deprecated in TiCDC).
    pub const FILE: &str = "file";
    /// The unified sorter: TiCDC's default, and what an empty value becomes on load.
    pub const UNIFIED: &str = "unified";
}

/// How Go writes the zero `time.Time`: what `create-time` holds when nothing set it. An empty
/// string would be unreadable to TiCDC (`time.Time` rejects it), so this is our default too.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The `opts` key under which TiCDC's read path for the CLI and HTTP API
/// (`ChangeFeedInfo.Unmarshal`) hands the cyclic config, as JSON, to the sink; see
/// [`ChangeFeedInfo::unmarshal`].
pub const CYCLIC_CONFIG_OPT: &str = "_cyclic_relax_sql_mode";

/// `<prefix>/changefeed/info/<id>`: what to replicate where (facts §2.2).
///
/// A missing field decodes as Go's zero value, except `config`, which becomes TiCDC's default
/// config when missing or `null` (Go would panic on a nil config in `VerifyAndFix`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChangeFeedInfo {
    /// Where to write.
    #[serde(rename = "sink-uri")]
    pub sink_uri: String,
    /// Extra sink options. The CLI writes `{}`; `None` is Go's nil map (`null`).
    pub opts: Option<BTreeMap<String, String>>,
    /// RFC3339Nano creation time, kept verbatim as Go wrote it.
    #[serde(rename = "create-time")]
    pub create_time: String,
    /// Start ts; 0 means "the TSO of create-time" (see [`Self::start_ts`]).
    #[serde(rename = "start-ts")]
    pub start_ts: Ts,
    /// Target ts; 0 means none (see [`Self::target_ts`]).
    #[serde(rename = "target-ts")]
    pub target_ts: Ts,
    /// Mirrors `state` (facts §2.8).
    #[serde(rename = "admin-job-type")]
    pub admin_job_type: AdminJobType,
    /// One of [`sort_engine`]; empty becomes `unified` in [`Self::verify_and_fix`].
    #[serde(rename = "sort-engine")]
    pub sort_engine: String,
    /// The replica config.
    #[serde(deserialize_with = "null_default")]
    pub config: ReplicaConfig,
    /// The feed state.
    pub state: FeedState,
    /// Error times in Unix milliseconds (Go `ErrorHis`); `None` is `null`.
    pub history: Option<Vec<i64>>,
    /// The last error; `None` is `null`.
    pub error: Option<RunningError>,
    /// Sync points on/off.
    #[serde(rename = "sync-point-enabled")]
    pub sync_point_enabled: bool,
    /// Sync point interval in nanoseconds (Go `time.Duration`; the CLI default is 10 min).
    #[serde(rename = "sync-point-interval")]
    pub sync_point_interval: i64,
    /// Version of the creating CLI.
    #[serde(rename = "creator-version")]
    pub creator_version: String,
    /// Fields this version does not know (a newer TiCDC's or rcdc's additions, such as
    /// `upstream-uri`), written back unchanged so our read-modify-write loses nothing.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for ChangeFeedInfo {
    /// Go's zero value, except that `config` is TiCDC's default config (Go's would be nil) and
    /// `create-time` is Go's zero time.
    fn default() -> Self {
        Self {
            sink_uri: String::new(),
            opts: None,
            create_time: GO_ZERO_TIME.to_owned(),
            start_ts: Ts(0),
            target_ts: Ts(0),
            admin_job_type: AdminJobType::None,
            sort_engine: String::new(),
            config: ReplicaConfig::default(),
            state: FeedState::Normal,
            history: None,
            error: None,
            sync_point_enabled: false,
            sync_point_interval: 0,
            creator_version: String::new(),
            extra: Extra::new(),
        }
    }
}

impl ChangeFeedInfo {
    /// Decodes an info the way TiCDC's CLI and HTTP API read one (`ChangeFeedInfo.Unmarshal`,
    /// facts §2.2): [`decode`], then, when cyclic replication is on, the cyclic config's JSON
    /// under `opts[`[`CYCLIC_CONFIG_OPT`]`]`, replacing any value there.
    ///
    /// The snapshot does not use this: TiCDC's reactor state decodes infos without it, and an
    /// owner that rewrote an info read this way would store the derived opt in etcd. Where Go
    /// would panic (cyclic on and `opts` null, a nil map) the map is created instead.
    ///
    /// # Errors
    /// As [`decode`].
    pub fn unmarshal(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut info: Self = decode(bytes)?;
        if info.config.cyclic_replication.enable {
            let cyclic = String::from_utf8(encode(&info.config.cyclic_replication)?)
                .map_err(<serde_json::Error as serde::ser::Error>::custom)?;
            info.opts
                .get_or_insert_with(BTreeMap::new)
                .insert(CYCLIC_CONFIG_OPT.to_owned(), cyclic);
        }
        Ok(info)
    }

    /// Go's `CreateTime.Unix()`: the Unix seconds (floored) of `create-time`, or `None` when it
    /// is not an RFC3339 time.
    pub fn create_time_unix_secs(&self) -> Option<i64> {
        parse_rfc3339_unix_secs(&self.create_time)
    }

    /// TiCDC's `GetStartTs`: `start-ts` if it is > 0, else the TSO of `create-time`.
    ///
    /// TiCDC computes that TSO as `EncodeTSO(CreateTime.Unix() * 1000)`, so the sub-second part
    /// is dropped; we do the same. A `create-time` that does not parse, or lies before 1970
    /// (Go's zero time included, where Go's arithmetic wraps), gives `Ts(0)`.
    pub fn start_ts(&self) -> Ts {
        if self.start_ts.0 > 0 {
            return self.start_ts;
        }
        self.create_time_unix_secs()
            .and_then(|secs| u64::try_from(secs).ok())
            .and_then(|secs| secs.checked_mul(1000))
            .map(|ms| Ts::from_parts(ms, 0))
            .unwrap_or_default()
    }

    /// TiCDC's `GetCheckpointTs`: the status checkpoint if a status exists, else
    /// [`Self::start_ts`].
    pub fn checkpoint_ts(&self, status: Option<&ChangeFeedStatus>) -> Ts {
        status.map_or_else(|| self.start_ts(), |s| s.checkpoint_ts)
    }

    /// TiCDC's `GetTargetTs`: `target-ts`, or `Ts::MAX` when it is 0.
    pub fn target_ts(&self) -> Ts {
        if self.target_ts.0 > 0 {
            self.target_ts
        } else {
            Ts::MAX
        }
    }

    /// TiCDC's `VerifyAndFix`, run on every load: an empty `sort-engine` becomes `unified`.
    ///
    /// TiCDC also replaces nil `filter`, `mounter`, `sink`, `cyclic-replication` and
    /// `scheduler` with their defaults; here decoding already did that (and reads a nil
    /// `config`, on which Go panics, as the default config), so nothing else is left to fix.
    pub fn verify_and_fix(&mut self) {
        if self.sort_engine.is_empty() {
            self.sort_engine = sort_engine::UNIFIED.to_owned();
        }
    }
}

/// Unix seconds (floored, like Go's `Time.Unix`) of an RFC3339 time such as
/// `2021-06-17T10:10:37.123456789+08:00`; `None` if it is not one.
fn parse_rfc3339_unix_secs(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // A fixed-width run of ASCII digits (no sign, unlike `str::parse`).
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && (sep(10, b'T') || sep(10, b't')))
        || !(sep(13, b':') && sep(16, b':'))
    {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    if sep(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && sep(i + 3, b':') => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = oh * 3600 + om * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs)
}

#[cfg(test)]
mod tests;
