//! Failures the kernel gives one Service are that Service's: retried on
//! their own with backoff, logged at a limited rate, while every other
//! Service keeps syncing incrementally.
//!
//! kube-proxy's IPVS proxier does the same within a sync: a virtual server
//! the kernel refuses is logged ("Failed to sync service") and the sync goes
//! on (`pkg/proxy/ipvs/proxier.go` `syncProxyRules`), and its health only
//! follows whether syncs complete. A Service annotated with a scheduler the
//! kernel lacks must not degrade the node.
//!
//! Bounds: one entry per Service or stream-services entry of the desired
//! state that failed on its last sync; entries of owners that left the
//! desired state are dropped at every sync.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube_ipvs_controller::{Changed, Intent, Op, Owner};
use kube_ipvs_netlink::Operation;
use tokio::time::Instant;

use crate::dataplane::DataplaneError;
use crate::error::Chain;

/// The first retry of a failing owner; each next one waits twice as long,
/// up to the resync period.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// At most one log line per failing owner in this time.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// `ENODEV`: the dummy interface is gone; only a full resync recreates it.
const ENODEV: i32 = 19;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;

/// Whether only a full resync can fix `failure`: the dummy interface is
/// gone, or the kernel holds other than what the cached dump says (an
/// object to create exists, one to change is missing), so a retry from the
/// cache would fail the same way. A new virtual server refused with ENOENT
/// lacks its scheduler: the cache is right, the owner retries alone.
fn needs_full_resync(failure: &DataplaneError) -> bool {
    let DataplaneError::Operation { op, .. } = failure else {
        return true;
    };
    match failure.errno() {
        Some(ENODEV | EEXIST) => true,
        Some(ENOENT) => !matches!(
            **op,
            Op::Ipvs(Operation::NewService(_) | Operation::SetService(_))
        ),
        _ => false,
    }
}

/// Which owners a sync programmed.
pub(crate) enum Covered<'a> {
    /// A full sync: every owner of the desired state.
    All,
    /// An incremental sync of these owners.
    Owners(&'a [Owner]),
}

#[derive(Debug)]
struct Failing {
    failures: u32,
    /// When it is retried; `None` while a retry is pending or running.
    retry_at: Option<Instant>,
    logged_at: Option<Instant>,
    /// Failures since the last log line.
    unlogged: u32,
}

/// The owners whose operations failed, and when each is retried.
#[derive(Debug)]
pub(crate) struct Retries {
    owners: HashMap<Owner, Failing>,
    /// Consecutive syncs with failures no owner explains.
    unowned: u32,
    max: Duration,
}

impl Retries {
    /// Retries back off up to `max` (the resync period, which retries
    /// everything anyway).
    pub(crate) fn new(max: Duration) -> Self {
        Retries {
            owners: HashMap::new(),
            unowned: 0,
            max: max.max(FIRST_RETRY),
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        FIRST_RETRY
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.max)
    }

    /// Records a sync's failures. Owners it covered that did not fail are
    /// healed; failing owners are scheduled for a retry and logged (at most
    /// once per [`LOG_INTERVAL`]). Returns when a full resync should run
    /// for failures no owner's retry can fix (removing what nobody wants, a
    /// gone dummy interface, a stale cache, the set-up's repair).
    pub(crate) fn record(
        &mut self,
        covered: Covered<'_>,
        failures: &[Arc<DataplaneError>],
        intent: &Intent,
    ) -> Option<Instant> {
        let now = Instant::now();
        let mut failed: HashMap<Owner, &DataplaneError> = HashMap::new();
        let mut unowned: Option<&DataplaneError> = None;
        for failure in failures {
            let owners = match &**failure {
                DataplaneError::Operation { op, .. } => intent.owners_of(op),
                _ => Vec::new(),
            };
            if owners.is_empty() || needs_full_resync(failure) {
                unowned.get_or_insert(failure);
            }
            for owner in owners {
                failed.entry(owner).or_insert(failure);
            }
        }
        let full = matches!(covered, Covered::All);
        match covered {
            Covered::All => self.owners.retain(|o, _| failed.contains_key(o)),
            Covered::Owners(owners) => {
                for owner in owners {
                    if !failed.contains_key(owner) {
                        self.owners.remove(owner);
                    }
                }
            }
        }
        self.owners.retain(|o, _| intent.services().contains_key(o));
        for (owner, error) in failed {
            let failures = self.owners.get(&owner).map_or(0, |f| f.failures) + 1;
            let retry_at = Some(now + self.backoff(failures));
            let entry = self.owners.entry(owner.clone()).or_insert(Failing {
                failures: 0,
                retry_at: None,
                logged_at: None,
                unlogged: 0,
            });
            entry.failures = failures;
            entry.retry_at = retry_at;
            entry.unlogged += 1;
            if entry
                .logged_at
                .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL)
            {
                tracing::warn!(
                    object = %owner,
                    failures = entry.failures,
                    since_last_log = entry.unlogged,
                    error = %Chain(error),
                    "the kernel refused an operation of this object; retried with backoff, other Services go on"
                );
                entry.logged_at = Some(now);
                entry.unlogged = 0;
            }
        }
        match unowned {
            None => {
                // Only a full resync retries these: only its success ends
                // their backoff.
                if full {
                    self.unowned = 0;
                }
                None
            }
            Some(error) => {
                self.unowned += 1;
                tracing::warn!(error = %Chain(error), failures = self.unowned, "a kernel operation failed; a full resync retries it");
                Some(now + self.backoff(self.unowned))
            }
        }
    }

    /// When the next owner is due for a retry.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.owners.values().filter_map(|f| f.retry_at).min()
    }

    /// The owners due for a retry now, as a change to sync.
    pub(crate) fn take_due(&mut self) -> Changed {
        let now = Instant::now();
        let mut changed = Changed::default();
        for (owner, failing) in &mut self.owners {
            if failing.retry_at.is_some_and(|at| at <= now) {
                failing.retry_at = None;
                match owner {
                    Owner::Service(s) => {
                        changed.services.insert(s.clone());
                    }
                    Owner::Stream(e) => {
                        changed.streams.insert(e.clone());
                    }
                }
            }
        }
        changed
    }

    /// How many owners are failing.
    pub(crate) fn len(&self) -> usize {
        self.owners.len()
    }
}
