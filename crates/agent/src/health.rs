//! Health, as kube-proxy's `/healthz` and `/livez` (`pkg/proxy/healthcheck/
//! proxy_health.go`) mean it: the agent's own loop, never the API server.
//!
//! The loop syncs at least every `--ipvs-sync-period` (a full resync of the
//! kernel runs whether or not the API server answers), so a loop that has
//! not completed a sync for twice that is stuck or failing: unhealthy, as
//! kube-proxy is when a queued update waits longer than `2 × syncPeriod`.
//! Before the first sync:
//!
//! - `/livez` answers 200: the agent is starting, waiting for the sources'
//!   initial state (an unreachable API server is not the agent's fault, and
//!   restarting it would not help; kube-proxy is healthy "while it's
//!   starting up", and Cilium keeps the API server out of its liveness for
//!   the same reason) or running the first, cold sync. The DaemonSet's
//!   `startupProbe` bounds that time instead.
//! - `/healthz` answers 503: the node forwards nothing new yet, so it is
//!   not ready (readiness, and load balancers' health checks).

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

    /// What `/healthz` answers: unhealthy before the first sync, and when
    /// the last one is older than the limit.
    pub fn status(&self) -> Status {
        self.answer(false)
    }

    /// What `/livez` answers: as `/healthz`, but healthy before the first
    /// sync (starting up).
    pub fn liveness(&self) -> Status {
        self.answer(true)
    }

    fn answer(&self, starting_is_healthy: bool) -> Status {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        let (healthy, last) = match inner.last_sync {
            Some((at, wall)) => (at.elapsed() <= self.stale_after, rfc3339(wall)),
            None => (starting_is_healthy, String::new()),
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
        // Starting up is alive, however long the API server keeps us waiting.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(health.liveness().healthy);
        assert!(!health.status().healthy);
        health.synced();
        assert!(health.status().healthy);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(health.status().healthy);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!health.status().healthy);
        assert!(!health.liveness().healthy, "a stuck loop is not alive");
        health.synced();
        assert!(health.status().healthy);
    }
}
