//! Mutex locking that outlives a panic elsewhere.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: every structure behind the engine's locks stays usable
/// after a panic elsewhere, and a panic is reported and cancels the sync anyway.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
