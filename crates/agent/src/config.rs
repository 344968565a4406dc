//! From flags to each part's own configuration: the mapping's, the
//! planner's, the loop's timing, the kernel setup and the packet filter.
//! Each part takes only its struct; only this module reads the flags.

use kube_ipvs_controller::{Config, PlanConfig, StreamConfig};

use crate::agent::Timing;
use crate::cli::{CleanupArgs, MappingArgs, RunArgs, StreamServicesArgs};
use crate::dataplane::kernel::Setup;
use crate::firewall::FirewallConfig;

/// The mapping's settings; the caller sets `node_name`, which is resolved
/// from the sources' flags and the host.
impl From<&MappingArgs> for Config {
    fn from(mapping: &MappingArgs) -> Self {
        Config {
            node_name: String::new(),
            scheduler: mapping.ipvs_scheduler.clone(),
            service_proxy_name: (!mapping.service_proxy_name.is_empty())
                .then(|| mapping.service_proxy_name.clone()),
            nodeport_addresses: mapping.nodeport_addresses.0.clone(),
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
        Setup {
            dummy_interface: args.dummy_interface.clone(),
            strict_arp: args.ipvs_strict_arp,
            tcp_timeout: args.ipvs_tcp_timeout,
            tcpfin_timeout: args.ipvs_tcpfin_timeout,
            udp_timeout: args.ipvs_udp_timeout,
        }
    }
}

impl From<&RunArgs> for FirewallConfig {
    fn from(args: &RunArgs) -> Self {
        FirewallConfig {
            cluster_cidrs: args.cluster_cidr.0.clone(),
            masquerade_all: args.masquerade_all,
            ..FirewallConfig::default()
        }
    }
}
