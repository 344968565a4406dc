//! The seam between the loop and the node's packet plumbing, as
//! [`crate::dataplane::Dataplane`] is for IPVS: one small trait, a kernel
//! implementation (`nft` and ctnetlink) and an in-memory one for tests.
//!
//! Blocking: the kernel implementation runs `nft` and waits for it; the
//! worker calls it through `tokio::task::spawn_blocking`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube_ipvs_controller::{UdpFrontend, UdpFrontends};
use kube_ipvs_netlink::AddressFamily;
use tokio::sync::watch;

use super::{Conntrack, Firewall, FirewallError, Flow, Ruleset, SyncReport};

/// `IPPROTO_UDP`.
const UDP: u8 = 17;

/// Whether conntrack entry `flow` is a stale UDP flow: to a frontend whose
/// serving endpoints did not answer it, or to a frontend that is gone.
pub fn stale_udp(flow: &Flow, frontends: &UdpFrontends, gone: &BTreeSet<UdpFrontend>) -> bool {
    if flow.original.protocol != UDP {
        return false;
    }
    let destination = flow.original.destination;
    frontends.stale(destination.ip(), destination.port(), flow.reply.source.ip())
        || gone.contains(&UdpFrontend::Address(destination.ip(), destination.port()))
        || gone.contains(&UdpFrontend::NodePort(destination.port()))
}

/// What the loop needs from the node's packet filter.
pub trait PacketFilter: Send + 'static {
    /// Makes the table hold `ruleset`, in one transaction (a no-op when it
    /// already does).
    fn apply(&mut self, ruleset: &Ruleset) -> Result<SyncReport, FirewallError>;

    /// Deletes the conntrack entries of stale UDP flows ([`stale_udp`]):
    /// flows to `frontends` not answered by their serving endpoints, and
    /// flows to frontends `gone`. Returns how many entries went.
    fn reconcile_udp_flows(
        &mut self,
        frontends: &UdpFrontends,
        gone: &BTreeSet<UdpFrontend>,
    ) -> Result<usize, FirewallError>;

    /// Makes the rule that accepts IPVS replies in iptables' `FORWARD`
    /// chain follow that chain's policy ([`super::forward`]).
    fn reconcile_forward(&mut self) -> Result<(), FirewallError>;
}

/// The kernel's `inet kube-ipvs` table and conntrack.
#[derive(Default)]
pub struct KernelPacketFilter {
    table: Firewall,
    /// Opened on first use, and again after a failure.
    conntrack: Option<Conntrack>,
    /// What the iptables `FORWARD` chains needed at the last look.
    forward: Vec<super::forward::ForwardState>,
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

    fn reconcile_udp_flows(
        &mut self,
        frontends: &UdpFrontends,
        gone: &BTreeSet<UdpFrontend>,
    ) -> Result<usize, FirewallError> {
        if frontends.0.is_empty() && gone.is_empty() {
            return Ok(0);
        }
        let mut conntrack = match self.conntrack.take() {
            Some(ct) => ct,
            None => Conntrack::open().map_err(FirewallError::Conntrack)?,
        };
        let mut deleted = 0;
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            deleted += conntrack
                .delete_matching(family, |flow| stale_udp(flow, frontends, gone))
                .map_err(FirewallError::Conntrack)?;
        }
        self.conntrack = Some(conntrack);
        Ok(deleted)
    }

    fn reconcile_forward(&mut self) -> Result<(), FirewallError> {
        let states = super::forward::reconcile_forward()?;
        if states != self.forward {
            tracing::info!(
                ?states,
                "iptables FORWARD chains (iptables-nft v4, v6, legacy v4, v6)"
            );
            self.forward = states;
        }
        Ok(())
    }
}

/// What a [`MemoryPacketFilter`] was asked to do; tests read it.
#[derive(Debug, Default)]
pub struct MemoryFilterState {
    /// Every ruleset applied, in order (unchanged ones are not applied again).
    pub applied: Vec<Ruleset>,
    /// Every UDP reconciliation asked for, in order: the frontends and the
    /// frontends gone.
    pub reconciled: Vec<(UdpFrontends, BTreeSet<UdpFrontend>)>,
    /// Reconciliations that will fail, the next ones asked for.
    pub fail_udp: usize,
    /// How many times the `FORWARD` rule was reconciled.
    pub forward_checks: usize,
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

    fn reconcile_udp_flows(
        &mut self,
        frontends: &UdpFrontends,
        gone: &BTreeSet<UdpFrontend>,
    ) -> Result<usize, FirewallError> {
        let failed = {
            let mut state = self.state();
            state.reconciled.push((frontends.clone(), gone.clone()));
            let failed = state.fail_udp > 0;
            state.fail_udp = state.fail_udp.saturating_sub(1);
            failed
        };
        self.called();
        if failed {
            return Err(FirewallError::Conntrack(
                kube_ipvs_netlink::Error::DumpConntrack(std::io::Error::other("injected failure")),
            ));
        }
        Ok(0)
    }

    fn reconcile_forward(&mut self) -> Result<(), FirewallError> {
        self.state().forward_checks += 1;
        self.called();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use kube_ipvs_controller::{UdpFrontend, UdpFrontends};

    use super::{stale_udp, Flow};
    use crate::firewall::FlowTuple;

    fn flow(protocol: u8, to: &str, reply_from: &str) -> Flow {
        let to: SocketAddr = to.parse().unwrap();
        let from: SocketAddr = reply_from.parse().unwrap();
        let client: SocketAddr = "192.168.100.2:40000".parse().unwrap();
        Flow {
            original: FlowTuple {
                protocol,
                source: client,
                destination: to,
            },
            reply: FlowTuple {
                protocol,
                source: from,
                destination: client,
            },
            zone: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn stale_udp_flows_by_serving_endpoint_and_gone_frontend() {
        let frontends = UdpFrontends(
            [(
                UdpFrontend::Address(ip("10.96.0.10"), 53),
                [ip("10.244.1.2")].into(),
            )]
            .into(),
        );
        let none = Default::default();
        assert!(!stale_udp(
            &flow(17, "10.96.0.10:53", "10.244.1.2:5353"),
            &frontends,
            &none
        ));
        assert!(stale_udp(
            &flow(17, "10.96.0.10:53", "10.244.2.2:5353"),
            &frontends,
            &none
        ));
        assert!(!stale_udp(
            &flow(6, "10.96.0.10:53", "10.244.2.2:5353"),
            &frontends,
            &none
        ));
        assert!(!stale_udp(
            &flow(17, "10.96.0.11:53", "10.244.2.2:5353"),
            &frontends,
            &none
        ));
        let gone = [UdpFrontend::NodePort(30053)].into();
        assert!(stale_udp(
            &flow(17, "192.168.0.10:30053", "10.244.1.2:5353"),
            &frontends,
            &gone
        ));
    }
}
