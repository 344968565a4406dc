//! Health, as kube-proxy's `ProxyHealthServer`
//! (`pkg/proxy/healthcheck/proxy_health.go`) reports it: the proxy is
//! healthy once the first sync is done and the last one is recent; `/healthz`
//! also needs the node to be eligible (not being deleted, not marked
//! `ToBeDeletedByClusterAutoscaler`), `/livez` does not.
//!
//! One difference on purpose: kube-proxy counts a proxier that has not
//! synced yet as healthy ("healthy while it's starting up"); here both
//! endpoints answer 503 until the first sync, so a readiness probe or a
//! load balancer never sends traffic to a node whose rules are not there.

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
    /// node's eligibility: `/livez`, and `serviceProxyHealthy` of the
    /// Services' health checks.
    pub fn proxy_healthy(&self) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.synced_recently(&inner)
    }

    fn synced_recently(&self, inner: &Inner) -> bool {
        inner
            .last_sync
            .is_some_and(|(at, _)| at.elapsed() <= self.stale_after)
    }

    fn last_updated(inner: &Inner) -> String {
        inner
            .last_sync
            .map(|(_, wall)| rfc3339(wall))
            .unwrap_or_default()
    }

    /// What `/healthz` answers: healthy when the proxy is and the node is
    /// eligible.
    pub fn status(&self) -> Status {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let eligible = inner.eligibility.eligible();
        Status {
            healthy: self.synced_recently(&inner) && eligible,
            body: format!(
                "{{\"lastUpdated\": \"{}\",\"currentTime\": \"{}\", \"nodeEligible\": {eligible}}}",
                Self::last_updated(&inner),
                rfc3339(SystemTime::now())
            ),
        }
    }

    /// What `/livez` answers: the proxy's health alone.
    pub fn liveness(&self) -> Status {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Status {
            healthy: self.synced_recently(&inner),
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
        health.synced();
        assert!(health.status().healthy);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(health.status().healthy);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!health.status().healthy);
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
