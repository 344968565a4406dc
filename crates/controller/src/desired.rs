//! The mapping: from the snapshot and the configuration to the virtual
//! servers, real servers and addresses each Service wants.
//!
//! Per Service port and address family of the Service's cluster IPs, one
//! virtual server on each cluster IP (bound on the dummy interface, traffic
//! policy `internalTrafficPolicy`), each external IP and load-balancer
//! ingress IP (bound, `externalTrafficPolicy`) and, with a node port, each
//! node address (never bound, `externalTrafficPolicy`).
//!
//! Per entry of ingress-nginx's stream-services ConfigMaps, the virtual
//! servers [`crate::stream_services`] describes: the publish Service's
//! external addresses and node port at the entry's port, with the target
//! Service port's real servers; the publish Service leaves those to it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use kube_ipvs_model::{
    AddressFamily, Protocol, Scheduler, ServiceFlags, VirtualServer, VirtualServerKey,
};

use crate::config::Config;
use crate::selection::{candidates, categorize, RealServers, Topology};
use crate::service_ref::{Owner, ServiceRef, StreamEntryRef};
use crate::skip::{SkipKind, SkipReason, Skipped};
use crate::slice::SliceInfo;
use crate::snapshot::Snapshot;
use crate::state::{
    DesiredState, DesiredVirtualServer, ServiceState, TrafficPolicy, VirtualServerKind,
};
use crate::stream_services::{publish_service, resolve, taken_ports};

/// The desired state of every Service and stream-services entry in the
/// snapshot: the same as [`desired_owner_checked`] for each, plus the
/// virtual servers several of them want in `skipped`.
pub fn desired(snapshot: &Snapshot, config: &Config) -> DesiredState {
    let mut state = DesiredState::default();
    let mut skipped = Vec::new();
    for (service, _) in snapshot.services() {
        if let Some(s) = desired_service_checked(snapshot, config, service, &mut skipped) {
            state.services.insert(service.clone(), s);
        }
    }
    for (entry, _) in snapshot.stream_entries() {
        if let Some(s) = desired_stream_checked(snapshot, config, &entry, &mut skipped) {
            state.streams.insert(entry, s);
        }
    }
    skipped.extend(state.conflicts());
    state.skipped = skipped;
    state.node_addresses = snapshot.node_addresses().iter().copied().collect();
    state
}

/// The desired state of one Service; `None` when the snapshot does not hold
/// it or it is not proxied here (headless, ExternalName, no cluster IP,
/// another proxy's).
pub fn desired_service(
    snapshot: &Snapshot,
    config: &Config,
    service: &ServiceRef,
) -> Option<ServiceState> {
    desired_service_checked(snapshot, config, service, &mut Vec::new())
}

/// The desired state of a Service or a stream-services entry, as
/// [`desired_service_checked`] or [`desired_stream_checked`] maps it.
pub fn desired_owner_checked(
    snapshot: &Snapshot,
    config: &Config,
    owner: &Owner,
    skipped: &mut Vec<Skipped>,
) -> Option<ServiceState> {
    match owner {
        Owner::Service(service) => desired_service_checked(snapshot, config, service, skipped),
        Owner::Stream(entry) => desired_stream_checked(snapshot, config, entry, skipped),
    }
}

/// [`desired_service`], recording what the mapping leaves out in `skipped`.
pub fn desired_service_checked(
    snapshot: &Snapshot,
    config: &Config,
    service: &ServiceRef,
    skipped: &mut Vec<Skipped>,
) -> Option<ServiceState> {
    let info = snapshot.service(service)?;
    if !info.proxied() || !config.proxies(info.proxy_name.as_deref()) {
        return None;
    }
    let object = service.to_string();
    let (scheduler, flags) = info.scheduler.resolve(&config.scheduler, &object, skipped);
    // The publish Service leaves the ports its stream entries serve to them,
    // on every address but its cluster IPs.
    let taken = if config.streams.publish_service.as_ref() == Some(service) {
        taken_ports(snapshot)
    } else {
        BTreeSet::new()
    };
    let mut out = Mapper {
        affinity_timeout: info.affinity_timeout,
        source_ranges: &info.source_ranges,
        node_addresses: snapshot.node_addresses(),
        scheduler,
        flags,
        skip_kind: SkipKind::Service,
        object,
        skipped,
        state: ServiceState::default(),
    };
    let slices: Vec<&SliceInfo> = snapshot.slices_of(service).collect();
    let topology = Topology {
        node: &config.node_name,
        zone: snapshot.node().zone.as_deref(),
    };
    for family in info.cluster_ips.iter().map(AddressFamily::of) {
        let of_family = |ips: &[IpAddr]| -> Vec<IpAddr> {
            ips.iter()
                .copied()
                .filter(|a| AddressFamily::of(a) == family)
                .collect()
        };
        let cluster_ips = of_family(&info.cluster_ips);
        let external_ips = of_family(&info.external_ips);
        let lb_ips = of_family(&info.load_balancer_ips);
        let node_ips: Vec<IpAddr> = of_family(snapshot.node_addresses())
            .into_iter()
            .filter(|a| config.node_port_address(*a, snapshot.node()))
            .collect();
        for port in &info.ports {
            // Which virtual servers this port makes, and whether each takes
            // the internal (cluster IP) or the external real servers.
            let mut targets: Vec<(VirtualServerKind, IpAddr, u16, bool)> = Vec::new();
            targets.extend(
                cluster_ips
                    .iter()
                    .map(|ip| (VirtualServerKind::ClusterIp, *ip, port.port, false)),
            );
            targets.extend(
                external_ips
                    .iter()
                    .map(|ip| (VirtualServerKind::ExternalIp, *ip, port.port, true)),
            );
            targets.extend(
                lb_ips
                    .iter()
                    .map(|ip| (VirtualServerKind::LoadBalancer, *ip, port.port, true)),
            );
            if let Some(node_port) = port.node_port {
                targets.extend(
                    node_ips
                        .iter()
                        .map(|ip| (VirtualServerKind::NodePort, *ip, node_port, true)),
                );
            }
            if taken.contains(&(port.protocol, port.port, family)) {
                // A stream-services entry serves this port everywhere but
                // on the cluster IPs.
                targets.retain(|t| t.0 == VirtualServerKind::ClusterIp);
            }
            // kube-proxy's `UsesClusterEndpoints`/`UsesLocalEndpoints`
            // (`pkg/proxy/serviceport.go`): a port reachable from outside
            // needs the Cluster endpoints even under two Local policies, for
            // the fallback below.
            let external =
                port.node_port.is_some() || !external_ips.is_empty() || !lb_ips.is_empty();
            let uses_cluster = !info.internal_local || external;
            let uses_local = info.internal_local || (info.external_local && external);
            let sorted = categorize(
                &candidates(&slices, family, port),
                topology,
                uses_cluster,
                uses_local,
            );
            let internal = sorted.real_servers(info.internal_local);
            let external = sorted.real_servers(info.external_local);
            let name = port.display_name();
            for (kind, address, vport, is_external) in targets {
                let (real_servers, local) = if is_external {
                    (&external, info.external_local)
                } else {
                    (&internal, info.internal_local)
                };
                out.add(
                    Target {
                        kind,
                        address,
                        protocol: port.protocol,
                        port: vport,
                        traffic_policy: TrafficPolicy::local_if(local),
                    },
                    &name,
                    real_servers,
                );
            }
        }
    }
    Some(out.state)
}

/// The desired state of one stream-services entry; `None` when the
/// snapshot does not hold it or it cannot be served (each reason recorded in
/// `skipped`).
///
/// Per address family of the publish Service: a virtual server on each of
/// its load-balancer ingress IPs and external IPs at the entry's port and,
/// when it declares that port (number and protocol) with a node port, on
/// each node-port address at that node port; real servers from the target
/// Service port's endpoints of the family, under the publish Service's
/// `externalTrafficPolicy` and the target's topology; the target's
/// scheduler and session affinity, the publish Service's source ranges.
pub fn desired_stream_checked(
    snapshot: &Snapshot,
    config: &Config,
    entry: &StreamEntryRef,
    skipped: &mut Vec<Skipped>,
) -> Option<ServiceState> {
    let target = snapshot.stream_entry(entry)?;
    let skip_kind = SkipKind::from(entry.kind);
    let object = entry.object();
    let resolved = publish_service(snapshot, config)
        .and_then(|publish| Ok((publish, resolve(snapshot, entry.kind, target)?)));
    let (publish, (info, port)) = match resolved {
        Ok(resolved) => resolved,
        Err(reason) => {
            skipped.push(Skipped::new(skip_kind, object, reason));
            return None;
        }
    };
    // The target's own mapping reports what is wrong with its annotations.
    let (scheduler, flags) = info.scheduler.resolve(
        &config.scheduler,
        &target.service.to_string(),
        &mut Vec::new(),
    );
    let mut out = Mapper {
        affinity_timeout: info.affinity_timeout,
        source_ranges: &publish.source_ranges,
        node_addresses: snapshot.node_addresses(),
        scheduler,
        flags,
        skip_kind,
        object,
        skipped,
        state: ServiceState {
            target: Some(target.service.clone()),
            ..ServiceState::default()
        },
    };
    let protocol = entry.kind.protocol();
    let node_port = publish
        .ports
        .iter()
        .find(|p| p.protocol == protocol && p.port == entry.port)
        .and_then(|p| p.node_port);
    let slices: Vec<&SliceInfo> = snapshot.slices_of(&target.service).collect();
    let topology = Topology {
        node: &config.node_name,
        zone: snapshot.node().zone.as_deref(),
    };
    let port_name = target.port.to_string();
    for family in publish.cluster_ips.iter().map(AddressFamily::of) {
        let of_family = |ips: &[IpAddr]| -> Vec<IpAddr> {
            ips.iter()
                .copied()
                .filter(|a| AddressFamily::of(a) == family)
                .collect()
        };
        let mut targets: Vec<(VirtualServerKind, IpAddr, u16)> = Vec::new();
        targets.extend(
            of_family(&publish.external_ips)
                .into_iter()
                .map(|ip| (VirtualServerKind::ExternalIp, ip, entry.port)),
        );
        targets.extend(
            of_family(&publish.load_balancer_ips)
                .into_iter()
                .map(|ip| (VirtualServerKind::LoadBalancer, ip, entry.port)),
        );
        if let Some(node_port) = node_port {
            targets.extend(
                of_family(snapshot.node_addresses())
                    .into_iter()
                    .filter(|a| config.node_port_address(*a, snapshot.node()))
                    .map(|ip| (VirtualServerKind::NodePort, ip, node_port)),
            );
        }
        if targets.is_empty() {
            continue;
        }
        if !info
            .cluster_ips
            .iter()
            .any(|ip| AddressFamily::of(ip) == family)
        {
            out.skipped.push(Skipped::new(
                skip_kind,
                out.object.clone(),
                SkipReason::StreamFamily {
                    service: target.service.clone(),
                    family,
                },
            ));
            continue;
        }
        // Every target of an entry is external: the publish Service's
        // external traffic policy applies, with kube-proxy's fallback to the
        // Cluster endpoints when this node has none (`syncEndpoint`).
        let local = publish.external_local;
        let sorted = categorize(&candidates(&slices, family, port), topology, true, local);
        let real_servers = sorted.real_servers(local);
        for (kind, address, vport) in targets {
            out.add(
                Target {
                    kind,
                    address,
                    protocol,
                    port: vport,
                    traffic_policy: TrafficPolicy::local_if(local),
                },
                &port_name,
                &real_servers,
            );
        }
    }
    Some(out.state)
}

/// Builds one owner's virtual servers.
struct Mapper<'a> {
    /// The session-affinity timeout (`sessionAffinity: ClientIP`).
    affinity_timeout: Option<u32>,
    /// The source ranges of load-balancer virtual servers.
    source_ranges: &'a [IpNetwork],
    /// The node's own addresses: never bound on the dummy interface.
    node_addresses: &'a [IpAddr],
    scheduler: Scheduler,
    flags: ServiceFlags,
    /// The kind and name skips of the owner are recorded under.
    skip_kind: SkipKind,
    object: String,
    skipped: &'a mut Vec<Skipped>,
    state: ServiceState,
}

/// One virtual server a Service port makes.
struct Target {
    kind: VirtualServerKind,
    address: IpAddr,
    protocol: Protocol,
    port: u16,
    traffic_policy: TrafficPolicy,
}

impl Mapper<'_> {
    fn add(&mut self, target: Target, port_name: &str, real_servers: &RealServers) {
        let Target {
            kind,
            address,
            protocol,
            port,
            traffic_policy,
        } = target;
        let key = VirtualServerKey::inet(protocol, address, port);
        if self.state.virtual_servers.contains_key(&key) {
            self.skipped.push(Skipped::new(
                self.skip_kind,
                self.object.clone(),
                SkipReason::Duplicate {
                    field: "virtual server",
                    value: format!("{key} ({})", kind.as_str()),
                },
            ));
            return;
        }
        let mut service = VirtualServer::new(key, self.scheduler.clone());
        if let Some(timeout) = self.affinity_timeout {
            service = service.persistent(timeout);
        }
        service.flags |= self.flags;
        let source_ranges: Vec<IpNetwork> = match kind {
            VirtualServerKind::LoadBalancer => self.source_ranges.to_vec(),
            _ => Vec::new(),
        };
        self.state.virtual_servers.insert(
            key,
            DesiredVirtualServer {
                service,
                real_servers: real_servers.clone(),
                port_name: port_name.to_owned(),
                kind,
                source_ranges,
                traffic_policy,
            },
        );
        // An external or load-balancer IP that is already the node's is
        // served where it is: binding it on the dummy interface would make
        // it a VIP whose other ports the firewall closes (kube-proxy:
        // `syncService` binds only when `shouldBind`, not for node IPs).
        if kind != VirtualServerKind::NodePort && !self.node_addresses.contains(&address) {
            self.state.addresses.insert(address);
        }
    }
}
