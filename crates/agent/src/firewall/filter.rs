//! The seam between the loop and the node's packet plumbing, as
//! [`crate::dataplane::Dataplane`] is for IPVS: one small trait, a kernel
//! implementation (`nft` and ctnetlink) and an in-memory one for tests.
//!
//! Blocking: the kernel implementation runs `nft` and waits for it; the
//! worker calls it through `tokio::task::spawn_blocking`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::{Conntrack, Firewall, FirewallError, Ruleset, StaleUdpFlows, SyncReport};

/// What the loop needs from the node's packet filter.
pub trait PacketFilter: Send + 'static {
    /// Makes the table hold `ruleset`, in one transaction (a no-op when it
    /// already does).
    fn apply(&mut self, ruleset: &Ruleset) -> Result<SyncReport, FirewallError>;

    /// Deletes the conntrack entries of the given UDP flows; returns how many
    /// entries went.
    fn forget_udp_flows(&mut self, stale: &[StaleUdpFlows]) -> Result<usize, FirewallError>;
}

/// The kernel's `inet kube-ipvs` table and conntrack.
#[derive(Default)]
pub struct KernelPacketFilter {
    table: Firewall,
    /// Opened on first use, and again after a failure.
    conntrack: Option<Conntrack>,
}

impl KernelPacketFilter {
    /// A filter that has applied nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PacketFilter for KernelPacketFilter {
    fn apply(&mut self, ruleset: &Ruleset) -> Result<SyncReport, FirewallError> {
        self.table.sync(ruleset)
    }

    fn forget_udp_flows(&mut self, stale: &[StaleUdpFlows]) -> Result<usize, FirewallError> {
        let mut conntrack = match self.conntrack.take() {
            Some(ct) => ct,
            None => Conntrack::open().map_err(FirewallError::Conntrack)?,
        };
        let deleted = conntrack
            .delete_stale(stale)
            .map_err(FirewallError::Conntrack)?;
        self.conntrack = Some(conntrack);
        Ok(deleted)
    }
}

/// What a [`MemoryPacketFilter`] was asked to do; tests read it.
#[derive(Debug, Default)]
pub struct MemoryFilterState {
    /// Every ruleset applied, in order (unchanged ones are not applied again).
    pub applied: Vec<Ruleset>,
    /// Every UDP flow it was asked to forget, in order.
    pub forgotten: Vec<StaleUdpFlows>,
}

/// A [`PacketFilter`] that records instead of touching the kernel.
#[derive(Clone, Debug, Default)]
pub struct MemoryPacketFilter {
    state: Arc<Mutex<MemoryFilterState>>,
    /// Counts the calls, so a test awaits one instead of polling.
    calls: Arc<watch::Sender<usize>>,
}

impl MemoryPacketFilter {
    /// A filter that has applied nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What it was asked to do.
    pub fn state(&self) -> MutexGuard<'_, MemoryFilterState> {
        // A test that panicked while holding the lock has failed already.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of calls so far, changing with each call.
    pub fn calls(&self) -> watch::Receiver<usize> {
        self.calls.subscribe()
    }

    fn called(&self) {
        self.calls.send_modify(|n| *n += 1);
    }
}

impl PacketFilter for MemoryPacketFilter {
    fn apply(&mut self, ruleset: &Ruleset) -> Result<SyncReport, FirewallError> {
        let applied = {
            let mut state = self.state();
            let applied = state.applied.last() != Some(ruleset);
            if applied {
                state.applied.push(ruleset.clone());
            }
            applied
        };
        self.called();
        Ok(SyncReport {
            elements: ruleset.element_count(),
            applied,
            duration: Duration::ZERO,
        })
    }

    fn forget_udp_flows(&mut self, stale: &[StaleUdpFlows]) -> Result<usize, FirewallError> {
        self.state().forgotten.extend_from_slice(stale);
        self.called();
        Ok(stale.len())
    }
}
