//! The etcd key layout (facts §1) under a configurable root prefix.
//!
//! [`KeyLayout::parse`] never fails on a key under the prefix: keys it does not understand come
//! back as [`CdcKey::Unknown`], because a newer version may write keys we do not know, and
//! TiCDC v5 stopping every worker on such a key is a bug we do not repeat (facts §8.6).

use crate::ids::{CaptureId, ChangefeedId};

/// The default root prefix, TiCDC's `/tidb/cdc`.
pub const DEFAULT_PREFIX: &str = "/tidb/cdc";

/// A parsed key under the root prefix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CdcKey {
    /// `<prefix>/owner/<lease-id-hex>`: an owner election candidate; the value is a capture id.
    Owner {
        /// Whatever follows `/owner/` (the lease id in lowercase hex); empty for the bare key.
        lease: String,
    },
    /// `<prefix>/capture/<capture-id>`: a live capture (CaptureInfo JSON, on its session lease).
    Capture(CaptureId),
    /// `<prefix>/changefeed/info/<changefeed-id>`: ChangeFeedInfo JSON.
    ChangefeedInfo(ChangefeedId),
    /// `<prefix>/job/<changefeed-id>`: ChangeFeedStatus JSON.
    ChangefeedStatus(ChangefeedId),
    /// `<prefix>/task/status/<capture-id>/<changefeed-id>`: TaskStatus JSON.
    TaskStatus {
        /// The capture holding the tables.
        capture: CaptureId,
        /// The changefeed.
        changefeed: ChangefeedId,
    },
    /// `<prefix>/task/position/<capture-id>/<changefeed-id>`: TaskPosition JSON.
    TaskPosition {
        /// The reporting capture.
        capture: CaptureId,
        /// The changefeed.
        changefeed: ChangefeedId,
    },
    /// `<prefix>/task/workload/<capture-id>/<changefeed-id>`: TaskWorkload JSON.
    TaskWorkload {
        /// The reporting capture.
        capture: CaptureId,
        /// The changefeed.
        changefeed: ChangefeedId,
    },
    /// `<prefix>/meta/ticdc-delete-etcd-key-count`: the delete counter of later TiCDC versions
    /// (facts §3.7). Owned by the EtcdWorker and hidden from reactors.
    DeleteCounter,
    /// Anything else under the prefix. Ignored, never fatal.
    Unknown,
}

impl CdcKey {
    /// The changefeed a key belongs to, if any.
    pub fn changefeed(&self) -> Option<&ChangefeedId> {
        match self {
            CdcKey::ChangefeedInfo(cf) | CdcKey::ChangefeedStatus(cf) => Some(cf),
            CdcKey::TaskStatus { changefeed, .. }
            | CdcKey::TaskPosition { changefeed, .. }
            | CdcKey::TaskWorkload { changefeed, .. } => Some(changefeed),
            _ => None,
        }
    }
}

/// The key layout under one root prefix; several clusters can share an etcd with different
/// prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

const OWNER: &str = "/owner";
const CAPTURE: &str = "/capture/";
const INFO: &str = "/changefeed/info/";
const JOB: &str = "/job/";
const TASK_STATUS: &str = "/task/status/";
const TASK_POSITION: &str = "/task/position/";
const TASK_WORKLOAD: &str = "/task/workload/";
const DELETE_COUNTER: &str = "/meta/ticdc-delete-etcd-key-count";

impl KeyLayout {
    /// A layout under `prefix`, normalized like TiCDC's `NormalizePrefix`: a leading `/` is
    /// added and trailing ones removed.
    pub fn new(prefix: &str) -> Self {
        let trimmed = prefix.trim_end_matches('/');
        let prefix = if trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("/{trimmed}")
        };
        Self { prefix }
    }

    /// The normalized root prefix, e.g. `/tidb/cdc`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix to list or watch to see every key of this cluster (`<prefix>/`), so that a
    /// sibling cluster `/tidb/cdc2` is never included.
    pub fn watch_prefix(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// Parses a full key. `None` when the key is not under this prefix at all.
    pub fn parse(&self, key: &str) -> Option<CdcKey> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        Some(parse_rest(rest))
    }

    /// The full key string of `key`. [`CdcKey::Unknown`] has no key and encodes to the prefix.
    pub fn encode(&self, key: &CdcKey) -> String {
        let p = &self.prefix;
        match key {
            CdcKey::Owner { lease } if lease.is_empty() => format!("{p}{OWNER}"),
            CdcKey::Owner { lease } => format!("{p}{OWNER}/{lease}"),
            CdcKey::Capture(c) => format!("{p}{CAPTURE}{c}"),
            CdcKey::ChangefeedInfo(cf) => format!("{p}{INFO}{cf}"),
            CdcKey::ChangefeedStatus(cf) => format!("{p}{JOB}{cf}"),
            CdcKey::TaskStatus {
                capture,
                changefeed,
            } => {
                format!("{p}{TASK_STATUS}{capture}/{changefeed}")
            }
            CdcKey::TaskPosition {
                capture,
                changefeed,
            } => {
                format!("{p}{TASK_POSITION}{capture}/{changefeed}")
            }
            CdcKey::TaskWorkload {
                capture,
                changefeed,
            } => {
                format!("{p}{TASK_WORKLOAD}{capture}/{changefeed}")
            }
            CdcKey::DeleteCounter => format!("{p}{DELETE_COUNTER}"),
            CdcKey::Unknown => p.clone(),
        }
    }

    /// The election prefix `<prefix>/owner` used by the capture's campaign.
    pub fn owner_prefix(&self) -> String {
        format!("{}{OWNER}", self.prefix)
    }
    /// `<prefix>/capture/`.
    pub fn capture_prefix(&self) -> String {
        format!("{}{CAPTURE}", self.prefix)
    }
    /// `<prefix>/changefeed/info/`.
    pub fn changefeed_info_prefix(&self) -> String {
        format!("{}{INFO}", self.prefix)
    }
    /// `<prefix>/job/`: every changefeed's status (its checkpoint).
    pub fn status_prefix(&self) -> String {
        format!("{}{JOB}", self.prefix)
    }
    /// `<prefix>/task/status/<capture>/`: one capture's task statuses.
    pub fn task_status_prefix(&self, capture: &CaptureId) -> String {
        format!("{}{TASK_STATUS}{capture}/", self.prefix)
    }

    /// Convenience encoders.
    pub fn capture(&self, c: &CaptureId) -> String {
        self.encode(&CdcKey::Capture(c.clone()))
    }
    /// `<prefix>/changefeed/info/<cf>`.
    pub fn info(&self, cf: &ChangefeedId) -> String {
        self.encode(&CdcKey::ChangefeedInfo(cf.clone()))
    }
    /// `<prefix>/job/<cf>`.
    pub fn status(&self, cf: &ChangefeedId) -> String {
        self.encode(&CdcKey::ChangefeedStatus(cf.clone()))
    }
    /// `<prefix>/task/status/<capture>/<cf>`.
    pub fn task_status(&self, capture: &CaptureId, cf: &ChangefeedId) -> String {
        self.encode(&CdcKey::TaskStatus {
            capture: capture.clone(),
            changefeed: cf.clone(),
        })
    }
    /// `<prefix>/task/position/<capture>/<cf>`.
    pub fn task_position(&self, capture: &CaptureId, cf: &ChangefeedId) -> String {
        self.encode(&CdcKey::TaskPosition {
            capture: capture.clone(),
            changefeed: cf.clone(),
        })
    }
    /// `<prefix>/task/workload/<capture>/<cf>`.
    pub fn task_workload(&self, capture: &CaptureId, cf: &ChangefeedId) -> String {
        self.encode(&CdcKey::TaskWorkload {
            capture: capture.clone(),
            changefeed: cf.clone(),
        })
    }
    /// `<prefix>/meta/ticdc-delete-etcd-key-count`.
    pub fn delete_counter(&self) -> String {
        self.encode(&CdcKey::DeleteCounter)
    }
}

fn parse_rest(rest: &str) -> CdcKey {
    if rest == OWNER {
        return CdcKey::Owner {
            lease: String::new(),
        };
    }
    if let Some(lease) = rest.strip_prefix(OWNER).and_then(|r| r.strip_prefix('/')) {
        return CdcKey::Owner {
            lease: lease.to_owned(),
        };
    }
    if rest == DELETE_COUNTER {
        return CdcKey::DeleteCounter;
    }
    let single = |p: &str| rest.strip_prefix(p).filter(|id| !id.is_empty());
    if let Some(id) = single(CAPTURE) {
        return CdcKey::Capture(CaptureId::from(id));
    }
    if let Some(id) = single(INFO) {
        return CdcKey::ChangefeedInfo(ChangefeedId::from(id));
    }
    if let Some(id) = single(JOB) {
        return CdcKey::ChangefeedStatus(ChangefeedId::from(id));
    }
    // Like TiCDC's parser, a task key splits on the first '/' after the kind and only needs
    // both parts to exist: `task/position/<capture>/` names changefeed "" (and
    // `task/status//<cf>` capture ""). Reading such a stray key as what it is puts it in the
    // snapshot, where the owner's clean-up of task keys of a changefeed without info (or of a
    // capture that is gone) can remove it, instead of leaving it unknown for ever.
    let task = |p: &str| {
        let (capture, changefeed) = rest.strip_prefix(p)?.split_once('/')?;
        Some((CaptureId::from(capture), ChangefeedId::from(changefeed)))
    };
    if let Some((capture, changefeed)) = task(TASK_STATUS) {
        return CdcKey::TaskStatus {
            capture,
            changefeed,
        };
    }
    if let Some((capture, changefeed)) = task(TASK_POSITION) {
        return CdcKey::TaskPosition {
            capture,
            changefeed,
        };
    }
    if let Some((capture, changefeed)) = task(TASK_WORKLOAD) {
        return CdcKey::TaskWorkload {
            capture,
            changefeed,
        };
    }
    CdcKey::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l() -> KeyLayout {
        KeyLayout::default()
    }

    #[test]
    fn parses_every_v5_key_kind() {
        let cases = [
            (
                "/tidb/cdc/owner/22318498f4dd6639",
                CdcKey::Owner {
                    lease: "22318498f4dd6639".into(),
                },
            ),
            (
                "/tidb/cdc/owner",
                CdcKey::Owner {
                    lease: String::new(),
                },
            ),
            (
                "/tidb/cdc/capture/6bbc01c8-0605-4f86-a0f9-b3119109b225",
                CdcKey::Capture("6bbc01c8-0605-4f86-a0f9-b3119109b225".into()),
            ),
            (
                "/tidb/cdc/changefeed/info/test-cf",
                CdcKey::ChangefeedInfo("test-cf".into()),
            ),
            (
                "/tidb/cdc/job/test-cf",
                CdcKey::ChangefeedStatus("test-cf".into()),
            ),
            (
                "/tidb/cdc/task/status/cap-1/test-cf",
                CdcKey::TaskStatus {
                    capture: "cap-1".into(),
                    changefeed: "test-cf".into(),
                },
            ),
            (
                "/tidb/cdc/task/position/cap-1/test-cf",
                CdcKey::TaskPosition {
                    capture: "cap-1".into(),
                    changefeed: "test-cf".into(),
                },
            ),
            (
                "/tidb/cdc/task/workload/cap-1/test-cf",
                CdcKey::TaskWorkload {
                    capture: "cap-1".into(),
                    changefeed: "test-cf".into(),
                },
            ),
            (
                "/tidb/cdc/meta/ticdc-delete-etcd-key-count",
                CdcKey::DeleteCounter,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(l().parse(raw), Some(want.clone()), "{raw}");
            assert_eq!(l().encode(&want), raw);
        }
    }

    #[test]
    fn task_keys_put_the_capture_first_and_split_on_the_first_slash() {
        // A changefeed id cannot contain '/', but a capture id in a hand-written key might be
        // odd; the first '/' splits like TiCDC.
        assert_eq!(
            l().parse("/tidb/cdc/task/status/c/cf/extra"),
            Some(CdcKey::TaskStatus {
                capture: "c".into(),
                changefeed: "cf/extra".into()
            })
        );
    }

    #[test]
    fn task_keys_with_an_empty_part_parse_like_ticdc() {
        let cases = [
            (
                "/tidb/cdc/task/position/c/",
                CdcKey::TaskPosition {
                    capture: "c".into(),
                    changefeed: "".into(),
                },
            ),
            (
                "/tidb/cdc/task/status//cf",
                CdcKey::TaskStatus {
                    capture: "".into(),
                    changefeed: "cf".into(),
                },
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(l().parse(raw), Some(want.clone()), "{raw}");
            assert_eq!(l().encode(&want), raw);
        }
    }

    #[test]
    fn unknown_and_malformed_keys_are_unknown_not_errors() {
        for raw in [
            "/tidb/cdc/meta/__cdc_meta_version",
            "/tidb/cdc/default/__cdc_meta__/capture/x",
            "/tidb/cdc/task/status/only-capture",
            "/tidb/cdc/capture/",
            "/tidb/cdc/job/",
            "/tidb/cdc",
            "/tidb/cdc/ownerx",
        ] {
            assert_eq!(l().parse(raw), Some(CdcKey::Unknown), "{raw}");
        }
    }

    #[test]
    fn keys_of_a_sibling_prefix_are_not_ours() {
        assert_eq!(l().parse("/tidb/cdc2/capture/x"), None);
        assert_eq!(l().parse("/other"), None);
        let custom = KeyLayout::new("cluster-a/");
        assert_eq!(custom.prefix(), "/cluster-a");
        assert_eq!(
            custom.parse("/cluster-a/job/cf"),
            Some(CdcKey::ChangefeedStatus("cf".into()))
        );
        assert_eq!(custom.watch_prefix(), "/cluster-a/");
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_identity(
            cap in "[a-f0-9-]{1,36}",
            cf in "[a-zA-Z0-9]{1,8}(-[a-zA-Z0-9]{1,8}){0,3}",
            kind in 0usize..7,
        ) {
            let key = match kind {
                0 => CdcKey::Capture(cap.as_str().into()),
                1 => CdcKey::ChangefeedInfo(cf.as_str().into()),
                2 => CdcKey::ChangefeedStatus(cf.as_str().into()),
                3 => CdcKey::TaskStatus { capture: cap.as_str().into(), changefeed: cf.as_str().into() },
                4 => CdcKey::TaskPosition { capture: cap.as_str().into(), changefeed: cf.as_str().into() },
                5 => CdcKey::TaskWorkload { capture: cap.as_str().into(), changefeed: cf.as_str().into() },
                _ => CdcKey::Owner { lease: cap.clone() },
            };
            prop_assert_eq!(l().parse(&l().encode(&key)), Some(key));
        }
    }
}
