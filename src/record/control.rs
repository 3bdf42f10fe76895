//! Turning recording on and off at runtime, and rotation.
//!
//! One [`RecordingControl`] per capture holds the switch and the limits (`cdc server
//! --record DIR` starts with it on; the HTTP API flips it). Each reactor adapter owns a
//! [`Recording`] that follows the switch before every tick: it starts a file (with a
//! `resume` line when the reactor has ticked before), rotates a full one, or ends the file
//! when the switch goes off.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rcdc_reactor::RawKeys;
use serde::Serialize;

use super::recorder::{stream_files, Recorder};
use super::{Role, DEFAULT_MAX_FILES, DEFAULT_MAX_FILE_BYTES};

/// What the switch is set to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordingSettings {
    /// Whether reactors record.
    pub enabled: bool,
    /// Where the files go (`None`: nowhere configured yet, so recording cannot be enabled
    /// without naming one).
    pub dir: Option<PathBuf>,
    /// A file that reaches this size ends and the next starts.
    pub max_file_bytes: u64,
    /// Files kept per reactor and capture; older ones are deleted.
    pub max_files: usize,
    /// Where the API may point recording: the capture's `--record` and `--data-dir`
    /// directories and what lies under them. Recordings hold the cluster's metadata, so a
    /// remote caller must not choose an arbitrary path.
    pub allowed_dirs: Vec<PathBuf>,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_files: DEFAULT_MAX_FILES,
            allowed_dirs: Vec::new(),
        }
    }
}

/// The settings plus what the reactors report back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecordingStatus {
    /// The switch.
    #[serde(flatten)]
    pub settings: RecordingSettings,
    /// Files being written now.
    pub files: Vec<PathBuf>,
    /// The last error that stopped a file, if any.
    pub last_error: Option<String>,
}

/// Why the switch refused to turn on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordingError {
    /// No directory was configured or given.
    #[error("no recording directory: start the server with --record DIR or give \"dir\"")]
    NoDirectory,
    /// The directory is outside [`RecordingSettings::allowed_dirs`].
    #[error(
        "recording directory {dir} refused: it must be inside the capture's --data-dir or \
         --record directory (allowed: {allowed})"
    )]
    NotAllowed {
        /// The directory asked for.
        dir: String,
        /// The allowed roots, or a hint when there are none.
        allowed: String,
    },
    /// The directory cannot be created.
    #[error("recording directory {dir}: {error}")]
    Directory {
        /// The directory.
        dir: String,
        /// The OS error.
        error: String,
    },
}

/// `dir`, made absolute, if it lies inside one of `roots`. A `..` component is refused
/// outright rather than resolved: it is how a path escapes a root.
fn allowed(dir: &Path, roots: &[PathBuf]) -> Result<PathBuf, RecordingError> {
    let refuse = || RecordingError::NotAllowed {
        dir: dir.display().to_string(),
        allowed: if roots.is_empty() {
            "none: start the capture with --data-dir or --record".to_owned()
        } else {
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
    };
    if dir.components().any(|c| c == Component::ParentDir) {
        return Err(refuse());
    }
    let abs = std::path::absolute(dir).map_err(|_| refuse())?;
    let inside = |path: &Path, resolve: fn(&Path) -> std::io::Result<PathBuf>| {
        roots
            .iter()
            .filter_map(|r| resolve(r).ok())
            .any(|r| path.starts_with(r))
    };
    if !inside(&abs, |p| std::path::absolute(p)) {
        return Err(refuse());
    }
    // A symlink under a root may point elsewhere: the deepest part of the path that exists
    // must resolve inside a resolved root too, before anything is created.
    let existing = abs.ancestors().find(|a| a.exists()).unwrap_or(&abs);
    let resolved = std::fs::canonicalize(existing).map_err(|_| refuse())?;
    if !inside(&resolved, |p| std::fs::canonicalize(p)) {
        return Err(refuse());
    }
    Ok(abs)
}

/// The capture-wide recording switch, shared by its reactors and the HTTP API.
#[derive(Debug, Default)]
pub struct RecordingControl {
    status: Mutex<RecordingStatus>,
}

impl RecordingControl {
    /// A switch with these settings.
    pub fn new(settings: RecordingSettings) -> Arc<Self> {
        Arc::new(Self {
            status: Mutex::new(RecordingStatus {
                settings,
                ..Default::default()
            }),
        })
    }

    /// Settings and live files.
    pub fn status(&self) -> RecordingStatus {
        self.status.lock().clone()
    }

    /// Turns recording on (into `dir`, or the configured directory) or off (remembering
    /// `dir` for later). Reactors follow at their next tick.
    pub fn set(&self, enabled: bool, dir: Option<PathBuf>) -> Result<(), RecordingError> {
        let mut s = self.status.lock();
        let dir = match dir {
            Some(d) => Some(allowed(&d, &s.settings.allowed_dirs)?),
            None => None,
        };
        if let (false, Some(dir)) = (enabled, &dir) {
            s.settings.dir = Some(dir.clone());
        }
        if enabled {
            let dir = dir
                .or_else(|| s.settings.dir.clone())
                .ok_or(RecordingError::NoDirectory)?;
            std::fs::create_dir_all(&dir).map_err(|e| RecordingError::Directory {
                dir: dir.display().to_string(),
                error: e.to_string(),
            })?;
            s.settings.dir = Some(dir);
            s.last_error = None;
        }
        s.settings.enabled = enabled;
        Ok(())
    }

    fn settings(&self) -> RecordingSettings {
        self.status.lock().settings.clone()
    }

    fn opened(&self, path: PathBuf) {
        self.status.lock().files.push(path);
    }

    fn closed(&self, path: &std::path::Path, error: Option<String>) {
        let mut s = self.status.lock();
        s.files.retain(|p| p != path);
        if error.is_some() {
            s.last_error = error;
        }
    }

    /// A file could not be started: remember why and turn recording off, rather than
    /// retrying (and logging) on every tick.
    fn failed_to_start(&self, error: String) {
        let mut s = self.status.lock();
        s.last_error = Some(error);
        s.settings.enabled = false;
    }
}

/// One reactor's recording, following the capture's switch.
#[derive(Debug)]
pub struct Recording {
    control: Arc<RecordingControl>,
    role: Role,
    capture: String,
    cluster_prefix: String,
    config: serde_json::Value,
    current: Option<Recorder>,
    /// The reactor has ticked before: a new file must start with its memory and the keys.
    ticked: bool,
}

impl Recording {
    /// A recording of `role` on `capture`, configured by `config`.
    pub fn new(
        control: Arc<RecordingControl>,
        role: Role,
        capture: &str,
        cluster_prefix: &str,
        config: &impl Serialize,
    ) -> Self {
        Self {
            control,
            role,
            capture: capture.to_owned(),
            cluster_prefix: cluster_prefix.to_owned(),
            config: serde_json::to_value(config).unwrap_or(serde_json::Value::Null),
            current: None,
            ticked: false,
        }
    }

    /// Whether a file is being written (so the tick's input and output are wanted).
    pub fn is_active(&self) -> bool {
        self.current.is_some()
    }

    /// Before each tick: follows the switch (start, rotate, end) and records the batch.
    /// `memory` serializes the reactor; it is called only when a file starts mid-life.
    /// Returns true when a new file started, so per-file deltas restart from nothing.
    pub fn before_tick(
        &mut self,
        updates: &[(String, Option<Vec<u8>>)],
        keys: &dyn RawKeys,
        memory: &dyn Fn() -> serde_json::Result<serde_json::Value>,
    ) -> bool {
        let settings = self.control.settings();
        let mut started = false;
        match (settings.enabled, settings.dir.as_ref(), self.current.take()) {
            (true, Some(dir), None) => {
                started = self.start(dir, &settings, keys, memory);
            }
            (true, Some(dir), Some(cur)) if cur.written() >= settings.max_file_bytes => {
                let old = cur.path().to_owned();
                started = self.start(dir, &settings, keys, memory);
                let next = self
                    .current
                    .as_ref()
                    .map(|r| r.path().display().to_string());
                cur.end(&format!(
                    "rotated at {} bytes; continues in {}",
                    settings.max_file_bytes,
                    next.as_deref().unwrap_or("(nothing: the next file failed)")
                ));
                self.control.closed(&old, None);
            }
            (true, Some(_), Some(cur)) => self.current = Some(cur),
            (_, _, Some(cur)) => {
                let old = cur.path().to_owned();
                cur.end("recording turned off");
                self.control.closed(&old, None);
            }
            (_, _, None) => {}
        }
        if let Some(r) = self.current.as_mut().filter(|_| !updates.is_empty()) {
            r.updates(updates);
        }
        self.check_failed();
        started
    }

    /// After each tick: records it.
    pub fn after_tick(&mut self, input: &impl Serialize, output: &impl Serialize) {
        self.ticked = true;
        if let Some(r) = self.current.as_mut() {
            r.tick(input, output);
        }
        self.check_failed();
    }

    fn start(
        &mut self,
        dir: &std::path::Path,
        settings: &RecordingSettings,
        keys: &dyn RawKeys,
        memory: &dyn Fn() -> serde_json::Result<serde_json::Value>,
    ) -> bool {
        let created = Recorder::create(
            dir,
            self.role,
            &self.capture,
            &self.cluster_prefix,
            &self.config,
        );
        let mut rec = match created {
            Ok(r) => r,
            Err(e) => {
                let error = format!(
                    "cannot record the {} in {}: {e}",
                    self.role.as_str(),
                    dir.display()
                );
                tracing::warn!(%error, "recording turned off");
                self.control.failed_to_start(error);
                return false;
            }
        };
        if self.ticked {
            match memory() {
                Ok(m) => rec.resume(m, keys),
                Err(e) => {
                    let error = format!("cannot encode the {}'s memory: {e}", self.role.as_str());
                    tracing::warn!(%error, "recording turned off");
                    let path = rec.path().to_owned();
                    rec.end(&error);
                    let _ = std::fs::remove_file(path);
                    self.control.failed_to_start(error);
                    return false;
                }
            }
        }
        tracing::info!(path = %rec.path().display(), role = self.role.as_str(), "recording");
        self.control.opened(rec.path().to_owned());
        self.current = Some(rec);
        self.prune(dir, settings.max_files);
        true
    }

    /// Deletes the stream's oldest files beyond `max_files` (the one being written counts).
    fn prune(&self, dir: &std::path::Path, max_files: usize) {
        let Ok(files) = stream_files(dir, self.role, &self.capture) else {
            return;
        };
        let excess = files.len().saturating_sub(max_files.max(1));
        for (_, path) in files.into_iter().take(excess) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an old recording");
            }
        }
    }

    fn check_failed(&mut self) {
        if let Some(error) = self
            .current
            .as_ref()
            .and_then(|r| r.failed())
            .map(str::to_owned)
        {
            if let Some(r) = self.current.take() {
                self.control.closed(r.path(), Some(error));
            }
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(r) = self.current.take() {
            let path = r.path().to_owned();
            r.end("the reactor stopped");
            self.control.closed(&path, None);
        }
    }
}
