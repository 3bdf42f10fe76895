//! The timestamp oracle, as PD v5.1's global allocator (`server/tso/tso.go`) runs it.
//!
//! A timestamp is `physical_ms << 18 | logical`. The oracle keeps `(physical, logical)` in
//! memory and a *window* on disk: an upper bound on every physical it may hand out. Before the
//! physical passes within 1 ms of the saved bound, the bound is pushed `save_interval` (3 s)
//! ahead and made durable. After a restart, or when leadership moves (PD's `SyncTimestamp`),
//! the oracle starts at `max(now, saved bound + 1 ms)`: no timestamp handed out before can come
//! again, whatever the wall clock did meanwhile. PD keeps the window in etcd
//! (`/pd/<cluster_id>/timestamp`); the stand-in keeps it in its data dir, so a stand-in
//! restarted on the same directory stays monotonic even against a fresh etcd.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Result, StandinError};

/// Bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;
/// The logical part must stay below this (PD's `maxLogical`).
const MAX_LOGICAL: i64 = 1 << LOGICAL_BITS;
/// PD's `UpdateTimestampGuard`: the smallest physical step, and how close the physical may get
/// to the saved window before the window moves.
const GUARD_MS: i64 = 1;
/// The window file inside the data dir.
const WINDOW_FILE: &str = "tso-window";
/// Held (exclusively locked) while a stand-in uses the data dir.
const LOCK_FILE: &str = "LOCK";

/// Milliseconds since the Unix epoch. Injected so tests can move time by hand.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place that reads the wall clock; the oracle and the GC rules get it injected.
    #[allow(clippy::disallowed_methods)]
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A timestamp as PD sends it in `pdpb.Timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub physical: i64,
    pub logical: i64,
}

impl Timestamp {
    /// The composed TSO, `physical << 18 | logical`.
    pub fn compose(self) -> u64 {
        ((self.physical as u64) << LOGICAL_BITS) | self.logical as u64
    }
}

/// Why a TSO request got no timestamp. The messages are PD's.
#[derive(Debug, thiserror::Error)]
pub enum TsoError {
    #[error(
        "[PD:tso:ErrGenerateTimestamp]generate timestamp failed, tso count should be positive"
    )]
    ZeroCount,
    /// Too many timestamps in one millisecond; PD retries after the next physical update.
    #[error("[PD:tso:ErrLogicOverflow]logic part overflow")]
    LogicalOverflow,
}

/// The on-disk window: one decimal line, the bound in Unix milliseconds.
#[derive(Debug)]
struct WindowFile {
    path: PathBuf,
    dir: PathBuf,
    // Held for the oracle's life: a second stand-in on the same dir would break monotonicity.
    _lock: File,
}

impl WindowFile {
    fn open(dir: &Path) -> Result<Self> {
        let io = |what, source| StandinError::DataDir {
            path: dir.to_path_buf(),
            what,
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| io("open the lock file", e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io(
                "in use by another stand-in",
                std::io::Error::from(std::io::ErrorKind::WouldBlock),
            ),
            std::fs::TryLockError::Error(e) => io("lock", e),
        })?;
        Ok(Self {
            path: dir.join(WINDOW_FILE),
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The saved bound, or `None` on a fresh data dir.
    fn load(&self) -> Result<Option<i64>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StandinError::DataDir {
                    path: self.path.clone(),
                    what: "read the TSO window",
                    source,
                })
            }
        };
        text.trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|e| StandinError::CorruptWindow {
                path: self.path.clone(),
                why: format!("{e} in {text:?}"),
            })
    }

    /// Writes the bound durably: a temp file, fsync, rename, fsync of the directory. A crash
    /// leaves either the old bound or the new one, never a torn line.
    fn save(&self, bound_ms: i64) -> Result<()> {
        let io = |what, source| StandinError::DataDir {
            path: self.path.clone(),
            what,
            source,
        };
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(|e| io("create the TSO window", e))?;
        f.write_all(format!("{bound_ms}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write the TSO window", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io("replace the TSO window", e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync the data dir", e))
    }
}

#[derive(Debug, Default)]
struct State {
    physical: i64,
    logical: i64,
    /// The bound last made durable; no physical at or above it is handed out.
    saved: i64,
}

/// PD's global TSO allocator over a window file in the data dir.
pub struct Tso {
    state: Mutex<State>,
    file: WindowFile,
    clock: Arc<dyn Clock>,
    save_interval_ms: i64,
}

impl Tso {
    /// Opens (and locks) the data dir and syncs the oracle past any saved window.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>, save_interval_ms: i64) -> Result<Self> {
        let tso = Self {
            state: Mutex::new(State::default()),
            file: WindowFile::open(data_dir)?,
            clock,
            save_interval_ms: save_interval_ms.max(GUARD_MS * 2),
        };
        tso.sync()?;
        Ok(tso)
    }

    /// PD's `SyncTimestamp`, run at start and by every new leader: the next physical is `now`,
    /// or 1 ms past the saved window when the clock is behind it. The window is saved before
    /// the physical moves.
    pub fn sync(&self) -> Result<()> {
        let mut st = self.state.lock();
        let last = self.file.load()?.unwrap_or(0).max(st.saved);
        let mut next = self.clock.now_ms();
        if next - last < GUARD_MS {
            tracing::warn!(
                last,
                next,
                "system time may be incorrect: starting after the saved TSO window"
            );
            next = last + GUARD_MS;
        }
        let save = next + self.save_interval_ms;
        self.file.save(save)?;
        st.saved = save;
        if next > st.physical {
            st.physical = next;
            st.logical = 0;
        }
        tracing::info!(last, next, save, "TSO synced");
        Ok(())
    }

    /// PD's `UpdateTimestamp`, run every update interval (50 ms): the physical follows the
    /// clock, or steps 1 ms when half the logical space is used. The window moves first when
    /// the new physical would come within 1 ms of it; if saving fails the physical stays (the
    /// oracle stalls rather than pass its durable bound).
    pub fn update(&self) -> Result<()> {
        let mut st = self.state.lock();
        let now = self.clock.now_ms();
        let next = if now - st.physical > GUARD_MS {
            now
        } else if st.logical > MAX_LOGICAL / 2 {
            tracing::warn!(logical = st.logical, "the logical time may be not enough");
            st.physical + 1
        } else {
            return Ok(());
        };
        if st.saved - next <= GUARD_MS {
            let save = next + self.save_interval_ms;
            self.file.save(save)?;
            st.saved = save;
        }
        st.physical = next;
        st.logical = 0;
        Ok(())
    }

    /// Hands out `count` timestamps and returns the LAST one (the client derives the first as
    /// `logical - count + 1`). Overflow means: wait for the next update and retry, as PD does.
    pub fn generate(&self, count: u32) -> std::result::Result<Timestamp, TsoError> {
        if count == 0 {
            return Err(TsoError::ZeroCount);
        }
        let mut st = self.state.lock();
        let logical = st.logical + i64::from(count);
        if logical >= MAX_LOGICAL {
            return Err(TsoError::LogicalOverflow);
        }
        st.logical = logical;
        Ok(Timestamp {
            physical: st.physical,
            logical,
        })
    }

    /// The window bound last saved (for the control surface and tests).
    pub fn saved_bound_ms(&self) -> i64 {
        self.state.lock().saved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    struct ManualClock(AtomicI64);
    impl Clock for ManualClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn clock(ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(ms)))
    }

    #[test]
    fn batch_returns_its_last_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let tso = Tso::open(dir.path(), clock(1_000_000), 3_000).unwrap();
        let a = tso.generate(1).unwrap();
        let b = tso.generate(10).unwrap();
        assert_eq!(
            a,
            Timestamp {
                physical: 1_000_000,
                logical: 1
            }
        );
        assert_eq!(b.logical, 11, "the last of 10 after 1");
        assert!(matches!(tso.generate(0), Err(TsoError::ZeroCount)));
        assert_eq!(b.compose(), (1_000_000u64 << 18) | 11);
    }

    #[test]
    fn restart_starts_after_the_saved_window_even_if_the_clock_went_back() {
        let dir = tempfile::tempdir().unwrap();
        let c = clock(5_000);
        let last = {
            let tso = Tso::open(dir.path(), c.clone(), 3_000).unwrap();
            assert_eq!(tso.saved_bound_ms(), 8_000);
            c.0.store(7_000, Ordering::SeqCst);
            tso.update().unwrap();
            assert_eq!(
                tso.saved_bound_ms(),
                8_000,
                "2 s of window left: not saved yet"
            );
            c.0.store(7_999, Ordering::SeqCst);
            tso.update().unwrap();
            assert_eq!(
                tso.saved_bound_ms(),
                10_999,
                "within 1 ms of the window: moved first"
            );
            tso.generate(5).unwrap()
        };
        c.0.store(1_000, Ordering::SeqCst);
        let tso = Tso::open(dir.path(), c, 3_000).unwrap();
        let first = tso.generate(1).unwrap();
        assert!(first > last, "{first:?} after restart must pass {last:?}");
        assert_eq!(first.physical, 11_000, "saved bound + 1 ms");
    }

    #[test]
    fn logical_overflow_waits_for_the_next_physical() {
        let dir = tempfile::tempdir().unwrap();
        let c = clock(10_000);
        let tso = Tso::open(dir.path(), c, 3_000).unwrap();
        tso.generate((MAX_LOGICAL - 2) as u32).unwrap();
        assert!(matches!(tso.generate(5), Err(TsoError::LogicalOverflow)));
        // The clock stands still; past half the logical space the physical steps 1 ms.
        tso.update().unwrap();
        let t = tso.generate(5).unwrap();
        assert_eq!(
            t,
            Timestamp {
                physical: 10_001,
                logical: 5
            }
        );
    }

    #[test]
    fn a_second_oracle_on_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _tso = Tso::open(dir.path(), clock(1), 3_000).unwrap();
        let err = Tso::open(dir.path(), clock(1), 3_000).err().unwrap();
        assert!(
            err.to_string().contains("in use by another stand-in"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_window_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WINDOW_FILE), "not a number").unwrap();
        let err = Tso::open(dir.path(), clock(1), 3_000).err().unwrap();
        assert!(err.to_string().contains("tso-window is corrupt"), "{err}");
    }
}
