//! The configuration file and the command line, combined as kube-proxy
//! combines them (`cmd/kube-proxy/app/options.go`, `Complete`):
//!
//! - without `--config`, the flags are the configuration, with kube-proxy's
//!   defaults; the deprecated `--healthz-port` and `--metrics-port` set the
//!   port of their address;
//! - with `--config`, the file replaces the flags' values wholesale, and its
//!   zero values take kube-proxy's defaults (`pkg/proxy/apis/config/
//!   v1alpha1/defaults.go`). Only `--hostname-override` and the logging
//!   flags (`--v`, `--logging-format`) given on the command line win over
//!   the file; other kube-proxy flags given beside `--config` are ignored,
//!   as kube-proxy ignores them, and named in a warning. kube-ipvs's own
//!   flags (`--dummy-interface`, `--from-dir`, ...) have no field in the file
//!   and apply either way.
//!
//! The result is written into the flags' structs ([`RunArgs`],
//! [`PlanArgs`]), which [`crate::config`] turns into each part's
//! configuration. What has no effect in kube-ipvs is collected in [`Notes`]
//! and logged once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use kube_ipvs_netlink::Scheduler;

use super::checks::{fields_without_effect, validate_run};
use super::covered::FILE_COVERED;
use super::defaults;
use super::model::{GoDuration, KubeProxyConfiguration};
use super::{load, ConfigError};
use crate::cli::{
    parse_cidr, parse_detect_local_mode, parse_ip, parse_nodeport_entries, parse_proxy_mode,
    BindAddress, Cidrs, LogFormat, MappingArgs, PlanArgs, RunArgs, SourceArgs, WITHOUT_MEANING,
};

/// What the configuration asked for that kube-ipvs does not do, for the
/// one warning each kind gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// Fields of the file with a value that has no effect in kube-ipvs.
    pub fields_without_effect: Vec<String>,
    /// kube-proxy flags given on the command line that have no meaning here.
    pub flags_without_meaning: Vec<String>,
    /// Flags given beside `--config`: the file's values win, as in kube-proxy.
    pub flags_overridden: Vec<String>,
    /// Values accepted but only partly applicable, each explained.
    pub remarks: Vec<String>,
}

impl Notes {
    /// Logs each non-empty list once.
    pub fn log(&self) {
        if !self.fields_without_effect.is_empty() {
            tracing::warn!(
                fields = %self.fields_without_effect.join(", "),
                "these fields of the configuration file have no effect in kube-ipvs"
            );
        }
        if !self.flags_without_meaning.is_empty() {
            tracing::warn!(
                flags = %self.flags_without_meaning.join(", "),
                "these kube-proxy flags have no meaning in kube-ipvs and are ignored"
            );
        }
        if !self.flags_overridden.is_empty() {
            tracing::warn!(
                flags = %self.flags_overridden.join(", "),
                "these flags are ignored: --config is given, and its file sets them (as in kube-proxy)"
            );
        }
        for remark in &self.remarks {
            tracing::warn!("{remark}");
        }
    }
}

/// Where the value of argument `id` came from; `None` for an argument the
/// subcommand does not have.
fn source_of(matches: &ArgMatches, id: &str) -> Option<ValueSource> {
    matches
        .try_get_raw(id)
        .ok()
        .flatten()
        .and_then(|_| matches.value_source(id))
}

/// Whether the argument `id` was given on the command line (not a default,
/// not the environment).
fn on_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches!(source_of(matches, id), Some(ValueSource::CommandLine))
}

/// Whether the argument `id` was set by the user: on the command line or
/// through its environment variable (`NODE_NAME`, `KUBECONFIG`).
fn set_by_user(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        source_of(matches, id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

pub(super) const COMMAND_LINE: &str = "command line";

/// Resolves `run`'s configuration in place: the file if `--config` is
/// given, with kube-proxy's precedence, then the checks kube-proxy's
/// validation makes. `matches` are `run`'s own.
pub fn resolve_run(args: &mut RunArgs, matches: &ArgMatches) -> Result<Notes, ConfigError> {
    let mut notes = Notes::default();
    let file = match &args.source.config {
        Some(path) => Some((path.clone(), load(path)?)),
        None => None,
    };
    // Flags without meaning, except those the file replaces (named below
    // as overridden instead).
    notes.flags_without_meaning = WITHOUT_MEANING
        .iter()
        .filter(|(id, _)| on_command_line(matches, id))
        .filter(|(id, _)| file.is_none() || !FILE_COVERED.iter().any(|(c, _)| c == id))
        .map(|(_, flag)| (*flag).to_owned())
        .collect();
    match &file {
        Some((path, file)) => {
            notes.flags_overridden = FILE_COVERED
                .iter()
                .filter(|(id, _)| on_command_line(matches, id))
                .map(|(_, flag)| (*flag).to_owned())
                .collect();
            let keep = Keep {
                hostname: set_by_user(matches, "hostname_override"),
                verbosity: on_command_line(matches, "v"),
                log_format: on_command_line(matches, "log_format"),
            };
            apply_run(file, path, args, keep, &mut notes)?;
        }
        None => {
            let kp = &args.kube_proxy;
            if let Some(port) = kp.healthz_port {
                args.healthz_bind_address = with_port(args.healthz_bind_address, port);
            }
            if let Some(port) = kp.metrics_port {
                args.metrics_bind_address = with_port(args.metrics_bind_address, port);
            }
        }
    }
    if args.kube_proxy.write_config_to.is_some() {
        notes.flags_without_meaning.push(
            "--write-config-to (kube-ipvs writes no configuration file; it runs instead)".into(),
        );
    }
    if args.mapping.nodeport_addresses.localhost {
        notes.remarks.push(
            "nodePortAddresses: \"localhost\" adds nothing: IPVS cannot serve NodePorts on \
             loopback addresses (kube-proxy's IPVS mode never serves them either)"
                .into(),
        );
    }
    let source = file
        .as_ref()
        .map_or_else(|| PathBuf::from(COMMAND_LINE), |(p, _)| p.clone());
    validate_run(args, &source)?;
    Ok(notes)
}

/// Resolves `plan`'s configuration in place: what of the file bears on the
/// mapping and on where the sources are.
pub fn resolve_plan(args: &mut PlanArgs, matches: &ArgMatches) -> Result<Notes, ConfigError> {
    let mut notes = Notes::default();
    let Some(path) = args.source.config.clone() else {
        return Ok(notes);
    };
    let file = load(&path)?;
    notes.flags_overridden = FILE_COVERED
        .iter()
        .filter(|(id, _)| on_command_line(matches, id))
        .map(|(_, flag)| (*flag).to_owned())
        .collect();
    let hostname = set_by_user(matches, "hostname_override");
    apply_source(&file, &path, &mut args.source, hostname, &mut notes)?;
    apply_mapping(&file, &path, &mut args.mapping)?;
    if args.mapping.nodeport_addresses.localhost {
        notes.remarks.push(
            "nodePortAddresses: \"localhost\" adds nothing: IPVS cannot serve NodePorts on \
             loopback addresses"
                .into(),
        );
    }
    Ok(notes)
}

/// Command-line values that win over the file.
#[derive(Clone, Copy, Debug, Default)]
struct Keep {
    hostname: bool,
    verbosity: bool,
    log_format: bool,
}

pub(super) fn invalid(file: &Path, field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        field: field.to_owned(),
        message: message.into(),
    }
}

pub(super) fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or_default()
}

pub(super) fn duration(value: &Option<GoDuration>) -> Duration {
    value.map(|d| d.0).unwrap_or_default()
}

fn apply_source(
    file: &KubeProxyConfiguration,
    path: &Path,
    source: &mut SourceArgs,
    keep_hostname: bool,
    notes: &mut Notes,
) -> Result<(), ConfigError> {
    let client = file.client_connection.clone().unwrap_or_default();
    let kubeconfig = text(&client.kubeconfig);
    source.kubeconfig = (!kubeconfig.is_empty()).then(|| PathBuf::from(kubeconfig));
    let qps = client.qps.unwrap_or_default();
    if qps < 0.0 {
        return Err(invalid(
            path,
            "clientConnection.qps",
            "must not be negative",
        ));
    }
    source.kube_api_qps = if qps == 0.0 { defaults::QPS } else { qps };
    let burst = client.burst.unwrap_or_default();
    if burst < 0 {
        return Err(invalid(
            path,
            "clientConnection.burst",
            "must not be negative",
        ));
    }
    source.kube_api_burst = if burst == 0 { defaults::BURST } else { burst };
    for (name, value) in [
        ("clientConnection.contentType", &client.content_type),
        (
            "clientConnection.acceptContentTypes",
            &client.accept_content_types,
        ),
    ] {
        if !text(value).is_empty() {
            notes
                .fields_without_effect
                .push(format!("{name} (kube-ipvs reads the API as JSON)"));
        }
    }
    let hostname = text(&file.hostname_override).trim();
    if !keep_hostname && !hostname.is_empty() {
        source.hostname_override = Some(hostname.to_lowercase());
    }
    Ok(())
}

fn apply_mapping(
    file: &KubeProxyConfiguration,
    path: &Path,
    mapping: &mut MappingArgs,
) -> Result<(), ConfigError> {
    let ipvs = file.ipvs.clone().unwrap_or_default();
    let scheduler = text(&ipvs.scheduler);
    mapping.ipvs_scheduler = if scheduler.is_empty() {
        Scheduler::Rr
    } else {
        Scheduler::known(scheduler).ok_or_else(|| {
            let known: Vec<&str> = Scheduler::KNOWN.iter().map(|s| s.name()).collect();
            invalid(
                path,
                "ipvs.scheduler",
                format!(
                    "unknown scheduler {scheduler:?}; one of {}",
                    known.join(", ")
                ),
            )
        })?
    };
    let entries = file.node_port_addresses.clone().unwrap_or_default();
    for (i, entry) in entries.iter().enumerate() {
        parse_nodeport_entries([entry.as_str()])
            .map_err(|e| invalid(path, &format!("nodePortAddresses[{i}]"), e))?;
    }
    mapping.nodeport_addresses = parse_nodeport_entries(entries.iter().map(String::as_str))
        .map_err(|e| invalid(path, "nodePortAddresses", e))?;
    mapping.bind_address = bind_address(file, path)?;
    Ok(())
}

fn bind_address(file: &KubeProxyConfiguration, path: &Path) -> Result<IpAddr, ConfigError> {
    let bind = text(&file.bind_address);
    if bind.is_empty() {
        return Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    parse_ip(bind).map_err(|e| invalid(path, "bindAddress", e))
}

/// `healthzBindAddress` or `metricsBindAddress`: empty is the default for
/// the family of `bindAddress`; an address without a port gets `port`.
fn server_address(
    value: &str,
    default_ip: IpAddr,
    port: u16,
    field: &str,
    path: &Path,
) -> Result<BindAddress, ConfigError> {
    if value.is_empty() {
        return Ok(BindAddress(Some(SocketAddr::new(default_ip, port))));
    }
    if let Ok(ip) = parse_ip(value.trim_start_matches('[').trim_end_matches(']')) {
        return Ok(BindAddress(Some(SocketAddr::new(ip, port))));
    }
    value
        .parse::<SocketAddr>()
        .map(|a| BindAddress(Some(a)))
        .map_err(|e| invalid(path, field, format!("{value:?} is not IP:port: {e}")))
}

fn apply_run(
    file: &KubeProxyConfiguration,
    path: &Path,
    args: &mut RunArgs,
    keep: Keep,
    notes: &mut Notes,
) -> Result<(), ConfigError> {
    apply_source(file, path, &mut args.source, keep.hostname, notes)?;
    apply_mapping(file, path, &mut args.mapping)?;
    let kp = &mut args.kube_proxy;

    // Servers: defaults follow the family of bindAddress, as in kube-proxy.
    let bind = args.mapping.bind_address;
    let (healthz_ip, metrics_ip) = if bind.is_ipv4() {
        (
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
    } else {
        (
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        )
    };
    args.healthz_bind_address = server_address(
        text(&file.healthz_bind_address),
        healthz_ip,
        defaults::HEALTHZ_PORT,
        "healthzBindAddress",
        path,
    )?;
    args.metrics_bind_address = server_address(
        text(&file.metrics_bind_address),
        metrics_ip,
        defaults::METRICS_PORT,
        "metricsBindAddress",
        path,
    )?;
    kp.bind_address_hard_fail = file.bind_address_hard_fail.unwrap_or_default();
    kp.proxy_mode = parse_proxy_mode(text(&file.mode)).map_err(|e| invalid(path, "mode", e))?;

    // Masquerading: kube-proxy's IPVS mode reads the iptables section.
    let iptables = file.iptables.clone().unwrap_or_default();
    kp.iptables_masquerade_bit = iptables.masquerade_bit.unwrap_or(defaults::MASQUERADE_BIT);
    args.masquerade_all = iptables.masquerade_all.unwrap_or_default();

    let ipvs = file.ipvs.clone().unwrap_or_default();
    let sync = duration(&ipvs.sync_period);
    args.ipvs_sync_period = if sync.is_zero() {
        defaults::SYNC_PERIOD
    } else {
        sync
    };
    // Zero is meaningful here: "every change syncs at once".
    args.ipvs_min_sync_period = duration(&ipvs.min_sync_period);
    args.ipvs_exclude_cidrs = cidr_list(
        ipvs.exclude_cidrs.as_deref().unwrap_or_default(),
        "ipvs.excludeCIDRs",
        path,
    )?;
    args.ipvs_strict_arp = ipvs.strict_arp.unwrap_or_default();
    args.ipvs_tcp_timeout = duration(&ipvs.tcp_timeout);
    args.ipvs_tcpfin_timeout = duration(&ipvs.tcp_fin_timeout);
    args.ipvs_udp_timeout = duration(&ipvs.udp_timeout);

    kp.detect_local_mode = parse_detect_local_mode(text(&file.detect_local_mode))
        .map_err(|e| invalid(path, "detectLocalMode", e))?;
    let detect = file.detect_local.clone().unwrap_or_default();
    kp.pod_bridge_interface = text(&detect.bridge_interface).to_owned();
    kp.pod_interface_name_prefix = text(&detect.interface_name_prefix).to_owned();
    let cluster: Vec<String> = text(&file.cluster_cidr)
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    args.cluster_cidr = cidr_list(&cluster, "clusterCIDR", path)?;

    kp.oom_score_adj = file.oom_score_adj.unwrap_or(defaults::OOM_SCORE_ADJ);
    let conntrack = file.conntrack.clone().unwrap_or_default();
    kp.conntrack_max_per_core = conntrack
        .max_per_core
        .unwrap_or(defaults::CONNTRACK_MAX_PER_CORE);
    kp.conntrack_min = conntrack.min.unwrap_or(defaults::CONNTRACK_MIN);
    kp.conntrack_tcp_timeout_established = conntrack
        .tcp_established_timeout
        .map_or(defaults::CONNTRACK_TCP_ESTABLISHED, |d| d.0);
    kp.conntrack_tcp_timeout_close_wait = conntrack
        .tcp_close_wait_timeout
        .map_or(defaults::CONNTRACK_TCP_CLOSE_WAIT, |d| d.0);
    kp.conntrack_tcp_be_liberal = conntrack.tcp_be_liberal.unwrap_or_default();
    kp.conntrack_udp_timeout = duration(&conntrack.udp_timeout);
    kp.conntrack_udp_timeout_stream = duration(&conntrack.udp_stream_timeout);

    if let Some(logging) = &file.logging {
        if !keep.verbosity {
            kp.v = logging.verbosity.unwrap_or_default();
        }
        match text(&logging.format) {
            "" => {}
            "text" if !keep.log_format => args.log_format = LogFormat::Text,
            "json" if !keep.log_format => args.log_format = LogFormat::Json,
            "text" | "json" => {}
            other => {
                return Err(invalid(
                    path,
                    "logging.format",
                    format!("{other:?}; kube-ipvs logs as text or json"),
                ))
            }
        }
    }
    notes
        .fields_without_effect
        .extend(fields_without_effect(file));
    Ok(())
}

fn cidr_list(entries: &[String], field: &str, path: &Path) -> Result<Cidrs, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, c)| parse_cidr(c).map_err(|e| invalid(path, &format!("{field}[{i}]"), e)))
        .collect::<Result<_, _>>()
        .map(Cidrs)
}

/// `address` with its port replaced; port 0 disables the server, as
/// kube-proxy's deprecated `--healthz-port` and `--metrics-port` do.
fn with_port(address: BindAddress, port: u16) -> BindAddress {
    if port == 0 {
        return BindAddress(None);
    }
    BindAddress(address.0.map(|a| SocketAddr::new(a.ip(), port)))
}
