//! Runs the packet filter beside the reconcile loop.
//!
//! Writing the nftables table runs `nft` and can take a while at scale;
//! the UDP conntrack clean-up dumps the conntrack table. Neither may hold up
//! IPVS programming, so the loop hands the latest ruleset and UDP frontends
//! to this worker and goes on. Both coalesce: only the newest is applied.
//!
//! The worker keeps the ruleset it last wrote, which the kernel is taken to
//! hold: a new ruleset is sent as the set elements it adds and deletes. The
//! whole table is written at start-up, when the structure changes, after a
//! failed `nft` run (the kernel may then hold anything) and when a full
//! resync's check finds the kernel's table differing from what was written
//! (`nft flush ruleset`, an element deleted by hand). A failed write, and a
//! failed UDP clean-up, is retried with backoff until one succeeds; the UDP
//! frontends gone since the last success are cleaned then.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube_ipvs_controller::{UdpFrontend, UdpFrontends};
use tokio::sync::watch;
use tokio::time::Instant;

use super::diff::{diff, TableChange};
use super::{FirewallError, PacketFilter, Ruleset, TableWrite, WriteKind};
use crate::error::Chain;
use crate::metrics::Metrics;

/// The first retry of a failed write or UDP clean-up; each next one waits
/// twice as long, up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two tries of a failed write or UDP clean-up.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The loop's handle on the worker.
#[derive(Clone, Debug)]
pub struct FirewallHandle {
    rulesets: watch::Sender<Option<Arc<Ruleset>>>,
    check: watch::Sender<u64>,
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

    /// Asks for the kernel's table and sysctls to be compared with what was
    /// written, and repaired where they differ.
    pub fn check_table(&self) {
        self.check.send_modify(|n| *n += 1);
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

/// When a failed operation is tried again.
#[derive(Default)]
struct Backoff {
    retry_at: Option<Instant>,
    failures: u32,
}

impl Backoff {
    fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    fn failed(&mut self) {
        let wait = FIRST_RETRY
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_RETRY);
        self.failures += 1;
        self.retry_at = Some(Instant::now() + wait);
    }
}

/// The UDP clean-up's progress: what the last success cleaned against.
#[derive(Default)]
struct UdpProgress {
    cleaned: Option<Arc<UdpFrontends>>,
    backoff: Backoff,
}

impl UdpProgress {
    /// The frontends gone since the last success.
    fn gone(&self, frontends: &UdpFrontends) -> BTreeSet<UdpFrontend> {
        self.cleaned
            .as_deref()
            .map(|c| c.gone_in(frontends))
            .unwrap_or_default()
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The worker's state between requests.
struct Worker<F> {
    /// `None` only while a blocking call holds it.
    filter: Option<F>,
    metrics: Metrics,
    /// The ruleset last written with success, which the kernel is taken to
    /// hold; `None` at start-up and after a failure or a drift, when the
    /// next write is whole.
    held: Option<Arc<Ruleset>>,
    table_backoff: Backoff,
    udp: UdpProgress,
}

impl<F: PacketFilter + Default> Worker<F> {
    /// Runs `f` on the filter on a blocking thread; `None` when the task
    /// died, and the filter (and what the kernel holds) with it.
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut F) -> T + Send + 'static,
    ) -> Option<T> {
        let current = self.filter.take().unwrap_or_default();
        match blocking(current, f).await {
            Some((current, out)) => {
                self.filter = Some(current);
                Some(out)
            }
            None => {
                self.held = None;
                None
            }
        }
    }

    /// Makes the table hold `wanted`: the element changes from the ruleset
    /// held, or the whole table when none is known to be held.
    async fn write(&mut self, wanted: Option<Arc<Ruleset>>) {
        let Some(wanted) = wanted else { return };
        let held = self.held.clone();
        let target = wanted.clone();
        let result = self
            .run(move |f| match held.map(|held| diff(&held, &target)) {
                Some(TableChange::None) => Ok(None),
                Some(TableChange::Elements(changes)) => f.update_elements(&changes).map(Some),
                Some(TableChange::Structure) | None => f.write_table(&target).map(Some),
            })
            .await;
        match result {
            Some(Ok(written)) => {
                self.held = Some(wanted);
                self.table_backoff.succeeded();
                if let Some(written) = written {
                    log_write(&written);
                }
            }
            Some(Err(e)) => {
                self.held = None;
                self.table_backoff.failed();
                log_error("writing the nftables table", "nftables", &e, &self.metrics);
            }
            None => self.table_backoff.failed(),
        }
    }

    /// Compares the kernel's table with the ruleset held, and writes it
    /// whole when they differ.
    async fn check(&mut self, wanted: Option<Arc<Ruleset>>) {
        // Without a ruleset held, a whole write is pending or retried.
        let Some(held) = self.held.clone() else {
            return;
        };
        let Some(result) = self.run(move |f| f.check_table(&held)).await else {
            return;
        };
        match result {
            Ok(check) => {
                for sysctl in check.sysctls {
                    self.metrics.repairs.with_label_values(&["sysctl"]).inc();
                    tracing::warn!(sysctl, "a sysctl the rules need had changed; set again");
                }
                let Some(drift) = check.drift else { return };
                self.metrics
                    .repairs
                    .with_label_values(&["nftables_table"])
                    .inc();
                tracing::warn!(
                    ?drift,
                    "the nftables table differs from what was written; writing it whole"
                );
            }
            Err(e) => log_error("checking the nftables table", "nftables", &e, &self.metrics),
        }
        self.held = None;
        self.write(wanted).await;
    }

    /// Cleans the stale UDP flows of `frontends`.
    async fn clean_udp(&mut self, frontends: Option<Arc<UdpFrontends>>) {
        let Some(frontends) = frontends else { return };
        let gone = self.udp.gone(&frontends);
        let target = frontends.clone();
        let result = self
            .run(move |f| f.reconcile_udp_flows(&target, &gone))
            .await;
        match result {
            Some(Ok(deleted)) => {
                if deleted > 0 {
                    tracing::info!(deleted, "stale UDP conntrack entries deleted");
                }
                self.udp.cleaned = Some(frontends);
                self.udp.backoff.succeeded();
            }
            Some(Err(e)) => {
                log_error(
                    "cleaning stale UDP conntrack entries",
                    "udp_conntrack",
                    &e,
                    &self.metrics,
                );
                self.udp.backoff.failed();
            }
            None => self.udp.backoff.failed(),
        }
    }

    async fn check_forward(&mut self) {
        if let Some(Err(e)) = self.run(|f| f.reconcile_forward()).await {
            log_error(
                "accepting IPVS replies in iptables' FORWARD chain",
                "forward_rule",
                &e,
                &self.metrics,
            );
        }
    }
}

fn log_write(written: &TableWrite) {
    let duration_ms = written.duration.as_secs_f64() * 1000.0;
    match written.kind {
        WriteKind::Unchanged => {}
        WriteKind::Table { elements } => tracing::info!(
            elements,
            bytes = written.bytes,
            duration_ms,
            "nftables table written whole"
        ),
        WriteKind::Elements { added, deleted } => tracing::debug!(
            added,
            deleted,
            bytes = written.bytes,
            duration_ms,
            "nftables set elements updated"
        ),
    }
}

/// Starts the worker over `filter` on the tokio runtime; it stops when the
/// handle is dropped.
pub fn spawn<F: PacketFilter + Default>(filter: F, metrics: Metrics) -> FirewallHandle {
    let (rulesets, mut rulesets_rx) = watch::channel::<Option<Arc<Ruleset>>>(None);
    let (check, mut check_rx) = watch::channel::<u64>(0);
    let (udp, mut udp_rx) = watch::channel::<Option<Arc<UdpFrontends>>>(None);
    let (forward, mut forward_rx) = watch::channel::<u64>(0);
    tokio::spawn(async move {
        let mut worker = Worker {
            filter: Some(filter),
            metrics,
            held: None,
            table_backoff: Backoff::default(),
            udp: UdpProgress::default(),
        };
        loop {
            tokio::select! {
                // A new ruleset before a check: the check a full resync
                // asks for then compares the kernel with that sync's table.
                biased;
                changed = rulesets_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let wanted = rulesets_rx.borrow_and_update().clone();
                    // While a failed write waits for its retry, the retry
                    // takes the newest ruleset.
                    if worker.table_backoff.retry_at.is_none() {
                        worker.write(wanted).await;
                    }
                }
                changed = check_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    check_rx.borrow_and_update();
                    let wanted = rulesets_rx.borrow().clone();
                    worker.check(wanted).await;
                }
                changed = udp_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let frontends = udp_rx.borrow_and_update().clone();
                    worker.clean_udp(frontends).await;
                }
                changed = forward_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    forward_rx.borrow_and_update();
                    worker.check_forward().await;
                }
                () = sleep_until_opt(worker.table_backoff.retry_at) => {
                    let wanted = rulesets_rx.borrow().clone();
                    worker.write(wanted).await;
                }
                () = sleep_until_opt(worker.udp.backoff.retry_at) => {
                    let frontends = udp_rx.borrow().clone();
                    worker.clean_udp(frontends).await;
                }
            }
        }
    });
    FirewallHandle {
        rulesets,
        check,
        udp,
        forward,
    }
}
