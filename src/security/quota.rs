//! Quotas per identity: how many inspection results one caller may report
//! per hour (a token bucket), so that one compromised or broken client
//! cannot flood the labels that retraining learns from.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Results a caller reported beyond its quota.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{caller} reached its quota of {per_hour} inspection results per hour; retry in {} s",
    retry_after.as_secs().max(1)
)]
pub struct QuotaExceeded {
    pub caller: String,
    pub per_hour: u64,
    pub retry_after: Duration,
}

#[derive(Debug)]
struct Bucket {
    available: f64,
    at: Instant,
}

/// A token bucket per caller name: `per_hour` results at most in a burst,
/// refilled evenly over the hour. Zero: no quota.
#[derive(Debug)]
pub struct ReportQuota {
    per_hour: u64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl ReportQuota {
    /// Far above what an inspection team reports (a few hundred controls a
    /// day at Liège), and equal to the largest upload.
    pub const DEFAULT_PER_HOUR: u64 = 100_000;

    pub fn new(per_hour: u64) -> ReportQuota {
        ReportQuota {
            per_hour,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_hour(&self) -> u64 {
        self.per_hour
    }

    /// Takes `results` from `caller`'s bucket, or refuses all of them.
    pub fn take(&self, caller: &str, results: u64) -> Result<(), QuotaExceeded> {
        self.take_at(caller, results, Instant::now())
    }

    fn take_at(&self, caller: &str, results: u64, now: Instant) -> Result<(), QuotaExceeded> {
        if self.per_hour == 0 {
            return Ok(());
        }
        let capacity = self.per_hour as f64;
        let per_second = capacity / 3600.0;
        // A poisoned lock only means another call panicked mid-update; the
        // counts are still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            available: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.available = (bucket.available + elapsed * per_second).min(capacity);
        bucket.at = now;
        let wanted = results as f64;
        if wanted <= bucket.available {
            bucket.available -= wanted;
            return Ok(());
        }
        let missing = (wanted.min(capacity) - bucket.available).max(0.0);
        Err(QuotaExceeded {
            caller: caller.to_owned(),
            per_hour: self.per_hour,
            retry_after: Duration::from_secs_f64(missing / per_second),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_hour_then_waits_and_others_are_not_affected() {
        let quota = ReportQuota::new(3600);
        let t0 = Instant::now();
        assert!(quota.take_at("a", 3000, t0).is_ok());
        let refused = quota.take_at("a", 700, t0).unwrap_err();
        assert_eq!(refused.retry_after.as_secs(), 100);
        assert!(
            refused
                .to_string()
                .contains("3600 inspection results per hour")
        );
        // Other callers have their own buckets.
        assert!(quota.take_at("b", 3600, t0).is_ok());
        // One result a second comes back.
        assert!(
            quota
                .take_at("a", 700, t0 + Duration::from_secs(100))
                .is_ok()
        );
        assert!(ReportQuota::new(0).take("x", u64::MAX).is_ok());
    }
}
