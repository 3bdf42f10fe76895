//! ChangeFeedStatus, the "job" key (facts §2.4).

use serde::{Deserialize, Serialize};

use super::{AdminJobType, Extra};
use crate::ids::Ts;

/// `<prefix>/job/<changefeed>`: the changefeed's progress, written by the owner only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_facts_example() {
        let go = r#"{"resolved-ts":425908870000000000,"checkpoint-ts":425908869000000000,"admin-job-type":0}"#;
        let s: ChangeFeedStatus = serde_json::from_str(go).expect("decode");
        assert_eq!(s.checkpoint_ts, Ts(425908869000000000));
        assert_eq!(serde_json::to_string(&s).expect("encode"), go);
    }

    #[test]
    fn unknown_admin_job_type_is_a_clear_error() {
        let err =
            serde_json::from_str::<ChangeFeedStatus>(r#"{"admin-job-type":9}"#).expect_err("9");
        assert!(err.to_string().contains("admin job type 9"), "{err}");
    }
}
