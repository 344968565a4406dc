//! The planner: the smallest list of kernel operations that turns what the
//! kernel holds into what the cluster wants, for everything or for the part a
//! change touched.
//!
//! It is a pure function of the observed state, the desired state, the
//! ownership rules and the draining real servers; time comes in as an
//! argument.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use kube_ipvs_model::{Operation, Protocol, RealServer, RealServerKey, VirtualServerKey};

use crate::observed::{Observed, ObservedVirtualServer};
use crate::state::{DesiredState, DesiredVirtualServer, ServiceRef, ServiceState};

/// One kernel write: an IPVS operation or an address on the dummy interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// An IPVS operation.
    Ipvs(Operation),
    /// Bind an address on the dummy interface.
    BindAddress(IpAddr),
    /// Remove an address from the dummy interface.
    UnbindAddress(IpAddr),
}

impl Op {
    /// A label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Ipvs(op) => op.kind().as_str(),
            Op::BindAddress(_) => "bind_address",
            Op::UnbindAddress(_) => "unbind_address",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Ipvs(op) => op.fmt(f),
            Op::BindAddress(a) => write!(f, "bind address {a}"),
            Op::UnbindAddress(a) => write!(f, "unbind address {a}"),
        }
    }
}

/// What the agent may change in the kernel, and how it drains real servers.
#[derive(Clone, Debug)]
pub struct PlanConfig {
    /// The node's addresses (NodePort virtual servers listen on them).
    pub node_addresses: BTreeSet<IpAddr>,
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
            node_addresses: BTreeSet::new(),
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
    /// bound on the dummy interface (or about to be), or it is on a node
    /// address with a port in the node-port range; never when excluded.
    pub fn owns(&self, key: &VirtualServerKey, bound: &BTreeSet<IpAddr>, wanted: &Intent) -> bool {
        let VirtualServerKey::Inet { address, port, .. } = *key else {
            return false;
        };
        if self.excluded(address) {
            return false;
        }
        bound.contains(&address)
            || wanted.wants_address(address)
            || (self.node_addresses.contains(&address) && self.node_port_range.contains(&port))
    }
}

/// The desired state indexed for planning: which Service wants each virtual
/// server, and how many Services want each address. Kept up to date one
/// Service at a time, so an incremental sync never walks every Service.
#[derive(Clone, Debug, Default)]
pub struct Intent {
    services: BTreeMap<ServiceRef, ServiceState>,
    owners: BTreeMap<VirtualServerKey, BTreeSet<ServiceRef>>,
    address_users: BTreeMap<IpAddr, usize>,
    /// Real servers of the winning virtual servers, kept as Services change
    /// so reading it never walks them all.
    real_servers: usize,
}

impl Intent {
    /// Indexes a whole desired state.
    pub fn new(desired: DesiredState) -> Self {
        let mut intent = Intent::default();
        for (service, state) in desired.services {
            intent.replace(service, Some(state));
        }
        intent
    }

    /// Replaces what one Service wants (`None`: the Service is gone) and
    /// returns the part of the kernel the change touches.
    pub fn replace(&mut self, service: ServiceRef, state: Option<ServiceState>) -> Scope {
        let mut scope = Scope::default();
        // The winners at the keys this change touches may change; count them
        // out before and back in after.
        let touched: BTreeSet<VirtualServerKey> = self
            .services
            .get(&service)
            .into_iter()
            .chain(state.as_ref())
            .flat_map(|s| s.virtual_servers.keys().copied())
            .collect();
        self.real_servers -= self.real_servers_at(&touched);
        if let Some(old) = self.services.remove(&service) {
            for key in old.virtual_servers.keys() {
                scope.keys.insert(*key);
                if let Some(owners) = self.owners.get_mut(key) {
                    owners.remove(&service);
                    if owners.is_empty() {
                        self.owners.remove(key);
                    }
                }
            }
            for address in &old.addresses {
                scope.addresses.insert(*address);
                if let Some(n) = self.address_users.get_mut(address) {
                    *n -= 1;
                    if *n == 0 {
                        self.address_users.remove(address);
                    }
                }
            }
        }
        if let Some(new) = state {
            for key in new.virtual_servers.keys() {
                scope.keys.insert(*key);
                self.owners.entry(*key).or_default().insert(service.clone());
            }
            for address in &new.addresses {
                scope.addresses.insert(*address);
                *self.address_users.entry(*address).or_default() += 1;
            }
            self.services.insert(service, new);
        }
        self.real_servers += self.real_servers_at(&touched);
        scope
    }

    fn real_servers_at(&self, keys: &BTreeSet<VirtualServerKey>) -> usize {
        keys.iter()
            .filter_map(|k| self.virtual_server(k))
            .map(|(_, vs)| vs.real_servers.len())
            .sum()
    }

    /// The virtual server wanted at `key`, with the Service that wants it.
    /// When several Services want one key, the first by namespace/name wins,
    /// so the choice does not depend on the order changes arrive in.
    pub fn virtual_server(
        &self,
        key: &VirtualServerKey,
    ) -> Option<(&ServiceRef, &DesiredVirtualServer)> {
        let owner = self.owners.get(key)?.iter().next()?;
        let vs = self.services.get(owner)?.virtual_servers.get(key)?;
        Some((owner, vs))
    }

    /// Whether any Service wants `address` bound.
    pub fn wants_address(&self, address: IpAddr) -> bool {
        self.address_users.contains_key(&address)
    }

    /// Every wanted virtual server key.
    pub fn keys(&self) -> impl Iterator<Item = &VirtualServerKey> {
        self.owners.keys()
    }

    /// Every wanted address.
    pub fn addresses(&self) -> impl Iterator<Item = &IpAddr> {
        self.address_users.keys()
    }

    /// What each Service wants.
    pub fn services(&self) -> &BTreeMap<ServiceRef, ServiceState> {
        &self.services
    }

    /// The number of wanted virtual servers and real servers.
    pub fn counts(&self) -> (usize, usize) {
        (self.owners.len(), self.real_servers)
    }
}

/// The part of the kernel a plan looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Virtual servers to compare.
    pub keys: BTreeSet<VirtualServerKey>,
    /// Addresses to compare.
    pub addresses: BTreeSet<IpAddr>,
}

impl Scope {
    /// Adds another scope's keys and addresses.
    pub fn extend(&mut self, other: Scope) {
        self.keys.extend(other.keys);
        self.addresses.extend(other.addresses);
    }

    /// Whether the scope touches nothing.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.addresses.is_empty()
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
    let mut out = Planner {
        config,
        now,
        old_draining: draining,
        draining: Draining::new(),
        binds: Vec::new(),
        creates: Vec::new(),
        deletes: Vec::new(),
        unbinds: Vec::new(),
    };

    match extent {
        Extent::All => {
            let keys: BTreeSet<&VirtualServerKey> = observed
                .virtual_servers
                .keys()
                .chain(intent.keys())
                .collect();
            for key in keys {
                out.virtual_server(key, observed, intent);
            }
            let addresses: BTreeSet<&IpAddr> = observed
                .addresses
                .iter()
                .chain(intent.addresses())
                .collect();
            for address in addresses {
                out.address(*address, observed, intent);
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
            for key in &keys {
                out.virtual_server(key, observed, intent);
            }
            for address in &scope.addresses {
                out.address(*address, observed, intent);
            }
        }
    }

    let Planner {
        binds,
        creates,
        deletes,
        unbinds,
        draining,
        ..
    } = out;
    let mut ops = binds;
    ops.extend(creates);
    ops.extend(deletes);
    ops.extend(unbinds);
    Plan { ops, draining }
}

struct Planner<'a> {
    config: &'a PlanConfig,
    now: Instant,
    old_draining: &'a Draining,
    draining: Draining,
    binds: Vec<Op>,
    creates: Vec<Op>,
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
                self.creates
                    .push(Op::Ipvs(Operation::NewService(want.service.clone())));
                for rs in want.real_servers.values() {
                    self.creates.push(Op::Ipvs(Operation::NewDest(*key, *rs)));
                }
            }
            (Some(_), None) => {
                if self.config.owns(key, &observed.addresses, intent) {
                    self.deletes.push(Op::Ipvs(Operation::DelService(*key)));
                }
            }
            (Some(have), Some(want)) => {
                if have.service != want.service {
                    self.creates
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
                None => self.creates.push(Op::Ipvs(Operation::NewDest(*key, *rs))),
                // A real server that was draining and came back gets its
                // weight restored here, as any other changed weight.
                Some(current) if current.server != *rs => {
                    self.creates.push(Op::Ipvs(Operation::SetDest(*key, *rs)))
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
                self.creates
                    .push(Op::Ipvs(Operation::SetDest(*key, drained)));
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
            self.binds.push(Op::BindAddress(address));
        } else if bound && !wanted && !self.config.excluded(address) {
            self.unbinds.push(Op::UnbindAddress(address));
        }
    }
}
