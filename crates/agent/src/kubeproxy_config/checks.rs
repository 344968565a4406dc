//! What kube-proxy's validation checks that the types do not, and which
//! fields of a file set something kube-ipvs cannot do.

use std::path::Path;

use super::merge::{duration, invalid, text, COMMAND_LINE};
use super::model::{GoDuration, KubeProxyConfiguration};
use super::ConfigError;
use crate::cli::{DetectLocalMode, RunArgs};

/// The fields set to something kube-ipvs cannot do, each with why.
pub(super) fn fields_without_effect(file: &KubeProxyConfiguration) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |set: bool, name: &str, why: &str| {
        if set {
            out.push(format!("{name} ({why})"));
        }
    };
    let is_set = |v: &Option<String>| !text(v).is_empty();
    let nonzero = |v: &Option<GoDuration>| !duration(v).is_zero();
    note(
        file.enable_profiling.unwrap_or_default(),
        "enableProfiling",
        "no pprof handler",
    );
    note(
        is_set(&file.show_hidden_metrics_for_version),
        "showHiddenMetricsForVersion",
        "no hidden metrics",
    );
    note(
        nonzero(&file.config_sync_period),
        "configSyncPeriod",
        "an informer resync replays unchanged objects, which changes nothing; the watches have none",
    );
    note(
        is_set(&file.port_range),
        "portRange",
        "unused in kube-proxy too",
    );
    note(
        file.windows_run_as_service.unwrap_or_default(),
        "windowsRunAsService",
        "Windows only",
    );
    note(
        nonzero(&file.udp_idle_timeout),
        "udpIdleTimeout",
        "the userspace proxy's, removed in kube-proxy v1.26",
    );
    for (gate, value) in file.feature_gates.iter().flatten() {
        note(
            true,
            &format!("featureGates.{gate}={value}"),
            "kube-ipvs has no feature gates; see the README for the behaviour of each",
        );
    }
    if let Some(ipt) = &file.iptables {
        note(
            ipt.localhost_node_ports == Some(false),
            "iptables.localhostNodePorts",
            "iptables mode only; IPVS never serves NodePorts on loopback",
        );
        note(
            ipt.snat_node_internal_ip == Some(true),
            "iptables.snatNodeInternalIP",
            "masquerading takes the outgoing interface's address",
        );
        note(
            nonzero(&ipt.sync_period),
            "iptables.syncPeriod",
            "iptables mode only; ipvs.syncPeriod applies",
        );
        note(
            nonzero(&ipt.min_sync_period),
            "iptables.minSyncPeriod",
            "iptables mode only; ipvs.minSyncPeriod applies",
        );
    }
    if let Some(nft) = &file.nftables {
        let set = nft.masquerade_bit.is_some()
            || nft.masquerade_all.unwrap_or_default()
            || nonzero(&nft.sync_period)
            || nonzero(&nft.min_sync_period);
        note(
            set,
            "nftables",
            "nftables mode only; the iptables and ipvs sections apply",
        );
    }
    if let Some(win) = &file.winkernel {
        let set = is_set(&win.network_name)
            || is_set(&win.source_vip)
            || is_set(&win.root_hns_endpoint_name)
            || win.enable_dsr.unwrap_or_default()
            || win.forward_health_check_vip.unwrap_or_default();
        note(set, "winkernel", "Windows only");
    }
    if let Some(logging) = &file.logging {
        note(
            logging.flush_frequency.is_some_and(|f| !f.0.is_zero()),
            "logging.flushFrequency",
            "every line is written at once",
        );
        note(
            logging.vmodule.as_ref().is_some_and(|v| !v.is_empty()),
            "logging.vmodule",
            "verbosity is per process; RUST_LOG sets it per module",
        );
        note(
            logging.sanitization.unwrap_or_default(),
            "logging.sanitization",
            "removed from Kubernetes",
        );
        if let Some(options) = &logging.options {
            for (name, format) in [("text", &options.text), ("json", &options.json)] {
                let Some(format) = format else { continue };
                note(
                    format.split_stream.unwrap_or_default(),
                    &format!("logging.options.{name}.splitStream"),
                    "everything goes to stderr",
                );
                note(
                    format
                        .info_buffer_size
                        .as_ref()
                        .is_some_and(|q| !q.is_zero()),
                    &format!("logging.options.{name}.infoBufferSize"),
                    "lines are not buffered",
                );
            }
        }
    }
    out
}

/// The checks kube-proxy's validation makes that the types do not.
pub(super) fn validate_run(args: &RunArgs, source: &Path) -> Result<(), ConfigError> {
    let (sync, min_sync) = if source == Path::new(COMMAND_LINE) {
        ("--ipvs-sync-period", "--ipvs-min-sync-period")
    } else {
        ("ipvs.syncPeriod", "ipvs.minSyncPeriod")
    };
    if args.ipvs_sync_period.is_zero() {
        return Err(invalid(source, sync, "must be greater than 0"));
    }
    if args.ipvs_min_sync_period > args.ipvs_sync_period {
        return Err(invalid(
            source,
            min_sync,
            format!(
                "{:?} is longer than the sync period {:?}",
                args.ipvs_min_sync_period, args.ipvs_sync_period
            ),
        ));
    }
    let kp = &args.kube_proxy;
    if !(0..=31).contains(&kp.iptables_masquerade_bit) {
        return Err(invalid(
            source,
            "masqueradeBit",
            format!("{} is not within [0, 31]", kp.iptables_masquerade_bit),
        ));
    }
    if !(-1000..=1000).contains(&kp.oom_score_adj) {
        return Err(invalid(
            source,
            "oomScoreAdj",
            format!("{} is not within [-1000, 1000]", kp.oom_score_adj),
        ));
    }
    for (name, value) in [
        ("conntrack.maxPerCore", kp.conntrack_max_per_core),
        ("conntrack.min", kp.conntrack_min),
    ] {
        if value < 0 {
            return Err(invalid(source, name, "must not be negative"));
        }
    }
    match kp.detect_local_mode {
        DetectLocalMode::BridgeInterface if kp.pod_bridge_interface.is_empty() => {
            return Err(invalid(
                source,
                "detectLocal.bridgeInterface",
                "required by detectLocalMode BridgeInterface",
            ))
        }
        DetectLocalMode::InterfaceNamePrefix if kp.pod_interface_name_prefix.is_empty() => {
            return Err(invalid(
                source,
                "detectLocal.interfaceNamePrefix",
                "required by detectLocalMode InterfaceNamePrefix",
            ))
        }
        _ => {}
    }
    let cluster = &args.cluster_cidr.0;
    let dual_stack_pair = cluster.len() == 2 && cluster[0].is_ipv4() != cluster[1].is_ipv4();
    if cluster.len() > 2 || (cluster.len() == 2 && !dual_stack_pair) {
        return Err(invalid(
            source,
            "clusterCIDR",
            "one CIDR, or an IPv4 and an IPv6 one (a dual-stack pair)",
        ));
    }
    if args.source.kube_api_qps < 0.0 || args.source.kube_api_burst < 0 {
        return Err(invalid(
            source,
            "clientConnection",
            "qps and burst must not be negative",
        ));
    }
    Ok(())
}
