//! Faults, in the VM, with traffic: the agent watches the test API server
//! (`kube-ipvs-testapi`, in this process) as it would a cluster's, a client
//! outside the node sends requests steadily to a ClusterIP and a NodePort,
//! and each fault is injected in turn: the agent killed with SIGKILL and
//! restarted, the API server down for 60 s, its watch history compacted
//! (410 Gone), a virtual server, a real server, an address, the dummy
//! interface and the nftables table deleted by hand, and endpoints
//! churning ten times a second. For each fault the suite reports requests
//! sent and failed and the time until the kernel again matches
//! `kube-ipvs plan`, and asserts kube-proxy's promises: no request fails
//! through an agent restart or an API outage (the kernel keeps the rules;
//! `pkg/proxy/ipvs/proxier.go` never flushes on start), and everything the
//! agent owns is back within one `--ipvs-sync-period`
//! (`syncProxyRules`'s periodic full sync).
//!
//! Run as root in the VM, one test at a time (`hack/test` does). The table
//! is written to the test's standard output, past libtest's capture.

#[path = "kernel_conformance/lab.rs"]
#[allow(dead_code, reason = "the faults use a part of the lab")]
mod lab;
#[path = "kernel_conformance/manifests.rs"]
#[allow(dead_code, reason = "the faults use a part of the manifests")]
mod manifests;
#[path = "kernel_agent/support.rs"]
#[allow(dead_code, reason = "shared with the agent's kernel tests")]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube_ipvs::output::Document;
use kube_ipvs_testapi::{Kind, TestApiServer};
use serde_json::{json, Value};

use lab::{lab, NODE, PODS};
use manifests::{service, slice};
use support::{agent_bin, http_status, sh, try_sh, wait_until, Agent};

const SYNC_PERIOD: Duration = Duration::from_secs(10);
const MIN_SYNC_PERIOD: Duration = Duration::from_secs(1);
/// The web Service: a ClusterIP and a NodePort, TCP, on the pods' port.
const WEB_VIP: &str = "10.96.0.10";
const PORT: u16 = 8080;
const NODE_PORT: u16 = 30080;
/// How long the client waits for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Slack on top of the sync period for polling and the emulated CPU.
const SLACK: Duration = Duration::from_secs(3);

/// The test API server, on a runtime of its own so it serves while the
/// test blocks.
struct Api {
    rt: tokio::runtime::Runtime,
    server: TestApiServer,
    kubeconfig: PathBuf,
}

impl Api {
    fn start() -> Api {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt
            .block_on(TestApiServer::bind("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        let kubeconfig = PathBuf::from("/tmp/faults-kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Api {
            rt,
            server,
            kubeconfig,
        }
    }

    fn apply(&self, kind: Kind, object: Value) {
        self.server.apply_json(kind, object).unwrap();
    }

    fn restart(&self) {
        self.rt.block_on(self.server.restart_same_port()).unwrap();
    }

    fn kubeconfig(&self) -> &str {
        self.kubeconfig.to_str().unwrap()
    }
}

/// The Kubernetes client reads root certificates even for plain HTTP; the
/// guest has none of its own, so `hack/test` lends it the host's.
fn lend_certificates() {
    for f in ["/work/ca-certificates.crt", "/work/ca-bundle.crt"] {
        if std::path::Path::new(f).exists() {
            std::env::set_var("SSL_CERT_FILE", f);
        }
    }
}

fn node() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE}]},
    })
}

fn web(pods: &[&str]) -> (Value, Value) {
    let ports = [("http", "TCP", PORT, NODE_PORT)];
    let endpoints: Vec<_> = pods.iter().map(|p| (*p, "node-1", true)).collect();
    (
        service("web", "NodePort", WEB_VIP, &ports, json!({}), json!({})),
        slice("web", &ports, &endpoints, json!({})),
    )
}

fn pod(name: &str) -> &'static str {
    PODS.iter().find(|(n, _)| *n == name).unwrap().1
}

/// `kube-ipvs run` against the API, with the suite's periods.
fn start_agent(api: &Api, extra: &[&str]) -> Agent {
    let mut args = vec!["--kubeconfig", api.kubeconfig()];
    args.extend_from_slice(&support::NODE_ARGS);
    args.extend_from_slice(&[
        "--ipvs-sync-period",
        "10s",
        "--ipvs-min-sync-period",
        "1s",
        "--nodeport-addresses",
        "192.168.100.0/24",
    ]);
    args.extend_from_slice(extra);
    Agent::run(&args)
}

/// Requests sent and failed by one steady client.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
    last_failure: Mutex<String>,
}

/// A client in the outside namespace sending one TCP request every 20 ms
/// to `to:port`, each on a new connection, until dropped.
struct Load {
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(to: &'static str, port: u16) -> Load {
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            lab::in_netns("client", || {
                let addr = SocketAddr::new(to.parse().unwrap(), port);
                while !s.load(Ordering::Relaxed) {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = request(addr) {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        *c.last_failure.lock().unwrap() = e;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        });
        Load {
            counts,
            stop,
            thread: Some(thread),
        }
    }

    fn now(&self) -> (u64, u64) {
        (
            self.counts.sent.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request: a pod must answer.
fn request(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    if PODS.iter().any(|(p, _)| text.starts_with(p)) {
        Ok(())
    } else {
        Err(format!("answer {text:?}"))
    }
}

/// A virtual server as compared: scheduler and flags, and real servers
/// with weight and forwarding method.
type Shape = BTreeMap<(String, IpAddr, u16), (String, Vec<String>, BTreeSet<(IpAddr, u16, u32)>)>;

fn shape(doc: &Document, ignore_drained: Option<&Shape>) -> Shape {
    doc.virtual_servers
        .iter()
        .filter_map(|vs| {
            let key = (format!("{:?}", vs.protocol), vs.address?, vs.port?);
            let wanted = ignore_drained.and_then(|p| p.get(&key));
            let real_servers = vs
                .real_servers
                .iter()
                .map(|rs| (rs.address, rs.port, rs.weight))
                // A real server draining at weight 0 is the plan's doing.
                .filter(|(a, p, w)| {
                    *w != 0
                        || wanted
                            .is_none_or(|(_, _, want)| want.iter().any(|r| (r.0, r.1) == (*a, *p)))
                })
                .collect();
            Some((key, (vs.scheduler.clone(), vs.flags.clone(), real_servers)))
        })
        .collect()
}

fn document(args: &[&str]) -> Document {
    let out = Command::new(agent_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kube-ipvs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What `kube-ipvs plan` says the kernel should hold, from the API now.
fn plan(api: &Api) -> Shape {
    shape(
        &document(&[
            "plan",
            "--kubeconfig",
            api.kubeconfig(),
            "--hostname-override",
            "node-1",
            "--nodeport-addresses",
            "192.168.100.0/24",
            "-o",
            "json",
        ]),
        None,
    )
}

/// Whether the kernel holds what `plan` says: the virtual servers and
/// real servers, each Service address on the dummy interface, and the
/// agent's nftables table.
fn matches(plan: &Shape) -> Result<(), String> {
    let kernel = shape(
        &document(&["dump", "-o", "json", "--metrics-bind-address="]),
        Some(plan),
    );
    if &kernel != plan {
        return Err(format!("virtual servers: kernel {kernel:?}\nplan {plan:?}"));
    }
    let (_, addresses) = try_sh("ip -o addr show dev kube-ipvs0");
    for (_, address, _) in plan.keys() {
        if address.to_string() != NODE && !addresses.contains(&format!("inet {address}/32")) {
            return Err(format!("{address} not on kube-ipvs0: {addresses}"));
        }
    }
    if !try_sh("nft list table inet kube-ipvs >/dev/null 2>&1").0 {
        return Err("no nftables table".to_owned());
    }
    Ok(())
}

/// Waits until the kernel matches `plan`; how long that took from `since`.
fn converge(plan: &Shape, since: Instant, what: &str) -> Duration {
    let limit = SYNC_PERIOD * 3;
    loop {
        let result = matches(plan);
        if result.is_ok() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "{what}: the kernel did not match the plan within {limit:?}: {result:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One row of the table.
struct Row {
    fault: &'static str,
    sent: u64,
    failed: u64,
    converged: Duration,
}

/// Writes past libtest's capture, so the table shows in the VM's output.
fn report(text: &str) {
    if let Ok(mut out) = std::fs::OpenOptions::new().write(true).open("/dev/stdout") {
        let _ = out.write_all(text.as_bytes());
    }
}

/// Every fault in turn, with traffic throughout.
#[test]
#[ignore = "needs root and the IPVS kernel: run in the VM by hack/test"]
fn faults_heal_with_traffic_flowing() {
    lab();
    lend_certificates();
    support::reset_kernel();
    let api = Api::start();
    api.apply(Kind::Node, node());
    let (web_service, web_slice) = web(&[pod("p1"), pod("p2")]);
    api.apply(Kind::Service, web_service);
    api.apply(Kind::EndpointSlice, web_slice);
    let churn_ports = [("dns", "UDP", 10000, 0)];
    api.apply(
        Kind::Service,
        service(
            "churn",
            "ClusterIP",
            "10.96.0.20",
            &churn_ports,
            json!({}),
            json!({}),
        ),
    );
    api.apply(
        Kind::EndpointSlice,
        slice(
            "churn",
            &churn_ports,
            &[(pod("p1"), "node-1", true)],
            json!({}),
        ),
    );

    let mut agent = Some(start_agent(&api, &[]));
    agent.as_ref().unwrap().wait_ready();
    let want = plan(&api);
    converge(&want, Instant::now(), "start");

    let cluster_ip = Load::start(WEB_VIP, PORT);
    let node_port = Load::start(NODE, NODE_PORT);
    std::thread::sleep(Duration::from_secs(2));
    let mut rows = Vec::new();
    let fault =
        |name: &'static str, rows: &mut Vec<Row>, inject: &mut dyn FnMut() -> (Instant, Shape)| {
            let before = (cluster_ip.now(), node_port.now());
            let (since, plan) = inject();
            let converged = converge(&plan, since, name);
            // Requests sent while the fault lasted and right after.
            std::thread::sleep(Duration::from_secs(1));
            let after = (cluster_ip.now(), node_port.now());
            let row = Row {
                fault: name,
                sent: after.0 .0 - before.0 .0 + after.1 .0 - before.1 .0,
                failed: after.0 .1 - before.0 .1 + after.1 .1 - before.1 .1,
                converged,
            };
            // What the last failed request met, when any failed.
            let last_failure = if row.failed > 0 {
                [&cluster_ip, &node_port]
                    .iter()
                    .map(|l| l.counts.last_failure.lock().unwrap().clone())
                    .filter(|f| !f.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ")
            } else {
                String::new()
            };
            report(&format!(
                "fault {:<40} sent {:>5} failed {:>4} converged {:>6.2}s {last_failure}\n",
                row.fault,
                row.sent,
                row.failed,
                row.converged.as_secs_f64()
            ));
            rows.push(row);
        };

    fault(
        "agent killed (SIGKILL) and restarted",
        &mut rows,
        &mut || {
            let killed = Instant::now();
            agent.take().unwrap().kill();
            std::thread::sleep(Duration::from_secs(2));
            let restarted = start_agent(&api, &[]);
            restarted.wait_healthy();
            agent = Some(restarted);
            (killed, want.clone())
        },
    );

    fault(
        "API server down 60 s, then restarted",
        &mut rows,
        &mut || {
            api.server.stop();
            // A change made while the agent cannot see it.
            let (_, slice) = web(&[pod("p1"), pod("p2"), pod("p3")]);
            api.apply(Kind::EndpointSlice, slice);
            let down = Instant::now();
            while down.elapsed() < Duration::from_secs(60) {
                assert_eq!(
                    http_status("127.0.0.1", 10256, "/livez"),
                    200,
                    "alive without the API"
                );
                std::thread::sleep(Duration::from_secs(5));
            }
            assert_eq!(
                http_status("127.0.0.1", 10256, "/healthz"),
                200,
                "syncs go on without the API, so it stays healthy as kube-proxy does"
            );
            api.restart();
            (Instant::now(), plan(&api))
        },
    );

    fault(
        "API answers 410 Gone (history compacted)",
        &mut rows,
        &mut || {
            let (_, slice) = web(&[pod("p1"), pod("p2")]);
            api.apply(Kind::EndpointSlice, slice);
            api.server.compact();
            (Instant::now(), plan(&api))
        },
    );

    let want = plan(&api);
    let vs = format!("{WEB_VIP}:{PORT}");
    for (name, command) in [
        ("virtual server deleted", format!("ipvsadm -D -t {vs}")),
        (
            "real server deleted",
            format!("ipvsadm -d -t {vs} -r {}:{PORT}", pod("p1")),
        ),
        (
            "address deleted",
            format!("ip addr del {WEB_VIP}/32 dev kube-ipvs0"),
        ),
        (
            "dummy interface deleted",
            "ip link del kube-ipvs0".to_owned(),
        ),
        (
            "nftables table deleted",
            "nft delete table inet kube-ipvs".to_owned(),
        ),
    ] {
        fault(name, &mut rows, &mut || {
            sh(&command);
            (Instant::now(), want.clone())
        });
    }

    fault("endpoints churning 10/s for 20 s", &mut rows, &mut || {
        let started = Instant::now();
        let mut i = 0usize;
        while started.elapsed() < Duration::from_secs(20) {
            let endpoints: Vec<_> = PODS
                .iter()
                .enumerate()
                .filter(|(n, _)| (i >> n) & 1 == 1 || *n == i % 3)
                .map(|(_, (_, a))| (*a, "node-1", true))
                .collect();
            api.apply(
                Kind::EndpointSlice,
                slice("churn", &churn_ports, &endpoints, json!({})),
            );
            i += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        (Instant::now(), plan(&api))
    });
    drop(cluster_ip);
    drop(node_port);

    let json: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"fault": r.fault, "sent": r.sent, "failed": r.failed,
                   "converged_s": (r.converged.as_secs_f64() * 100.0).round() / 100.0})
        })
        .collect();
    report(&format!("FAULTS {}\n", Value::from(json)));
    let agent = agent.unwrap();
    let log = agent.log();
    assert!(!log.contains("panicked"), "the agent panicked:\n{log}");
    for row in &rows {
        assert!(row.sent > 0, "{}: no requests sent", row.fault);
        assert!(
            row.converged <= SYNC_PERIOD + SLACK,
            "{}: converged after {:?}, more than one sync period",
            row.fault,
            row.converged
        );
        if row.fault.starts_with("agent") || row.fault.starts_with("API") {
            assert_eq!(row.failed, 0, "{}: requests failed", row.fault);
        }
        if row.fault.starts_with("endpoints") {
            // Another Service churns: the web Service's requests go on. The
            // emulated CPU, busy with ten syncs a second, may let one of
            // them pass its one-second timeout; no more than 1 in 100.
            assert!(
                row.failed * 100 <= row.sent,
                "{}: {} of {} requests failed",
                row.fault,
                row.failed,
                row.sent
            );
        }
    }
    drop(agent);
    // The lab's namespaces stay for the next test of this process.
    support::reset_kernel();
}

/// A Service whose scheduler the kernel lacks (`twos` before Linux 6.7) is
/// refused on every sync. As in kube-proxy's `syncProxyRules` ("Failed to
/// sync service", and on to the next), it is that Service's failure alone:
/// another Service's endpoint change reaches the kernel within
/// `--ipvs-min-sync-period`, `/livez` and `/healthz` stay 200 past twice the
/// sync period (where a failing loop would turn unhealthy), the refusals
/// are counted by operation and logged once a minute.
#[test]
#[ignore = "needs root and the IPVS kernel: run in the VM by hack/test"]
fn a_refused_scheduler_leaves_the_other_services_alone() {
    if std::fs::read_to_string("/proc/modules")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("ip_vs_twos "))
    {
        report("this kernel has the twos scheduler: nothing to refuse, skipped\n");
        return;
    }
    lab();
    lend_certificates();
    support::reset_kernel();
    let api = Api::start();
    api.apply(Kind::Node, node());
    let (web_service, web_slice) = web(&[pod("p1")]);
    api.apply(Kind::Service, web_service);
    api.apply(Kind::EndpointSlice, web_slice);
    let ports = [("http", "TCP", PORT, 0)];
    let mut twos = service(
        "twos",
        "ClusterIP",
        "10.96.0.30",
        &ports,
        json!({}),
        json!({}),
    );
    twos["metadata"]["annotations"] = json!({"kube-ipvs.io/scheduler": "twos"});
    api.apply(Kind::Service, twos);
    api.apply(
        Kind::EndpointSlice,
        slice("twos", &ports, &[(pod("p2"), "node-1", true)], json!({})),
    );
    let agent = start_agent(&api, &[]);
    agent.wait_ready();
    let started = Instant::now();

    let mut latency = None;
    while started.elapsed() < SYNC_PERIOD * 2 + Duration::from_secs(5) {
        assert_eq!(http_status("127.0.0.1", 10256, "/livez"), 200, "/livez");
        assert_eq!(http_status("127.0.0.1", 10256, "/healthz"), 200, "/healthz");
        if latency.is_none() && started.elapsed() > SYNC_PERIOD {
            let (_, slice) = web(&[pod("p1"), pod("p3")]);
            let changed = Instant::now();
            api.apply(Kind::EndpointSlice, slice);
            wait_until("p3 in the kernel", Duration::from_secs(10), || {
                support::real_servers("-t", &format!("{WEB_VIP}:{PORT}"))
                    .iter()
                    .any(|(a, ..)| a.starts_with(pod("p3")))
            });
            latency = Some(changed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let latency = latency.unwrap();
    report(&format!(
        "refused scheduler: another Service's change in the kernel after {:.3}s\n",
        latency.as_secs_f64()
    ));
    assert!(
        latency <= MIN_SYNC_PERIOD + Duration::from_millis(500),
        "the other Service's change took {latency:?}"
    );
    assert!(
        !try_sh("ipvsadm -Ln -t 10.96.0.30:8080").0,
        "the kernel has no twos: the virtual server is refused"
    );
    let metrics = support::http_body("127.0.0.1", 10249, "/metrics");
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("kube_ipvs_sync_errors_total{operation=\"new_service\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused >= 3, "refusals counted: {refused}\n{metrics}");
    let log = agent.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("the kernel refused an operation") && l.contains("default/twos"))
        .count();
    assert_eq!(lines, 1, "logged once a minute, not per retry:\n{log}");
    drop(agent);
    // The lab's namespaces stay for the next test of this process.
    support::reset_kernel();
}

/// A drain that began before a restart ends when it would have without the
/// restart: the agent keeps when each drain began in `--drain-state-file`.
/// kube-proxy's IPVS graceful termination (`pkg/proxy/ipvs/graceful_termination.go`)
/// keeps its queue in memory only and starts it over; here a crash loop
/// cannot hold a drained real server forever.
#[test]
#[ignore = "needs root and the IPVS kernel: run in the VM by hack/test"]
fn a_drain_ends_on_time_across_a_restart() {
    lab();
    lend_certificates();
    support::reset_kernel();
    let _ = std::fs::remove_file("/run/kube-ipvs/draining");
    let api = Api::start();
    api.apply(Kind::Node, node());
    let (web_service, web_slice) = web(&[pod("p1"), pod("p2")]);
    api.apply(Kind::Service, web_service);
    api.apply(Kind::EndpointSlice, web_slice);
    let graceful = ["--ipvs-graceful-period", "20s"];
    let agent = start_agent(&api, &graceful);
    agent.wait_ready();
    // Connections to both pods: each leaves the kernel an inactive
    // connection (FIN_WAIT, two minutes), which holds a drain open.
    let vip = SocketAddr::new(WEB_VIP.parse().unwrap(), PORT);
    lab::in_netns("client", || {
        for _ in 0..4 {
            request(vip).unwrap();
        }
    });
    let p2 = format!("{}:{PORT}", pod("p2"));
    let weight = |rs: &str| {
        support::real_servers("-t", &format!("{WEB_VIP}:{PORT}"))
            .into_iter()
            .find(|(a, ..)| a == rs)
            .map(|(_, w, ..)| w)
    };
    let (_, slice) = web(&[pod("p1")]);
    api.apply(Kind::EndpointSlice, slice);
    wait_until("p2 draining at weight 0", Duration::from_secs(10), || {
        weight(&p2) == Some(0)
    });
    let drain_began = Instant::now();
    let state = std::fs::read_to_string("/run/kube-ipvs/draining").unwrap_or_default();
    assert_eq!(
        state
            .lines()
            .filter(|l| l.contains(&format!(" {} {PORT} ", pod("p2"))))
            .count(),
        2,
        "p2's drain recorded, on the ClusterIP and the NodePort: {state:?}"
    );

    std::thread::sleep(Duration::from_secs(10));
    agent.kill();
    let agent = start_agent(&api, &graceful);
    agent.wait_healthy();
    assert_eq!(weight(&p2), Some(0), "still draining after the restart");
    wait_until("p2 deleted", Duration::from_secs(40), || {
        weight(&p2).is_none()
    });
    let ended = drain_began.elapsed();
    report(&format!(
        "drain across a restart: began, agent killed after 10 s, real server deleted after {:.1}s (graceful period 20 s)\n",
        ended.as_secs_f64()
    ));
    assert!(
        ended >= Duration::from_secs(18) && ended <= Duration::from_secs(25),
        "the drain ended after {ended:?}, not 20 s after it began"
    );
    drop(agent);
    support::reset_kernel();
}
