//! Secrets never reach a recording file.
//!
//! Recordings hold raw etcd values and tick inputs and outputs, and a changefeed's sink URI
//! may carry a password (`mysql://user:password@host/`, `?sasl-password=`). Every string in a
//! line that is a URI is masked as logs mask it ([`crate::sink::mask_uri`]); a string that is
//! JSON text (a raw etcd value) is masked inside. Masking is idempotent and no decision of a
//! reactor reads a password, so a replay from masked inputs reproduces the masked outputs;
//! replay masks what it recomputes before comparing.

use serde_json::Value;

/// Masks every secret in `value`, in place.
pub fn mask_secrets(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(masked) = masked_string(s) {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        Value::Object(fields) => fields.values_mut().for_each(mask_secrets),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The masked form of `s`, or `None` when it holds no secret (so untouched values keep their
/// exact bytes).
fn masked_string(s: &str) -> Option<String> {
    if !s.contains("://") {
        return None;
    }
    let trimmed = s.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
            let before = inner.clone();
            mask_secrets(&mut inner);
            return (inner != before).then(|| inner.to_string());
        }
    }
    let masked = crate::sink::mask_uri(s);
    (masked != s).then_some(masked)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn passwords_are_masked_in_uris_and_inside_raw_json_values() {
        let raw =
            r#"{"sink-uri":"mysql://root:s3cret@127.0.0.1:3306/?worker-count=4","start-ts":1}"#;
        let mut line = json!({
            "kvs": [{"key": "/tidb/cdc/changefeed/info/cf", "value": raw}],
            "input": {"sink_uri": "kafka://k:9092/t?sasl-password=hunter2&protocol=canal-json"},
            "n": 3,
        });
        mask_secrets(&mut line);
        let text = line.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(text.contains("root:xxxxx@127.0.0.1:3306"), "{text}");
        assert!(text.contains("worker-count=4") && text.contains("\\\"start-ts\\\":1"));
        // Idempotent: masking a masked line changes nothing.
        let again = {
            let mut v = line.clone();
            mask_secrets(&mut v);
            v
        };
        assert_eq!(again, line);
    }

    #[test]
    fn values_without_secrets_keep_their_exact_bytes() {
        let raw = r#"{"sink-uri":"blackhole://",  "start-ts":1}"#;
        let mut v = json!(raw);
        mask_secrets(&mut v);
        assert_eq!(v, json!(raw));
    }
}
