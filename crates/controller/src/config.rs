//! What the mapping takes from the agent's configuration rather than from
//! the cluster.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use kube_ipvs_model::Scheduler;

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
    /// on (empty: every node address).
    pub nodeport_addresses: Vec<IpNetwork>,
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
    /// ours: an unlabelled Service always is, a labelled one only when the
    /// label names us.
    pub fn proxies(&self, proxy_name: Option<&str>) -> bool {
        match proxy_name {
            None => true,
            Some(label) => self.service_proxy_name.as_deref() == Some(label),
        }
    }

    /// Whether a NodePort virtual server may listen on the node address
    /// `address`. Loopback, unspecified, multicast and IPv6 link-local
    /// addresses never qualify: IPVS cannot serve traffic to them (a
    /// link-local address also needs a scope the key has no room for).
    pub fn node_port_address(&self, address: IpAddr) -> bool {
        let usable = match address {
            IpAddr::V4(a) => !a.is_loopback() && !a.is_unspecified() && !a.is_multicast(),
            IpAddr::V6(a) => {
                !a.is_loopback()
                    && !a.is_unspecified()
                    && !a.is_multicast()
                    && (a.segments()[0] & 0xffc0) != 0xfe80
            }
        };
        usable
            && (self.nodeport_addresses.is_empty()
                || self.nodeport_addresses.iter().any(|n| n.contains(address)))
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
        assert!(config.proxies(None));
        assert!(config.proxies(Some("kube-ipvs")));
        assert!(!config.proxies(Some("other")));
    }

    #[test]
    fn node_port_addresses() {
        let mut config = Config::new("n1");
        for (address, ok) in [
            ("10.0.0.1", true),
            ("127.0.0.1", false),
            ("0.0.0.0", false),
            ("2001:db8::1", true),
            ("fe80::1", false),
            ("::1", false),
        ] {
            assert_eq!(
                config.node_port_address(address.parse().unwrap()),
                ok,
                "{address}"
            );
        }
        config.nodeport_addresses = vec!["10.0.0.0/24".parse().unwrap()];
        assert!(config.node_port_address("10.0.0.9".parse().unwrap()));
        assert!(!config.node_port_address("10.0.1.9".parse().unwrap()));
        assert!(!config.node_port_address("2001:db8::1".parse().unwrap()));
    }
}
