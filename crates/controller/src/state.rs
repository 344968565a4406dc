//! The desired state the controller computes: per Service (and per entry
//! of ingress-nginx's stream-services ConfigMaps), the virtual servers with
//! their real servers and the addresses to bind.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube_ipvs_model::{RealServer, VirtualServer, VirtualServerKey};

use crate::service_ref::{Owner, ServiceRef, StreamEntryRef};
use crate::skip::{SkipKind, SkipReason, Skipped};
use crate::vec_map::{KeyedVec, VecMap, VecSet};

/// One virtual server the cluster wants, with the Service port it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredVirtualServer {
    /// The virtual service configuration.
    pub service: VirtualServer,
    /// Its real servers.
    pub real_servers: KeyedVec<RealServer>,
    /// The Service port it comes from: the port's name, or its number when
    /// unnamed; for a stream-services entry, the target's port as the
    /// entry's value names it.
    pub port_name: String,
    /// What kind of Service address the virtual server listens on.
    pub kind: VirtualServerKind,
    /// For load-balancer virtual servers: `spec.loadBalancerSourceRanges`
    /// (empty: every source is allowed).
    pub source_ranges: Vec<ipnetwork::IpNetwork>,
    /// The traffic policy the virtual server follows: `internalTrafficPolicy`
    /// on a cluster IP, `externalTrafficPolicy` elsewhere. External traffic
    /// to a `Local` one keeps its client address (no masquerade).
    pub traffic_policy: TrafficPolicy,
}

/// A Service's traffic policy, for one virtual server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrafficPolicy {
    /// Any endpoint in the cluster; the client address is masqueraded.
    #[default]
    Cluster,
    /// Endpoints on this node; the client address is kept.
    Local,
}

impl TrafficPolicy {
    /// `Local` when `local`, else `Cluster`.
    pub fn local_if(local: bool) -> Self {
        if local {
            TrafficPolicy::Local
        } else {
            TrafficPolicy::Cluster
        }
    }

    /// A label for output.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        }
    }
}

/// The kind of Service address a virtual server listens on; the node's packet
/// filter treats each differently (masquerade, source ranges).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VirtualServerKind {
    /// A cluster IP.
    ClusterIp,
    /// A node address and node port.
    NodePort,
    /// An entry of `spec.externalIPs`.
    ExternalIp,
    /// A `status.loadBalancer.ingress[].ip`.
    LoadBalancer,
}

impl VirtualServerKind {
    /// A label for output and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            VirtualServerKind::ClusterIp => "ClusterIP",
            VirtualServerKind::NodePort => "NodePort",
            VirtualServerKind::ExternalIp => "ExternalIP",
            VirtualServerKind::LoadBalancer => "LoadBalancer",
        }
    }
}

/// What one Service (or stream-services entry) contributes to the desired
/// state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// Its virtual servers.
    pub virtual_servers: VecMap<VirtualServerKey, DesiredVirtualServer>,
    /// The addresses it needs bound on the dummy interface (cluster IPs,
    /// external IPs, load-balancer IPs; never node addresses).
    pub addresses: VecSet<IpAddr>,
    /// For a stream-services entry, the Service its virtual servers forward
    /// to; `None` for a Service.
    pub target: Option<ServiceRef>,
}

/// Everything the controller wants programmed, by Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Per Service.
    pub services: BTreeMap<ServiceRef, ServiceState>,
    /// Per stream-services entry that is served.
    pub streams: BTreeMap<StreamEntryRef, ServiceState>,
    /// What the mapping left out (scheduler flags a scheduler does not take,
    /// repeated virtual servers, [`DesiredState::conflicts`]); what
    /// conversion left out is in the snapshot.
    pub skipped: Vec<Skipped>,
    /// The node's addresses the mapping saw: NodePort virtual servers on
    /// them with a port in the node-port range are the agent's.
    pub node_addresses: BTreeSet<IpAddr>,
}

impl DesiredState {
    /// What each owner wants, in [`Owner`] order: Services, then
    /// stream-services entries.
    pub fn owners(&self) -> impl Iterator<Item = (Owner, &ServiceState)> {
        self.services
            .iter()
            .map(|(s, state)| (Owner::Service(s.clone()), state))
            .chain(
                self.streams
                    .iter()
                    .map(|(e, state)| (Owner::Stream(e.clone()), state)),
            )
    }

    /// Every desired virtual server with what it comes from. When several
    /// want the same key, the first [`Owner`] wins: Services before
    /// stream-services entries, each by name.
    pub fn virtual_servers(&self) -> BTreeMap<VirtualServerKey, (Owner, &DesiredVirtualServer)> {
        let mut all = BTreeMap::new();
        for (owner, state) in self.owners() {
            for (key, vs) in &state.virtual_servers {
                all.entry(*key).or_insert_with(|| (owner.clone(), vs));
            }
        }
        all
    }

    /// The virtual servers several owners want: each later owner loses the
    /// key to the first, as [`DesiredState::virtual_servers`] decides.
    pub fn conflicts(&self) -> Vec<Skipped> {
        let mut owners: BTreeMap<VirtualServerKey, Owner> = BTreeMap::new();
        let mut out = Vec::new();
        for (owner, state) in self.owners() {
            let object = owner.object();
            for key in state.virtual_servers.keys() {
                match owners.get(key) {
                    None => {
                        owners.insert(*key, owner.clone());
                    }
                    Some(winner) => out.push(Skipped::new(
                        SkipKind::of(&owner),
                        object.clone(),
                        SkipReason::Conflict {
                            key: *key,
                            owner: winner.clone(),
                        },
                    )),
                }
            }
        }
        out
    }

    /// Every address to bind.
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.owners()
            .flat_map(|(_, s)| s.addresses.iter().copied())
            .collect()
    }
}
