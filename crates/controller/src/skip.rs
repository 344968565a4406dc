//! Objects, or pieces of objects, that could not be mapped, and why.
//!
//! Bad input from the API is data: the piece that cannot be mapped is left
//! out, named here, and everything else still maps. Each reason has a
//! `&'static str` label for metrics and a message with the detail for logs.

use std::fmt;
use std::net::IpAddr;

use kube_ipvs_model::{AddressFamily, Protocol, Scheduler, VirtualServerKey};

use crate::service_ref::{Owner, ServiceRef, StreamKind};

/// The kind of object a skip is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipKind {
    /// A `v1` Service.
    Service,
    /// A `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
    /// A `v1` Endpoints, mirrored into EndpointSlices.
    Endpoints,
    /// The `v1` Node the agent runs on.
    Node,
    /// An entry of the `--tcp-services-configmap` ConfigMap.
    TcpServices,
    /// An entry of the `--udp-services-configmap` ConfigMap.
    UdpServices,
}

impl SkipKind {
    /// The Kubernetes kind, as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipKind::Service => "Service",
            SkipKind::EndpointSlice => "EndpointSlice",
            SkipKind::Endpoints => "Endpoints",
            SkipKind::Node => "Node",
            SkipKind::TcpServices => "tcp-services",
            SkipKind::UdpServices => "udp-services",
        }
    }

    /// The kind of skip about `owner`'s mapping.
    pub fn of(owner: &Owner) -> Self {
        match owner {
            Owner::Service(_) => SkipKind::Service,
            Owner::Stream(entry) => entry.kind.into(),
        }
    }
}

impl From<StreamKind> for SkipKind {
    fn from(kind: StreamKind) -> Self {
        match kind {
            StreamKind::Tcp => SkipKind::TcpServices,
            StreamKind::Udp => SkipKind::UdpServices,
        }
    }
}

impl fmt::Display for SkipKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of input left out of the mapping.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Skipped {
    /// The kind of object.
    pub kind: SkipKind,
    /// The object, as `namespace/name` (`name` alone for a Node,
    /// `namespace/name:key` for an entry of a stream-services ConfigMap).
    pub object: String,
    /// Why.
    pub reason: SkipReason,
}

impl Skipped {
    /// A skip of `kind` `object` for `reason`.
    pub fn new(kind: SkipKind, object: impl Into<String>, reason: SkipReason) -> Self {
        Skipped {
            kind,
            object: object.into(),
            reason,
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.object, self.reason)
    }
}

fn family_name(family: AddressFamily) -> &'static str {
    match family {
        AddressFamily::Inet => "IPv4",
        AddressFamily::Inet6 => "IPv6",
    }
}

/// Why a piece of input was left out. `field` names the field as the API
/// spells it (`spec.clusterIPs`, `endpoints[].addresses`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SkipReason {
    /// The object has no `metadata.name`, so nothing can refer to it.
    #[error("no metadata.name")]
    MissingName,
    /// A field that must hold an IP address holds something else.
    #[error("{field}: {value:?} is not an IP address")]
    InvalidAddress {
        /// The field.
        field: &'static str,
        /// What it holds.
        value: String,
    },
    /// An address of a family the object cannot use here.
    #[error("{field}: {address} is not {}", family_name(*.expected))]
    WrongFamily {
        /// The field.
        field: &'static str,
        /// The address.
        address: IpAddr,
        /// The family it should have been.
        expected: AddressFamily,
    },
    /// An address of a family the Service has no cluster IP for.
    #[error("{field}: {address}: the Service has no {} cluster IP", family_name(AddressFamily::of(.address)))]
    FamilyNotServed {
        /// The field.
        field: &'static str,
        /// The address.
        address: IpAddr,
    },
    /// A port number outside 1-65535.
    #[error("{field}: port {value} is outside 1-65535")]
    InvalidPort {
        /// The field.
        field: &'static str,
        /// The number.
        value: i32,
    },
    /// A port without a number (an EndpointSlice port meaning "all ports",
    /// which IPVS cannot express).
    #[error("{field}: port {name:?} has no number")]
    MissingPort {
        /// The field.
        field: &'static str,
        /// The port's name.
        name: String,
    },
    /// A protocol other than TCP, UDP and SCTP.
    #[error("{field}: unknown protocol {value:?}")]
    UnknownProtocol {
        /// The field.
        field: &'static str,
        /// The protocol.
        value: String,
    },
    /// An EndpointSlice `addressType` other than IPv4, IPv6 and FQDN.
    #[error("addressType: unknown address type {value:?}")]
    UnknownAddressType {
        /// The type.
        value: String,
    },
    /// An endpoint without any address.
    #[error("{field}: no address")]
    MissingAddress {
        /// The field.
        field: &'static str,
    },
    /// A value that repeats one already taken.
    #[error("{field}: duplicate {value}")]
    Duplicate {
        /// The field.
        field: &'static str,
        /// The repeated value.
        value: String,
    },
    /// A field with a value the API does not define; the fallback is used.
    #[error("{field}: unknown value {value:?}, using {fallback}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
        /// What is used instead.
        fallback: &'static str,
    },
    /// A label whose value the API would not admit; the object is left to
    /// no proxy rather than guessed at.
    #[error("label {label}: {value:?} is not a valid label value")]
    InvalidLabelValue {
        /// The label.
        label: &'static str,
        /// The value.
        value: String,
    },
    /// A CIDR that does not parse.
    #[error("{field}: {value:?} is not a CIDR")]
    InvalidCidr {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A scheduler annotation naming no known scheduler; the default is used.
    #[error("annotation {annotation}: unknown scheduler {value:?}, using the default")]
    UnknownScheduler {
        /// The annotation.
        annotation: &'static str,
        /// Its value.
        value: String,
    },
    /// A scheduler-flags annotation that does not parse; no flag is set.
    #[error("annotation {annotation}: invalid scheduler flags {value:?} ({why}), setting none")]
    InvalidSchedulerFlags {
        /// The annotation.
        annotation: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Scheduler flags that the Service's scheduler does not take; no flag is set.
    #[error("annotation {annotation}: flags {value:?} do not apply to scheduler {scheduler}, setting none")]
    SchedulerFlagsMismatch {
        /// The annotation.
        annotation: &'static str,
        /// Its value.
        value: String,
        /// The scheduler the Service uses.
        scheduler: Scheduler,
    },
    /// A topology hint naming something no zone or node can be called; the
    /// hint is left out.
    #[error("{field}: {value:?} names no zone or node")]
    InvalidHint {
        /// The field.
        field: &'static str,
        /// The name.
        value: String,
    },
    /// A `healthCheckNodePort` outside the node-port range; no health check
    /// is served for the Service.
    #[error("spec.healthCheckNodePort: {port} is outside the node-port range {low}-{high}")]
    HealthCheckPortOutOfRange {
        /// The port.
        port: u16,
        /// The range's first port.
        low: u16,
        /// The range's last port.
        high: u16,
    },
    /// A `healthCheckNodePort` another Service holds (as its health check
    /// port or a node port); that Service keeps it.
    #[error("spec.healthCheckNodePort: {port} is taken by {owner}")]
    HealthCheckPortTaken {
        /// The port.
        port: u16,
        /// The Service that keeps it.
        owner: ServiceRef,
    },
    /// A virtual server another Service (or stream-services entry) wants
    /// too; Services come first, then entries, each by name, and the first
    /// keeps it.
    #[error("virtual server {key} is also wanted by {owner}, which keeps it")]
    Conflict {
        /// The virtual server.
        key: VirtualServerKey,
        /// What keeps it.
        owner: Owner,
    },
    /// A stream-services key that is not a port number in 1-65535.
    #[error("key {key:?} is not a port in 1-65535")]
    StreamKey {
        /// The key.
        key: String,
    },
    /// A stream-services value that is not
    /// `namespace/service:port[:PROXY[:PROXY]]`.
    #[error("value {value:?} is not namespace/service:port[:PROXY[:PROXY]]: {why}")]
    StreamValue {
        /// The value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A TCP stream-services entry asking for the PROXY protocol, which
    /// IPVS cannot speak; it is not served without it.
    #[error("value {value:?} asks for the PROXY protocol, which IPVS cannot add or strip")]
    ProxyProtocol {
        /// The value.
        value: String,
    },
    /// A Service a stream-services entry needs is not in the cluster (or not
    /// watched).
    #[error("{role} Service {service} not found")]
    UnknownService {
        /// `target` (the value's Service) or `publish` (`--publish-service`).
        role: &'static str,
        /// The Service.
        service: ServiceRef,
    },
    /// A Service a stream-services entry needs has nothing proxied here:
    /// headless, ExternalName, no cluster IP yet, or another proxy's.
    #[error("{role} Service {service} is not proxied here (headless, ExternalName, no cluster IP, or another proxy's)")]
    NotProxied {
        /// `target` or `publish`.
        role: &'static str,
        /// The Service.
        service: ServiceRef,
    },
    /// The target Service has no port with that number or name and the
    /// entry's protocol.
    #[error("Service {service} has no {protocol} port {port}")]
    UnknownServicePort {
        /// The Service.
        service: ServiceRef,
        /// The port as the value names it: a number or a name.
        port: String,
        /// The protocol of the entry's ConfigMap.
        protocol: Protocol,
    },
    /// The publish Service has addresses of a family the target Service has
    /// no cluster IP of; the entry is not served in that family.
    #[error("target Service {service} has no {} cluster IP for the publish Service's {} addresses", family_name(*.family), family_name(*.family))]
    StreamFamily {
        /// The target Service.
        service: ServiceRef,
        /// The family.
        family: AddressFamily,
    },
    /// Stream-services entries without `--publish-service`: no address to
    /// serve them on.
    #[error("no --publish-service: no address to serve the entry on")]
    NoPublishService,
}

impl SkipReason {
    /// A label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::MissingName => "missing_name",
            SkipReason::InvalidAddress { .. } => "invalid_address",
            SkipReason::WrongFamily { .. } => "wrong_family",
            SkipReason::FamilyNotServed { .. } => "family_not_served",
            SkipReason::InvalidPort { .. } => "invalid_port",
            SkipReason::MissingPort { .. } => "missing_port",
            SkipReason::UnknownProtocol { .. } => "unknown_protocol",
            SkipReason::UnknownAddressType { .. } => "unknown_address_type",
            SkipReason::MissingAddress { .. } => "missing_address",
            SkipReason::Duplicate { .. } => "duplicate",
            SkipReason::InvalidValue { .. } => "invalid_value",
            SkipReason::InvalidLabelValue { .. } => "invalid_label_value",
            SkipReason::InvalidCidr { .. } => "invalid_cidr",
            SkipReason::UnknownScheduler { .. } => "unknown_scheduler",
            SkipReason::InvalidSchedulerFlags { .. } => "invalid_scheduler_flags",
            SkipReason::SchedulerFlagsMismatch { .. } => "scheduler_flags_mismatch",
            SkipReason::InvalidHint { .. } => "invalid_hint",
            SkipReason::HealthCheckPortOutOfRange { .. } => "health_check_port_out_of_range",
            SkipReason::HealthCheckPortTaken { .. } => "health_check_port_taken",
            SkipReason::Conflict { .. } => "conflict",
            SkipReason::StreamKey { .. } => "invalid_key",
            SkipReason::StreamValue { .. } => "malformed_value",
            SkipReason::ProxyProtocol { .. } => "proxy_protocol",
            SkipReason::UnknownService { .. } => "unknown_service",
            SkipReason::NotProxied { .. } => "not_proxied",
            SkipReason::UnknownServicePort { .. } => "unknown_port",
            SkipReason::StreamFamily { .. } => "wrong_family",
            SkipReason::NoPublishService => "no_publish_service",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_object_and_detail() {
        let s = Skipped::new(
            SkipKind::Service,
            "default/web",
            SkipReason::InvalidPort {
                field: "spec.ports[].port",
                value: 70000,
            },
        );
        assert_eq!(
            s.to_string(),
            "Service default/web: spec.ports[].port: port 70000 is outside 1-65535"
        );
        assert_eq!(s.reason.as_str(), "invalid_port");
        let w = SkipReason::WrongFamily {
            field: "spec.clusterIPs",
            address: "10.0.0.1".parse().unwrap(),
            expected: AddressFamily::Inet6,
        };
        assert_eq!(w.to_string(), "spec.clusterIPs: 10.0.0.1 is not IPv6");
    }
}
