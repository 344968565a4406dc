//! The desired state indexed for planning, and the part of the kernel a
//! change to it touches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube_ipvs_model::VirtualServerKey;

use crate::op::Op;
use crate::service_ref::Owner;
use crate::state::{DesiredState, DesiredVirtualServer, ServiceState};
use crate::vec_map::VecMap;

/// The desired state indexed for planning: which Service (or stream-services
/// entry) wants each virtual server, and how many want each address. Kept up
/// to date one owner at a time, so an incremental sync never walks every
/// Service.
#[derive(Clone, Debug, Default)]
pub struct Intent {
    services: BTreeMap<Owner, ServiceState>,
    /// Who wants each key: nearly always one owner, so a sorted vector
    /// rather than a tree node with room for eleven.
    owners: BTreeMap<VirtualServerKey, VecMap<Owner, ()>>,
    address_users: BTreeMap<IpAddr, usize>,
    /// Real servers of the winning virtual servers, kept as Services change
    /// so reading it never walks them all.
    real_servers: usize,
    /// The node's addresses the desired state was mapped with.
    node_addresses: BTreeSet<IpAddr>,
    /// Keys this agent wanted once and wants no more: its own to delete even
    /// on an address it does not own (an external IP that is the node's).
    released: BTreeSet<VirtualServerKey>,
}

impl Intent {
    /// Indexes a whole desired state.
    pub fn new(desired: DesiredState) -> Self {
        let mut intent = Intent {
            node_addresses: desired.node_addresses,
            ..Intent::default()
        };
        for (service, state) in desired.services {
            intent.replace(service, Some(state));
        }
        for (entry, state) in desired.streams {
            intent.replace(entry, Some(state));
        }
        intent.pack();
        intent
    }

    /// Packs the maps a whole desired state filled one owner at a time into
    /// full nodes ([`crate::dense`]).
    fn pack(&mut self) {
        crate::dense::pack(&mut self.services);
        crate::dense::pack(&mut self.owners);
        crate::dense::pack(&mut self.address_users);
    }

    /// Indexes a whole desired state that follows `previous`: the keys
    /// `previous` wanted and this one does not stay the agent's to delete.
    pub fn succeed(previous: &Intent, desired: DesiredState) -> Self {
        let mut intent = Intent::new(desired);
        intent.released = previous
            .released
            .iter()
            .chain(previous.owners.keys())
            .filter(|k| !intent.owners.contains_key(*k))
            .copied()
            .collect();
        intent
    }

    /// Whether the agent wanted `key` and wants it no more.
    pub fn released(&self, key: &VirtualServerKey) -> bool {
        self.released.contains(key)
    }

    /// The node's addresses the desired state was mapped with (NodePort
    /// virtual servers on them are the agent's). They change only with a
    /// full desired state, as the snapshot's do only at a full sync.
    pub fn node_addresses(&self) -> &BTreeSet<IpAddr> {
        &self.node_addresses
    }

    /// Replaces what one Service or stream-services entry wants (`None`:
    /// it is gone, or not served) and returns the part of the kernel the
    /// change touches.
    pub fn replace(&mut self, owner: impl Into<Owner>, state: Option<ServiceState>) -> Scope {
        let service = owner.into();
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
                self.owners
                    .entry(*key)
                    .or_default()
                    .insert(service.clone(), ());
            }

            for address in &new.addresses {
                scope.addresses.insert(*address);
                *self.address_users.entry(*address).or_default() += 1;
            }
            self.services.insert(service, new);
        }
        for key in &touched {
            if self.owners.contains_key(key) {
                self.released.remove(key);
            } else {
                self.released.insert(*key);
            }
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

    /// The virtual server wanted at `key`, with what wants it. When several
    /// want one key, the first [`Owner`] wins (Services before
    /// stream-services entries, each by name), so the choice does not depend
    /// on the order changes arrive in.
    pub fn virtual_server(
        &self,
        key: &VirtualServerKey,
    ) -> Option<(&Owner, &DesiredVirtualServer)> {
        let owner = self.owners.get(key)?.keys().next()?;
        let vs = self.services.get(owner)?.virtual_servers.get(key)?;
        Some((owner, vs))
    }

    /// Whether any Service or entry wants `address` bound.
    pub fn wants_address(&self, address: IpAddr) -> bool {
        self.address_users.contains_key(&address)
    }

    /// The Services and stream-services entries whose desired state asks
    /// for `op`: those that want its virtual server, or its address bound.
    /// Empty for an operation nobody asks for (removing what nobody wants):
    /// a full resync retries those.
    pub fn owners_of(&self, op: &Op) -> Vec<Owner> {
        match op {
            Op::Ipvs(operation) => self
                .owners
                .get(operation.service_key())
                .map(|owners| owners.iter().map(|(o, _)| o.clone()).collect())
                .unwrap_or_default(),
            Op::BindAddress(address) if self.wants_address(*address) => self
                .services
                .iter()
                .filter(|(_, state)| state.addresses.contains(address))
                .map(|(owner, _)| owner.clone())
                .collect(),
            Op::BindAddress(_) | Op::UnbindAddress(_) => Vec::new(),
        }
    }

    /// Every wanted virtual server key.
    pub fn keys(&self) -> impl Iterator<Item = &VirtualServerKey> {
        self.owners.keys()
    }

    /// Every wanted address.
    pub fn addresses(&self) -> impl Iterator<Item = &IpAddr> {
        self.address_users.keys()
    }

    /// What each Service and stream-services entry wants.
    pub fn services(&self) -> &BTreeMap<Owner, ServiceState> {
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
