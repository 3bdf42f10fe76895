//! The dashboard's lag history: one small ring of samples per changefeed, kept by each
//! capture so that a page opened on it shows the last 15 minutes at once.
//!
//! Pure (the caller passes the time and the checkpoints), so the bounds are tested without a
//! server. Memory is bounded per changefeed by the ring's capacity and overall by the number
//! of changefeeds, which only an operator creates: about 16 bytes × 451 samples each.

use std::collections::{BTreeMap, VecDeque};

use rcdc_state::{ChangefeedId, Ts};

/// One point of the lag chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken (Unix ms, the capture's clock).
    pub at_ms: u64,
    /// That time minus the checkpoint's physical time, in ms (0 if the checkpoint is ahead).
    pub lag_ms: u64,
}

/// The rings of every changefeed sampled.
#[derive(Debug)]
pub struct LagHistory {
    window_ms: u64,
    capacity: usize,
    series: BTreeMap<ChangefeedId, VecDeque<Sample>>,
}

impl LagHistory {
    /// Keeps `window_ms` of samples taken every `period_ms`. The capacity also bounds the
    /// ring if samples come faster than the period (a delayed timer catching up).
    pub fn new(window_ms: u64, period_ms: u64) -> Self {
        let per_window = window_ms / period_ms.max(1);
        Self {
            window_ms,
            capacity: usize::try_from(per_window)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
            series: BTreeMap::new(),
        }
    }

    /// The window kept, in ms.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Records one sample per changefeed in `checkpoints` at `now_ms` and forgets every
    /// changefeed not in it (removed, finished): their rings would otherwise stay forever.
    pub fn record(&mut self, now_ms: u64, checkpoints: &BTreeMap<ChangefeedId, Ts>) {
        self.series.retain(|id, _| checkpoints.contains_key(id));
        let oldest = now_ms.saturating_sub(self.window_ms);
        for (id, checkpoint) in checkpoints {
            let ring = self.series.entry(id.clone()).or_default();
            // A clock stepping back would draw the line backwards; such a sample is skipped
            // until the clock passes the last one again.
            if ring.back().is_some_and(|last| last.at_ms >= now_ms) {
                continue;
            }
            ring.push_back(Sample {
                at_ms: now_ms,
                lag_ms: now_ms.saturating_sub(checkpoint.physical_ms()),
            });
            while ring.len() > self.capacity || ring.front().is_some_and(|s| s.at_ms < oldest) {
                ring.pop_front();
            }
        }
    }

    /// Every changefeed's samples taken after `after_ms` (all with `None`), oldest first. A
    /// changefeed with none newer is still listed, so the page learns which ones exist.
    pub fn since(&self, after_ms: Option<u64>) -> BTreeMap<ChangefeedId, Vec<Sample>> {
        self.series
            .iter()
            .map(|(id, ring)| {
                let newer = ring
                    .iter()
                    .filter(|s| after_ms.is_none_or(|after| s.at_ms > after))
                    .copied()
                    .collect();
                (id.clone(), newer)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn feeds(entries: &[(&str, u64)]) -> BTreeMap<ChangefeedId, Ts> {
        entries
            .iter()
            .map(|(id, ck_ms)| (ChangefeedId::from(*id), Ts::from_parts(*ck_ms, 7)))
            .collect()
    }

    #[test]
    fn a_sample_is_the_distance_from_now_to_the_checkpoint() {
        let mut h = LagHistory::new(60_000, 2_000);
        h.record(T0, &feeds(&[("a", T0 - 1_500), ("ahead", T0 + 10)]));
        let all = h.since(None);
        assert_eq!(
            all[&ChangefeedId::from("a")],
            vec![Sample {
                at_ms: T0,
                lag_ms: 1_500
            }]
        );
        assert_eq!(all[&ChangefeedId::from("ahead")][0].lag_ms, 0);
    }

    #[test]
    fn fifteen_minutes_every_two_seconds_stay_bounded() {
        let mut h = LagHistory::new(15 * 60_000, 2_000);
        for i in 0..2_000 {
            let now = T0 + i * 2_000;
            h.record(now, &feeds(&[("a", now - 3_000)]));
        }
        let ring = &h.since(None)[&ChangefeedId::from("a")];
        assert_eq!(ring.len(), 451, "15 min / 2 s, both ends included");
        let last = T0 + 1_999 * 2_000;
        assert_eq!(ring.last().map(|s| s.at_ms), Some(last));
        assert_eq!(ring.first().map(|s| s.at_ms), Some(last - 15 * 60_000));
    }

    #[test]
    fn samples_faster_than_the_period_are_capped_by_count() {
        let mut h = LagHistory::new(10_000, 2_000);
        for i in 0..100 {
            h.record(T0 + i, &feeds(&[("a", T0)]));
        }
        assert_eq!(h.since(None)[&ChangefeedId::from("a")].len(), 6);
    }

    #[test]
    fn a_changefeed_gone_from_the_checkpoints_is_forgotten() {
        let mut h = LagHistory::new(60_000, 2_000);
        h.record(T0, &feeds(&[("a", T0), ("b", T0)]));
        h.record(T0 + 2_000, &feeds(&[("b", T0)]));
        let ids: Vec<_> = h.since(None).into_keys().collect();
        assert_eq!(ids, vec![ChangefeedId::from("b")]);
        // Created again under the same id: a fresh line, not the old one continued.
        h.record(T0 + 4_000, &feeds(&[("a", T0), ("b", T0)]));
        assert_eq!(h.since(None)[&ChangefeedId::from("a")].len(), 1);
    }

    #[test]
    fn a_clock_stepping_back_adds_nothing_until_it_passes_the_last_sample() {
        let mut h = LagHistory::new(60_000, 2_000);
        h.record(T0, &feeds(&[("a", T0)]));
        h.record(T0 - 5_000, &feeds(&[("a", T0)]));
        h.record(T0, &feeds(&[("a", T0)]));
        assert_eq!(h.since(None)[&ChangefeedId::from("a")].len(), 1);
        h.record(T0 + 2_000, &feeds(&[("a", T0)]));
        assert_eq!(h.since(None)[&ChangefeedId::from("a")].len(), 2);
    }

    #[test]
    fn since_returns_only_newer_samples_but_every_changefeed() {
        let mut h = LagHistory::new(60_000, 2_000);
        h.record(T0, &feeds(&[("a", T0)]));
        h.record(T0 + 2_000, &feeds(&[("a", T0), ("b", T0)]));
        let newer = h.since(Some(T0 + 2_000));
        assert_eq!(newer.len(), 2);
        assert!(newer.values().all(Vec::is_empty));
        let newer = h.since(Some(T0));
        assert_eq!(newer[&ChangefeedId::from("a")].len(), 1);
    }
}
