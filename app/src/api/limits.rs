//! The public API's rate limit (governor): requests per second per integration, amoCRM's 7 by
//! default. Over it, a 429 with `Retry-After`.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct ApiLimits {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl ApiLimits {
    /// `per_second` 0 lifts the limit.
    pub fn new(per_second: u32) -> ApiLimits {
        ApiLimits {
            limiter: NonZeroU32::new(per_second).map(|n| RateLimiter::keyed(Quota::per_second(n))),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of `integration`; `Err(seconds)` when over the limit (at least 1).
    pub fn check(&self, integration: &str) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > 100_000 {
            limiter.retain_recent();
        }
        limiter.check_key(&integration.to_string()).map_err(|n| {
            let d = n.wait_time_from(self.clock.now());
            (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_a_second_per_integration_then_429() {
        let limits = ApiLimits::new(7);
        for _ in 0..7 {
            assert!(limits.check("client:1").is_ok());
        }
        assert_eq!(limits.check("client:1"), Err(1));
        // Another integration has its own budget.
        assert!(limits.check("client:2").is_ok());
        assert!(ApiLimits::new(0).check("x").is_ok());
    }
}
