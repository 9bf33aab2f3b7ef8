//! The threads SQL runs on: a runtime of its own, away from the I/O runtime that serves HTTP, pgwire, `/healthz`,
//! metrics and the pipeline.
//!
//! Two dangers motivate it. DataFusion's parser, planner, optimizer and `Drop` recurse over the statement, so a
//! deep enough statement overflows the 2 MiB stacks of ordinary runtime threads and aborts the whole process;
//! the statement gate ([`super::gate`]) bounds the depth, and these threads have stacks far larger than any
//! statement that passes the gate needs. And planning or executing a query can hold a thread for as long as a
//! non-yielding computation lasts (constant folding of an expensive expression, a large sort); on these threads
//! that delays other queries, never the appliance's own work.
//!
//! The runtime lives for the whole process (a runtime cannot be dropped from async code), so every
//! [`QueryEngine`](super::QueryEngine) shares it.

use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// Stack of each SQL thread. Only the pages a statement touches are ever committed, so this is address space, not
/// memory; it is large enough for the deepest statement the gate admits (see the gate's tests).
pub const SQL_THREAD_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Why the SQL runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the SQL threads: {0}")]
pub struct WorkersError(#[source] std::io::Error);

fn runtime() -> Result<&'static Runtime, WorkersError> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    // More threads than cores, so the operating system time-slices between queries: a query that does not yield
    // (constant folding, a long kernel) holds one thread, not the pool, and a short query still starts at once.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let threads = (cores * 4).clamp(8, 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("ccmart-sql")
        .thread_stack_size(SQL_THREAD_STACK_BYTES)
        .enable_all()
        .build()
        .map_err(WorkersError)?;
    // Two callers racing here both build a runtime; the loser's is leaked rather than dropped in async context.
    match RUNTIME.set(rt) {
        Ok(()) => {}
        Err(rt) => std::mem::forget(rt),
    }
    RUNTIME.get().ok_or_else(|| WorkersError(std::io::Error::other("the SQL runtime vanished")))
}

/// The handle of the SQL runtime.
pub fn handle() -> Result<Handle, WorkersError> {
    Ok(runtime()?.handle().clone())
}

/// Runs `work` on the SQL threads. Dropping the returned [`Job`] aborts the work at its next await point, so a
/// query whose caller gave up (time limit, disconnect) stops instead of running on unseen.
pub fn spawn<F>(work: F) -> Result<Job<F::Output>, WorkersError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(Job(handle()?.spawn(work)))
}

/// Work running on the SQL threads; aborted when dropped.
#[derive(Debug)]
pub struct Job<T>(JoinHandle<T>);

impl<T> Job<T> {
    /// Waits for the work's result; `None` when it panicked or was aborted.
    pub async fn join(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

impl<T> Drop for Job<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
