//! Writes one recording file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rcdc_reactor::RawKeys;
use serde::Serialize;

use super::{Line, RecordedKv, RecordedValue, Role, FORMAT, VERSION};

/// One recording file, written line by line. A write error stops the file (logged, and
/// visible through [`Recorder::failed`]); recording never fails the reactor.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
    ticks: u64,
    failed: Option<String>,
}

impl Recorder {
    /// Starts `<role>-<capture>-<n>.ndjson` in `dir`, `n` one above the stream's highest
    /// existing file (so names sort by age even after old files were deleted), with its
    /// header.
    pub fn create(
        dir: &Path,
        role: Role,
        capture: &str,
        cluster_prefix: &str,
        config: &impl Serialize,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let n = stream_files(dir, role, capture)?
            .last()
            .map_or(1, |(n, _)| n + 1);
        let path = dir.join(format!("{}-{capture}-{n}.ndjson", role.as_str()));
        let config = serde_json::to_value(config).map_err(std::io::Error::other)?;
        let file = File::create_new(&path)?;
        let mut r = Self {
            path,
            out: Some(BufWriter::new(file)),
            written: 0,
            ticks: 0,
            failed: None,
        };
        r.write(&Line::Header {
            format: FORMAT.into(),
            version: VERSION,
            role,
            capture: capture.into(),
            cluster_prefix: cluster_prefix.into(),
            config,
        });
        Ok(r)
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Why the file stopped early, if it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Records the reactor's memory and every raw key (a file starting mid-life).
    pub fn resume(&mut self, memory: serde_json::Value, keys: &dyn RawKeys) {
        let mut kvs = Vec::new();
        keys.for_each(&mut |k, v| {
            kvs.push(RecordedKv {
                key: k.to_owned(),
                value: Some(RecordedValue::of(v)),
            })
        });
        self.write(&Line::Resume { memory, kvs });
    }

    /// Records a batch of updates about to be applied.
    pub fn updates(&mut self, updates: &[(String, Option<Vec<u8>>)]) {
        let kvs = updates
            .iter()
            .map(|(k, v)| RecordedKv {
                key: k.clone(),
                value: v.as_deref().map(RecordedValue::of),
            })
            .collect();
        self.write(&Line::Updates { kvs });
    }

    /// Records one tick and flushes, so a crash loses at most the tick in progress.
    pub fn tick(&mut self, input: &impl Serialize, output: &impl Serialize) {
        self.ticks += 1;
        let line = match (serde_json::to_value(input), serde_json::to_value(output)) {
            (Ok(input), Ok(output)) => Line::Tick {
                n: self.ticks,
                input,
                output,
            },
            (Err(e), _) | (_, Err(e)) => return self.fail(&format!("encoding a tick: {e}")),
        };
        self.write(&line);
        self.flush();
    }

    /// Ends the file with an `end` line saying why.
    pub fn end(mut self, reason: &str) {
        self.write(&Line::End {
            reason: reason.to_owned(),
        });
        self.flush();
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                self.fail(&e.to_string());
            }
        }
    }

    fn write(&mut self, line: &Line) {
        let Some(out) = self.out.as_mut() else { return };
        // Through a JSON tree so secrets are masked before anything reaches the file.
        let mut tree = match serde_json::to_value(line) {
            Ok(t) => t,
            Err(e) => return self.fail(&format!("encoding a line: {e}")),
        };
        super::secrets::mask_secrets(&mut tree);
        let mut bytes = match serde_json::to_vec(&tree) {
            Ok(b) => b,
            Err(e) => return self.fail(&format!("encoding a line: {e}")),
        };
        bytes.push(b'\n');
        self.written += bytes.len() as u64;
        if let Err(e) = out.write_all(&bytes) {
            self.fail(&e.to_string());
        }
    }

    fn fail(&mut self, error: &str) {
        tracing::warn!(path = %self.path.display(), error, "recording stopped: write failed");
        self.out = None;
        self.failed = Some(format!("{}: {error}", self.path.display()));
    }
}

/// The files of one stream in `dir`, oldest first, with their numbers.
pub(super) fn stream_files(
    dir: &Path,
    role: Role,
    capture: &str,
) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let prefix = format!("{}-{capture}-", role.as_str());
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let n = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".ndjson"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            files.push((n, path));
        }
    }
    files.sort();
    Ok(files)
}
