use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::*;

fn thread_name() -> String {
    std::thread::current().name().unwrap_or_default().to_owned()
}

async fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn pulls_run_on_the_data_planes_threads_at_most_max_pulls_at_once() {
    let runtime = DataPlaneRuntime::start(DataPlaneRuntimeConfig {
        worker_threads: 1,
        max_pulls: 2,
    })
    .expect("runtime");
    let executor = runtime.executor();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let mut tasks = vec![];
    for _ in 0..5 {
        let (ex, running, most, gate) = (
            executor.clone(),
            running.clone(),
            most.clone(),
            gate.clone(),
        );
        tasks.push(executor.spawn(async move {
            let name = ex
                .run_blocking(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let token = gate.lock().map(|g| g.recv());
                    running.fetch_sub(1, Ordering::SeqCst);
                    assert!(matches!(token, Ok(Ok(()))), "the test releases every pull");
                    thread_name()
                })
                .await
                .expect("ran");
            assert_eq!(name, "rcdc-data-plane");
        }));
    }
    wait("two pulls running", || running.load(Ordering::SeqCst) == 2).await;
    for _ in 0..5 {
        release.send(()).expect("a pull waits");
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_panicking_pull_is_an_error_naming_the_panic() {
    let runtime = DataPlaneRuntime::start(DataPlaneRuntimeConfig {
        worker_threads: 1,
        max_pulls: 1,
    })
    .expect("runtime");
    let err = runtime
        .executor()
        .run_blocking(|| -> () { panic!("sink exploded") })
        .await
        .expect_err("panicked");
    assert_eq!(
        err.to_string(),
        "table pipeline work panicked: sink exploded"
    );
    // The slot was given back.
    assert_eq!(runtime.executor().run_blocking(|| 7).await.expect("ran"), 7);
}

#[tokio::test]
async fn dropping_the_runtime_on_an_async_thread_stops_its_tasks() {
    let runtime = DataPlaneRuntime::start(DataPlaneRuntimeConfig {
        worker_threads: 1,
        max_pulls: 1,
    })
    .expect("runtime");
    let task = runtime.executor().spawn(std::future::pending());
    drop(runtime);
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the task ends");
    assert!(ended.is_err_and(|e| e.is_cancelled()));
}

#[tokio::test]
async fn inline_work_runs_on_the_callers_thread() {
    let runtime = DataPlaneRuntime::inline();
    let caller = std::thread::current().id();
    let ran_on = runtime
        .executor()
        .run_blocking(|| std::thread::current().id())
        .await
        .expect("ran");
    assert_eq!(ran_on, caller);
}
