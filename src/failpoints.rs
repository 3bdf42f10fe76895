//! Failpoints (only in a build with the `failpoints` feature; README "Failpoints").
//!
//! The sites are `fail::fail_point!` calls; without the feature the `fail` crate expands them
//! to nothing, and this module is not compiled. The configuration comes from the `fail`
//! crate's `FAILPOINTS` variable (`name=actions;name=actions`, e.g.
//! `sink-write=3*return;pipeline-panic=1*panic(boom)`), read once at process start.

/// Every failpoint, in the order the start log lists them.
///
/// | name | where | `return(msg)` / `panic` |
/// |---|---|---|
/// | `sink-write` | `TableSink::write` of the file and blackhole sinks | the write fails with `msg` |
/// | `sink-flush` | `TableSink::flush` of the file and blackhole sinks | the flush fails with `msg` |
/// | `etcd-txn` | `EtcdStore::txn` (rcdc-reactor), before the request | `Unavailable`, or `Indeterminate` for `return(indeterminate)`; `pause` holds the txn |
/// | `pipeline-panic` | a table pipeline's pull, on the data plane's blocking pool | any action panics the pull |
/// | `owner-ddl` | the owner's `FetchDdl` effect (the upstream's DDL lookup), never the tick | the lookup fails with `msg` |
/// | `sorter-spill-write` | writing a block of a sorter's spilled run | `return(enospc)` is a full disk, `return(msg)` another write error |
/// | `sorter-spill-read` | reading a block of a spilled run back | the block reads as corrupt |
pub const POINTS: &[&str] = &[
    "sink-write",
    "sink-flush",
    "etcd-txn",
    "pipeline-panic",
    "owner-ddl",
    "sorter-spill-write",
    "sorter-spill-read",
];

/// A `FAILPOINTS` value that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum FailpointError {
    /// An entry without `=`.
    #[error("FAILPOINTS entry {0:?} is not name=actions")]
    Malformed(String),
    /// A name no site uses: it would silently do nothing.
    #[error("FAILPOINTS names unknown failpoint {name:?} (known: {})", POINTS.join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
    /// The `fail` crate refused the actions.
    #[error("FAILPOINTS entry {name:?}: {reason}")]
    Actions {
        /// The failpoint.
        name: String,
        /// The `fail` crate's reason.
        reason: String,
    },
}

/// Applies a `FAILPOINTS` value. The `fail` crate's own `FailScenario::setup` panics on a bad
/// value; this is the same syntax with an error instead, and unknown names are refused
/// because a typo would otherwise test nothing.
pub fn configure(value: &str) -> Result<(), FailpointError> {
    for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, actions) = entry
            .split_once('=')
            .ok_or_else(|| FailpointError::Malformed(entry.to_owned()))?;
        let name = name.trim();
        if !POINTS.contains(&name) {
            return Err(FailpointError::Unknown {
                name: name.to_owned(),
            });
        }
        fail::cfg(name, actions.trim()).map_err(|reason| FailpointError::Actions {
            name: name.to_owned(),
            reason,
        })?;
    }
    Ok(())
}

/// Applies the `FAILPOINTS` environment variable, if set.
pub fn configure_from_env() -> Result<(), FailpointError> {
    match std::env::var("FAILPOINTS") {
        Ok(value) => configure(&value),
        Err(std::env::VarError::NotPresent) => Ok(()),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(FailpointError::Malformed(v.to_string_lossy().into_owned()))
        }
    }
}

/// Each failpoint with its configured actions, or `"off"`.
pub fn status() -> Vec<(&'static str, String)> {
    let configured = fail::list();
    POINTS
        .iter()
        .map(|&p| {
            let actions = configured
                .iter()
                .find(|(name, _)| name == p)
                .map(|(_, a)| a.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| "off".to_owned());
            (p, actions)
        })
        .collect()
}

/// Logs one line per failpoint (at `cdc server` start, once logging is up).
pub fn log_status() {
    for (name, actions) in status() {
        tracing::info!("failpoint {name}: {actions}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The fail registry is process-wide and other unit tests write to sinks meanwhile: the one
    // point configured here fires with probability 0, and the refused values register nothing.
    #[test]
    fn configure_lists_and_refuses() {
        configure(" ; sink-flush = 0%return(disk gone) ;").expect("valid");
        let listed = status();
        assert_eq!(listed.len(), POINTS.len());
        assert!(listed
            .iter()
            .any(|(n, a)| *n == "sink-flush" && a == "0%return(disk gone)"));
        assert!(listed.iter().all(|(n, a)| *n == "sink-flush" || a == "off"));
        fail::remove("sink-flush");
        assert!(status()
            .iter()
            .all(|(n, a)| *n != "sink-flush" || a == "off"));

        assert!(matches!(
            configure("sink-wrte=return"),
            Err(FailpointError::Unknown { .. })
        ));
        assert!(matches!(
            configure("sink-write"),
            Err(FailpointError::Malformed(_))
        ));
        assert!(matches!(
            configure("sink-write=3*nonsense"),
            Err(FailpointError::Actions { .. })
        ));
    }
}
