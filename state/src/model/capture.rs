//! CaptureInfo (facts §2.1).

use serde::{Deserialize, Serialize};

use super::Extra;
use crate::ids::CaptureId;

/// `<prefix>/capture/<id>`: a live capture, on its session lease.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureInfo {
    /// The capture id (a UUID).
    #[serde(default = "empty_id")]
    pub id: CaptureId,
    /// Advertise address `host:port`.
    #[serde(default)]
    pub address: String,
    /// Release version, e.g. `v5.1.0`.
    #[serde(default)]
    pub version: String,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Extra,
}

fn empty_id() -> CaptureId {
    CaptureId::new("")
}

impl Default for CaptureId {
    fn default() -> Self {
        empty_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_ticdc_json_and_keeps_unknown_fields() {
        let go = r#"{"id":"0f8e5f7c-3c1e-4c53-9a55-7a3c4bd1a001","address":"127.0.0.1:8300","version":"v5.1.0","is-owner-candidate":true}"#;
        let c: CaptureInfo = serde_json::from_str(go).expect("decode");
        assert_eq!(c.address, "127.0.0.1:8300");
        assert_eq!(serde_json::to_string(&c).expect("encode"), go);
    }
}
