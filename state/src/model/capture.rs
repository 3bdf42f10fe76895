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

impl CaptureInfo {
    /// rcdc's additive field marking a capture that is shutting down: the owner moves its
    /// tables away and never gives it new ones (TiCDC ignores the unknown field).
    pub const DRAINING_FIELD: &'static str = "rcdc-draining";

    /// Whether the capture asked to be drained.
    pub fn is_draining(&self) -> bool {
        self.extra
            .get(Self::DRAINING_FIELD)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// Marks (or unmarks) the capture as draining.
    pub fn set_draining(&mut self, draining: bool) {
        if draining {
            self.extra.insert(
                Self::DRAINING_FIELD.to_owned(),
                serde_json::Value::Bool(true),
            );
        } else {
            self.extra.remove(Self::DRAINING_FIELD);
        }
    }
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

    #[test]
    fn draining_is_an_additive_field() {
        let mut c: CaptureInfo = decode(FACTS.as_bytes()).expect("decode");
        assert!(!c.is_draining());
        c.set_draining(true);
        let json = String::from_utf8(encode(&c).expect("encode")).expect("utf8");
        assert!(json.ends_with(r#","rcdc-draining":true}"#), "{json}");
        let back: CaptureInfo = decode(json.as_bytes()).expect("decode");
        assert!(back.is_draining());
    }

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
