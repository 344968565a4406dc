//! Which of kube-proxy's flags a `--config` file replaces (`options.go`:
//! with a file, the flags are not read, but for the few it lets win).

/// kube-proxy flags that the file replaces when `--config` is given, by
/// argument id and flag name.
pub(super) const FILE_COVERED: &[(&str, &str)] = &[
    ("kubeconfig", "--kubeconfig"),
    ("kube_api_qps", "--kube-api-qps"),
    ("kube_api_burst", "--kube-api-burst"),
    ("kube_api_content_type", "--kube-api-content-type"),
    ("bind_address", "--bind-address"),
    ("healthz_bind_address", "--healthz-bind-address"),
    ("metrics_bind_address", "--metrics-bind-address"),
    ("healthz_port", "--healthz-port"),
    ("metrics_port", "--metrics-port"),
    ("bind_address_hard_fail", "--bind-address-hard-fail"),
    ("profiling", "--profiling"),
    (
        "show_hidden_metrics_for_version",
        "--show-hidden-metrics-for-version",
    ),
    ("proxy_mode", "--proxy-mode"),
    ("feature_gates", "--feature-gates"),
    ("iptables_masquerade_bit", "--iptables-masquerade-bit"),
    ("masquerade_all", "--masquerade-all"),
    (
        "iptables_localhost_nodeports",
        "--iptables-localhost-nodeports",
    ),
    ("iptables_sync_period", "--iptables-sync-period"),
    ("iptables_min_sync_period", "--iptables-min-sync-period"),
    ("ipvs_sync_period", "--ipvs-sync-period"),
    ("ipvs_min_sync_period", "--ipvs-min-sync-period"),
    ("ipvs_scheduler", "--ipvs-scheduler"),
    ("ipvs_exclude_cidrs", "--ipvs-exclude-cidrs"),
    ("ipvs_strict_arp", "--ipvs-strict-arp"),
    ("ipvs_tcp_timeout", "--ipvs-tcp-timeout"),
    ("ipvs_tcpfin_timeout", "--ipvs-tcpfin-timeout"),
    ("ipvs_udp_timeout", "--ipvs-udp-timeout"),
    ("detect_local_mode", "--detect-local-mode"),
    ("pod_bridge_interface", "--pod-bridge-interface"),
    ("pod_interface_name_prefix", "--pod-interface-name-prefix"),
    ("cluster_cidr", "--cluster-cidr"),
    ("nodeport_addresses", "--nodeport-addresses"),
    ("oom_score_adj", "--oom-score-adj"),
    ("conntrack_max_per_core", "--conntrack-max-per-core"),
    ("conntrack_min", "--conntrack-min"),
    (
        "conntrack_tcp_timeout_established",
        "--conntrack-tcp-timeout-established",
    ),
    (
        "conntrack_tcp_timeout_close_wait",
        "--conntrack-tcp-timeout-close-wait",
    ),
    ("conntrack_tcp_be_liberal", "--conntrack-tcp-be-liberal"),
    ("conntrack_udp_timeout", "--conntrack-udp-timeout"),
    (
        "conntrack_udp_timeout_stream",
        "--conntrack-udp-timeout-stream",
    ),
    ("config_sync_period", "--config-sync-period"),
];
