//! The output buffer of a sync: a FIFO bounded by bytes, so memory stays bounded whatever the
//! row count or the speed of the consumer.
//!
//! Producers [`reserve`](OutputBuffer::reserve) the bytes of a batch *before* finishing it and
//! block while the buffer is full: that is the backpressure that stops resolvers when the
//! consumer is slow. The reservation is settled with the exact size when the finished item is
//! [`push`](OutputBuffer::push)ed, and released when the consumer [`pop`](OutputBuffer::pop)s
//! it. One item is always let through even if it alone exceeds the budget, so an oversized
//! batch slows the sync down instead of deadlocking it.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Bytes reserved in an [`OutputBuffer`] for one item that is being made.
#[derive(Debug)]
#[must_use = "a reservation must be settled with push() or given back with cancel_reservation()"]
pub struct Reservation {
    bytes: usize,
}

impl Reservation {
    /// The bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What [`OutputBuffer::pop`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop<T> {
    /// The oldest item.
    Item(T),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The buffer was closed and is empty: nothing more will come.
    Closed,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<(T, usize)>,
    /// Bytes of queued items plus outstanding reservations.
    used: usize,
    /// Highest `used` seen.
    peak: usize,
    closed: bool,
    cancelled: bool,
}

/// A FIFO of items with sizes, bounded by a byte budget.
#[derive(Debug)]
pub struct OutputBuffer<T> {
    budget: usize,
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
}

impl<T> OutputBuffer<T> {
    /// An empty buffer holding at most `budget` bytes (at least one item whatever its size).
    pub fn new(budget: usize) -> Self {
        OutputBuffer {
            budget: budget.max(1),
            state: Mutex::new(State {
                items: VecDeque::new(),
                used: 0,
                peak: 0,
                closed: false,
                cancelled: false,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Reserves `bytes`, blocking while they do not fit next to what is already held (unless
    /// nothing is held). Returns `None` if the buffer is cancelled.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut state = self.lock();
        while !state.cancelled && state.used > 0 && state.used + bytes > self.budget {
            state = self.not_full.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.cancelled {
            return None;
        }
        state.used += bytes;
        state.peak = state.peak.max(state.used);
        Some(Reservation { bytes })
    }

    /// Queues `item`, whose exact size is `bytes`, settling `reservation`.
    pub fn push(&self, item: T, bytes: usize, reservation: Reservation) {
        let mut state = self.lock();
        state.used = state.used - reservation.bytes + bytes;
        state.peak = state.peak.max(state.used);
        if state.cancelled {
            // Nobody will pop it: drop it (outside the lock) and free its bytes.
            state.used -= bytes;
            drop(state);
            drop(item);
            return;
        }
        state.items.push_back((item, bytes));
        drop(state);
        self.not_empty.notify_one();
    }

    /// Queues an item that holds (next to) no memory, such as an error or a state update,
    /// without a reservation: it never blocks.
    pub fn push_free(&self, item: T) {
        let mut state = self.lock();
        if state.cancelled {
            drop(state);
            drop(item);
            return;
        }
        state.items.push_back((item, 0));
        drop(state);
        self.not_empty.notify_one();
    }

    /// Gives back a reservation whose item will never be pushed.
    pub fn cancel_reservation(&self, reservation: Reservation) {
        let mut state = self.lock();
        state.used -= reservation.bytes;
        drop(state);
        self.not_full.notify_all();
    }

    /// Takes the oldest item, waiting up to `timeout` for one.
    pub fn pop(&self, timeout: Duration) -> Pop<T> {
        let state = self.lock();
        let (mut state, _) = self
            .not_empty
            .wait_timeout_while(state, timeout, |s| s.items.is_empty() && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        match state.items.pop_front() {
            Some((item, bytes)) => {
                state.used -= bytes;
                drop(state);
                self.not_full.notify_all();
                Pop::Item(item)
            }
            None if state.closed => Pop::Closed,
            None => Pop::Timeout,
        }
    }

    /// Marks the end of the stream: once the queued items are popped, [`Self::pop`] returns
    /// [`Pop::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
    }

    /// Drops every queued item, wakes blocked producers (their `reserve` returns `None`) and
    /// closes the buffer.
    pub fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled = true;
        state.closed = true;
        let items: Vec<_> = state.items.drain(..).collect();
        for (_, bytes) in &items {
            state.used -= bytes;
        }
        drop(state);
        drop(items);
        self.not_full.notify_all();
        self.not_empty.notify_all();
    }

    /// Bytes currently held: queued items and outstanding reservations.
    pub fn used(&self) -> usize {
        self.lock().used
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> usize {
        self.lock().peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn fifo_with_exact_accounting() {
        let b = OutputBuffer::new(100);
        let r = b.reserve(10).unwrap();
        b.push("a", 30, r);
        let r = b.reserve(20).unwrap();
        assert_eq!(b.used(), 50);
        b.push("b", 20, r);
        assert_eq!(b.pop(Duration::ZERO), Pop::Item("a"));
        assert_eq!(b.used(), 20);
        assert_eq!(b.pop(Duration::ZERO), Pop::Item("b"));
        assert_eq!(b.pop(Duration::from_millis(1)), Pop::Timeout);
        b.close();
        assert_eq!(b.pop(Duration::from_secs(5)), Pop::Closed);
        assert_eq!(b.peak(), 50);
    }

    #[test]
    fn an_oversized_item_passes_alone() {
        let b = OutputBuffer::new(10);
        let r = b.reserve(1000).unwrap();
        b.push(1, 1000, r);
        assert_eq!(b.pop(Duration::ZERO), Pop::Item(1));
    }

    #[test]
    fn producers_block_until_the_consumer_catches_up() {
        let b = Arc::new(OutputBuffer::new(100));
        let producer = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let r = b.reserve(40).unwrap();
                    b.push(i, 40, r);
                    assert!(b.used() <= 100);
                }
                b.close();
            })
        };
        let mut got = Vec::new();
        loop {
            std::thread::sleep(Duration::from_micros(200));
            match b.pop(Duration::from_secs(5)) {
                Pop::Item(i) => got.push(i),
                Pop::Closed => break,
                Pop::Timeout => panic!("producer stalled"),
            }
        }
        producer.join().unwrap();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        assert!(b.peak() <= 100, "peak {}", b.peak());
    }

    #[test]
    fn cancel_releases_blocked_producers_and_drops_items() {
        let b = Arc::new(OutputBuffer::new(10));
        let r = b.reserve(10).unwrap();
        b.push(vec![1u8], 10, r);
        let producer = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.reserve(10).is_none())
        };
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        b.cancel();
        assert!(producer.join().unwrap());
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(b.used(), 0);
        assert_eq!(b.pop(Duration::ZERO), Pop::Closed);
    }

    #[test]
    fn free_items_never_block_and_keep_their_place() {
        let b = OutputBuffer::new(10);
        let r = b.reserve(100).unwrap();
        b.push("big", 100, r);
        b.push_free("marker");
        assert_eq!(b.used(), 100);
        assert_eq!(b.pop(Duration::ZERO), Pop::Item("big"));
        assert_eq!(b.pop(Duration::ZERO), Pop::Item("marker"));
        b.cancel();
        b.push_free("dropped");
        assert_eq!(b.pop(Duration::ZERO), Pop::Closed);
    }

    #[test]
    fn cancelled_reservations_free_their_bytes() {
        let b = OutputBuffer::<u8>::new(10);
        let r = b.reserve(7).unwrap();
        b.cancel_reservation(r);
        assert_eq!(b.used(), 0);
    }
}
