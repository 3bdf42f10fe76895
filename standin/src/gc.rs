//! Service GC safe points with PD v5.1's rules (`UpdateServiceGCSafePoint` in
//! `server/grpc_service.go`, `LoadMinServiceGCSafePoint` in `server/core/storage.go`).
//!
//! Entries live in etcd under `/pd/<cluster_id>/gc/safe_point/service/<service_id>` as JSON
//! `{"service_id","expired_at","safe_point"}` (`expired_at` in Unix seconds), exactly as PD
//! writes them, so every member sees them and they survive restarts. "Now" is the physical part
//! of a fresh TSO, not the wall clock; the caller takes it and passes it in.
//!
//! The rules are split in two: [`scan_min`] decides (pure), [`ServiceSafePoints`] does the etcd
//! IO it asks for.

use serde::{Deserialize, Serialize};

use crate::error::StandinError;
use crate::meta::PdKv;

/// TiDB's GC worker's service id; its entry never expires and cannot be removed.
pub const GC_WORKER: &str = "gc_worker";

/// One service's safe point, as PD stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSafePoint {
    pub service_id: String,
    /// Unix seconds; `i64::MAX` means never.
    pub expired_at: i64,
    pub safe_point: u64,
}

impl ServiceSafePoint {
    fn gc_worker(safe_point: u64) -> Self {
        Self {
            service_id: GC_WORKER.to_string(),
            expired_at: i64::MAX,
            safe_point,
        }
    }
}

/// What `LoadMinServiceGCSafePoint` found and what it writes back.
#[derive(Debug, PartialEq, Eq)]
pub struct MinScan {
    /// The minimum over live entries (the new gc_worker entry when one is created).
    pub min: ServiceSafePoint,
    /// Entries to save: a gc_worker whose expiry was not infinite, or a created gc_worker.
    pub save: Vec<ServiceSafePoint>,
    /// Service ids of expired entries, to delete.
    pub remove: Vec<String>,
}

/// PD's minimum scan over the stored entries (in key order) at `now` (Unix seconds):
/// - gc_worker's expiry is forced to infinity (and saved) if it is anything else;
/// - entries with `expired_at < now` are removed and skipped;
/// - the minimum is the first live entry with the smallest safe point;
/// - no live entry: gc_worker is created at 0 and is the minimum;
/// - live entries but no gc_worker: gc_worker is created at the minimum's safe point and is
///   returned as the minimum (so the reply names gc_worker).
pub fn scan_min(entries: &[ServiceSafePoint], now: i64) -> MinScan {
    let mut save = Vec::new();
    let mut remove = Vec::new();
    let mut has_gc_worker = false;
    let mut min: Option<ServiceSafePoint> = None;
    for e in entries {
        let mut e = e.clone();
        if e.service_id == GC_WORKER {
            has_gc_worker = true;
            if e.expired_at != i64::MAX {
                e.expired_at = i64::MAX;
                save.push(e.clone());
            }
        }
        if e.expired_at < now {
            remove.push(e.service_id);
            continue;
        }
        if min.as_ref().is_none_or(|m| e.safe_point < m.safe_point) {
            min = Some(e);
        }
    }
    let min = match min {
        None => {
            let created = ServiceSafePoint::gc_worker(0);
            save.push(created.clone());
            created
        }
        Some(m) if !has_gc_worker => {
            let created = ServiceSafePoint::gc_worker(m.safe_point);
            save.push(created.clone());
            created
        }
        Some(m) => m,
    };
    MinScan { min, save, remove }
}

/// A service safe point request refused the way PD refuses it (gRPC `Unknown` with PD's
/// message), or the store failing.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cannot remove service safe point of gc_worker")]
    RemoveGcWorker,
    #[error("service id of service safepoint cannot be empty")]
    EmptyServiceId,
    #[error("TTL of gc_worker's service safe point must be infinity")]
    FiniteGcWorker,
    #[error("{0}")]
    Store(#[from] StandinError),
}

/// The answer to `UpdateServiceGCSafePoint`.
#[derive(Debug, PartialEq, Eq)]
pub struct UpdateReply {
    pub service_id: String,
    /// Seconds until the minimum's entry expires, from `now`.
    pub ttl: i64,
    pub min_safe_point: u64,
}

/// The service safe points in etcd. Updates are serialized by the caller (PD holds
/// `serviceSafePointLock` across the whole request).
#[derive(Clone, Debug)]
pub struct ServiceSafePoints {
    kv: PdKv,
}

impl ServiceSafePoints {
    pub fn new(kv: PdKv) -> Self {
        Self { kv }
    }

    fn prefix(&self) -> String {
        self.kv.key("gc/safe_point/service/")
    }

    async fn save(&self, ssp: &ServiceSafePoint) -> Result<(), GcError> {
        if ssp.service_id.is_empty() {
            return Err(GcError::EmptyServiceId);
        }
        if ssp.service_id == GC_WORKER && ssp.expired_at != i64::MAX {
            return Err(GcError::FiniteGcWorker);
        }
        let value = serde_json::to_vec(ssp)
            .map_err(|e| StandinError::Config(format!("encode service safe point {ssp:?}: {e}")))?;
        let key = format!("{}{}", self.prefix(), ssp.service_id);
        Ok(self.kv.put(&key, value).await?)
    }

    /// Every stored entry, in key order. An undecodable value fails the request, as in PD.
    pub async fn load_all(&self) -> Result<Vec<ServiceSafePoint>, GcError> {
        let prefix = self.prefix();
        let mut out = Vec::new();
        for (key, value) in self.kv.scan_prefix(&prefix).await? {
            let ssp = serde_json::from_slice(&value).map_err(|e| StandinError::CorruptValue {
                endpoint: self.kv.endpoint().to_string(),
                key: key.clone(),
                why: e.to_string(),
            })?;
            out.push(ssp);
        }
        Ok(out)
    }

    /// `LoadMinServiceGCSafePoint(now)`: scan, then write what the scan decided.
    pub async fn load_min(&self, now: i64) -> Result<ServiceSafePoint, GcError> {
        let scan = scan_min(&self.load_all().await?, now);
        for id in &scan.remove {
            // PD ignores a failed delete here; the entry is expired either way.
            if let Err(e) = self.kv.delete(&format!("{}{id}", self.prefix())).await {
                tracing::warn!(service_id = %id, error = %e, "remove expired service safe point");
            }
        }
        for ssp in &scan.save {
            self.save(ssp).await?;
        }
        Ok(scan.min)
    }

    /// The first step of `UpdateServiceGCSafePoint` with `TTL <= 0`: the service's entry is
    /// removed before anything else (before PD even takes its TSO); gc_worker's cannot be.
    pub async fn remove(&self, service_id: &str) -> Result<(), GcError> {
        if service_id == GC_WORKER {
            return Err(GcError::RemoveGcWorker);
        }
        Ok(self
            .kv
            .delete(&format!("{}{service_id}", self.prefix()))
            .await?)
    }

    /// The rest of `UpdateServiceGCSafePoint`, at `now` (Unix seconds from a fresh TSO): the
    /// minimum, then the save when `ttl > 0` and the safe point is not below the minimum (a
    /// lower one is silently not stored), then the reply about the (possibly new) minimum.
    pub async fn update(
        &self,
        service_id: &str,
        ttl: i64,
        safe_point: u64,
        now: i64,
    ) -> Result<UpdateReply, GcError> {
        let mut min = self.load_min(now).await?;
        if ttl > 0 && safe_point >= min.safe_point {
            let expired_at = if i64::MAX - now <= ttl {
                i64::MAX
            } else {
                now + ttl
            };
            let ssp = ServiceSafePoint {
                service_id: service_id.to_string(),
                expired_at,
                safe_point,
            };
            self.save(&ssp).await?;
            tracing::info!(
                service_id,
                expired_at,
                safe_point,
                "update service GC safe point"
            );
            if service_id == min.service_id {
                min = self.load_min(now).await?;
            }
        }
        Ok(UpdateReply {
            ttl: min.expired_at - now,
            service_id: min.service_id,
            min_safe_point: min.safe_point,
        })
    }

    /// `GetGCSafePoint`: the GC safe point TiDB's GC worker last set (`gc/safe_point`, a hex
    /// string), 0 when none. This is not the minimum service safe point.
    pub async fn gc_safe_point(&self) -> Result<u64, StandinError> {
        let key = self.kv.key("gc/safe_point");
        let Some(value) = self.kv.get(&key).await? else {
            return Ok(0);
        };
        let text = String::from_utf8_lossy(&value);
        if text.is_empty() {
            return Ok(0);
        }
        u64::from_str_radix(&text, 16).map_err(|e| StandinError::CorruptValue {
            endpoint: self.kv.endpoint().to_string(),
            key,
            why: format!("{e} in {text:?} (PD writes hex)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssp(id: &str, expired_at: i64, safe_point: u64) -> ServiceSafePoint {
        ServiceSafePoint {
            service_id: id.to_string(),
            expired_at,
            safe_point,
        }
    }

    #[test]
    fn nothing_stored_creates_gc_worker_at_zero() {
        let scan = scan_min(&[], 100);
        assert_eq!(scan.min, ServiceSafePoint::gc_worker(0));
        assert_eq!(scan.save, vec![ServiceSafePoint::gc_worker(0)]);
    }

    #[test]
    fn only_expired_entries_creates_gc_worker_at_zero() {
        let scan = scan_min(&[ssp("ticdc", 99, 50)], 100);
        assert_eq!(scan.remove, vec!["ticdc".to_string()]);
        assert_eq!(scan.min, ServiceSafePoint::gc_worker(0));
    }

    #[test]
    fn live_entries_without_gc_worker_create_it_at_the_min_and_name_it() {
        let scan = scan_min(&[ssp("a", 200, 30), ssp("b", 200, 20)], 100);
        assert_eq!(scan.min, ServiceSafePoint::gc_worker(20));
        assert_eq!(scan.save, vec![ServiceSafePoint::gc_worker(20)]);
        assert!(scan.remove.is_empty());
    }

    #[test]
    fn expiry_is_strict_and_min_is_over_live_entries() {
        let entries = [
            ssp("a", 100, 5), // expires at now: still live
            ssp("b", 99, 1),  // expired
            ssp(GC_WORKER, i64::MAX, 7),
        ];
        let scan = scan_min(&entries, 100);
        assert_eq!(scan.min, ssp("a", 100, 5));
        assert_eq!(scan.remove, vec!["b".to_string()]);
        assert!(scan.save.is_empty());
    }

    #[test]
    fn a_finite_gc_worker_is_made_infinite() {
        let scan = scan_min(&[ssp(GC_WORKER, 1, 9)], 100);
        assert_eq!(scan.min, ServiceSafePoint::gc_worker(9));
        assert_eq!(scan.save, vec![ServiceSafePoint::gc_worker(9)]);
        assert!(
            scan.remove.is_empty(),
            "an infinite gc_worker never expires"
        );
    }

    #[test]
    fn ties_keep_the_first_in_key_order() {
        let entries = [ssp("a", 200, 5), ssp(GC_WORKER, i64::MAX, 5)];
        assert_eq!(scan_min(&entries, 100).min.service_id, "a");
    }

    #[test]
    fn stored_json_matches_pd() {
        let json = serde_json::to_string(&ssp("ticdc", 1_700_000_000, 42)).unwrap();
        assert_eq!(
            json,
            r#"{"service_id":"ticdc","expired_at":1700000000,"safe_point":42}"#
        );
    }
}
