//! When the loop syncs: changes no sooner than `--ipvs-min-sync-period`
//! after the previous sync, a full resync every `--ipvs-sync-period`, drain
//! checks while real servers drain, and retries with backoff after a failure.

use std::time::Duration;

use tokio::time::Instant;

/// Timing of the loop.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// `--ipvs-min-sync-period`: the shortest time between two syncs.
    pub min_sync_period: Duration,
    /// `--ipvs-sync-period`: how often everything is dumped and repaired.
    pub sync_period: Duration,
    /// How often draining real servers have their connections checked.
    pub drain_check_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            drain_check_period: Duration::from_secs(2),
        }
    }
}

/// The loop's clock: what was synced when, and what is due next.
#[derive(Debug)]
pub(crate) struct Schedule {
    timing: Timing,
    /// Whether a full sync has completed (the first one programs everything).
    synced_once: bool,
    last_sync: Option<Instant>,
    /// The last drain check, or the last sync if later: a sync refreshes
    /// the draining real servers too.
    last_drain_check: Option<Instant>,
    next_resync: Option<Instant>,
    failures_in_a_row: u32,
    retry_at: Option<Instant>,
}

impl Schedule {
    pub(crate) fn new(timing: Timing) -> Self {
        Schedule {
            timing,
            synced_once: false,
            last_sync: None,
            last_drain_check: None,
            next_resync: None,
            failures_in_a_row: 0,
            retry_at: None,
        }
    }

    pub(crate) fn synced_once(&self) -> bool {
        self.synced_once
    }

    /// When pending changes are due: at once, but not sooner than
    /// `min_sync_period` after the previous sync. Before the first full
    /// picture nothing is synced; after a failure the retry (a full sync)
    /// covers pending changes.
    pub(crate) fn change_sync_at(&self, initialized: bool, pending: bool) -> Option<Instant> {
        if !initialized || self.failures_in_a_row > 0 {
            return None;
        }
        if !self.synced_once {
            return Some(Instant::now());
        }
        if !pending {
            return None;
        }
        let earliest = self
            .last_sync
            .map_or_else(Instant::now, |t| t + self.timing.min_sync_period);
        Some(earliest.max(Instant::now()))
    }

    /// Whether the next full sync is a retry after a failure (and maps the
    /// desired state whole again) rather than the periodic resync.
    pub(crate) fn retrying(&self) -> bool {
        self.retry_at.is_some()
    }

    /// When the next full sync is due: a retry, or the periodic resync.
    pub(crate) fn resync_at(&self) -> Option<Instant> {
        self.retry_at.or(self.next_resync)
    }

    /// When draining real servers are checked next, if any drain.
    pub(crate) fn drain_check_at(&self, draining: bool) -> Option<Instant> {
        draining.then(|| {
            self.last_drain_check.unwrap_or_else(Instant::now) + self.timing.drain_check_period
        })
    }

    /// Records that a sync of any kind finished now.
    pub(crate) fn finished(&mut self) {
        self.last_sync = Some(Instant::now());
        self.last_drain_check = self.last_sync;
    }

    /// Records a drain check that finished now. It programs no change, so
    /// the next change does not wait `min_sync_period` for it.
    pub(crate) fn drain_checked(&mut self) {
        self.last_drain_check = Some(Instant::now());
    }

    /// Records a full sync that reached the kernel (`dumped`: its dump
    /// succeeded); the next periodic resync is due a period from now.
    pub(crate) fn full_sync_done(&mut self, dumped: bool) {
        if dumped {
            self.synced_once = true;
        }
        self.next_resync = Some(Instant::now() + self.timing.sync_period);
    }

    /// A periodic or retried full sync is starting.
    pub(crate) fn resync_started(&mut self) {
        self.retry_at = None;
    }

    /// Records a full sync that reached the kernel: whatever single
    /// operations failed (their owners retry on their own), the loop is no
    /// longer failing.
    pub(crate) fn succeeded(&mut self) {
        self.failures_in_a_row = 0;
    }

    /// Asks for a full resync no later than `at` (failures only a full
    /// resync fixes); incremental syncs go on meanwhile.
    pub(crate) fn resync_by(&mut self, at: Instant) {
        self.retry_at = Some(self.retry_at.map_or(at, |r| r.min(at)));
    }

    /// Records a sync that could not reach the kernel (its dump failed) and
    /// schedules its retry; until one succeeds, every sync is a full one.
    pub(crate) fn failed(&mut self) {
        self.failures_in_a_row += 1;
        self.retry_at = Some(Instant::now() + self.backoff());
    }

    /// After a failure every sync is a retry, with backoff, until one succeeds.
    pub(crate) fn ensure_retry(&mut self) {
        if self.retry_at.is_none() && self.failures_in_a_row > 0 {
            self.retry_at = Some(Instant::now() + self.backoff());
        }
    }

    fn backoff(&self) -> Duration {
        let exp = self.failures_in_a_row.min(16);
        Duration::from_secs(1u64 << exp.saturating_sub(1)).min(self.timing.sync_period)
    }
}
