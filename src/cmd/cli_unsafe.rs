//! `cdc cli unsafe`: TiCDC's commands that read or destroy raw metadata. They bypass the
//! owner; TiCDC's guidance holds: stop every capture before `reset` (running ones lose their
//! session and register again).

use std::io::BufRead;

use anyhow::{anyhow, Context};
use rcdc::meta::Meta;
use rcdc::reactor::store::{Txn, TxnOp};
use rcdc::security::Security;

/// Deletes per txn: etcd allows 128 operations in one.
const DELETES_PER_TXN: usize = 100;

/// `unsafe show-metadata`: every key and value under the cluster prefix, passwords masked.
pub async fn show_metadata(meta: &Meta) -> anyhow::Result<()> {
    let kvs = meta.raw().await?;
    for kv in &kvs {
        let value = rcdc::api::mask_sink_uris(&String::from_utf8_lossy(&kv.value));
        outln!("Key: {}, Value: {value}", kv.key)?;
    }
    outln!("Show {} KVs", kvs.len())?;
    Ok(())
}

/// `unsafe reset`: after a confirmation (skipped by `--no-confirm`), deletes every key under
/// the cluster prefix and, on a PD, the cluster's service GC safe point, as TiCDC's does.
pub async fn reset(
    meta: &Meta,
    endpoints: &[String],
    security: &Security,
    no_confirm: bool,
) -> anyhow::Result<()> {
    let prefix = meta.layout().prefix().to_owned();
    if !no_confirm
        && !confirm(&format!(
            "Reset and all metadata under {prefix} will be deleted, are you sure? (Y/n)"
        ))?
    {
        outln!("Aborted reset")?;
        return Ok(());
    }
    let live = meta.load().await?.captures().len();
    if live > 0 {
        eprintln!("Warning: {live} captures are running; they will register again with new ids (stop them first to start from nothing)");
    }
    // The captures' sessions end with their leases (as TiCDC's reset revokes them), so no
    // capture keeps running on a registration that is gone.
    let mut leases: Vec<i64> = meta.raw().await?.iter().map(|kv| kv.lease).collect();
    leases.sort_unstable();
    leases.dedup();
    for lease in leases.into_iter().filter(|l| *l != 0) {
        meta.store()
            .revoke_lease(lease)
            .await
            .map_err(|e| anyhow!("revoking lease {lease:x}: {e}"))?;
    }
    let kvs = meta.raw().await?;
    for chunk in kvs.chunks(DELETES_PER_TXN) {
        let txn = Txn {
            success: chunk
                .iter()
                .map(|kv| TxnOp::Delete {
                    key: kv.key.clone(),
                })
                .collect(),
            ..Txn::default()
        };
        meta.store()
            .txn(txn)
            .await
            .map_err(|e| anyhow!("deleting the metadata under {prefix}: {e}"))?;
    }
    match super::cli_pd::probe(endpoints, security).await? {
        Some(pd) => {
            let service = rcdc::owner::gc::service_id(&prefix);
            pd.update_service_gc_safe_point(&service, 0, 0)
                .await
                .map_err(|e| anyhow!("removing the service GC safe point {service:?}: {e}"))?;
            outln!("Reset: deleted {} keys under {prefix}, and removed the service GC safe point {service:?} from PD", kvs.len())?;
        }
        None => outln!("Reset: deleted {} keys under {prefix}", kvs.len())?,
    }
    Ok(())
}

/// `unsafe delete-service-gc-safepoint`: removes the cluster's service GC safe point from PD,
/// so TiKV may collect what the changefeeds still needed (TiCDC's escape hatch when a
/// stopped changefeed holds GC back).
pub async fn delete_service_gc_safepoint(
    meta: &Meta,
    endpoints: &[String],
    security: &Security,
) -> anyhow::Result<()> {
    let pd = super::cli_pd::probe(endpoints, security)
        .await?
        .ok_or_else(|| {
            anyhow!(
                "{} is a plain etcd, not a PD: there is no service GC safe point to delete",
                endpoints.join(",")
            )
        })?;
    let service = rcdc::owner::gc::service_id(meta.layout().prefix());
    pd.update_service_gc_safe_point(&service, 0, 0)
        .await
        .map_err(|e| anyhow!("removing the service GC safe point {service:?}: {e}"))?;
    outln!("Delete service GC safe point {service:?} in PD successfully")?;
    Ok(())
}

/// Asks `question` on stdout; true for `y`/`Y`.
fn confirm(question: &str) -> anyhow::Result<bool> {
    outln!("{question}")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the confirmation from stdin")?;
    Ok(answer.trim().eq_ignore_ascii_case("y"))
}
