//! Remote drain (`PUT /api/v1/captures/drain`, `cdc cli capture drain`): the owner moves a
//! capture's tables to the other live captures, as TiCDC's drain does before a rolling
//! restart.
//!
//! A graceful shutdown marks the capture itself draining in its own key (it holds the lease).
//! A remote drain cannot write another capture's key, so the owner keeps the targets in its
//! memory, as TiCDC's owner does: the scheduler sees a target exactly as a capture that marked
//! itself draining. Callers poll by repeating the request until no table is left, so a new
//! owner (which starts with no targets) picks the drain up again at the next call. A target
//! is forgotten when its capture leaves; until then it takes no tables (drain is for taking a
//! capture out: stop or restart it once drained).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use rcdc_state::model::CaptureInfo;
use rcdc_state::CaptureId;

/// Why a drain is refused (answered to the caller as a client error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DrainRefused {
    /// No live capture has this id.
    #[error("capture {0} does not exist")]
    UnknownCapture(CaptureId),
    /// Nobody could take the capture's tables.
    #[error("cannot drain capture {0}: no other live capture can take its tables")]
    LastCapture(CaptureId),
}

/// The captures the owner is draining on an operator's request.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrainTargets(BTreeSet<CaptureId>);

impl DrainTargets {
    /// Starts (or keeps) draining `target`. Refused when it is not a live capture, or when
    /// every other capture is gone or draining too.
    pub fn request(
        &mut self,
        captures: &BTreeMap<CaptureId, CaptureInfo>,
        target: &CaptureId,
    ) -> Result<(), DrainRefused> {
        if !captures.contains_key(target) {
            return Err(DrainRefused::UnknownCapture(target.clone()));
        }
        let takers = captures
            .iter()
            .filter(|(id, info)| *id != target && !info.is_draining() && !self.0.contains(*id))
            .count();
        if takers == 0 {
            return Err(DrainRefused::LastCapture(target.clone()));
        }
        self.0.insert(target.clone());
        Ok(())
    }

    /// Forgets targets whose capture left. Returns whether any did.
    pub fn retain_live(&mut self, captures: &BTreeMap<CaptureId, CaptureInfo>) -> bool {
        let before = self.0.len();
        self.0.retain(|c| captures.contains_key(c));
        self.0.len() != before
    }

    /// The captures as the scheduler must see them: each target marked draining. Borrowed
    /// (no copy) when nothing is being drained, which is almost always.
    pub fn view<'a>(
        &self,
        captures: &'a BTreeMap<CaptureId, CaptureInfo>,
    ) -> Cow<'a, BTreeMap<CaptureId, CaptureInfo>> {
        if self.0.iter().all(|c| !captures.contains_key(c)) {
            return Cow::Borrowed(captures);
        }
        let mut marked = captures.clone();
        for c in &self.0 {
            if let Some(info) = marked.get_mut(c) {
                info.set_draining(true);
            }
        }
        Cow::Owned(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captures(ids: &[&str]) -> BTreeMap<CaptureId, CaptureInfo> {
        ids.iter()
            .map(|id| {
                let info = CaptureInfo {
                    id: CaptureId::from(*id),
                    address: format!("{id}:8300"),
                    ..CaptureInfo::default()
                };
                (CaptureId::from(*id), info)
            })
            .collect()
    }

    #[test]
    fn a_target_is_seen_draining_until_it_leaves() {
        let mut live = captures(&["a", "b"]);
        let mut d = DrainTargets::default();
        assert!(matches!(d.view(&live), Cow::Borrowed(_)));
        d.request(&live, &CaptureId::from("a")).expect("drain a");
        let view = d.view(&live);
        assert!(view[&CaptureId::from("a")].is_draining());
        assert!(!view[&CaptureId::from("b")].is_draining());
        // Repeating the request (a caller polling) is fine.
        d.request(&live, &CaptureId::from("a")).expect("again");
        live.remove(&CaptureId::from("a"));
        assert!(d.retain_live(&live));
        assert_eq!(d, DrainTargets::default());
    }

    #[test]
    fn unknown_and_last_captures_are_refused() {
        let live = captures(&["a", "b"]);
        let mut d = DrainTargets::default();
        assert_eq!(
            d.request(&live, &CaptureId::from("zz")),
            Err(DrainRefused::UnknownCapture(CaptureId::from("zz")))
        );
        d.request(&live, &CaptureId::from("a")).expect("drain a");
        // b is the only capture left that could take tables.
        assert_eq!(
            d.request(&live, &CaptureId::from("b")),
            Err(DrainRefused::LastCapture(CaptureId::from("b")))
        );
        let alone = captures(&["a"]);
        let mut d = DrainTargets::default();
        assert_eq!(
            d.request(&alone, &CaptureId::from("a")),
            Err(DrainRefused::LastCapture(CaptureId::from("a")))
        );
    }
}
