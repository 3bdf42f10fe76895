//! Where table pipelines run: never on the control plane's threads (issue #11).
//!
//! The control plane (the session keep-alive, the etcd workers, the owner's executor, the
//! API) runs on the process's main runtime and has deadlines: a keep-alive every TTL/3, a
//! worker tick every interval. Table pipelines are the opposite: thousands of tasks whose
//! pulls fetch, sort, encode, write and fsync synchronously for as long as that takes. On
//! the same worker threads, a pipeline that is catching up holds its thread pull after pull,
//! and the keep-alive waits behind it until the lease has expired.
//!
//! So pipelines run on a [`DataPlaneRuntime`]: a runtime of their own, whose worker threads
//! carry the pipelines' light async part (timers, stop commands, progress reports), and whose
//! blocking pool runs every pull and every sink open, at most `max_pulls` at once (a fair
//! semaphore: pipelines beyond it wait their turn, which is the data plane's back-pressure).
//! The OS schedules the control plane's threads against these like any other threads, so
//! when the data plane saturates every core a waking keep-alive still gets one within a
//! scheduler slice.
//!
//! [`DataPlaneRuntime::inline`] keeps pipelines on the caller's runtime, pulling inline and
//! yielding after each pull. Only the virtual-time simulation and unit tests use it: there
//! the data plane's work shares the control plane's threads.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Sizes of the data-plane runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPlaneRuntimeConfig {
    /// Worker threads for the pipelines' async part.
    pub worker_threads: usize,
    /// Pulls (and sink opens) running at once, each on its own blocking thread.
    pub max_pulls: usize,
}

impl Default for DataPlaneRuntimeConfig {
    /// One worker and one pull per core: the data plane may use every core, and no more
    /// threads than that compete with the control plane for them.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            worker_threads: cores,
            max_pulls: cores,
        }
    }
}

/// Errors of the data-plane runtime and of work handed to it.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// The runtime's threads could not be started.
    #[error("cannot start the data-plane runtime: {0}")]
    Start(#[source] std::io::Error),
    /// The runtime was shut down (its capture is stopping) before the work ran.
    #[error("the data-plane runtime is shut down")]
    ShutDown,
    /// The work panicked (a bug in a source or sink).
    #[error("table pipeline work panicked: {0}")]
    Panicked(String),
}

/// Owns the data plane's threads; dropping it stops every pipeline task at its next await.
pub struct DataPlaneRuntime {
    runtime: Option<Runtime>,
    executor: PipelineExecutor,
}

impl DataPlaneRuntime {
    /// Starts a runtime of its own for pipelines.
    pub fn start(config: DataPlaneRuntimeConfig) -> Result<Self, DataPlaneError> {
        let max_pulls = config.max_pulls.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            // Exactly the pulls the semaphore lets through; nothing else blocks here.
            .max_blocking_threads(max_pulls)
            .thread_name("rcdc-data-plane")
            .enable_all()
            .build()
            .map_err(DataPlaneError::Start)?;
        let executor = PipelineExecutor(Mode::Isolated {
            handle: runtime.handle().clone(),
            pulls: Arc::new(Semaphore::new(max_pulls)),
        });
        Ok(Self {
            runtime: Some(runtime),
            executor,
        })
    }

    /// Pipelines on the caller's runtime (virtual-time simulation and unit tests only).
    pub fn inline() -> Self {
        Self {
            runtime: None,
            executor: PipelineExecutor(Mode::Inline),
        }
    }

    /// Where the supervisor spawns pipelines and they run their pulls. It does not keep the
    /// runtime alive: pipeline tasks hold it, and must not keep their own runtime running.
    pub fn executor(&self) -> PipelineExecutor {
        self.executor.clone()
    }
}

impl Drop for DataPlaneRuntime {
    fn drop(&mut self) {
        // A plain drop would wait for the blocking pool, which is not allowed on an async
        // thread (where captures end); pulls in flight finish on their own and are dropped.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Spawns pipeline tasks and runs their blocking work (a cheap handle; see the module docs).
#[derive(Clone, Debug)]
pub struct PipelineExecutor(Mode);

#[derive(Clone, Debug)]
enum Mode {
    Inline,
    Isolated {
        handle: Handle,
        pulls: Arc<Semaphore>,
    },
}

impl PipelineExecutor {
    /// Spawns a pipeline task.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.0 {
            Mode::Inline => tokio::spawn(task),
            Mode::Isolated { handle, .. } => handle.spawn(task),
        }
    }

    /// Runs blocking `work` (a pull, a sink open) where it cannot hold up the control plane,
    /// waiting for a free slot first. Always yields to other tasks at least once.
    pub async fn run_blocking<T, W>(&self, work: W) -> Result<T, DataPlaneError>
    where
        T: Send + 'static,
        W: FnOnce() -> T + Send + 'static,
    {
        match &self.0 {
            Mode::Inline => {
                let out = work();
                tokio::task::yield_now().await;
                Ok(out)
            }
            Mode::Isolated { handle, pulls } => {
                let permit = pulls
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| DataPlaneError::ShutDown)?;
                handle
                    .spawn_blocking(move || {
                        let _slot = permit; // released when the work ends, even by panic
                        work()
                    })
                    .await
                    .map_err(|e| match e.try_into_panic() {
                        Ok(panic) => DataPlaneError::Panicked(panic_message(&*panic)),
                        Err(_) => DataPlaneError::ShutDown,
                    })
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".to_owned())
}

#[cfg(test)]
mod tests;
