//! ChangeFeedStatus, the "job" key (facts §2.4).

use serde::{Deserialize, Serialize};

use super::{AdminJobType, Extra};
use crate::ids::Ts;

/// `<prefix>/job/<changefeed>`: the changefeed's progress, written by the owner only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeFeedStatus {
    /// Every table has all its changes up to here in the sorter.
    #[serde(rename = "resolved-ts", default)]
    pub resolved_ts: Ts,
    /// Every change up to here is in the sink.
    #[serde(rename = "checkpoint-ts", default)]
    pub checkpoint_ts: Ts,
    /// Mirrors the info's admin job type (facts §2.8).
    #[serde(rename = "admin-job-type", default)]
    pub admin_job_type: AdminJobType,
    /// Fields this version does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{decode, encode};

    #[test]
    fn the_facts_example_round_trips_byte_for_byte() {
        let go = r#"{"resolved-ts":425908870000000000,"checkpoint-ts":425908869000000000,"admin-job-type":0}"#;
        let s: ChangeFeedStatus = decode(go.as_bytes()).expect("decode");
        assert_eq!(s.resolved_ts, Ts(425_908_870_000_000_000));
        assert_eq!(s.checkpoint_ts, Ts(425_908_869_000_000_000));
        assert_eq!(encode(&s).expect("encode"), go.as_bytes());
    }

    #[test]
    fn full_u64_range_and_unknown_fields_survive_flatten_buffering() {
        // `extra` makes serde buffer the object; u64 values above i64::MAX must still decode.
        let go = r#"{"resolved-ts":18446744073709551615,"checkpoint-ts":9223372036854775808,"admin-job-type":4,"some-future-field":{"x":1}}"#;
        let s: ChangeFeedStatus = decode(go.as_bytes()).expect("decode");
        assert_eq!(s.resolved_ts, Ts::MAX);
        assert_eq!(s.admin_job_type, AdminJobType::Finish);
        assert_eq!(encode(&s).expect("encode"), go.as_bytes());
    }

    #[test]
    fn unknown_admin_job_type_is_a_clear_error() {
        let err = decode::<ChangeFeedStatus>(br#"{"admin-job-type":9}"#).expect_err("9");
        assert!(err.to_string().contains("admin job type 9"), "{err}");
        let err = decode::<ChangeFeedStatus>(br#"{"checkpoint-ts":-1}"#).expect_err("-1");
        assert!(err.to_string().contains("-1"), "{err}");
    }
}
