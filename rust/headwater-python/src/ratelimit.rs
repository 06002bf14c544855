//! `RateLimiter`: headwater-http's token bucket and concurrency cap for Python API clients.
//!
//! Threads wait for a slot here with the GIL released (`py.detach`), in steps of at most
//! 100 ms so that Ctrl-C still interrupts them; the wait for a turn under the rate is booked
//! here (`reserve`, `reserve_within`) and slept by the caller (`time.sleep`, or
//! `asyncio.sleep` in async code, which never waits here).

use std::time::{Duration, Instant};

use headwater_http::ratelimit::{Limits, RateLimiter as HttpLimiter};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::http_error;

/// The longest a thread sleeps without checking for signals.
const STEP: Duration = Duration::from_millis(100);

fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value.max(0.0)).map_err(|_| {
        PyValueError::new_err(format!("{what} must be a number of seconds, got {value}"))
    })
}

/// A token bucket and a concurrency cap per key, shared by every thread and task.
#[pyclass(module = "headwater._core", frozen)]
#[derive(Debug)]
pub struct RateLimiter {
    inner: HttpLimiter,
}

#[pymethods]
impl RateLimiter {
    #[new]
    #[pyo3(signature = (rate=None, burst=1, max_concurrent=None))]
    fn new(rate: Option<f64>, burst: u32, max_concurrent: Option<usize>) -> PyResult<Self> {
        let limits = Limits::new(rate, burst, max_concurrent).map_err(http_error)?;
        Ok(RateLimiter {
            inner: HttpLimiter::new(limits),
        })
    }

    /// Requests per second, or `None`.
    #[getter]
    fn rate(&self) -> Option<f64> {
        self.inner.limits().rate
    }

    /// Requests that may go at once after an idle spell.
    #[getter]
    fn burst(&self) -> u32 {
        self.inner.limits().burst
    }

    /// Requests in flight at once per key, or `None`.
    #[getter]
    fn max_concurrent(&self) -> Option<usize> {
        self.inner.limits().max_concurrent
    }

    /// Books the next request of `key`; returns the seconds to wait before sending it.
    fn reserve(&self, key: &str) -> f64 {
        self.inner.reserve(key, Instant::now()).as_secs_f64()
    }

    /// Books the next request of `key` if its turn comes within `max_wait` seconds.
    ///
    /// Returns `(booked, seconds)`: the wait booked, or the wait it would take (then nothing
    /// is booked).
    fn reserve_within(&self, key: &str, max_wait: f64) -> PyResult<(bool, f64)> {
        let max_wait = seconds(max_wait, "max_wait")?;
        Ok(
            match self
                .inner
                .reserve_within(key, Instant::now(), Some(max_wait))
            {
                Ok(wait) => (true, wait.as_secs_f64()),
                Err(wait) => (false, wait.as_secs_f64()),
            },
        )
    }

    /// Takes a slot of `key` if one is free, without waiting.
    fn try_acquire_slot(&self, key: &str) -> bool {
        self.inner.try_acquire_slot(key, Instant::now())
    }

    /// Waits (GIL released) for a slot of `key`.
    ///
    /// Returns `False` if no slot freed within `timeout` seconds (then nothing is held).
    #[pyo3(signature = (key, timeout=None))]
    fn acquire_slot(&self, py: Python<'_>, key: &str, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = match timeout {
            Some(t) => Some(Instant::now() + seconds(t, "timeout")?),
            None => None,
        };
        loop {
            let step = deadline.map_or(STEP, |d| {
                STEP.min(d.saturating_duration_since(Instant::now()))
            });
            if py.detach(|| self.inner.acquire_slot(key, Some(step))) {
                return Ok(true);
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Gives back the slot taken by `acquire_slot` or `try_acquire_slot`.
    fn release(&self, key: &str) -> PyResult<()> {
        self.inner.release_slot(key).map_err(http_error)
    }

    /// Takes in the API's own limit: `remaining` requests until `reset_after` seconds from now.
    #[pyo3(signature = (key, remaining, reset_after))]
    fn observe(&self, key: &str, remaining: Option<u64>, reset_after: Option<f64>) -> PyResult<()> {
        let reset_after = reset_after.map(|s| seconds(s, "reset_after")).transpose()?;
        self.inner
            .observe(key, remaining, reset_after, Instant::now());
        Ok(())
    }

    /// `(granted, in_flight, peak_in_flight)` of `key`: requests booked, slots held now, and
    /// the most held at once.
    fn stats(&self, key: &str) -> (u64, usize, usize) {
        let s = self.inner.stats(key);
        (s.granted, s.in_flight, s.peak_in_flight)
    }

    fn __repr__(&self) -> String {
        let l = self.inner.limits();
        let show = |v: Option<String>| v.unwrap_or_else(|| "None".into());
        format!(
            "RateLimiter(rate={}, burst={}, max_concurrent={})",
            show(l.rate.map(|r| r.to_string())),
            l.burst,
            show(l.max_concurrent.map(|c| c.to_string())),
        )
    }
}
