//! The state every member of one stand-in shares: members and the leader, stores, regions, and
//! the fault switches. In PD this is agreed through etcd; here the members live in one process
//! and share it directly, which is what lets a test move the leader in one call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::tso::Tso;

/// A PD member, one per `--listen` address.
#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub name: String,
    pub member_id: u64,
    pub addr: SocketAddr,
    /// `http://<addr>`, or `https://<addr>` when serving TLS: what GetMembers reports as
    /// client and peer URL.
    pub url: String,
}

/// A TiKV store as PD knows it (`metapb.Store`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    pub id: u64,
    pub address: String,
    pub version: String,
    pub state: StoreState,
}

/// `metapb.StoreState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreState {
    Up,
    Offline,
    Tombstone,
}

/// A region (`metapb.Region`) with one peer per store it lives on and a leader peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Region {
    pub id: u64,
    /// Memcomparable-encoded, as in PD; empty means unbounded.
    pub start_key: Vec<u8>,
    pub end_key: Vec<u8>,
    pub conf_ver: u64,
    pub version: u64,
    /// (peer id, store id)
    pub peers: Vec<(u64, u64)>,
    /// The leader's peer id.
    pub leader: u64,
}

impl Region {
    /// Whether `key` lies in `[start_key, end_key)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start_key.as_slice()
            && (self.end_key.is_empty() || key < self.end_key.as_slice())
    }
}

/// A control request the state refuses; the HTTP layer maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no member named {0:?}")]
    UnknownMember(String),
    #[error("member {0} is down; bring it up before making it leader")]
    MemberDown(String),
    #[error("every member is down; no leader can be chosen")]
    NoLiveMember,
    #[error("store {0} does not exist; give an address to add it")]
    UnknownStore(u64),
    #[error("{0}")]
    Tso(#[from] crate::error::StandinError),
}

#[derive(Debug)]
struct Inner {
    leader: usize,
    up: Vec<bool>,
    tso_fail: bool,
    stores: BTreeMap<u64, Store>,
    regions: Vec<Region>,
}

/// The shared state of one stand-in.
pub struct Cluster {
    pub cluster_id: u64,
    pub pd_version: String,
    pub members: Vec<Member>,
    pub tso: Arc<Tso>,
    inner: Mutex<Inner>,
    /// One "up" signal per member: its listener task serves while it is true.
    up_tx: Vec<watch::Sender<bool>>,
}

/// A deterministic, non-zero member id (PD's come from etcd's membership).
fn member_id(cluster_id: u64, index: usize) -> u64 {
    // splitmix64 of the pair: distinct per member, stable across restarts.
    let mut z = cluster_id ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

impl Cluster {
    /// Members named `pd-1..` on `addrs` (the first is the leader) with `scheme://addr` URLs,
    /// the given stores, and one region over all keys with a single peer on the first store.
    pub fn new(
        cluster_id: u64,
        pd_version: String,
        addrs: &[SocketAddr],
        scheme: &str,
        stores: Vec<Store>,
        tso: Arc<Tso>,
    ) -> Self {
        let members = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| Member {
                name: format!("pd-{}", i + 1),
                member_id: member_id(cluster_id, i),
                addr: *addr,
                url: format!("{scheme}://{addr}"),
            })
            .collect::<Vec<_>>();
        let first_store = stores.first().map_or(1, |s| s.id);
        let region = Region {
            id: 2,
            start_key: Vec::new(),
            end_key: Vec::new(),
            conf_ver: 1,
            version: 1,
            peers: vec![(3, first_store)],
            leader: 3,
        };
        let up_tx = members.iter().map(|_| watch::channel(true).0).collect();
        Self {
            cluster_id,
            pd_version,
            inner: Mutex::new(Inner {
                leader: 0,
                up: vec![true; members.len()],
                tso_fail: false,
                stores: stores.into_iter().map(|s| (s.id, s)).collect(),
                regions: vec![region],
            }),
            members,
            tso,
            up_tx,
        }
    }

    /// The leader's index in `members`.
    pub fn leader(&self) -> usize {
        self.inner.lock().leader
    }

    pub fn is_leader(&self, member: usize) -> bool {
        self.leader() == member
    }

    pub fn is_up(&self, member: usize) -> bool {
        self.inner.lock().up[member]
    }

    pub fn tso_failing(&self) -> bool {
        self.inner.lock().tso_fail
    }

    pub fn set_tso_failing(&self, fail: bool) {
        self.inner.lock().tso_fail = fail;
        tracing::warn!(fail, "fault switch: TSO failure");
    }

    /// A receiver of member `i`'s up/down signal.
    pub fn watch_up(&self, member: usize) -> watch::Receiver<bool> {
        self.up_tx[member].subscribe()
    }

    fn index_of(&self, name: &str) -> Result<usize, ControlError> {
        self.members
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| ControlError::UnknownMember(name.to_string()))
    }

    /// Moves leadership to `to`, or to the next live member after the current leader. The new
    /// leader syncs the TSO as a new PD leader does (it starts past the saved window).
    pub fn transfer_leader(&self, to: Option<&str>) -> Result<String, ControlError> {
        let mut inner = self.inner.lock();
        let target = match to {
            Some(name) => {
                let i = self.index_of(name)?;
                if !inner.up[i] {
                    return Err(ControlError::MemberDown(name.to_string()));
                }
                i
            }
            None => next_live(&inner.up, inner.leader).ok_or(ControlError::NoLiveMember)?,
        };
        self.set_leader(&mut inner, target)?;
        Ok(self.members[target].name.clone())
    }

    fn set_leader(&self, inner: &mut Inner, target: usize) -> Result<(), ControlError> {
        let from = inner.leader;
        if from == target {
            return Ok(());
        }
        // A new PD leader serves only once its TSO is synced past the saved window.
        self.tso.sync()?;
        inner.leader = target;
        tracing::warn!(
            from = %self.members[from].name,
            to = %self.members[target].name,
            "fault switch: PD leader moved"
        );
        Ok(())
    }

    /// Takes a member down (its listener closes, its connections drop) or brings it back. A
    /// leader going down hands leadership to the next live member, as PD elects a new one; a
    /// member coming back while no live member leads becomes leader.
    pub fn set_member_up(&self, name: &str, up: bool) -> Result<(), ControlError> {
        let i = self.index_of(name)?;
        let mut inner = self.inner.lock();
        inner.up[i] = up;
        if !up && inner.leader == i {
            if let Some(next) = next_live(&inner.up, i) {
                self.set_leader(&mut inner, next)?;
            }
        }
        // Every member was down: the first one back wins the election.
        if up && !inner.up[inner.leader] {
            self.set_leader(&mut inner, i)?;
        }
        self.up_tx[i].send_replace(up);
        tracing::warn!(member = name, up, "fault switch: member availability");
        Ok(())
    }

    /// Adds a store or changes one: `address` is required to add, `version` and `state`
    /// change what they name.
    pub fn upsert_store(
        &self,
        id: u64,
        address: Option<String>,
        version: Option<String>,
        state: Option<StoreState>,
    ) -> Result<Store, ControlError> {
        let mut inner = self.inner.lock();
        let store = match inner.stores.get_mut(&id) {
            Some(s) => s,
            None => {
                let address = address.clone().ok_or(ControlError::UnknownStore(id))?;
                inner.stores.entry(id).or_insert(Store {
                    id,
                    address,
                    version: crate::DEFAULT_STORE_VERSION.to_string(),
                    state: StoreState::Up,
                })
            }
        };
        if let Some(a) = address {
            store.address = a;
        }
        if let Some(v) = version {
            store.version = v;
        }
        if let Some(s) = state {
            store.state = s;
        }
        tracing::warn!(?store, "fault switch: store changed");
        Ok(store.clone())
    }

    pub fn stores(&self) -> Vec<Store> {
        self.inner.lock().stores.values().cloned().collect()
    }

    pub fn store(&self, id: u64) -> Option<Store> {
        self.inner.lock().stores.get(&id).cloned()
    }

    pub fn region_by_key(&self, key: &[u8]) -> Option<Region> {
        self.inner
            .lock()
            .regions
            .iter()
            .find(|r| r.contains(key))
            .cloned()
    }

    pub fn region_by_id(&self, id: u64) -> Option<Region> {
        self.inner
            .lock()
            .regions
            .iter()
            .find(|r| r.id == id)
            .cloned()
    }

    /// PD's `ScanRange`: from the region containing `start` (or the first after it), in key
    /// order, stopping at a region that starts at or after a non-empty `end`, and after `limit`
    /// regions when `limit > 0`.
    pub fn scan_regions(&self, start: &[u8], end: &[u8], limit: i32) -> Vec<Region> {
        let inner = self.inner.lock();
        let mut sorted: Vec<&Region> = inner.regions.iter().collect();
        sorted.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        sorted
            .into_iter()
            .filter(|r| r.contains(start) || r.start_key.as_slice() >= start)
            .take_while(|r| end.is_empty() || r.start_key.as_slice() < end)
            .take(if limit > 0 {
                limit as usize
            } else {
                usize::MAX
            })
            .cloned()
            .collect()
    }

    /// What `GET /standin/state` shows.
    pub fn snapshot(&self) -> serde_json::Value {
        let inner = self.inner.lock();
        let members: Vec<_> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                serde_json::json!({
                    "name": m.name, "member_id": m.member_id, "url": m.url,
                    "up": inner.up[i], "leader": inner.leader == i,
                })
            })
            .collect();
        serde_json::json!({
            "cluster_id": self.cluster_id,
            "pd_version": self.pd_version,
            "leader": self.members[inner.leader].name,
            "members": members,
            "tso_failing": inner.tso_fail,
            "tso_saved_bound_ms": self.tso.saved_bound_ms(),
            "stores": inner.stores.values().collect::<Vec<_>>(),
            "regions": inner.regions,
        })
    }
}

/// The first live member after `from`, wrapping around, not `from` itself.
fn next_live(up: &[bool], from: usize) -> Option<usize> {
    (1..up.len())
        .map(|step| (from + step) % up.len())
        .find(|&i| up[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_live_skips_down_members_and_wraps() {
        assert_eq!(next_live(&[true, false, true], 0), Some(2));
        assert_eq!(next_live(&[true, true, false], 1), Some(0));
        assert_eq!(next_live(&[true, false, false], 0), None);
        assert_eq!(next_live(&[true], 0), None);
    }

    fn cluster(dir: &std::path::Path, members: usize) -> Cluster {
        let tso = Arc::new(Tso::open(dir, Arc::new(crate::tso::SystemClock), 3_000).unwrap());
        let addrs: Vec<SocketAddr> = (0..members)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)))
            .collect();
        Cluster::new(1, "v5.1.0".into(), &addrs, "http", vec![], tso)
    }

    #[test]
    fn leadership_follows_members_going_down_and_coming_back() {
        let dir = tempfile::tempdir().unwrap();
        let c = cluster(dir.path(), 2);
        c.set_member_up("pd-1", false).unwrap();
        assert_eq!(c.leader(), 1, "the leader went down: pd-2 took over");
        c.set_member_up("pd-2", false).unwrap();
        assert_eq!(c.leader(), 1, "nobody left to take over");
        c.set_member_up("pd-1", true).unwrap();
        assert_eq!(c.leader(), 0, "the first member back leads");
        c.set_member_up("pd-2", true).unwrap();
        assert_eq!(
            c.leader(),
            0,
            "a member coming back does not take over a live leader"
        );
        assert!(matches!(
            c.transfer_leader(Some("pd-3")),
            Err(ControlError::UnknownMember(_))
        ));
        c.set_member_up("pd-2", false).unwrap();
        assert!(matches!(
            c.transfer_leader(Some("pd-2")),
            Err(ControlError::MemberDown(_))
        ));
        assert!(matches!(
            c.transfer_leader(None),
            Err(ControlError::NoLiveMember)
        ));
    }

    #[test]
    fn scan_regions_starts_at_the_region_holding_the_key_and_honours_end_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let c = cluster(dir.path(), 1);
        let region = |id, s: &[u8], e: &[u8]| Region {
            id,
            start_key: s.to_vec(),
            end_key: e.to_vec(),
            conf_ver: 1,
            version: 1,
            peers: vec![],
            leader: 0,
        };
        c.inner.lock().regions = vec![
            region(3, b"m", b""),
            region(1, b"", b"f"),
            region(2, b"f", b"m"),
        ];
        let ids = |v: Vec<Region>| v.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(c.scan_regions(b"g", b"", 0)), [2, 3]);
        assert_eq!(
            ids(c.scan_regions(b"", b"f", 0)),
            [1],
            "a region starting at end is out"
        );
        assert_eq!(ids(c.scan_regions(b"a", b"", 2)), [1, 2]);
        assert_eq!(c.region_by_key(b"m").map(|r| r.id), Some(3));
    }

    #[test]
    fn member_ids_are_distinct_and_stable() {
        let ids: Vec<u64> = (0..3).map(|i| member_id(7, i)).collect();
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert_eq!(ids[0], member_id(7, 0));
    }

    #[test]
    fn contains_is_half_open_with_unbounded_ends() {
        let r = Region {
            id: 1,
            start_key: b"b".to_vec(),
            end_key: b"d".to_vec(),
            conf_ver: 1,
            version: 1,
            peers: vec![],
            leader: 0,
        };
        assert!(!r.contains(b"a"));
        assert!(r.contains(b"b"));
        assert!(r.contains(b"c"));
        assert!(!r.contains(b"d"));
        let all = Region {
            start_key: vec![],
            end_key: vec![],
            ..r
        };
        assert!(all.contains(b"") && all.contains(b"zzz"));
    }
}
