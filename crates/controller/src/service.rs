//! A Service, reduced to what the mapping needs.
//!
//! Conversion validates every field it keeps: what does not parse is left
//! out and recorded, the rest of the Service is kept.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube_ipvs_model::{AddressFamily, Protocol};

use crate::scheduling::SchedulerRequest;
use crate::service_ref::ServiceRef;
use crate::skip::{SkipKind, SkipReason, Skipped};

/// The label naming the proxy a Service belongs to.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// The annotation asking for topology-aware routing (`Auto`).
pub const TOPOLOGY_MODE_ANNOTATION: &str = "service.kubernetes.io/topology-mode";
/// The older annotation asking for topology-aware hints (`auto`).
pub const TOPOLOGY_HINTS_ANNOTATION: &str = "service.kubernetes.io/topology-aware-hints";
/// The annotation the cloud providers read when `spec.loadBalancerSourceRanges` is empty.
pub const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// The session-affinity timeout when the Service does not set one (3 hours,
/// the API's default).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;
const MAX_AFFINITY_TIMEOUT: i32 = 86400;

/// What the mapping needs of a Service. A Service that is not proxied at all
/// (headless, ExternalName, no cluster IP yet) has no cluster IP here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The `service.kubernetes.io/service-proxy-name` label.
    pub proxy_name: Option<Box<str>>,
    /// `spec.clusterIPs` (or `spec.clusterIP`): at most one per family.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs` of a family the Service has a cluster IP of.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` of a family the Service has a
    /// cluster IP of, except `ipMode: Proxy` entries.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges`, or the annotation when that is empty.
    pub source_ranges: Vec<IpNetwork>,
    /// The ports that map.
    pub ports: Vec<PortInfo>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// Whether the Service asks for topology-aware routing. Shown, not
    /// used: as kube-proxy, the mapping follows the slices' hints whenever
    /// they are complete, whoever asked for them.
    pub topology_aware: bool,
    /// `spec.healthCheckNodePort` of a `LoadBalancer` Service with
    /// `externalTrafficPolicy: Local`: the port its health check is served
    /// on (kube-proxy's `NeedsHealthCheck`). Validated against the node-port
    /// range and other Services by [`crate::health_check`].
    pub health_check_node_port: Option<u16>,
    /// The session-affinity timeout in seconds, for `sessionAffinity: ClientIP`.
    pub affinity_timeout: Option<u32>,
    /// The scheduler the annotations ask for.
    pub scheduler: SchedulerRequest,
}

/// A Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Its name (`None` when unnamed).
    pub name: Option<Box<str>>,
    /// Its protocol.
    pub protocol: Protocol,
    /// `port`.
    pub port: u16,
    /// `nodePort`, if allocated.
    pub node_port: Option<u16>,
}

impl PortInfo {
    /// The name the CLI shows: the port's name, or its number when unnamed.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.to_string(),
            None => self.port.to_string(),
        }
    }
}

/// Parses a protocol as the API spells it; unset means TCP.
pub(crate) fn protocol(value: Option<&str>) -> Result<Protocol, String> {
    match value {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(other.to_owned()),
    }
}

/// A port number in 1-65535.
pub(crate) fn port_number(value: i32) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p != 0)
}

/// The namespace and name of an object; a missing namespace is `default`,
/// as `kubectl` reads a manifest without one.
pub(crate) fn object_ref(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, Option<&str>) {
    let namespace = meta
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    (namespace, meta.name.as_deref().filter(|n| !n.is_empty()))
}

struct Reader<'a> {
    object: String,
    skipped: &'a mut Vec<Skipped>,
}

impl Reader<'_> {
    fn skip(&mut self, reason: SkipReason) {
        self.skipped
            .push(Skipped::new(SkipKind::Service, self.object.clone(), reason));
    }

    fn address(&mut self, field: &'static str, value: &str) -> Option<IpAddr> {
        match value.trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.skip(SkipReason::InvalidAddress {
                    field,
                    value: value.to_owned(),
                });
                None
            }
        }
    }

    fn cluster_ips(&mut self, spec: &ServiceSpec) -> Vec<IpAddr> {
        let listed: Vec<&str> = match (&spec.cluster_ips, &spec.cluster_ip) {
            (Some(ips), _) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            (_, Some(ip)) => vec![ip.as_str()],
            _ => Vec::new(),
        };
        // "None" (headless) or "": nothing to proxy.
        if listed
            .first()
            .is_none_or(|ip| ip.is_empty() || *ip == "None")
        {
            return Vec::new();
        }
        let families = spec.ip_families.as_deref().unwrap_or_default();
        let mut ips: Vec<IpAddr> = Vec::new();
        for (i, value) in listed.into_iter().enumerate() {
            let Some(ip) = self.address("spec.clusterIPs", value) else {
                continue;
            };
            let expected = match families.get(i).map(String::as_str) {
                Some("IPv4") => Some(AddressFamily::Inet),
                Some("IPv6") => Some(AddressFamily::Inet6),
                _ => None,
            };
            if let Some(expected) = expected.filter(|f| *f != AddressFamily::of(&ip)) {
                self.skip(SkipReason::WrongFamily {
                    field: "spec.clusterIPs",
                    address: ip,
                    expected,
                });
            } else if ips
                .iter()
                .any(|c| AddressFamily::of(c) == AddressFamily::of(&ip))
            {
                self.skip(SkipReason::Duplicate {
                    field: "spec.clusterIPs",
                    value: format!("address family ({ip})"),
                });
            } else {
                ips.push(ip);
            }
        }
        ips
    }

    /// Addresses of a family the Service has a cluster IP of, without repeats.
    fn served(
        &mut self,
        field: &'static str,
        cluster_ips: &[IpAddr],
        values: &[&str],
    ) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for value in values {
            let Some(ip) = self.address(field, value) else {
                continue;
            };
            if !cluster_ips
                .iter()
                .any(|c| AddressFamily::of(c) == AddressFamily::of(&ip))
            {
                self.skip(SkipReason::FamilyNotServed { field, address: ip });
            } else if out.contains(&ip) {
                self.skip(SkipReason::Duplicate {
                    field,
                    value: ip.to_string(),
                });
            } else {
                out.push(ip);
            }
        }
        out
    }

    fn source_ranges(
        &mut self,
        spec: &ServiceSpec,
        annotations: &BTreeMap<String, String>,
    ) -> Vec<IpNetwork> {
        let (field, values): (&'static str, Vec<&str>) = match &spec.load_balancer_source_ranges {
            Some(r) if !r.is_empty() => (
                "spec.loadBalancerSourceRanges",
                r.iter().map(String::as_str).collect(),
            ),
            _ => match annotations.get(SOURCE_RANGES_ANNOTATION) {
                Some(a) => (
                    SOURCE_RANGES_ANNOTATION,
                    a.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect(),
                ),
                None => return Vec::new(),
            },
        };
        let mut out = Vec::new();
        for value in values {
            match value.trim().parse::<IpNetwork>() {
                Ok(n) if !out.contains(&n) => out.push(n),
                Ok(_) => {}
                Err(_) => self.skip(SkipReason::InvalidCidr {
                    field,
                    value: value.to_owned(),
                }),
            }
        }
        out
    }

    fn ports(&mut self, ports: &[ServicePort]) -> Vec<PortInfo> {
        let mut out: Vec<PortInfo> = Vec::new();
        for p in ports {
            let protocol = match protocol(p.protocol.as_deref()) {
                Ok(protocol) => protocol,
                Err(value) => {
                    self.skip(SkipReason::UnknownProtocol {
                        field: "spec.ports[].protocol",
                        value,
                    });
                    continue;
                }
            };
            let Some(port) = port_number(p.port) else {
                self.skip(SkipReason::InvalidPort {
                    field: "spec.ports[].port",
                    value: p.port,
                });
                continue;
            };
            let node_port = match p.node_port {
                None | Some(0) => None,
                Some(n) => {
                    let valid = port_number(n);
                    if valid.is_none() {
                        self.skip(SkipReason::InvalidPort {
                            field: "spec.ports[].nodePort",
                            value: n,
                        });
                    }
                    valid
                }
            };
            let name = p.name.as_deref().filter(|n| !n.is_empty()).map(Box::from);
            let info = PortInfo {
                name,
                protocol,
                port,
                node_port,
            };
            if out.iter().any(|o| o.port == port && o.protocol == protocol) {
                self.skip(SkipReason::Duplicate {
                    field: "spec.ports[]",
                    value: format!("{protocol} port {port}"),
                });
                continue;
            }
            out.push(info);
        }
        out
    }

    fn policy(&mut self, field: &'static str, value: Option<&str>) -> bool {
        match value {
            None | Some("Cluster") => false,
            Some("Local") => true,
            Some(other) => {
                self.skip(SkipReason::InvalidValue {
                    field,
                    value: other.to_owned(),
                    fallback: "Cluster",
                });
                false
            }
        }
    }

    fn affinity(&mut self, spec: &ServiceSpec) -> Option<u32> {
        match spec.session_affinity.as_deref() {
            None | Some("None") => return None,
            Some("ClientIP") => {}
            Some(other) => {
                self.skip(SkipReason::InvalidValue {
                    field: "spec.sessionAffinity",
                    value: other.to_owned(),
                    fallback: "None",
                });
                return None;
            }
        }
        let timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds);
        match timeout {
            None => Some(DEFAULT_AFFINITY_TIMEOUT),
            Some(t) if (1..=MAX_AFFINITY_TIMEOUT).contains(&t) => u32::try_from(t).ok(),
            Some(t) => {
                self.skip(SkipReason::InvalidValue {
                    field: "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    value: t.to_string(),
                    fallback: "10800",
                });
                Some(DEFAULT_AFFINITY_TIMEOUT)
            }
        }
    }
}

/// Whether `value` is a label value the API admits: at most 63 characters,
/// alphanumerics with `-`, `_` and `.` inside, beginning and ending with an
/// alphanumeric; or empty.
pub fn valid_label_value(value: &str) -> bool {
    let inner_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = |b: Option<u8>| b.is_none_or(|b| b.is_ascii_alphanumeric());
    value.len() <= 63 && inner_ok && ends_ok(value.bytes().next()) && ends_ok(value.bytes().last())
}

fn topology_aware(spec: &ServiceSpec, annotations: &BTreeMap<String, String>) -> bool {
    let auto = |name| {
        annotations
            .get(name)
            .is_some_and(|v| v == "Auto" || v == "auto")
    };
    // PreferSameZone is the newer name of PreferClose.
    matches!(
        spec.traffic_distribution.as_deref(),
        Some("PreferClose" | "PreferSameZone" | "PreferSameNode")
    ) || auto(TOPOLOGY_MODE_ANNOTATION)
        || auto(TOPOLOGY_HINTS_ANNOTATION)
}

impl ServiceInfo {
    /// Converts a Service, recording what it leaves out in `skipped`.
    /// `None` when the Service has no name.
    pub fn from_service(
        service: &Service,
        skipped: &mut Vec<Skipped>,
    ) -> Option<(ServiceRef, ServiceInfo)> {
        let (namespace, name) = object_ref(&service.metadata);
        let Some(name) = name else {
            skipped.push(Skipped::new(
                SkipKind::Service,
                format!("{namespace}/"),
                SkipReason::MissingName,
            ));
            return None;
        };
        let key = ServiceRef::new(namespace, name);
        let mut info = ServiceInfo::default();
        let spec = match &service.spec {
            Some(spec) if spec.type_.as_deref() != Some("ExternalName") => spec,
            _ => return Some((key, info)),
        };
        let mut r = Reader {
            object: key.to_string(),
            skipped,
        };
        info.cluster_ips = r.cluster_ips(spec);
        if info.cluster_ips.is_empty() {
            return Some((key, info));
        }
        let empty = BTreeMap::new();
        let labels = service.metadata.labels.as_ref().unwrap_or(&empty);
        let annotations = service.metadata.annotations.as_ref().unwrap_or(&empty);
        info.proxy_name = labels
            .get(SERVICE_PROXY_NAME_LABEL)
            .map(|n| Box::from(n.as_str()));
        if let Some(name) = info.proxy_name.as_deref().filter(|n| !valid_label_value(n)) {
            // Kept as it is, so no proxy's name matches it: nobody serves it.
            r.skip(SkipReason::InvalidLabelValue {
                label: SERVICE_PROXY_NAME_LABEL,
                value: name.to_owned(),
            });
        }

        let external: Vec<&str> = spec
            .external_ips
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        info.external_ips = r.served("spec.externalIPs", &info.cluster_ips, &external);
        let ingress: Vec<&str> = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|i| i.ip.as_deref())
            .filter(|ip| !ip.is_empty())
            .collect();
        info.load_balancer_ips = r.served(
            "status.loadBalancer.ingress[].ip",
            &info.cluster_ips,
            &ingress,
        );
        info.source_ranges = r.source_ranges(spec, annotations);
        info.ports = r.ports(spec.ports.as_deref().unwrap_or_default());
        info.internal_local = r.policy(
            "spec.internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
        );
        info.external_local = r.policy(
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy.as_deref(),
        );
        info.topology_aware = topology_aware(spec, annotations);
        if info.external_local && spec.type_.as_deref() == Some("LoadBalancer") {
            info.health_check_node_port = match spec.health_check_node_port {
                None | Some(0) => None,
                Some(n) => {
                    let valid = port_number(n);
                    if valid.is_none() {
                        r.skip(SkipReason::InvalidPort {
                            field: "spec.healthCheckNodePort",
                            value: n,
                        });
                    }
                    valid
                }
            };
        }
        info.affinity_timeout = r.affinity(spec);
        info.scheduler = SchedulerRequest::from_annotations(annotations, &r.object, r.skipped);
        // Ten thousand Services are held at once: no spare capacity.
        info.cluster_ips.shrink_to_fit();
        info.ports.shrink_to_fit();
        Some((key, info))
    }

    /// Whether the Service has anything to proxy.
    pub fn proxied(&self) -> bool {
        !self.cluster_ips.is_empty()
    }
}
