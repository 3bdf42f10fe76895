//! The worker's raw copy of the watched keys: value bytes and mod revision per key.
//!
//! Patches are applied to these bytes (not to the decoded state) so that unknown JSON fields
//! survive, and commits compare each touched key's exact mod revision against them.

use std::collections::BTreeMap;

use rcdc_state::Revision;

use crate::store::{KeyValue, WatchEvent};

/// One cached key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub value: Vec<u8>,
    pub mod_revision: Revision,
}

/// The delete counter as last seen (facts §3.7): its decimal value (what we increment) and
/// its mod revision (what every txn compares; 0 while it does not exist).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DeleteCounter {
    pub value: Option<i64>,
    pub mod_revision: Revision,
}

/// Keys under the watched prefix, minus the delete counter, which is kept apart so reactors
/// never see it.
#[derive(Debug, Default)]
pub(crate) struct RawCache {
    pub entries: BTreeMap<String, RawEntry>,
    pub counter: DeleteCounter,
    counter_key: String,
}

/// A change to hand to the reactor's state at the next tick.
pub(crate) type Update = (String, Option<Vec<u8>>);

impl crate::reactor::RawKeys for RawCache {
    fn for_each(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (k, e) in &self.entries {
            f(k, &e.value);
        }
    }
}

impl RawCache {
    pub fn new(counter_key: String) -> Self {
        Self {
            entries: BTreeMap::new(),
            counter: DeleteCounter::default(),
            counter_key,
        }
    }

    pub fn counter_key(&self) -> &str {
        &self.counter_key
    }

    pub fn get(&self, key: &str) -> Option<&RawEntry> {
        self.entries.get(key)
    }

    /// Applies a watched event; returns the update for the reactor state, if any. Events not
    /// newer than what is cached are dropped (duplicates, or replays after a resync).
    pub fn apply_event(&mut self, ev: WatchEvent) -> Option<Update> {
        if ev.key() == self.counter_key {
            if ev.mod_revision() > self.counter.mod_revision || self.counter.value.is_none() {
                self.counter = match &ev {
                    WatchEvent::Put(kv) => DeleteCounter {
                        value: Some(parse_counter(&kv.value)),
                        mod_revision: kv.mod_revision,
                    },
                    WatchEvent::Delete { .. } => DeleteCounter::default(),
                };
            }
            return None;
        }
        match ev {
            WatchEvent::Put(kv) => {
                if let Some(old) = self.entries.get(&kv.key) {
                    if old.mod_revision >= kv.mod_revision {
                        return None;
                    }
                }
                let update = (kv.key.clone(), Some(kv.value.clone()));
                self.entries.insert(
                    kv.key,
                    RawEntry {
                        value: kv.value,
                        mod_revision: kv.mod_revision,
                    },
                );
                Some(update)
            }
            WatchEvent::Delete { key, mod_revision } => match self.entries.get(&key) {
                Some(old) if old.mod_revision < mod_revision => {
                    self.entries.remove(&key);
                    Some((key, None))
                }
                _ => None,
            },
        }
    }

    /// Replaces the cache with a fresh listing and returns the difference as updates, so that
    /// the reactor state converges without being rebuilt (a resync after compaction or a
    /// broken watch).
    pub fn replace_with(&mut self, listing: Vec<KeyValue>) -> Vec<Update> {
        let mut fresh = BTreeMap::new();
        let mut counter = DeleteCounter::default();
        for kv in listing {
            if kv.key == self.counter_key {
                counter = DeleteCounter {
                    value: Some(parse_counter(&kv.value)),
                    mod_revision: kv.mod_revision,
                };
            } else {
                fresh.insert(
                    kv.key,
                    RawEntry {
                        value: kv.value,
                        mod_revision: kv.mod_revision,
                    },
                );
            }
        }
        let mut updates = Vec::new();
        for (k, old) in &self.entries {
            match fresh.get(k) {
                None => updates.push((k.clone(), None)),
                Some(new) if new.mod_revision != old.mod_revision || new.value != old.value => {
                    updates.push((k.clone(), Some(new.value.clone())))
                }
                Some(_) => {}
            }
        }
        for (k, new) in &fresh {
            if !self.entries.contains_key(k) {
                updates.push((k.clone(), Some(new.value.clone())));
            }
        }
        updates.sort_by(|a, b| a.0.cmp(&b.0));
        self.entries = fresh;
        self.counter = counter;
        updates
    }
}

/// A counter value that does not parse counts as 0: the compare is on the counter's mod
/// revision, so a garbage value only means the next delete writes 1.
fn parse_counter(bytes: &[u8]) -> i64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: Revision(rev),
            mod_revision: Revision(rev),
            lease: 0,
        }
    }

    #[test]
    fn stale_and_duplicate_events_are_dropped() {
        let mut c = RawCache::new("/p/counter".into());
        assert!(c.apply_event(WatchEvent::Put(kv("/p/a", "1", 5))).is_some());
        assert!(c.apply_event(WatchEvent::Put(kv("/p/a", "0", 4))).is_none());
        assert!(c.apply_event(WatchEvent::Put(kv("/p/a", "1", 5))).is_none());
        assert!(c
            .apply_event(WatchEvent::Delete {
                key: "/p/a".into(),
                mod_revision: Revision(5)
            })
            .is_none());
        assert_eq!(
            c.apply_event(WatchEvent::Delete {
                key: "/p/a".into(),
                mod_revision: Revision(6)
            }),
            Some(("/p/a".into(), None))
        );
    }

    #[test]
    fn the_delete_counter_is_hidden_from_the_state() {
        let mut c = RawCache::new("/p/counter".into());
        assert!(c
            .apply_event(WatchEvent::Put(kv("/p/counter", "7", 3)))
            .is_none());
        assert_eq!(c.counter.value, Some(7));
        assert!(c.entries.is_empty());
    }

    #[test]
    fn replace_with_yields_exactly_the_difference() {
        let mut c = RawCache::new("/p/counter".into());
        c.replace_with(vec![
            kv("/p/a", "1", 2),
            kv("/p/b", "1", 3),
            kv("/p/c", "1", 4),
        ]);
        let diff = c.replace_with(vec![
            kv("/p/a", "1", 2),
            kv("/p/b", "2", 9),
            kv("/p/d", "1", 10),
            kv("/p/counter", "1", 8),
        ]);
        assert_eq!(
            diff,
            vec![
                ("/p/b".into(), Some(b"2".to_vec())),
                ("/p/c".into(), None),
                ("/p/d".into(), Some(b"1".to_vec())),
            ]
        );
        assert_eq!(c.counter.value, Some(1));
    }
}
