//! Encoding and decoding exactly as Go's `encoding/json` does for these values.
//!
//! Two details make serde_json's default output differ from Go's bytes, although both decode to
//! the same value:
//! - Go escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings (`\u003c` ...), and writes the
//!   control characters backspace and form feed as `\u0008` and `\u000c` (Go before 1.22);
//! - Go sorts map keys as strings, so a table map comes out as `"10"` before `"9"`, while a
//!   `BTreeMap<TableId, _>` iterates numerically.
//!
//! [`encode`] handles the first; the table-map serializers here handle the second. The
//! replay tooling compares outputs byte for byte (target-design §3), and operators diff etcd
//! values written by TiCDC and by rcdc, so matching the bytes is worth these few lines.

use std::collections::BTreeMap;
use std::io;

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::ser::{CharEscape, Formatter};

use crate::ids::TableId;

/// Decodes a stored value (JSON bytes as found in etcd).
///
/// # Errors
/// The bytes are not JSON of `T`'s shape, or hold an enum value TiCDC does not define.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Encodes a value the way Go's `json.Marshal` would: compact, with Go's string escaping.
///
/// # Errors
/// Only if a `Serialize` impl fails; the model types here never do.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

/// serde_json's compact formatter with Go's string escaping.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json hands us runs that need no JSON escaping; Go's HTML-safe escaping may still
        // apply inside them.
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        let s: &[u8] = match char_escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\u0008",
            CharEscape::FormFeed => b"\\u000c",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let buf = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ];
                return writer.write_all(&buf);
            }
        };
        writer.write_all(s)
    }
}

/// Serializes a table map with its keys in Go's order (sorted as decimal strings).
pub(crate) fn serialize_table_map<S, V>(map: &BTreeMap<TableId, V>, s: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    V: Serialize,
{
    let mut entries: Vec<(String, &V)> = map.iter().map(|(k, v)| (k.0.to_string(), v)).collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = s.serialize_map(Some(entries.len()))?;
    for (k, v) in entries {
        out.serialize_entry(&k, v)?;
    }
    out.end()
}

/// [`serialize_table_map`] for a map Go may hold as nil (`None` is `null`).
pub(crate) fn serialize_opt_table_map<S, V>(
    map: &Option<BTreeMap<TableId, V>>,
    s: S,
) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    V: Serialize,
{
    match map {
        Some(m) => serialize_table_map(m, s),
        None => s.serialize_none(),
    }
}

/// Reads `null` (a Go nil pointer) as the type's default, for sub-objects that TiCDC's
/// `VerifyAndFix` replaces with defaults when nil.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_like_go() {
        let s = "mysql://u:p@h:3306/?a=1&b=<2>\u{2028}\u{2029}\u{8}\u{c}\u{1}\n\"\\é";
        let bytes = encode(&s).expect("encode");
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf8"),
            r#""mysql://u:p@h:3306/?a=1\u0026b=\u003c2\u003e\u2028\u2029\u0008\u000c\u0001\n\"\\é""#
        );
        let back: String = decode(&bytes).expect("decode");
        assert_eq!(back, s);
    }

    #[test]
    fn table_maps_use_go_key_order() {
        #[derive(Serialize)]
        struct W(#[serde(serialize_with = "serialize_table_map")] BTreeMap<TableId, u8>);
        let m: BTreeMap<TableId, u8> = [(9, 1), (10, 2), (-1, 3), (100, 4)]
            .into_iter()
            .map(|(k, v)| (TableId(k), v))
            .collect();
        let json = String::from_utf8(encode(&W(m)).expect("encode")).expect("utf8");
        assert_eq!(json, r#"{"-1":3,"10":2,"100":4,"9":1}"#);
    }
}
