//! Cluster version checks (TiCDC `pkg/version/check.go`): TiKV stores and PD must be at least
//! 4.0.0-rc.1 (facts §5). Server start only warns about TiKV and fails for PD.

use std::fmt;

use rcdc_proto::metapb;
use semver::Version;

/// The oldest TiKV TiCDC v5 talks to.
pub const MIN_TIKV_VERSION: &str = "4.0.0-rc.1";
/// The oldest PD TiCDC v5 talks to.
pub const MIN_PD_VERSION: &str = "4.0.0-rc.1";

/// A version string that is not semver even after cleaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {raw:?}: {reason}")]
pub struct VersionError {
    /// The string as reported.
    pub raw: String,
    /// The parser's complaint.
    pub reason: String,
}

/// Parses a TiDB-family version: a leading `v`, a git-describe suffix (`-12-g1a2b3c4`,
/// optionally `-dev`) and a `-dirty` suffix are dropped, as TiCDC's `removeVAndHash` does;
/// the rest is semver ("5.1.0", "5.1.0-alpha", "4.0.0-rc.1").
pub fn parse_version(raw: &str) -> Result<Version, VersionError> {
    let cleaned = clean(raw.trim());
    Version::parse(&cleaned).map_err(|e| VersionError {
        raw: raw.to_string(),
        reason: e.to_string(),
    })
}

/// `v` prefix, `-dirty` suffix and every `-<n>-g<hex ≥ 7>[-dev]` dropped.
fn clean(v: &str) -> String {
    let mut out = strip_describe(v);
    if let Some(s) = out.strip_suffix("-dirty") {
        out = s.to_string();
    }
    out.strip_prefix('v').unwrap_or(&out).to_string()
}

/// Removes git-describe parts: "-" digits "-g" at least 7 hex digits, and an optional "-dev".
fn strip_describe(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(pos) = rest.find('-') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match describe_len(tail) {
            Some(n) => rest = &tail[n..],
            None => {
                out.push('-');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The length of a git-describe part at the start of `s` ("-12-g1a2b3c4[-dev]"), if any.
fn describe_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let digits = b.iter().skip(1).take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || b.get(1 + digits) != Some(&b'-') || b.get(2 + digits) != Some(&b'g') {
        return None;
    }
    let start = 3 + digits;
    let hex = b[start..]
        .iter()
        .take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        .count();
    if hex < 7 {
        return None;
    }
    let end = start + hex;
    Some(if s[end..].starts_with("-dev") {
        end + 4
    } else {
        end
    })
}

fn minimum(text: &str) -> Version {
    // The constants above are valid semver; a typo there is a bug caught by the tests.
    Version::parse(text).unwrap_or_else(|e| panic!("minimum version {text:?}: {e}"))
}

/// A store whose version is too old or unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreVersionWarning {
    /// The store id.
    pub store_id: u64,
    /// Its address.
    pub address: String,
    /// Its version as reported.
    pub version: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for StoreVersionWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TiKV store {} at {} reports version {:?}: {}",
            self.store_id, self.address, self.version, self.problem
        )
    }
}

/// One warning per store (tombstones skipped) whose version is below [`MIN_TIKV_VERSION`] or
/// not a version at all, in store id order.
pub fn check_store_versions(stores: &[metapb::Store]) -> Vec<StoreVersionWarning> {
    let min = minimum(MIN_TIKV_VERSION);
    let mut stores: Vec<&metapb::Store> = stores
        .iter()
        .filter(|s| s.state != metapb::StoreState::Tombstone as i32)
        .collect();
    stores.sort_by_key(|s| s.id);
    stores
        .into_iter()
        .filter_map(|s| {
            let problem = match parse_version(&s.version) {
                Ok(v) if v >= min => return None,
                Ok(_) => format!("below the minimum supported TiKV {MIN_TIKV_VERSION}"),
                Err(e) => e.reason,
            };
            Some(StoreVersionWarning {
                store_id: s.id,
                address: s.address.clone(),
                version: s.version.clone(),
                problem,
            })
        })
        .collect()
}

/// Checks PD's version (from `GET /pd/api/v1/version`) against [`MIN_PD_VERSION`]; the error
/// says which version was found.
pub fn check_pd_version(raw: &str) -> Result<Version, VersionError> {
    let v = parse_version(raw)?;
    if v < minimum(MIN_PD_VERSION) {
        return Err(VersionError {
            raw: raw.to_string(),
            reason: format!("PD {v} is not supported, the minimum is {MIN_PD_VERSION}"),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: u64, version: &str, state: metapb::StoreState) -> metapb::Store {
        metapb::Store {
            id,
            address: format!("127.0.0.1:2016{id}"),
            version: version.into(),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn parses_tidb_style_versions() {
        assert_eq!(parse_version("v5.1.0").expect("v"), Version::new(5, 1, 0));
        assert_eq!(
            parse_version("5.1.0").expect("plain"),
            Version::new(5, 1, 0)
        );
        let alpha = parse_version("5.1.0-alpha").expect("alpha");
        assert_eq!(alpha.pre.as_str(), "alpha");
        let rc = parse_version("4.0.0-rc.1").expect("rc");
        assert_eq!(rc.pre.as_str(), "rc.1");
        // git describe and dirty suffixes, as TiCDC strips them.
        assert_eq!(
            parse_version("v5.1.0-alpha-12-g1a2b3c4d-dev-dirty").expect("describe"),
            parse_version("5.1.0-alpha").expect("alpha")
        );
        assert_eq!(
            parse_version("v4.0.9-3-gabcdef0").expect("describe"),
            Version::new(4, 0, 9)
        );
        // Too few hex digits is not a git hash: it stays (and is a valid pre-release).
        assert_eq!(
            parse_version("5.0.0-1-gabc").expect("short").pre.as_str(),
            "1-gabc"
        );
        assert!(parse_version("5.1").is_err());
        assert!(parse_version("").is_err());
    }

    #[test]
    fn minimums_are_valid_and_pre_releases_order_below_releases() {
        let min = minimum(MIN_TIKV_VERSION);
        assert_eq!(minimum(MIN_PD_VERSION), min);
        assert!(parse_version("4.0.0-rc").expect("rc") < min);
        assert!(parse_version("4.0.0-beta.2").expect("beta") < min);
        assert!(parse_version("4.0.0-rc.2").expect("rc.2") > min);
        assert!(parse_version("4.0.0").expect("ga") > min);
        assert!(parse_version("v3.1.2").expect("3.1") < min);
    }

    #[test]
    fn store_warnings_name_id_address_and_version() {
        use metapb::StoreState::{Offline, Tombstone, Up};
        let stores = vec![
            store(3, "3.0.0", Up),
            store(1, "v5.1.0", Up),
            store(2, "garbage", Offline),
            store(4, "2.1.0", Tombstone),
            store(5, "4.0.0-rc.1", Up),
        ];
        let warnings = check_store_versions(&stores);
        let ids: Vec<u64> = warnings.iter().map(|w| w.store_id).collect();
        assert_eq!(ids, vec![2, 3], "tombstones skipped, sorted by id");
        let text = warnings[1].to_string();
        assert_eq!(
            text,
            "TiKV store 3 at 127.0.0.1:20163 reports version \"3.0.0\": below the minimum \
             supported TiKV 4.0.0-rc.1"
        );
        assert!(warnings[0].to_string().contains("\"garbage\""));
    }

    #[test]
    fn pd_version_check_fails_below_the_minimum() {
        assert!(check_pd_version("v5.1.0").is_ok());
        let e = check_pd_version("v3.0.13").expect_err("old");
        assert!(e.to_string().contains("3.0.13") && e.to_string().contains("4.0.0-rc.1"));
        assert!(check_pd_version("unknown").is_err());
    }
}
