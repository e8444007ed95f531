//! Sign-in rate limits (governor): per e-mail and per client IP, each a keyed GCRA limiter.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct SignInLimits {
    per_login: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl SignInLimits {
    pub fn new(per_login_per_minute: u32, per_ip_per_minute: u32) -> SignInLimits {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        SignInLimits {
            per_login: RateLimiter::keyed(quota(per_login_per_minute)),
            per_ip: RateLimiter::keyed(quota(per_ip_per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt; `Err(seconds)` says how long to wait when over either limit.
    pub fn check(&self, email: &str, ip: Option<IpAddr>) -> Result<(), u64> {
        let wait = |not_until: governor::NotUntil<_>| {
            let d: Duration = not_until.wait_time_from(self.clock.now());
            d.as_secs() + u64::from(d.subsec_nanos() > 0)
        };
        if let Some(ip) = ip {
            self.per_ip.check_key(&ip).map_err(wait)?;
        }
        self.per_login
            .check_key(&email.trim().to_lowercase())
            .map_err(wait)
    }

    /// Forgets keys whose limits have fully recovered, so memory stays bounded.
    pub fn prune(&self) {
        self.per_login.retain_recent();
        self.per_ip.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_quota_per_login_and_per_ip() {
        let limits = SignInLimits::new(2, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limits.check("a@x.io", Some(ip)).is_ok());
        assert!(limits.check("A@x.io ", Some(ip)).is_ok());
        let wait = limits.check("a@x.io", Some(ip)).unwrap_err();
        assert!((1..=60).contains(&wait));
        // Three attempts came from this IP: a fresh login from it is refused too...
        assert!(limits.check("b@x.io", Some(ip)).is_err());
        // ...while another IP is unaffected for a fresh login.
        assert!(
            limits
                .check("d@x.io", Some("10.0.0.2".parse().unwrap()))
                .is_ok()
        );
    }
}
