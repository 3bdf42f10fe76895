//! Owner election, compatible with TiCDC's use of etcd's `concurrency.Election`: each
//! candidate puts `<prefix>/owner/<lease-hex>` = its capture id on its session lease, and the
//! candidate whose key has the smallest create revision is the owner (facts §4.3). The CLI
//! finds the owner the same way (`GetOwnerID`).
//!
//! Winning returns a [`Fence`]: the key and its create revision. The owner's EtcdWorker
//! compares it in every txn, so once the key is gone (lease lost, resigned, deleted by an
//! operator) nothing the old owner sends can land (target-design §4.7).

use rcdc_reactor::store::{
    Compare, CompareTarget, MetaStore, StoreError, Txn, TxnOp, WatchMessage,
};
use rcdc_reactor::Fence;
use rcdc_state::{CaptureId, Revision};

/// Why a campaign ended without winning.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The candidate key vanished while waiting (the session lease was lost).
    #[error("election key {0} disappeared while campaigning (session lost)")]
    SessionLost(String),
    /// The store failed; the caller retries the campaign.
    #[error("election: {0}")]
    Store(#[from] StoreError),
}

/// The election key of a candidate.
pub fn candidate_key(owner_prefix: &str, lease: i64) -> String {
    format!("{owner_prefix}/{lease:x}")
}

/// Campaigns until this capture is the owner. Cancel-safe: dropping the future leaves the
/// candidate key in place (it goes with the lease, or with [`resign`]).
pub async fn campaign<S: MetaStore>(
    store: &S,
    owner_prefix: &str,
    lease: i64,
    capture: &CaptureId,
) -> Result<Fence, ElectionError> {
    let key = candidate_key(owner_prefix, lease);
    let txn = Txn {
        compares: vec![Compare {
            key: key.clone(),
            target: CompareTarget::CreateRevision(Revision(0)),
        }],
        success: vec![TxnOp::Put {
            key: key.clone(),
            value: capture.as_str().as_bytes().to_vec(),
            lease,
        }],
        failure: vec![TxnOp::Get { key: key.clone() }],
    };
    let resp = store.txn(txn).await?;
    let create_revision = if resp.succeeded {
        resp.revision
    } else {
        match resp.gets.into_iter().next().flatten() {
            Some(kv) => kv.create_revision,
            None => return Err(ElectionError::SessionLost(key)),
        }
    };
    let prefix = format!("{owner_prefix}/");
    loop {
        let (candidates, rev) = store.get_prefix(&prefix).await?;
        if !candidates
            .iter()
            .any(|kv| kv.key == key && kv.create_revision == create_revision)
        {
            return Err(ElectionError::SessionLost(key));
        }
        let first = candidates.iter().min_by_key(|kv| kv.create_revision);
        if first.is_some_and(|kv| kv.key == key) {
            return Ok(Fence {
                key,
                create_revision,
            });
        }
        // Wait for any delete under the prefix, then look again.
        let mut watch = store.watch_prefix(&prefix, Revision(rev.0 + 1)).await?;
        loop {
            match watch.next().await? {
                WatchMessage::Events { events, .. }
                    if events
                        .iter()
                        .any(|e| matches!(e, rcdc_reactor::store::WatchEvent::Delete { .. })) =>
                {
                    break
                }
                WatchMessage::Compacted { .. } => break,
                _ => {}
            }
        }
    }
}

/// Steps down: deletes the election key if it is still this campaign's key.
pub async fn resign<S: MetaStore>(store: &S, fence: &Fence) -> Result<bool, StoreError> {
    let txn = Txn {
        compares: vec![Compare {
            key: fence.key.clone(),
            target: CompareTarget::CreateRevision(fence.create_revision),
        }],
        success: vec![TxnOp::Delete {
            key: fence.key.clone(),
        }],
        failure: vec![],
    };
    Ok(store.txn(txn).await?.succeeded)
}

/// The current owner's capture id: the candidate with the smallest create revision.
pub async fn current_owner<S: MetaStore + ?Sized>(
    store: &S,
    owner_prefix: &str,
) -> Result<Option<CaptureId>, StoreError> {
    let (candidates, _) = store.get_prefix(&format!("{owner_prefix}/")).await?;
    Ok(candidates
        .into_iter()
        .min_by_key(|kv| kv.create_revision)
        .map(|kv| CaptureId::new(String::from_utf8_lossy(&kv.value).into_owned())))
}
