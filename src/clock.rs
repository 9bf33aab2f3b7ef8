//! Time as a seam, next to the fault injector: the appliance asks a [`Clock`] for wall-clock time (timestamps in
//! the status, how long an IDB has been waited for) and for monotonic time (when maintenance, a checkpoint or a
//! publish is due). In production it is the system's; tests drive a manual clock forward, so time-dependent logic
//! is tested exactly and without sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The appliance's source of time. Cheap to clone; clones of a manual clock move together.
#[derive(Debug, Clone)]
pub struct Clock {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    System { origin: Instant },
    Manual(Arc<Mutex<ManualTime>>),
}

#[derive(Debug)]
struct ManualTime {
    wall: i64,
    elapsed: Duration,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system's clocks.
    pub fn system() -> Self {
        Clock { source: Source::System { origin: Instant::now() } }
    }

    /// A clock that stands still at `wall` (epoch seconds) until [`Self::advance`] moves it.
    pub fn manual(wall: i64) -> Self {
        Clock { source: Source::Manual(Arc::new(Mutex::new(ManualTime { wall, elapsed: Duration::ZERO }))) }
    }

    /// Moves a manual clock forward by `by` (wall and monotonic time together). A system clock cannot be moved:
    /// it is left alone.
    pub fn advance(&self, by: Duration) {
        if let Source::Manual(t) = &self.source {
            let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
            t.elapsed += by;
            t.wall = t.wall.saturating_add(by.as_secs() as i64);
        }
    }

    /// Wall-clock time, epoch seconds.
    pub fn now(&self) -> i64 {
        match &self.source {
            Source::System { .. } => chrono::Utc::now().timestamp(),
            Source::Manual(t) => t.lock().unwrap_or_else(|e| e.into_inner()).wall,
        }
    }

    /// Monotonic time since the clock was made: what intervals are measured with (never goes back).
    pub fn elapsed(&self) -> Duration {
        match &self.source {
            Source::System { origin } => origin.elapsed(),
            Source::Manual(t) => t.lock().unwrap_or_else(|e| e.into_inner()).elapsed,
        }
    }

    /// Whether `every` has passed since `mark` (a value of [`Self::elapsed`]); with no mark yet, it has.
    pub fn due(&self, mark: Option<Duration>, every: Duration) -> bool {
        mark.is_none_or(|m| self.elapsed().saturating_sub(m) >= every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_move_with_it() {
        let c = Clock::manual(1_000);
        let other = c.clone();
        assert_eq!((c.now(), c.elapsed()), (1_000, Duration::ZERO));
        let mark = Some(c.elapsed());
        assert!(!c.due(mark, Duration::from_secs(60)));
        other.advance(Duration::from_secs(60));
        assert_eq!(c.now(), 1_060);
        assert!(c.due(mark, Duration::from_secs(60)));
        assert!(c.due(None, Duration::from_secs(3600)));
        let system = Clock::system();
        system.advance(Duration::from_secs(3600));
        assert!(system.elapsed() < Duration::from_secs(60), "a system clock is not moved");
    }
}
