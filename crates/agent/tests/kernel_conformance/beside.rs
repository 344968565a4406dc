//! Issue: beside kube-proxy and the node's own services. The agent serves
//! only what is its own, binds nothing that is the node's, and leaves the
//! node's firewall and listeners working.

use serde_json::json;

use crate::lab::{ip, lab, node_listener, tcp, Answer, CLIENT, NODE};
use crate::manifests::{list, service, slice, Port};
use crate::support::{reset_kernel, sh, Agent, Manifests};

const HTTP: Port<'static> = ("http", "TCP", 8080, 0);

/// The migration overlay's flags (`manifests/overlays/migration/
/// daemonset-patch.yaml`), with its ConfigMap's values.
const OVERLAY: [&str; 13] = [
    "--hostname-override=node-1",
    "--service-proxy-name=kube-ipvs",
    "--dummy-interface=kube-ipvs1",
    "--metrics-bind-address=0.0.0.0:10279",
    "--healthz-bind-address=0.0.0.0:10286",
    "--ipvs-scheduler=rr",
    "--ipvs-sync-period=30s",
    "--ipvs-min-sync-period=1s",
    "--ipvs-graceful-period=30s",
    "--ipvs-tcp-timeout=0s",
    "--ipvs-tcpfin-timeout=0s",
    "--ipvs-udp-timeout=0s",
    "--log-format=json",
];

/// Two NodePort Services, one labelled for kube-ipvs (30080 -> p1), one
/// not (30081 -> p2).
fn labelled_and_plain(dir: &Manifests) {
    let label = json!({"service.kubernetes.io/service-proxy-name": "kube-ipvs"});
    let np = |port| [("http", "TCP", 8080, port)];
    dir.write(
        "services.json",
        &list(vec![
            service(
                "ours",
                "NodePort",
                "10.96.1.1",
                &np(30080),
                json!({}),
                label.clone(),
            ),
            slice("ours", &[HTTP], &[("10.244.1.2", "node-1", true)], label),
            service(
                "theirs",
                "NodePort",
                "10.96.1.2",
                &np(30081),
                json!({}),
                json!({}),
            ),
            slice(
                "theirs",
                &[HTTP],
                &[("10.244.2.2", "node-1", true)],
                json!({}),
            ),
        ]),
    );
}

/// `--service-proxy-name`: with a name, the agent serves exactly the
/// Services labelled `service.kubernetes.io/service-proxy-name` with it;
/// without one, exactly the unlabelled ones, as kube-proxy does
/// (`cmd/kube-proxy/app/server.go` `newProxyServer`: its informers select
/// `!service.kubernetes.io/service-proxy-name`; kube-router's
/// `--service-proxy-name` serves the labelled ones). Traffic from an outside
/// client to each NodePort shows which Services the agent took.
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn service_proxy_name_serves_exactly_the_labelled_services() {
    lab();
    reset_kernel();
    let dir = Manifests::new("conformance-proxy-name");
    labelled_and_plain(&dir);

    let agent = Agent::start_args(&dir.dir, &OVERLAY);
    agent.wait_ready_on(10286);
    assert!(
        matches!(tcp("client", NODE, 30080), Answer::From { ref pod, .. } if pod == "p1"),
        "the labelled Service is served"
    );
    assert_eq!(
        tcp("client", NODE, 30081),
        Answer::Refused,
        "the unlabelled Service is kube-proxy's"
    );
    let listed = sh("ipvsadm -Sn");
    assert!(
        listed.contains(":30080") && !listed.contains(":30081"),
        "{listed}"
    );
    assert!(sh("ip -o addr show dev kube-ipvs1").contains("10.96.1.1"));
    agent.stop();

    reset_kernel();
    let agent = Agent::start(&dir.dir, &[]);
    agent.wait_ready();
    assert_eq!(
        tcp("client", NODE, 30080),
        Answer::Refused,
        "without a name, a labelled Service is another proxy's"
    );
    assert!(
        matches!(tcp("client", NODE, 30081), Answer::From { ref pod, .. } if pod == "p2"),
        "without a name, the unlabelled Service is served"
    );
}

/// External IPs and load-balancer IPs that are node addresses: the agent
/// serves the Service's port there, binds nothing, closes no other port of
/// the node, and deletes no virtual server it did not make on that address
/// (kube-proxy: `pkg/proxy/ipvs/proxier.go` `syncService` binds an address
/// only when it is not the node's; kube-ipvs owns only the keys it wanted
/// there). The node's own listener on another port keeps answering an
/// outside client, and a foreign virtual server on the node address stays.
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn a_node_address_as_external_ip_is_served_and_nothing_else_changes() {
    lab();
    reset_kernel();
    node_listener(2222);
    sh(&format!("ipvsadm -A -t {NODE}:443 -s wlc"));
    let dir = Manifests::new("conformance-node-address");
    let port = [("https", "TCP", 10000, 0)];
    dir.write(
        "edge.json",
        &list(vec![
            service(
                "edge",
                "ClusterIP",
                "10.96.2.1",
                &port,
                json!({"externalIPs": [NODE]}),
                json!({}),
            ),
            slice("edge", &port, &[("10.244.1.2", "node-1", true)], json!({})),
        ]),
    );
    assert_eq!(
        tcp("client", NODE, 2222),
        Answer::From {
            pod: "node".into(),
            client: ip(CLIENT)
        },
        "before the agent"
    );
    let agent = Agent::start(&dir.dir, &["--nodeport-addresses", "192.168.100.0/24"]);
    agent.wait_ready();
    assert!(
        matches!(tcp("client", NODE, 10000), Answer::From { ref pod, .. } if pod == "p1"),
        "the external IP's port is served"
    );
    assert_eq!(
        tcp("client", NODE, 2222),
        Answer::From {
            pod: "node".into(),
            client: ip(CLIENT)
        },
        "the node's own listener on another port still answers"
    );
    let addresses = sh("ip -o addr show dev kube-ipvs0");
    assert!(
        !addresses.contains(NODE),
        "the node address is not bound: {addresses}"
    );
    let listed = sh("ipvsadm -Sn");
    assert!(
        listed.contains(&format!("{NODE}:443")),
        "the foreign virtual server stays: {listed}"
    );

    // The Service goes: its virtual server goes, the foreign one stays.
    dir.write("edge.json", &list(vec![]));
    crate::support::wait_until(
        "the Service's virtual server gone",
        std::time::Duration::from_secs(20),
        || !sh("ipvsadm -Sn").contains(&format!("{NODE}:10000")),
    );
    assert!(sh("ipvsadm -Sn").contains(&format!("{NODE}:443")));
    assert_eq!(
        tcp("client", NODE, 2222),
        Answer::From {
            pod: "node".into(),
            client: ip(CLIENT)
        }
    );
    agent.stop();
}

/// `pkg/proxy/ipvs/proxier.go` `syncProxyRules` lists the node's addresses
/// on every sync (`nodePortAddresses.GetNodeIPs`) and makes a NodePort
/// virtual server on each: an address added to the node while the proxy
/// runs is served from its next sync, and one taken away loses its virtual
/// servers. kube-ipvs lists them at every periodic resync (one listing
/// for them and the dummy interface's addresses): an outside client
/// reaches the pod through the new address after a resync, and the
/// virtual server goes with the address, the others staying.
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn a_node_address_added_while_running_serves_node_ports_from_the_next_resync() {
    const ADDED: &str = "192.168.100.9";
    lab();
    reset_kernel();
    sh(&format!(
        "ip addr del {ADDED}/24 dev client-host 2>/dev/null || true"
    ));
    let dir = Manifests::new("conformance-node-address-added");
    let port = [("http", "TCP", 8080, 30095)];
    dir.write(
        "np.json",
        &list(vec![
            service("np", "NodePort", "10.96.2.5", &port, json!({}), json!({})),
            slice("np", &[HTTP], &[("10.244.1.2", "node-1", true)], json!({})),
        ]),
    );
    let agent = Agent::start(
        &dir.dir,
        &[
            "--nodeport-addresses",
            "192.168.100.0/24",
            "--ipvs-sync-period",
            "3s",
        ],
    );
    agent.wait_ready();
    let served_at = |address: &str| matches!(tcp("client", address, 30095), Answer::From { ref pod, .. } if pod == "p1");
    assert!(served_at(NODE), "the NodePort on the node's address");
    assert!(
        !served_at(ADDED),
        "nothing on an address the node does not have"
    );

    sh(&format!("ip addr add {ADDED}/24 dev client-host"));
    crate::support::wait_until(
        "the NodePort served on the added address",
        std::time::Duration::from_secs(30),
        || served_at(ADDED),
    );
    let listed = sh("ipvsadm -Sn");
    assert!(listed.contains(&format!("{ADDED}:30095")), "{listed}");
    let bound = sh("ip -o addr show dev kube-ipvs0");
    assert!(
        !bound.contains(ADDED),
        "a node address is not bound: {bound}"
    );

    sh(&format!("ip addr del {ADDED}/24 dev client-host"));
    crate::support::wait_until(
        "the added address's virtual server gone with it",
        std::time::Duration::from_secs(30),
        || !sh("ipvsadm -Sn").contains(&format!("{ADDED}:30095")),
    );
    assert!(served_at(NODE), "the node's other address still served");
    agent.stop();
}

/// The UDP conntrack entries of the Service's flows, as `(client port,
/// reply source)`: who answers each flow now.
fn udp_flows_to(vip: &str) -> Vec<(u16, String)> {
    let (_, out) = crate::support::try_sh(&format!("conntrack -L -p udp -d {vip} 2>/dev/null"));
    out.lines()
        .filter_map(|l| {
            let field = |name: &str, nth: usize| {
                l.split_whitespace()
                    .filter_map(|f| f.strip_prefix(name))
                    .nth(nth)
                    .map(str::to_owned)
            };
            Some((field("sport=", 0)?.parse().ok()?, field("src=", 1)?))
        })
        .collect()
}

/// A UDP flow from `client` port `from` answered by `pod`: tries source
/// ports from `from` on until one is scheduled to `pod`; returns the port.
fn flow_to(pod: &str, vip: &str, port: u16, from: u16) -> u16 {
    (from..from + 20)
        .find(|p| crate::lab::udp("client", *p, vip, port).pod() == Some(pod))
        .unwrap_or_else(|| panic!("no flow reached {pod}"))
}

/// UDP conntrack is reconciled on every sync that changes the Services'
/// UDP frontends, as kube-proxy does (`pkg/proxy/conntrack/cleanup.go`
/// `CleanStaleEntries`): a flow answered by an endpoint that left goes at
/// once, with no datagram needed to expire it, and the client's next
/// datagram on the same flow reaches a live endpoint; the flows of a
/// deleted Service go too (kube-ipvs also cleans those).
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn udp_flows_to_removed_endpoints_and_deleted_services_are_cleaned() {
    lab();
    reset_kernel();
    sh("conntrack -F 2>/dev/null; true");
    let dir = Manifests::new("conformance-udp");
    let port = [("dns", "UDP", 10000, 0)];
    let write = |endpoints: &[crate::manifests::Endpoint]| {
        dir.write(
            "dns.json",
            &list(vec![
                service("dns", "ClusterIP", "10.96.3.1", &port, json!({}), json!({})),
                slice("dns", &port, endpoints, json!({})),
            ]),
        )
    };
    write(&[
        ("10.244.1.2", "node-1", true),
        ("10.244.2.2", "node-1", true),
    ]);
    let agent = Agent::start(&dir.dir, &[]);
    agent.wait_ready();

    let flow = flow_to("p2", "10.96.3.1", 10000, 40000);
    assert!(
        udp_flows_to("10.96.3.1").contains(&(flow, "10.244.2.2".to_owned())),
        "{:?} in\n{}",
        udp_flows_to("10.96.3.1"),
        crate::support::try_sh("conntrack -L 2>&1").1
    );

    write(&[("10.244.1.2", "node-1", true)]);
    crate::support::wait_until(
        "p2's flow deleted",
        std::time::Duration::from_secs(10),
        || {
            !udp_flows_to("10.96.3.1")
                .iter()
                .any(|(_, reply)| reply == "10.244.2.2")
        },
    );
    assert_eq!(
        crate::lab::udp("client", flow, "10.96.3.1", 10000).pod(),
        Some("p1"),
        "the same flow now reaches a live endpoint"
    );

    let kept = flow_to("p1", "10.96.3.1", 10000, 41000);
    assert!(udp_flows_to("10.96.3.1").iter().any(|(p, _)| *p == kept));
    dir.write("dns.json", &list(vec![]));
    crate::support::wait_until(
        "the deleted Service's flows deleted",
        std::time::Duration::from_secs(10),
        || udp_flows_to("10.96.3.1").is_empty(),
    );
    agent.stop();
}

/// A node whose iptables `FORWARD` policy is `DROP` (Docker sets it): the
/// reply of an IPVS connection that was not masqueraded is routed by the
/// node and would be dropped there, whatever kube-ipvs's own nftables table
/// accepts. kube-ipvs adds one commented rule accepting established
/// connections' replies while the policy drops, as kube-proxy's IPVS mode
/// accepts them in its `KUBE-FORWARD` chain (`pkg/proxy/ipvs/proxier.go`
/// `writeIptablesRules`).
/// Shown with a pod reaching a ClusterIP whose endpoint is another pod on
/// the node, and an outside client reaching the ClusterIP; both fail while
/// the rule is missing, and the next resync puts it back.
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn an_iptables_forward_drop_policy_does_not_drop_service_replies() {
    lab();
    reset_kernel();
    sh("iptables-nft -w -P FORWARD DROP");
    let dir = Manifests::new("conformance-forward-drop");
    let port = [("http", "TCP", 8080, 0)];
    dir.write(
        "web.json",
        &list(vec![
            service("web", "ClusterIP", "10.96.4.1", &port, json!({}), json!({})),
            slice("web", &port, &[("10.244.1.2", "node-1", true)], json!({})),
        ]),
    );
    let agent = Agent::start(&dir.dir, &["--ipvs-sync-period", "3s"]);
    agent.wait_ready();
    let through = || {
        (
            tcp("p3", "10.96.4.1", 8080),
            tcp("client", "10.96.4.1", 8080),
        )
    };
    crate::support::wait_until(
        "the FORWARD rule",
        std::time::Duration::from_secs(10),
        || sh("iptables-nft -w -S FORWARD").contains("kube-ipvs"),
    );
    assert_eq!(
        through(),
        (
            Answer::From {
                pod: "p1".into(),
                client: ip("10.244.3.2")
            },
            Answer::From {
                pod: "p1".into(),
                client: ip(CLIENT)
            },
        ),
        "pods and outside clients reach the Service, and the pod sees them"
    );

    // Without the rule the replies are dropped. The agent is stopped so no
    // resync puts it back meanwhile; started again, it does.
    agent.stop();
    sh("iptables-nft -w -D FORWARD 1");
    assert!(!sh("iptables-nft -w -S FORWARD").contains("kube-ipvs"));
    assert_eq!(through(), (Answer::TimedOut, Answer::TimedOut));
    let agent = Agent::start(&dir.dir, &["--ipvs-sync-period", "3s"]);
    agent.wait_ready();
    crate::support::wait_until(
        "the FORWARD rule back",
        std::time::Duration::from_secs(10),
        || sh("iptables-nft -w -S FORWARD").contains("kube-ipvs"),
    );
    assert!(matches!(through().0, Answer::From { ref pod, .. } if pod == "p1"));

    // The policy accepts again: the rule goes; cleanup would remove it too.
    sh("iptables-nft -w -P FORWARD ACCEPT");
    crate::support::wait_until(
        "the FORWARD rule gone",
        std::time::Duration::from_secs(10),
        || !sh("iptables-nft -w -S FORWARD").contains("kube-ipvs"),
    );
    agent.stop();
}

/// Settings kube-proxy makes implicitly (`pkg/proxy/ipvs/proxier.go`):
/// with `--ipvs-scheduler mh` every virtual server gets the source-hash
/// flag (`mh-port`: the hash takes the client's port as well as its
/// address) in `syncProxyRules`, and `conn_reuse_mode` is left as the
/// kernel has it from 5.9 on (`NewProxier`).
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn mh_as_the_node_scheduler_hashes_ports_and_conn_reuse_mode_is_left_alone() {
    lab();
    reset_kernel();
    let before = sh("cat /proc/sys/net/ipv4/vs/conn_reuse_mode");
    let dir = Manifests::new("conformance-implicit");
    let port = [("http", "TCP", 8080, 0)];
    dir.write(
        "web.json",
        &list(vec![
            service("web", "ClusterIP", "10.96.5.1", &port, json!({}), json!({})),
            slice(
                "web",
                &port,
                &[
                    ("10.244.1.2", "node-1", true),
                    ("10.244.2.2", "node-1", true),
                ],
                json!({}),
            ),
        ]),
    );
    let agent = Agent::start(&dir.dir, &["--ipvs-scheduler", "mh"]);
    agent.wait_ready();
    let listed = sh("ipvsadm -Sn");
    assert!(
        listed
            .lines()
            .any(|l| l.contains("10.96.5.1:8080") && l.contains("-s mh") && l.contains("mh-port")),
        "{listed}"
    );
    assert!(matches!(
        tcp("client", "10.96.5.1", 8080),
        Answer::From { .. }
    ));
    let release = sh("cat /proc/sys/kernel/osrelease");
    if !release.starts_with("4.") && !release.starts_with("5.") {
        assert_eq!(
            sh("cat /proc/sys/net/ipv4/vs/conn_reuse_mode"),
            before,
            "{release}"
        );
    }
    agent.stop();
}
