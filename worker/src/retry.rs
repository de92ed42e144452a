//! The one retry policy: exponential backoff with full jitter, bounded by
//! `JOB_MAX_ATTEMPTS`; a provider's `Retry-After` wins when present.
//!
//! The exponential curve is backon's (`backoff`, the crate first named for
//! this, is unmaintained: RUSTSEC-2025-0012). backon's own jitter adds a random
//! share on top of each delay; full jitter (a random delay up to it) spreads
//! a fleet's retries better, so the jitter is applied here.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::RngExt;
use shared::config::JobsConfig;

/// The delay before attempt `attempt + 1`, after `attempt` failed.
pub fn delay(config: &JobsConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(after) = retry_after {
        return after;
    }
    let cap = ExponentialBuilder::new()
        .with_min_delay(config.backoff_base)
        .with_max_delay(config.backoff_max)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(config.backoff_max);
    Duration::from_millis(rand::rng().random_range(0..=cap.as_millis() as u64))
}

/// Whether another attempt is allowed after `attempt` failed.
pub fn may_retry(config: &JobsConfig, attempt: u32) -> bool {
    attempt < config.max_attempts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JobsConfig {
        JobsConfig {
            max_attempts: 4,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1_000),
            lease: Duration::from_secs(30),
            reconcile_interval: Duration::from_secs(5),
            requeue_after: Duration::from_secs(30),
            done_retention: Duration::from_secs(3600),
        }
    }

    #[test]
    fn delays_grow_within_the_cap_and_retry_after_wins() {
        let c = config();
        for _ in 0..200 {
            assert!(delay(&c, 1, None) <= Duration::from_millis(100));
            assert!(delay(&c, 3, None) <= Duration::from_millis(400));
            assert!(delay(&c, 30, None) <= Duration::from_millis(1_000));
        }
        assert_eq!(delay(&c, 1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert!(may_retry(&c, 3));
        assert!(!may_retry(&c, 4));
    }
}
