//! RunningError (facts §2.3).

use serde::{Deserialize, Serialize};

use super::Extra;

/// Error codes that fail a changefeed at once instead of retrying (facts §2.3).
pub const FAST_FAIL_CODES: [&str; 2] = ["CDC:ErrStartTsBeforeGC", "CDC:ErrSnapshotLostByGC"];

/// An error reported by an owner or processor, stored in ChangeFeedInfo and TaskPosition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningError {
    /// Address of the capture that saw it.
    #[serde(default)]
    pub addr: String,
    /// RFC error code, e.g. `CDC:ErrSnapshotLostByGC`.
    #[serde(default)]
    pub code: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

impl RunningError {
    /// Whether the changefeed must fail at once (no retry) on this error.
    pub fn is_fast_fail(&self) -> bool {
        FAST_FAIL_CODES.contains(&self.code.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fast_fail() {
        let go = r#"{"addr":"127.0.0.1:8300","code":"CDC:ErrProcessorUnknown","message":"boom"}"#;
        let e: RunningError = serde_json::from_str(go).expect("decode");
        assert!(!e.is_fast_fail());
        assert_eq!(serde_json::to_string(&e).expect("encode"), go);
        let lost = RunningError {
            code: "CDC:ErrSnapshotLostByGC".into(),
            ..Default::default()
        };
        assert!(lost.is_fast_fail());
    }
}
