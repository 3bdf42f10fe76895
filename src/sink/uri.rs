//! Sink URI parsing and validation, done when a changefeed is created.
//!
//! Accepted:
//! - `blackhole://` (parameters are ignored, as in TiCDC).
//! - `file:///abs/dir?protocol=canal-json|csv[&file-size=BYTES][&flush-interval=DUR]
//!   [&worker-count=N][&enable-tidb-extension=BOOL]` with TiCDC's storage-sink names,
//!   defaults and ranges: `file-size` 64 MiB (1 MiB–512 MiB), `flush-interval` 5s (2s–10m, a
//!   Go duration such as `30s`, `1m30s`, `2500ms`), `worker-count` 16 (1–512, accepted but
//!   unused), `enable-tidb-extension` false (canal-json's `_tidb` field; a Go `ParseBool`
//!   value, as TiCDC reads it).
//!
//! Unknown parameters, repeated parameters and out-of-range values are rejected, each error
//! naming the offending part. Error messages carry the URI masked by [`mask_uri`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{FileProtocol, FileSinkConfig, SinkError, SinkSpec};

const MIB: u64 = 1024 * 1024;
const MIN_FILE_SIZE: u64 = MIB;
const MAX_FILE_SIZE: u64 = 512 * MIB;
const MIN_FLUSH_INTERVAL_MS: u64 = 2_000;
const MAX_FLUSH_INTERVAL_MS: u64 = 10 * 60_000;
const MAX_WORKER_COUNT: u32 = 512;

/// Schemes TiCDC knows that rcdc does not implement (yet).
const UNSUPPORTED_SCHEMES: &[&str] = &[
    "mysql",
    "mysql+ssl",
    "tidb",
    "tidb+ssl",
    "kafka",
    "kafka+ssl",
    "pulsar",
    "pulsar+ssl",
    "pulsar+http",
    "pulsar+https",
    "s3",
    "gcs",
    "gs",
    "azblob",
    "azure",
    "noop",
];

/// Protocols TiCDC knows that a storage sink does not accept.
const NON_STORAGE_PROTOCOLS: &[&str] = &[
    "open-protocol",
    "default",
    "canal",
    "avro",
    "flat-avro",
    "maxwell",
    "craft",
    "debezium",
    "simple",
    "debezium-avro",
];

/// Query parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "sasl-password",
    "access-key",
    "secret-access-key",
    "session-token",
    "authentication-token",
    "basic-password",
    "account-key",
    "sas-token",
];

/// The replacement for secrets in URIs shown to people.
const MASK: &str = "xxxxx";

/// Parses and validates a sink URI.
pub fn parse_sink_uri(uri: &str) -> Result<SinkSpec, SinkError> {
    let bad = |reason: String| SinkError::InvalidUri {
        uri: mask_uri(uri),
        reason,
    };
    let trimmed = uri.trim();
    if trimmed.is_empty() {
        return Err(bad("the sink URI is empty".into()));
    }
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(bad(
            "not a URI: expected scheme://..., e.g. file:///data/cdc?protocol=canal-json or blackhole://"
                .into(),
        ));
    };
    let scheme_lc = scheme.to_ascii_lowercase();
    match scheme_lc.as_str() {
        "blackhole" => Ok(SinkSpec::Blackhole),
        "file" => parse_file(trimmed, rest).map_err(bad),
        s if UNSUPPORTED_SCHEMES.contains(&s) => Err(bad(format!(
            "sink scheme '{scheme}' is not supported by rcdc yet (supported: blackhole, file)"
        ))),
        _ => Err(bad(format!(
            "unknown sink scheme '{scheme}' (supported: blackhole, file)"
        ))),
    }
}

fn parse_file(uri: &str, rest: &str) -> Result<SinkSpec, String> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if !authority.is_empty() && !authority.eq_ignore_ascii_case("localhost") {
        return Err(format!(
            "file sink needs an absolute directory (file:///abs/dir); got host '{}' — a relative \
             path such as file://{}/... is not allowed",
            mask_authority(authority),
            mask_authority(authority),
        ));
    }
    if rest.contains('#') {
        return Err("a file sink URI may not have a fragment ('#...')".into());
    }
    let raw_path = rest[authority_end..].split('?').next().unwrap_or("");
    if raw_path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == ".."
    }) {
        return Err(format!("directory '{raw_path}' may not contain '..'"));
    }
    let parsed = url::Url::parse(uri).map_err(|e| format!("not a valid URI: {e}"))?;
    let dir: PathBuf = parsed
        .to_file_path()
        .map_err(|()| format!("path '{}' is not an absolute directory", parsed.path()))?;
    if parsed.path().trim_matches('/').is_empty() {
        return Err("the file sink directory is empty (or '/'): give file:///abs/dir".into());
    }
    if !dir.is_absolute() {
        return Err(format!(
            "directory '{}' is not absolute",
            dir.to_string_lossy()
        ));
    }
    if dir
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "directory '{}' may not contain '..'",
            dir.to_string_lossy()
        ));
    }

    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in parsed.query_pairs() {
        let k = k.into_owned();
        if params.contains_key(&k) {
            return Err(format!("parameter '{k}' is given more than once"));
        }
        params.insert(k, v.into_owned());
    }

    let protocol = match params.remove("protocol") {
        None => {
            return Err(
                "file sink needs a protocol parameter: protocol=canal-json or protocol=csv".into(),
            )
        }
        Some(p) => match p.to_ascii_lowercase().as_str() {
            "canal-json" => FileProtocol::CanalJson,
            "csv" => FileProtocol::Csv,
            "" => return Err("parameter 'protocol' is empty (use canal-json or csv)".into()),
            lc if NON_STORAGE_PROTOCOLS.contains(&lc) => {
                return Err(format!(
                    "protocol '{p}' is not supported by the file sink (use canal-json or csv)"
                ))
            }
            _ => return Err(format!("unknown protocol '{p}' (use canal-json or csv)")),
        },
    };
    let mut cfg = FileSinkConfig::new(dir, protocol);
    if let Some(v) = params.remove("file-size") {
        cfg.file_size = parse_ranged_u64("file-size", &v, MIN_FILE_SIZE, MAX_FILE_SIZE, "bytes")?;
    }
    if let Some(v) = params.remove("flush-interval") {
        let ms = parse_go_duration_ms(&v)
            .ok_or_else(|| format!("flush-interval '{v}' is not a duration such as 5s or 1m30s"))?;
        if !(MIN_FLUSH_INTERVAL_MS..=MAX_FLUSH_INTERVAL_MS).contains(&ms) {
            return Err(format!(
                "flush-interval '{v}' is out of range: must be between 2s and 10m"
            ));
        }
        cfg.flush_interval_ms = ms;
    }
    if let Some(v) = params.remove("worker-count") {
        cfg.worker_count = parse_ranged_u64(
            "worker-count",
            &v,
            1,
            u64::from(MAX_WORKER_COUNT),
            "workers",
        )? as u32;
    }
    if let Some(v) = params.remove("enable-tidb-extension") {
        cfg.enable_tidb_extension = parse_go_bool(&v).ok_or_else(|| {
            format!("enable-tidb-extension '{v}' is not a boolean (use true or false)")
        })?;
    }
    if let Some(k) = params.keys().next() {
        return Err(format!(
            "unknown parameter '{k}' for the file sink (known: protocol, file-size, \
             flush-interval, worker-count, enable-tidb-extension)"
        ));
    }
    Ok(SinkSpec::File(cfg))
}

fn parse_ranged_u64(name: &str, v: &str, min: u64, max: u64, unit: &str) -> Result<u64, String> {
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{name} '{v}' is not a whole number of {unit}"))?;
    if !(min..=max).contains(&n) {
        return Err(format!(
            "{name} {n} is out of range: must be between {min} and {max} {unit}"
        ));
    }
    Ok(n)
}

/// Parses a boolean as Go's `strconv.ParseBool` does (TiCDC reads URI flags with it).
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a Go duration (`300ms`, `1.5h`, `2m30s`) to whole milliseconds.
pub(crate) fn parse_go_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(0);
    }
    let mut total_ns: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_ns += num * unit_ns;
    }
    if !total_ns.is_finite() || total_ns > 1e18 {
        return None;
    }
    Some((total_ns / 1e6) as u64)
}

/// The URI with any userinfo password and secret query parameters replaced by `xxxxx`; for
/// logs and error messages. Works on malformed URIs too (best effort, never panics).
pub fn mask_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let body_start = scheme_end + 3;
    let body = &uri[body_start..];
    let authority_end = body.find(['/', '?', '#']).unwrap_or(body.len());
    let mut out = String::with_capacity(uri.len());
    out.push_str(&uri[..body_start]);
    out.push_str(&mask_authority(&body[..authority_end]));
    let tail = &body[authority_end..];
    match tail.split_once('?') {
        None => out.push_str(tail),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                        format!("{k}={MASK}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&masked.join("&"));
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
        }
    }
    out
}

fn mask_authority(authority: &str) -> String {
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:{MASK}@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    }
}
