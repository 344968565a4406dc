//! Against the real kernel (IPVS, dummy links): run by hack/test in the VM,
//! as root, with `--ignored --test-threads=1`. Each test starts from a
//! flushed IPVS table; `ipvsadm` is the reference.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::time::Instant;

use kube_ipvs_netlink::{
    AddressFamily, DumpedService, ForwardMethod, Ipvs, Operation, Protocol, RealServer, Route,
    Scheduler, ServiceFlags, Timeouts, VirtualServer, VirtualServerKey,
};

fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ipvs() -> Ipvs {
    let mut ipvs = Ipvs::open().expect("IPVS family");
    ipvs.flush().expect("flush");
    ipvs
}

/// Routes so that masqueraded real servers are unicast to the kernel.
fn routes() {
    sh("ip link show rs0 >/dev/null 2>&1 || { ip link add rs0 type dummy && ip link set rs0 up \
        && ip addr add 10.1.255.254/16 dev rs0 && ip addr add 2001:db8:1::fffe/64 dev rs0 nodad; }; \
        ip link set lo up");
}

fn saved() -> BTreeSet<String> {
    sh("ipvsadm -Sn").lines().map(str::to_owned).collect()
}

fn addr(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn service_arg(key: &VirtualServerKey) -> String {
    match key {
        VirtualServerKey::Inet {
            protocol,
            address,
            port,
        } => {
            let flag = match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
                Protocol::Other(_) => "-?",
            };
            format!("{flag} {}", addr(*address, *port))
        }
        VirtualServerKey::FirewallMark { family, mark } => match family {
            AddressFamily::Inet => format!("-f {mark}"),
            AddressFamily::Inet6 => format!("-f {mark} -6"),
        },
    }
}

/// `ipvsadm -Sn` lines for a dump, in ipvsadm's format.
fn save_lines(dump: &[DumpedService]) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for s in dump {
        let v = &s.service.service;
        let svc = service_arg(&v.key);
        let mut line = format!("-A {svc} -s {}", v.scheduler);
        if v.flags.contains(ServiceFlags::PERSISTENT) {
            line += &format!(" -p {}", v.timeout);
            let family = v.key.family();
            if v.netmask != family.max_prefix() {
                match family {
                    AddressFamily::Inet => {
                        let mask = u32::MAX.checked_shl(32 - u32::from(v.netmask)).unwrap_or(0);
                        line += &format!(" -M {}", std::net::Ipv4Addr::from(mask));
                    }
                    AddressFamily::Inet6 => line += &format!(" -M {}", v.netmask),
                }
            }
        }
        if let Some(pe) = &v.persistence_engine {
            line += &format!(" --pe {pe}");
        }
        let names = v.flags.scheduler_flag_names(&v.scheduler);
        if !names.is_empty() {
            line += &format!(" -b {}", names.join(","));
        }
        if v.flags.contains(ServiceFlags::ONEPACKET) {
            line += " -o";
        }
        lines.insert(line);
        for d in &s.destinations {
            let r = &d.server;
            let fwd = match r.forward {
                ForwardMethod::Masquerade => "-m",
                ForwardMethod::Tunnel => "-i",
                _ => "-g",
            };
            let mut line = format!(
                "-a {svc} -r {} {fwd} -w {}",
                addr(r.key.address, r.key.port),
                r.weight
            );
            if r.forward == ForwardMethod::Tunnel {
                line += " --tun-type ipip";
            }
            lines.insert(line);
        }
    }
    lines
}

fn assert_same(ours: &BTreeSet<String>, theirs: &BTreeSet<String>) {
    let missing: Vec<_> = theirs.difference(ours).collect();
    let extra: Vec<_> = ours.difference(theirs).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "ipvsadm has but we don't: {missing:#?}\nwe have but ipvsadm doesn't: {extra:#?}"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Every scheduler, over TCP, UDP and SCTP, IPv4 and IPv6, with and without
/// persistence, with scheduler flags and every forwarding method.
fn matrix(schedulers: &[Scheduler]) -> (Vec<VirtualServer>, Vec<(VirtualServerKey, RealServer)>) {
    let protocols = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
    let mut services = Vec::new();
    let mut dests = Vec::new();
    let mut port = 1000;
    for (i, scheduler) in schedulers.iter().enumerate() {
        for protocol in protocols {
            for v6 in [false, true] {
                port += 1;
                let vip = if v6 {
                    ip("2001:db8::1")
                } else {
                    ip("10.0.0.1")
                };
                let key = VirtualServerKey::inet(protocol, vip, port);
                let mut s = VirtualServer::new(key, scheduler.clone());
                if port % 2 == 0 {
                    s = s.persistent(60 + u32::from(port));
                    s.netmask = if v6 { 64 } else { 24 };
                }
                if scheduler.takes_flags() {
                    s.flags |= if i % 2 == 0 {
                        ServiceFlags::SCHED1 | ServiceFlags::SCHED2
                    } else {
                        ServiceFlags::SCHED2
                    };
                }
                for (n, forward) in [
                    ForwardMethod::Masquerade,
                    ForwardMethod::DirectRoute,
                    ForwardMethod::Tunnel,
                ]
                .into_iter()
                .enumerate()
                {
                    let n = n as u8 + 1;
                    let rs = if v6 {
                        IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(n)])
                    } else {
                        IpAddr::from([10, 1, 0, n])
                    };
                    // The kernel forces the service's port on non-NAT destinations.
                    let rport = if forward == ForwardMethod::Masquerade {
                        8080
                    } else {
                        port
                    };
                    let mut r = RealServer::new(rs, rport);
                    r.forward = forward;
                    r.weight = u32::from(n);
                    dests.push((key, r));
                }
                services.push(s);
            }
        }
    }
    (services, dests)
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn every_scheduler_protocol_and_method_matches_ipvsadm() {
    routes();
    let mut ipvs = ipvs();
    // A kernel without a scheduler module refuses it with ENOENT (twos came in 6.2).
    let mut schedulers = Vec::new();
    for scheduler in Scheduler::KNOWN {
        let key = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.250"), 1);
        let probe = [
            Operation::NewService(VirtualServer::new(key, scheduler.clone())),
            Operation::DelService(key),
        ];
        let report = ipvs.apply(&probe).expect("probe");
        match &report.results[0] {
            Ok(()) => schedulers.push(scheduler),
            Err(e) if e.errno() == Some(2) => println!("kernel has no {scheduler} scheduler"),
            Err(e) => panic!("{e}: {}", e.source),
        }
    }
    assert!(schedulers.len() >= 13, "{schedulers:?}");
    if std::env::var_os("EXPECT_ALL_SCHEDULERS").is_some() {
        // hack/test sets this on a kernel new enough for every one (6.7+).
        assert_eq!(schedulers, Scheduler::KNOWN, "a scheduler is missing");
    }
    let (services, dests) = matrix(&schedulers);
    let mut ops: Vec<Operation> = services
        .iter()
        .cloned()
        .map(Operation::NewService)
        .collect();
    ops.extend(dests.iter().map(|(k, r)| Operation::NewDest(*k, *r)));
    // Firewall-mark services, and one one-packet UDP service.
    let fwm = VirtualServerKey::FirewallMark {
        family: AddressFamily::Inet,
        mark: 7,
    };
    let mut mh = VirtualServer::new(fwm, Scheduler::Mh);
    mh.flags = ServiceFlags::SCHED2;
    ops.push(Operation::NewService(mh));
    ops.push(Operation::NewDest(fwm, RealServer::new(ip("10.1.0.9"), 80)));
    let mut one = VirtualServer::new(
        VirtualServerKey::inet(Protocol::Udp, ip("10.0.0.2"), 53),
        Scheduler::Rr,
    );
    one.flags = ServiceFlags::ONEPACKET;
    ops.push(Operation::NewService(one));
    let report = ipvs.apply(&ops).expect("apply");
    let errors: Vec<String> = report
        .errors()
        .map(|e| format!("{e}: {}", e.source))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    println!(
        "{} operations: {} sendmsg, {} recvmsg",
        ops.len(),
        report.sendmsg_calls,
        report.recvmsg_calls
    );
    let dump = ipvs.dump_all().expect("dump");
    assert_same(&save_lines(&dump), &saved());
    // What we wrote is what we read, field for field.
    let dumped: BTreeSet<String> = dump
        .iter()
        .map(|s| format!("{:?}", s.service.service))
        .collect();
    for op in &ops {
        if let Operation::NewService(s) = op {
            assert!(dumped.contains(&format!("{s:?}")), "{s:?} not in dump");
        }
    }
    let service_count = ops
        .iter()
        .filter(|o| matches!(o, Operation::NewService(_)))
        .count();
    assert_eq!(dump.len(), service_count);
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn rules_written_by_ipvsadm_read_back_exactly() {
    routes();
    let mut ipvs = ipvs();
    sh("ipvsadm -A -t 10.0.0.1:80 -s wrr -p 300 -M 255.255.255.0
        ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.1:8080 -m -w 5 -x 100 -y 10
        ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 0
        ipvsadm -A -u [2001:db8::1]:53 -s sh -b sh-port,sh-fallback -p 60 -M 64
        ipvsadm -a -u [2001:db8::1]:53 -r [2001:db8:1::10]:53 -i -w 2
        ipvsadm -a -u [2001:db8::1]:53 -r [2001:db8:1::11]:53 -g -w 3
        ipvsadm -A --sctp-service 10.0.0.3:3868 -s mh -b mh-fallback
        ipvsadm -A -u 10.0.0.4:5060 -s rr -p 30 --pe sip
        ipvsadm -A -f 7 -s lc");
    let dump = ipvs.dump_all().expect("dump");
    assert_same(&save_lines(&dump), &saved());
    let http = dump
        .iter()
        .find(|s| {
            s.service.service.key == VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.1"), 80)
        })
        .expect("service");
    let rs = &http
        .destinations
        .iter()
        .find(|d| d.server.key.address == ip("10.1.0.1"))
        .expect("rs")
        .server;
    assert_eq!(
        (rs.upper_threshold, rs.lower_threshold, rs.weight),
        (100, 10, 5)
    );
    assert_eq!(http.service.service.netmask, 24);
    let sip = dump
        .iter()
        .find(|s| s.service.service.persistence_engine.is_some())
        .expect("sip");
    assert_eq!(
        sip.service.service.persistence_engine.as_deref(),
        Some("sip")
    );
    // Single-service dumps agree with the pipelined one.
    for s in &dump {
        assert_eq!(
            ipvs.destinations(&s.service.service.key).expect("dests"),
            s.destinations
        );
    }
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn counters_match_ipvsadm_stats() {
    routes();
    let mut ipvs = ipvs();
    sh("ip addr add 10.9.9.9/32 dev rs0 2>/dev/null || true
        ipvsadm -A -t 10.9.9.9:80 -s rr
        ipvsadm -a -t 10.9.9.9:80 -r 127.0.0.1:8080 -m
        listen() {
          (busybox nc -l -p 8080 -e /bin/echo hello >/dev/null 2>&1 &)
          for i in $(seq 100); do ss -ltn | grep -q ':8080 ' && return; sleep 0.1; done
        }
        for i in 1 2 3; do listen; echo hi | busybox nc -w 2 10.9.9.9 80 >/dev/null 2>&1 || true; done");
    // Wait for the connections to show (a loaded machine runs the guest slowly).
    for _ in 0..100 {
        if ipvs.services().expect("dump")[0].stats.connections >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let dump = ipvs.dump_all().expect("dump");
    let s = &dump[0];
    let d = &s.destinations[0];
    // `ipvsadm -Ln --stats --exact`: Conns InPkts OutPkts InBytes OutBytes.
    let stats = sh("ipvsadm -Ln --stats --exact");
    println!("{stats}");
    let numbers = |prefix: &str| -> Vec<u64> {
        let line = stats
            .lines()
            .rfind(|l| l.trim_start().starts_with(prefix))
            .expect("line");
        line.split_whitespace()
            .skip(2)
            .map(|n| n.parse().expect("number"))
            .collect()
    };
    let svc = numbers("TCP");
    let st = s.service.stats;
    assert_eq!(
        svc,
        vec![
            st.connections,
            st.packets_in,
            st.packets_out,
            st.bytes_in,
            st.bytes_out
        ]
    );
    assert!(st.connections >= 1, "no connection went through: {st:?}");
    let rs = numbers("->");
    let ds = d.counters.stats;
    assert_eq!(
        rs,
        vec![
            ds.connections,
            ds.packets_in,
            ds.packets_out,
            ds.bytes_in,
            ds.bytes_out
        ]
    );
    let conns = sh("ipvsadm -Ln | grep -- '->' | tail -1");
    let fields: Vec<u32> = conns
        .split_whitespace()
        .skip(4)
        .map(|n| n.parse().expect("n"))
        .collect();
    assert_eq!(
        fields,
        vec![
            d.counters.active_connections,
            d.counters.inactive_connections
        ]
    );
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn ten_thousand_operations_in_few_sendmsg() {
    routes();
    let mut ipvs = ipvs();
    let mut ops = Vec::new();
    for s in 0..100u16 {
        let key = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.1"), 10_000 + s);
        ops.push(Operation::NewService(VirtualServer::new(
            key,
            Scheduler::Rr,
        )));
        for d in 0..99u8 {
            let rs = RealServer::new(IpAddr::from([10, 1, (s % 250) as u8, d + 1]), 8080);
            ops.push(Operation::NewDest(key, rs));
        }
    }
    assert_eq!(ops.len(), 10_000);
    let start = Instant::now();
    let report = ipvs.apply(&ops).expect("apply");
    let elapsed = start.elapsed();
    println!(
        "apply: {} operations, {} sendmsg, {} recvmsg, {elapsed:?}",
        ops.len(),
        report.sendmsg_calls,
        report.recvmsg_calls
    );
    assert!(report.is_ok(), "{:?}", report.errors().next());
    assert!(
        report.sendmsg_calls <= 20,
        "{} sendmsg",
        report.sendmsg_calls
    );
    let start = Instant::now();
    let before = ipvs.syscalls();
    let dump = ipvs.dump_all().expect("dump");
    let after = ipvs.syscalls();
    println!(
        "dump_all: {} services, {} sendmsg, {} recvmsg, {:?}",
        dump.len(),
        after.sendmsg - before.sendmsg,
        after.recvmsg - before.recvmsg,
        start.elapsed()
    );
    assert_eq!(dump.len(), 100);
    assert!(dump.iter().all(|s| s.destinations.len() == 99));
    // The same rules through `ipvsadm -R`, for comparison.
    ipvs.flush().expect("flush");
    let rules: String = ops
        .iter()
        .map(|op| match op {
            Operation::NewService(s) => format!("-A {} -s rr\n", service_arg(&s.key)),
            Operation::NewDest(k, r) => format!(
                "-a {} -r {} -m -w 1\n",
                service_arg(k),
                addr(r.key.address, r.key.port)
            ),
            _ => String::new(),
        })
        .collect();
    std::fs::write("/tmp/rules", rules).expect("write");
    let start = Instant::now();
    sh("ipvsadm -R < /tmp/rules");
    println!("ipvsadm -R of the same 10,000 rules: {:?}", start.elapsed());
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn dump_all_of_five_thousand_services() {
    routes();
    let mut ipvs = ipvs();
    let mut ops = Vec::new();
    for s in 0..5000u32 {
        let vip = IpAddr::from([10, 2, (s / 250) as u8, (s % 250) as u8 + 1]);
        let key = VirtualServerKey::inet(Protocol::Tcp, vip, 80);
        ops.push(Operation::NewService(VirtualServer::new(
            key,
            Scheduler::Rr,
        )));
        for d in 1..=2u8 {
            ops.push(Operation::NewDest(
                key,
                RealServer::new(IpAddr::from([10, 1, 0, d]), 8080),
            ));
        }
    }
    let start = Instant::now();
    let report = ipvs.apply(&ops).expect("apply");
    println!(
        "apply: {} operations, {} sendmsg, {} recvmsg, {:?}",
        ops.len(),
        report.sendmsg_calls,
        report.recvmsg_calls,
        start.elapsed()
    );
    assert!(report.is_ok(), "{:?}", report.errors().next());
    for window in [1, 64, 512, 4096] {
        ipvs.set_dump_window(window);
        let before = ipvs.syscalls();
        let start = Instant::now();
        let dump = ipvs.dump_all().expect("dump");
        let after = ipvs.syscalls();
        println!(
            "dump_all window {window}: {} services, {} sendmsg, {} recvmsg, {:?}",
            dump.len(),
            after.sendmsg - before.sendmsg,
            after.recvmsg - before.recvmsg,
            start.elapsed()
        );
        assert_eq!(dump.len(), 5000);
        assert!(dump.iter().all(|s| s.destinations.len() == 2));
    }
    let start = Instant::now();
    sh("ipvsadm -Sn >/dev/null");
    println!("ipvsadm -Sn: {:?}", start.elapsed());
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn refused_operations_are_named_and_the_rest_applies() {
    routes();
    let mut ipvs = ipvs();
    let good = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.1"), 80);
    let missing = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.99"), 80);
    let bad = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.2"), 80);
    let ops = vec![
        Operation::NewService(VirtualServer::new(good, Scheduler::Rr)),
        Operation::NewService(VirtualServer::new(bad, Scheduler::Other("nosuch".into()))),
        Operation::NewDest(missing, RealServer::new(ip("10.1.0.1"), 8080)),
        Operation::NewDest(good, RealServer::new(ip("10.1.0.1"), 8080)),
        Operation::NewService(VirtualServer::new(good, Scheduler::Rr)),
        Operation::NewDest(good, RealServer::new(ip("10.1.0.2"), 8080)),
    ];
    let report = ipvs.apply(&ops).expect("apply");
    for (op, r) in ops.iter().zip(&report.results) {
        println!("{op}: {r:?}");
    }
    let failed: Vec<usize> = report
        .results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![1, 2, 4]);
    let err = report.results[1].as_ref().unwrap_err();
    assert!(
        err.to_string()
            .contains("new service TCP 10.0.0.2:80 (nosuch)"),
        "{err}"
    );
    assert_eq!(err.errno(), Some(2)); // ENOENT: no such scheduler
    let err = report.results[2].as_ref().unwrap_err();
    assert!(
        err.to_string()
            .contains("new destination 10.1.0.1:8080 of TCP 10.0.0.99:80"),
        "{err}"
    );
    assert_eq!(err.errno(), Some(3)); // ESRCH: no such service
    assert_eq!(report.results[4].as_ref().unwrap_err().errno(), Some(17)); // EEXIST
    let dump = ipvs.dump_all().expect("dump");
    assert_eq!(dump.len(), 1);
    assert_eq!(dump[0].destinations.len(), 2);
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn timeouts_and_info() {
    let mut ipvs = ipvs();
    let info = ipvs.info().expect("info");
    println!("{info:?} {}", info.version_string());
    assert!(sh("ipvsadm -Ln").contains(&format!(
        "version {} (size={})",
        info.version_string(),
        info.connection_table_size
    )));
    let t = Timeouts {
        tcp: 901,
        tcp_fin: 121,
        udp: 301,
    };
    ipvs.set_timeouts(&t).expect("set");
    assert_eq!(ipvs.timeouts().expect("get"), t);
    assert!(sh("ipvsadm -Ln --timeout").contains("Timeout (tcp tcpfin udp): 901 121 301"));
    // 0 leaves a timeout as it is.
    ipvs.set_timeouts(&Timeouts {
        tcp: 0,
        tcp_fin: 0,
        udp: 60,
    })
    .expect("set");
    assert_eq!(ipvs.timeouts().expect("get"), Timeouts { udp: 60, ..t });
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn dummy_link_and_addresses() {
    let mut route = Route::open().expect("route");
    sh("ip link del kipvs-t0 2>/dev/null; ip link add kipvs-veth type veth peer name kipvs-veth1 2>/dev/null; \
        ip link set lo up; true");
    let index = route.ensure_dummy("kipvs-t0").expect("dummy");
    assert_eq!(route.ensure_dummy("kipvs-t0").expect("again"), index);
    let shown = sh("ip -d link show kipvs-t0");
    assert!(shown.contains("dummy") && shown.contains(",UP"), "{shown}");
    let err = route
        .ensure_dummy("kipvs-veth")
        .expect_err("a veth is not a dummy");
    println!("{err}: {:?}", std::error::Error::source(&err));

    let vips: Vec<IpAddr> = (1..=200u8)
        .map(|n| IpAddr::from([10, 96, 0, n]))
        .chain([ip("fd00::1"), ip("fd00::2")])
        .collect();
    let before = route.syscalls();
    let results = route.add_addresses(index, &vips).expect("add");
    println!(
        "add {} addresses: {} sendmsg",
        vips.len(),
        route.syscalls().sendmsg - before.sendmsg
    );
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    // Adding again is fine.
    route.add_address(index, vips[0]).expect("idempotent");
    // The kernel adds an IPv6 link-local address to a link that comes up.
    let mut listed: Vec<IpAddr> = route
        .addresses(index)
        .expect("list")
        .into_iter()
        .filter(|a| !matches!(a, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80))
        .collect();
    listed.sort();
    let mut want = vips.clone();
    want.sort();
    assert_eq!(listed, want);
    let shown = sh("ip -6 addr show dev kipvs-t0");
    assert!(
        shown.contains("fd00::1/128") && !shown.contains("tentative"),
        "{shown}"
    );
    assert!(sh("ip -4 addr show dev kipvs-t0").contains("10.96.0.7/32"));

    sh(
        "ip link set rs0 up 2>/dev/null || (ip link add rs0 type dummy && ip link set rs0 up); \
        ip addr add 192.168.77.5/24 dev rs0; ip addr add 2001:db8:77::5/64 dev rs0 nodad",
    );
    let all = route.local_addresses(&["kipvs-t0"], &[]).expect("local");
    assert!(
        all.contains(&ip("192.168.77.5")) && all.contains(&ip("2001:db8:77::5")),
        "{all:?}"
    );
    assert!(
        !all.contains(&vips[0]) && !all.contains(&ip("127.0.0.1")),
        "{all:?}"
    );
    let filtered = route
        .local_addresses(&["kipvs-t0"], &["192.168.0.0/16".parse().expect("cidr")])
        .expect("local");
    assert_eq!(filtered, vec![ip("192.168.77.5")]);

    let results = route.remove_addresses(index, &vips[..100]).expect("remove");
    assert!(results.iter().all(Result::is_ok));
    route
        .remove_address(index, vips[0])
        .expect("already gone is fine");
    let left = route.addresses(index).expect("list");
    assert!(vips[100..].iter().all(|v| left.contains(v)) && !left.contains(&vips[0]));
    route.delete_link("kipvs-t0").expect("delete");
    route
        .delete_link("kipvs-t0")
        .expect("deleting a missing link is fine");
    assert!(route.link("kipvs-t0").expect("lookup").is_none());
}
