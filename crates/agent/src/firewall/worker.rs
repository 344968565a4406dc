//! Runs the packet filter beside the reconcile loop.
//!
//! Replacing the nftables table runs `nft` and can take a while at scale;
//! conntrack cleanup dumps the conntrack table. Neither may hold up IPVS
//! programming, so the loop hands the latest ruleset and the removed UDP
//! real servers to this worker and goes on. Rulesets coalesce: only the
//! newest one is applied.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{Conntrack, Firewall, FirewallError, Ruleset, StaleUdpFlows};
use crate::metrics::Metrics;

/// The loop's handle on the worker.
#[derive(Clone, Debug)]
pub struct FirewallHandle {
    rulesets: watch::Sender<Option<Arc<Ruleset>>>,
    stale: mpsc::UnboundedSender<Vec<StaleUdpFlows>>,
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

    /// Asks for the conntrack entries of removed UDP real servers to go.
    pub fn forget_udp_flows(&self, stale: Vec<StaleUdpFlows>) {
        if !stale.is_empty() {
            // The worker lives as long as the handle's loop; a send can only
            // fail after it stopped, when there is nothing left to clean.
            let _ = self.stale.send(stale);
        }
    }
}

fn log_error(what: &str, e: &FirewallError, metrics: &Metrics) {
    metrics.sync_errors.inc();
    tracing::warn!(error = %crate::dataplane::kernel::error_chain(e), "{what} failed; retried on the next change or resync");
}

/// Starts the worker on the tokio runtime; it stops when the handle is dropped.
pub fn spawn(metrics: Metrics) -> FirewallHandle {
    let (rulesets, mut rulesets_rx) = watch::channel::<Option<Arc<Ruleset>>>(None);
    let (stale, mut stale_rx) = mpsc::unbounded_channel::<Vec<StaleUdpFlows>>();
    tokio::spawn(async move {
        let mut firewall = Some(Firewall::new());
        let mut conntrack: Option<Conntrack> = None;
        loop {
            tokio::select! {
                changed = rulesets_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let Some(ruleset) = rulesets_rx.borrow_and_update().clone() else { continue };
                    let mut fw = firewall.take().unwrap_or_default();
                    let (fw, result) = match tokio::task::spawn_blocking(move || {
                        let result = fw.sync(&ruleset);
                        (fw, result)
                    })
                    .await
                    {
                        Ok(done) => done,
                        Err(e) => {
                            tracing::error!(error = %e, "the nftables sync task failed");
                            firewall = Some(Firewall::new());
                            continue;
                        }
                    };
                    firewall = Some(fw);
                    match result {
                        Ok(report) if report.applied => tracing::info!(
                            elements = report.elements,
                            duration_ms = report.duration.as_secs_f64() * 1000.0,
                            "nftables table replaced"
                        ),
                        Ok(_) => {}
                        Err(e) => log_error("replacing the nftables table", &e, &metrics),
                    }
                }
                batch = stale_rx.recv() => {
                    let Some(mut batch) = batch else { break };
                    while let Ok(more) = stale_rx.try_recv() {
                        batch.extend(more);
                    }
                    let mut ct = match conntrack.take() {
                        Some(ct) => ct,
                        None => match Conntrack::open() {
                            Ok(ct) => ct,
                            Err(e) => {
                                log_error("opening conntrack", &e, &metrics);
                                continue;
                            }
                        },
                    };
                    let done = tokio::task::spawn_blocking(move || {
                        let result = ct.delete_stale(&batch);
                        (ct, result)
                    })
                    .await;
                    match done {
                        Ok((ct, Ok(deleted))) => {
                            conntrack = Some(ct);
                            tracing::debug!(deleted, "stale UDP conntrack entries deleted");
                        }
                        Ok((_, Err(e))) => log_error("deleting stale UDP conntrack entries", &e, &metrics),
                        Err(e) => tracing::error!(error = %e, "the conntrack task failed"),
                    }
                }
            }
        }
    });
    FirewallHandle { rulesets, stale }
}
