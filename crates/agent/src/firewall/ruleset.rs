//! The node's packet-filter state as plain data: the contents of the
//! `kube-ipvs` table's sets, computed from the desired IPVS state.
//!
//! The rules themselves are fixed (see [`super::render`]); only the sets
//! change with Services, so the cost of a sync grows with elements, never
//! with rules.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use kube_ipvs_controller::{
    DesiredState, DesiredVirtualServer, Intent, TrafficPolicy, VirtualServerKind,
};
use kube_ipvs_netlink::{AddressFamily, ForwardMethod, Protocol, VirtualServerKey};

/// The mark kube-proxy uses for "masquerade this connection" (`KUBE-MARK-MASQ`).
pub const DEFAULT_MASQUERADE_MARK: u32 = 0x4000;

/// How the node filters and masquerades Service traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallConfig {
    /// `--cluster-cidr`: pod addresses. Service traffic from outside them is
    /// masqueraded, so that replies come back through this node.
    pub cluster_cidrs: Vec<IpNetwork>,
    /// `--masquerade-all`: masquerade all Service traffic.
    pub masquerade_all: bool,
    /// The packet-mark bit that flags a connection for masquerade between the
    /// prerouting/output chains and postrouting (`1 << --iptables-masquerade-bit`).
    pub masquerade_mark: u32,
    /// How traffic from the node's pods is told apart (`--detect-local-mode`):
    /// Service traffic from elsewhere is masqueraded.
    pub local: LocalTraffic,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            cluster_cidrs: Vec::new(),
            masquerade_all: false,
            masquerade_mark: DEFAULT_MASQUERADE_MARK,
            local: LocalTraffic::ClusterCidrs,
        }
    }
}

/// kube-proxy's local traffic detectors (`--detect-local-mode`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LocalTraffic {
    /// From `cluster_cidrs` (`ClusterCIDR`, the default).
    #[default]
    ClusterCidrs,
    /// From the node's pod CIDRs (`NodeCIDR`): the Node's `spec.podCIDRs`,
    /// which the feed fills in from the snapshot.
    NodeCidrs(Vec<IpNetwork>),
    /// Arriving on this interface (`BridgeInterface`).
    Interface(String),
    /// Arriving on an interface whose name starts so (`InterfaceNamePrefix`).
    InterfacePrefix(String),
}

/// A Service address, protocol and port: one IPVS virtual server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePort {
    /// The virtual address.
    pub address: IpAddr,
    /// The transport protocol.
    pub protocol: Protocol,
    /// The virtual port.
    pub port: u16,
}

/// An endpoint that may reach itself through a Service: a connection from
/// `address` to `address:port` after IPVS's DNAT is masqueraded, or the
/// endpoint would drop the answer as coming from its own address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hairpin {
    /// The endpoint's address.
    pub address: IpAddr,
    /// The transport protocol.
    pub protocol: Protocol,
    /// The endpoint's port.
    pub port: u16,
}

/// One source range allowed to reach a load-balancer address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AllowedSource {
    /// The load-balancer virtual server.
    pub service: ServicePort,
    /// A `loadBalancerSourceRanges` entry, with its host bits cleared.
    pub source: IpNetwork,
}

/// Which traffic to Services gets masqueraded, for one address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MasqueradeScope {
    /// Everything (`--masquerade-all`).
    All,
    /// Traffic from outside the family's cluster CIDRs, to any Service.
    OutsideClusterCidrs,
    /// Traffic arriving on other interfaces than the pods'
    /// ([`Ruleset::local_interface`]), to any Service.
    OutsideLocalInterface,
    /// No cluster CIDR of this family is known, so pods and the outside look
    /// alike: traffic to NodePorts, external and load-balancer IPs from any
    /// source. Locally originated traffic is masqueraded in every scope.
    #[default]
    ExternalOnly,
}

/// The sets of one address family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilySets {
    /// Which traffic is masqueraded.
    pub masquerade: MasqueradeScope,
    /// Addresses bound on the dummy interface: cluster, external and
    /// load-balancer IPs. New connections to them on other ports are rejected.
    pub vips: BTreeSet<IpAddr>,
    /// Every virtual server.
    pub services: BTreeSet<ServicePort>,
    /// Virtual servers on node ports, external and load-balancer IPs.
    pub external_services: BTreeSet<ServicePort>,
    /// Those of them with `externalTrafficPolicy: Local`: traffic arriving
    /// for them is never masqueraded, so the endpoint sees the client.
    pub local_services: BTreeSet<ServicePort>,
    /// `--cluster-cidr` entries of this family, none inside another.
    pub cluster_cidrs: BTreeSet<IpNetwork>,
    /// Endpoints that may reach themselves through a Service.
    pub hairpin: BTreeSet<Hairpin>,
    /// Load-balancer virtual servers with source ranges.
    pub restricted: BTreeSet<ServicePort>,
    /// The sources allowed to reach each restricted virtual server.
    pub allowed_sources: BTreeSet<AllowedSource>,
}

impl FamilySets {
    /// How many set elements the family holds.
    pub fn element_count(&self) -> usize {
        self.vips.len()
            + self.services.len()
            + self.external_services.len()
            + self.local_services.len()
            + self.cluster_cidrs.len()
            + self.hairpin.len()
            + self.restricted.len()
            + self.allowed_sources.len()
    }
}

/// Everything the `kube-ipvs` table holds that depends on Services and flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// The masquerade mark bit.
    pub masquerade_mark: u32,
    /// The pods' interface (`iifname`; a trailing `*` matches a prefix)
    /// when local traffic is told apart by interface.
    pub local_interface: Option<String>,
    /// IPv4 sets.
    pub ipv4: FamilySets,
    /// IPv6 sets.
    pub ipv6: FamilySets,
}

impl Ruleset {
    /// The ruleset `desired` needs under `config`.
    pub fn new(desired: &DesiredState, config: &FirewallConfig) -> Self {
        let virtual_servers = desired.virtual_servers();
        Self::from_parts(
            desired.addresses(),
            virtual_servers.iter().map(|(k, (_, vs))| (*k, *vs)),
            config,
        )
    }

    /// The ruleset for the reconciler's indexed desired state under `config`.
    pub fn from_intent(intent: &Intent, config: &FirewallConfig) -> Self {
        Self::from_parts(
            intent.addresses().copied(),
            intent
                .keys()
                .filter_map(|k| intent.virtual_server(k).map(|(_, vs)| (*k, vs))),
            config,
        )
    }

    /// The ruleset for the addresses bound on the dummy interface and the
    /// virtual servers (one per key), under `config`.
    pub fn from_parts<'a>(
        addresses: impl IntoIterator<Item = IpAddr>,
        virtual_servers: impl IntoIterator<Item = (VirtualServerKey, &'a DesiredVirtualServer)>,
        config: &FirewallConfig,
    ) -> Self {
        let local_interface = match &config.local {
            LocalTraffic::Interface(name) => Some(name.clone()),
            LocalTraffic::InterfacePrefix(prefix) => Some(format!("{prefix}*")),
            LocalTraffic::ClusterCidrs | LocalTraffic::NodeCidrs(_) => None,
        };
        let local_cidrs: &[IpNetwork] = match &config.local {
            LocalTraffic::ClusterCidrs => &config.cluster_cidrs,
            LocalTraffic::NodeCidrs(cidrs) => cidrs,
            LocalTraffic::Interface(_) | LocalTraffic::InterfacePrefix(_) => &[],
        };
        let mut ruleset = Ruleset {
            masquerade_mark: config.masquerade_mark,
            local_interface: local_interface.clone(),
            ..Ruleset::default()
        };
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let sets = ruleset.family_mut(family);
            sets.cluster_cidrs = disjoint(
                local_cidrs
                    .iter()
                    .filter(|n| family_of_network(n) == family),
            );
            sets.masquerade = if config.masquerade_all {
                MasqueradeScope::All
            } else if local_interface.is_some() {
                MasqueradeScope::OutsideLocalInterface
            } else if sets.cluster_cidrs.is_empty() {
                MasqueradeScope::ExternalOnly
            } else {
                MasqueradeScope::OutsideClusterCidrs
            };
        }
        for address in addresses {
            ruleset
                .family_mut(AddressFamily::of(&address))
                .vips
                .insert(address);
        }
        for (key, vs) in virtual_servers {
            let VirtualServerKey::Inet {
                protocol,
                address,
                port,
            } = key
            else {
                continue;
            };
            let family = AddressFamily::of(&address);
            let service = ServicePort {
                address,
                protocol,
                port,
            };
            let sets = ruleset.family_mut(family);
            sets.services.insert(service);
            if vs.kind != VirtualServerKind::ClusterIp {
                sets.external_services.insert(service);
                if vs.traffic_policy == TrafficPolicy::Local {
                    sets.local_services.insert(service);
                }
            }
            for rs in vs.real_servers.values() {
                // Only NAT rewrites the destination; other methods never
                // send a packet back out with the client's address.
                if rs.forward == ForwardMethod::Masquerade
                    && AddressFamily::of(&rs.key.address) == family
                {
                    sets.hairpin.insert(Hairpin {
                        address: rs.key.address,
                        protocol,
                        port: rs.key.port,
                    });
                }
            }
            if vs.kind == VirtualServerKind::LoadBalancer && !vs.source_ranges.is_empty() {
                // Ranges of the other family allow nothing here; if no range
                // is left the address is closed rather than open to all.
                sets.restricted.insert(service);
                let ranges = vs
                    .source_ranges
                    .iter()
                    .filter(|n| family_of_network(n) == family);
                for source in disjoint(ranges) {
                    sets.allowed_sources
                        .insert(AllowedSource { service, source });
                }
            }
        }
        ruleset
    }

    /// The sets of `family`.
    pub fn family(&self, family: AddressFamily) -> &FamilySets {
        match family {
            AddressFamily::Inet => &self.ipv4,
            AddressFamily::Inet6 => &self.ipv6,
        }
    }

    fn family_mut(&mut self, family: AddressFamily) -> &mut FamilySets {
        match family {
            AddressFamily::Inet => &mut self.ipv4,
            AddressFamily::Inet6 => &mut self.ipv6,
        }
    }

    /// How many set elements the ruleset holds.
    pub fn element_count(&self) -> usize {
        self.ipv4.element_count() + self.ipv6.element_count()
    }
}

fn family_of_network(network: &IpNetwork) -> AddressFamily {
    AddressFamily::of(&network.ip())
}

/// The networks with host bits cleared and without any that lies inside
/// another: the kernel refuses overlapping elements in an interval set, and
/// two prefixes either nest or are disjoint.
fn disjoint<'a>(networks: impl Iterator<Item = &'a IpNetwork>) -> BTreeSet<IpNetwork> {
    let normalized: BTreeSet<IpNetwork> = networks
        .filter_map(|n| IpNetwork::new(n.network(), n.prefix()).ok())
        .collect();
    normalized
        .iter()
        .filter(|n| {
            !normalized
                .iter()
                .any(|outer| outer != *n && outer.prefix() < n.prefix() && outer.contains(n.ip()))
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests;
