//! ingress-nginx's `tcp-services` ConfigMap served in the kernel, with real
//! traffic. These tests need root and a kernel with IPVS: `hack/test` runs
//! them inside the VM (see `hack/vm-run`), one at a time.
//!
//! Topology, built by each test:
//!
//! ```text
//!  client 192.168.0.100 ──veth── 192.168.0.10 node (root ns): kube-ipvs0 holds
//!                                              the load-balancer IPs
//!  b1 10.244.1.2 ──veth── 10.244.1.1   httpd on 10000 only: "layanan-xyz-port-10000"
//!  b2 10.244.2.2 ──veth── 10.244.2.1   httpd on 20000 only: "layanan-xyz-port-20000"
//! ```
//!
//! The client is outside the node: it reaches the load-balancer IP and the
//! node ports through its default route to the node, as traffic from a
//! cloud load balancer or another machine does.

#[path = "kernel_agent/support.rs"]
#[allow(
    dead_code,
    reason = "shared with kernel_agent.rs; this suite uses part of it"
)]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;

const LB: &str = "203.0.113.30";
const NAIVE_LB: &str = "203.0.113.31";
const NODE: &str = "192.168.0.10";
const NAME_10000: &str = "layanan-xyz-port-10000";
const NAME_20000: &str = "layanan-xyz-port-20000";

/// What the client saw on one connection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// The backend answered with its name.
    Answered(String),
    /// The connection was refused (the backend does not listen on the port).
    Refused,
    /// Anything else, with what nc said.
    Failed(String),
}

/// One HTTP request from the client namespace to `addr:port`.
fn request(addr: &str, port: u16) -> Outcome {
    let (_, out) = try_sh(&format!(
        "ip netns exec client sh -c \"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 busybox nc {addr} {port} 2>&1\""
    ));
    if out.contains("refused") {
        return Outcome::Refused;
    }
    match out.trim().lines().last() {
        Some(name) if name.starts_with("layanan-") => Outcome::Answered(name.to_owned()),
        _ => Outcome::Failed(out),
    }
}

/// `n` requests to `addr:port`, tallied.
fn tally(addr: &str, port: u16, n: usize) -> BTreeMap<Outcome, usize> {
    let mut hits = BTreeMap::new();
    for _ in 0..n {
        *hits.entry(request(addr, port)).or_default() += 1;
    }
    hits
}

fn answered(name: &str, n: usize) -> BTreeMap<Outcome, usize> {
    BTreeMap::from([(Outcome::Answered(name.to_owned()), n)])
}

/// The client namespace and the two backends, each answering its name on
/// its own port only.
fn topology() {
    reset();
    // One log per test: the agents of earlier tests wrote to the same file.
    let _ = std::fs::remove_file(format!("/tmp/agent-{}.log", std::process::id()));
    sh("ip netns add client
        ip link add ext0 type veth peer name eth0 netns client
        ip addr add 192.168.0.10/24 dev ext0; ip link set ext0 up
        ip -n client addr add 192.168.0.100/24 dev eth0
        ip -n client link set lo up; ip -n client link set eth0 up
        ip -n client route add default via 192.168.0.10");
    for (n, port, name) in [(1, 10000, NAME_10000), (2, 20000, NAME_20000)] {
        sh(&format!(
            "ip netns add b{n}
             ip link add vb{n} type veth peer name eth0 netns b{n}
             ip addr add 10.244.{n}.1/24 dev vb{n}; ip link set vb{n} up
             ip -n b{n} addr add 10.244.{n}.2/24 dev eth0
             ip -n b{n} link set lo up; ip -n b{n} link set eth0 up
             ip -n b{n} route add default via 10.244.{n}.1
             mkdir -p /srv/{name}; echo {name} > /srv/{name}/index.html
             ip netns exec b{n} busybox httpd -p {port} -h /srv/{name}"
        ));
    }
}

/// A ClusterIP Service `default/name` with one TCP port `port` (named
/// `tcp`), and its slice with the one backend listening on it.
fn target_yaml(name: &str, cluster_ip: &str, port: u16, backend: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  clusterIP: {cluster_ip}
  clusterIPs: [{cluster_ip}]
  selector:
    app: {name}
  ports:
  - name: tcp
    port: {port}
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- name: tcp
  port: {port}
  protocol: TCP
endpoints:
- addresses: [\"{backend}\"]
  conditions: {{ready: true}}
  nodeName: node-1
"
    )
}

/// ingress-nginx's controller Service as its install declares it for TCP
/// services: http, https and both proxied ports, with node ports; its
/// selector matches no pod (the controller is gone), so it has no endpoints.
const PUBLISH: &str = "apiVersion: v1
kind: Service
metadata:
  name: ingress-nginx-controller
  namespace: ingress-nginx
spec:
  type: LoadBalancer
  clusterIP: 10.96.50.1
  clusterIPs: [10.96.50.1]
  selector:
    app.kubernetes.io/name: ingress-nginx
  ports:
  - {name: http, port: 80, protocol: TCP, nodePort: 30080}
  - {name: https, port: 443, protocol: TCP, nodePort: 30443}
  - {name: proxied-tcp-10000, port: 10000, protocol: TCP, nodePort: 31000}
  - {name: proxied-tcp-20000, port: 20000, protocol: TCP, nodePort: 32000}
status:
  loadBalancer:
    ingress:
    - ip: 203.0.113.30
";

fn tcp_services(entries: &[(u16, &str)]) -> String {
    let data: String = entries
        .iter()
        .map(|(port, value)| format!("  \"{port}\": \"{value}\"\n"))
        .collect();
    format!(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: tcp-services
  namespace: ingress-nginx
data:
{data}"
    )
}

/// The issue's manifests: two Services, a ConfigMap mapping both onto the
/// publish Service's load-balancer IP, and a bad entry beside them.
fn manifests(name: &str) -> Manifests {
    let m = Manifests::new(name);
    m.write("publish.yaml", PUBLISH);
    m.write(
        "layanan-10000.yaml",
        &target_yaml(NAME_10000, "10.96.60.1", 10000, "10.244.1.2"),
    );
    m.write(
        "layanan-20000.yaml",
        &target_yaml(NAME_20000, "10.96.60.2", 20000, "10.244.2.2"),
    );
    m.write(
        "tcp-services.yaml",
        &tcp_services(&[
            (10000, "default/layanan-xyz-port-10000:10000"),
            (20000, "default/layanan-xyz-port-20000:20000"),
            (30000, "default/nowhere:30000"),
        ]),
    );
    m
}

fn start(m: &Manifests) -> Agent {
    let agent = Agent::start(
        &m.dir,
        &[
            "--tcp-services-configmap",
            "ingress-nginx/tcp-services",
            "--publish-service",
            "ingress-nginx/ingress-nginx-controller",
            "--nodeport-addresses",
            "192.168.0.0/24",
        ],
    );
    agent.wait_healthy();
    agent
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn each_port_of_one_load_balancer_ip_reaches_its_own_service() {
    topology();
    let m = manifests("stream-services");
    let agent = start(&m);

    // Ten connections per port, through the load-balancer IP and through
    // the node ports, every one answered by the right backend.
    for (port, node_port, name) in [(10000, 31000, NAME_10000), (20000, 32000, NAME_20000)] {
        assert_eq!(
            tally(LB, port, 10),
            answered(name, 10),
            "{LB}:{port}; ipvsadm:\n{}\nagent log:\n{}",
            sh("ipvsadm -Ln"),
            agent.log()
        );
        assert_eq!(
            tally(NODE, node_port, 10),
            answered(name, 10),
            "{NODE}:{node_port}; ipvsadm:\n{}",
            sh("ipvsadm -Ln")
        );
    }

    // The kernel holds exactly the entries' real servers there, and `dump`
    // names each virtual server after its entry and target.
    for (vip, backend) in [
        (format!("{LB}:10000"), "10.244.1.2:10000"),
        (format!("{NODE}:31000"), "10.244.1.2:10000"),
        (format!("{LB}:20000"), "10.244.2.2:20000"),
        (format!("{NODE}:32000"), "10.244.2.2:20000"),
    ] {
        let servers: Vec<(String, u32)> = real_servers("-t", &vip)
            .into_iter()
            .map(|(rs, weight, ..)| (rs, weight))
            .collect();
        assert_eq!(servers, [(backend.to_owned(), 1)], "{vip}");
    }
    let dump = sh(&format!("{} dump", agent_bin()));
    for line in [
        "tcp-services ingress-nginx/tcp-services:10000 -> default/layanan-xyz-port-10000:10000",
        "tcp-services ingress-nginx/tcp-services:20000 -> default/layanan-xyz-port-20000:20000",
    ] {
        assert_eq!(
            dump.matches(line).count(),
            2,
            "{line} on the LB IP and the node port:\n{dump}"
        );
    }
    assert!(
        dump.contains("ingress-nginx/ingress-nginx-controller:http"),
        "{dump}"
    );

    // The bad entry is skipped by name, logged and counted; the rest works.
    let metrics = http_body("127.0.0.1", 10249, "/metrics");
    assert!(
        metrics.contains(
            "kube_ipvs_skipped_objects_total{kind=\"tcp-services\",reason=\"unknown_service\"} 1"
        ),
        "{metrics}"
    );
    let log = agent.log();
    assert!(
        log.contains("ingress-nginx/tcp-services:30000") && log.contains("default/nowhere"),
        "{log}"
    );
    drop(agent);
    reset();
}

/// The contrast the ConfigMap exists for: one multi-port Service whose
/// selector matches both backends balances each port over both, so about
/// half the connections to each port reach the backend that does not listen
/// on it and are refused.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn a_naive_multi_port_service_sends_connections_to_the_wrong_backend() {
    topology();
    let m = Manifests::new("stream-services-naive");
    m.write(
        "naive.yaml",
        &format!(
            "apiVersion: v1
kind: Service
metadata:
  name: layanan-xyz
  namespace: default
spec:
  type: LoadBalancer
  clusterIP: 10.96.60.9
  clusterIPs: [10.96.60.9]
  selector:
    app: layanan-xyz
  ports:
  - {{name: p10000, port: 10000, protocol: TCP, nodePort: 31100}}
  - {{name: p20000, port: 20000, protocol: TCP, nodePort: 32100}}
status:
  loadBalancer:
    ingress:
    - ip: {NAIVE_LB}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: layanan-xyz-1
  namespace: default
  labels:
    kubernetes.io/service-name: layanan-xyz
addressType: IPv4
ports:
- {{name: p10000, port: 10000, protocol: TCP}}
- {{name: p20000, port: 20000, protocol: TCP}}
endpoints:
- addresses: [10.244.1.2]
  conditions: {{ready: true}}
- addresses: [10.244.2.2]
  conditions: {{ready: true}}
"
        ),
    );
    let agent = Agent::start(&m.dir, &["--nodeport-addresses", "192.168.0.0/24"]);
    agent.wait_healthy();
    for (port, name) in [(10000, NAME_10000), (20000, NAME_20000)] {
        let hits = tally(NAIVE_LB, port, 10);
        // Round robin over both pods: every other connection lands on the
        // pod that does not listen on this port.
        assert_eq!(
            hits,
            BTreeMap::from([
                (Outcome::Answered(name.to_owned()), 5),
                (Outcome::Refused, 5)
            ]),
            "{NAIVE_LB}:{port}; ipvsadm:\n{}",
            sh("ipvsadm -Ln")
        );
    }
    drop(agent);
    reset();
}

/// An edit of the ConfigMap moves port 10000 to the other Service: the
/// first sync after the file changes programs it, on the load-balancer IP
/// and the node port, and new connections go to the new Service.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn changing_the_config_map_moves_a_port_to_another_service_within_one_sync() {
    topology();
    let m = manifests("stream-services-move");
    let agent = start(&m);
    assert_eq!(tally(LB, 10000, 4), answered(NAME_10000, 4));
    let syncs = |log: &str| log.lines().filter(|l| l.contains(" synced ")).count();
    let before = syncs(&agent.log());

    m.write(
        "tcp-services.yaml",
        &tcp_services(&[
            (10000, "default/layanan-xyz-port-20000:20000"),
            (20000, "default/layanan-xyz-port-20000:20000"),
        ]),
    );
    wait_until("the next sync", Duration::from_secs(30), || {
        syncs(&agent.log()) > before
    });
    // Right after that one sync: the new Service's endpoint takes the new
    // connections, the old one drains at weight 0.
    for vip in [format!("{LB}:10000"), format!("{NODE}:31000")] {
        let servers = real_servers("-t", &vip);
        assert!(
            servers.contains(&("10.244.2.2:20000".to_owned(), 1, 0, 0))
                && servers
                    .iter()
                    .all(|(rs, weight, ..)| rs == "10.244.2.2:20000" || *weight == 0),
            "{vip}: {servers:?}\nagent log:\n{}",
            agent.log()
        );
    }
    let log = agent.log();
    let first = log
        .lines()
        .filter(|l| l.contains(" synced "))
        .nth(before)
        .unwrap_or_default();
    assert!(first.contains("sync=\"incremental\""), "{first}\n{log}");
    assert_eq!(tally(LB, 10000, 10), answered(NAME_20000, 10));
    assert_eq!(tally(NODE, 31000, 10), answered(NAME_20000, 10));
    drop(agent);
    reset();
}
