//! Health: healthy once the first sync is done and the last one is recent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Shared health state: the loop records syncs, the HTTP server reads it.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<Mutex<Inner>>,
    stale_after: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    last_sync: Option<(Instant, SystemTime)>,
}

/// What `/healthz` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Whether the agent is healthy.
    pub healthy: bool,
    /// The JSON body, shaped like kube-proxy's (`lastUpdated`, `currentTime`).
    pub body: String,
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one timestamp.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Health {
    /// Health that turns stale when no sync has completed for `stale_after`
    /// (twice the resync period: one missed resync is tolerated).
    pub fn new(stale_after: Duration) -> Self {
        Health {
            inner: Default::default(),
            stale_after,
        }
    }

    /// Records a completed sync.
    pub fn synced(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.last_sync = Some((Instant::now(), SystemTime::now()));
    }

    /// The current status.
    pub fn status(&self) -> Status {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        let (healthy, last) = match inner.last_sync {
            Some((at, wall)) => (at.elapsed() <= self.stale_after, rfc3339(wall)),
            None => (false, String::new()),
        };
        Status {
            healthy,
            body: format!(
                "{{\"lastUpdated\": \"{last}\",\"currentTime\": \"{}\", \"nodeEligible\": true}}",
                rfc3339(now)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_000_000)),
            "2026-11-18T11:06:40Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_until_first_sync_and_after_staleness() {
        let health = Health::new(Duration::from_secs(60));
        assert!(!health.status().healthy);
        health.synced();
        assert!(health.status().healthy);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(health.status().healthy);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!health.status().healthy);
        health.synced();
        assert!(health.status().healthy);
    }
}
