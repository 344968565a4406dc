//! Which endpoints become real servers of a virtual server.
//!
//! Per Service port and address family, the endpoints of every slice of the
//! family with a matching port (name and protocol) are merged, one per
//! address and port. A virtual server then takes, among those its traffic
//! policy allows (all, or the node's own), the ready ones (narrowed to the
//! node's zone when topology applies); when none is ready, the serving and
//! terminating ones, so connections drain instead of failing.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use kube_ipvs_model::{AddressFamily, RealServer, RealServerKey};

use crate::service::PortInfo;
use crate::slice::{EndpointInfo, SliceInfo};

/// The endpoints that can serve one Service port in one family.
pub(crate) type Candidates<'a> = Vec<(RealServerKey, &'a EndpointInfo)>;

/// Real servers of one virtual server.
pub(crate) type RealServers = BTreeMap<RealServerKey, RealServer>;

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

/// Which endpoints a virtual server may use.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Policy<'a> {
    /// Any endpoint; with a zone, prefer the endpoints hinted for it.
    Cluster {
        /// The node's zone, when the Service asks for topology-aware routing.
        zone: Option<&'a str>,
    },
    /// Only endpoints on this node.
    Local {
        /// The node's name.
        node: &'a str,
    },
}

/// The real servers of a virtual server under `policy`.
pub(crate) fn select(candidates: &Candidates<'_>, policy: Policy<'_>) -> RealServers {
    let allowed = |e: &EndpointInfo| match policy {
        Policy::Cluster { .. } => true,
        Policy::Local { node } => e.node.as_deref() == Some(node),
    };
    // Topology narrows only when every ready endpoint carries zone hints and
    // one is hinted for this zone; otherwise all endpoints are used.
    let zone = match policy {
        Policy::Cluster { zone: Some(zone) } => {
            let mut ready = candidates.iter().map(|(_, e)| *e).filter(|e| e.ready);
            let all_hinted = ready.clone().all(|e| !e.zones.is_empty());
            let any_here = ready.any(|e| e.zones.iter().any(|z| &**z == zone));
            (all_hinted && any_here).then_some(zone)
        }
        _ => None,
    };
    let pick = |want: &dyn Fn(&EndpointInfo) -> bool| -> RealServers {
        candidates
            .iter()
            .filter(|(_, e)| allowed(e) && want(e))
            .map(|(key, _)| (*key, RealServer::new(key.address, key.port)))
            .collect()
    };
    let ready = pick(&|e| e.ready && zone.is_none_or(|z| e.zones.iter().any(|h| &**h == z)));
    if !ready.is_empty() {
        return ready;
    }
    pick(&|e| e.serving && e.terminating)
}
