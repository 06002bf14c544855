//! Client-side limits for API calls: a token bucket on the request rate and a cap on the
//! requests in flight, per key (a host, or whatever key the caller picks).
//!
//! One [`RateLimiter`] is shared by every thread and task of a sync, so all of them together
//! stay under what the API allows. Each key has:
//!
//! - a token bucket of `rate` tokens per second holding at most `burst` tokens, kept as a
//!   *theoretical arrival time* (GCRA): [`RateLimiter::reserve`] books the next free slot and
//!   says how long to wait for it, so callers never spin and are served in the order they
//!   asked, and the long-run rate is exactly `rate`;
//! - a counting semaphore of `max_concurrent` slots: [`RateLimiter::acquire_slot`] blocks (a
//!   thread), [`RateLimiter::try_acquire_slot`] never does (an async task polls it);
//! - what the API last said about its own limits ([`RateLimiter::observe`], from
//!   `X-RateLimit-Limit`/`-Remaining`/`-Reset`): with no requests remaining, no slot is handed
//!   out before the reset; with few remaining, the rate drops so they last until the reset and
//!   no more requests are in flight than remain.
//!
//! Nothing here sleeps except [`RateLimiter::acquire_slot`]'s condition variable wait; time is
//! passed in (`now`) so the arithmetic is tested without clocks.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Locks a mutex, ignoring poisoning: the state behind it is plain numbers, valid at any point.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The limits of a [`RateLimiter`], the same for every key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Requests per second; `None`: no rate limit.
    pub rate: Option<f64>,
    /// Requests that may go at once after an idle spell (at least 1).
    pub burst: u32,
    /// Requests in flight at once; `None`: no limit.
    pub max_concurrent: Option<usize>,
}

impl Limits {
    /// Checks the numbers: a positive finite rate, a burst of at least 1, at least one slot.
    pub fn new(rate: Option<f64>, burst: u32, max_concurrent: Option<usize>) -> Result<Self> {
        if let Some(rate) = rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(Error::Limits(format!(
                    "rate must be a positive number of requests per second, got {rate}"
                )));
            }
        }
        if burst == 0 {
            return Err(Error::Limits(
                "burst must be at least 1 request, got 0".into(),
            ));
        }
        if max_concurrent == Some(0) {
            return Err(Error::Limits(
                "max_concurrent must be at least 1 request, got 0".into(),
            ));
        }
        Ok(Limits {
            rate,
            burst,
            max_concurrent,
        })
    }
}

/// What the API said about its limits, valid until `until`.
#[derive(Debug, Clone, Copy)]
struct Advice {
    /// The rate that spreads the remaining requests over the time to the reset.
    rate: f64,
    /// Requests in flight allowed: the requests remaining.
    concurrent: usize,
    until: Instant,
}

/// The rate side of one key.
#[derive(Debug)]
struct Bucket {
    /// When the next request may go if the bucket were empty (GCRA's theoretical arrival
    /// time); `None` before the first request.
    tat: Option<Instant>,
    /// Requests granted a reservation.
    granted: u64,
    advice: Option<Advice>,
}

/// The concurrency side of one key.
#[derive(Debug, Default)]
struct Slots {
    in_flight: usize,
    peak: usize,
}

#[derive(Debug)]
struct Key {
    bucket: Mutex<Bucket>,
    slots: Mutex<Slots>,
    freed: Condvar,
}

/// Counters of one key, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStats {
    /// Requests granted a rate reservation.
    pub granted: u64,
    /// Slots held now.
    pub in_flight: usize,
    /// The most slots held at once.
    pub peak_in_flight: usize,
}

/// A token bucket and a concurrency cap per key; see the module documentation.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    keys: Mutex<HashMap<String, Arc<Key>>>,
}

impl RateLimiter {
    /// A limiter applying `limits` to every key.
    pub fn new(limits: Limits) -> Self {
        RateLimiter {
            limits,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The limits it applies.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn key(&self, key: &str) -> Arc<Key> {
        let mut keys = lock(&self.keys);
        if let Some(found) = keys.get(key) {
            return Arc::clone(found);
        }
        let made = Arc::new(Key {
            bucket: Mutex::new(Bucket {
                tat: None,
                granted: 0,
                advice: None,
            }),
            slots: Mutex::new(Slots::default()),
            freed: Condvar::new(),
        });
        keys.insert(key.to_owned(), Arc::clone(&made));
        made
    }

    /// Books the next request of `key` and returns how long after `now` it may be sent.
    ///
    /// The booking holds even if the caller gives up, so callers are served in order and the
    /// rate is never exceeded. Zero when there is no rate limit and no advice from the API.
    pub fn reserve(&self, key: &str, now: Instant) -> Duration {
        match self.reserve_within(key, now, None) {
            Ok(wait) | Err(wait) => wait,
        }
    }

    /// Like [`Self::reserve`], but books nothing when the wait would exceed `max_wait`.
    ///
    /// Returns `Ok(wait)` when booked, `Err(wait)` with the wait it would have taken when
    /// not: a caller with a deadline fails at once instead of waiting (hours, if the API said
    /// so) for a turn it cannot use, and leaves the queue as it was.
    pub fn reserve_within(
        &self,
        key: &str,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> std::result::Result<Duration, Duration> {
        let entry = self.key(key);
        let mut bucket = lock(&entry.bucket);
        let advice = bucket.advice.filter(|a| a.until > now);
        let rate = match (self.limits.rate, advice) {
            (Some(ours), Some(theirs)) => Some(ours.min(theirs.rate)),
            (ours, theirs) => ours.or(theirs.map(|a| a.rate)),
        };
        let too_long = |wait: Duration| max_wait.is_some_and(|max| wait > max);
        let Some(rate) = rate else {
            // No rate, but a pause the API asked for may still be booked.
            let wait = bucket
                .tat
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
            if too_long(wait) {
                return Err(wait);
            }
            bucket.granted += 1;
            return Ok(wait);
        };
        let interval = Duration::from_secs_f64(1.0 / rate);
        // Advice means "this many until the reset": no burst on top of it.
        let burst = if advice.is_some() {
            1
        } else {
            self.limits.burst
        };
        let tolerance = interval * (burst - 1);
        let tat = bucket.tat.map_or(now, |t| t.max(now));
        let start = tat.checked_sub(tolerance).unwrap_or(now).max(now);
        let wait = start - now;
        if too_long(wait) {
            return Err(wait);
        }
        bucket.granted += 1;
        bucket.tat = Some(tat + interval);
        Ok(wait)
    }

    /// Takes a slot of `key` if one is free; never blocks. Always succeeds without a limit.
    pub fn try_acquire_slot(&self, key: &str, now: Instant) -> bool {
        let entry = self.key(key);
        let limit = self.slot_limit(&entry, now);
        let mut slots = lock(&entry.slots);
        take(&mut slots, limit)
    }

    /// Takes a slot of `key`, waiting up to `timeout` (forever with `None`) for one to free.
    ///
    /// Returns whether it got one.
    pub fn acquire_slot(&self, key: &str, timeout: Option<Duration>) -> bool {
        let entry = self.key(key);
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut slots = lock(&entry.slots);
        loop {
            let now = Instant::now();
            if take(&mut slots, self.slot_limit(&entry, now)) {
                return true;
            }
            // Wake at least every 100 ms: advice expiring raises the limit without a release.
            let mut wait = Duration::from_millis(100);
            if let Some(deadline) = deadline {
                if now >= deadline {
                    return false;
                }
                wait = wait.min(deadline - now);
            }
            slots = entry
                .freed
                .wait_timeout(slots, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Gives back a slot of `key` taken by [`Self::acquire_slot`] or [`Self::try_acquire_slot`].
    ///
    /// Returns an error if `key` holds no slot (a release without an acquire).
    pub fn release_slot(&self, key: &str) -> Result<()> {
        let entry = self.key(key);
        let mut slots = lock(&entry.slots);
        if slots.in_flight == 0 {
            return Err(Error::ReleaseWithoutAcquire {
                key: key.to_owned(),
            });
        }
        slots.in_flight -= 1;
        drop(slots);
        entry.freed.notify_one();
        Ok(())
    }

    fn slot_limit(&self, entry: &Key, now: Instant) -> Option<usize> {
        let advised = lock(&entry.bucket)
            .advice
            .filter(|a| a.until > now)
            .map(|a| a.concurrent);
        match (self.limits.max_concurrent, advised) {
            (Some(ours), Some(theirs)) => Some(ours.min(theirs)),
            (ours, theirs) => ours.or(theirs),
        }
    }

    /// Takes in what the API said about its limit on `key` in a response at `now`.
    ///
    /// `remaining` requests are left until `reset_after` from now. With none left, every
    /// request waits for the reset; with some left, the rate drops to spread them over the time
    /// to the reset (if that is slower than the configured rate) and no more than that many
    /// are in flight. Without `remaining` or `reset_after` nothing changes.
    pub fn observe(
        &self,
        key: &str,
        remaining: Option<u64>,
        reset_after: Option<Duration>,
        now: Instant,
    ) {
        let (Some(remaining), Some(reset_after)) = (remaining, reset_after) else {
            return;
        };
        let entry = self.key(key);
        let until = now + reset_after;
        let mut bucket = lock(&entry.bucket);
        if remaining == 0 {
            // Nothing may go before the reset; requests booked after it keep their order.
            bucket.tat = Some(bucket.tat.map_or(until, |t| t.max(until)));
            bucket.advice = None;
            return;
        }
        let seconds = reset_after.as_secs_f64().max(1e-3);
        bucket.advice = Some(Advice {
            // Precision beyond u32 requests is meaningless here.
            rate: remaining as f64 / seconds,
            concurrent: usize::try_from(remaining).unwrap_or(usize::MAX),
            until,
        });
        drop(bucket);
        // A higher limit may let a waiter in.
        entry.freed.notify_all();
    }

    /// The counters of `key`.
    pub fn stats(&self, key: &str) -> KeyStats {
        let entry = self.key(key);
        let granted = lock(&entry.bucket).granted;
        let slots = lock(&entry.slots);
        KeyStats {
            granted,
            in_flight: slots.in_flight,
            peak_in_flight: slots.peak,
        }
    }
}

fn take(slots: &mut Slots, limit: Option<usize>) -> bool {
    if limit.is_some_and(|limit| slots.in_flight >= limit) {
        return false;
    }
    slots.in_flight += 1;
    slots.peak = slots.peak.max(slots.in_flight);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    fn limiter(rate: Option<f64>, burst: u32, max_concurrent: Option<usize>) -> RateLimiter {
        RateLimiter::new(Limits::new(rate, burst, max_concurrent).unwrap())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn errors_say_which_setting_or_call_was_wrong() {
        assert!(matches!(
            Limits::new(None, 0, None),
            Err(Error::Limits(message)) if message.contains("burst")
        ));
        let l = limiter(None, 1, Some(1));
        assert_eq!(
            l.release_slot("h"),
            Err(Error::ReleaseWithoutAcquire { key: "h".into() })
        );
    }

    #[test]
    fn limits_are_checked() {
        assert!(Limits::new(Some(0.0), 1, None).is_err());
        assert!(Limits::new(Some(f64::NAN), 1, None).is_err());
        assert!(Limits::new(Some(-1.0), 1, None).is_err());
        assert!(Limits::new(Some(1.0), 0, None).is_err());
        assert!(Limits::new(None, 1, Some(0)).is_err());
        let message = Limits::new(Some(f64::INFINITY), 1, None)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("rate must be a positive number"),
            "{message}"
        );
    }

    #[test]
    fn reservations_are_spaced_by_the_rate() {
        let l = limiter(Some(10.0), 1, None);
        let t0 = Instant::now();
        let waits: Vec<_> = (0..5).map(|_| l.reserve("h", t0)).collect();
        assert_eq!(waits, [ms(0), ms(100), ms(200), ms(300), ms(400)]);
        assert_eq!(l.stats("h").granted, 5);
        // Other keys have buckets of their own.
        assert_eq!(l.reserve("other", t0), ms(0));
    }

    #[test]
    fn a_burst_goes_at_once_then_the_rate_applies() {
        let l = limiter(Some(10.0), 3, None);
        let t0 = Instant::now();
        let waits: Vec<_> = (0..5).map(|_| l.reserve("h", t0)).collect();
        assert_eq!(waits, [ms(0), ms(0), ms(0), ms(100), ms(200)]);
        // After an idle second the bucket is full again, and holds no more than the burst.
        let t1 = t0 + Duration::from_secs(10);
        let waits: Vec<_> = (0..4).map(|_| l.reserve("h", t1)).collect();
        assert_eq!(waits, [ms(0), ms(0), ms(0), ms(100)]);
    }

    #[test]
    fn the_long_run_rate_is_exact() {
        let l = limiter(Some(50.0), 5, None);
        let t0 = Instant::now();
        let last = (0..505).map(|_| l.reserve("h", t0)).max().unwrap();
        // 5 go at once, the other 500 at 50/s.
        assert_eq!(last, Duration::from_secs(10));
    }

    #[test]
    fn no_rate_means_no_wait() {
        let l = limiter(None, 1, None);
        let t0 = Instant::now();
        assert!((0..100).all(|_| l.reserve("h", t0).is_zero()));
    }

    #[test]
    fn no_requests_remaining_waits_for_the_reset() {
        let l = limiter(None, 1, None);
        let t0 = Instant::now();
        l.observe("h", Some(0), Some(Duration::from_secs(2)), t0);
        assert_eq!(l.reserve("h", t0), Duration::from_secs(2));
        assert_eq!(l.reserve("h", t0 + Duration::from_secs(3)), ms(0));
        // With a rate, requests booked before keep their place after the reset.
        let l = limiter(Some(10.0), 1, None);
        assert_eq!(l.reserve("h", t0), ms(0));
        l.observe("h", Some(0), Some(Duration::from_secs(1)), t0);
        assert_eq!(l.reserve("h", t0), Duration::from_secs(1));
        assert_eq!(l.reserve("h", t0), ms(1100));
    }

    #[test]
    fn a_wait_past_the_limit_books_nothing() {
        let t0 = Instant::now();
        let hours = Duration::from_secs(10 * 3600);
        // The API's pause, without a rate of our own.
        let l = limiter(None, 1, None);
        l.observe("h", Some(0), Some(hours), t0);
        assert_eq!(
            l.reserve_within("h", t0, Some(Duration::from_secs(60))),
            Err(hours)
        );
        assert_eq!(l.stats("h").granted, 0);
        assert_eq!(l.reserve_within("h", t0, Some(hours)), Ok(hours));
        // With a rate: a refused booking leaves the queue as it was.
        let l = limiter(Some(10.0), 1, None);
        assert_eq!(l.reserve_within("h", t0, Some(ms(50))), Ok(ms(0)));
        assert_eq!(l.reserve_within("h", t0, Some(ms(50))), Err(ms(100)));
        assert_eq!(l.reserve_within("h", t0, Some(ms(50))), Err(ms(100)));
        assert_eq!(l.reserve_within("h", t0, None), Ok(ms(100)));
        assert_eq!(l.reserve("h", t0), ms(200));
        assert_eq!(l.stats("h").granted, 3);
    }

    #[test]
    fn few_requests_remaining_slow_the_rate_and_the_concurrency() {
        let l = limiter(Some(100.0), 10, Some(8));
        let t0 = Instant::now();
        // 4 requests left for the next 2 s: one every 500 ms, at most 4 in flight.
        l.observe("h", Some(4), Some(Duration::from_secs(2)), t0);
        let waits: Vec<_> = (0..3).map(|_| l.reserve("h", t0)).collect();
        assert_eq!(waits, [ms(0), ms(500), ms(1000)]);
        assert!((0..4).all(|_| l.try_acquire_slot("h", t0)));
        assert!(!l.try_acquire_slot("h", t0));
        // Once the reset has passed, the configured limits apply again.
        let later = t0 + Duration::from_secs(3);
        assert!((0..4).all(|_| l.try_acquire_slot("h", later)));
        assert!(!l.try_acquire_slot("h", later));
        assert_eq!(l.stats("h").peak_in_flight, 8);
        // Plenty remaining is no stricter than the configured rate.
        let l = limiter(Some(10.0), 1, None);
        l.observe("h", Some(1000), Some(Duration::from_secs(1)), t0);
        assert_eq!(l.reserve("h", t0), ms(0));
        assert_eq!(l.reserve("h", t0), ms(100));
        // Partial headers change nothing.
        l.observe("h", Some(0), None, t0);
        l.observe("h", None, Some(Duration::from_secs(60)), t0);
        assert_eq!(l.reserve("h", t0), ms(200));
    }

    #[test]
    fn slots_are_counted_and_released() {
        let l = limiter(None, 1, Some(2));
        let now = Instant::now();
        assert!(l.try_acquire_slot("h", now));
        assert!(l.try_acquire_slot("h", now));
        assert!(!l.try_acquire_slot("h", now));
        assert!(l.try_acquire_slot("other", now));
        assert!(!l.acquire_slot("h", Some(ms(1))));
        l.release_slot("h").unwrap();
        assert!(l.acquire_slot("h", Some(ms(1))));
        assert_eq!(
            l.stats("h"),
            KeyStats {
                granted: 0,
                in_flight: 2,
                peak_in_flight: 2
            }
        );
        l.release_slot("h").unwrap();
        l.release_slot("h").unwrap();
        let error = l.release_slot("h").unwrap_err().to_string();
        assert!(
            error.contains("release without a matching acquire"),
            "{error}"
        );
    }

    #[test]
    fn threads_never_exceed_the_concurrency_limit() {
        let l = Arc::new(limiter(None, 1, Some(3)));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let (l, inside, most) = (Arc::clone(&l), Arc::clone(&inside), Arc::clone(&most));
                thread::spawn(move || {
                    for _ in 0..50 {
                        assert!(l.acquire_slot("h", Some(Duration::from_secs(30))));
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        l.release_slot("h").unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3);
        let stats = l.stats("h");
        assert_eq!(stats.in_flight, 0);
        assert!(stats.peak_in_flight <= 3);
    }

    #[test]
    fn concurrent_reservations_are_all_distinct_slots() {
        // 8 threads book 100 requests each at 1000/s: the 800 bookings are 800 distinct
        // 1 ms slots, whatever the interleaving.
        let l = Arc::new(limiter(Some(1000.0), 1, None));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let l = Arc::clone(&l);
                thread::spawn(move || (0..100).map(|_| l.reserve("h", t0)).collect::<Vec<_>>())
            })
            .collect();
        let mut waits: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        waits.sort();
        let expected: Vec<Duration> = (0..800).map(ms).collect();
        assert_eq!(waits, expected);
        assert_eq!(l.stats("h").granted, 800);
    }

    #[test]
    fn a_blocked_thread_gets_the_released_slot() {
        let l = Arc::new(limiter(None, 1, Some(1)));
        assert!(l.acquire_slot("h", None));
        let waiter = {
            let l = Arc::clone(&l);
            thread::spawn(move || l.acquire_slot("h", Some(Duration::from_secs(30))))
        };
        l.release_slot("h").unwrap();
        assert!(waiter.join().unwrap());
        assert_eq!(l.stats("h").in_flight, 1);
    }
}
