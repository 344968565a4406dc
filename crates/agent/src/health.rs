//! Health, as kube-proxy's `/healthz` and `/livez` (`pkg/proxy/healthcheck/
//! proxy_health.go`) mean it: the agent's own loop, never the API server;
//! `/healthz` also needs the node to be eligible (not being deleted, not
//! marked `ToBeDeletedByClusterAutoscaler`), `/livez` does not.
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
//! - `/healthz` answers 503, unlike kube-proxy's (healthy while starting):
//!   the node forwards nothing new yet, so a readiness probe or a load
//!   balancer must not send it traffic before its rules are there.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube_ipvs_controller::Eligibility;
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
    eligibility: Eligibility,
}

/// What `/healthz` or `/livez` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Whether the agent is healthy.
    pub healthy: bool,
    /// The JSON body, shaped like kube-proxy's (`lastUpdated`,
    /// `currentTime`, and for `/healthz` `nodeEligible`).
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

    /// Records whether the node is eligible for load-balancer traffic.
    pub fn set_node(&self, eligibility: Eligibility) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.eligibility != eligibility {
            tracing::info!(node = eligibility.as_str(), "node eligibility changed");
        }
        inner.eligibility = eligibility;
    }

    /// Whether the proxy itself is healthy (synced, recently), whatever the
    /// node's eligibility: `serviceProxyHealthy` of the Services' health
    /// checks.
    pub fn proxy_healthy(&self) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.synced_recently(&inner) == Some(true)
    }

    /// Whether the last sync is recent; `None` before the first.
    fn synced_recently(&self, inner: &Inner) -> Option<bool> {
        inner
            .last_sync
            .map(|(at, _)| at.elapsed() <= self.stale_after)
    }

    fn last_updated(inner: &Inner) -> String {
        inner
            .last_sync
            .map(|(_, wall)| rfc3339(wall))
            .unwrap_or_default()
    }

    /// What `/healthz` answers: unhealthy before the first sync, when the
    /// last one is older than the limit, and while the node is not eligible.
    pub fn status(&self) -> Status {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let eligible = inner.eligibility.eligible();
        Status {
            healthy: self.synced_recently(&inner) == Some(true) && eligible,
            body: format!(
                "{{\"lastUpdated\": \"{}\",\"currentTime\": \"{}\", \"nodeEligible\": {eligible}}}",
                Self::last_updated(&inner),
                rfc3339(SystemTime::now())
            ),
        }
    }

    /// What `/livez` answers: the proxy's own health, healthy before the
    /// first sync (starting up), whatever the node's eligibility.
    pub fn liveness(&self) -> Status {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Status {
            healthy: self.synced_recently(&inner).unwrap_or(true),
            body: format!(
                "{{\"lastUpdated\": \"{}\",\"currentTime\": \"{}\"}}",
                Self::last_updated(&inner),
                rfc3339(SystemTime::now())
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

    /// `proxy_health.go` `NodeEligible`: a node being deleted or marked for
    /// deletion fails `/healthz` (load balancers drain it) but not `/livez`
    /// (the agent is not restarted for it).
    #[tokio::test(start_paused = true)]
    async fn an_ineligible_node_fails_healthz_not_livez() {
        let health = Health::new(Duration::from_secs(60));
        health.synced();
        for eligibility in [Eligibility::Deleting, Eligibility::ToBeDeleted] {
            health.set_node(eligibility);
            let status = health.status();
            assert!(!status.healthy);
            assert!(
                status.body.contains("\"nodeEligible\": false"),
                "{}",
                status.body
            );
            assert!(health.liveness().healthy);
            assert!(health.proxy_healthy());
        }
        health.set_node(Eligibility::Eligible);
        assert!(health.status().healthy);
        assert!(health.status().body.contains("\"nodeEligible\": true"));
        assert!(!health.liveness().body.contains("nodeEligible"));
    }
}
