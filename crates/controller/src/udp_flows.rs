//! Which UDP flows each Service frontend's endpoints may answer: what the
//! conntrack clean-up keeps (kube-proxy: `pkg/proxy/conntrack/cleanup.go`
//! `CleanStaleEntries`).
//!
//! UDP has no end of connection, so a flow to a Service keeps following its
//! conntrack entry after the endpoint that answered it is gone. A flow whose
//! original destination is a frontend of a UDP Service port and whose reply
//! came from an address that is not a serving endpoint of that port is
//! stale. As upstream: every serving endpoint counts, whatever the traffic
//! policy or topology (a change to the Service must not break flows a TCP
//! connection would keep), a port without serving endpoints keeps its
//! flows, and a node port matches on the port alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube_ipvs_model::{AddressFamily, Protocol, VirtualServerKey};

use crate::intent::Intent;
use crate::selection::candidates;
use crate::service_ref::Owner;
use crate::slice::SliceInfo;
use crate::snapshot::Snapshot;
use crate::state::VirtualServerKind;

/// Where UDP traffic to a Service arrives: conntrack's original destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UdpFrontend {
    /// A cluster, external or load-balancer IP and the Service port.
    Address(IpAddr, u16),
    /// A node port, on any address.
    NodePort(u16),
}

/// The serving endpoint addresses of every UDP frontend (empty: none, and
/// its flows are kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpFrontends(pub BTreeMap<UdpFrontend, BTreeSet<IpAddr>>);

impl UdpFrontends {
    /// Whether a UDP flow to `destination` answered from `reply_source` is
    /// stale: the destination is a frontend here and the answer did not
    /// come from one of its serving endpoints.
    pub fn stale(&self, destination: IpAddr, port: u16, reply_source: IpAddr) -> bool {
        [
            UdpFrontend::Address(destination, port),
            UdpFrontend::NodePort(port),
        ]
        .iter()
        .filter_map(|f| self.0.get(f))
        .any(|serving| !serving.is_empty() && !serving.contains(&reply_source))
    }

    /// The frontends here that `current` no longer has: their Service or
    /// port is gone, and every flow to them with it.
    pub fn gone_in(&self, current: &UdpFrontends) -> BTreeSet<UdpFrontend> {
        self.0
            .keys()
            .filter(|f| !current.0.contains_key(*f))
            .copied()
            .collect()
    }
}

/// The UDP frontends of every wanted virtual server, with the serving
/// endpoints of the Service port behind it.
pub fn udp_frontends(snapshot: &Snapshot, intent: &Intent) -> UdpFrontends {
    let mut out = UdpFrontends::default();
    for key in intent.keys() {
        let VirtualServerKey::Inet {
            protocol: Protocol::Udp,
            address,
            port,
        } = *key
        else {
            continue;
        };
        let Some((owner, vs)) = intent.virtual_server(key) else {
            continue;
        };
        // A stream-services entry forwards to its target Service's endpoints.
        let service = match owner {
            Owner::Service(service) => service,
            Owner::Stream(_) => {
                match intent.services().get(owner).and_then(|s| s.target.as_ref()) {
                    Some(target) => target,
                    None => continue,
                }
            }
        };
        let Some(info) = snapshot.service(service) else {
            continue;
        };
        let Some(service_port) = info
            .ports
            .iter()
            .find(|p| p.protocol == Protocol::Udp && p.display_name() == vs.port_name)
        else {
            continue;
        };
        let slices: Vec<&SliceInfo> = snapshot.slices_of(service).collect();
        let serving: BTreeSet<IpAddr> =
            candidates(&slices, AddressFamily::of(&address), service_port)
                .into_iter()
                .filter(|(_, e)| e.serving)
                .map(|(k, _)| k.address)
                .collect();
        let frontend = match vs.kind {
            VirtualServerKind::NodePort => UdpFrontend::NodePort(port),
            _ => UdpFrontend::Address(address, port),
        };
        out.0.entry(frontend).or_default().extend(serving);
    }
    out
}
