//! Prometheus metrics, with kube-proxy's names where kube-proxy has one so
//! existing dashboards and alerts keep working.
//!
//! kube-proxy's own metrics carry an `ip_family` label (`IPv4`, `IPv6`), as
//! current kube-proxy has them: it runs one proxier per family. kube-ipvs
//! syncs both families in one pass, so a sync's duration and time are
//! recorded under each family it served; changes, pending changes and
//! programming latency under the family of the object (a Service's cluster
//! IPs, an EndpointSlice's address type). The `process_*` metrics (CPU,
//! memory, file descriptors) are those of every Go component.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The label kube-proxy's metrics are split by.
pub const IP_FAMILY: &str = "ip_family";

/// Every metric the agent exports.
#[derive(Clone)]
pub struct Metrics {
    /// `kubeproxy_sync_proxy_rules_duration_seconds{ip_family}`: every sync
    /// that programs changes (full and partial).
    pub sync_duration: HistogramVec,
    /// `kubeproxy_sync_full_proxy_rules_duration_seconds{ip_family}`: full
    /// syncs (start, every `--ipvs-sync-period`, retries).
    pub sync_full_duration: HistogramVec,
    /// `kubeproxy_sync_partial_proxy_rules_duration_seconds{ip_family}`:
    /// incremental syncs of the changed Services.
    pub sync_partial_duration: HistogramVec,
    /// `kubeproxy_network_programming_duration_seconds{ip_family}`.
    pub network_programming: HistogramVec,
    /// `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family}`.
    pub last_sync: GaugeVec,
    /// `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family}`.
    pub last_queued: GaugeVec,
    /// `kubeproxy_sync_proxy_rules_endpoint_changes_total{ip_family}`.
    pub endpoint_changes: IntCounterVec,
    /// `kubeproxy_sync_proxy_rules_endpoint_changes_pending{ip_family}`:
    /// Services whose endpoints changed since the last sync.
    pub endpoint_changes_pending: IntGaugeVec,
    /// `kubeproxy_sync_proxy_rules_service_changes_total{ip_family}`.
    pub service_changes: IntCounterVec,
    /// `kubeproxy_sync_proxy_rules_service_changes_pending{ip_family}`:
    /// Services changed since the last sync.
    pub service_changes_pending: IntGaugeVec,
    /// `kube_ipvs_netlink_operations_total{op,result}`.
    pub operations: IntCounterVec,
    /// `kube_ipvs_virtual_servers`.
    pub virtual_servers: IntGauge,
    /// `kube_ipvs_real_servers`.
    pub real_servers: IntGauge,
    /// `kube_ipvs_skipped_objects_total{kind,reason}`.
    pub skipped: IntCounterVec,
    /// `kube_ipvs_sync_errors_total{operation}`: failed kernel writes by
    /// operation (`new_service`, `bind_address`, ...), failed dumps
    /// (`dump`), and the packet filter's failures (`nftables`,
    /// `udp_conntrack`, `forward_rule`).
    pub sync_errors: IntCounterVec,
    /// `kube_ipvs_repairs_total{what}`: kernel state the agent owns that
    /// changed under it and was put back by a full resync.
    pub repairs: IntCounterVec,
    /// `kube_ipvs_source_errors_total{resource,kind}`.
    pub source_errors: IntCounterVec,
    /// `kube_ipvs_health_check_bind_errors_total`.
    pub health_check_bind_errors: IntCounter,
    /// `kube_ipvs_health_checks`.
    pub health_checks: IntGauge,
}

/// kube-proxy's sync-duration buckets: exponential from 1 ms, doubling, 15
/// buckets (up to ~16 s), so a dashboard built on kube-proxy's histogram
/// reads ours the same way.
fn sync_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 15).expect("static bucket parameters")
}

/// kube-proxy's network-programming buckets: 0.25 s steps below 1 s, 1 s steps
/// to a minute, then 5 s and 30 s steps to 5 minutes: it measures the
/// cluster's end-to-end latency, which is seconds, not milliseconds.
fn programming_buckets() -> Vec<f64> {
    let mut b = vec![0.25, 0.5];
    b.extend((1..60).map(f64::from));
    b.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
    b.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
    b
}

impl Metrics {
    /// Creates the metrics and registers them, and the process collector,
    /// on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let family = &[IP_FAMILY];
        let sync_histogram = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(sync_buckets()),
                family,
            )
        };
        let m = Metrics {
            sync_duration: sync_histogram(
                "kubeproxy_sync_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds",
            )?,
            sync_full_duration: sync_histogram(
                "kubeproxy_sync_full_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for full resyncs",
            )?,
            sync_partial_duration: sync_histogram(
                "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for partial resyncs",
            )?,
            network_programming: HistogramVec::new(
                HistogramOpts::new(
                    "kubeproxy_network_programming_duration_seconds",
                    "In Cluster Network Programming Latency in seconds",
                )
                .buckets(programming_buckets()),
                family,
            )?,
            last_sync: GaugeVec::new(
                Opts::new(
                    "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                    "The last time proxy rules were successfully synced",
                ),
                family,
            )?,
            last_queued: GaugeVec::new(
                Opts::new(
                    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                    "The last time a sync of proxy rules was queued",
                ),
                family,
            )?,
            endpoint_changes: IntCounterVec::new(
                Opts::new(
                    "kubeproxy_sync_proxy_rules_endpoint_changes_total",
                    "Cumulative proxy rules Endpoint changes",
                ),
                family,
            )?,
            endpoint_changes_pending: IntGaugeVec::new(
                Opts::new(
                    "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
                    "Pending proxy rules Endpoint changes",
                ),
                family,
            )?,
            service_changes: IntCounterVec::new(
                Opts::new(
                    "kubeproxy_sync_proxy_rules_service_changes_total",
                    "Cumulative proxy rules Service changes",
                ),
                family,
            )?,
            service_changes_pending: IntGaugeVec::new(
                Opts::new(
                    "kubeproxy_sync_proxy_rules_service_changes_pending",
                    "Pending proxy rules Service changes",
                ),
                family,
            )?,
            operations: IntCounterVec::new(
                Opts::new(
                    "kube_ipvs_netlink_operations_total",
                    "Kernel write operations applied, by operation and result",
                ),
                &["op", "result"],
            )?,
            virtual_servers: IntGauge::new(
                "kube_ipvs_virtual_servers",
                "Virtual servers the agent wants programmed",
            )?,
            real_servers: IntGauge::new(
                "kube_ipvs_real_servers",
                "Real servers the agent wants programmed",
            )?,
            skipped: IntCounterVec::new(
                Opts::new(
                    "kube_ipvs_skipped_objects_total",
                    "Objects or parts of objects that could not be mapped, by kind and reason",
                ),
                &["kind", "reason"],
            )?,
            sync_errors: IntCounterVec::new(
                Opts::new(
                    "kube_ipvs_sync_errors_total",
                    "Failed kernel operations, dumps and packet filter updates, by operation",
                ),
                &["operation"],
            )?,
            repairs: IntCounterVec::new(
                Opts::new(
                    "kube_ipvs_repairs_total",
                    "Kernel state the agent owns that changed under it and was put back, by what",
                ),
                &["what"],
            )?,
            source_errors: IntCounterVec::new(
                Opts::new(
                    "kube_ipvs_source_errors_total",
                    "Failed lists and watches of the Kubernetes API, by resource and kind of error",
                ),
                &["resource", "kind"],
            )?,
            health_check_bind_errors: IntCounter::new(
                "kube_ipvs_health_check_bind_errors_total",
                "Services' health check ports that could not be bound (tried again at the next sync)",
            )?,
            health_checks: IntGauge::new(
                "kube_ipvs_health_checks",
                "Services' health checks served on their healthCheckNodePort",
            )?,
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "kube_ipvs_build_info",
                "Build information; the value is always 1",
            ),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(m.sync_duration.clone()))?;
        registry.register(Box::new(m.sync_full_duration.clone()))?;
        registry.register(Box::new(m.sync_partial_duration.clone()))?;
        registry.register(Box::new(m.network_programming.clone()))?;
        registry.register(Box::new(m.last_sync.clone()))?;
        registry.register(Box::new(m.last_queued.clone()))?;
        registry.register(Box::new(m.endpoint_changes.clone()))?;
        registry.register(Box::new(m.endpoint_changes_pending.clone()))?;
        registry.register(Box::new(m.service_changes.clone()))?;
        registry.register(Box::new(m.service_changes_pending.clone()))?;
        registry.register(Box::new(m.operations.clone()))?;
        registry.register(Box::new(m.virtual_servers.clone()))?;
        registry.register(Box::new(m.real_servers.clone()))?;
        registry.register(Box::new(m.skipped.clone()))?;
        registry.register(Box::new(m.sync_errors.clone()))?;
        registry.register(Box::new(m.repairs.clone()))?;
        registry.register(Box::new(m.source_errors.clone()))?;
        registry.register(Box::new(m.health_check_bind_errors.clone()))?;
        registry.register(Box::new(m.health_checks.clone()))?;
        Ok(m)
    }

    /// Creates every `ip_family` series of `family` at zero, so that a
    /// family the node serves is exported before its first change (as the
    /// unlabelled metrics are from the start).
    pub fn init_family(&self, family: &str) {
        let labels = &[family];
        let _ = self.sync_duration.with_label_values(labels);
        let _ = self.sync_full_duration.with_label_values(labels);
        let _ = self.sync_partial_duration.with_label_values(labels);
        let _ = self.network_programming.with_label_values(labels);
        let _ = self.endpoint_changes.with_label_values(labels);
        let _ = self.endpoint_changes_pending.with_label_values(labels);
        let _ = self.service_changes.with_label_values(labels);
        let _ = self.service_changes_pending.with_label_values(labels);
    }

    /// A set of metrics on a private registry, for tests and one-shot commands.
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry has no duplicates")
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into a Vec fails only on a metric family that is invalid by
    // construction, which registration already rejected.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
