//! go-cqhttp's API rate limit (`middlewares.rate-limit`): a token bucket of `bucket` tokens,
//! refilled at `frequency` tokens a second, that **delays** action calls rather than refusing
//! them (go-cqhttp used `golang.org/x/time/rate` and waited for a token).
//!
//! Buckets are kept as go-cqhttp kept them: one per HTTP API server, one per forward-WebSocket
//! connection, one per reverse-WebSocket entry.
//!
//! The wait is bounded: a call whose turn would come later than `max_wait` from now is not
//! queued but answered at once with a failure, so a flood of calls cannot pile up unbounded
//! waits (each connection's calls in flight are bounded too).

use std::sync::Mutex;
use std::time::Duration;

use crate::sync::LockUnpoisoned;
use tokio::time::Instant;

/// The longest a call waits for its turn before it is refused instead (a WebSocket connection
/// has at most 64 calls in flight, so at one call a second its last one waits about this long).
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The settings of one limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (> 0).
    pub frequency: f64,
    /// The bucket's size: calls that may go at once after a quiet period (≥ 1).
    pub bucket: u32,
}

/// One token bucket.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    max_wait: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Tokens available at `at` (negative: reserved ahead by waiting calls).
    tokens: f64,
    at: Instant,
}

/// A call that would have waited longer than the limiter allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited: the next call may go in {wait:?}, longer than {max_wait:?}")]
pub struct Overloaded {
    pub wait: Duration,
    pub max_wait: Duration,
}

impl Limiter {
    pub fn new(limit: RateLimit, max_wait: Duration) -> Limiter {
        let limit = RateLimit { frequency: limit.frequency.max(f64::MIN_POSITIVE), bucket: limit.bucket.max(1) };
        Limiter { limit, max_wait, state: Mutex::new(State { tokens: f64::from(limit.bucket), at: Instant::now() }) }
    }

    /// Waits for this call's token (reserving it first, so calls go in arrival order).
    pub async fn acquire(&self) -> Result<(), Overloaded> {
        let wait = self.reserve(Instant::now())?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Takes a token at `now`, returning how long the caller must wait before using it.
    fn reserve(&self, now: Instant) -> Result<Duration, Overloaded> {
        let mut state = self.state.lock_unpoisoned();
        let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
        let tokens = (state.tokens + elapsed * self.limit.frequency).min(f64::from(self.limit.bucket)) - 1.0;
        let wait = if tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-tokens / self.limit.frequency) };
        if wait > self.max_wait {
            return Err(Overloaded { wait, max_wait: self.max_wait });
        }
        state.tokens = tokens;
        state.at = now;
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_lets_a_burst_through_then_paces_calls() {
        let limiter = Limiter::new(RateLimit { frequency: 2.0, bucket: 3 }, Duration::from_secs(60));
        let start = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..6 {
            waits.push(limiter.reserve(start).unwrap());
        }
        assert_eq!(waits, [ms(0), ms(0), ms(0), ms(500), ms(1000), ms(1500)]);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_come_back_with_time_up_to_the_bucket() {
        let limiter = Limiter::new(RateLimit { frequency: 1.0, bucket: 2 }, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(limiter.reserve(t0).unwrap(), ms(0));
        assert_eq!(limiter.reserve(t0).unwrap(), ms(0));
        assert_eq!(limiter.reserve(t0).unwrap(), ms(1000));
        // Ten quiet seconds refill the bucket, but only to its size.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(limiter.reserve(later).unwrap(), ms(0));
        assert_eq!(limiter.reserve(later).unwrap(), ms(0));
        assert_eq!(limiter.reserve(later).unwrap(), ms(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_for_its_turn() {
        let limiter = Limiter::new(RateLimit { frequency: 4.0, bucket: 1 }, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await.unwrap();
        }
        assert_eq!(Instant::now() - start, ms(1000), "four waits of 250 ms after the first call");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_allowed_is_refused_and_reserves_nothing() {
        let limiter = Limiter::new(RateLimit { frequency: 1.0, bucket: 1 }, Duration::from_secs(2));
        let t0 = Instant::now();
        assert_eq!(limiter.reserve(t0).unwrap(), ms(0));
        assert_eq!(limiter.reserve(t0).unwrap(), ms(1000));
        assert_eq!(limiter.reserve(t0).unwrap(), ms(2000));
        let refused = limiter.reserve(t0).unwrap_err();
        assert_eq!(refused.wait, ms(3000));
        // The refusal took no token: one second later the next turn is still 2 s away.
        assert_eq!(limiter.reserve(t0 + ms(1000)).unwrap(), ms(2000));
    }
}
