//! What the mapping takes from the agent's configuration rather than from
//! the cluster.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use kube_ipvs_model::Scheduler;

use crate::node::NodeInfo;
use crate::service_ref::{ConfigMapRef, ServiceRef, StreamKind};

/// The agent's settings the mapping depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The name of the node the agent runs on; endpoints with this
    /// `nodeName` are local (traffic policy `Local`).
    pub node_name: String,
    /// The scheduler of Services that do not ask for one (`--ipvs-scheduler`).
    pub scheduler: Scheduler,
    /// `service.kubernetes.io/service-proxy-name` this agent answers to.
    /// `None`: every Service with the label belongs to another proxy.
    pub service_proxy_name: Option<String>,
    /// `--nodeport-addresses`: node addresses NodePort virtual servers listen
    /// on. Per family, as in kube-proxy: a family with no entry listens on
    /// every address of that family.
    pub nodeport_addresses: Vec<IpNetwork>,
    /// `primary` in `--nodeport-addresses`: the node's primary IP of each
    /// family is an entry too.
    pub nodeport_primary: bool,
    /// `--bind-address` (kube-proxy's name for the node's primary IP): when
    /// set, the primary IP of its family, in place of the Node object's.
    pub bind_address: Option<IpAddr>,
    /// ingress-nginx's stream-services ConfigMaps and publish Service.
    pub streams: StreamConfig,
}

/// ingress-nginx's `--tcp-services-configmap`, `--udp-services-configmap`
/// and `--publish-service`: which ConfigMaps map external ports to Services,
/// and the Service whose addresses carry those ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamConfig {
    /// The ConfigMap of TCP entries.
    pub tcp_services: Option<ConfigMapRef>,
    /// The ConfigMap of UDP entries.
    pub udp_services: Option<ConfigMapRef>,
    /// The Service whose load-balancer IPs, external IPs and node ports
    /// carry the entries.
    pub publish_service: Option<ServiceRef>,
}

impl StreamConfig {
    /// The ConfigMap of `kind`'s entries, if one is configured.
    pub fn config_map(&self, kind: StreamKind) -> Option<&ConfigMapRef> {
        match kind {
            StreamKind::Tcp => self.tcp_services.as_ref(),
            StreamKind::Udp => self.udp_services.as_ref(),
        }
    }

    /// The configured ConfigMaps, TCP first.
    pub fn config_maps(&self) -> impl Iterator<Item = (StreamKind, &ConfigMapRef)> {
        StreamKind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind, self.config_map(kind)?)))
    }
}

impl Config {
    /// The defaults for the node `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Config {
            node_name: node_name.into(),
            ..Config::default()
        }
    }

    /// Whether a Service with this `service-proxy-name` label (if any) is
    /// ours. Without a name of our own, as kube-proxy: only unlabelled
    /// Services (a labelled one belongs to the proxy it names). With one,
    /// only the Services labelled with it: the rest are kube-proxy's or
    /// another proxy's.
    pub fn proxies(&self, proxy_name: Option<&str>) -> bool {
        proxy_name == self.service_proxy_name.as_deref()
    }

    /// Whether a NodePort virtual server may listen on the node address
    /// `address`, on the node `node`. Loopback, unspecified, multicast and
    /// IPv6 link-local addresses never qualify: IPVS cannot serve traffic to
    /// them (a link-local address also needs a scope the key has no room
    /// for). Otherwise the entries of `address`'s family decide (CIDRs, and
    /// with `primary` the node's primary IP of that family); with none,
    /// every address of the family qualifies, as kube-proxy's per-family
    /// `NodePortAddresses` has it.
    pub fn node_port_address(&self, address: IpAddr, node: &NodeInfo) -> bool {
        let usable = match address {
            IpAddr::V4(a) => !a.is_loopback() && !a.is_unspecified() && !a.is_multicast(),
            IpAddr::V6(a) => {
                !a.is_loopback()
                    && !a.is_unspecified()
                    && !a.is_multicast()
                    && (a.segments()[0] & 0xffc0) != 0xfe80
            }
        };
        if !usable {
            return false;
        }
        let v4 = address.is_ipv4();
        let mut entries = self
            .nodeport_addresses
            .iter()
            .filter(|n| n.is_ipv4() == v4)
            .peekable();
        let primary = self
            .nodeport_primary
            .then(|| self.primary_ip(v4, node))
            .flatten();
        if entries.peek().is_none() && primary.is_none() {
            return true;
        }
        primary == Some(address) || entries.any(|n| n.contains(address))
    }

    /// The node's primary IP of a family: `--bind-address` when it is of
    /// that family and set, else the Node object's (its first InternalIP of
    /// the family, else its first ExternalIP), as kube-proxy detects it.
    pub fn primary_ip(&self, v4: bool, node: &NodeInfo) -> Option<IpAddr> {
        let bind = self
            .bind_address
            .filter(|a| !a.is_unspecified() && a.is_ipv4() == v4);
        bind.or_else(|| node.primary_ips.iter().copied().find(|a| a.is_ipv4() == v4))
            .filter(|a| !a.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_name_label() {
        let mut config = Config::new("n1");
        assert!(config.proxies(None));
        assert!(!config.proxies(Some("other")));
        assert!(!config.proxies(Some("")));
        config.service_proxy_name = Some("kube-ipvs".into());
        assert!(!config.proxies(None));
        assert!(config.proxies(Some("kube-ipvs")));
        assert!(!config.proxies(Some("other")));
    }

    #[test]
    fn node_port_addresses() {
        let mut config = Config::new("n1");
        let node = NodeInfo::default();
        for (address, ok) in [
            ("10.0.0.1", true),
            ("127.0.0.1", false),
            ("0.0.0.0", false),
            ("2001:db8::1", true),
            ("fe80::1", false),
            ("::1", false),
        ] {
            assert_eq!(
                config.node_port_address(address.parse().unwrap(), &node),
                ok,
                "{address}"
            );
        }
        config.nodeport_addresses = vec!["10.0.0.0/24".parse().unwrap()];
        assert!(config.node_port_address("10.0.0.9".parse().unwrap(), &node));
        assert!(!config.node_port_address("10.0.1.9".parse().unwrap(), &node));
        // An IPv4-only list leaves IPv6 NodePorts on every IPv6 address,
        // as kube-proxy's per-family lists do.
        assert!(config.node_port_address("2001:db8::1".parse().unwrap(), &node));
        config
            .nodeport_addresses
            .push("2001:db8::/64".parse().unwrap());
        assert!(!config.node_port_address("2001:db9::1".parse().unwrap(), &node));
    }

    #[test]
    fn primary_node_port_addresses() {
        let node = NodeInfo {
            primary_ips: vec!["192.168.0.10".parse().unwrap(), "fd00::10".parse().unwrap()],
            ..NodeInfo::default()
        };
        let config = Config {
            nodeport_primary: true,
            ..Config::new("n1")
        };
        assert!(config.node_port_address("192.168.0.10".parse().unwrap(), &node));
        assert!(!config.node_port_address("192.168.0.11".parse().unwrap(), &node));
        assert!(config.node_port_address("fd00::10".parse().unwrap(), &node));
        assert!(!config.node_port_address("fd00::11".parse().unwrap(), &node));
        // --bind-address overrides the primary IP of its family only.
        let config = Config {
            bind_address: Some("192.168.0.11".parse().unwrap()),
            ..config
        };
        assert!(config.node_port_address("192.168.0.11".parse().unwrap(), &node));
        assert!(!config.node_port_address("192.168.0.10".parse().unwrap(), &node));
        assert!(config.node_port_address("fd00::10".parse().unwrap(), &node));
        // A node with no IPv6 primary IP: IPv6 has no entry, so all of it.
        let v4_only = NodeInfo {
            primary_ips: vec!["192.168.0.10".parse().unwrap()],
            ..NodeInfo::default()
        };
        assert!(config.node_port_address("fd00::99".parse().unwrap(), &v4_only));
    }
}
