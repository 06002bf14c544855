//! The error of setting up this crate's parts. A failed request is not one of these: it is a
//! [`crate::transport::TransportError`], classified by kind for the caller to map.
//! The Python bindings raise every variant as `ValueError`.

/// A transport or a rate limiter refused its configuration or a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The CA bundle given to [`crate::transport::Transport::new`] is unusable.
    #[error("{0}")]
    CaBundle(String),
    /// A limit of [`crate::ratelimit::Limits::new`] is out of range.
    #[error("{0}")]
    Limits(String),
    /// [`crate::ratelimit::RateLimiter::release_slot`] for a key that holds no slot.
    #[error("rate limiter key '{key}': release without a matching acquire")]
    ReleaseWithoutAcquire {
        /// The key released.
        key: String,
    },
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
