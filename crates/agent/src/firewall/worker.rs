//! Runs the packet filter beside the reconcile loop.
//!
//! Replacing the nftables table runs `nft` and can take a while at scale;
//! conntrack cleanup dumps the conntrack table. Neither may hold up IPVS
//! programming, so the loop hands the latest ruleset and the removed UDP
//! real servers to this worker and goes on. Rulesets coalesce: only the
//! newest one is applied.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{FirewallError, PacketFilter, Ruleset, StaleUdpFlows};
use crate::error::Chain;
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

/// The one place a failure of the packet filter is logged and counted.
fn log_error(what: &str, e: &FirewallError, metrics: &Metrics) {
    metrics.sync_errors.inc();
    tracing::warn!(error = %Chain(e), "{what} failed; retried on the next change or resync");
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

/// Starts the worker over `filter` on the tokio runtime; it stops when the
/// handle is dropped.
pub fn spawn<F: PacketFilter + Default>(filter: F, metrics: Metrics) -> FirewallHandle {
    let (rulesets, mut rulesets_rx) = watch::channel::<Option<Arc<Ruleset>>>(None);
    let (stale, mut stale_rx) = mpsc::unbounded_channel::<Vec<StaleUdpFlows>>();
    tokio::spawn(async move {
        let mut filter = Some(filter);
        loop {
            tokio::select! {
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
                        Err(e) => log_error("replacing the nftables table", &e, &metrics),
                    }
                }
                batch = stale_rx.recv() => {
                    let Some(mut batch) = batch else { break };
                    while let Ok(more) = stale_rx.try_recv() {
                        batch.extend(more);
                    }
                    let current = filter.take().unwrap_or_default();
                    let Some((current, result)) = blocking(current, move |f| f.forget_udp_flows(&batch)).await else {
                        continue;
                    };
                    filter = Some(current);
                    match result {
                        Ok(deleted) => tracing::debug!(deleted, "stale UDP conntrack entries deleted"),
                        Err(e) => log_error("deleting stale UDP conntrack entries", &e, &metrics),
                    }
                }
            }
        }
    });
    FirewallHandle { rulesets, stale }
}
