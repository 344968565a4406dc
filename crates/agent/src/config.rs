//! From flags to each part's own configuration: the mapping's, the
//! planner's, the loop's timing, the kernel setup, the packet filter and
//! the API client. Each part takes only its struct; only this module reads
//! the flags. With `--config`, [`crate::kubeproxy_config::merge`] has
//! already written the file's values into the flags' structs.

use kube_ipvs_controller::{Config, PlanConfig, StreamConfig};

use crate::agent::Timing;
use crate::cli::{
    CleanupArgs, DetectLocalMode, MappingArgs, RunArgs, SourceArgs, StreamServicesArgs,
};
use crate::dataplane::kernel::{ConntrackSettings, Setup};
use crate::firewall::{FirewallConfig, LocalTraffic};
use crate::source::ClientSettings;

/// The mapping's settings; the caller sets `node_name`, which is resolved
/// from the sources' flags and the host.
impl From<&MappingArgs> for Config {
    fn from(mapping: &MappingArgs) -> Self {
        Config {
            node_name: String::new(),
            scheduler: mapping.ipvs_scheduler.clone(),
            service_proxy_name: (!mapping.service_proxy_name.is_empty())
                .then(|| mapping.service_proxy_name.clone()),
            nodeport_addresses: mapping.nodeport_addresses.cidrs.clone(),
            nodeport_primary: mapping.nodeport_addresses.primary,
            bind_address: (!mapping.bind_address.is_unspecified()).then_some(mapping.bind_address),
            streams: StreamConfig::default(),
        }
    }
}

/// ingress-nginx's ConfigMaps and publish Service: what the sources watch
/// and what the mapping serves them on.
impl From<&StreamServicesArgs> for StreamConfig {
    fn from(args: &StreamServicesArgs) -> Self {
        StreamConfig {
            tcp_services: args.tcp_services_configmap.clone(),
            udp_services: args.udp_services_configmap.clone(),
            publish_service: args.publish_service.clone(),
        }
    }
}

impl From<&RunArgs> for PlanConfig {
    fn from(args: &RunArgs) -> Self {
        PlanConfig {
            node_port_range: args.service_node_port_range.clone(),
            exclude_cidrs: args.ipvs_exclude_cidrs.0.clone(),
            graceful_period: args.ipvs_graceful_period,
        }
    }
}

/// `cleanup` plans against nothing: it removes what the agent owns.
impl From<&CleanupArgs> for PlanConfig {
    fn from(args: &CleanupArgs) -> Self {
        PlanConfig {
            node_port_range: args.service_node_port_range.clone(),
            exclude_cidrs: args.ipvs_exclude_cidrs.0.clone(),
            ..PlanConfig::default()
        }
    }
}

/// `run --cleanup` (kube-proxy's flag) removes what `run` would program.
impl From<&RunArgs> for CleanupArgs {
    fn from(args: &RunArgs) -> Self {
        CleanupArgs {
            dummy_interface: args.dummy_interface.clone(),
            service_node_port_range: args.service_node_port_range.clone(),
            ipvs_exclude_cidrs: args.ipvs_exclude_cidrs.clone(),
        }
    }
}

impl From<&RunArgs> for Timing {
    fn from(args: &RunArgs) -> Self {
        Timing {
            min_sync_period: args.ipvs_min_sync_period,
            sync_period: args.ipvs_sync_period,
            ..Timing::default()
        }
    }
}

impl From<&RunArgs> for Setup {
    fn from(args: &RunArgs) -> Self {
        let kp = &args.kube_proxy;
        let non_negative = |v: i32| u32::try_from(v).unwrap_or(0);
        Setup {
            dummy_interface: args.dummy_interface.clone(),
            strict_arp: args.ipvs_strict_arp,
            tcp_timeout: args.ipvs_tcp_timeout,
            tcpfin_timeout: args.ipvs_tcpfin_timeout,
            udp_timeout: args.ipvs_udp_timeout,
            conntrack: ConntrackSettings {
                max_per_core: non_negative(kp.conntrack_max_per_core),
                min: non_negative(kp.conntrack_min),
                tcp_established_timeout: kp.conntrack_tcp_timeout_established,
                tcp_close_wait_timeout: kp.conntrack_tcp_timeout_close_wait,
                tcp_be_liberal: kp.conntrack_tcp_be_liberal,
                udp_timeout: kp.conntrack_udp_timeout,
                udp_stream_timeout: kp.conntrack_udp_timeout_stream,
            },
        }
    }
}

impl From<&RunArgs> for FirewallConfig {
    fn from(args: &RunArgs) -> Self {
        let kp = &args.kube_proxy;
        let local = match kp.detect_local_mode {
            DetectLocalMode::ClusterCidr => LocalTraffic::ClusterCidrs,
            DetectLocalMode::NodeCidr => LocalTraffic::NodeCidrs(Vec::new()),
            DetectLocalMode::BridgeInterface => {
                LocalTraffic::Interface(kp.pod_bridge_interface.clone())
            }
            DetectLocalMode::InterfaceNamePrefix => {
                LocalTraffic::InterfacePrefix(kp.pod_interface_name_prefix.clone())
            }
        };
        FirewallConfig {
            cluster_cidrs: args.cluster_cidr.0.clone(),
            masquerade_all: args.masquerade_all,
            // Validated to 0..=31.
            masquerade_mark: 1u32 << kp.iptables_masquerade_bit.clamp(0, 31),
            local,
        }
    }
}

impl From<&SourceArgs> for ClientSettings {
    fn from(source: &SourceArgs) -> Self {
        ClientSettings {
            kubeconfig: source.kubeconfig.clone(),
            master: source.master.clone().filter(|m| !m.is_empty()),
            qps: source.kube_api_qps,
            burst: u32::try_from(source.kube_api_burst).unwrap_or(0),
        }
    }
}
