//! The sort dir: where this process's sorters spill, and what is left of crashed processes.
//!
//! Several captures may share one sort dir (one machine, one `--data-dir`), so each process
//! spills into a directory of its own, `<sort-dir>/rcdc-<pid>-<n>/`, and holds an exclusive
//! lock on the file `<sort-dir>/rcdc-<pid>-<n>.lock` beside it for as long as it lives. The
//! kernel drops the lock when the process dies, however it dies; so at start a lock that can
//! be taken belongs to a process that is gone, and its directory is removed (TiCDC's
//! `UnifiedSorterCleanUp`, made safe for neighbours). A clean exit removes the process's own.
//!
//! Captures start together, and clean together: a lock file appears already locked (made
//! under a temporary name, locked, then linked into place) and before its directory; a
//! cleaner removes the directory before the lock file; and one that locked a lock file checks
//! that the path still names that file (another cleaner may have removed it, and a new
//! process made a new one under the name).
//! Whatever vanishes meanwhile was removed by someone else, and is not an error.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The prefix of a process directory and of its lock file.
const PROCESS_PREFIX: &str = "rcdc-";
const LOCK_SUFFIX: &str = ".lock";
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
    lock_path: PathBuf,
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
        // A pid is reused by later processes: count up to a free name.
        for n in 0..MAX_OWN_ATTEMPTS {
            let name = format!("{PROCESS_PREFIX}{pid}-{n}");
            let lock_path = root.join(format!("{name}{LOCK_SUFFIX}"));
            let Some(lock) = publish_locked(&lock_path)? else {
                continue; // the name is taken
            };
            let own = root.join(&name);
            match fs::create_dir(&own) {
                Ok(()) => {}
                // A dead namesake's directory whose lock file a cleaner already removed.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    fs::remove_dir_all(&own).map_err(err(&own))?;
                    fs::create_dir(&own).map_err(err(&own))?;
                }
                Err(e) => return Err(err(&own)(e)),
            }
            let dir = SortDir {
                root: root.to_path_buf(),
                own,
                lock_path,
                _lock: lock,
                next_file: AtomicU64::new(0),
                on_disk: AtomicU64::new(0),
            };
            return Ok((dir, cleaned));
        }
        Err(SortDirError {
            path: root.to_path_buf(),
            source: io::Error::other(format!(
                "{MAX_OWN_ATTEMPTS} lock files already carry this pid ({pid})"
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

    /// Removes this process's directory, then its lock file (a clean exit); returns the bytes
    /// the directory still held.
    pub fn remove_own(&self) -> Result<u64, SortDirError> {
        let (_, bytes) = remove_tree(&self.own).map_err(err(&self.own))?;
        remove_if_present(&self.lock_path).map_err(err(&self.lock_path))?;
        Ok(bytes)
    }
}

/// Makes the lock file at `path` appear already locked: it is created and locked under a
/// temporary name, then hard-linked into place (which, unlike a rename, never replaces an
/// existing file). A cleaner that found the file between its creation and its lock would
/// take it for a dead process's. `None` when the name is taken.
fn publish_locked(path: &Path) -> Result<Option<File>, SortDirError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&tmp)
        .map_err(err(&tmp))?;
    // Another thread of this process may be publishing the same name: the temporary file is
    // ours only while we hold its lock and it is still the file under that name.
    if lock.try_lock().is_err() || !names(&tmp, &lock).map_err(err(&tmp))? {
        return Ok(None);
    }
    let linked = fs::hard_link(&tmp, path);
    remove_if_present(&tmp).map_err(err(&tmp))?;
    match linked {
        Ok(()) if names(path, &lock).map_err(err(path))? => Ok(Some(lock)),
        Ok(()) => Ok(None),
        Err(e) if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::NotFound) => Ok(None),
        Err(e) => Err(err(path)(e)),
    }
}

/// Whether `path` names the file `file` has open (not a file made under the name since).
fn names(path: &Path, file: &File) -> io::Result<bool> {
    let held = file.metadata()?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.ino() == held.ino() && now.dev() == held.dev()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the directory of every lock file in `root` that can be locked (its process is
/// gone), then the lock file.
fn clean_stale(root: &Path) -> Result<Cleaned, SortDirError> {
    let mut cleaned = Cleaned::default();
    for entry in fs::read_dir(root).map_err(err(root))? {
        let entry = entry.map_err(err(root))?;
        let file_name = entry.file_name();
        let Some(name) = file_name
            .to_str()
            .filter(|n| n.starts_with(PROCESS_PREFIX))
            .and_then(|n| n.strip_suffix(LOCK_SUFFIX))
        else {
            continue; // not a lock file of ours
        };
        let lock_path = entry.path();
        let Some(_held) = lock_if_dead(&lock_path).map_err(err(&lock_path))? else {
            continue; // alive, or another cleaner has it
        };
        let dir = root.join(name);
        let (files, bytes) = remove_tree(&dir).map_err(err(&dir))?;
        remove_if_present(&lock_path).map_err(err(&lock_path))?;
        cleaned.dirs += 1;
        cleaned.files += files;
        cleaned.bytes += bytes;
    }
    Ok(cleaned)
}

/// The lock of a dead process, held: `None` if its process lives, another cleaner holds it,
/// or it is gone or replaced under its name.
fn lock_if_dead(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.try_lock().is_err() || !names(path, &file)? {
        return Ok(None);
    }
    Ok(Some(file))
}

/// Removes a (flat) process directory; returns the files and bytes it held. Absent is fine.
fn remove_tree(dir: &Path) -> io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        match entry.metadata() {
            Ok(meta) if meta.is_file() => {
                files += 1;
                bytes += meta.len();
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok((files, bytes)),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dead process's leftovers: its lock file (nobody holds it) and its directory.
    fn dead(root: &Path, name: &str, runs: &[usize]) -> PathBuf {
        let dir = root.join(name);
        fs::create_dir(&dir).expect("mkdir");
        fs::write(root.join(format!("{name}{LOCK_SUFFIX}")), b"").expect("lock");
        for (i, len) in runs.iter().enumerate() {
            fs::write(dir.join(format!("cf-7-{i}.run")), vec![0u8; *len]).expect("run");
        }
        dir
    }

    #[test]
    fn a_live_directory_is_kept_and_a_dead_one_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (live, cleaned) = SortDir::open(tmp.path()).expect("open");
        assert_eq!(cleaned, Cleaned::default());
        fs::write(live.run_path("cf-1"), b"0123456789").expect("write");

        let gone = dead(tmp.path(), "rcdc-999999-0", &[4096, 100]);
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
        assert!(!gone.exists());
        assert!(!tmp.path().join("rcdc-999999-0.lock").exists());
        assert!(live.own().exists(), "a live process's files stay");
        assert!(tmp.path().join("unrelated").exists());
        assert_ne!(live.own(), second.own());

        assert_eq!(live.remove_own().expect("remove"), 10);
        assert!(!live.own().exists());
        assert!(!live.lock_path.exists());
    }

    /// Captures start together on one data dir (the CI failure that found this: three
    /// `cdc server`s racing to clean the same dead directories, one failing to start).
    #[test]
    fn processes_opening_together_all_start_and_clean_each_dead_directory_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for n in 0..20 {
            dead(tmp.path(), &format!("rcdc-88888{n}-0"), &[1000, 24]);
        }
        let root = tmp.path().to_path_buf();
        let opened: Vec<(SortDir, Cleaned)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| SortDir::open(&root).expect("every opener starts")))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        let total: u64 = opened.iter().map(|(_, c)| c.dirs).sum();
        let bytes: u64 = opened.iter().map(|(_, c)| c.bytes).sum();
        assert_eq!((total, bytes), (20, 20 * 1024), "each dead directory once");
        let names: std::collections::BTreeSet<_> =
            opened.iter().map(|(d, _)| d.own().to_path_buf()).collect();
        assert_eq!(names.len(), 8, "each opener has its own directory");
        assert!(opened.iter().all(|(d, _)| d.own().is_dir()));
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
