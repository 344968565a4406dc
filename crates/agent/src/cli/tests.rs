//! Tests of the flags.

use super::*;
use clap::CommandFactory;

#[test]
fn go_durations() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
    assert_eq!(parse_duration("1h0m0s"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert!(parse_duration("30").is_err());
    assert!(parse_duration("").is_err());
    assert!(parse_duration("5x").is_err());
    assert!(parse_duration("s").is_err());
}

/// Found by fuzzing (`hack/fuzz duration`): durations past Go's range
/// parsed, and two of 2^64 seconds overflowed std's `Duration` (a panic).
#[test]
fn go_durations_stay_in_go_range() {
    assert!(parse_duration("3ms44444444444444443ms1m1ms").is_err());
    assert!(parse_duration("18446744073709551615s18446744073709551615s").is_err());
    assert!(parse_duration("2562048h").is_err());
    assert!(parse_duration("9223372037s").is_err());
    assert_eq!(
        parse_duration("2562047h"),
        Ok(Duration::from_secs(2_562_047 * 3600))
    );
}

#[test]
fn defaults_follow_kube_proxy() {
    let cli = Cli::try_parse_from(["kube-ipvs", "run"]).unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    assert_eq!(run.ipvs_sync_period, Duration::from_secs(30));
    assert_eq!(
        run.metrics_bind_address,
        BindAddress(Some("127.0.0.1:10249".parse().unwrap()))
    );
    assert_eq!(
        run.healthz_bind_address,
        BindAddress(Some("0.0.0.0:10256".parse().unwrap()))
    );
    let cli = Cli::try_parse_from(["kube-ipvs", "dump", "--metrics-bind-address", ""]).unwrap();
    let Command::Dump(dump) = cli.command else {
        panic!("not dump")
    };
    assert_eq!(dump.metrics_bind_address, BindAddress(None));
    assert_eq!(run.service_node_port_range, 30000..=32767);
    assert_eq!(run.mapping.ipvs_scheduler, Scheduler::Rr);
    assert_eq!(run.dummy_interface, "kube-ipvs0");
}

#[test]
fn bad_values_are_clear_errors() {
    for args in [
        &["kube-ipvs", "run", "--ipvs-scheduler", "fastest"][..],
        &["kube-ipvs", "run", "--ipvs-sync-period", "30"],
        &["kube-ipvs", "run", "--nodeport-addresses", "10.0.0.1/33"],
        &["kube-ipvs", "run", "--proxy-mode", "iptables"],
        &[
            "kube-ipvs",
            "run",
            "--service-node-port-range",
            "40000-30000",
        ],
        &["kube-ipvs", "run", "--metrics-bind-address", "localhost"],
    ] {
        let err = Cli::try_parse_from(args).unwrap_err().to_string();
        assert!(err.contains("invalid value"), "{args:?}: {err}");
    }
    let cli = Cli::try_parse_from([
        "kube-ipvs",
        "run",
        "--nodeport-addresses",
        "10.0.0.0/8,fd00::/64",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    assert_eq!(run.mapping.nodeport_addresses.cidrs.len(), 2);
    let cli = Cli::try_parse_from([
        "kube-ipvs",
        "run",
        "--nodeport-addresses=",
        "--ipvs-strict-arp=false",
        "--masquerade-all",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    assert_eq!(run.mapping.nodeport_addresses, NodePortAddresses::default());
    assert!(!run.ipvs_strict_arp);
    assert!(run.masquerade_all);
    let cli = Cli::try_parse_from(["kube-ipvs", "run", "--ipvs-strict-arp=true"]).unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    assert!(run.ipvs_strict_arp);
    assert!(Cli::try_parse_from(["kube-ipvs", "run", "--ipvs-strict-arp=maybe"]).is_err());
}

#[test]
fn stream_services_flags_take_namespace_and_name_and_need_a_publish_service() {
    for command in ["run", "plan"] {
        let cli = Cli::try_parse_from([
            "kube-ipvs",
            command,
            "--tcp-services-configmap",
            "ingress-nginx/tcp-services",
            "--udp-services-configmap=ingress-nginx/udp-services",
            "--publish-service",
            "ingress-nginx/ingress-nginx-controller",
        ])
        .unwrap();
        let streams = match cli.command {
            Command::Run(run) => run.streams,
            Command::Plan(plan) => plan.streams,
            _ => panic!("not {command}"),
        };
        assert_eq!(
            streams.tcp_services_configmap,
            Some(ConfigMapRef::new("ingress-nginx", "tcp-services"))
        );
        assert_eq!(
            streams.udp_services_configmap,
            Some(ConfigMapRef::new("ingress-nginx", "udp-services"))
        );
        assert_eq!(
            streams.publish_service,
            Some(ServiceRef::new("ingress-nginx", "ingress-nginx-controller"))
        );
    }
    let err = Cli::try_parse_from([
        "kube-ipvs",
        "run",
        "--tcp-services-configmap",
        "ingress-nginx/tcp-services",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("--publish-service"), "{err}");
    for bad in ["tcp-services", "/x", "x/", "a/b/c"] {
        let err = Cli::try_parse_from([
            "kube-ipvs",
            "run",
            "--publish-service=x/y",
            "--tcp-services-configmap",
            bad,
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not NAMESPACE/NAME"), "{bad}: {err}");
    }
}

#[test]
fn command_line_is_consistent() {
    Cli::command().debug_assert();
}
