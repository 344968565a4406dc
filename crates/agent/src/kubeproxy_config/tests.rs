//! Decoding the file: kubeadm's, and what strict decoding refuses.

use std::path::Path;
use std::time::Duration;

use super::model::{GoDuration, Quantity};
use super::*;

const KUBEADM: &str = include_str!("../../tests/fixtures/kubeadm/config.conf");
const KUBEADM_IPVS: &str = include_str!("../../tests/fixtures/kubeadm/config-ipvs.conf");

fn decode(text: &str) -> Result<KubeProxyConfiguration, ConfigError> {
    parse(Path::new("config.conf"), text)
}

#[test]
fn kubeadm_default_file_decodes_with_nulls_as_unset() {
    let c = decode(KUBEADM).unwrap();
    assert_eq!(c.mode.as_deref(), Some(""));
    assert_eq!(c.cluster_cidr.as_deref(), Some("10.244.0.0/16"));
    let client = c.client_connection.unwrap();
    assert_eq!(
        client.kubeconfig.as_deref(),
        Some("/var/lib/kube-proxy/kubeconfig.conf")
    );
    assert_eq!(client.qps, Some(0.0));
    let ipvs = c.ipvs.unwrap();
    assert_eq!(ipvs.exclude_cidrs, None);
    assert_eq!(ipvs.sync_period, Some(GoDuration(Duration::ZERO)));
    let conntrack = c.conntrack.unwrap();
    assert_eq!(conntrack.max_per_core, None, "null is Go's nil");
    assert_eq!(conntrack.tcp_established_timeout, None);
    assert_eq!(c.node_port_addresses, None);
    let logging = c.logging.unwrap();
    assert_eq!(
        logging.options.unwrap().json.unwrap().info_buffer_size,
        Some(Quantity("0".into()))
    );
}

#[test]
fn kubeadm_ipvs_file_decodes() {
    let c = decode(KUBEADM_IPVS).unwrap();
    assert_eq!(c.mode.as_deref(), Some("ipvs"));
    let ipvs = c.ipvs.unwrap();
    assert_eq!(ipvs.scheduler.as_deref(), Some("wrr"));
    assert_eq!(ipvs.sync_period, Some(GoDuration(Duration::from_secs(60))));
    assert_eq!(
        ipvs.min_sync_period,
        Some(GoDuration(Duration::from_secs(2)))
    );
    assert_eq!(ipvs.strict_arp, Some(true));
    assert_eq!(
        ipvs.exclude_cidrs,
        Some(vec!["192.168.100.0/24".to_owned()])
    );
    assert_eq!(
        c.node_port_addresses,
        Some(vec!["192.168.0.0/24".to_owned()])
    );
    assert_eq!(c.metrics_bind_address.as_deref(), Some("0.0.0.0:10249"));
    assert_eq!(c.iptables.unwrap().snat_node_internal_ip, None);
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let top = KUBEADM.replace("portRange: \"\"", "portRange: \"\"\nproxyMode: ipvs");
    let e = decode(&top).unwrap_err();
    assert_eq!(e.field(), Some("proxyMode"), "{e}");
    assert!(e.to_string().contains("unknown field"), "{e}");

    let nested = KUBEADM.replace(
        "  strictARP: false",
        "  strictARP: false\n  strictArp: true",
    );
    let e = decode(&nested).unwrap_err();
    assert_eq!(e.field(), Some("ipvs.strictArp"), "{e}");

    let deep = KUBEADM.replace(
        "      infoBufferSize: \"0\"\n    text:",
        "      infoBufferSize: \"0\"\n      bufferSize: 1\n    text:",
    );
    let e = decode(&deep).unwrap_err();
    assert_eq!(e.field(), Some("logging.options.json.bufferSize"), "{e}");
}

#[test]
fn wrong_types_are_refused_by_name() {
    for (from, to, field) in [
        ("  scheduler: \"\"", "  scheduler: 5", "ipvs.scheduler"),
        (
            "  strictARP: false",
            "  strictARP: \"yes\"",
            "ipvs.strictARP",
        ),
        (
            "  syncPeriod: 0s\n  tcpFinTimeout",
            "  syncPeriod: 30\n  tcpFinTimeout",
            "ipvs.syncPeriod",
        ),
        ("  burst: 0", "  burst: 1.5", "clientConnection.burst"),
        (
            "nodePortAddresses: null",
            "nodePortAddresses: 10.0.0.0/8",
            "nodePortAddresses",
        ),
        ("oomScoreAdj: null", "oomScoreAdj: low", "oomScoreAdj"),
    ] {
        let text = KUBEADM.replacen(from, to, 1);
        assert_ne!(text, KUBEADM, "{from} not in the fixture");
        let e = decode(&text).unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
}

#[test]
fn only_kube_proxy_configuration_v1alpha1() {
    let e = decode(&KUBEADM.replace("kind: KubeProxyConfiguration", "kind: KubeletConfiguration"))
        .unwrap_err();
    assert_eq!(e.field(), Some("kind"));
    let e = decode(&KUBEADM.replace(
        "kubeproxy.config.k8s.io/v1alpha1",
        "kubeproxy.config.k8s.io/v1alpha2",
    ))
    .unwrap_err();
    assert_eq!(e.field(), Some("apiVersion"));
    assert!(matches!(
        decode("- a\n- b\n"),
        Err(ConfigError::Invalid { .. })
    ));
    assert!(matches!(decode("a: [\n"), Err(ConfigError::Syntax(..))));
}

#[test]
fn json_files_and_logging_forms() {
    let c = decode(
        r#"{"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "logging": {"flushFrequency": "5s", "verbosity": 2,
                        "options": {"json": {"infoBufferSize": "64Ki", "splitStream": true}}},
            "udpIdleTimeout": "250ms"}"#,
    )
    .unwrap();
    let logging = c.logging.unwrap();
    assert_eq!(logging.flush_frequency.unwrap().0, Duration::from_secs(5));
    assert_eq!(logging.verbosity, Some(2));
    assert!(!logging
        .options
        .unwrap()
        .json
        .unwrap()
        .info_buffer_size
        .unwrap()
        .is_zero());
    let c = decode(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nlogging:\n  flushFrequency: 5000000000\n",
    )
    .unwrap();
    assert_eq!(
        c.logging.unwrap().flush_frequency.unwrap().0,
        Duration::from_secs(5)
    );
}
