//! Progress of long command-line work (simulated history, exports, later bootstrap): a bar with rate and ETA
//! when stderr is a terminal, and otherwise one plain log line every few seconds, so logs of services and CI runs
//! stay readable and still show that work moves.

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a line is printed when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressUnit {
    /// Plain units (hours simulated, files, rows).
    Count(&'static str),
    /// Bytes, shown as KiB/MiB/GiB.
    Bytes,
}

/// One piece of long work.
#[derive(Debug)]
pub struct Progress {
    what: String,
    unit: ProgressUnit,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts reporting `what`; `total` when known (a bar), `None` for a counter.
    pub fn new(what: impl Into<String>, total: Option<u64>, unit: ProgressUnit) -> Self {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let units = match unit {
                ProgressUnit::Bytes => "{bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})",
                ProgressUnit::Count(_) => "{pos}/{len} {msg} ({per_sec}, ETA {eta})",
            };
            let (bar, template) = match total {
                Some(t) => (ProgressBar::new(t), format!("{{prefix}} [{{bar:30}}] {units}")),
                None => (ProgressBar::no_length(), "{prefix} {spinner} {pos} {msg} ({per_sec})".to_string()),
            };
            let template = match (total, unit) {
                (None, ProgressUnit::Bytes) => "{prefix} {spinner} {bytes} ({bytes_per_sec})".to_string(),
                _ => template,
            };
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_prefix(what.clone());
            if let ProgressUnit::Count(u) = unit {
                bar.set_message(u);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress { what, unit, total, done: 0, started: now, last_line: now, bar }
    }

    /// Adds `n` units of work done.
    pub fn inc(&mut self, n: u64) {
        self.set(self.done.saturating_add(n));
    }

    /// Sets the work done so far.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_line.elapsed() >= LOG_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// Ends the report with a summary line.
    pub fn finish(self, summary: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!("{}: {} in {secs:.1}s{}", self.what, self.amount(self.done), summary);
    }

    fn amount(&self, n: u64) -> String {
        match self.unit {
            ProgressUnit::Bytes => HumanBytes(n).to_string(),
            ProgressUnit::Count(u) => format!("{n} {u}"),
        }
    }

    /// The plain line: what, how much of how much, rate and estimated time left.
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        match self.total {
            Some(t) if t > 0 => {
                let left = t.saturating_sub(self.done) as f64 / rate.max(f64::MIN_POSITIVE);
                format!(
                    "{}: {} of {} ({:.0}%), {:.0}s elapsed, about {:.0}s left",
                    self.what,
                    self.amount(self.done),
                    self.amount(t),
                    100.0 * self.done as f64 / t as f64,
                    secs,
                    left.min(1e9)
                )
            }
            _ => format!("{}: {} so far, {:.0}s elapsed", self.what, self.amount(self.done), secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_how_far_and_how_long() {
        let mut p = Progress::new("simulate", Some(48), ProgressUnit::Count("hours"));
        p.bar = None;
        p.set(12);
        let l = p.line();
        assert!(l.starts_with("simulate: 12 hours of 48 hours (25%)"), "{l}");
        assert!(l.contains("left"), "{l}");
        let mut b = Progress::new("export", None, ProgressUnit::Bytes);
        b.bar = None;
        b.set(3 * 1024 * 1024);
        assert!(b.line().starts_with("export: 3.00 MiB so far"), "{}", b.line());
    }
}
