//! What the loop hands the packet-filter worker after each sync.

use kube_ipvs_controller::{udp_frontends, Intent, Snapshot};

use super::{FirewallConfig, FirewallHandle, LocalTraffic, Ruleset};
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

    /// Hands the worker the ruleset of the desired state and the UDP
    /// frontends whose stale flows go. Both are rebuilt only when the
    /// kernel changed or after a full sync (which a change of the Node
    /// brings); a full sync also has the UDP flows checked again when
    /// nothing changed, as kube-proxy checks them on every sync
    /// (`pkg/proxy/conntrack/cleanup.go` `CleanStaleEntries`), and the
    /// iptables FORWARD policy looked at, and the kernel's nftables table
    /// and sysctls compared with what was written (and repaired). With `NodeCIDR` local detection
    /// the node's pod CIDRs come from the snapshot's Node.
    pub fn after_sync(
        &self,
        kind: SyncKind,
        report: &SyncReport,
        intent: &Intent,
        snapshot: &Snapshot,
    ) {
        let full = kind == SyncKind::Full;
        if full {
            self.handle.check_forward();
            self.handle.check_table();
        }
        if report.writes > 0 || full {
            let ruleset = match &self.config.local {
                LocalTraffic::NodeCidrs(_) => Ruleset::from_intent(
                    intent,
                    &FirewallConfig {
                        local: LocalTraffic::NodeCidrs(snapshot.node().pod_cidrs.clone()),
                        ..self.config.clone()
                    },
                ),
                _ => Ruleset::from_intent(intent, &self.config),
            };
            self.handle.apply(ruleset);
            self.handle
                .reconcile_udp(udp_frontends(snapshot, intent), full);
        }
    }
}
