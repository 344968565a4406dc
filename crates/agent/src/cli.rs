//! Command-line flags. Names and defaults follow kube-proxy wherever it has
//! the flag, so a kube-proxy configuration carries over.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;
use kube_ipvs_controller::{ConfigMapRef, ServiceRef};
use kube_ipvs_netlink::Scheduler;

mod addresses;
mod kube_proxy;

pub use addresses::{parse_ip, parse_nodeport_entries, NodePortAddresses};
use addresses::{parse_nodeport_addresses, sloppy_ipv4};
pub use kube_proxy::{
    parse_detect_local_mode, parse_feature_gates, parse_proxy_mode, DetectLocalMode, FeatureGates,
    KubeProxyArgs, WITHOUT_MEANING,
};

/// The kube-ipvs command line.
#[derive(Debug, Parser)]
#[command(
    name = "kube-ipvs",
    version,
    about = "Load-balances Kubernetes Services with IPVS"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: watch the sources and keep the kernel in sync.
    Run(Box<RunArgs>),
    /// Print the desired state from the sources, without root and without touching the kernel.
    Plan(PlanArgs),
    /// Print the virtual servers in the kernel now.
    Dump(DumpArgs),
    /// Remove everything the agent owns (its virtual servers, addresses, dummy
    /// interface and packet-filter table) and nothing else.
    Cleanup(CleanupArgs),
}

/// Where Services, EndpointSlices and the Node come from.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceArgs {
    /// kube-proxy's configuration file (a `KubeProxyConfiguration`, such as
    /// kubeadm's `config.conf`); its values take the place of the flags', as
    /// in kube-proxy.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Path to a kubeconfig; in-cluster configuration when unset.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Read Services, EndpointSlices, Endpoints and Nodes from YAML files in
    /// this directory instead of the Kubernetes API, and watch it.
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// The name of this node; the host name when unset.
    #[arg(long, env = "NODE_NAME")]
    pub hostname_override: Option<String>,
    /// The API server's address, in place of the kubeconfig's.
    #[arg(long)]
    pub master: Option<String>,
    /// Requests per second to the API server (kube-proxy's client limit).
    #[arg(long, default_value_t = 5.0)]
    pub kube_api_qps: f32,
    /// Requests the API client may send at once above `--kube-api-qps`.
    #[arg(long, default_value_t = 10)]
    pub kube_api_burst: i32,
}

/// How Services map to virtual servers.
#[derive(Debug, Clone, Args)]
pub struct MappingArgs {
    /// The node addresses NodePorts listen on: CIDRs and `primary` (the
    /// Node's primary IPs), comma-separated; a family without an entry
    /// listens on all of its addresses, as in kube-proxy.
    #[arg(long, default_value = "", value_parser = parse_nodeport_addresses)]
    pub nodeport_addresses: NodePortAddresses,
    /// The default scheduler; a Service may choose its own with the
    /// `kube-ipvs.io/scheduler` annotation.
    #[arg(long, default_value = "rr", value_parser = parse_scheduler)]
    pub ipvs_scheduler: Scheduler,
    /// Serve only Services labelled `service.kubernetes.io/service-proxy-name`
    /// with this value; when empty, serve only Services without that label.
    #[arg(long, default_value = "", value_parser = parse_proxy_name)]
    pub service_proxy_name: String,
    /// The node's primary IP (kube-proxy binds no socket to it either): what
    /// `primary` in `--nodeport-addresses` means in its family.
    #[arg(long, default_value = "0.0.0.0", value_parser = parse_ip)]
    pub bind_address: IpAddr,
}

/// ingress-nginx's TCP and UDP services, with its flags' names and meaning:
/// each ConfigMap maps an external port (the key) to a Service port
/// (`namespace/service:port`), served on the publish Service's addresses.
#[derive(Debug, Clone, Default, Args)]
pub struct StreamServicesArgs {
    /// ConfigMap (NAMESPACE/NAME) of TCP services, as ingress-nginx's:
    /// key an external port, value `namespace/service:port`.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_config_map, requires = "publish_service")]
    pub tcp_services_configmap: Option<ConfigMapRef>,
    /// ConfigMap (NAMESPACE/NAME) of UDP services, as ingress-nginx's.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_config_map, requires = "publish_service")]
    pub udp_services_configmap: Option<ConfigMapRef>,
    /// The Service (NAMESPACE/NAME) whose load-balancer IPs, external IPs
    /// and node ports carry the ConfigMaps' ports, as ingress-nginx's.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_service_ref)]
    pub publish_service: Option<ServiceRef>,
}

/// Flags of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Sources.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Mapping.
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// ingress-nginx's TCP and UDP services.
    #[command(flatten)]
    pub streams: StreamServicesArgs,
    /// Sync once, print a JSON summary and exit.
    #[arg(long)]
    pub once: bool,
    /// How often the whole kernel state is dumped and repaired.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ipvs_sync_period: Duration,
    /// The shortest time between two syncs; changes arriving within it are batched.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub ipvs_min_sync_period: Duration,
    /// CIDRs the agent never deletes virtual servers or addresses in (comma-separated).
    #[arg(long, default_value = "", value_parser = parse_cidrs)]
    pub ipvs_exclude_cidrs: Cidrs,
    /// Set arp_ignore=1 and arp_announce=2, so the node does not answer ARP for the VIPs.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool)]
    pub ipvs_strict_arp: bool,
    /// IPVS TCP session timeout; 0 keeps the kernel's.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ipvs_tcp_timeout: Duration,
    /// IPVS TCP timeout after a FIN; 0 keeps the kernel's.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ipvs_tcpfin_timeout: Duration,
    /// IPVS UDP timeout; 0 keeps the kernel's.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ipvs_udp_timeout: Duration,
    /// Where `/metrics` is served; empty to disable.
    #[arg(long, default_value = "127.0.0.1:10249", value_parser = parse_optional_addr)]
    pub metrics_bind_address: BindAddress,
    /// Serve `/debug/virtual-servers` on the metrics address to any client;
    /// by default only to the node itself (loopback clients).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool)]
    pub debug_allow_remote: bool,
    /// Where `/healthz` and `/livez` are served; empty to disable.
    #[arg(long, default_value = "0.0.0.0:10256", value_parser = parse_optional_addr)]
    pub healthz_bind_address: BindAddress,
    /// The dummy interface the virtual IPs are bound on.
    #[arg(long, default_value = "kube-ipvs0")]
    pub dummy_interface: String,
    /// How long a removed TCP real server drains at weight 0 before it is deleted.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ipvs_graceful_period: Duration,
    /// Where the start of each drain is kept, so a drain that began before a
    /// restart ends on time; empty to keep it in memory only.
    #[arg(long, default_value = "/run/kube-ipvs/draining")]
    pub drain_state_file: PathBuf,
    /// The node-port range: virtual servers on node addresses with these ports are the agent's.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub service_node_port_range: RangeInclusive<u16>,
    /// The cluster's pod CIDRs (comma-separated): traffic from elsewhere to
    /// external addresses is masqueraded.
    #[arg(long, default_value = "", value_parser = parse_cidrs)]
    pub cluster_cidr: Cidrs,
    /// Masquerade all traffic to Services.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool)]
    pub masquerade_all: bool,
    /// Do not program the nftables table (masquerade, filters, source ranges).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_bool)]
    pub no_firewall: bool,
    /// Log format (kube-proxy's `--logging-format` is the same flag).
    #[arg(long, alias = "logging-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// kube-proxy's other flags.
    #[command(flatten)]
    pub kube_proxy: KubeProxyArgs,
}

/// Flags of `plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Sources.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Mapping.
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// ingress-nginx's TCP and UDP services.
    #[command(flatten)]
    pub streams: StreamServicesArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Flags of `dump`.
#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Include traffic counters.
    #[arg(long)]
    pub stats: bool,
    /// Learn Service names from the agent running on this node (its
    /// `/debug/virtual-servers`); empty to skip.
    #[arg(long, default_value = "127.0.0.1:10249", value_parser = parse_optional_addr)]
    pub metrics_bind_address: BindAddress,
    /// Learn Service names from this directory instead.
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// ingress-nginx's TCP and UDP services, to name their entries with
    /// `--from-dir`.
    #[command(flatten)]
    pub streams: StreamServicesArgs,
}

/// Flags of `cleanup`.
#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// The dummy interface to remove with its addresses.
    #[arg(long, default_value = "kube-ipvs0")]
    pub dummy_interface: String,
    /// Virtual servers on node addresses with these ports are removed too.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub service_node_port_range: RangeInclusive<u16>,
    /// CIDRs never touched (comma-separated).
    #[arg(long, default_value = "", value_parser = parse_cidrs)]
    pub ipvs_exclude_cidrs: Cidrs,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output format of `plan` and `dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table in the spirit of `ipvsadm -Ln`.
    Table,
    /// JSON.
    Json,
}

fn parse_proxy_name(s: &str) -> Result<String, String> {
    if kube_ipvs_controller::valid_label_value(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a valid label value (at most 63 characters: letters, digits, '-', '_', '.', starting and ending with a letter or digit)"
        ))
    }
}

/// `namespace/name`, both non-empty, as ingress-nginx takes its flags.
fn parse_namespaced(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok((namespace.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}

fn parse_config_map(s: &str) -> Result<ConfigMapRef, String> {
    parse_namespaced(s).map(|(namespace, name)| ConfigMapRef::new(namespace, name))
}

fn parse_service_ref(s: &str) -> Result<ServiceRef, String> {
    parse_namespaced(s).map(|(namespace, name)| ServiceRef::new(namespace, name))
}

fn parse_scheduler(s: &str) -> Result<Scheduler, String> {
    Scheduler::known(s).ok_or_else(|| {
        let known: Vec<&str> = Scheduler::KNOWN.iter().map(|s| s.name()).collect();
        format!("unknown scheduler {s:?}; one of {}", known.join(", "))
    })
}

/// A comma-separated list of CIDRs; the empty string is the empty list, so
/// a configuration can pass an unset value through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cidrs(pub Vec<IpNetwork>);

fn parse_cidrs(s: &str) -> Result<Cidrs, String> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(parse_cidr)
        .collect::<Result<_, _>>()
        .map(Cidrs)
}

/// `--flag`, `--flag=true` or `--flag=false`, as kube-proxy's boolean flags take.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// Parses a CIDR as kube-proxy does (`ParseCIDRSloppy`): host bits are
/// cleared (`10.0.0.1/8` is `10.0.0.0/8`) and IPv4 octets may have leading
/// zeros.
pub fn parse_cidr(s: &str) -> Result<IpNetwork, String> {
    let text = sloppy_ipv4(s.trim());
    let net: IpNetwork = text
        .parse()
        .map_err(|e| format!("{s:?} is not a CIDR: {e}"))?;
    IpNetwork::new(net.network(), net.prefix()).map_err(|e| format!("{s:?}: {e}"))
}

/// An address to serve on, or none when the flag is empty (disabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindAddress(pub Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<BindAddress, String> {
    if s.is_empty() {
        return Ok(BindAddress(None));
    }
    s.parse()
        .map(|a| BindAddress(Some(a)))
        .map_err(|e| format!("{s:?} is not an address:port: {e}"))
}

fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a port range like 30000-32767"))?;
    let lo: u16 = lo.trim().parse().map_err(|e| format!("{lo:?}: {e}"))?;
    let hi: u16 = hi.trim().parse().map_err(|e| format!("{hi:?}: {e}"))?;
    if lo == 0 || lo > hi {
        return Err(format!("{s:?} is not a port range: need 1 <= low <= high"));
    }
    Ok(lo..=hi)
}

/// The longest Go `time.Duration`: 2^63-1 nanoseconds, about 292 years.
const GO_MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// Parses a Go duration as kube-proxy takes them: `30s`, `1m0s`, `300ms`,
/// `1h`; like Go's `time.ParseDuration`, one longer than a `time.Duration`
/// holds is an error.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 30s, 1m30s or 300ms");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total = Duration::try_from_secs_f64(value * scale)
            .ok()
            .and_then(|d| total.checked_add(d))
            .filter(|t| *t <= GO_MAX_DURATION)
            .ok_or_else(|| {
                format!("{s:?} is longer than a Go duration holds (2562047h47m16.854775807s)")
            })?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
