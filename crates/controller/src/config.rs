//! What the mapping takes from the agent's configuration rather than from
//! the cluster.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use kube_ipvs_model::Scheduler;

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
        assert!(!config.proxies(None));
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
