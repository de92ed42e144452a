//! Logging a repeated warning without flooding the logs.

/// A warning that repeats for as long as a dependency is down (every
/// WebSocket refused while Redis is away, say): logged the first time, then
/// at most once per period with how many were held back since, so an outage
/// is visible without flooding the logs.
pub struct Throttle {
    every: std::time::Duration,
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Throttle {
    /// At most one line per `every`.
    pub const fn new(every: std::time::Duration) -> Self {
        Self { every, state: std::sync::Mutex::new((None, 0)) }
    }

    /// `Some(held_back)` when this occurrence is to be logged (with how many
    /// were not since the last), `None` when it is held back.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                let held_back = state.1;
                *state = (Some(now), 0);
                Some(held_back)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_through_per_period_and_counts_the_rest() {
        let throttle = Throttle::new(std::time::Duration::from_millis(50));
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!((throttle.allow(), throttle.allow()), (None, None));
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(throttle.allow(), Some(2), "the two held back are counted");
        assert_eq!(throttle.allow(), None);
    }
}
