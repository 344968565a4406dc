//! The node the agent runs on: its zone, and its addresses as the Node
//! object reports them.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::Node;

use crate::skip::{SkipKind, SkipReason, Skipped};

/// The label holding the node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The taint the cluster autoscaler puts on a Node it is about to delete.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// What the mapping, the packet filter and the health endpoint need of the Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `topology.kubernetes.io/zone`, for topology-aware routing.
    pub zone: Option<Box<str>>,
    /// Whether load balancers should send traffic to the node.
    pub eligibility: Eligibility,
    /// The node's primary IPs, at most one per family, as kube-proxy
    /// detects them (`GetNodeHostIPs`): the first `InternalIP` of each
    /// family, else the first `ExternalIP`; the first listed is first.
    pub primary_ips: Vec<IpAddr>,
    /// `spec.podCIDRs` (else `spec.podCIDR`): the node's pod ranges, what
    /// `--detect-local-mode=NodeCIDR` takes as local traffic.
    pub pod_cidrs: Vec<IpNetwork>,
}

/// Whether the node should take load-balancer traffic, as kube-proxy's
/// `ProxyHealthServer.NodeEligible` (`pkg/proxy/healthcheck/proxy_health.go`)
/// decides it: not while it is being deleted or the cluster autoscaler has
/// marked it for deletion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Eligibility {
    /// Eligible (also before any Node object is seen: the agent may run
    /// without one).
    #[default]
    Eligible,
    /// `metadata.deletionTimestamp` is set.
    Deleting,
    /// Tainted `ToBeDeletedByClusterAutoscaler`.
    ToBeDeleted,
}

impl Eligibility {
    /// Whether the node is eligible.
    pub fn eligible(self) -> bool {
        self == Eligibility::Eligible
    }

    /// A label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Eligibility::Eligible => "eligible",
            Eligibility::Deleting => "deleting",
            Eligibility::ToBeDeleted => "to_be_deleted",
        }
    }
}

impl NodeInfo {
    /// Converts a Node.
    pub fn from_node(node: &Node) -> Self {
        let zone = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ZONE_LABEL))
            .filter(|z| !z.is_empty())
            .map(|z| Box::from(z.as_str()));
        let tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .any(|t| t.key == TO_BE_DELETED_TAINT);
        let eligibility = if node.metadata.deletion_timestamp.is_some() {
            Eligibility::Deleting
        } else if tainted {
            Eligibility::ToBeDeleted
        } else {
            Eligibility::Eligible
        };
        NodeInfo {
            zone,
            eligibility,
            primary_ips: primary_ips(node),
            pod_cidrs: pod_cidrs(node),
        }
    }
}

/// The first `InternalIP` of each family, else the first `ExternalIP`;
/// ordered by the first address of all (kube-proxy's `GetNodeHostIPs`).
fn primary_ips(node: &Node) -> Vec<IpAddr> {
    let listed = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let of_type = |t: &'static str| {
        listed
            .iter()
            .filter(move |a| a.type_ == t)
            .filter_map(|a| a.address.trim().parse::<IpAddr>().ok())
    };
    let all: Vec<IpAddr> = of_type("InternalIP").chain(of_type("ExternalIP")).collect();
    let Some(first) = all.first().copied() else {
        return Vec::new();
    };
    let mut out = vec![first];
    out.extend(all.iter().copied().find(|a| a.is_ipv4() != first.is_ipv4()));
    out
}

fn pod_cidrs(node: &Node) -> Vec<IpNetwork> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<&String> = match &spec.pod_cidrs {
        Some(cidrs) if !cidrs.is_empty() => cidrs.iter().collect(),
        _ => spec.pod_cidr.iter().collect(),
    };
    listed
        .into_iter()
        .filter_map(|c| c.trim().parse::<IpNetwork>().ok())
        .filter_map(|n| IpNetwork::new(n.network(), n.prefix()).ok())
        .collect()
}

/// The `InternalIP` and `ExternalIP` addresses of a Node object, without
/// repeats, in the order listed: the node addresses for a caller that cannot
/// list the node's interfaces. Entries that are not IP addresses are left
/// out and recorded in `skipped`.
pub fn node_object_addresses_checked(node: &Node, skipped: &mut Vec<Skipped>) -> Vec<IpAddr> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    let listed = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP");
    for a in listed {
        match a.address.trim().parse::<IpAddr>() {
            Ok(ip) if !out.contains(&ip) => out.push(ip),
            Ok(_) => {}
            Err(_) => skipped.push(Skipped::new(
                SkipKind::Node,
                name,
                SkipReason::InvalidAddress {
                    field: "status.addresses[].address",
                    value: a.address.clone(),
                },
            )),
        }
    }
    out
}

/// [`node_object_addresses_checked`] without the record of what was left out.
pub fn node_object_addresses(node: &Node) -> Vec<IpAddr> {
    node_object_addresses_checked(node, &mut Vec::new())
}
