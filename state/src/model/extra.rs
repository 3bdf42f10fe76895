//! [`Extra`]: the JSON fields a stored struct does not know.

use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The JSON fields a stored struct does not know, in their original order, kept so that they
/// are written back unchanged. It reads and writes like a `serde_json::Map` (through
/// `Deref`), but holds nothing until a field is there: almost every stored struct has no
/// unknown field, and an inline empty map cost 72 bytes per struct (per table, in every
/// `TableReplicaInfo` of a `BTreeMap` leaf sized for eleven), which at a million tables was
/// half of the snapshot's memory.
#[derive(Clone, Default)]
pub struct Extra(Option<Box<Map<String, Value>>>);

static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

impl Extra {
    /// No unknown fields.
    pub fn new() -> Self {
        Self(None)
    }
}

impl Deref for Extra {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Self::Target {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for Extra {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.get_or_insert_with(Default::default)
    }
}

impl From<Map<String, Value>> for Extra {
    fn from(m: Map<String, Value>) -> Self {
        Self((!m.is_empty()).then(|| Box::new(m)))
    }
}

impl FromIterator<(String, Value)> for Extra {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Extra::from(iter.into_iter().collect::<Map<String, Value>>())
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Extra {}

impl std::fmt::Debug for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Map::deserialize(d).map(Extra::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_until_written_and_equal_however_held() {
        let mut e = Extra::new();
        assert!(e.is_empty() && e.0.is_none());
        assert_eq!(e, Extra::from(Map::new()));
        assert!(
            Extra::from(Map::new()).0.is_none(),
            "an empty map is not kept"
        );
        e.insert("k".into(), Value::from(1));
        assert_eq!(e.get("k"), Some(&Value::from(1)));
        e.remove("k");
        assert_eq!(e, Extra::new(), "emptied equals never written");
        assert_eq!(serde_json::to_string(&e).unwrap(), "{}");
        let back: Extra = serde_json::from_str(r#"{"b":2,"a":[1]}"#).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), r#"{"b":2,"a":[1]}"#);
    }

    /// Found by the fuzzer: without serde_json's `float_roundtrip` this float came back one
    /// ulp off, so an unknown float field of a newer TiCDC was not written back unchanged.
    #[test]
    fn an_unknown_float_is_written_back_exactly() {
        let text = r#"{"a":{"":[5.9605188944039715e-167]},"b":-1.942332740733503e64}"#;
        let back: Extra = serde_json::from_str(text).unwrap();
        let again: Extra = serde_json::from_str(&serde_json::to_string(&back).unwrap()).unwrap();
        assert_eq!(again, back);
        assert_eq!(
            back.get("b").and_then(Value::as_f64),
            Some(-1.942332740733503e64)
        );
    }
}
