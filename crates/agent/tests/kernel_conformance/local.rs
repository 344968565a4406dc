//! Issue: kube-proxy parity for `Local` traffic policies, health checks,
//! node health and topology. Each case sends real traffic from a client
//! outside the node (`client`) or from a pod (`p1`, which the
//! EndpointSlices place on this node, `node-1`) and asserts which pod
//! answered and the client address it saw, or what a health port answered.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

use crate::lab::{in_netns, ip, lab, tally, tcp, Answer, CLIENT, NODE, TIMEOUT};
use crate::manifests::{list, service, slice, Port};
use crate::support::{http_body, http_status, reset_kernel, wait_until, Agent, Manifests};

const HTTP: Port<'static> = ("http", "TCP", 8080, 0);
const P1: &str = "10.244.1.2";
const P2: &str = "10.244.2.2";
const P3: &str = "10.244.3.2";

/// A NodePort Service on `node_port` with `spec` merged in, and its slice.
fn node_port(
    name: &str,
    ip: &str,
    node_port: u16,
    spec: Value,
    endpoints: &[(&str, &str, bool)],
) -> [Value; 2] {
    [
        service(
            name,
            "NodePort",
            ip,
            &[("http", "TCP", 8080, node_port)],
            spec,
            json!({}),
        ),
        slice(name, &[HTTP], endpoints, json!({})),
    ]
}

/// One HTTP/1.0 GET from namespace `ns`: the status code and the whole
/// answer (headers and body); `None` when nothing answers.
fn get(ns: &str, to: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::new(ip(to), port);
    in_netns(ns, || {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
        s.set_read_timeout(Some(TIMEOUT)).ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, text))
    })
}

/// Waits until the agent's nftables table is in place (it follows the
/// first sync), so masquerade decisions are the agent's.
fn wait_firewall(agent: &Agent) {
    agent.wait_ready();
}

fn metrics() -> String {
    http_body("127.0.0.1", 10249, "/metrics")
}

/// `pkg/proxy/ipvs/proxier.go` `syncProxyRules`: node ports (and external
/// and load-balancer IPs) of `externalTrafficPolicy: Local` Services go into
/// `KUBE-NODE-PORT-LOCAL-TCP` (`KUBE-EXTERNAL-IP-LOCAL`,
/// `KUBE-LOAD-BALANCER-LOCAL`), which return before `KUBE-MARK-MASQ`: the
/// endpoint sees the outside client's own address. A `Cluster` NodePort to
/// the same pod is masqueraded: the pod sees the node.
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn external_traffic_policy_local_keeps_the_client_address() {
    lab();
    reset_kernel();
    let dir = Manifests::new("conformance-etp-local");
    let mut items = Vec::new();
    items.extend(node_port(
        "local",
        "10.96.2.1",
        30090,
        json!({"externalTrafficPolicy": "Local"}),
        &[(P1, "node-1", true)],
    ));
    items.extend(node_port(
        "cluster",
        "10.96.2.2",
        30091,
        json!({}),
        &[(P1, "node-1", true)],
    ));
    dir.write("services.json", &list(items));
    let agent = Agent::start(&dir.dir, &[]);
    agent.wait_healthy();
    wait_firewall(&agent);

    assert_eq!(
        tcp("client", NODE, 30090),
        Answer::From {
            pod: "p1".into(),
            client: ip(CLIENT)
        },
        "Local: the pod sees the client"
    );
    match tcp("client", NODE, 30091) {
        Answer::From { pod, client } => {
            assert_eq!(pod, "p1");
            assert_ne!(client, ip(CLIENT), "Cluster: masqueraded");
        }
        other => panic!("Cluster NodePort: {other:?}"),
    }
}

/// `pkg/proxy/healthcheck/service_health.go` (`SyncServices`,
/// `SyncEndpoints`, `hcHandler.ServeHTTP`): a `LoadBalancer` Service with
/// `externalTrafficPolicy: Local` gets a listener on its
/// `healthCheckNodePort` that answers any path 200 while this node has a
/// ready endpoint and 503 when it has none, with kube-proxy's headers and
/// JSON body; listeners follow the Services; a port outside the node-port
/// range or another Service's is skipped by name with a metric, and the
/// other Services are still served.
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn health_check_node_port_answers_for_local_endpoints() {
    lab();
    reset_kernel();
    let dir = Manifests::new("conformance-hcnp");
    let lb = |name: &str, ip: &str, np: u16, hc: u16, node: &str| {
        [
            service(
                name,
                "LoadBalancer",
                ip,
                &[("http", "TCP", 8080, np)],
                json!({"externalTrafficPolicy": "Local", "healthCheckNodePort": hc}),
                json!({}),
            ),
            slice(name, &[HTTP], &[(P1, node, true)], json!({})),
        ]
    };
    let mut items = Vec::new();
    items.extend(lb("here", "10.96.4.1", 30100, 32100, "node-1"));
    items.extend(lb("elsewhere", "10.96.4.2", 30101, 32101, "node-2"));
    items.extend(lb("out-of-range", "10.96.4.3", 30102, 8000, "node-1"));
    items.extend(lb("taken", "10.96.4.4", 30103, 32100, "node-1"));
    dir.write("services.json", &list(items.clone()));
    let agent = Agent::start(&dir.dir, &[]);
    agent.wait_healthy();
    wait_firewall(&agent);

    let (code, text) = get("client", NODE, 32100, "/healthz").expect("health check of here");
    assert_eq!(code, 200, "{text}");
    for header in [
        "Content-Type: application/json",
        "X-Content-Type-Options: nosniff",
        "X-Load-Balancing-Endpoint-Weight: 1",
    ] {
        assert!(
            text.to_ascii_lowercase()
                .contains(&header.to_ascii_lowercase()),
            "{header}: {text}"
        );
    }
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(
        body,
        json!({"service": {"namespace": "default", "name": "here"}, "localEndpoints": 1, "serviceProxyHealthy": true})
    );
    // Any path, as kube-proxy's handler.
    assert_eq!(get("client", NODE, 32100, "/").map(|a| a.0), Some(200));
    let (code, text) = get("client", NODE, 32101, "/healthz").expect("health check of elsewhere");
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("\"localEndpoints\": 0"), "{text}");
    assert_eq!(
        get("client", NODE, 8000, "/healthz"),
        None,
        "out of range: not served"
    );
    let m = metrics();
    for reason in ["health_check_port_out_of_range", "health_check_port_taken"] {
        assert!(
            m.contains(&format!(
                "kube_ipvs_skipped_objects_total{{kind=\"Service\",reason=\"{reason}\"}} 1"
            )),
            "{reason}: {m}"
        );
    }
    assert!(m.contains("kube_ipvs_health_checks 2"), "{m}");
    // The Local Service itself still serves, keeping the client address.
    assert_eq!(
        tcp("client", NODE, 30100),
        Answer::From {
            pod: "p1".into(),
            client: ip(CLIENT)
        }
    );

    // The endpoint moves away: 503. The Service goes: the port closes.
    items[1] = slice("here", &[HTTP], &[(P1, "node-2", true)], json!({}));
    dir.write("services.json", &list(items.clone()));
    wait_until("here turns 503", Duration::from_secs(10), || {
        get("client", NODE, 32100, "/healthz").map(|a| a.0) == Some(503)
    });
    // Its port goes to the Service that was refused it, then closes.
    items.drain(0..2);
    dir.write("services.json", &list(items.clone()));
    wait_until("32100 serves taken", Duration::from_secs(10), || {
        get("client", NODE, 32100, "/healthz")
            .is_some_and(|(_, t)| t.contains("\"name\": \"taken\""))
    });
    items.retain(|i| {
        i["metadata"]["name"] != "taken"
            && i["metadata"]["labels"]["kubernetes.io/service-name"] != "taken"
    });
    dir.write("services.json", &list(items));
    wait_until("32100 closes", Duration::from_secs(10), || {
        get("client", NODE, 32100, "/healthz").is_none()
    });
    assert_eq!(
        get("client", NODE, 32101, "/healthz").map(|a| a.0),
        Some(503)
    );
}

/// `pkg/proxy/healthcheck/proxy_health.go` `NodeEligible` and the
/// `/healthz`/`/livez` handlers: while the Node has a deletionTimestamp or
/// the `ToBeDeletedByClusterAutoscaler` taint, `/healthz` answers 503 with
/// `nodeEligible: false` and `/livez` stays 200; traffic is still served.
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn node_marked_for_deletion_fails_healthz_only() {
    lab();
    reset_kernel();
    let dir = Manifests::new("conformance-node-health");
    let node = |metadata: Value, spec: Value| {
        let mut meta = json!({"name": "node-1"});
        meta.as_object_mut()
            .unwrap()
            .extend(metadata.as_object().unwrap().clone());
        json!({"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec}).to_string()
    };
    dir.write("node.json", &node(json!({}), json!({})));
    dir.write(
        "services.json",
        &list(
            node_port(
                "web",
                "10.96.5.1",
                30110,
                json!({}),
                &[(P1, "node-1", true)],
            )
            .to_vec(),
        ),
    );
    let agent = Agent::start(&dir.dir, &[]);
    agent.wait_healthy();
    wait_firewall(&agent);
    assert!(http_body("127.0.0.1", 10256, "/healthz").contains("\"nodeEligible\": true"));

    for (what, manifest) in [
        (
            "tainted",
            node(
                json!({}),
                json!({"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000", "effect": "NoSchedule"}]}),
            ),
        ),
        (
            "deleting",
            node(
                json!({"deletionTimestamp": "2024-01-01T00:00:00Z"}),
                json!({}),
            ),
        ),
    ] {
        dir.write("node.json", &manifest);
        wait_until(what, Duration::from_secs(10), || {
            http_status("127.0.0.1", 10256, "/healthz") == 503
        });
        let body = http_body("127.0.0.1", 10256, "/healthz");
        assert!(body.contains("\"nodeEligible\": false"), "{what}: {body}");
        assert_eq!(http_status("127.0.0.1", 10256, "/livez"), 200, "{what}");
        assert!(!http_body("127.0.0.1", 10256, "/livez").contains("nodeEligible"));
        assert_eq!(
            tcp("client", NODE, 30110).pod(),
            Some("p1"),
            "{what}: still served"
        );
        dir.write("node.json", &node(json!({}), json!({})));
        wait_until("eligible again", Duration::from_secs(10), || {
            http_status("127.0.0.1", 10256, "/healthz") == 200
        });
    }
}

/// `pkg/proxy/ipvs/proxier.go` `syncEndpoint` (kubernetes PR 97081): a
/// `Local` virtual server with no endpoint on this node takes the `Cluster`
/// endpoints, so a pod on this node still reaches the Service (unmasqueraded:
/// the endpoint sees the pod). An outside client is forwarded the same way;
/// in a cluster the other node's reply would not come back through this one
/// and the client would drop it, but here every pod routes through the node,
/// so it does. `internalTrafficPolicy` corners, from
/// `pkg/proxy/topology.go` `CategorizeEndpoints` and
/// `pkg/proxy/serviceport.go` `UsesClusterEndpoints`: a ClusterIP Service
/// with `internalTrafficPolicy: Local` and no local endpoint has no real
/// server (nothing answers); a NodePort one is reachable from outside, so
/// its cluster IP falls back to the `Cluster` endpoints too.
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn local_policy_without_local_endpoint() {
    lab();
    reset_kernel();
    let dir = Manifests::new("conformance-no-local");
    let remote = [(P2, "node-2", true)];
    let mut items = Vec::new();
    items.extend(node_port(
        "etp",
        "10.96.6.1",
        30120,
        json!({"externalTrafficPolicy": "Local"}),
        &remote,
    ));
    items.push(service(
        "itp",
        "ClusterIP",
        "10.96.6.2",
        &[HTTP],
        json!({"internalTrafficPolicy": "Local"}),
        json!({}),
    ));
    items.push(slice("itp", &[HTTP], &remote, json!({})));
    items.extend(node_port(
        "itp-np",
        "10.96.6.3",
        30121,
        json!({"internalTrafficPolicy": "Local"}),
        &remote,
    ));
    dir.write("services.json", &list(items));
    let agent = Agent::start(&dir.dir, &[]);
    agent.wait_healthy();
    wait_firewall(&agent);

    let from_p1 = Answer::From {
        pod: "p2".into(),
        client: ip(P1),
    };
    assert_eq!(
        tcp("p1", NODE, 30120),
        from_p1,
        "a pod here reaches a Local NodePort with no local endpoint"
    );
    assert_eq!(
        tcp("p1", "10.96.6.1", 8080),
        from_p1,
        "its cluster IP (Cluster policy)"
    );
    assert_eq!(
        tcp("client", NODE, 30120),
        Answer::From {
            pod: "p2".into(),
            client: ip(CLIENT)
        },
        "outside: forwarded to the other node's endpoint, unmasqueraded"
    );
    assert_eq!(
        tcp("p1", "10.96.6.2", 8080).pod(),
        None,
        "ClusterIP, internalTrafficPolicy Local, no local endpoint"
    );
    assert_eq!(
        tcp("p1", "10.96.6.3", 8080),
        from_p1,
        "NodePort, internalTrafficPolicy Local: falls back"
    );
}

/// `pkg/proxy/topology.go` `CategorizeEndpoints`/`topologyModeFromHints`:
/// hints are used whenever every ready endpoint carries them, whoever asked:
/// node hints (`trafficDistribution: PreferSameNode`) first, when one is for
/// this node; else zone hints, when one is for this node's zone; else every
/// endpoint. A hint naming no possible node is skipped by name with a metric.
#[test]
#[ignore = "needs root and IPVS: run in the VM"]
fn topology_hints_narrow_as_kube_proxy() {
    lab();
    reset_kernel();
    let dir = Manifests::new("conformance-topology");
    dir.write(
        "node.json",
        &json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "zone-a"}}})
        .to_string(),
    );
    // (address, node hints, zone hints)
    let write = |eps: &[(&str, &[&str], &[&str])]| {
        let mut s = slice(
            "web",
            &[HTTP],
            &eps.iter()
                .map(|(a, _, _)| (*a, "node-2", true))
                .collect::<Vec<_>>(),
            json!({}),
        );
        for (i, (_, nodes, zones)) in eps.iter().enumerate() {
            let mut hints = json!({});
            if !nodes.is_empty() {
                hints["forNodes"] =
                    json!(nodes.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
            }
            if !zones.is_empty() {
                hints["forZones"] =
                    json!(zones.iter().map(|z| json!({"name": z})).collect::<Vec<_>>());
            }
            s["endpoints"][i]["hints"] = hints;
        }
        let svc = service(
            "web",
            "NodePort",
            "10.96.7.1",
            &[("http", "TCP", 8080, 30130)],
            json!({"trafficDistribution": "PreferSameNode"}),
            json!({}),
        );
        dir.write("services.json", &list(vec![svc, s]));
    };
    let seen = |n| -> Vec<String> { tally("client", NODE, 30130, n).into_keys().collect() };
    let expect = |what: &str, pods: &[&str]| {
        wait_until(what, Duration::from_secs(10), || seen(9) == pods);
    };

    write(&[
        (P1, &["node-2"], &["zone-b"]),
        (P2, &["node-1"], &["zone-a"]),
        (P3, &["node-3"], &["zone-a"]),
    ]);
    let agent = Agent::start(&dir.dir, &[]);
    agent.wait_healthy();
    wait_firewall(&agent);
    expect("node hints for node-1: p2 only", &["p2"]);
    write(&[
        (P1, &["node-2"], &["zone-b"]),
        (P2, &[], &["zone-a"]),
        (P3, &["node-3"], &["zone-a"]),
    ]);
    expect("one endpoint without node hints: zone-a's", &["p2", "p3"]);
    write(&[
        (P1, &["node-2"], &["zone-b"]),
        (P2, &["node-3"], &["zone-c"]),
        (P3, &["node-3"], &[]),
    ]);
    expect("no usable hints: every endpoint", &["p1", "p2", "p3"]);
    write(&[
        (P1, &["node-2"], &[]),
        (P2, &["Not A Node!", "node-1"], &[]),
        (P3, &["node-3"], &[]),
    ]);
    expect("the bad hint skipped, the good one kept", &["p2"]);
    let m = metrics();
    assert!(
        m.contains(
            "kube_ipvs_skipped_objects_total{kind=\"EndpointSlice\",reason=\"invalid_hint\"} 1"
        ),
        "{m}"
    );
}
