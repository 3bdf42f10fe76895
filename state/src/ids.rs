//! Identifier and timestamp newtypes.
//!
//! Every id that crosses a module boundary has its own type so that a capture id can never be
//! passed where a changefeed id is expected. They serialize exactly like TiCDC's Go values
//! (strings and integers), so the JSON stays compatible.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Regex-free check of TiCDC's changefeed id rule `^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$`, at most
/// 128 characters (facts §1).
pub fn is_valid_changefeed_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string without validation; validation belongs at the API edge.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A capture's id: a UUIDv4 string, new every time the capture resets its session.
    CaptureId
);
string_id!(
    /// A changefeed's id (see [`is_valid_changefeed_id`]).
    ChangefeedId
);

/// A TiDB-style TSO timestamp: physical milliseconds `<< 18 |` logical counter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ts(pub u64);

impl Ts {
    /// The number of logical bits below the physical milliseconds.
    pub const LOGICAL_BITS: u32 = 18;
    /// The largest timestamp; TiCDC's "no target".
    pub const MAX: Ts = Ts(u64::MAX);
    /// Builds a TSO from Unix milliseconds and a logical counter.
    pub fn from_parts(physical_ms: u64, logical: u64) -> Self {
        Ts((physical_ms << Self::LOGICAL_BITS) | (logical & ((1 << Self::LOGICAL_BITS) - 1)))
    }
    /// Unix milliseconds of the physical part.
    pub fn physical_ms(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }
    /// The raw value.
    pub fn get(self) -> u64 {
        self.0
    }
    /// `self - 1`, saturating at 0 (TiCDC v5 underflowed here, facts §8.16).
    pub fn prev(self) -> Ts {
        Ts(self.0.saturating_sub(1))
    }
}
impl fmt::Debug for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ts({})", self.0)
    }
}
impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A table id (TiDB's physical table id, an i64).
///
/// In JSON maps Go writes it as a decimal string key; as a value it is a number. Deserializing
/// accepts both so that it works as a map key behind `#[serde(flatten)]` buffering too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TableId(pub i64);

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl Serialize for TableId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}
impl<'de> Deserialize<'de> for TableId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TableId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table id (an integer or a decimal string)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TableId, E> {
                Ok(TableId(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TableId, E> {
                i64::try_from(v)
                    .map(TableId)
                    .map_err(|_| E::custom(format!("table id {v} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TableId, E> {
                v.parse::<i64>()
                    .map(TableId)
                    .map_err(|_| E::custom(format!("table id {v:?} is not an integer")))
            }
        }
        d.deserialize_any(V)
    }
}

/// An etcd revision (mod/create revision or a header revision). 0 means "absent".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Revision(pub i64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changefeed_id_rule_matches_ticdc_regex() {
        for ok in ["a", "cf-1", "A1-b2-c3", &"x".repeat(128)] {
            assert!(is_valid_changefeed_id(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "a_b", "a b", "ä", &"x".repeat(129)] {
            assert!(!is_valid_changefeed_id(bad), "{bad}");
        }
    }

    #[test]
    fn table_id_accepts_string_and_number() {
        let a: TableId = serde_json::from_str("\"45\"").unwrap();
        let b: TableId = serde_json::from_str("45").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<TableId>("\"x\"").is_err());
    }

    #[test]
    fn ts_parts_round_trip() {
        let ts = Ts::from_parts(1_623_895_837_123, 5);
        assert_eq!(ts.physical_ms(), 1_623_895_837_123);
        assert_eq!(ts.get() & 0x3ffff, 5);
        assert_eq!(Ts(0).prev(), Ts(0));
    }
}
