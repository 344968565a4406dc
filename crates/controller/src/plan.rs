//! The planner: the smallest list of kernel operations that turns what the
//! kernel holds into what the cluster wants, for everything or for the part a
//! change touched.
//!
//! It is a pure function of the observed state, the desired state, the
//! ownership rules and the draining real servers; time comes in as an
//! argument.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use kube_ipvs_model::{Operation, Protocol, RealServer, RealServerKey, VirtualServerKey};

use crate::intent::{Intent, Scope};
use crate::observed::{Observed, ObservedVirtualServer};
use crate::op::Op;
use crate::state::DesiredVirtualServer;

/// What the agent may change in the kernel, and how it drains real servers.
#[derive(Clone, Debug)]
pub struct PlanConfig {
    /// `--service-node-port-range`: virtual servers on node addresses with
    /// these ports are ours.
    pub node_port_range: RangeInclusive<u16>,
    /// `--ipvs-exclude-cidrs`: never deleted, whoever made them.
    pub exclude_cidrs: Vec<IpNetwork>,
    /// `--ipvs-graceful-period`: how long a TCP real server drains at weight 0
    /// before it is deleted with connections still open.
    pub graceful_period: Duration,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            node_port_range: 30000..=32767,
            exclude_cidrs: Vec::new(),
            graceful_period: Duration::from_secs(30),
        }
    }
}

impl PlanConfig {
    fn excluded(&self, address: IpAddr) -> bool {
        self.exclude_cidrs.iter().any(|n| n.contains(address))
    }

    /// Whether the agent owns a virtual server in the kernel: its address is
    /// bound on the dummy interface (or about to be), the agent wanted this
    /// very key before (an external IP that is the node's), or it is on a node
    /// address (as the desired state was mapped with) with a port in the
    /// node-port range; never when excluded.
    pub fn owns(&self, key: &VirtualServerKey, bound: &BTreeSet<IpAddr>, wanted: &Intent) -> bool {
        let VirtualServerKey::Inet { address, port, .. } = *key else {
            return false;
        };
        if self.excluded(address) {
            return false;
        }
        bound.contains(&address)
            || wanted.wants_address(address)
            || wanted.released(key)
            || (wanted.node_addresses().contains(&address) && self.node_port_range.contains(&port))
    }
}

/// Which part of the kernel to plan for.
#[derive(Clone, Copy, Debug)]
pub enum Extent<'a> {
    /// Everything: a full resync after a dump.
    All,
    /// Only what a change touched.
    Scope(&'a Scope),
}

/// TCP real servers that left the desired state and are draining at weight 0,
/// with when they started.
pub type Draining = BTreeMap<(VirtualServerKey, RealServerKey), Instant>;

/// The result of planning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The operations, in the order to apply them.
    pub ops: Vec<Op>,
    /// The real servers draining after this plan is applied.
    pub draining: Draining,
}

/// Computes the operations that make the kernel match `intent` within
/// `extent`.
///
/// Ordering: services are created before their destinations, destinations
/// are removed before services, addresses are bound before the services on
/// them appear and unbound after they are gone.
pub fn plan(
    observed: &Observed,
    intent: &Intent,
    extent: Extent<'_>,
    config: &PlanConfig,
    draining: &Draining,
    now: Instant,
) -> Plan {
    // Binds and creations go into one vector, binds first: a cold sync's
    // 100,000 creations are not copied once more to put the binds before
    // them. So addresses are planned first (they do not depend on the
    // virtual servers' operations).
    let mut out = Planner {
        config,
        now,
        old_draining: draining,
        draining: Draining::new(),
        ops: Vec::new(),
        deletes: Vec::new(),
        unbinds: Vec::new(),
    };

    match extent {
        Extent::All => {
            let addresses: BTreeSet<&IpAddr> = observed
                .addresses
                .iter()
                .chain(intent.addresses())
                .collect();
            for address in addresses {
                out.address(*address, observed, intent);
            }
            let keys: BTreeSet<&VirtualServerKey> = observed
                .virtual_servers
                .keys()
                .chain(intent.keys())
                .collect();
            for key in keys {
                out.virtual_server(key, observed, intent);
            }
            // Drains of real servers no longer in the kernel are over.
        }
        Extent::Scope(scope) => {
            // A draining entry outside the scope stays as it was.
            for (k, since) in draining {
                if !scope.keys.contains(&k.0)
                    && !scope.addresses.iter().any(|a| k.0.address() == Some(*a))
                {
                    out.draining.insert(*k, *since);
                }
            }
            let mut keys: BTreeSet<VirtualServerKey> = scope.keys.clone();
            // An address going away takes its virtual servers with it.
            for address in &scope.addresses {
                if !intent.wants_address(*address) && observed.addresses.contains(address) {
                    keys.extend(
                        observed
                            .virtual_servers
                            .keys()
                            .filter(|k| k.address() == Some(*address))
                            .copied(),
                    );
                }
            }
            for address in &scope.addresses {
                out.address(*address, observed, intent);
            }
            for key in &keys {
                out.virtual_server(key, observed, intent);
            }
        }
    }

    let Planner {
        mut ops,
        deletes,
        unbinds,
        draining,
        ..
    } = out;
    ops.reserve_exact(deletes.len() + unbinds.len());
    ops.extend(deletes);
    ops.extend(unbinds);
    Plan { ops, draining }
}

struct Planner<'a> {
    config: &'a PlanConfig,
    now: Instant,
    old_draining: &'a Draining,
    draining: Draining,
    /// Binds, then creations and changes.
    ops: Vec<Op>,
    deletes: Vec<Op>,
    unbinds: Vec<Op>,
}

impl Planner<'_> {
    fn virtual_server(&mut self, key: &VirtualServerKey, observed: &Observed, intent: &Intent) {
        let have = observed.virtual_servers.get(key);
        let want = intent.virtual_server(key).map(|(_, vs)| vs);
        match (have, want) {
            (None, None) => {}
            (None, Some(want)) => {
                self.ops
                    .push(Op::Ipvs(Operation::NewService(want.service.clone())));
                for rs in want.real_servers.values() {
                    self.ops.push(Op::Ipvs(Operation::NewDest(*key, *rs)));
                }
            }
            (Some(_), None) => {
                if self.config.owns(key, &observed.addresses, intent) {
                    self.deletes.push(Op::Ipvs(Operation::DelService(*key)));
                }
            }
            (Some(have), Some(want)) => {
                if have.service != want.service {
                    self.ops
                        .push(Op::Ipvs(Operation::SetService(want.service.clone())));
                }
                self.real_servers(key, have, want);
            }
        }
    }

    fn real_servers(
        &mut self,
        key: &VirtualServerKey,
        have: &ObservedVirtualServer,
        want: &DesiredVirtualServer,
    ) {
        for (rs_key, rs) in &want.real_servers {
            match have.real_servers.get(rs_key) {
                None => self.ops.push(Op::Ipvs(Operation::NewDest(*key, *rs))),
                // A real server that was draining and came back gets its
                // weight restored here, as any other changed weight.
                Some(current) if current.server != *rs => {
                    self.ops.push(Op::Ipvs(Operation::SetDest(*key, *rs)))
                }
                Some(_) => {}
            }
        }
        let graceful = matches!(
            key,
            VirtualServerKey::Inet {
                protocol: Protocol::Tcp,
                ..
            }
        );
        for (rs_key, current) in &have.real_servers {
            if want.real_servers.contains_key(rs_key) {
                continue;
            }
            if !graceful {
                self.deletes
                    .push(Op::Ipvs(Operation::DelDest(*key, *rs_key)));
                continue;
            }
            let id = (*key, *rs_key);
            let since = self.old_draining.get(&id).copied();
            let connections =
                current.counters.active_connections + current.counters.inactive_connections;
            if current.server.weight != 0 {
                let drained = RealServer {
                    weight: 0,
                    ..current.server
                };
                self.ops.push(Op::Ipvs(Operation::SetDest(*key, drained)));
                self.draining.insert(id, since.unwrap_or(self.now));
            } else if connections == 0
                || since.is_some_and(|s| {
                    self.now.saturating_duration_since(s) >= self.config.graceful_period
                })
            {
                self.deletes
                    .push(Op::Ipvs(Operation::DelDest(*key, *rs_key)));
            } else {
                self.draining.insert(id, since.unwrap_or(self.now));
            }
        }
    }

    fn address(&mut self, address: IpAddr, observed: &Observed, intent: &Intent) {
        let bound = observed.addresses.contains(&address);
        let wanted = intent.wants_address(address);
        if wanted && !bound {
            self.ops.push(Op::BindAddress(address));
        } else if bound && !wanted && !self.config.excluded(address) {
            self.unbinds.push(Op::UnbindAddress(address));
        }
    }
}
