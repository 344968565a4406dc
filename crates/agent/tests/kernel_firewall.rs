//! The firewall against the real kernel: IPVS programmed with `ipvsadm`,
//! the `kube-ipvs` table applied, and traffic between network namespaces.
//!
//! Topology (built once per process; run with `--test-threads=1` as root):
//!
//! ```text
//!  client 192.168.100.2 ──veth── 192.168.100.1 ┐
//!  client2 192.168.101.2 ─veth── 192.168.101.1 ├ node (root ns), dummy kipvs-fw0 holds the VIPs
//!  b1 10.244.1.2 ─────────veth── 10.244.1.1    │
//!  b2 10.244.2.2 ─────────veth── 10.244.2.1    ┘
//! ```
//!
//! The backends route cluster IPs and the pod network through the node, but
//! their default route goes into a dummy link: they can answer an outside
//! client only when the node masquerades.
//! `hack/vm-tests/firewall.sh` runs this binary in the VM.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use kube_ipvs::firewall::{
    listing, Conntrack, Drift, Firewall, FirewallConfig, KernelPacketFilter, PacketFilter, Ruleset,
    WriteKind,
};
use kube_ipvs_controller::{
    DesiredState, DesiredVirtualServer, ServiceRef, ServiceState, VirtualServerKind,
};
use kube_ipvs_netlink::{Protocol, RealServer, Scheduler, VirtualServer, VirtualServerKey};

const NODE: &str = "192.168.100.1";
const CLUSTER_IP: &str = "10.96.0.10";
const DNS_IP: &str = "10.96.0.20";
const LB_IP: &str = "192.0.2.10";
const B1: &str = "10.244.1.2";
const B2: &str = "10.244.2.2";
const TIMEOUT: Duration = Duration::from_secs(2);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sh(script: &str) {
    let out = Command::new("bash")
        .args(["-euc", script])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread inside network namespace `ns` ("" for the node's).
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .unwrap()
    })
}

fn enter(ns: &str) {
    if !ns.is_empty() {
        let fd = File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    }
}

/// Namespaces, links, and servers that answer with their namespace's name:
/// TCP 8080 and UDP 5353 in b1 and b2, TCP 2222 on every node address.
fn topology() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        sh(r#"
            ip link set lo up
            sysctl -qw net.ipv4.ip_forward=1
            ip link add kipvs-fw0 type dummy
            peer() { # ns host-addr ns-addr
                ip netns add $1
                ip link add $1-host type veth peer name eth0 netns $1
                ip addr add $2/24 dev $1-host
                ip link set $1-host up
                ip -n $1 addr add $3/24 dev eth0
                ip -n $1 link set eth0 up
                ip -n $1 link set lo up
            }
            peer client 192.168.100.1 192.168.100.2
            ip -n client route add default via 192.168.100.1
            peer client2 192.168.101.1 192.168.101.2
            ip -n client2 route add default via 192.168.101.1
            for b in b1:10.244.1 b2:10.244.2; do
                peer ${b%%:*} ${b#*:}.1 ${b#*:}.2
                ip -n ${b%%:*} link add void type dummy
                ip -n ${b%%:*} link set void up
                ip -n ${b%%:*} route add default dev void
                ip -n ${b%%:*} route add 10.96.0.0/12 via ${b#*:}.1
                ip -n ${b%%:*} route add 10.244.0.0/16 via ${b#*:}.1
            done
        "#);
        for ns in ["b1", "b2"] {
            serve(ns);
        }
        let node = TcpListener::bind("0.0.0.0:2222").unwrap();
        std::thread::spawn(move || answer_tcp(node, "node"));
    });
}

fn serve(ns: &'static str) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(ns);
        let tcp = TcpListener::bind("0.0.0.0:8080").unwrap();
        let udp = UdpSocket::bind("0.0.0.0:5353").unwrap();
        tx.send(()).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((_, peer)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(ns.as_bytes(), peer);
            }
        });
        answer_tcp(tcp, ns);
    });
    rx.recv().unwrap();
}

fn answer_tcp(listener: TcpListener, name: &str) {
    for mut stream in listener.incoming().flatten() {
        let _ = stream.write_all(name.as_bytes());
    }
}

/// What a TCP client saw.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Connected, and the server said its name.
    Answered(String),
    /// RST or ICMP port unreachable.
    Refused,
    /// Nothing came back.
    TimedOut,
    /// Something else.
    Failed(String),
}

fn tcp(ns: &str, to: &str, port: u16) -> Outcome {
    let addr = SocketAddr::new(ip(to), port);
    in_netns(ns, || match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Ok(mut s) => {
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut name = String::new();
            match s.read_to_string(&mut name) {
                Ok(_) => Outcome::Answered(name),
                Err(e) => Outcome::Failed(e.to_string()),
            }
        }
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(e) if e.kind() == ErrorKind::TimedOut => Outcome::TimedOut,
        Err(e) => Outcome::Failed(e.to_string()),
    })
}

/// A desired state, one Service per entry: (kind, vip, protocol, port,
/// endpoints, source ranges). Endpoints listen on 8080 (TCP) or 5353 (UDP).
type Svc<'a> = (
    VirtualServerKind,
    &'a str,
    Protocol,
    u16,
    &'a [&'a str],
    &'a [&'a str],
);

fn desired(services: &[Svc]) -> DesiredState {
    let mut state = DesiredState::default();
    for (i, (kind, vip, protocol, port, endpoints, ranges)) in services.iter().enumerate() {
        let key = VirtualServerKey::inet(*protocol, ip(vip), *port);
        let target = if *protocol == Protocol::Udp {
            5353
        } else {
            8080
        };
        let real_servers: kube_ipvs_controller::KeyedVec<_> = endpoints
            .iter()
            .map(|e| {
                let rs = RealServer::new(ip(e), target);
                (rs.key, rs)
            })
            .collect();
        let mut svc = ServiceState::default();
        if *kind != VirtualServerKind::NodePort {
            svc.addresses.insert(ip(vip));
        }
        svc.virtual_servers.insert(
            key,
            DesiredVirtualServer {
                service: VirtualServer::new(key, Scheduler::Rr),
                real_servers,
                port_name: port.to_string(),
                kind: *kind,
                source_ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
                traffic_policy: Default::default(),
            },
        );
        state
            .services
            .insert(ServiceRef::new("default", format!("svc-{i}")), svc);
    }
    state
}

/// Replaces IPVS and the dummy's addresses with what `state` wants.
fn program_ipvs(state: &DesiredState) {
    let mut script = String::from("ipvsadm -C\nip addr flush dev kipvs-fw0\n");
    for address in state.addresses() {
        script += &format!("ip addr add {address}/32 dev kipvs-fw0\n");
    }
    for (key, (_, vs)) in state.virtual_servers() {
        let VirtualServerKey::Inet {
            protocol,
            address,
            port,
        } = key
        else {
            continue;
        };
        let flag = if protocol == Protocol::Udp {
            "-u"
        } else {
            "-t"
        };
        script += &format!("ipvsadm -A {flag} {address}:{port} -s rr\n");
        for rs in vs.real_servers.values() {
            script += &format!(
                "ipvsadm -a {flag} {address}:{port} -r {}:{} -m\n",
                rs.key.address, rs.key.port
            );
        }
    }
    sh(&script);
}

fn config() -> FirewallConfig {
    FirewallConfig {
        cluster_cidrs: vec!["10.244.0.0/16".parse::<IpNetwork>().unwrap()],
        ..FirewallConfig::default()
    }
}

fn web() -> DesiredState {
    use VirtualServerKind::*;
    desired(&[
        (ClusterIp, CLUSTER_IP, Protocol::Tcp, 80, &[B1], &[]),
        (NodePort, NODE, Protocol::Tcp, 30080, &[B1], &[]),
        (
            LoadBalancer,
            LB_IP,
            Protocol::Tcp,
            80,
            &[B1],
            &["192.168.100.0/24"],
        ),
    ])
}

/// Point 1: an outside client reaches a NodePort and a load-balancer IP
/// whose endpoint routes elsewhere only with the agent's masquerade.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn outside_client_needs_masquerade() {
    topology();
    let state = web();
    program_ipvs(&state);
    let mut firewall = Firewall::new();
    firewall.cleanup().unwrap();
    assert_eq!(
        tcp("client", NODE, 30080),
        Outcome::TimedOut,
        "NodePort without rules"
    );
    assert_eq!(
        tcp("client", LB_IP, 80),
        Outcome::TimedOut,
        "LB IP without rules"
    );

    let report = firewall.sync(&Ruleset::new(&state, &config())).unwrap();
    eprintln!("sync: {report:?}");
    eprintln!("{}", output("nft", &["list", "table", "inet", "kube-ipvs"]));
    assert_eq!(tcp("client", NODE, 30080), Outcome::Answered("b1".into()));
    assert_eq!(tcp("client", LB_IP, 80), Outcome::Answered("b1".into()));
    eprintln!(
        "{}",
        output(
            "conntrack",
            &["-L", "-p", "tcp", "--orig-port-dst", "30080"]
        )
    );
    firewall.cleanup().unwrap();
}

/// Point 2: an endpoint reaching its own Service's cluster IP is answered.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn endpoint_reaches_itself_through_its_service() {
    topology();
    let state = web();
    program_ipvs(&state);
    let mut firewall = Firewall::new();
    firewall.cleanup().unwrap();
    let without = tcp("b1", CLUSTER_IP, 80);
    assert_ne!(
        without,
        Outcome::Answered("b1".into()),
        "hairpin without rules"
    );
    firewall.sync(&Ruleset::new(&state, &config())).unwrap();
    assert_eq!(tcp("b1", CLUSTER_IP, 80), Outcome::Answered("b1".into()));
    // Another pod is not masqueraded (its source is in the cluster CIDR) and
    // still gets its answer, through the node.
    assert_eq!(tcp("b2", CLUSTER_IP, 80), Outcome::Answered("b1".into()));
    firewall.cleanup().unwrap();
}

/// Point 3: a VIP exposes only Service ports; source ranges hold.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn vips_are_closed_and_source_ranges_enforced() {
    topology();
    let state = web();
    program_ipvs(&state);
    let mut firewall = Firewall::new();
    firewall.cleanup().unwrap();
    assert_eq!(
        tcp("client", CLUSTER_IP, 2222),
        Outcome::Answered("node".into()),
        "without rules a VIP exposes the node's own port"
    );
    assert_eq!(
        tcp("client2", LB_IP, 80),
        Outcome::TimedOut,
        "(no masquerade yet)"
    );

    firewall.sync(&Ruleset::new(&state, &config())).unwrap();
    assert_eq!(tcp("client", CLUSTER_IP, 2222), Outcome::Refused);
    assert_eq!(tcp("client", LB_IP, 2222), Outcome::Refused);
    // The node's own address keeps its ports.
    assert_eq!(tcp("client", NODE, 2222), Outcome::Answered("node".into()));
    assert_eq!(tcp("client", LB_IP, 80), Outcome::Answered("b1".into()));
    assert_eq!(
        tcp("client2", LB_IP, 80),
        Outcome::TimedOut,
        "outside the source ranges"
    );
    // The cluster IP of the same endpoint has no source ranges.
    assert_eq!(
        tcp("client2", CLUSTER_IP, 80),
        Outcome::Answered("b1".into())
    );
    firewall.cleanup().unwrap();
}

/// Point 4: once a UDP endpoint is removed and its flows deleted, the next
/// datagram of an existing client flow reaches a live endpoint.
///
/// Since Linux 5.9, with `expire_nodest_conn=1` IPVS itself expires the
/// connections of a removed real server (and their conntrack entries) from
/// a work queued at removal. Older kernels only expire them when the next
/// packet comes, and drop that packet when its conntrack entry is
/// confirmed. The test removes b1 with `expire_nodest_conn=0`, so nothing
/// is queued, and then sets it to 1: the older kernels' behaviour. Two
/// Services move from b1 to b2; only the first one's flows are deleted.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn udp_flows_move_off_a_removed_endpoint() {
    use VirtualServerKind::*;
    topology();
    let before = desired(&[
        (ClusterIp, DNS_IP, Protocol::Udp, 53, &[B1], &[]),
        (ClusterIp, DNS_IP, Protocol::Udp, 54, &[B1], &[]),
    ]);
    program_ipvs(&before);
    let mut firewall = Firewall::new();
    firewall.sync(&Ruleset::new(&before, &config())).unwrap();

    let ask = |socket: &UdpSocket| -> Option<String> {
        socket.send(b"q").unwrap();
        let mut buf = [0u8; 64];
        match socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    };
    // A socket keeps the namespace it was made in; use it from here.
    let client = |port: u16| {
        in_netns("client", || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.connect((ip(DNS_IP), port)).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s
        })
    };
    let cleaned = client(53);
    let kept = client(54);
    assert_eq!(ask(&cleaned).as_deref(), Some("b1"));
    assert_eq!(ask(&kept).as_deref(), Some("b1"));

    sh(&format!(
        "sysctl -qw net.ipv4.vs.expire_nodest_conn=0
         for p in 53 54; do
             ipvsadm -a -u {DNS_IP}:$p -r {B2}:5353 -m
             ipvsadm -d -u {DNS_IP}:$p -r {B1}:5353
         done
         sysctl -qw net.ipv4.vs.expire_nodest_conn=1"
    ));
    eprintln!("{}", output("conntrack", &["-L", "-p", "udp"]));
    let t = Instant::now();
    let deleted = Conntrack::open()
        .unwrap()
        .delete_udp_flows(ip(DNS_IP), 53, ip(B1), 5353)
        .unwrap();
    eprintln!("deleted {deleted} flows in {:?}", t.elapsed());
    eprintln!("{}", output("conntrack", &["-L", "-p", "udp"]));
    let cleaned_answers = (ask(&cleaned), ask(&cleaned));
    let kept_answers = (ask(&kept), ask(&kept));
    eprintln!("after removal: cleaned flow {cleaned_answers:?}, kept flow {kept_answers:?}");
    assert_eq!(deleted, 1, "the :53 flow's entry");
    assert_eq!(
        cleaned_answers.0.as_deref(),
        Some("b2"),
        "the very next datagram"
    );
    assert_eq!(cleaned_answers.1.as_deref(), Some("b2"));
    assert_eq!(
        kept_answers.0, None,
        "without clean-up the next datagram is lost"
    );
    firewall.cleanup().unwrap();
}

/// `services` Services with two endpoints each; one in five also a
/// NodePort, one in fifty also a load balancer with two source ranges.
fn many_services(services: u32) -> DesiredState {
    let mut state = DesiredState::default();
    for i in 0..services {
        let cluster_ip = IpAddr::from([10, 96, (i / 250) as u8, (i % 250) as u8 + 1]);
        let endpoints = [
            IpAddr::from([10, 244, (i / 100) as u8, (i % 100) as u8 + 2]),
            IpAddr::from([10, 245, (i / 100) as u8, (i % 100) as u8 + 2]),
        ];
        let mut svc = ServiceState::default();
        svc.addresses.insert(cluster_ip);
        let mut add = |kind, address: IpAddr, port: u16, ranges: Vec<IpNetwork>| {
            let key = VirtualServerKey::inet(Protocol::Tcp, address, port);
            svc.virtual_servers.insert(
                key,
                DesiredVirtualServer {
                    service: VirtualServer::new(key, Scheduler::Rr),
                    real_servers: endpoints
                        .iter()
                        .map(|e| {
                            let rs = RealServer::new(*e, 8080);
                            (rs.key, rs)
                        })
                        .collect(),
                    port_name: "http".into(),
                    kind,
                    source_ranges: ranges,
                    traffic_policy: Default::default(),
                },
            );
        };
        add(VirtualServerKind::ClusterIp, cluster_ip, 80, vec![]);
        // One in five is a NodePort, one in fifty a load balancer with two ranges.
        if i % 5 == 0 {
            add(
                VirtualServerKind::NodePort,
                ip(NODE),
                30000 + (i / 5) as u16,
                vec![],
            );
        }
        if i % 50 == 0 {
            let lb = IpAddr::from([198, 18, (i / 250) as u8, (i % 250) as u8 + 1]);
            svc.addresses.insert(lb);
            add(
                VirtualServerKind::LoadBalancer,
                lb,
                443,
                vec![
                    "203.0.113.0/24".parse().unwrap(),
                    "198.51.100.0/25".parse().unwrap(),
                ],
            );
        }
        state
            .services
            .insert(ServiceRef::new("bench", format!("svc-{i}")), svc);
    }
    state
}

/// Point 5: the cost of a sync at 5,000 Services.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn sync_cost_at_5000_services() {
    let state = many_services(5000);
    let t = Instant::now();
    let ruleset = Ruleset::new(&state, &config());
    let compute = t.elapsed();
    let mut firewall = Firewall::new();
    let full = firewall.sync(&ruleset).unwrap();
    let noop = firewall.sync(&ruleset.clone()).unwrap();
    let mut changed = ruleset.clone();
    changed.ipv4.vips.insert(ip("10.96.255.1"));
    let one_more = firewall.sync(&changed).unwrap();
    eprintln!(
        "5000 services: compute {compute:?}; full sync {:?} ({:?}, {} bytes); \
         no-op sync {:?}; one change {:?} ({:?}, {} bytes)",
        full.duration,
        full.kind,
        full.bytes,
        noop.duration,
        one_more.duration,
        one_more.kind,
        one_more.bytes
    );
    let listed = output("nft", &["list", "set", "inet", "kube-ipvs", "services-v4"]);
    assert_eq!(
        listed.matches(" . tcp . ").count(),
        ruleset.ipv4.services.len()
    );
    assert_eq!(
        full.kind,
        WriteKind::Table {
            elements: ruleset.element_count()
        }
    );
    assert_eq!(noop.kind, WriteKind::Unchanged);
    assert_eq!(
        one_more.kind,
        WriteKind::Elements {
            added: 1,
            deleted: 0
        }
    );
    firewall.cleanup().unwrap();
}

/// Syncs change only the kube-ipvs table (the second one by its elements),
/// leave other tables alone, and the table goes on cleanup.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn sync_replaces_only_its_table_and_cleanup_removes_it() {
    sh("nft add table inet other; nft add chain inet other c '{ type filter hook input priority 0; }'; nft add rule inet other c counter");
    let mut firewall = Firewall::new();
    let first = web();
    firewall.sync(&Ruleset::new(&first, &config())).unwrap();
    let mut second = web();
    second.services.pop_first();
    firewall.sync(&Ruleset::new(&second, &config())).unwrap();
    let table = output("nft", &["list", "table", "inet", "kube-ipvs"]);
    assert!(!table.contains(CLUSTER_IP), "{table}");
    assert!(table.contains(LB_IP), "{table}");
    assert_eq!(table.matches("chain ").count(), 5, "{table}");
    firewall.cleanup().unwrap();
    firewall.cleanup().unwrap();
    let ruleset = output("nft", &["list", "ruleset"]);
    assert!(!ruleset.contains("kube-ipvs"), "{ruleset}");
    assert!(ruleset.contains("table inet other"), "{ruleset}");
    sh("nft delete table inet other");
}

/// `nft -j list table inet kube-ipvs`, taken apart against `like`.
fn listed(like: &Ruleset) -> listing::Listing {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", "kube-ipvs"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = listing::objects(&String::from_utf8_lossy(&out.stdout)).unwrap();
    listing::Listing::parse(&objects, like)
}

/// Issue 16: what someone else does to the table or the sysctls is found
/// by the check a full resync runs, and a whole write repairs it; the
/// masquerade works again.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn a_flushed_or_changed_table_is_found_and_written_again() {
    topology();
    let state = web();
    program_ipvs(&state);
    let ruleset = Ruleset::new(&state, &config());
    let mut filter = KernelPacketFilter::new();
    filter.write_table(&ruleset).unwrap();
    assert_eq!(filter.check_table(&ruleset).unwrap().drift, None);
    assert_eq!(tcp("client", NODE, 30080), Outcome::Answered("b1".into()));

    let tampering = [
        ("nft flush ruleset", Drift::Missing),
        ("nft delete table inet kube-ipvs", Drift::Missing),
        (
            "nft delete element inet kube-ipvs services-v4 '{ 10.96.0.10 . tcp . 80 }'",
            Drift::Elements {
                missing: 1,
                unexpected: 0,
            },
        ),
        (
            "nft add element inet kube-ipvs vips-v4 '{ 10.96.9.9 }'",
            Drift::Elements {
                missing: 0,
                unexpected: 1,
            },
        ),
        (
            "nft flush chain inet kube-ipvs postrouting",
            Drift::Structure,
        ),
        (
            "nft insert rule inet kube-ipvs input counter accept",
            Drift::Structure,
        ),
    ];
    for (script, drift) in tampering {
        sh(script);
        let check = filter.check_table(&ruleset).unwrap();
        assert_eq!(check.drift, Some(drift), "{script}");
        if drift == Drift::Missing {
            assert_eq!(
                tcp("client", NODE, 30080),
                Outcome::TimedOut,
                "{script}: no masquerade without the table"
            );
        }
        // What the worker does on drift.
        filter.write_table(&ruleset).unwrap();
        assert_eq!(
            filter.check_table(&ruleset).unwrap().drift,
            None,
            "{script}"
        );
        assert_eq!(
            tcp("client", NODE, 30080),
            Outcome::Answered("b1".into()),
            "{script}: the masquerade is back"
        );
    }

    sh("sysctl -qw net.ipv4.vs.conntrack=0");
    let check = filter.check_table(&ruleset).unwrap();
    assert_eq!(check.sysctls, ["net/ipv4/vs/conntrack"]);
    assert_eq!(
        output("sysctl", &["-n", "net.ipv4.vs.conntrack"]).trim(),
        "1"
    );
    assert!(filter.check_table(&ruleset).unwrap().sysctls.is_empty());
    Firewall::new().cleanup().unwrap();
}

/// Issue 17: at 5,000 Services, one endpoint replaced adds one element and
/// deletes one, in a transaction a few hundred bytes long, and the kernel
/// then holds what a whole write of the new ruleset gives.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn an_endpoint_change_at_scale_sends_only_its_elements() {
    let before = many_services(5000);
    let mut after = many_services(5000);
    let svc = after
        .services
        .get_mut(&ServiceRef::new("bench", "svc-7"))
        .unwrap();
    for vs in svc.virtual_servers.values_mut() {
        let old = RealServer::new(ip("10.244.0.9"), 8080);
        assert!(vs.real_servers.remove(&old.key).is_some());
        let new = RealServer::new(ip("10.244.200.9"), 8080);
        vs.real_servers.insert(new.key, new);
    }
    let (old, new) = (
        Ruleset::new(&before, &config()),
        Ruleset::new(&after, &config()),
    );
    let mut firewall = Firewall::new();
    let full = firewall.sync(&old).unwrap();
    let change = firewall.sync(&new).unwrap();
    eprintln!(
        "5000 services, one endpoint replaced: whole table {} bytes in {:?}; \
         change {:?} {} bytes in {:?}",
        full.bytes, full.duration, change.kind, change.bytes, change.duration
    );
    assert_eq!(
        change.kind,
        WriteKind::Elements {
            added: 1,
            deleted: 1
        }
    );
    assert!(change.bytes < 500, "{change:?}");
    assert!(change.bytes * 1000 < full.bytes, "{change:?} {full:?}");
    let incremental = listed(&new);
    assert_eq!(incremental.unreadable, 0);
    assert_eq!(incremental.ruleset, new);
    assert_eq!(firewall.check(&new).unwrap().drift, None);
    firewall.write(&new).unwrap();
    let whole = listed(&new);
    assert_eq!(incremental, whole, "the same table as a whole write");
    firewall.cleanup().unwrap();
}
