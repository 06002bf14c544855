//! Read-ahead: when a resolver yields rows quickly, they are converted in groups instead of one
//! at a time.
//!
//! A generator that builds each row and the conversion that reads it are two large bodies of
//! code. Run in turns row by row, they evict each other from the CPU's instruction and data
//! caches, so every row pays for reloading both. Converting rows in groups lets each body run
//! warm for a whole group; [`GROUP_ROWS`] is large enough that the reloads are spread thin,
//! and small enough that a held group is a few kilobytes and a short delay.
//!
//! Holding rows back is only worth it, and only harmless, while they come quickly: a resolver
//! waiting on an API between rows should have each row converted (and flushed by the latency
//! limit) as it comes. So rows are held only after a few groups in a row each arrived within
//! about 50 us a row, and a slow group turns holding off again. What is held is at most one
//! group, converted when the group is complete, at the next item that is not a plain row, or
//! at the end; a resolver that stalls right after a quick burst delays those few rows by its
//! stall.
//!
//! Only a row that nothing but the worker refers to (a reference count of 1: a dict or tuple
//! built in the `yield`), and whose lists and dicts nothing else refers to either, is held. So
//! a resolver that yields the same dict again and again, keeps its rows, or reuses a list in
//! each row has each row converted as it comes. Values nested deeper are not checked: the
//! resolver docs say a yielded row must not change. Tables with children or incremental
//! state, and free-threaded builds (where a reference count cannot show any of this), never
//! hold rows.

use std::time::{Duration, Instant};

/// Rows converted together, and the size of the groups whose pace is measured.
pub const GROUP_ROWS: usize = 16;
/// A group yielded within this time counts as quick (50 us a row).
const QUICK_GROUP: Duration = Duration::from_micros(50 * GROUP_ROWS as u64);
/// Quick groups in a row before rows are held back.
const QUICK_GROUPS_TO_HOLD: u32 = 4;

/// How quickly a resolver yields rows, measured per group of [`GROUP_ROWS`] with one clock
/// read per group.
#[derive(Debug)]
pub struct Pace {
    rows_in_group: usize,
    group_started: Instant,
    quick_groups: u32,
}

impl Pace {
    /// A pace whose first group starts at `now` (before the resolver's first row).
    #[inline]
    pub fn new(now: Instant) -> Self {
        Pace {
            rows_in_group: 0,
            group_started: now,
            quick_groups: 0,
        }
    }

    /// Whether rows may be held back now, to be converted as a group.
    #[inline]
    pub fn holding(&self) -> bool {
        self.quick_groups >= QUICK_GROUPS_TO_HOLD
    }

    /// Counts one row; returns true when it completes a group (the clock is read then, from
    /// `now`), which is when held rows are converted.
    #[inline]
    pub fn count_row(&mut self, now: impl FnOnce() -> Instant) -> bool {
        self.rows_in_group += 1;
        if self.rows_in_group < GROUP_ROWS {
            return false;
        }
        let now = now();
        let quick = now.saturating_duration_since(self.group_started) <= QUICK_GROUP;
        self.quick_groups = if quick {
            (self.quick_groups + 1).min(QUICK_GROUPS_TO_HOLD)
        } else {
            0
        };
        self.rows_in_group = 0;
        self.group_started = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts a group of rows that took `took` in all; returns whether it ended a group.
    fn group(pace: &mut Pace, clock: &mut Instant, took: Duration) -> bool {
        let mut ended = false;
        for _ in 0..GROUP_ROWS {
            ended = pace.count_row(|| {
                *clock += took;
                *clock
            });
        }
        ended
    }

    #[test]
    fn rows_are_held_only_after_enough_quick_groups() {
        let mut clock = Instant::now();
        let mut pace = Pace::new(clock);
        for _ in 0..QUICK_GROUPS_TO_HOLD {
            assert!(!pace.holding());
            assert!(group(&mut pace, &mut clock, Duration::from_micros(100)));
        }
        assert!(pace.holding());
    }

    #[test]
    fn a_slow_group_stops_holding_until_quick_groups_come_again() {
        let mut clock = Instant::now();
        let mut pace = Pace::new(clock);
        for _ in 0..QUICK_GROUPS_TO_HOLD {
            group(&mut pace, &mut clock, Duration::from_micros(100));
        }
        group(&mut pace, &mut clock, Duration::from_millis(5));
        assert!(!pace.holding());
        for _ in 1..QUICK_GROUPS_TO_HOLD {
            group(&mut pace, &mut clock, Duration::from_micros(100));
            assert!(!pace.holding());
        }
        group(&mut pace, &mut clock, Duration::from_micros(100));
        assert!(pace.holding());
    }

    #[test]
    fn a_slow_first_row_counts_against_the_first_group() {
        // The first group's time starts before the resolver's first row: a resolver that
        // begins with a request is slow from the start.
        let start = Instant::now();
        let mut pace = Pace::new(start);
        let mut clock = start + Duration::from_millis(50);
        for _ in 0..QUICK_GROUPS_TO_HOLD {
            group(&mut pace, &mut clock, Duration::ZERO);
        }
        assert!(
            !pace.holding(),
            "the first group was slow: three quick ones are not enough"
        );
        group(&mut pace, &mut clock, Duration::ZERO);
        assert!(pace.holding());
    }

    #[test]
    fn the_clock_is_read_once_a_group() {
        let mut pace = Pace::new(Instant::now());
        let mut reads = 0;
        for _ in 0..GROUP_ROWS * 3 {
            pace.count_row(|| {
                reads += 1;
                Instant::now()
            });
        }
        assert_eq!(reads, 3);
    }
}
