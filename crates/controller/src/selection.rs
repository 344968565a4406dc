//! Which endpoints become real servers of a virtual server.
//!
//! Per Service port and address family, the endpoints of every slice of the
//! family with a matching port (name and protocol) are merged, one per
//! address and port, then sorted as kube-proxy's `CategorizeEndpoints`
//! (`pkg/proxy/topology.go`) sorts them: for traffic policy `Cluster`, the
//! ready ones (narrowed to this node's or zone's when the topology hints
//! allow); for `Local`, this node's ready ones; either way, when none is
//! ready, the serving and terminating ones, so connections drain instead of
//! failing.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use kube_ipvs_model::{AddressFamily, RealServer, RealServerKey};

use crate::service::PortInfo;
use crate::slice::{EndpointInfo, SliceInfo};

/// The endpoints that can serve one Service port in one family.
pub(crate) type Candidates<'a> = Vec<(RealServerKey, &'a EndpointInfo)>;

/// Real servers of one virtual server.
pub(crate) type RealServers = crate::vec_map::KeyedVec<RealServer>;

fn rank(e: &EndpointInfo) -> u8 {
    if e.ready {
        2
    } else if e.serving && e.terminating {
        1
    } else {
        0
    }
}

/// The endpoints of `slices` in `family` for the Service port `port`, one
/// per real server; an endpoint listed twice keeps its most usable state.
pub(crate) fn candidates<'a>(
    slices: &[&'a SliceInfo],
    family: AddressFamily,
    port: &PortInfo,
) -> Candidates<'a> {
    let mut merged: BTreeMap<RealServerKey, &EndpointInfo> = BTreeMap::new();
    for slice in slices.iter().filter(|s| s.family == family) {
        let matching = slice
            .ports
            .iter()
            .filter(|p| p.name == port.name && p.protocol == port.protocol);
        for slice_port in matching {
            for e in &slice.endpoints {
                let key = RealServerKey {
                    address: e.address,
                    port: slice_port.port,
                };
                match merged.entry(key) {
                    Entry::Vacant(v) => {
                        v.insert(e);
                    }
                    Entry::Occupied(mut o) if rank(e) > rank(o.get()) => {
                        o.insert(e);
                    }
                    Entry::Occupied(_) => {}
                }
            }
        }
    }
    merged.into_iter().collect()
}

/// Where the agent runs, as topology hints name it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Topology<'a> {
    /// The node's name: endpoints with this `nodeName` are local, and
    /// `hints.forNodes` entries with it are for this node.
    pub node: &'a str,
    /// The node's `topology.kubernetes.io/zone`, if it has one.
    pub zone: Option<&'a str>,
}

/// Which endpoints a Service port uses, as kube-proxy's
/// `CategorizeEndpoints` (`pkg/proxy/topology.go`) sorts them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Categorized {
    /// For traffic policy `Cluster`: the ready endpoints the topology hints
    /// allow, else every serving and terminating one. `None` when the port
    /// never uses `Cluster` policy.
    pub cluster: Option<RealServers>,
    /// For traffic policy `Local`: this node's ready endpoints, else its
    /// serving and terminating ones (topology does not narrow them).
    pub local: RealServers,
}

impl Categorized {
    /// The real servers of a virtual server with traffic policy `local` or
    /// `Cluster`. A `Local` virtual server without a local endpoint takes
    /// the `Cluster` endpoints, as kube-proxy's IPVS proxier does
    /// (`syncEndpoint`, kubernetes PR 97081) so that pods on this node still
    /// reach the Service.
    pub fn real_servers(&self, local: bool) -> RealServers {
        if local && !self.local.is_empty() {
            return self.local.clone();
        }
        self.cluster.clone().unwrap_or_default()
    }
}

/// Which topology hints narrow the `Cluster` endpoints, as kube-proxy's
/// `topologyModeFromHints`: the node's when every ready endpoint carries
/// node hints and one is for this node; else the zone's when every ready
/// endpoint carries zone hints and one is for this zone; else none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode<'a> {
    All,
    SameNode(&'a str),
    SameZone(&'a str),
}

fn mode<'a>(candidates: &Candidates<'_>, topology: Topology<'a>) -> Mode<'a> {
    let ready: Vec<&EndpointInfo> = candidates
        .iter()
        .map(|(_, e)| *e)
        .filter(|e| e.ready)
        .collect();
    if ready.is_empty() {
        return Mode::All;
    }
    let hinted = |hints: fn(&EndpointInfo) -> &[std::sync::Arc<str>], name: &str| {
        ready.iter().all(|e| !hints(e).is_empty())
            && ready.iter().any(|e| hints(e).iter().any(|h| &**h == name))
    };
    if hinted(EndpointInfo::nodes, topology.node) {
        return Mode::SameNode(topology.node);
    }
    match topology.zone {
        Some(zone) if hinted(EndpointInfo::zones, zone) => Mode::SameZone(zone),
        _ => Mode::All,
    }
}

fn available(e: &EndpointInfo, mode: Mode<'_>) -> bool {
    match mode {
        Mode::All => true,
        Mode::SameNode(node) => e.nodes().iter().any(|h| &**h == node),
        Mode::SameZone(zone) => e.zones().iter().any(|h| &**h == zone),
    }
}

/// Sorts `candidates` for a port that uses `Cluster` endpoints
/// (`uses_cluster`) and `Local` ones (`uses_local`), as kube-proxy's
/// `CategorizeEndpoints`.
pub(crate) fn categorize(
    candidates: &Candidates<'_>,
    topology: Topology<'_>,
    uses_cluster: bool,
    uses_local: bool,
) -> Categorized {
    let pick = |want: &dyn Fn(&EndpointInfo) -> bool| -> RealServers {
        candidates
            .iter()
            .filter(|(_, e)| want(e))
            .map(|(key, _)| (*key, RealServer::new(key.address, key.port)))
            .collect()
    };
    let mut out = Categorized::default();
    if uses_cluster {
        let mode = mode(candidates, topology);
        let mut cluster = pick(&|e| e.ready && available(e, mode));
        if cluster.is_empty() {
            cluster = pick(&|e| e.serving && e.terminating);
        }
        out.cluster = Some(cluster);
    }
    if uses_local {
        let is_local = |e: &EndpointInfo| e.node.as_deref() == Some(topology.node);
        out.local = pick(&|e| is_local(e) && e.ready);
        if out.local.is_empty() {
            out.local = pick(&|e| is_local(e) && e.serving && e.terminating);
        }
    }
    out
}
