//! `KubeProxyConfiguration` (`kubeproxy.config.k8s.io/v1alpha1`) as
//! kube-proxy decodes it: every field of the upstream type
//! (`staging/src/k8s.io/kube-proxy/config/v1alpha1/types.go`), with its JSON
//! name and Go type, and nothing else.
//!
//! Every struct refuses unknown fields, as kube-proxy's strict decoding
//! does. Every field is an `Option`: absent and `null` are Go's zero value
//! (Go leaves a field alone on `null`), and for pointer fields (`*int32`,
//! `*bool`, `*Duration`) `None` is Go's `nil`, which kube-proxy defaults
//! differently from an explicit zero.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The `apiVersion` this model reads.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// The `kind` this model reads.
pub const KIND: &str = "KubeProxyConfiguration";

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeProxyConfiguration {
    /// `apiVersion`.
    #[serde(rename = "apiVersion", default)]
    pub api_version: Option<String>,
    /// `kind`.
    #[serde(default)]
    pub kind: Option<String>,
    /// `featureGates`.
    #[serde(rename = "featureGates", default)]
    pub feature_gates: Option<BTreeMap<String, bool>>,
    /// `clientConnection`.
    #[serde(rename = "clientConnection", default)]
    pub client_connection: Option<ClientConnection>,
    /// `logging`.
    #[serde(default)]
    pub logging: Option<Logging>,
    /// `hostnameOverride`.
    #[serde(rename = "hostnameOverride", default)]
    pub hostname_override: Option<String>,
    /// `bindAddress`: the node's primary IP, despite the name.
    #[serde(rename = "bindAddress", default)]
    pub bind_address: Option<String>,
    /// `healthzBindAddress`.
    #[serde(rename = "healthzBindAddress", default)]
    pub healthz_bind_address: Option<String>,
    /// `metricsBindAddress`.
    #[serde(rename = "metricsBindAddress", default)]
    pub metrics_bind_address: Option<String>,
    /// `bindAddressHardFail`.
    #[serde(rename = "bindAddressHardFail", default)]
    pub bind_address_hard_fail: Option<bool>,
    /// `enableProfiling`.
    #[serde(rename = "enableProfiling", default)]
    pub enable_profiling: Option<bool>,
    /// `showHiddenMetricsForVersion`.
    #[serde(rename = "showHiddenMetricsForVersion", default)]
    pub show_hidden_metrics_for_version: Option<String>,
    /// `mode`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `iptables`.
    #[serde(default)]
    pub iptables: Option<IpTables>,
    /// `ipvs`.
    #[serde(default)]
    pub ipvs: Option<Ipvs>,
    /// `nftables`.
    #[serde(default)]
    pub nftables: Option<NfTables>,
    /// `winkernel`.
    #[serde(default)]
    pub winkernel: Option<Winkernel>,
    /// `detectLocalMode`.
    #[serde(rename = "detectLocalMode", default)]
    pub detect_local_mode: Option<String>,
    /// `detectLocal`.
    #[serde(rename = "detectLocal", default)]
    pub detect_local: Option<DetectLocal>,
    /// `clusterCIDR`: one CIDR, or a comma-separated dual-stack pair.
    #[serde(rename = "clusterCIDR", default)]
    pub cluster_cidr: Option<String>,
    /// `nodePortAddresses`.
    #[serde(rename = "nodePortAddresses", default)]
    pub node_port_addresses: Option<Vec<String>>,
    /// `oomScoreAdj` (`*int32`).
    #[serde(rename = "oomScoreAdj", default)]
    pub oom_score_adj: Option<i32>,
    /// `conntrack`.
    #[serde(default)]
    pub conntrack: Option<Conntrack>,
    /// `configSyncPeriod`.
    #[serde(rename = "configSyncPeriod", default)]
    pub config_sync_period: Option<GoDuration>,
    /// `portRange`: unused since the userspace proxy went.
    #[serde(rename = "portRange", default)]
    pub port_range: Option<String>,
    /// `windowsRunAsService`.
    #[serde(rename = "windowsRunAsService", default)]
    pub windows_run_as_service: Option<bool>,
    /// `udpIdleTimeout`: the userspace proxy's, removed in v1.26; files
    /// kubeadm wrote before then still carry it.
    #[serde(rename = "udpIdleTimeout", default)]
    pub udp_idle_timeout: Option<GoDuration>,
}

/// `clientConnection` (component-base's `ClientConnectionConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConnection {
    /// `kubeconfig`.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// `acceptContentTypes`.
    #[serde(rename = "acceptContentTypes", default)]
    pub accept_content_types: Option<String>,
    /// `contentType`.
    #[serde(rename = "contentType", default)]
    pub content_type: Option<String>,
    /// `qps` (`float32`).
    #[serde(default)]
    pub qps: Option<f32>,
    /// `burst` (`int32`).
    #[serde(default)]
    pub burst: Option<i32>,
}

/// `logging` (component-base's `LoggingConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// `format`: `text` or `json`.
    #[serde(default)]
    pub format: Option<String>,
    /// `flushFrequency`: nanoseconds, or a duration string.
    #[serde(rename = "flushFrequency", default)]
    pub flush_frequency: Option<TimeOrDuration>,
    /// `verbosity`.
    #[serde(default)]
    pub verbosity: Option<u32>,
    /// `vmodule`.
    #[serde(default)]
    pub vmodule: Option<Vec<VModule>>,
    /// `options`.
    #[serde(default)]
    pub options: Option<LoggingOptions>,
    /// `sanitization`: in the logging configuration of v1.22 to v1.25.
    #[serde(default)]
    pub sanitization: Option<bool>,
}

/// One `vmodule` entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VModule {
    /// `filePattern`.
    #[serde(rename = "filePattern", default)]
    pub file_pattern: Option<String>,
    /// `verbosity`.
    #[serde(default)]
    pub verbosity: Option<u32>,
}

/// `logging.options`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingOptions {
    /// `text`.
    #[serde(default)]
    pub text: Option<FormatOptions>,
    /// `json`.
    #[serde(default)]
    pub json: Option<FormatOptions>,
}

/// `logging.options.text` and `logging.options.json`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatOptions {
    /// `splitStream`.
    #[serde(rename = "splitStream", default)]
    pub split_stream: Option<bool>,
    /// `infoBufferSize`: a quantity (`"0"`, `64Ki`, or a number).
    #[serde(rename = "infoBufferSize", default)]
    pub info_buffer_size: Option<Quantity>,
}

/// `iptables`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpTables {
    /// `masqueradeBit` (`*int32`): kube-proxy's IPVS mode reads it too.
    #[serde(rename = "masqueradeBit", default)]
    pub masquerade_bit: Option<i32>,
    /// `masqueradeAll`: kube-proxy's IPVS mode reads it too.
    #[serde(rename = "masqueradeAll", default)]
    pub masquerade_all: Option<bool>,
    /// `localhostNodePorts` (`*bool`).
    #[serde(rename = "localhostNodePorts", default)]
    pub localhost_node_ports: Option<bool>,
    /// `snatNodeInternalIP` (`*bool`).
    #[serde(rename = "snatNodeInternalIP", default)]
    pub snat_node_internal_ip: Option<bool>,
    /// `syncPeriod`.
    #[serde(rename = "syncPeriod", default)]
    pub sync_period: Option<GoDuration>,
    /// `minSyncPeriod`.
    #[serde(rename = "minSyncPeriod", default)]
    pub min_sync_period: Option<GoDuration>,
}

/// `ipvs`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipvs {
    /// `syncPeriod`.
    #[serde(rename = "syncPeriod", default)]
    pub sync_period: Option<GoDuration>,
    /// `minSyncPeriod`.
    #[serde(rename = "minSyncPeriod", default)]
    pub min_sync_period: Option<GoDuration>,
    /// `scheduler`.
    #[serde(default)]
    pub scheduler: Option<String>,
    /// `excludeCIDRs`.
    #[serde(rename = "excludeCIDRs", default)]
    pub exclude_cidrs: Option<Vec<String>>,
    /// `strictARP`.
    #[serde(rename = "strictARP", default)]
    pub strict_arp: Option<bool>,
    /// `tcpTimeout`.
    #[serde(rename = "tcpTimeout", default)]
    pub tcp_timeout: Option<GoDuration>,
    /// `tcpFinTimeout`.
    #[serde(rename = "tcpFinTimeout", default)]
    pub tcp_fin_timeout: Option<GoDuration>,
    /// `udpTimeout`.
    #[serde(rename = "udpTimeout", default)]
    pub udp_timeout: Option<GoDuration>,
}

/// `nftables`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NfTables {
    /// `masqueradeBit` (`*int32`).
    #[serde(rename = "masqueradeBit", default)]
    pub masquerade_bit: Option<i32>,
    /// `masqueradeAll`.
    #[serde(rename = "masqueradeAll", default)]
    pub masquerade_all: Option<bool>,
    /// `syncPeriod`.
    #[serde(rename = "syncPeriod", default)]
    pub sync_period: Option<GoDuration>,
    /// `minSyncPeriod`.
    #[serde(rename = "minSyncPeriod", default)]
    pub min_sync_period: Option<GoDuration>,
}

/// `winkernel`: Windows only.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Winkernel {
    /// `networkName`.
    #[serde(rename = "networkName", default)]
    pub network_name: Option<String>,
    /// `sourceVip`.
    #[serde(rename = "sourceVip", default)]
    pub source_vip: Option<String>,
    /// `enableDSR`.
    #[serde(rename = "enableDSR", default)]
    pub enable_dsr: Option<bool>,
    /// `rootHnsEndpointName`.
    #[serde(rename = "rootHnsEndpointName", default)]
    pub root_hns_endpoint_name: Option<String>,
    /// `forwardHealthCheckVip`.
    #[serde(rename = "forwardHealthCheckVip", default)]
    pub forward_health_check_vip: Option<bool>,
}

/// `detectLocal`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectLocal {
    /// `bridgeInterface`.
    #[serde(rename = "bridgeInterface", default)]
    pub bridge_interface: Option<String>,
    /// `interfaceNamePrefix`.
    #[serde(rename = "interfaceNamePrefix", default)]
    pub interface_name_prefix: Option<String>,
}

/// `conntrack`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conntrack {
    /// `maxPerCore` (`*int32`).
    #[serde(rename = "maxPerCore", default)]
    pub max_per_core: Option<i32>,
    /// `min` (`*int32`).
    #[serde(default)]
    pub min: Option<i32>,
    /// `tcpEstablishedTimeout` (`*Duration`).
    #[serde(rename = "tcpEstablishedTimeout", default)]
    pub tcp_established_timeout: Option<GoDuration>,
    /// `tcpCloseWaitTimeout` (`*Duration`).
    #[serde(rename = "tcpCloseWaitTimeout", default)]
    pub tcp_close_wait_timeout: Option<GoDuration>,
    /// `tcpBeLiberal`.
    #[serde(rename = "tcpBeLiberal", default)]
    pub tcp_be_liberal: Option<bool>,
    /// `udpTimeout`.
    #[serde(rename = "udpTimeout", default)]
    pub udp_timeout: Option<GoDuration>,
    /// `udpStreamTimeout`.
    #[serde(rename = "udpStreamTimeout", default)]
    pub udp_stream_timeout: Option<GoDuration>,
}

/// A Go `metav1.Duration`: a string such as `30s`, `1m0s` or `300ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"30s\" or \"1m0s\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<GoDuration, E> {
                crate::cli::parse_duration(s)
                    .map(GoDuration)
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// component-base's `TimeOrMetaDuration`: nanoseconds as a number, or a
/// duration string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeOrDuration(pub Duration);

impl<'de> Deserialize<'de> for TimeOrDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TimeOrDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("nanoseconds or a duration string")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<TimeOrDuration, E> {
                Ok(TimeOrDuration(Duration::from_nanos(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<TimeOrDuration, E> {
                u64::try_from(n)
                    .map(|n| TimeOrDuration(Duration::from_nanos(n)))
                    .map_err(|_| E::custom(format!("{n} is negative")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TimeOrDuration, E> {
                crate::cli::parse_duration(s)
                    .map(TimeOrDuration)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A `resource.Quantity` as written: `"0"`, `64Ki`, or a bare number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quantity(pub String);

impl Quantity {
    /// Whether the quantity is zero (`0`, `"0"`, `0Ki`, ...).
    pub fn is_zero(&self) -> bool {
        let digits = self
            .0
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_alphabetic());
        digits.parse::<f64>().is_ok_and(|n| n == 0.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a quantity such as \"0\" or \"64Ki\"")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Quantity, E> {
                Ok(Quantity(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Quantity, E> {
                Ok(Quantity(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Quantity, E> {
                Ok(Quantity(n.to_string()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quantity, E> {
                let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                if digits.is_empty() || digits.parse::<f64>().is_err() {
                    return Err(E::custom(format!("{s:?} is not a quantity")));
                }
                Ok(Quantity(s.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}
