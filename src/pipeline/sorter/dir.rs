//! The sort dir: where this process's sorters spill, and what is left of crashed processes.
//!
//! Several captures may share one sort dir (one machine, one `--data-dir`), so each process
//! spills into a directory of its own, `<sort-dir>/rcdc-<pid>-<n>/`, and holds an exclusive
//! lock on its `LOCK` file for as long as it lives. The kernel drops the lock when the process
//! dies, however it dies; so at start a directory whose lock can be taken belongs to a process
//! that is gone, and is removed (TiCDC's `UnifiedSorterCleanUp`, made safe for neighbours). A
//! clean exit removes the process's own directory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The prefix of a process directory.
const PROCESS_DIR_PREFIX: &str = "rcdc-";
const LOCK_FILE: &str = "LOCK";
const MAX_OWN_ATTEMPTS: u32 = 1000;

/// The sort dir could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("cannot prepare the sort dir {path}: {source}")]
pub struct SortDirError {
    /// The path concerned.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> SortDirError + '_ {
    move |source| SortDirError {
        path: path.to_path_buf(),
        source,
    }
}

/// What cleaning stale directories found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Directories of dead processes removed.
    pub dirs: u64,
    /// Files removed from them.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// This process's spill directory (see the module docs).
#[derive(Debug)]
pub struct SortDir {
    root: PathBuf,
    own: PathBuf,
    /// Held for the process's life: the lock is the "still alive" mark.
    _lock: File,
    next_file: AtomicU64,
    /// Bytes of live run files (TiCDC's `ticdc_sorter_on_disk_data_size_gauge`).
    on_disk: AtomicU64,
}

impl SortDir {
    /// Creates `root` if needed, removes the directories of dead processes in it, and makes
    /// this process's own.
    pub fn open(root: &Path) -> Result<(Self, Cleaned), SortDirError> {
        fs::create_dir_all(root).map_err(err(root))?;
        let cleaned = clean_stale(root)?;
        let pid = std::process::id();
        // A pid can be reused by a later process whose predecessor still runs in another pid
        // namespace: count up to a free name.
        for n in 0..MAX_OWN_ATTEMPTS {
            let own = root.join(format!("{PROCESS_DIR_PREFIX}{pid}-{n}"));
            match fs::create_dir(&own) {
                Ok(()) => {
                    let lock = lock_file(&own)?;
                    lock.try_lock().map_err(|e| SortDirError {
                        path: own.join(LOCK_FILE),
                        source: io::Error::other(e.to_string()),
                    })?;
                    let dir = SortDir {
                        root: root.to_path_buf(),
                        own,
                        _lock: lock,
                        next_file: AtomicU64::new(0),
                        on_disk: AtomicU64::new(0),
                    };
                    return Ok((dir, cleaned));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(err(&own)(e)),
            }
        }
        Err(SortDirError {
            path: root.to_path_buf(),
            source: io::Error::other(format!(
                "{MAX_OWN_ATTEMPTS} live process directories already carry this pid ({pid})"
            )),
        })
    }

    /// The sort dir as configured.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This process's directory.
    pub fn own(&self) -> &Path {
        &self.own
    }

    /// A fresh file name for a run of `table_label` (changefeed and table, for operators
    /// reading the directory).
    pub fn run_path(&self, table_label: &str) -> PathBuf {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        self.own.join(format!("{table_label}-{n}.run"))
    }

    /// Records `bytes` more (or, negative, fewer) on disk.
    pub fn account_disk(&self, delta: i64) {
        if delta >= 0 {
            self.on_disk.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.on_disk
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Bytes of live run files.
    pub fn on_disk_bytes(&self) -> u64 {
        self.on_disk.load(Ordering::Relaxed)
    }

    /// Removes this process's directory (a clean exit); returns the bytes it still held.
    pub fn remove_own(&self) -> Result<u64, SortDirError> {
        let (_, bytes) = dir_size(&self.own).map_err(err(&self.own))?;
        fs::remove_dir_all(&self.own).map_err(err(&self.own))?;
        Ok(bytes)
    }
}

fn lock_file(dir: &Path) -> Result<File, SortDirError> {
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err(&path))
}

/// Removes every process directory in `root` whose lock is free (its process is gone).
fn clean_stale(root: &Path) -> Result<Cleaned, SortDirError> {
    let mut cleaned = Cleaned::default();
    for entry in fs::read_dir(root).map_err(err(root))? {
        let entry = entry.map_err(err(root))?;
        let path = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PROCESS_DIR_PREFIX));
        if !is_ours || !entry.file_type().map_err(err(&path))?.is_dir() {
            continue; // not ours to remove
        }
        let lock = lock_file(&path)?;
        if lock.try_lock().is_err() {
            continue; // a live process holds it
        }
        let (files, bytes) = dir_size(&path).map_err(err(&path))?;
        fs::remove_dir_all(&path).map_err(err(&path))?;
        cleaned.dirs += 1;
        cleaned.files += files;
        cleaned.bytes += bytes;
    }
    Ok(cleaned)
}

/// Files (other than the lock) and their bytes in a process directory (flat).
fn dir_size(dir: &Path) -> io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == LOCK_FILE {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_file() {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_directory_is_kept_and_a_dead_one_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (live, cleaned) = SortDir::open(tmp.path()).expect("open");
        assert_eq!(cleaned, Cleaned::default());
        fs::write(live.run_path("cf-1"), b"0123456789").expect("write");

        // A dead process's directory: its lock file exists but nobody holds it.
        let dead = tmp.path().join("rcdc-999999-0");
        fs::create_dir(&dead).expect("mkdir");
        fs::write(dead.join(LOCK_FILE), b"").expect("lock");
        fs::write(dead.join("cf-7-0.run"), vec![0u8; 4096]).expect("run");
        fs::write(dead.join("cf-7-1.run"), vec![0u8; 100]).expect("run");
        // Not ours: left alone.
        fs::write(tmp.path().join("unrelated"), b"x").expect("write");

        let (second, cleaned) = SortDir::open(tmp.path()).expect("open again");
        assert_eq!(
            cleaned,
            Cleaned {
                dirs: 1,
                files: 2,
                bytes: 4196
            }
        );
        assert!(!dead.exists());
        assert!(live.own().exists(), "a live process's files stay");
        assert!(tmp.path().join("unrelated").exists());
        assert_ne!(live.own(), second.own());

        assert_eq!(live.remove_own().expect("remove"), 10);
        assert!(!live.own().exists());
    }

    #[test]
    fn run_paths_are_unique_and_inside_the_own_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (dir, _) = SortDir::open(tmp.path()).expect("open");
        let (a, b) = (dir.run_path("cf-1"), dir.run_path("cf-1"));
        assert_ne!(a, b);
        assert!(a.starts_with(dir.own()));
    }

    #[test]
    fn an_unusable_root_is_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("a-file");
        fs::write(&file, b"x").expect("write");
        let e = SortDir::open(&file.join("sorter")).expect_err("not a directory");
        assert!(e.to_string().contains("a-file/sorter"), "{e}");
    }
}
