//! A calendar day (UTC) as the mart partitions by it and as group keys and partition names spell it.

use std::fmt;
use std::str::FromStr;

/// One UTC calendar day, spelt `YYYY-MM-DD` wherever it is stored (partition names, group keys, the catalog).
/// Ordering a `Day` orders its spelling, so key order on disk is unchanged by parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(chrono::NaiveDate);

/// A day that is not `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a day (expected YYYY-MM-DD)")]
pub struct DayError {
    /// What was given.
    pub text: String,
}

impl Day {
    /// The day that holds `epoch_secs` (UTC).
    pub fn of_timestamp(epoch_secs: i64) -> Option<Day> {
        chrono::DateTime::from_timestamp(epoch_secs, 0).map(|t| Day(t.date_naive()))
    }

    /// The calendar date.
    pub fn date(self) -> chrono::NaiveDate {
        self.0
    }

    /// Midnight UTC at the start of the day (epoch seconds).
    pub fn start(self) -> i64 {
        self.0.and_time(chrono::NaiveTime::MIN).and_utc().timestamp()
    }

    /// The day before, if the calendar has one.
    pub fn previous(self) -> Option<Day> {
        self.0.pred_opt().map(Day)
    }

    /// The day after, if the calendar has one.
    pub fn next(self) -> Option<Day> {
        self.0.succ_opt().map(Day)
    }
}

impl From<chrono::NaiveDate> for Day {
    fn from(d: chrono::NaiveDate) -> Self {
        Day(d)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl FromStr for Day {
    type Err = DayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Exactly ten characters: chrono alone would also take `2026-1-5`, whose spelling sorts differently.
        if s.len() != 10 {
            return Err(DayError { text: s.to_string() });
        }
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map(Day).map_err(|_| DayError { text: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_round_trips_its_spelling_and_orders_as_it() {
        let d: Day = "2026-12-01".parse().unwrap();
        assert_eq!(d.to_string(), "2026-12-01");
        assert_eq!(d.previous().unwrap().to_string(), "2026-11-30");
        assert_eq!(d.next().unwrap().to_string(), "2026-12-02");
        assert_eq!(d.start(), 1_796_083_200);
        assert_eq!(Day::of_timestamp(1_796_083_200 + 86_399), Some(d));
        assert!("2026-1-05".parse::<Day>().is_err());
        assert!("2026-02-30".parse::<Day>().is_err());
        assert!("".parse::<Day>().is_err());
        let mut days: Vec<Day> =
            ["2026-10-02", "2025-12-31", "2026-01-10"].iter().map(|s| s.parse().unwrap()).collect();
        days.sort();
        let spelt: Vec<String> = days.iter().map(Day::to_string).collect();
        let mut sorted = spelt.clone();
        sorted.sort();
        assert_eq!(spelt, sorted);
    }
}
