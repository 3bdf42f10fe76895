//! RunningError (facts §2.3).

use serde::{Deserialize, Serialize};

use super::Extra;

/// Error codes that fail a changefeed at once instead of retrying: exactly TiCDC's
/// `ChangefeedFastFailErrorCode` list (`pkg/errors/helper.go`, facts §2.3).
pub const FAST_FAIL_CODES: [&str; 2] = ["CDC:ErrStartTsBeforeGC", "CDC:ErrSnapshotLostByGC"];

/// An error reported by an owner or processor, stored in ChangeFeedInfo and TaskPosition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningError {
    /// Address of the capture that saw it.
    #[serde(default)]
    pub addr: String,
    /// RFC error code, e.g. `CDC:ErrSnapshotLostByGC`; `CDC:ErrProcessorUnknown` or
    /// `CDC:ErrOwnerUnknown` when the error had none.
    #[serde(default)]
    pub code: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Fields this version does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

impl RunningError {
    /// Whether the changefeed must fail at once (no retry) on this error: its code is one of
    /// [`FAST_FAIL_CODES`], compared exactly.
    pub fn is_fast_fail(&self) -> bool {
        FAST_FAIL_CODES.contains(&self.code.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{decode, encode};

    #[test]
    fn the_facts_example_round_trips_byte_for_byte() {
        let go = r#"{"addr":"127.0.0.1:8300","code":"CDC:ErrProcessorUnknown","message":"..."}"#;
        let e: RunningError = decode(go.as_bytes()).expect("decode");
        assert_eq!(e.addr, "127.0.0.1:8300");
        assert_eq!(e.message, "...");
        assert_eq!(encode(&e).expect("encode"), go.as_bytes());
    }

    #[test]
    fn unknown_fields_survive() {
        let go = r#"{"addr":"a","code":"c","message":"m","some-future-field":{"x":1}}"#;
        let e: RunningError = decode(go.as_bytes()).expect("decode");
        assert_eq!(encode(&e).expect("encode"), go.as_bytes());
    }

    #[test]
    fn exactly_two_codes_fail_fast() {
        let with = |code: &str| RunningError {
            code: code.into(),
            ..Default::default()
        };
        assert!(with("CDC:ErrStartTsBeforeGC").is_fast_fail());
        assert!(with("CDC:ErrSnapshotLostByGC").is_fast_fail());
        for other in [
            "CDC:ErrGCTTLExceeded",
            "CDC:ErrProcessorUnknown",
            "CDC:ErrOwnerUnknown",
            "cdc:errsnapshotlostbygc",
            "ErrSnapshotLostByGC",
            "",
        ] {
            assert!(!with(other).is_fast_fail(), "{other}");
        }
    }
}
