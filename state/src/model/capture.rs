//! CaptureInfo (facts §2.1).

use serde::{Deserialize, Serialize};

use super::Extra;
use crate::ids::CaptureId;

/// `<prefix>/capture/<id>`: a live capture, on its session lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureInfo {
    /// The capture id (a UUID).
    #[serde(default)]
    pub id: CaptureId,
    /// Advertise address `host:port` (Go `AdvertiseAddr`).
    #[serde(default)]
    pub address: String,
    /// Release version, e.g. `v5.1.0`.
    #[serde(default)]
    pub version: String,
    /// Fields this version does not know (a newer capture's), kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The empty id: Go's zero value, which is what a capture value without `id` decodes to.
// Here rather than in `ids` because only the model's `#[serde(default)]` needs it.
impl Default for CaptureId {
    fn default() -> Self {
        CaptureId::new("")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::model::{decode, encode};

    const FACTS: &str = r#"{"id":"0f8e5f7c-3c1e-4c53-9a55-7a3c4bd1a001","address":"127.0.0.1:8300","version":"v5.1.0"}"#;

    #[test]
    fn the_facts_example_round_trips_byte_for_byte() {
        let c: CaptureInfo = decode(FACTS.as_bytes()).expect("decode");
        assert_eq!(c.id.as_str(), "0f8e5f7c-3c1e-4c53-9a55-7a3c4bd1a001");
        assert_eq!(c.address, "127.0.0.1:8300");
        assert_eq!(c.version, "v5.1.0");
        let out = encode(&c).expect("encode");
        assert_eq!(out, FACTS.as_bytes());
        let a: Value = serde_json::from_slice(&out).expect("json");
        let b: Value = serde_json::from_str(FACTS).expect("json");
        assert_eq!(a, b);
    }

    #[test]
    fn unknown_fields_survive_and_missing_ones_are_empty() {
        let go = r#"{"id":"a","address":"h:1","version":"v5.1.0","is-owner-candidate":true,"some-future-field":{"x":1}}"#;
        let c: CaptureInfo = decode(go.as_bytes()).expect("decode");
        assert_eq!(encode(&c).expect("encode"), go.as_bytes());
        let c: CaptureInfo = decode(b"{}").expect("decode");
        assert_eq!(c, CaptureInfo::default());
        assert_eq!(
            encode(&c).expect("encode"),
            br#"{"id":"","address":"","version":""}"#
        );
        assert!(decode::<CaptureInfo>(br#"{"id":5}"#).is_err());
    }
}
