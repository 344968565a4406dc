//! kube-proxy's configuration file and flags on kube-ipvs's command line:
//! a kubeadm-written `config.conf` read whole, flags combined with it as
//! kube-proxy combines them, and kube-proxy's other flags accepted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use kube_ipvs::cli::{Cli, Command, DetectLocalMode, LogFormat, PlanArgs, RunArgs};
use kube_ipvs::dataplane::kernel::Setup;
use kube_ipvs::firewall::{FirewallConfig, LocalTraffic};
use kube_ipvs::kubeproxy_config::{resolve_plan, resolve_run, ConfigError, Notes};
use kube_ipvs_controller::Config;
use kube_ipvs_netlink::Scheduler;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubeadm")
        .join(name)
}

/// `kube-ipvs run ARGS...`, resolved as `main` resolves it.
fn run(args: &[&str]) -> Result<(RunArgs, Notes), ConfigError> {
    let argv = ["kube-ipvs", "run"].iter().chain(args);
    let matches = Cli::command()
        .try_get_matches_from(argv)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Command::Run(mut run) = Cli::from_arg_matches(&matches).unwrap().command else {
        panic!("not run")
    };
    let notes = resolve_run(&mut run, matches.subcommand_matches("run").unwrap())?;
    Ok((*run, notes))
}

fn plan(args: &[&str]) -> Result<(PlanArgs, Notes), ConfigError> {
    let argv = ["kube-ipvs", "plan"].iter().chain(args);
    let matches = Cli::command().try_get_matches_from(argv).unwrap();
    let Command::Plan(mut plan) = Cli::from_arg_matches(&matches).unwrap().command else {
        panic!("not plan")
    };
    let notes = resolve_plan(&mut plan, matches.subcommand_matches("plan").unwrap())?;
    Ok((plan, notes))
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

fn with_config(name: &str) -> String {
    format!("--config={}", fixture(name).display())
}

#[test]
fn kubeadm_ipvs_config_is_taken_whole() {
    let (run, notes) = run(&[&with_config("config-ipvs.conf")]).unwrap();
    assert_eq!(notes, Notes::default(), "kubeadm's file needs no warning");
    assert_eq!(run.mapping.ipvs_scheduler, Scheduler::Wrr);
    assert_eq!(
        run.mapping.nodeport_addresses.cidrs,
        vec!["192.168.0.0/24".parse().unwrap()]
    );
    assert_eq!(run.ipvs_sync_period, Duration::from_secs(60));
    assert_eq!(run.ipvs_min_sync_period, Duration::from_secs(2));
    assert_eq!(run.metrics_bind_address.0, addr("0.0.0.0:10249"));
    assert_eq!(run.healthz_bind_address.0, addr("0.0.0.0:10256"));
    assert!(run.ipvs_strict_arp);
    assert_eq!(
        run.ipvs_exclude_cidrs.0,
        vec!["192.168.100.0/24".parse().unwrap()]
    );
    assert_eq!(
        run.cluster_cidr.0,
        vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap()
        ]
    );
    assert_eq!(
        run.source.kubeconfig.as_deref(),
        Some(Path::new("/var/lib/kube-proxy/kubeconfig.conf"))
    );
    assert_eq!(run.kube_proxy.proxy_mode, "ipvs");
}

#[test]
fn zero_values_take_kube_proxys_defaults() {
    let (run, notes) = run(&[&with_config("config.conf")]).unwrap();
    assert_eq!(notes, Notes::default());
    assert_eq!(run.mapping.ipvs_scheduler, Scheduler::Rr);
    assert!(run.mapping.nodeport_addresses.cidrs.is_empty());
    assert_eq!(run.ipvs_sync_period, Duration::from_secs(30));
    // ipvs.minSyncPeriod: 0 means "sync every change at once" in kube-proxy.
    assert_eq!(run.ipvs_min_sync_period, Duration::ZERO);
    assert_eq!(run.metrics_bind_address.0, addr("127.0.0.1:10249"));
    assert_eq!(run.healthz_bind_address.0, addr("0.0.0.0:10256"));
    assert_eq!(run.source.kube_api_qps, 5.0);
    assert_eq!(run.source.kube_api_burst, 10);
    let kp = &run.kube_proxy;
    assert_eq!(kp.oom_score_adj, -999);
    assert_eq!(kp.iptables_masquerade_bit, 14);
    assert_eq!(kp.conntrack_max_per_core, 32 * 1024);
    assert_eq!(kp.conntrack_min, 128 * 1024);
    assert_eq!(
        kp.conntrack_tcp_timeout_established,
        Duration::from_secs(86400)
    );
    assert_eq!(
        kp.conntrack_tcp_timeout_close_wait,
        Duration::from_secs(3600)
    );
    assert_eq!(kp.detect_local_mode, DetectLocalMode::ClusterCidr);
    // The same defaults as the flags' own: the file and the flags agree.
    let (flags, _) = self::run(&[]).unwrap();
    assert_eq!(flags.mapping.ipvs_scheduler, run.mapping.ipvs_scheduler);
    assert_eq!(flags.ipvs_sync_period, run.ipvs_sync_period);
    assert_eq!(flags.metrics_bind_address, run.metrics_bind_address);
    assert_eq!(flags.healthz_bind_address, run.healthz_bind_address);
    assert_eq!(flags.kube_proxy.oom_score_adj, kp.oom_score_adj);
    assert_eq!(flags.kube_proxy.conntrack_min, kp.conntrack_min);
    assert_eq!(
        flags.kube_proxy.conntrack_tcp_timeout_established,
        kp.conntrack_tcp_timeout_established
    );
    assert_eq!(flags.source.kube_api_qps, run.source.kube_api_qps);
}

#[test]
fn flags_combine_with_the_file_as_in_kube_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.conf");
    std::fs::write(
        &file,
        std::fs::read_to_string(fixture("config-ipvs.conf"))
            .unwrap()
            .replace("hostnameOverride: \"\"", "hostnameOverride: Node-From-File"),
    )
    .unwrap();
    let config = format!("--config={}", file.display());

    // The file's hostname, lowercased, when no flag gives one.
    let (run, _) = run(&[&config]).unwrap();
    assert_eq!(
        run.source.hostname_override.as_deref(),
        Some("node-from-file")
    );

    // --hostname-override and the logging flags win over the file
    // (kubeadm's DaemonSet passes --hostname-override=$(NODE_NAME)); other
    // flags given beside --config are ignored, and named.
    let (run, notes) = self::run(&[
        &config,
        "--hostname-override=worker-1",
        "--v=4",
        "--ipvs-scheduler=sh",
        "--metrics-bind-address=127.0.0.1:9999",
        "--dummy-interface=kube-ipvs7",
        "--vmodule=proxier*=5",
        "--profiling",
    ])
    .unwrap();
    assert_eq!(run.source.hostname_override.as_deref(), Some("worker-1"));
    assert_eq!(run.kube_proxy.v, 4);
    assert_eq!(run.mapping.ipvs_scheduler, Scheduler::Wrr, "the file's");
    assert_eq!(
        run.metrics_bind_address.0,
        addr("0.0.0.0:10249"),
        "the file's"
    );
    assert_eq!(
        notes.flags_overridden,
        ["--metrics-bind-address", "--profiling", "--ipvs-scheduler"]
    );
    assert_eq!(notes.flags_without_meaning, ["--vmodule"]);
    // kube-ipvs's own flags have no field in the file: they apply.
    assert_eq!(run.dummy_interface, "kube-ipvs7");

    // Without --config the same flags are the configuration.
    let (run, notes) = self::run(&["--ipvs-scheduler=sh", "--v=4"]).unwrap();
    assert_eq!(run.mapping.ipvs_scheduler, Scheduler::Sh);
    assert_eq!(notes, Notes::default());
}

#[test]
fn logging_settings_of_the_file_yield_to_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.conf");
    std::fs::write(
        &file,
        std::fs::read_to_string(fixture("config.conf"))
            .unwrap()
            .replace("  verbosity: 0", "  verbosity: 3")
            .replace("  flushFrequency: 0", "  flushFrequency: 0\n  format: json"),
    )
    .unwrap();
    let config = format!("--config={}", file.display());
    let (run, _) = run(&[&config]).unwrap();
    assert_eq!(run.kube_proxy.v, 3);
    assert_eq!(run.log_format, LogFormat::Json);
    let (run, _) = self::run(&[&config, "-v=1", "--logging-format=text"]).unwrap();
    assert_eq!(run.kube_proxy.v, 1);
    assert_eq!(run.log_format, LogFormat::Text);
}

#[test]
fn unknown_field_and_wrong_type_are_refused_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let kubeadm = std::fs::read_to_string(fixture("config.conf")).unwrap();
    for (from, to, field) in [
        (
            "  strictARP: false",
            "  strictARP: false\n  strictArp: true",
            "ipvs.strictArp",
        ),
        ("  scheduler: \"\"", "  scheduler: [rr]", "ipvs.scheduler"),
        (
            "  scheduler: \"\"",
            "  scheduler: fastest",
            "ipvs.scheduler",
        ),
        ("mode: \"\"", "mode: iptables", "mode"),
        (
            "clusterCIDR: 10.244.0.0/16",
            "clusterCIDR: 10.244.0.0/33",
            "clusterCIDR[0]",
        ),
        ("bindAddress: 0.0.0.0", "bindAddress: node-1", "bindAddress"),
    ] {
        let file = dir.path().join("config.conf");
        std::fs::write(&file, kubeadm.replacen(from, to, 1)).unwrap();
        let e = run(&[&format!("--config={}", file.display())]).unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(field) && text.contains("config.conf"),
            "{text}"
        );
    }
}

#[test]
fn kube_proxy_flags_are_accepted() {
    let (run, notes) = run(&["--v=2", "--proxy-mode=ipvs"]).unwrap();
    assert_eq!(run.kube_proxy.v, 2);
    assert_eq!(notes, Notes::default());
    let (run, _) = self::run(&["-v", "5", "--proxy-mode="]).unwrap();
    assert_eq!(run.kube_proxy.v, 5);

    // Every flag of kube-proxy's options.go parses; those without meaning
    // here are named for the one warning.
    let (run, notes) = self::run(&[
        "--bind-address=10.0.0.5",
        "--bind-address-hard-fail",
        "--cluster-cidr=10.244.0.0/16",
        "--config-sync-period=15m",
        "--conntrack-max-per-core=0",
        "--conntrack-min=131072",
        "--conntrack-tcp-be-liberal=true",
        "--conntrack-tcp-timeout-close-wait=1h0m0s",
        "--conntrack-tcp-timeout-established=24h0m0s",
        "--conntrack-udp-timeout=30s",
        "--conntrack-udp-timeout-stream=2m",
        "--detect-local-mode=InterfaceNamePrefix",
        "--pod-interface-name-prefix=veth",
        "--feature-gates=ServiceTrafficDistribution=true,LoadBalancerIPMode=true",
        "--healthz-port=10266",
        "--iptables-localhost-nodeports=false",
        "--iptables-masquerade-bit=13",
        "--iptables-min-sync-period=1s",
        "--iptables-sync-period=30s",
        "--kube-api-burst=20",
        "--kube-api-content-type=application/vnd.kubernetes.protobuf",
        "--kube-api-qps=10",
        "--master=https://10.0.0.1:6443",
        "--metrics-port=0",
        "--oom-score-adj=-998",
        "--profiling",
        "--show-hidden-metrics-for-version=1.34",
        "--logging-format=json",
        "--log-flush-frequency=5s",
        "--vmodule=proxier*=5",
    ])
    .unwrap();
    assert_eq!(
        notes.flags_without_meaning,
        [
            "--feature-gates",
            "--kube-api-content-type",
            "--profiling",
            "--show-hidden-metrics-for-version",
            "--iptables-localhost-nodeports",
            "--iptables-sync-period",
            "--iptables-min-sync-period",
            "--config-sync-period",
            "--vmodule",
            "--log-flush-frequency",
        ]
    );
    // The deprecated port flags: --healthz-port moves the port, 0 disables.
    assert_eq!(run.healthz_bind_address.0, addr("0.0.0.0:10266"));
    assert_eq!(run.metrics_bind_address.0, None);
    assert_eq!(run.log_format, LogFormat::Json);
    assert_eq!(run.source.master.as_deref(), Some("https://10.0.0.1:6443"));

    // And each acting one reaches its part.
    let setup = Setup::from(&run);
    assert_eq!(setup.conntrack.max(4), None, "0 per core leaves the limit");
    assert!(setup.conntrack.tcp_be_liberal);
    assert_eq!(setup.conntrack.udp_stream_timeout, Duration::from_secs(120));
    let firewall = FirewallConfig::from(&run);
    assert_eq!(firewall.masquerade_mark, 1 << 13);
    assert_eq!(firewall.local, LocalTraffic::InterfacePrefix("veth".into()));
    let config = Config::from(&run.mapping);
    assert_eq!(config.bind_address, Some("10.0.0.5".parse().unwrap()));

    for bad in [
        &["--proxy-mode=iptables"][..],
        &["--detect-local-mode=Pods"],
        &["--feature-gates=A"],
    ] {
        assert!(
            Cli::command()
                .try_get_matches_from(["kube-ipvs", "run"].iter().chain(bad))
                .is_err(),
            "{bad:?}"
        );
    }
    let e = self::run(&["--detect-local-mode=BridgeInterface"]).unwrap_err();
    assert_eq!(e.field(), Some("detectLocal.bridgeInterface"));
    let e = self::run(&["--ipvs-min-sync-period=1m", "--ipvs-sync-period=30s"]).unwrap_err();
    assert_eq!(e.field(), Some("--ipvs-min-sync-period"));
}

#[test]
fn addresses_as_kube_proxy_takes_them() {
    let (run, _) = run(&[
        "--nodeport-addresses=primary,10.0.0.1/8,fd00::5/64",
        "--cluster-cidr=10.244.3.7/16",
        "--ipvs-exclude-cidrs=010.001.0.0/16",
    ])
    .unwrap();
    let np = &run.mapping.nodeport_addresses;
    assert!(np.primary);
    assert_eq!(
        np.cidrs,
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/64".parse().unwrap()]
    );
    assert_eq!(run.cluster_cidr.0, vec!["10.244.0.0/16".parse().unwrap()]);
    assert_eq!(
        run.ipvs_exclude_cidrs.0,
        vec!["10.1.0.0/16".parse().unwrap()]
    );
    let config = Config::from(&run.mapping);
    assert!(config.nodeport_primary);
    assert_eq!(config.bind_address, None, "0.0.0.0 is no override");

    let (run, notes) = self::run(&["--nodeport-addresses=localhost,all"]).unwrap();
    assert_eq!(run.mapping.nodeport_addresses.cidrs.len(), 2);
    assert_eq!(notes.remarks.len(), 1, "{notes:?}");
}

#[test]
fn fields_that_cannot_apply_are_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.conf");
    std::fs::write(
        &file,
        std::fs::read_to_string(fixture("config.conf"))
            .unwrap()
            .replace("enableProfiling: false", "enableProfiling: true")
            .replace("configSyncPeriod: 0s", "configSyncPeriod: 15m0s")
            .replace(
                "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
                "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nfeatureGates:\n  ServiceTrafficDistribution: true",
            )
            .replace("  networkName: \"\"", "  networkName: l2bridge"),
    )
    .unwrap();
    let (_, notes) = run(&[&format!("--config={}", file.display())]).unwrap();
    let named: Vec<&str> = notes
        .fields_without_effect
        .iter()
        .map(|f| f.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        named,
        [
            "enableProfiling",
            "configSyncPeriod",
            "featureGates.ServiceTrafficDistribution=true",
            "winkernel"
        ]
    );
}

#[test]
fn plan_reads_the_file_too() {
    let (plan, notes) = plan(&[
        &with_config("config-ipvs.conf"),
        "--hostname-override=node-1",
        "--from-dir=/nonexistent",
    ])
    .unwrap();
    assert_eq!(notes, Notes::default());
    assert_eq!(plan.mapping.ipvs_scheduler, Scheduler::Wrr);
    assert_eq!(plan.source.hostname_override.as_deref(), Some("node-1"));
    assert_eq!(
        plan.source.kubeconfig.as_deref(),
        Some(Path::new("/var/lib/kube-proxy/kubeconfig.conf"))
    );
}

#[test]
fn the_kubeadm_kubeconfig_reaches_the_api_server_it_names() {
    // kubeadm's kubeconfig.conf: the API server's address and the pod's
    // service-account token file, so no apiserver-host is needed.
    let kubeconfig = kube::config::Kubeconfig::read_from(fixture("kubeconfig.conf")).unwrap();
    let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some("https://192.168.0.2:6443"));
    let user = kubeconfig.auth_infos[0].auth_info.as_ref().unwrap();
    assert_eq!(
        user.token_file.as_deref(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/token")
    );
}
