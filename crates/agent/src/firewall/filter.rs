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

use super::diff::drift;
use super::{
    Conntrack, ElementChanges, Firewall, FirewallError, Flow, Ruleset, TableCheck, TableWrite,
    WriteKind, SYSCTLS,
};

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
    /// Replaces the table with `ruleset`, in one transaction, and sets the
    /// sysctls its rules depend on.
    fn write_table(&mut self, ruleset: &Ruleset) -> Result<TableWrite, FirewallError>;

    /// Adds and deletes the set elements of `changes`, in one transaction.
    fn update_elements(&mut self, changes: &ElementChanges) -> Result<TableWrite, FirewallError>;

    /// Compares the table the kernel holds with `expected`, the ruleset
    /// last written, and writes the sysctls that differ.
    fn check_table(&mut self, expected: &Ruleset) -> Result<TableCheck, FirewallError>;

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
    fn write_table(&mut self, ruleset: &Ruleset) -> Result<TableWrite, FirewallError> {
        self.table.write(ruleset)
    }

    fn update_elements(&mut self, changes: &ElementChanges) -> Result<TableWrite, FirewallError> {
        self.table.update(changes)
    }

    fn check_table(&mut self, expected: &Ruleset) -> Result<TableCheck, FirewallError> {
        self.table.check(expected)
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

/// One write a [`MemoryPacketFilter`] was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryWrite {
    /// The whole table.
    Table(Box<Ruleset>),
    /// Set elements added and deleted.
    Elements(Box<ElementChanges>),
}

/// What a [`MemoryPacketFilter`] was asked to do, and the table it holds as
/// the kernel would; tests read and change it.
#[derive(Debug, Default)]
pub struct MemoryFilterState {
    /// The table "in the kernel": `None` when there is none. A test
    /// changes it to stand for someone else's change (`nft flush ruleset`).
    pub table: Option<Ruleset>,
    /// Every ruleset the table came to hold, in order.
    pub applied: Vec<Ruleset>,
    /// Every write asked for, in order, failed ones included.
    pub writes: Vec<MemoryWrite>,
    /// Writes that will fail, the next ones asked for.
    pub fail_nft: usize,
    /// How many times the table was checked.
    pub checks: usize,
    /// Whether the sysctls differ from what the rules need, until the next
    /// check or whole write sets them.
    pub sysctls_differ: bool,
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
    fn write_table(&mut self, ruleset: &Ruleset) -> Result<TableWrite, FirewallError> {
        let result = {
            let mut state = self.state();
            state
                .writes
                .push(MemoryWrite::Table(Box::new(ruleset.clone())));
            if take_failure(&mut state) {
                Err(injected(ruleset.element_count(), 0))
            } else {
                state.sysctls_differ = false;
                state.table = Some(ruleset.clone());
                state.applied.push(ruleset.clone());
                Ok(TableWrite {
                    kind: WriteKind::Table {
                        elements: ruleset.element_count(),
                    },
                    bytes: 0,
                    duration: Duration::ZERO,
                })
            }
        };
        self.called();
        result
    }

    fn update_elements(&mut self, changes: &ElementChanges) -> Result<TableWrite, FirewallError> {
        let result = {
            let mut state = self.state();
            state
                .writes
                .push(MemoryWrite::Elements(Box::new(changes.clone())));
            let mut table = state.table.clone();
            // As `nft`: no table, or an element to delete missing, fails.
            let applies = table
                .as_mut()
                .is_some_and(|t| t.apply_changes(changes).is_ok());
            if take_failure(&mut state) || !applies {
                Err(injected(changes.added(), changes.deleted()))
            } else {
                state.table = table.clone();
                state.applied.extend(table);
                Ok(TableWrite {
                    kind: WriteKind::Elements {
                        added: changes.added(),
                        deleted: changes.deleted(),
                    },
                    bytes: 0,
                    duration: Duration::ZERO,
                })
            }
        };
        self.called();
        result
    }

    fn check_table(&mut self, expected: &Ruleset) -> Result<TableCheck, FirewallError> {
        let check = {
            let mut state = self.state();
            state.checks += 1;
            let sysctls = if std::mem::take(&mut state.sysctls_differ) {
                SYSCTLS.iter().map(|(name, _)| *name).collect()
            } else {
                Vec::new()
            };
            TableCheck {
                drift: match &state.table {
                    None => Some(super::Drift::Missing),
                    Some(table) => drift(table, expected),
                },
                sysctls,
            }
        };
        self.called();
        Ok(check)
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

fn take_failure(state: &mut MemoryFilterState) -> bool {
    let fail = state.fail_nft > 0;
    state.fail_nft = state.fail_nft.saturating_sub(1);
    fail
}

fn injected(added: usize, deleted: usize) -> FirewallError {
    FirewallError::UpdateElements {
        added,
        deleted,
        detail: "injected failure".into(),
        source: Box::new(nftables::helper::NftablesError::NftFailed {
            program: "nft".into(),
            hint: "applying ruleset".into(),
            stdout: String::new(),
            stderr: "injected failure".into(),
        }),
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
