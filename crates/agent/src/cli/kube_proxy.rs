//! kube-proxy's flags that `kube-ipvs run` did not have under its own
//! names: every flag of kube-proxy's `cmd/kube-proxy/app/options.go` (and
//! its logging flags) is accepted, so a kube-proxy command line starts
//! kube-ipvs. Those that act are used through [`crate::config`]; those
//! without meaning here are named in one warning
//! ([`crate::kubeproxy_config::merge`]), and the README lists both.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{parse_bool, parse_duration};

/// kube-proxy's flags beyond those `run` has by their own names.
#[derive(Debug, Clone, Args)]
pub struct KubeProxyArgs {
    /// Log verbosity, as kube-proxy's `-v`: 0-2 info, 3-4 debug, 5 and up trace.
    #[arg(short = 'v', long = "v", default_value_t = 0, value_name = "N")]
    pub v: u32,
    /// The proxy mode: `ipvs` (or empty); kube-ipvs is an IPVS proxy.
    #[arg(long, default_value = "", value_parser = parse_proxy_mode)]
    pub proxy_mode: String,
    /// Exit when the metrics or health address cannot be bound; else keep retrying.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool)]
    pub bind_address_hard_fail: bool,
    /// How local (pod) traffic is told apart: `ClusterCIDR`, `NodeCIDR`,
    /// `BridgeInterface` or `InterfaceNamePrefix`; traffic from elsewhere to
    /// Services is masqueraded.
    #[arg(long, default_value = "", value_parser = parse_detect_local_mode)]
    pub detect_local_mode: DetectLocalMode,
    /// The bridge pod traffic comes from, for `--detect-local-mode=BridgeInterface`.
    #[arg(long, default_value = "")]
    pub pod_bridge_interface: String,
    /// The prefix of pod interfaces, for `--detect-local-mode=InterfaceNamePrefix`.
    #[arg(long, default_value = "")]
    pub pod_interface_name_prefix: String,
    /// The bit of the packet mark that flags connections to masquerade (0-31).
    #[arg(long, default_value_t = 14)]
    pub iptables_masquerade_bit: i32,
    /// The agent's `oom_score_adj` (-1000 to 1000).
    #[arg(long, default_value_t = -999, allow_negative_numbers = true)]
    pub oom_score_adj: i32,
    /// `nf_conntrack_max` per CPU (0 leaves the limit alone, and `--conntrack-min`).
    #[arg(long, default_value_t = 32 * 1024)]
    pub conntrack_max_per_core: i32,
    /// The least `nf_conntrack_max`, whatever the CPU count.
    #[arg(long, default_value_t = 128 * 1024)]
    pub conntrack_min: i32,
    /// Idle timeout of established TCP flows in conntrack (0 leaves it alone).
    #[arg(long, default_value = "24h0m0s", value_parser = parse_duration)]
    pub conntrack_tcp_timeout_established: Duration,
    /// Timeout of TCP flows in CLOSE_WAIT in conntrack (0 leaves it alone).
    #[arg(long, default_value = "1h0m0s", value_parser = parse_duration)]
    pub conntrack_tcp_timeout_close_wait: Duration,
    /// Sets `nf_conntrack_tcp_be_liberal`, so out-of-window packets are not INVALID.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool)]
    pub conntrack_tcp_be_liberal: bool,
    /// Idle timeout of unreplied UDP flows in conntrack (0 leaves it alone).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub conntrack_udp_timeout: Duration,
    /// Idle timeout of assured UDP flows in conntrack (0 leaves it alone).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub conntrack_udp_timeout_stream: Duration,
    /// Deprecated in kube-proxy: the port of `--healthz-bind-address` (0 disables).
    #[arg(long)]
    pub healthz_port: Option<u16>,
    /// Deprecated in kube-proxy: the port of `--metrics-bind-address` (0 disables).
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Remove what kube-ipvs programmed (as `kube-ipvs cleanup`) and exit.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool)]
    pub cleanup: bool,
    /// Load the kernel modules and write the sysctls, then exit.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool)]
    pub init_only: bool,
    /// Not supported: kube-ipvs writes no configuration file.
    #[arg(long, value_name = "FILE")]
    pub write_config_to: Option<PathBuf>,
    /// Accepted; named in a warning (see the README for each gate).
    #[arg(long, default_value = "", value_parser = parse_feature_gates)]
    pub feature_gates: FeatureGates,
    /// Accepted; no meaning here (kube-ipvs talks JSON to the API server).
    #[arg(long, default_value = "", hide = true)]
    pub kube_api_content_type: String,
    /// Accepted; no meaning here (no pprof handler).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool, hide = true)]
    pub profiling: bool,
    /// Accepted; no meaning here.
    #[arg(long, default_value = "", hide = true)]
    pub show_hidden_metrics_for_version: String,
    /// Accepted; no meaning here (iptables mode only).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = parse_bool, hide = true)]
    pub iptables_localhost_nodeports: bool,
    /// Accepted; no meaning here (iptables mode only).
    #[arg(long, default_value = "30s", value_parser = parse_duration, hide = true)]
    pub iptables_sync_period: Duration,
    /// Accepted; no meaning here (iptables mode only).
    #[arg(long, default_value = "1s", value_parser = parse_duration, hide = true)]
    pub iptables_min_sync_period: Duration,
    /// Accepted; no meaning here (watches have no resync; see the README).
    #[arg(long, default_value = "15m0s", value_parser = parse_duration, hide = true)]
    pub config_sync_period: Duration,
    /// Accepted; no meaning here.
    #[arg(long, default_value = "", hide = true)]
    pub vmodule: String,
    /// Accepted; no meaning here (every line is written at once).
    #[arg(long, default_value = "5s", value_parser = parse_duration, hide = true)]
    pub log_flush_frequency: Duration,
    /// Accepted; no meaning here.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool, hide = true)]
    pub log_json_split_stream: bool,
    /// Accepted; no meaning here.
    #[arg(long, default_value = "0", hide = true)]
    pub log_json_info_buffer_size: String,
    /// Accepted; no meaning here.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool, hide = true)]
    pub log_text_split_stream: bool,
    /// Accepted; no meaning here.
    #[arg(long, default_value = "0", hide = true)]
    pub log_text_info_buffer_size: String,
}

/// The flags above that have no meaning in kube-ipvs, by argument id and
/// flag name: given on the command line, they are named in one warning.
pub const WITHOUT_MEANING: &[(&str, &str)] = &[
    ("feature_gates", "--feature-gates"),
    ("kube_api_content_type", "--kube-api-content-type"),
    ("profiling", "--profiling"),
    (
        "show_hidden_metrics_for_version",
        "--show-hidden-metrics-for-version",
    ),
    (
        "iptables_localhost_nodeports",
        "--iptables-localhost-nodeports",
    ),
    ("iptables_sync_period", "--iptables-sync-period"),
    ("iptables_min_sync_period", "--iptables-min-sync-period"),
    ("config_sync_period", "--config-sync-period"),
    ("vmodule", "--vmodule"),
    ("log_flush_frequency", "--log-flush-frequency"),
    ("log_json_split_stream", "--log-json-split-stream"),
    ("log_json_info_buffer_size", "--log-json-info-buffer-size"),
    ("log_text_split_stream", "--log-text-split-stream"),
    ("log_text_info_buffer_size", "--log-text-info-buffer-size"),
];

/// `--detect-local-mode` and the file's `detectLocalMode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DetectLocalMode {
    /// From `--cluster-cidr` (kube-proxy's default, also for the empty value).
    #[default]
    ClusterCidr,
    /// From the Node's `spec.podCIDRs`.
    NodeCidr,
    /// Traffic from `--pod-bridge-interface`.
    BridgeInterface,
    /// Traffic from interfaces named `--pod-interface-name-prefix*`.
    InterfaceNamePrefix,
}

/// Parses a `detectLocalMode` value; empty is `ClusterCIDR`, as in kube-proxy.
pub fn parse_detect_local_mode(s: &str) -> Result<DetectLocalMode, String> {
    match s {
        "" | "ClusterCIDR" => Ok(DetectLocalMode::ClusterCidr),
        "NodeCIDR" => Ok(DetectLocalMode::NodeCidr),
        "BridgeInterface" => Ok(DetectLocalMode::BridgeInterface),
        "InterfaceNamePrefix" => Ok(DetectLocalMode::InterfaceNamePrefix),
        other => Err(format!(
            "{other:?} is not a local traffic detection mode; one of ClusterCIDR, NodeCIDR, \
             BridgeInterface, InterfaceNamePrefix"
        )),
    }
}

/// Accepts `ipvs` and the empty value; any other proxy mode is refused.
pub fn parse_proxy_mode(s: &str) -> Result<String, String> {
    match s {
        "" | "ipvs" => Ok(s.to_owned()),
        other => Err(format!(
            "{other:?}: kube-ipvs is an IPVS proxy; the mode must be \"ipvs\" or empty"
        )),
    }
}

/// `--feature-gates` and the file's `featureGates`: gate name to value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeatureGates(pub BTreeMap<String, bool>);

/// Parses `A=true,B=false`, as kube-proxy's `--feature-gates`.
pub fn parse_feature_gates(s: &str) -> Result<FeatureGates, String> {
    let mut gates = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not NAME=true or NAME=false"))?;
        gates.insert(name.trim().to_owned(), parse_bool(value.trim())?);
    }
    Ok(FeatureGates(gates))
}
