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
    "--log-format=text",
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
    agent.wait_healthy_on(10286);
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
    agent.wait_healthy();
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
    agent.wait_healthy();
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
