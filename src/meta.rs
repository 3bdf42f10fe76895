//! Cluster metadata operations shared by the HTTP API and `cdc cli`: read the cluster's state
//! from etcd, create and update changefeeds with compare-and-swap, dump the raw keys.
//!
//! Reads load the whole cluster prefix into a [`GlobalState`], the same model the reactors
//! use, so the API and CLI never interpret keys differently from the owner. Writes here touch
//! only what an operator owns (a new changefeed's info; the sink/target/config of a stopped
//! one); everything the owner maintains is left to the owner.

use std::sync::Arc;
use std::time::Duration;

use rcdc_reactor::store::{Compare, CompareTarget, KeyValue, MetaStore, StoreError, Txn, TxnOp};
use rcdc_state::ids::is_valid_changefeed_id;
use rcdc_state::model::{
    encode, AdminJobType, ChangeFeedInfo, ChangeFeedStatus, FeedState, ReplicaConfig,
};
use rcdc_state::{CaptureId, ChangefeedId, GlobalState, KeyLayout, Revision, Ts};

use crate::data_plane::UPSTREAM_URI_FIELD;

/// Why a metadata operation failed. Each variant maps to one TiCDC error code.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// etcd failed or is unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such changefeed.
    #[error("changefeed {0} does not exist")]
    NotFound(ChangefeedId),
    /// A changefeed with this id exists already (info or status key present).
    #[error("changefeed {0} already exists")]
    AlreadyExists(ChangefeedId),
    /// The id breaks the changefeed-id rule.
    #[error("invalid changefeed id {0:?}: it must match ^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$ and be at most 128 characters")]
    InvalidId(String),
    /// A parameter is wrong; the message names it.
    #[error("{0}")]
    InvalidParam(String),
    /// The sink URI is rejected (masked in the message).
    #[error("{0}")]
    InvalidSinkUri(String),
    /// Update of a changefeed that is not stopped.
    #[error("changefeed {id} is {state}; it can be updated only when stopped (pause it first)")]
    NotStopped {
        /// The changefeed.
        id: ChangefeedId,
        /// Its state.
        state: &'static str,
    },
    /// The changefeed's info changed between read and write.
    #[error("changefeed {0} was changed concurrently; retry")]
    Conflict(ChangefeedId),
    /// The start-ts is behind the upstream's GC safe point: its data may be gone.
    #[error(
        "fail to create or maintain changefeed because start-ts {start} is earlier than GC \
         safepoint at {safe_point}"
    )]
    StartTsBeforeGc {
        /// The start-ts asked for.
        start: Ts,
        /// The upstream's minimum service safe point.
        safe_point: Ts,
    },
    /// The upstream could not give its current ts or protect the start-ts.
    #[error("cannot check the start-ts in {upstream}: {error}")]
    Upstream {
        /// The upstream (masked).
        upstream: String,
        /// The start-ts asked for (0: the upstream's current ts).
        start: Ts,
        /// Why.
        error: String,
    },
    /// A stored value does not decode.
    #[error("changefeed {id} has a corrupt value at {key}: {error}")]
    Corrupt {
        /// The changefeed.
        id: ChangefeedId,
        /// The key.
        key: String,
        /// The decode error.
        error: String,
    },
}

impl MetaError {
    /// TiCDC's error code for this error (the API's `error_code`).
    pub fn code(&self) -> &'static str {
        match self {
            MetaError::Store(_) => "CDC:ErrPDEtcdAPIError",
            MetaError::NotFound(_) => "CDC:ErrChangeFeedNotExists",
            MetaError::AlreadyExists(_) => "CDC:ErrChangeFeedAlreadyExists",
            MetaError::InvalidId(_) | MetaError::InvalidParam(_) => "CDC:ErrAPIInvalidParam",
            MetaError::InvalidSinkUri(_) => "CDC:ErrSinkURIInvalid",
            MetaError::NotStopped { .. } => "CDC:ErrChangefeedUpdateRefused",
            MetaError::Conflict(_) => "CDC:ErrEtcdTryAgain",
            MetaError::Corrupt { .. } => "CDC:ErrDecodeFailed",
            MetaError::StartTsBeforeGc { .. } => "CDC:ErrStartTsBeforeGC",
            MetaError::Upstream { .. } => "CDC:ErrUpdateServiceSafepointFailed",
        }
    }

    /// Whether the caller is at fault (4xx) rather than the cluster (5xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            MetaError::Store(_) | MetaError::Corrupt { .. } | MetaError::Upstream { .. }
        )
    }
}

/// How long `changefeed create` protects its start-ts (TiCDC's `ticdc-creating-<id>`
/// service safe point), covering the time until the owner's own safe point takes over.
pub const CREATING_TTL_SECS: u64 = 600;

/// The upstream's side of a create (TiCDC's `CheckSafetyOfStartTs`).
#[async_trait::async_trait]
pub trait StartTsGuard: Send + Sync {
    /// The current ts of the changefeed's upstream (`None`: the default one) — PD's TSO
    /// for a TiDB cluster: the default start-ts, and the bound a given one must not pass.
    async fn current_ts(&self, upstream: Option<&str>) -> Result<Ts, GuardError>;

    /// Sets service safe point `service` at `start` for `ttl_secs` in the changefeed's
    /// upstream (`None`: the cluster's default one) and returns that upstream's minimum
    /// service safe point. Errors name the upstream.
    async fn protect(
        &self,
        upstream: Option<&str>,
        service: &str,
        ttl_secs: u64,
        start: Ts,
    ) -> Result<Ts, GuardError>;
}

/// Why a [`StartTsGuard`] could not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardError {
    /// The upstream asked (secrets masked).
    pub upstream: String,
    /// What went wrong.
    pub error: String,
}

/// A changefeed to create.
#[derive(Clone, Debug, Default)]
pub struct NewChangefeed {
    /// Its id.
    pub id: String,
    /// Sink URI.
    pub sink_uri: String,
    /// Start ts; 0 = now.
    pub start_ts: u64,
    /// Target ts; 0 = none.
    pub target_ts: u64,
    /// Upstream URI; `None` = the cluster's default upstream.
    pub upstream: Option<String>,
    /// Replica config; `None` = TiCDC's defaults.
    pub config: Option<ReplicaConfig>,
}

/// What an update may change (only operator-owned fields).
#[derive(Clone, Debug, Default)]
pub struct ChangefeedUpdate {
    /// New sink URI.
    pub sink_uri: Option<String>,
    /// New target ts (0 = none).
    pub target_ts: Option<u64>,
    /// New replica config.
    pub config: Option<ReplicaConfig>,
}

/// The cluster's metadata in one etcd.
#[derive(Clone)]
pub struct Meta {
    store: Arc<dyn MetaStore>,
    layout: KeyLayout,
}

impl Meta {
    /// Metadata of the cluster under `layout`'s prefix.
    pub fn new(store: Arc<dyn MetaStore>, layout: KeyLayout) -> Self {
        Self { store, layout }
    }

    /// The key layout.
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    /// The whole cluster state, decoded like the reactors decode it.
    pub async fn load(&self) -> Result<GlobalState, MetaError> {
        let (kvs, _) = self.store.get_prefix(&self.layout.watch_prefix()).await?;
        let mut state = GlobalState::new(self.layout.clone());
        for kv in &kvs {
            state.apply(&kv.key, Some(&kv.value));
        }
        Ok(state)
    }

    /// The current owner's capture id, if any.
    pub async fn owner(&self) -> Result<Option<CaptureId>, MetaError> {
        Ok(
            crate::capture::election::current_owner(&*self.store, &self.layout.owner_prefix())
                .await?,
        )
    }

    /// The current owner, waiting up to `grace` for an election under way (a resign, a
    /// crashed owner's successor campaigning) to produce one. `None` only if none appeared.
    pub async fn owner_within(&self, grace: Duration) -> Result<Option<CaptureId>, MetaError> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let owner = self.owner().await?;
            if owner.is_some() || tokio::time::Instant::now() >= deadline {
                return Ok(owner);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every key and value under the cluster prefix (`cdc cli unsafe show-metadata`).
    pub async fn raw(&self) -> Result<Vec<KeyValue>, MetaError> {
        Ok(self.store.get_prefix(&self.layout.watch_prefix()).await?.0)
    }

    /// Creates a changefeed: validates, protects the start-ts in its upstream and refuses
    /// one already behind the upstream's GC safe point (`guard`), then writes its info only
    /// if neither its info nor its status key exists (TiCDC's CAS create). `now_ms` is the
    /// caller's clock.
    pub async fn create_changefeed(
        &self,
        new: NewChangefeed,
        now_ms: u64,
        guard: &dyn StartTsGuard,
    ) -> Result<(ChangefeedId, ChangeFeedInfo), MetaError> {
        if !is_valid_changefeed_id(&new.id) {
            return Err(MetaError::InvalidId(new.id));
        }
        let id = ChangefeedId::from(new.id.as_str());
        validate_sink(&new.sink_uri)?;
        if let Some(u) = &new.upstream {
            crate::upstream::parse_upstream_uri(u)
                .map_err(|e| MetaError::InvalidParam(e.to_string()))?;
        }
        let now = guard
            .current_ts(new.upstream.as_deref())
            .await
            .map_err(|e| MetaError::Upstream {
                upstream: e.upstream,
                start: Ts(new.start_ts),
                error: e.error,
            })?;
        let start = if new.start_ts == 0 {
            now
        } else {
            Ts(new.start_ts)
        };
        if start > now {
            return Err(MetaError::InvalidParam(format!(
                "start-ts {start} is later than the current ts {now}"
            )));
        }
        validate_target(start, new.target_ts)?;
        let service = format!("ticdc-creating-{id}");
        let safe_point = guard
            .protect(new.upstream.as_deref(), &service, CREATING_TTL_SECS, start)
            .await
            .map_err(|e| MetaError::Upstream {
                upstream: e.upstream,
                start,
                error: e.error,
            })?;
        if start < safe_point {
            return Err(MetaError::StartTsBeforeGc { start, safe_point });
        }
        let mut info = ChangeFeedInfo {
            sink_uri: new.sink_uri,
            opts: Some(Default::default()),
            create_time: go_time(now_ms),
            start_ts: start,
            target_ts: Ts(new.target_ts),
            state: FeedState::Normal,
            sort_engine: "unified".into(),
            config: new.config.unwrap_or_default(),
            creator_version: format!("v{}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        if let Some(u) = new.upstream {
            info.extra
                .insert(UPSTREAM_URI_FIELD.into(), serde_json::Value::String(u));
        }
        let value = encode(&info).map_err(|e| MetaError::InvalidParam(e.to_string()))?;
        let (info_key, job_key) = (self.layout.info(&id), self.layout.status(&id));
        let absent = |key: String| Compare {
            key,
            target: CompareTarget::CreateRevision(Revision(0)),
        };
        let mut success = vec![TxnOp::Put {
            key: info_key.clone(),
            value,
            lease: 0,
        }];
        // A removed changefeed's record (its job key) gives its id back: replaced in the same
        // txn, and only as read (a live changefeed's status is never taken over).
        let job = match self.removed_record(&job_key).await? {
            Some(revision) => {
                success.push(TxnOp::Delete {
                    key: job_key.clone(),
                });
                Compare {
                    key: job_key,
                    target: CompareTarget::ModRevision(revision),
                }
            }
            None => absent(job_key),
        };
        let txn = Txn {
            compares: vec![absent(info_key), job],
            success,
            failure: vec![],
        };
        if !self.store.txn(txn).await?.succeeded {
            return Err(MetaError::AlreadyExists(id));
        }
        Ok((id, info))
    }

    /// Deletes a removed changefeed's record (`remove --force`); false when there is none.
    pub async fn delete_removed_record(&self, id: &ChangefeedId) -> Result<bool, MetaError> {
        let job_key = self.layout.status(id);
        let Some(revision) = self.removed_record(&job_key).await? else {
            return Ok(false);
        };
        let txn = Txn {
            compares: vec![Compare {
                key: job_key.clone(),
                target: CompareTarget::ModRevision(revision),
            }],
            success: vec![TxnOp::Delete { key: job_key }],
            failure: vec![],
        };
        Ok(self.store.txn(txn).await?.succeeded)
    }

    /// The mod revision of `job_key` when it is a removed changefeed's record.
    async fn removed_record(&self, job_key: &str) -> Result<Option<Revision>, MetaError> {
        let (kvs, _) = self.store.get_prefix(job_key).await?;
        Ok(kvs
            .into_iter()
            .find(|kv| kv.key == job_key)
            .filter(|kv| {
                serde_json::from_slice::<ChangeFeedStatus>(&kv.value)
                    .is_ok_and(|s| s.admin_job_type == AdminJobType::Remove)
            })
            .map(|kv| kv.mod_revision))
    }

    /// Updates a stopped changefeed's operator fields, compare-and-swap on the info's mod
    /// revision so nothing the owner wrote meanwhile is overwritten.
    pub async fn update_changefeed(
        &self,
        id: &ChangefeedId,
        update: ChangefeedUpdate,
    ) -> Result<ChangeFeedInfo, MetaError> {
        let key = self.layout.info(id);
        let (kvs, _) = self.store.get_prefix(&key).await?;
        let kv = kvs
            .into_iter()
            .find(|kv| kv.key == key)
            .ok_or_else(|| MetaError::NotFound(id.clone()))?;
        let mut info: ChangeFeedInfo =
            serde_json::from_slice(&kv.value).map_err(|e| MetaError::Corrupt {
                id: id.clone(),
                key: key.clone(),
                error: e.to_string(),
            })?;
        if info.state != FeedState::Stopped {
            return Err(MetaError::NotStopped {
                id: id.clone(),
                state: info.state.as_str(),
            });
        }
        if let Some(uri) = update.sink_uri {
            validate_sink(&uri)?;
            info.sink_uri = uri;
        }
        if let Some(target) = update.target_ts {
            validate_target(info.start_ts(), target)?;
            info.target_ts = Ts(target);
        }
        if let Some(config) = update.config {
            info.config = config;
        }
        let value = encode(&info).map_err(|e| MetaError::InvalidParam(e.to_string()))?;
        let txn = Txn {
            compares: vec![Compare {
                key: key.clone(),
                target: CompareTarget::ModRevision(kv.mod_revision),
            }],
            success: vec![TxnOp::Put {
                key,
                value,
                lease: 0,
            }],
            failure: vec![],
        };
        if !self.store.txn(txn).await?.succeeded {
            return Err(MetaError::Conflict(id.clone()));
        }
        Ok(info)
    }
}

fn validate_sink(uri: &str) -> Result<(), MetaError> {
    crate::sink::parse_sink_uri(uri)
        .map(drop)
        .map_err(|e| MetaError::InvalidSinkUri(e.to_string()))
}

fn validate_target(start: Ts, target: u64) -> Result<(), MetaError> {
    if target != 0 && Ts(target) <= start {
        return Err(MetaError::InvalidParam(format!(
            "target-ts {target} must be larger than start-ts {start}"
        )));
    }
    Ok(())
}

/// Go's `time.Time` JSON form (RFC 3339 with nanoseconds and the local offset), which TiCDC
/// writes as `create-time`.
pub fn go_time(unix_ms: u64) -> String {
    let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&chrono::Local)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Reads a replica config from TiCDC's changefeed TOML (`cdc cli changefeed create --config`),
/// strictly: keys TiCDC does not know are errors. Missing keys take TiCDC's defaults.
pub fn replica_config_from_toml(text: &str) -> Result<ReplicaConfig, String> {
    let file: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut merged = serde_json::to_value(ReplicaConfig::default()).map_err(|e| e.to_string())?;
    let overlay = serde_json::to_value(file).map_err(|e| e.to_string())?;
    merge(&mut merged, overlay, "")?;
    serde_json::from_value(merged).map_err(|e| e.to_string())
}

/// Deep-merges `overlay` into `base`, refusing keys `base` does not have.
fn merge(base: &mut serde_json::Value, overlay: serde_json::Value, at: &str) -> Result<(), String> {
    match (base, overlay) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() => merge(slot, v, &path)?,
                    Some(slot) => *slot = v,
                    None => return Err(format!("unknown key {path:?} in the changefeed config")),
                }
            }
            Ok(())
        }
        (b, o) => {
            *b = o;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
