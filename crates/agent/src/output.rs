//! How `plan` and `dump` print virtual servers: a table in the spirit of
//! `ipvsadm -Ln`, or JSON.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use kube_ipvs_controller::{DesiredVirtualServer, Intent, Observed, ObservedRealServer, Owner};

use crate::dataplane::kernel::TrafficStats;
use kube_ipvs_netlink::{
    Protocol, RealServer, ServiceFlags, Stats, VirtualServer, VirtualServerKey,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a virtual server is addressed: an IP protocol, or a firewall mark.
/// Printed as `ipvsadm` does: `TCP`, `UDP`, `SCTP`, `FWM` (`proto-N` for
/// another protocol number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolView {
    /// An address, a port and this protocol.
    Ip(Protocol),
    /// A firewall mark.
    FirewallMark,
}

impl fmt::Display for ProtocolView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolView::Ip(p) => p.fmt(f),
            ProtocolView::FirewallMark => f.write_str("FWM"),
        }
    }
}

impl Serialize for ProtocolView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProtocolView {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(match &*text {
            "TCP" => ProtocolView::Ip(Protocol::Tcp),
            "UDP" => ProtocolView::Ip(Protocol::Udp),
            "SCTP" => ProtocolView::Ip(Protocol::Sctp),
            "FWM" => ProtocolView::FirewallMark,
            other => other
                .strip_prefix("proto-")
                .and_then(|n| n.parse().ok())
                .map(|n| ProtocolView::Ip(Protocol::Other(n)))
                .ok_or_else(|| serde::de::Error::custom(format!("unknown protocol {other:?}")))?,
        })
    }
}

/// The printed form of a virtual server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VirtualServerView {
    /// `TCP`, `UDP`, `SCTP` (or `FWM` for a firewall-mark service).
    pub protocol: ProtocolView,
    /// The virtual IP (absent for a firewall-mark service).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub address: Option<IpAddr>,
    /// The virtual port.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub port: Option<u16>,
    /// The firewall mark of a firewall-mark service.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fwmark: Option<u32>,
    /// The scheduler.
    pub scheduler: String,
    /// Scheduler flags (`sh-port`...) and `one-packet`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub flags: Vec<String>,
    /// Persistence timeout in seconds, when persistent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub persistence_timeout: Option<u32>,
    /// The Service port it serves (`namespace/name:port`), or the
    /// stream-services entry and its target
    /// (`tcp-services namespace/name:port -> namespace/name:port`), when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<String>,
    /// Traffic counters (`dump --stats`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stats: Option<StatsView>,
    /// Its real servers.
    pub real_servers: Vec<RealServerView>,
}

/// The printed form of a real server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealServerView {
    /// Its address.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its weight.
    pub weight: u32,
    /// masq, local, tunnel or route.
    pub forward: String,
    /// Active connections (`dump` only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub active_connections: Option<u32>,
    /// Inactive connections (`dump` only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inactive_connections: Option<u32>,
    /// Traffic counters (`dump --stats`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stats: Option<StatsView>,
}

/// Traffic counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// Connections.
    pub connections: u64,
    /// Packets in.
    pub packets_in: u64,
    /// Packets out.
    pub packets_out: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
}

impl From<Stats> for StatsView {
    fn from(s: Stats) -> Self {
        StatsView {
            connections: s.connections,
            packets_in: s.packets_in,
            packets_out: s.packets_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
        }
    }
}

impl VirtualServerView {
    /// The kernel's key of the virtual server shown (`None` for a
    /// firewall-mark service, whose family the view does not carry).
    pub fn key(&self) -> Option<VirtualServerKey> {
        match (self.protocol, self.address, self.port) {
            (ProtocolView::Ip(protocol), Some(address), Some(port)) => {
                Some(VirtualServerKey::inet(protocol, address, port))
            }
            _ => None,
        }
    }
}

/// The whole printed document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The virtual servers, sorted by protocol, address and port.
    pub virtual_servers: Vec<VirtualServerView>,
}

fn service_view(service: &VirtualServer, owner: Option<String>) -> VirtualServerView {
    let (protocol, address, port, fwmark) = match service.key {
        VirtualServerKey::Inet {
            protocol,
            address,
            port,
        } => (ProtocolView::Ip(protocol), Some(address), Some(port), None),
        VirtualServerKey::FirewallMark { mark, .. } => {
            (ProtocolView::FirewallMark, None, None, Some(mark))
        }
    };
    let mut flags: Vec<String> = service
        .flags
        .scheduler_flag_names(&service.scheduler)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if service.flags.contains(ServiceFlags::ONEPACKET) {
        flags.push("one-packet".to_owned());
    }
    VirtualServerView {
        protocol,
        address,
        port,
        fwmark,
        scheduler: service.scheduler.name().to_owned(),
        flags,
        persistence_timeout: service
            .flags
            .contains(ServiceFlags::PERSISTENT)
            .then_some(service.timeout),
        service: owner,
        stats: None,
        real_servers: Vec::new(),
    }
}

fn real_server_view(rs: &RealServer) -> RealServerView {
    RealServerView {
        address: rs.key.address,
        port: rs.key.port,
        weight: rs.weight,
        forward: rs.forward.name().to_owned(),
        active_connections: None,
        inactive_connections: None,
        stats: None,
    }
}

/// The desired state as `plan` prints it.
pub fn from_intent(intent: &Intent) -> Document {
    let virtual_servers = intent
        .keys()
        .filter_map(|key| intent.virtual_server(key))
        .map(|(owner, vs)| {
            let mut view = service_view(&vs.service, Some(name(intent, owner, vs)));
            view.real_servers = vs.real_servers.values().map(real_server_view).collect();
            view
        })
        .collect();
    Document { virtual_servers }
}

/// The kernel's state as `dump` prints it, named from `names` where known.
pub fn from_observed(
    observed: &Observed,
    names: &BTreeMap<VirtualServerKey, String>,
    stats: &TrafficStats,
    with_stats: bool,
) -> Document {
    let virtual_servers = observed
        .virtual_servers
        .values()
        .map(|vs| {
            let mut view = service_view(&vs.service, names.get(&vs.service.key).cloned());
            if with_stats {
                view.stats = stats
                    .virtual_servers
                    .get(&vs.service.key)
                    .copied()
                    .map(StatsView::from);
            }
            view.real_servers = vs
                .real_servers
                .values()
                .map(|d: &ObservedRealServer| {
                    let mut r = real_server_view(&d.server);
                    r.active_connections = Some(d.counters.active_connections);
                    r.inactive_connections = Some(d.counters.inactive_connections);
                    if with_stats {
                        r.stats = stats
                            .real_servers
                            .get(&(vs.service.key, d.server.key))
                            .copied()
                            .map(StatsView::from);
                    }
                    r
                })
                .collect();
            view
        })
        .collect();
    Document { virtual_servers }
}

fn endpoint(address: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(address, port).to_string()
}

/// Renders a document as a table.
pub fn table(doc: &Document) -> String {
    let mut out = String::new();
    let dump = doc
        .virtual_servers
        .iter()
        .flat_map(|v| &v.real_servers)
        .any(|r| r.active_connections.is_some());
    out.push_str("Prot LocalAddress:Port Scheduler Flags                       Service\n");
    if dump {
        out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    } else {
        out.push_str("  -> RemoteAddress:Port           Forward Weight\n");
    }
    for vs in &doc.virtual_servers {
        let local = match (&vs.address, vs.port, vs.fwmark) {
            (Some(a), Some(p), _) => endpoint(*a, p),
            (_, _, Some(mark)) => mark.to_string(),
            _ => String::new(),
        };
        let mut head = format!("{:<4} {} {}", vs.protocol.to_string(), local, vs.scheduler);
        if !vs.flags.is_empty() {
            let _ = write!(head, " ({})", vs.flags.join(","));
        }
        if let Some(t) = vs.persistence_timeout {
            let _ = write!(head, " persistent {t}");
        }
        match &vs.service {
            Some(s) => {
                let _ = writeln!(out, "{head:<48} {s}");
            }
            None => {
                let _ = writeln!(out, "{head}");
            }
        }
        if let Some(s) = vs.stats {
            let _ = writeln!(
                out,
                "  conns {} pkts in {} out {} bytes in {} out {}",
                s.connections, s.packets_in, s.packets_out, s.bytes_in, s.bytes_out
            );
        }
        for rs in &vs.real_servers {
            let forward = match rs.forward.as_str() {
                "masq" => "Masq",
                "local" => "Local",
                "tunnel" => "Tunnel",
                "route" => "Route",
                other => other,
            };
            let mut line = format!(
                "  -> {:<28} {:<7} {:<6}",
                endpoint(rs.address, rs.port),
                forward,
                rs.weight
            );
            if let (Some(a), Some(i)) = (rs.active_connections, rs.inactive_connections) {
                let _ = write!(line, " {a:<10} {i}");
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if let Some(s) = rs.stats {
                let _ = writeln!(
                    out,
                    "       conns {} pkts in {} out {} bytes in {} out {}",
                    s.connections, s.packets_in, s.packets_out, s.bytes_in, s.bytes_out
                );
            }
        }
    }
    out
}

/// What a virtual server serves: `namespace/name:port` for a Service port;
/// for a stream-services entry, the entry and its target,
/// `tcp-services ingress-nginx/tcp-services:10000 -> default/db:5432`.
fn name(intent: &Intent, owner: &Owner, vs: &DesiredVirtualServer) -> String {
    match owner {
        Owner::Service(service) => format!("{service}:{}", vs.port_name),
        Owner::Stream(entry) => {
            match intent.services().get(owner).and_then(|s| s.target.as_ref()) {
                Some(target) => format!("{entry} -> {target}:{}", vs.port_name),
                None => entry.to_string(),
            }
        }
    }
}

/// Which Service port (or stream-services entry) each virtual server of
/// `intent` serves.
pub fn names_from_intent(intent: &Intent) -> BTreeMap<VirtualServerKey, String> {
    intent
        .keys()
        .filter_map(|key| intent.virtual_server(key))
        .map(|(owner, vs)| (vs.service.key, name(intent, owner, vs)))
        .collect()
}

/// Which Service port each virtual server of a document names.
pub fn names_from_document(doc: Document) -> BTreeMap<VirtualServerKey, String> {
    doc.virtual_servers
        .into_iter()
        .filter_map(|v| Some((v.key()?, v.service?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_ipvs_controller::{
        ConfigMapRef, DesiredState, ServiceRef, ServiceState, StreamEntryRef, StreamKind,
        VirtualServerKind,
    };
    use kube_ipvs_netlink::Scheduler;

    fn state(
        address: &str,
        port: u16,
        port_name: &str,
        target: Option<ServiceRef>,
    ) -> ServiceState {
        let key = VirtualServerKey::inet(Protocol::Tcp, address.parse().unwrap(), port);
        let vs = DesiredVirtualServer {
            service: VirtualServer::new(key, Scheduler::Rr),
            real_servers: Default::default(),
            port_name: port_name.into(),
            kind: VirtualServerKind::LoadBalancer,
            source_ranges: Vec::new(),
            traffic_policy: Default::default(),
        };
        ServiceState {
            virtual_servers: kube_ipvs_controller::VecMap::from([(key, vs)]),
            addresses: [key.address().unwrap()].into(),
            target,
        }
    }

    #[test]
    fn stream_entries_are_named_after_the_entry_and_their_target() {
        let mut desired = DesiredState::default();
        desired.services.insert(
            ServiceRef::new("default", "web"),
            state("203.0.113.30", 80, "http", None),
        );
        desired.streams.insert(
            StreamEntryRef::new(
                StreamKind::Tcp,
                ConfigMapRef::new("ingress-nginx", "tcp-services"),
                10000,
            ),
            state(
                "203.0.113.30",
                10000,
                "10000",
                Some(ServiceRef::new("default", "layanan-xyz-port-10000")),
            ),
        );
        let names: Vec<String> = names_from_intent(&Intent::new(desired))
            .into_values()
            .collect();
        assert_eq!(
            names,
            [
                "default/web:http",
                "tcp-services ingress-nginx/tcp-services:10000 -> default/layanan-xyz-port-10000:10000",
            ]
        );
    }
}
