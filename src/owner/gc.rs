//! The GC safe points (facts §4.12): the owner keeps each upstream from garbage-collecting
//! data a changefeed still needs, by pushing `min checkpoint − 1` over that upstream's live
//! changefeeds as an effect to its GC interface, and fails a changefeed whose checkpoint fell
//! behind its own upstream's safe point (its data is gone).
//!
//! Safe points are per upstream (issue #11): a changefeed's upstream is its info's
//! `upstream-uri`, else [`GcConfig::default_upstream`]. One safe point over every upstream
//! would let one upstream's GC, far ahead, fail changefeeds of another.
//!
//! Fixed TiCDC v5 behaviour: the safe point is checkpoint − 1, not the checkpoint (§8.13);
//! with no live changefeed left on an upstream its service safe point is removed (TTL 0; v5
//! sent u64::MAX); a lower minimum is pushed at once rather than within the minute; the lost-snapshot check
//! applies only to changefeeds that should run (a stopped one is never flipped to error,
//! §8.12).

use std::collections::{BTreeMap, BTreeSet};

use rcdc_state::model::{ChangeFeedInfo, FeedState, RunningError};
use rcdc_state::{ChangefeedId, GlobalState, Ts};

/// TiCDC's service id for the safe point (of the cluster under the default prefix).
pub const SERVICE_ID: &str = "ticdc";

/// The service id of the cluster under `cluster_prefix`: [`SERVICE_ID`] under TiCDC's default
/// `/tidb/cdc`, else `ticdc` plus the prefix (`/t/a` → `ticdc-t-a`). Clusters sharing one PD
/// (several prefixes on one etcd) must not overwrite or remove each other's safe point.
pub fn service_id(cluster_prefix: &str) -> String {
    match cluster_prefix {
        "/tidb/cdc" => SERVICE_ID.to_owned(),
        other => format!("{SERVICE_ID}{}", other.replace('/', "-")),
    }
}

fn default_service_id() -> String {
    SERVICE_ID.to_owned()
}

/// The `ChangeFeedInfo` field naming a changefeed's upstream (rcdc's additive field).
pub const UPSTREAM_URI_FIELD: &str = "upstream-uri";

/// The upstream URI of a changefeed: its `upstream-uri` field, else `default` (the cluster's
/// `cdc server --upstream`).
pub fn upstream_of<'a>(info: &'a ChangeFeedInfo, default: &'a str) -> &'a str {
    info.extra
        .get(UPSTREAM_URI_FIELD)
        .and_then(|v| v.as_str())
        .unwrap_or(default)
}

/// GC settings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GcConfig {
    /// Service safe point TTL (`gc-ttl`, default 86,400 s).
    pub ttl_secs: u64,
    /// How often to push (TiCDC: 1 min; the first tick always pushes).
    pub update_interval_ms: u64,
    /// The upstream of changefeeds whose info names none (`cdc server --upstream`), so that
    /// a changefeed naming that URI explicitly shares its safe point. Empty means "the
    /// runtime's default upstream" (owners configured before safe points were per upstream).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_upstream: String,
    /// The service id of this cluster's safe points ([`service_id`]).
    #[serde(default = "default_service_id")]
    pub service_id: String,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 86_400,
            update_interval_ms: 60_000,
            default_upstream: String::new(),
            service_id: default_service_id(),
        }
    }
}

/// The effect the runtime executes against the upstream.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpdateSafePoint {
    /// The upstream URI to push to; empty: the runtime's default upstream (then left out of
    /// the JSON, which is exactly the effect of recordings made before issue #11).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub upstream: String,
    /// Always [`SERVICE_ID`].
    pub service_id: String,
    /// TTL of the service safe point.
    pub ttl_secs: u64,
    /// The safe point to set.
    pub safe_point: Ts,
}

/// The upstream's answer to one [`UpdateSafePoint`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SafePointResult {
    /// Accepted; the upstream's current minimum service safe point.
    Updated {
        /// The push's [`UpdateSafePoint::upstream`].
        #[serde(default, skip_serializing_if = "String::is_empty")]
        upstream: String,
        /// GC will not pass this ts.
        min_safe_point: Ts,
    },
    /// The call failed.
    Failed {
        /// The push's [`UpdateSafePoint::upstream`].
        #[serde(default, skip_serializing_if = "String::is_empty")]
        upstream: String,
        /// Why.
        error: String,
    },
}

impl SafePointResult {
    /// The result of executing `update`: the upstream's minimum safe point, or why not.
    pub fn answer(update: &UpdateSafePoint, answer: Result<Ts, String>) -> Self {
        let upstream = update.upstream.clone();
        match answer {
            Ok(min_safe_point) => Self::Updated {
                upstream,
                min_safe_point,
            },
            Err(error) => Self::Failed { upstream, error },
        }
    }

    /// The upstream URI the answer is from.
    pub fn upstream(&self) -> &str {
        match self {
            Self::Updated { upstream, .. } | Self::Failed { upstream, .. } => upstream,
        }
    }
}

/// What the owner knows of one upstream's GC.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct UpstreamGc {
    /// The last successful push, or the first push while none has succeeded: failing for a
    /// TTL from here means our service safe point may have lapsed.
    since_ms: u64,
    /// The upstream's minimum service safe point at its last answer.
    min_safe_point: Option<Ts>,
    /// The safe point last pushed to it (a lower minimum is pushed at once).
    #[serde(default)]
    pushed: Option<Ts>,
}

/// Tracks the safe point of every upstream in use for the owner.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "GcManagerSerde")]
pub struct GcManager {
    config: GcConfig,
    /// The last push round (every upstream is pushed in the same round).
    last_push_ms: Option<u64>,
    /// By upstream URI ("" is the runtime's default, see [`GcConfig::default_upstream`]).
    upstreams: BTreeMap<String, UpstreamGc>,
    /// Upstreams whose safe point is being removed (TTL 0) until one removal is answered;
    /// a failed removal is sent again at each round.
    #[serde(default)]
    releasing: BTreeSet<String>,
}

/// [`GcManager`] as read from a recording's resume line. It also takes the fields of the
/// single-upstream manager, so that recordings made before safe points were per upstream
/// resume with the same memory.
#[derive(serde::Deserialize)]
struct GcManagerSerde {
    config: GcConfig,
    #[serde(default)]
    last_push_ms: Option<u64>,
    #[serde(default)]
    upstreams: BTreeMap<String, UpstreamGc>,
    #[serde(default)]
    last_success_ms: Option<u64>,
    #[serde(default)]
    upstream_min: Option<Ts>,
    #[serde(default)]
    releasing: BTreeSet<String>,
}

impl From<GcManagerSerde> for GcManager {
    fn from(s: GcManagerSerde) -> Self {
        let mut upstreams = s.upstreams;
        if s.last_success_ms.is_some() || s.upstream_min.is_some() {
            // The old manager knew one upstream: the default one.
            upstreams
                .entry(s.config.default_upstream.clone())
                .or_insert(UpstreamGc {
                    since_ms: s.last_success_ms.unwrap_or(0),
                    min_safe_point: s.upstream_min,
                    pushed: None,
                });
        }
        Self {
            config: s.config,
            last_push_ms: s.last_push_ms,
            upstreams,
            releasing: s.releasing,
        }
    }
}

/// Whether a changefeed in this state holds back GC.
fn holds_gc(state: FeedState) -> bool {
    matches!(
        state,
        FeedState::Normal | FeedState::Stopped | FeedState::Error
    )
}

/// `min checkpoint` over the changefeeds that hold GC, per upstream URI.
fn live_minimums<'a>(state: &'a GlobalState, default_upstream: &'a str) -> BTreeMap<&'a str, Ts> {
    let mut mins: BTreeMap<&str, Ts> = BTreeMap::new();
    for cf in state.changefeeds().values() {
        let Some(info) = cf.info.as_ref().filter(|i| holds_gc(i.state)) else {
            continue;
        };
        let checkpoint = info.checkpoint_ts(cf.status.as_ref());
        let min = mins
            .entry(upstream_of(info, default_upstream))
            .or_insert(checkpoint);
        *min = (*min).min(checkpoint);
    }
    mins
}

/// An upstream URI for messages: secrets masked, the empty default named.
pub fn describe_upstream(uri: &str) -> String {
    match uri {
        "" => "the default upstream".to_owned(),
        uri => crate::sink::mask_uri(uri),
    }
}

impl GcManager {
    /// A manager with `config`.
    pub fn new(config: GcConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    /// The pushes to make this tick, in URI order:
    /// - a round, one push per upstream with live changefeeds, each `min checkpoint − 1` over
    ///   that upstream's changefeeds: every `update_interval_ms`, and at once when a minimum
    ///   falls below what was last pushed (a changefeed created, resumed or moved to an
    ///   upstream with an older checkpoint must be protected now, not within a minute);
    /// - a removal (TTL 0) for an upstream whose last live changefeed went away, so its
    ///   service safe point stops holding GC at once instead of after the TTL.
    ///
    /// Between rounds only the changefeeds in the state's change log are looked at.
    pub fn tick(&mut self, state: &GlobalState, now_ms: u64) -> Vec<UpdateSafePoint> {
        let interval_elapsed = self
            .last_push_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= self.config.update_interval_ms);
        let changed = state.changes().changefeeds.keys();
        if !interval_elapsed && !changed.into_iter().any(|id| self.may_need_push(state, id)) {
            return vec![];
        }
        let default_upstream = self.config.default_upstream.clone();
        let mins = live_minimums(state, &default_upstream);
        let mut pushes = self.releases(&mins, interval_elapsed);
        let moved_back = mins.iter().any(|(uri, min)| {
            self.upstreams
                .get(*uri)
                .and_then(|u| u.pushed)
                .is_none_or(|pushed| min.prev() < pushed)
        });
        if interval_elapsed {
            // A round, even with nothing to protect: the next full scan is a minute away.
            self.last_push_ms = Some(now_ms);
        }
        if mins.is_empty() || !(interval_elapsed || moved_back) {
            return pushes;
        }
        self.last_push_ms = Some(now_ms);
        // Nothing is checked against an upstream without live changefeeds; if one comes
        // back, its failure clock restarts at its next push.
        self.upstreams
            .retain(|uri, _| mins.contains_key(uri.as_str()));
        for (uri, min) in mins {
            let entry = self.upstreams.entry(uri.to_owned()).or_insert(UpstreamGc {
                since_ms: now_ms,
                min_safe_point: None,
                pushed: None,
            });
            entry.pushed = Some(min.prev());
            pushes.push(UpdateSafePoint {
                upstream: uri.to_owned(),
                service_id: self.config.service_id.clone(),
                ttl_secs: self.config.ttl_secs,
                safe_point: min.prev(),
            });
        }
        pushes
    }

    /// Whether a change of `id` may call for a push before the next round: it holds GC
    /// below what its upstream was last given (or on an upstream not yet pushed to), or it
    /// stopped holding GC (its upstream may have no live changefeed left).
    fn may_need_push(&self, state: &GlobalState, id: &ChangefeedId) -> bool {
        let cf = state.changefeed(id);
        match cf
            .and_then(|c| c.info.as_ref())
            .filter(|i| holds_gc(i.state))
        {
            Some(info) => {
                let checkpoint = info.checkpoint_ts(cf.and_then(|c| c.status.as_ref()));
                self.upstreams
                    .get(upstream_of(info, &self.config.default_upstream))
                    .and_then(|u| u.pushed)
                    .is_none_or(|pushed| checkpoint.prev() < pushed)
            }
            None => self.upstreams.values().any(|u| u.pushed.is_some()),
        }
    }

    /// Removal pushes: for the upstreams we protected that have no live changefeed now
    /// (their entries are forgotten), and, at a round, again for removals not yet answered.
    fn releases(&mut self, mins: &BTreeMap<&str, Ts>, round: bool) -> Vec<UpdateSafePoint> {
        let idle: Vec<String> = self
            .upstreams
            .iter()
            .filter(|(uri, u)| u.pushed.is_some() && !mins.contains_key(uri.as_str()))
            .map(|(uri, _)| uri.clone())
            .collect();
        // An upstream live again is protected by the round instead.
        self.releasing
            .retain(|uri| !mins.contains_key(uri.as_str()));
        let again: Vec<String> = match round {
            true => self.releasing.iter().cloned().collect(),
            false => Vec::new(),
        };
        for uri in &idle {
            self.upstreams.remove(uri);
            self.releasing.insert(uri.clone());
        }
        again
            .into_iter()
            .chain(idle)
            .map(|uri| UpdateSafePoint {
                upstream: uri,
                service_id: self.config.service_id.clone(),
                ttl_secs: 0,
                safe_point: Ts(0),
            })
            .collect()
    }

    /// Feeds back the answer to one push. Returns an error for the owner to surface when
    /// pushes to that upstream have failed for longer than the TTL (its safe point may have
    /// lapsed).
    pub fn on_result(&mut self, result: SafePointResult, now_ms: u64) -> Option<String> {
        let ttl_ms = self.config.ttl_secs.saturating_mul(1_000);
        let ttl_secs = self.config.ttl_secs;
        if self.releasing.contains(result.upstream()) {
            // The answer to a removal: done when it succeeded, sent again at the next
            // round when not; nothing to check against an upstream we no longer use.
            if matches!(result, SafePointResult::Updated { .. }) {
                self.releasing.remove(result.upstream());
            }
            return None;
        }
        match result {
            SafePointResult::Updated {
                upstream,
                min_safe_point,
            } => {
                let u = self.known(upstream, now_ms);
                u.since_ms = now_ms;
                u.min_safe_point = Some(min_safe_point);
                None
            }
            SafePointResult::Failed { upstream, error } => {
                let what = describe_upstream(&upstream);
                let since = self.known(upstream, now_ms).since_ms;
                (now_ms.saturating_sub(since) >= ttl_ms).then(|| {
                    format!("GC safe point of {what} not updated for over {ttl_secs} s: {error}")
                })
            }
        }
    }

    /// The upstream's entry. An answer from an upstream the last round did not push to (its
    /// changefeeds went away meanwhile) is kept until the next round forgets it.
    fn known(&mut self, uri: String, now_ms: u64) -> &mut UpstreamGc {
        self.upstreams.entry(uri).or_insert(UpstreamGc {
            since_ms: now_ms,
            min_safe_point: None,
            pushed: None,
        })
    }

    /// The error for a running changefeed whose checkpoint is already behind its own
    /// upstream's safe point: its snapshot is lost (a fast-fail error). Other upstreams'
    /// GC says nothing about its data.
    pub fn check_checkpoint(
        &self,
        info: &ChangeFeedInfo,
        checkpoint: Ts,
        addr: &str,
    ) -> Option<RunningError> {
        let upstream = upstream_of(info, &self.config.default_upstream);
        let min = self.upstreams.get(upstream)?.min_safe_point?;
        (checkpoint < min).then(|| RunningError {
            addr: addr.to_owned(),
            code: "CDC:ErrSnapshotLostByGC".to_owned(),
            message: format!(
                "checkpoint {checkpoint} is behind the GC safe point {min}; the data is gone"
            ),
            extra: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests;
