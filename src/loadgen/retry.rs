//! The one retry policy of every load target. A comparison means something only if a request
//! that one target counts as failed would also have been failed by the other: both targets retry
//! the same errors (no leader, leader changed, timed out, overloaded, connection lost) the same
//! number of times, with the same per-attempt timeout and the same backoff, under the same
//! deadline per request, and a request that fails for good is recorded at that deadline.

use std::time::Duration;

use crate::client::{ClientOptions, RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN};

/// How a load target retries one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub attempts_max: u32,
    /// How long one attempt may wait for its answer.
    pub attempt_timeout: Duration,
    /// How long one request may take, retries and backoff included; a request that fails (for
    /// good, or by running out of this time) is recorded at this latency, as a failure.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 20 attempts of 2 s, 30 s per request: enough to ride out a leader change on the slowest
    /// shipped emulated network (election about 10 round trips of 400 ms) without giving up.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 20,
            attempt_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The ringraft client's options under this policy.
    pub fn client_options(
        &self,
        members: Vec<crate::client::MemberAddr>,
        client_id: u64,
    ) -> ClientOptions {
        let mut options = ClientOptions::new(members, client_id);
        options.attempts_max = self.attempts_max;
        options.attempt_timeout = self.attempt_timeout;
        options.request_timeout = Some(self.request_timeout);
        options
    }

    /// One sentence for reports.
    pub fn describe(&self) -> String {
        format!(
            "both targets retry alike: up to {} attempts of {} ms each on no-leader, timeout, \
             overload and lost-connection errors, backing off {}..{} ms (doubling) between \
             attempts, at most {} ms per request; a request that fails for good counts as an \
             error and enters the latency histograms at {} ms",
            self.attempts_max,
            self.attempt_timeout.as_millis(),
            RETRY_BACKOFF_MIN.as_millis(),
            RETRY_BACKOFF_MAX.as_millis(),
            self.request_timeout.as_millis(),
            self.request_timeout.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::retry_backoff;

    #[test]
    fn backoff_doubles_from_the_minimum_to_the_maximum() {
        assert_eq!(retry_backoff(0), Duration::ZERO);
        assert_eq!(retry_backoff(1), Duration::from_millis(20));
        assert_eq!(retry_backoff(2), Duration::from_millis(40));
        assert_eq!(retry_backoff(5), RETRY_BACKOFF_MAX);
        assert_eq!(retry_backoff(u32::MAX), RETRY_BACKOFF_MAX);
    }

    #[test]
    fn the_request_deadline_covers_every_backoff() {
        let policy = RetryPolicy::default();
        let backoff: Duration = (0..policy.attempts_max).map(retry_backoff).sum();
        assert!(backoff < policy.request_timeout, "{backoff:?}");
    }
}
