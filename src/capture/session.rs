//! A session: one lease, kept alive in the background, whose loss is observable.
//!
//! The capture key and the election key are attached to the lease, so when the process dies
//! or is partitioned away they vanish after the TTL and the cluster sees the capture as gone.
//! Loss is reported when etcd says the lease is unknown, or when no keep-alive has succeeded
//! for a whole TTL (the lease has then surely expired on the server, even if etcd is
//! unreachable and cannot tell us).

use std::time::Duration;

use tokio::time::Instant;

use rcdc_reactor::store::{MetaStore, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A live lease and its keep-alive task.
pub struct Session<S: MetaStore + Clone> {
    store: S,
    lease: i64,
    lost: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

impl<S: MetaStore + Clone> Session<S> {
    /// Grants a lease of `ttl` (whole seconds, at least 1) and starts keeping it alive.
    pub async fn open(store: S, ttl: Duration) -> Result<Self, StoreError> {
        let ttl_secs = ttl.as_secs().max(1) as i64;
        let lease = store.grant_lease(ttl_secs).await?;
        let (tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(
            store.clone(),
            lease,
            Duration::from_secs(ttl_secs as u64),
            tx,
        ));
        Ok(Self {
            store,
            lease,
            lost,
            keeper,
        })
    }

    /// The lease id.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Completes once the lease is lost.
    pub async fn wait_lost(&self) {
        let mut rx = self.lost.clone();
        // An error means the keeper ended, which it only does after reporting loss.
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// Stops keeping the lease alive and revokes it (deleting its keys). Best effort: if etcd
    /// is unreachable the lease simply expires.
    pub async fn close(self) {
        self.keeper.abort();
        if let Err(e) = self.store.revoke_lease(self.lease).await {
            tracing::debug!(lease = self.lease, error = %e, "revoke on close failed; the lease will expire");
        }
    }
}

impl<S: MetaStore + Clone> Drop for Session<S> {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

async fn keep_alive<S: MetaStore>(store: S, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let every = ttl / 3;
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match store.keep_alive_once(lease).await {
            Ok(_) => last_ok = Instant::now(),
            Err(StoreError::LeaseNotFound(_)) => {
                tracing::warn!(lease = format!("{lease:x}"), "session lease is gone");
                let _ = lost.send(true);
                return;
            }
            Err(e) => {
                if last_ok.elapsed() >= ttl {
                    tracing::warn!(lease = format!("{lease:x}"), error = %e, "no keep-alive for a whole TTL; the session is lost");
                    let _ = lost.send(true);
                    return;
                }
                tracing::debug!(error = %e, "keep-alive failed; retrying");
            }
        }
    }
}
