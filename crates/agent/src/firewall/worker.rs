//! Runs the packet filter beside the reconcile loop.
//!
//! Replacing the nftables table runs `nft` and can take a while at scale;
//! the UDP conntrack clean-up dumps the conntrack table. Neither may hold up
//! IPVS programming, so the loop hands the latest ruleset and UDP frontends
//! to this worker and goes on. Both coalesce: only the newest is applied. A
//! failed UDP clean-up is retried with backoff until one succeeds, and the
//! frontends gone since the last success are cleaned then.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube_ipvs_controller::{UdpFrontend, UdpFrontends};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{FirewallError, PacketFilter, Ruleset};
use crate::error::Chain;
use crate::metrics::Metrics;

/// The first retry of a failed UDP clean-up; each next one waits twice as
/// long, up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two tries of a failed UDP clean-up.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The loop's handle on the worker.
#[derive(Clone, Debug)]
pub struct FirewallHandle {
    rulesets: watch::Sender<Option<Arc<Ruleset>>>,
    udp: watch::Sender<Option<Arc<UdpFrontends>>>,
    forward: watch::Sender<u64>,
}

impl FirewallHandle {
    /// Asks for `ruleset` to be applied (a no-op when it is the one applied).
    pub fn apply(&self, ruleset: Ruleset) {
        self.rulesets.send_if_modified(|current| {
            if current.as_deref() == Some(&ruleset) {
                return false;
            }
            *current = Some(Arc::new(ruleset));
            true
        });
    }

    /// Asks for the stale UDP flows of `frontends` to be cleaned: at once
    /// when they changed, or when `always` (a periodic check).
    pub fn reconcile_udp(&self, frontends: UdpFrontends, always: bool) {
        self.udp.send_if_modified(|current| {
            if !always && current.as_deref() == Some(&frontends) {
                return false;
            }
            *current = Some(Arc::new(frontends));
            true
        });
    }
}

impl FirewallHandle {
    /// Asks for the iptables `FORWARD` rule to be checked against its
    /// chain's policy, which other software may change at any time.
    pub fn check_forward(&self) {
        self.forward.send_modify(|n| *n += 1);
    }
}

/// The one place a failure of the packet filter is logged and counted.
fn log_error(what: &str, operation: &str, e: &FirewallError, metrics: &Metrics) {
    metrics.sync_errors.with_label_values(&[operation]).inc();
    tracing::warn!(error = %Chain(e), "{what} failed; retried");
}

/// Runs `f` on `filter` on a blocking thread and gives the filter back;
/// `None` when the task died (the filter is lost with it).
async fn blocking<F: PacketFilter, T: Send + 'static>(
    mut filter: F,
    f: impl FnOnce(&mut F) -> T + Send + 'static,
) -> Option<(F, T)> {
    match tokio::task::spawn_blocking(move || {
        let out = f(&mut filter);
        (filter, out)
    })
    .await
    {
        Ok(done) => Some(done),
        Err(e) => {
            tracing::error!(error = %Chain(&e), "the packet filter task failed");
            None
        }
    }
}

/// The UDP clean-up's progress: what the last success cleaned against,
/// and when a failed one is tried again.
#[derive(Default)]
struct UdpProgress {
    cleaned: Option<Arc<UdpFrontends>>,
    retry_at: Option<Instant>,
    failures: u32,
}

impl UdpProgress {
    /// The frontends gone since the last success.
    fn gone(&self, frontends: &UdpFrontends) -> BTreeSet<UdpFrontend> {
        self.cleaned
            .as_deref()
            .map(|c| c.gone_in(frontends))
            .unwrap_or_default()
    }

    fn succeeded(&mut self, frontends: Arc<UdpFrontends>) {
        self.cleaned = Some(frontends);
        self.retry_at = None;
        self.failures = 0;
    }

    fn failed(&mut self) {
        let wait = FIRST_RETRY
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_RETRY);
        self.failures += 1;
        self.retry_at = Some(Instant::now() + wait);
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Starts the worker over `filter` on the tokio runtime; it stops when the
/// handle is dropped.
pub fn spawn<F: PacketFilter + Default>(filter: F, metrics: Metrics) -> FirewallHandle {
    let (rulesets, mut rulesets_rx) = watch::channel::<Option<Arc<Ruleset>>>(None);
    let (udp, mut udp_rx) = watch::channel::<Option<Arc<UdpFrontends>>>(None);
    let (forward, mut forward_rx) = watch::channel::<u64>(0);
    tokio::spawn(async move {
        let mut filter = Some(filter);
        let mut progress = UdpProgress::default();
        loop {
            let clean_udp = tokio::select! {
                changed = rulesets_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let Some(ruleset) = rulesets_rx.borrow_and_update().clone() else { continue };
                    let current = filter.take().unwrap_or_default();
                    let Some((current, result)) = blocking(current, move |f| f.apply(&ruleset)).await else {
                        continue;
                    };
                    filter = Some(current);
                    match result {
                        Ok(report) if report.applied => tracing::info!(
                            elements = report.elements,
                            duration_ms = report.duration.as_secs_f64() * 1000.0,
                            "nftables table replaced"
                        ),
                        Ok(_) => {}
                        Err(e) => log_error("replacing the nftables table", "nftables", &e, &metrics),
                    }
                    false
                }
                changed = udp_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    true
                }
                changed = forward_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    forward_rx.borrow_and_update();
                    let current = filter.take().unwrap_or_default();
                    let Some((current, result)) = blocking(current, |f| f.reconcile_forward()).await else {
                        continue;
                    };
                    filter = Some(current);
                    if let Err(e) = result {
                        log_error("accepting IPVS replies in iptables' FORWARD chain", "forward_rule", &e, &metrics);
                    }
                    false
                }
                () = sleep_until_opt(progress.retry_at) => true,
            };
            if !clean_udp {
                continue;
            }
            let Some(frontends) = udp_rx.borrow_and_update().clone() else {
                continue;
            };
            let gone = progress.gone(&frontends);
            let current = filter.take().unwrap_or_default();
            let target = frontends.clone();
            let Some((current, result)) =
                blocking(current, move |f| f.reconcile_udp_flows(&target, &gone)).await
            else {
                progress.failed();
                continue;
            };
            filter = Some(current);
            match result {
                Ok(deleted) => {
                    if deleted > 0 {
                        tracing::info!(deleted, "stale UDP conntrack entries deleted");
                    }
                    progress.succeeded(frontends);
                }
                Err(e) => {
                    log_error(
                        "cleaning stale UDP conntrack entries",
                        "udp_conntrack",
                        &e,
                        &metrics,
                    );
                    progress.failed();
                }
            }
        }
    });
    FirewallHandle {
        rulesets,
        udp,
        forward,
    }
}
