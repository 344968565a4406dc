//! What the loop hands the packet-filter worker after each sync.

use kube_ipvs_controller::{Intent, NodeInfo};
use kube_ipvs_netlink::VirtualServerKey;

use super::{FirewallConfig, FirewallHandle, LocalTraffic, Ruleset, StaleUdpFlows};
use crate::reconcile::{SyncKind, SyncReport};

/// Keeps the node's packet filter in step with the virtual servers.
#[derive(Debug)]
pub struct FirewallFeed {
    handle: FirewallHandle,
    config: FirewallConfig,
}

impl FirewallFeed {
    /// Feeds the worker behind `handle` with rulesets under `config`.
    pub fn new(handle: FirewallHandle, config: FirewallConfig) -> Self {
        FirewallFeed { handle, config }
    }

    /// Hands the worker the ruleset of the desired state and the UDP real
    /// servers the sync removed. The ruleset is rebuilt only when the kernel
    /// changed or after a full sync (which a change of the Node brings).
    /// With `NodeCIDR` local detection the node's pod CIDRs come from `node`.
    pub fn after_sync(
        &self,
        kind: SyncKind,
        report: &SyncReport,
        intent: &Intent,
        node: &NodeInfo,
    ) {
        if report.writes > 0 || kind == SyncKind::Full {
            let ruleset = match &self.config.local {
                LocalTraffic::NodeCidrs(_) => Ruleset::from_intent(
                    intent,
                    &FirewallConfig {
                        local: LocalTraffic::NodeCidrs(node.pod_cidrs.clone()),
                        ..self.config.clone()
                    },
                ),
                _ => Ruleset::from_intent(intent, &self.config),
            };
            self.handle.apply(ruleset);
        }
        let stale: Vec<StaleUdpFlows> = report
            .removed_udp
            .iter()
            .filter_map(|(key, rs)| {
                let VirtualServerKey::Inet { address, port, .. } = *key else {
                    return None;
                };
                Some(StaleUdpFlows {
                    vip: address,
                    vport: port,
                    endpoint: rs.address,
                    eport: rs.port,
                })
            })
            .collect();
        self.handle.forget_udp_flows(stale);
    }
}
