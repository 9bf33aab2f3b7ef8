//! Deterministic fault injection: a seam in front of every durable step (staging commits, mart commits, catalog
//! commits) so tests can "crash" the appliance at exactly the N-th step and check that a restart produces the
//! same mart as a run without the crash. In production the injector is disarmed and costs one atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts durable steps and fails the one it is armed for.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    fail_at: AtomicU64,
    steps: AtomicU64,
}

/// The error a durable step returns when the injector fires.
#[derive(Debug, Clone, thiserror::Error)]
#[error("injected crash before durable step {step} ({what})")]
pub struct InjectedCrash {
    /// 1-based number of the step that was refused.
    pub step: u64,
    /// Which step it was.
    pub what: &'static str,
}

impl FaultInjector {
    /// An injector that never fires.
    pub fn disarmed() -> Self {
        Self::default()
    }

    /// An injector that fails the `n`-th durable step (1-based) and every later one, like a process that died.
    pub fn crash_at(n: u64) -> Self {
        let f = Self::default();
        f.inner.fail_at.store(n, Ordering::SeqCst);
        f
    }

    /// Called before a durable step; `Err` means "the process died here": the caller must not commit.
    pub fn step(&self, what: &'static str) -> Result<(), InjectedCrash> {
        let step = self.inner.steps.fetch_add(1, Ordering::SeqCst) + 1;
        let fail_at = self.inner.fail_at.load(Ordering::SeqCst);
        if fail_at != 0 && step >= fail_at {
            return Err(InjectedCrash { step, what });
        }
        Ok(())
    }

    /// Number of durable steps seen so far.
    pub fn steps(&self) -> u64 {
        self.inner.steps.load(Ordering::SeqCst)
    }
}
