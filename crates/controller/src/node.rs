//! The node the agent runs on: its zone, and its addresses as the Node
//! object reports them.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

use crate::skip::{SkipKind, SkipReason, Skipped};

/// The label holding the node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// What the mapping needs of the Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `topology.kubernetes.io/zone`, for topology-aware routing.
    pub zone: Option<Box<str>>,
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
        NodeInfo { zone }
    }
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
