//! Runs many seeds of the simulation across threads (issue #16 item 3).
//!
//! Each seed owns its runtime, store and captures, so seeds share nothing but counters: they
//! can run side by side. Threads take the next seed from a shared counter (seeds differ in
//! length, so a fixed split would leave threads idle); the first failing seed stops the others
//! and its panic, which names the seed, is re-raised.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Threads for a run: `RCDC_SIM_THREADS`, else one per core the process may use.
pub fn threads() -> usize {
    std::env::var("RCDC_SIM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// Runs `run(seed)` for every seed in `seeds` on `threads` threads and sums what it returns.
/// Panics with the first failing seed's panic.
pub fn run_all(
    seeds: std::ops::Range<u64>,
    threads: usize,
    run: impl Fn(u64) -> usize + Sync,
) -> usize {
    let next = AtomicU64::new(seeds.start);
    let failed = AtomicBool::new(false);
    let total = AtomicUsize::new(0);
    let worker = || {
        while !failed.load(Ordering::SeqCst) {
            let seed = next.fetch_add(1, Ordering::SeqCst);
            if seed >= seeds.end {
                break;
            }
            match catch_unwind(AssertUnwindSafe(|| run(seed))) {
                Ok(n) => {
                    total.fetch_add(n, Ordering::Relaxed);
                }
                Err(panic) => {
                    failed.store(true, Ordering::SeqCst);
                    resume_unwind(panic);
                }
            }
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(worker)).collect();
        // Joined here, not by the scope: the scope would replace the panic (which names the
        // seed) with its own "a scoped thread panicked".
        let panics: Vec<_> = handles.into_iter().filter_map(|h| h.join().err()).collect();
        if let Some(first) = panics.into_iter().next() {
            resume_unwind(first);
        }
    });
    total.into_inner()
}

#[test]
fn every_seed_runs_once_across_threads() {
    let seen = parking_lot::Mutex::new(std::collections::BTreeSet::new());
    let total = run_all(0..500, 3, |seed| {
        assert!(seen.lock().insert(seed), "seed {seed} ran twice");
        usize::try_from(seed).unwrap_or(usize::MAX)
    });
    assert_eq!(total, 499 * 500 / 2);
    assert_eq!(seen.lock().len(), 500);
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn a_failing_seed_stops_the_run() {
    let ran = AtomicU64::new(0);
    let panic = catch_unwind(AssertUnwindSafe(|| {
        run_all(0..1_000, 1, |seed| {
            ran.fetch_add(1, Ordering::SeqCst);
            assert_ne!(seed, 7, "seed 7 breaks an invariant");
            1
        })
    }))
    .expect_err("seed 7 fails the run");
    assert!(panic_message(&*panic).contains("seed 7 breaks an invariant"));
    assert_eq!(
        ran.load(Ordering::SeqCst),
        8,
        "seeds after the failing one ran"
    );
}

#[test]
fn a_failing_seed_on_another_thread_is_raised_as_it_was() {
    // How many seeds the other thread finishes meanwhile depends on the panic hook's speed
    // (a backtrace takes long), so only the raised panic is checked.
    let panic = catch_unwind(AssertUnwindSafe(|| {
        run_all(0..1_000, 2, |seed| {
            assert_ne!(seed, 7, "seed 7 breaks an invariant");
            1
        })
    }))
    .expect_err("seed 7 fails the run");
    assert!(panic_message(&*panic).contains("seed 7 breaks an invariant"));
}
