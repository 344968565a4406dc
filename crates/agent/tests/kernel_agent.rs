//! The agent against the real kernel, with real traffic. These tests need
//! root and a kernel with IPVS: `hack/test` runs them inside the VM (see
//! `hack/vm-run`), one at a time.

#[path = "kernel_agent/support.rs"]
#[allow(dead_code, reason = "shared with the conformance suite")]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// A virtual server or real server line of `ipvsadm -Sn`, as a set of
/// option → value pairs (so option order does not matter).
fn parse_save(text: &str) -> BTreeSet<Vec<(String, String)>> {
    text.lines()
        .map(|line| {
            let mut pairs = Vec::new();
            let mut words = line.split_whitespace().peekable();
            while let Some(opt) = words.next() {
                let value = match words.peek() {
                    Some(v) if !v.starts_with('-') => words.next().unwrap().to_owned(),
                    _ => String::new(),
                };
                pairs.push((opt.to_owned(), value));
            }
            // IP-in-IP is the tunnel type the model means by "tunnel".
            pairs.retain(|p| *p != ("--tun-type".to_owned(), "ipip".to_owned()));
            pairs.sort();
            pairs
        })
        .collect()
}

fn endpoint(address: &str, port: u64) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// The same lines, made from `kube-ipvs dump --output json`.
fn save_from_dump(doc: &Value) -> BTreeSet<Vec<(String, String)>> {
    let mut lines = BTreeSet::new();
    for vs in doc["virtual_servers"].as_array().unwrap() {
        let proto = match vs["protocol"].as_str().unwrap() {
            "TCP" => "-t",
            "UDP" => "-u",
            "SCTP" => "--sctp-service",
            other => panic!("unexpected protocol {other}"),
        };
        let local = endpoint(
            vs["address"].as_str().unwrap(),
            vs["port"].as_u64().unwrap(),
        );
        let mut line = vec![
            ("-A".to_owned(), String::new()),
            (proto.to_owned(), local.clone()),
            (
                "-s".to_owned(),
                vs["scheduler"].as_str().unwrap().to_owned(),
            ),
        ];
        if let Some(flags) = vs["flags"].as_array() {
            let flags: Vec<&str> = flags.iter().map(|f| f.as_str().unwrap()).collect();
            line.push(("-b".to_owned(), flags.join(",")));
        }
        if let Some(t) = vs["persistence_timeout"].as_u64() {
            line.push(("-p".to_owned(), t.to_string()));
        }
        line.sort();
        lines.insert(line);
        for rs in vs["real_servers"].as_array().unwrap() {
            let forward = match rs["forward"].as_str().unwrap() {
                "masq" => "-m",
                "route" => "-g",
                "tunnel" => "-i",
                other => panic!("unexpected forward {other}"),
            };
            let mut line = vec![
                ("-a".to_owned(), String::new()),
                (proto.to_owned(), local.clone()),
                (
                    "-r".to_owned(),
                    endpoint(
                        rs["address"].as_str().unwrap(),
                        rs["port"].as_u64().unwrap(),
                    ),
                ),
                (forward.to_owned(), String::new()),
                ("-w".to_owned(), rs["weight"].to_string()),
            ];
            line.sort();
            lines.insert(line);
        }
    }
    lines
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn dump_json_matches_ipvsadm_save() {
    reset();
    // Masquerade destinations need a route.
    sh("ip link add lab0 type dummy; ip link set lab0 up
        ip addr add 10.244.1.1/24 dev lab0; ip addr add fd00:10::1/64 dev lab0 nodad
        ipvsadm -A -t 10.1.0.1:80 -s wrr
        ipvsadm -a -t 10.1.0.1:80 -r 10.244.1.2:8080 -m -w 3
        ipvsadm -a -t 10.1.0.1:80 -r 10.244.1.3:8080 -g -w 1
        ipvsadm -A -u 10.1.0.2:53 -s sh -b sh-fallback,sh-port -p 600
        ipvsadm -a -u 10.1.0.2:53 -r 10.244.1.4:53 -i -w 2
        ipvsadm -A --sctp-service 10.1.0.3:3868 -s mh -b mh-port
        ipvsadm -a --sctp-service 10.1.0.3:3868 -r 10.244.1.5:3868 -m
        ipvsadm -A -t [fd00::1]:443 -s lc -p 60
        ipvsadm -a -t [fd00::1]:443 -r [fd00:10::2]:8443 -m -w 0");
    let save = sh("ipvsadm -Sn");
    let json = sh(&format!(
        "{} dump --output json --metrics-bind-address ''",
        agent_bin()
    ));
    let doc: Value = serde_json::from_str(&json).unwrap();
    // Connection counts are part of a dump.
    assert!(
        doc["virtual_servers"][0]["real_servers"][0]["active_connections"].is_u64(),
        "{json}"
    );
    let expected = parse_save(&save);
    assert_eq!(expected.len(), 9, "{save}");
    assert_eq!(
        save_from_dump(&doc),
        expected,
        "ipvsadm -Sn:\n{save}\ndump:\n{json}"
    );
    reset();
}

fn once(dir: &std::path::Path) -> Value {
    let out = sh(&format!(
        "{} run --once --from-dir {} --hostname-override node-1 2>/dev/null",
        agent_bin(),
        dir.display()
    ));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn restart_adopts_the_kernel_and_removes_only_what_is_stale() {
    reset();
    let m = Manifests::new("adopt");
    m.write(
        "web.yaml",
        &service_yaml(
            "web",
            "10.96.0.1",
            80,
            "",
            &["10.244.1.2", "10.244.2.2"],
            80,
        ),
    );
    m.write(
        "db.yaml",
        &service_yaml("db", "10.96.0.2", 5432, "", &["10.244.1.3"], 5432),
    );
    sh("ip link add lab0 type dummy; ip link set lab0 up; ip addr add 10.244.0.1/16 dev lab0");

    let first = once(&m.dir);
    assert_eq!(first["virtual_servers"], 2, "{first}");
    assert_eq!(first["real_servers"], 3);
    assert_eq!(first["addresses"], 2);
    assert_eq!(first["writes"], 2 + 2 + 3, "{first}");

    // Another load balancer's virtual server, and a stale one of ours on an
    // address still bound on our dummy interface.
    sh("ipvsadm -A -t 192.0.2.1:80 -s wlc
        ip addr add 10.96.0.99/32 dev kube-ipvs0
        ipvsadm -A -t 10.96.0.99:80 -s rr");
    let second = once(&m.dir);
    assert_eq!(second["writes"], 2, "{second}");
    assert_eq!(second["operations"]["del_service"], 1, "{second}");
    assert_eq!(second["operations"]["unbind_address"], 1, "{second}");
    let save = sh("ipvsadm -Sn");
    assert!(save.contains("-A -t 192.0.2.1:80 -s wlc"), "{save}");
    assert!(!save.contains("10.96.0.99"), "{save}");
    assert!(!sh("ip -o addr show dev kube-ipvs0").contains("10.96.0.99"));

    // The packet filter's table holds the Service addresses.
    let table = sh("nft list table inet kube-ipvs");
    assert!(
        table.contains("10.96.0.1") && table.contains("10.96.0.2"),
        "{table}"
    );
    assert!(!table.contains("10.96.0.99"), "{table}");

    let third = once(&m.dir);
    assert_eq!(third["writes"], 0, "{third}");
    assert_eq!(third["operations"], serde_json::json!({}), "{third}");

    // cleanup removes ours and nothing else.
    sh(&format!("{} cleanup", agent_bin()));
    let save = sh("ipvsadm -Sn");
    assert_eq!(save.trim(), "-A -t 192.0.2.1:80 -s wlc", "{save}");
    assert!(
        !try_sh("ip link show kube-ipvs0").0,
        "the dummy interface is gone"
    );
    assert!(
        !try_sh("nft list table inet kube-ipvs").0,
        "the nftables table is gone"
    );
    reset();
}

/// What `cleanup` could change: the IPVS table, every address, the packet
/// filter's table and the FORWARD rule.
fn cleanup_could_change() -> String {
    // IPv6 link-local addresses are left out: their DAD flags change alone.
    sh(
        "ipvsadm -Sn; ip -o addr show | grep -v ' fe80::'; ip -o link show; \
        nft list table inet kube-ipvs; iptables-nft -w -S FORWARD 2>/dev/null; true",
    )
}

/// `cleanup` checks before it writes: a link that is not a dummy, or a
/// dummy with an address that is not the agent's, and it changes nothing.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn cleanup_refuses_an_interface_it_did_not_make_and_changes_nothing() {
    reset();
    let m = Manifests::new("refuse");
    m.write(
        "web.yaml",
        &service_yaml("web", "10.96.0.1", 80, "", &["10.244.1.2"], 80),
    );
    assert_eq!(once(&m.dir)["virtual_servers"], 1);
    // A veth holding the address of one of our virtual servers: only its
    // kind tells it is not ours.
    sh("ip link add ve0 type veth peer name ve1; ip addr add 10.96.0.1/32 dev ve0");
    let before = cleanup_could_change();
    assert!(before.contains("-A -t 10.96.0.1:80"), "{before}");
    assert!(before.contains("table inet kube-ipvs"), "{before}");

    let cleanup = |args: &str| {
        try_sh(&format!(
            "{} cleanup {args} 2>&1; echo \"exit=$?\"",
            agent_bin()
        ))
        .1
    };
    let out = cleanup("--dummy-interface ve0");
    assert!(out.contains("exit=1"), "{out}");
    assert!(
        out.contains("ve0 is not a dummy interface (its kind is veth)"),
        "{out}"
    );
    assert_eq!(cleanup_could_change(), before, "{out}");

    // Our dummy, with an address no virtual server uses (nodelocaldns's, say).
    sh("ip addr add 169.254.20.10/32 dev kube-ipvs0");
    let before = cleanup_could_change();
    let out = cleanup("");
    assert!(out.contains("exit=1"), "{out}");
    assert!(
        out.contains("169.254.20.10 (no virtual server uses it)"),
        "{out}"
    );
    assert_eq!(cleanup_could_change(), before, "{out}");

    // Our address, but excluded: the agent never unbinds it.
    sh("ip addr del 169.254.20.10/32 dev kube-ipvs0");
    let before = cleanup_could_change();
    let out = cleanup("--ipvs-exclude-cidrs 10.96.0.0/24");
    assert!(out.contains("exit=1"), "{out}");
    assert!(out.contains("10.96.0.1 (in --ipvs-exclude-cidrs)"), "{out}");
    assert_eq!(cleanup_could_change(), before, "{out}");

    // Nothing foreign left: it goes, and the veth stays.
    let out = cleanup("");
    assert!(out.contains("exit=0"), "{out}");
    assert_eq!(sh("ipvsadm -Sn").trim(), "", "{out}");
    assert!(!try_sh("ip link show kube-ipvs0").0);
    assert!(sh("ip -o addr show dev ve0").contains("10.96.0.1/32"));
    reset();
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn real_traffic_round_robin_source_hash_endpoint_removal_and_restart() {
    reset();
    for n in 1..=3 {
        backend(n);
    }
    let backends = ["10.244.1.2", "10.244.2.2", "10.244.3.2"];
    let m = Manifests::new("traffic");
    m.write(
        "web.yaml",
        &service_yaml("web", "10.96.0.1", 80, "", &backends, 80),
    );
    m.write(
        "sticky.yaml",
        &service_yaml(
            "sticky",
            "10.96.0.2",
            80,
            "kube-ipvs.io/scheduler: sh",
            &backends,
            80,
        ),
    );
    let agent = Agent::start(&m.dir, &[]);
    agent.wait_healthy();

    let count = |vip: &str, n: usize| {
        let mut hits: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..n {
            *hits.entry(get(vip, 80)).or_default() += 1;
        }
        hits
    };
    let rr = count("10.96.0.1", 9);
    assert_eq!(
        rr,
        BTreeMap::from([("b1".into(), 3), ("b2".into(), 3), ("b3".into(), 3)]),
        "round robin; agent log:\n{}",
        agent.log()
    );
    // dump names each virtual server after its Service, learnt from the agent.
    let dump = sh(&format!("{} dump", agent_bin()));
    assert!(
        dump.contains("default/web:p") && dump.contains("default/sticky:p"),
        "{dump}"
    );
    let sh_hits = count("10.96.0.2", 9);
    assert_eq!(
        sh_hits.len(),
        1,
        "source hashing sends one client to one backend: {sh_hits:?}"
    );
    assert_eq!(sh_hits.values().sum::<usize>(), 9, "{sh_hits:?}");

    // An endpoint removed from the watched directory leaves the rotation.
    m.write(
        "web.yaml",
        &service_yaml("web", "10.96.0.1", 80, "", &backends[..2], 80),
    );
    wait_until("b3 out of rotation", Duration::from_secs(30), || {
        real_servers("-t", "10.96.0.1:80")
            .iter()
            .all(|(rs, weight, ..)| rs != "10.244.3.2:80" || *weight == 0)
    });
    let after = count("10.96.0.1", 6);
    assert_eq!(
        after,
        BTreeMap::from([("b1".into(), 3), ("b2".into(), 3)]),
        "{after:?}"
    );

    // A steady stream of requests while the agent restarts: none fails.
    sh("rm -f /tmp/stream.log
        ( for i in $(seq 1 100); do
            printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 busybox nc 10.96.0.1 80 | tail -n 1 >> /tmp/stream.log
            sleep 0.05
          done; echo done >> /tmp/stream.log ) > /dev/null 2>&1 &");
    std::thread::sleep(Duration::from_millis(500));
    agent.stop();
    std::thread::sleep(Duration::from_millis(500));
    let agent = Agent::start(&m.dir, &[]);
    agent.wait_healthy();
    wait_until("stream finished", Duration::from_secs(120), || {
        std::fs::read_to_string("/tmp/stream.log").is_ok_and(|s| s.contains("done"))
    });
    let stream = std::fs::read_to_string("/tmp/stream.log").unwrap();
    let answers: Vec<&str> = stream.lines().filter(|l| *l != "done").collect();
    assert_eq!(answers.len(), 100, "{stream}");
    assert!(
        answers.iter().all(|a| *a == "b1" || *a == "b2"),
        "every request answered: {stream}"
    );
    // The restarted agent adopted the kernel without writing: its first
    // full sync (both agents log to one file) made no write.
    let log = agent.log();
    let restarted = log.rfind("kube-ipvs started").expect("the second start");
    let restart_sync = log[restarted..]
        .lines()
        .find(|l| l.contains("sync=\"full\""))
        .unwrap_or_default()
        .to_owned();
    assert!(restart_sync.contains("writes=0"), "{log}");
    drop(agent);
    reset();
}

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn tcp_real_server_drains_at_weight_zero_and_goes_when_its_connection_closes() {
    reset();
    backend(1);
    backend(2);
    // A long-lived connection to b2 through the VIP; the backend's stdin
    // stays open, so it does not close on its own, and its output goes
    // nowhere, so `sh` does not wait for it.
    sh("(sleep 600 | ip netns exec b2 busybox nc -l -p 9000) > /dev/null 2>&1 &");
    std::thread::sleep(Duration::from_millis(500));
    let m = Manifests::new("drain");
    m.write(
        "db.yaml",
        &service_yaml("db", "10.96.0.3", 9000, "", &["10.244.2.2"], 9000),
    );
    let agent = Agent::start(&m.dir, &["--ipvs-graceful-period", "10m"]);
    agent.wait_healthy();
    let connection =
        std::net::TcpStream::connect("10.96.0.3:9000").expect("connecting through the VIP");
    wait_until("connection established", Duration::from_secs(10), || {
        real_servers("-t", "10.96.0.3:9000")
            .iter()
            .any(|(_, _, active, _)| *active == 1)
    });

    m.write(
        "db.yaml",
        &service_yaml("db", "10.96.0.3", 9000, "", &["10.244.1.2"], 9000),
    );
    wait_until("drained at weight 0", Duration::from_secs(10), || {
        real_servers("-t", "10.96.0.3:9000").contains(&("10.244.2.2:9000".into(), 0, 1, 0))
    });
    // Still there while the connection lives.
    std::thread::sleep(Duration::from_secs(5));
    let servers = real_servers("-t", "10.96.0.3:9000");
    assert!(
        servers
            .iter()
            .any(|(rs, w, ..)| rs == "10.244.2.2:9000" && *w == 0),
        "{servers:?}"
    );

    // Close it with a reset (SO_LINGER 0): IPVS keeps a reset connection
    // for 10 s, where a FIN would leave it in TIME_WAIT for two minutes.
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&connection, nix::sys::socket::sockopt::Linger, &linger).unwrap();
    drop(connection);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while real_servers("-t", "10.96.0.3:9000")
        .iter()
        .any(|(rs, ..)| rs == "10.244.2.2:9000")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not removed within 60 s of the connection closing.\nconnections:\n{}\nagent:\n{}",
            sh("ipvsadm -Lnc"),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(agent);
    reset();
}

/// A self-signed CA certificate (P-256, CN kube-ipvs-test-ca), base64 of its PEM.
const TEST_CA: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJqekNDQVRXZ0F3SUJBZ0lVQzU1SVdtS2gzY2g3eklyWitVRG9RSmxZZmZJd0NnWUlLb1pJemowRUF3SXcKSERFYU1CZ0dBMVVFQXd3UmEzVmlaUzFwY0haekxYUmxjM1F0WTJFd0lCY05Nall4TVRJeU1EUTFOREUyV2hnUApNakV5TmpFd01qa3dORFUwTVRaYU1Cd3hHakFZQmdOVkJBTU1FV3QxWW1VdGFYQjJjeTEwWlhOMExXTmhNRmt3CkV3WUhLb1pJemowQ0FRWUlLb1pJemowREFRY0RRZ0FFMVBTdzY0enY4VlZGc01senVKSkZoMkdSOEI5a3ZJdG4KS0N1WHEvNE1kajdRU3FDRWxETVNGSmhxRDZWMVRmenlLU01BeDZBSytrMkd2QVJ5SVdsd1VxTlRNRkV3SFFZRApWUjBPQkJZRUZITXFLbXNSZ2tuOW9reDlvb2hxYlJxRlVIRFhNQjhHQTFVZEl3UVlNQmFBRkhNcUttc1Jna245Cm9reDlvb2hxYlJxRlVIRFhNQThHQTFVZEV3RUIvd1FGTUFNQkFmOHdDZ1lJS29aSXpqMEVBd0lEU0FBd1JRSWcKV0NTb3Y1WVBlSFg5WFhTTGQ5bDdKa3NZeTl3Sy9VbUdZbFNoMnZFeUxQVUNJUUNFdW91WjU5VkUwOWNoSVVucwpra1YvaVYrUXVlSTMxVlhmVEpoclhpa0l1QT09Ci0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K";

#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn metrics_pass_promtool_and_health_answers() {
    reset();
    backend(1);
    let m = Manifests::new("metrics");
    m.write(
        "web.yaml",
        &service_yaml("web", "10.96.0.1", 80, "", &["10.244.1.2"], 80),
    );

    // Before the first sync (an API that never answers): /healthz 503.
    // The CA is a throwaway self-signed certificate: the client needs some
    // trust root to build, and the guest has no system store.
    std::fs::write(
        "/tmp/unreachable.kubeconfig",
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:1', \
             certificate-authority-data: {TEST_CA}}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\n\
             users:\n- name: u\n  user: {{}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let mut waiting = std::process::Command::new(agent_bin())
        .args([
            "run",
            "--kubeconfig",
            "/tmp/unreachable.kubeconfig",
            "--hostname-override",
            "node-1",
        ])
        .args([
            "--healthz-bind-address",
            "127.0.0.1:10266",
            "--metrics-bind-address",
            "",
        ])
        .stderr(std::fs::File::create("/tmp/unreachable.log").unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while http_status("127.0.0.1", 10266, "/healthz") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "healthz does not answer; agent log:\n{}",
            std::fs::read_to_string("/tmp/unreachable.log").unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Not ready, but alive: the API server not answering is no reason to
    // restart the agent (kube-proxy's /livez: healthy while starting up).
    assert_eq!(http_status("127.0.0.1", 10266, "/healthz"), 503);
    assert_eq!(http_status("127.0.0.1", 10266, "/livez"), 200);
    let _ = waiting.kill();
    let _ = waiting.wait();

    let agent = Agent::start(&m.dir, &["--ipvs-sync-period", "2s"]);
    agent.wait_healthy();
    assert_eq!(http_status("127.0.0.1", 10256, "/livez"), 200);
    let body = http_body("127.0.0.1", 10256, "/healthz");
    assert!(body.contains("lastUpdated"), "{body}");
    // A change, so the programming-latency and change counters move.
    m.write(
        "web.yaml",
        &service_yaml(
            "web",
            "10.96.0.1",
            80,
            "",
            &["10.244.1.2", "10.244.1.3"],
            80,
        ),
    );
    wait_until("second real server", Duration::from_secs(10), || {
        real_servers("-t", "10.96.0.1:80").len() == 2
    });

    let metrics = http_body("127.0.0.1", 10249, "/metrics");
    for name in [
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
        "kubeproxy_sync_proxy_rules_endpoint_changes_total",
        "kubeproxy_sync_proxy_rules_service_changes_total",
        "kubeproxy_network_programming_duration_seconds_bucket",
        "kube_ipvs_netlink_operations_total{op=\"new_dest\",result=\"success\"}",
        "kube_ipvs_virtual_servers 1",
        "kube_ipvs_real_servers 2",
        "kube_ipvs_build_info",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(
        !metrics.contains("kube_ipvs_sync_errors_total{"),
        "no operation failed:\n{metrics}"
    );
    std::fs::write("/tmp/metrics.txt", &metrics).unwrap();
    let promtool = ["/work/promtool", "promtool"]
        .into_iter()
        .find(|p| try_sh(&format!("command -v {p}")).0)
        .expect("promtool in the VM (hack/test copies it in)");
    let (ok, out) = try_sh(&format!("{promtool} check metrics < /tmp/metrics.txt 2>&1"));
    assert!(ok, "promtool check metrics:\n{out}");
    drop(agent);
    reset();
}

/// Issue 16: the agent finds its nftables table flushed at the next full
/// resync, logs and counts it, and writes it whole again; an endpoint
/// change after that goes to the kernel as set elements only.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn a_flushed_nftables_table_is_back_after_the_next_full_resync() {
    reset();
    let m = Manifests::new("repair");
    m.write(
        "web.yaml",
        &service_yaml("web", "10.96.0.1", 80, "", &["10.244.1.2"], 80),
    );
    // The log file is the test process's, appended to by every agent.
    let log_path = format!("/tmp/agent-{}.log", std::process::id());
    let start = std::fs::read_to_string(&log_path).map_or(0, |l| l.len());
    let agent = Agent::start(&m.dir, &["--ipvs-sync-period", "2s"]);
    agent.wait_ready();
    sh("nft flush ruleset");
    wait_until("the table back", Duration::from_secs(20), || {
        try_sh("nft list set inet kube-ipvs vips-v4")
            .1
            .contains("10.96.0.1")
    });
    let metrics = http_body("127.0.0.1", 10249, "/metrics");
    assert!(
        metrics.contains("kube_ipvs_repairs_total{what=\"nftables_table\"} 1"),
        "{metrics}"
    );
    m.write(
        "web.yaml",
        &service_yaml(
            "web",
            "10.96.0.1",
            80,
            "",
            &["10.244.1.2", "10.244.1.3"],
            80,
        ),
    );
    wait_until(
        "the new endpoint's element",
        Duration::from_secs(10),
        || {
            try_sh("nft list set inet kube-ipvs hairpin-v4")
                .1
                .contains("10.244.1.3")
        },
    );
    let log = agent.log()[start..].to_owned();
    assert_eq!(
        log.matches("nftables table written whole").count(),
        2,
        "at start-up and after the flush only:\n{log}"
    );
    assert_eq!(
        log.matches("the nftables table differs from what was written")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("nftables set elements updated"), "{log}");
    drop(agent);
    reset();
}

/// The modules `hack/vm-run` loads at boot, loaded again after a test that
/// unloaded them (a scheduler this kernel lacks is skipped).
const BOOT_IPVS_MODULES: &str = "ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc \
     ip_vs_lblcr ip_vs_dh ip_vs_sh ip_vs_sed ip_vs_nq ip_vs_mh ip_vs_fo ip_vs_ovf ip_vs_twos";

/// Reloads the boot modules when dropped, so the tests after this one find
/// the kernel as the VM booted it, whatever happened here.
struct ReloadIpvsModules;

impl Drop for ReloadIpvsModules {
    fn drop(&mut self) {
        let _ = try_sh(&format!(
            "for m in {BOOT_IPVS_MODULES}; do modprobe $m 2>/dev/null; done; true"
        ));
    }
}

/// The loaded modules whose name starts with `ip_vs`.
fn ip_vs_modules() -> Vec<String> {
    std::fs::read_to_string("/proc/modules")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| m.starts_with("ip_vs"))
        .map(str::to_owned)
        .collect()
}

/// A node that never ran IPVS: no `ip_vs*` module is loaded, so
/// `/proc/sys/net/ipv4/vs` does not exist yet. `run --once` must open the
/// IPVS family first (the kernel loads `ip_vs` for it), then write the
/// sysctls, and its Services need their schedulers' modules, which nothing
/// loaded beforehand.
#[test]
#[ignore = "needs the IPVS kernel: run by hack/test in the VM"]
fn first_start_without_ip_vs_modules_programs_the_services() {
    reset();
    let _reload = ReloadIpvsModules;
    // Schedulers first, then ip_vs; a network namespace deleted a moment
    // ago may still hold a scheduler until the kernel has cleaned it up.
    wait_until(
        "every ip_vs module unloaded",
        Duration::from_secs(20),
        || {
            for module in ip_vs_modules().iter().filter(|m| *m != "ip_vs") {
                let _ = try_sh(&format!("rmmod {module}"));
            }
            let _ = try_sh("rmmod ip_vs");
            ip_vs_modules().is_empty()
        },
    );
    assert!(
        !std::path::Path::new("/proc/sys/net/ipv4/vs").exists(),
        "the IPVS sysctls exist only with ip_vs loaded"
    );

    let m = Manifests::new("first-start");
    m.write(
        "web.yaml",
        &service_yaml(
            "web",
            "10.96.0.1",
            80,
            "",
            &["10.244.1.2", "10.244.1.3"],
            8080,
        ),
    );
    m.write(
        "cache.yaml",
        &service_yaml(
            "cache",
            "10.96.0.2",
            11211,
            "kube-ipvs.io/scheduler: sh",
            &["10.244.2.2"],
            11211,
        ),
    );
    let (ok, out) = try_sh(&format!(
        "{} run --once --from-dir {} --hostname-override node-1 2>/tmp/first-start.log",
        agent_bin(),
        m.dir.display()
    ));
    let log = std::fs::read_to_string("/tmp/first-start.log").unwrap_or_default();
    assert!(ok, "run --once failed:\n{out}\n{log}");
    let report: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["failures"], serde_json::json!([]), "{report}\n{log}");
    assert_eq!(report["virtual_servers"], 2, "{report}");
    assert_eq!(report["real_servers"], 3, "{report}");

    let listing = sh("ipvsadm -Ln");
    assert!(listing.contains("TCP  10.96.0.1:80 rr"), "{listing}");
    assert!(listing.contains("TCP  10.96.0.2:11211 sh"), "{listing}");
    assert_eq!(real_servers("-t", "10.96.0.1:80").len(), 2, "{listing}");
    let loaded = ip_vs_modules();
    for module in ["ip_vs", "ip_vs_rr", "ip_vs_sh"] {
        assert!(
            loaded.iter().any(|m| m == module),
            "{module} not loaded: {loaded:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/vs/conntrack")
            .unwrap()
            .trim(),
        "1"
    );
    reset();
}
