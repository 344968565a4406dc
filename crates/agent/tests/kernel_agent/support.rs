//! Shell helpers for the agent's kernel tests (run as root inside the VM).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `script` under bash; panics with its output when it fails.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("running bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `script` under bash and returns whether it succeeded, with stdout.
pub fn try_sh(script: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("running bash");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The agent binary: `KUBE_IPVS_BIN`, or `kube-ipvs` on PATH.
pub fn agent_bin() -> String {
    std::env::var("KUBE_IPVS_BIN").unwrap_or_else(|_| "kube-ipvs".to_owned())
}

/// Polls `f` every 100 ms until it is true; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Empties the IPVS table and removes what earlier tests left.
pub fn reset() {
    let _ = try_sh(
        "pkill -x kube-ipvs; pkill -f 'busybox n[c]'; sleep 0.2; ipvsadm -C; ip link del kube-ipvs0 2>/dev/null; \
         for ns in $(ip netns list | cut -d' ' -f1); do ip netns pids $ns | xargs -r kill 2>/dev/null; ip netns del $ns; done; \
         for l in $(ip -o link show type veth | cut -d: -f2 | cut -d@ -f1); do ip link del $l; done; \
         ip link del lab0 2>/dev/null; true",
    );
    sh("ip link set lo up");
}

/// Stops agents and removes what they leave in the kernel (the IPVS table,
/// their dummy interfaces, the nftables table); network namespaces stay.
pub fn reset_kernel() {
    let _ = try_sh(
        "pkill -x kube-ipvs; sleep 0.2; ipvsadm -C; ip link del kube-ipvs0 2>/dev/null; \
         ip link del kube-ipvs1 2>/dev/null; nft delete table inet kube-ipvs 2>/dev/null; \
         iptables-nft -w -P FORWARD ACCEPT 2>/dev/null; iptables-nft -w -F FORWARD 2>/dev/null; true",
    );
}

/// A backend network namespace `b{n}` at 10.244.{n}.2 behind a veth pair,
/// routing back through the node, with busybox httpd answering `b{n}`.
pub fn backend(n: u8) {
    sh(&format!(
        "ip netns add b{n}
         ip link add vb{n} type veth peer name eth0 netns b{n}
         ip addr add 10.244.{n}.1/24 dev vb{n}; ip link set vb{n} up
         ip -n b{n} addr add 10.244.{n}.2/24 dev eth0
         ip -n b{n} link set lo up; ip -n b{n} link set eth0 up
         ip -n b{n} route add default via 10.244.{n}.1
         mkdir -p /srv/b{n}; echo b{n} > /srv/b{n}/index.html
         ip netns exec b{n} busybox httpd -p 80 -h /srv/b{n}"
    ));
}

/// One HTTP request to `addr:port`; the body's last line, or "" on failure.
pub fn get(addr: &str, port: u16) -> String {
    let (_, out) = try_sh(&format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 busybox nc {addr} {port} | tail -n 1"
    ));
    out.trim().to_owned()
}

/// A manifest directory the agent watches.
pub struct Manifests {
    /// Its path.
    pub dir: PathBuf,
}

impl Manifests {
    /// A fresh, empty directory.
    pub fn new(name: &str) -> Self {
        let dir = PathBuf::from("/tmp").join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Manifests { dir }
    }

    /// Writes `file` atomically (write, then rename), as editors and
    /// configuration tools do.
    pub fn write(&self, file: &str, yaml: &str) {
        let tmp = self.dir.join(format!(".{file}.tmp"));
        fs::write(&tmp, yaml).unwrap();
        fs::rename(&tmp, self.dir.join(file)).unwrap();
    }
}

/// A ClusterIP Service with one TCP port `port` → `target`, and its slice.
pub fn service_yaml(
    name: &str,
    ip: &str,
    port: u16,
    annotations: &str,
    backends: &[&str],
    target: u16,
) -> String {
    let endpoints: String = backends
        .iter()
        .map(|b| format!("  - addresses: [\"{b}\"]\n    conditions: {{ready: true}}\n"))
        .collect();
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
  annotations: {{{annotations}}}
spec:
  clusterIP: {ip}
  clusterIPs: [{ip}]
  ports:
  - name: p
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
- name: p
  port: {target}
  protocol: TCP
endpoints:
{endpoints}"
    )
}

/// A running agent; stopped with SIGTERM when dropped.
pub struct Agent {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

/// The node the kernel tests' agents run as, and where they serve metrics
/// and health.
pub const NODE_ARGS: [&str; 6] = [
    "--hostname-override",
    "node-1",
    "--metrics-bind-address",
    "127.0.0.1:10249",
    "--healthz-bind-address",
    "127.0.0.1:10256",
];

impl Agent {
    /// Starts `kube-ipvs run --from-dir dir` with `extra` flags.
    pub fn start(dir: &Path, extra: &[&str]) -> Agent {
        let mut args = NODE_ARGS.to_vec();
        args.extend_from_slice(&["--ipvs-min-sync-period", "100ms"]);
        args.extend_from_slice(extra);
        Agent::start_args(dir, &args)
    }

    /// Starts `kube-ipvs run --from-dir dir` with `args` only (no defaults).
    pub fn start_args(dir: &Path, args: &[&str]) -> Agent {
        let dir = dir.to_str().expect("a UTF-8 path");
        let mut all = vec!["--from-dir", dir];
        all.extend_from_slice(args);
        Agent::run(&all)
    }

    /// Starts `kube-ipvs run` with `args`, whatever its source.
    pub fn run(args: &[&str]) -> Agent {
        let log = PathBuf::from(format!("/tmp/agent-{}.log", std::process::id()));
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(agent_bin())
            .arg("run")
            .args(args)
            .env("RUST_LOG", "info,kube_ipvs=debug")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting kube-ipvs");
        Agent { child, log }
    }

    /// Kills the agent with SIGKILL, as a crash or the OOM killer would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `/healthz` answers 200.
    pub fn wait_healthy(&self) {
        self.wait_healthy_on(10256);
    }

    /// Waits until `/healthz` on `127.0.0.1:port` answers 200.
    pub fn wait_healthy_on(&self, port: u16) {
        wait_until("agent healthy", Duration::from_secs(60), || {
            http_status("127.0.0.1", port, "/healthz") == 200
        });
    }

    /// Waits until `/healthz` answers 200 and the agent's nftables table is
    /// in the kernel (it follows the first sync, beside the loop), so the
    /// traffic that follows meets the agent's masquerade, filters and
    /// conntrack (whose hooks the table's `ct` rules switch on).
    pub fn wait_ready(&self) {
        self.wait_ready_on(10256);
    }

    /// [`Agent::wait_ready`] with `/healthz` on `127.0.0.1:port`.
    pub fn wait_ready_on(&self, port: u16) {
        self.wait_healthy_on(port);
        wait_until(
            "the agent's nftables table",
            Duration::from_secs(30),
            || try_sh("nft list table inet kube-ipvs >/dev/null 2>&1").0,
        );
    }

    /// Stops the agent with SIGTERM and waits for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        // Once: `stop` terminates, and the drop that follows has nothing to do.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg(self.child.id().to_string())
                .status();
        }
        let _ = self.child.wait();
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// GET `path` on `addr:port`; the status code, or 0.
pub fn http_status(addr: &str, port: u16, path: &str) -> u16 {
    let (_, out) = try_sh(&format!(
        "printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | timeout 5 busybox nc {addr} {port} | head -n 1"
    ));
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// GET `path` on `addr:port`; the body.
pub fn http_body(addr: &str, port: u16, path: &str) -> String {
    let (_, out) = try_sh(&format!(
        "printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | timeout 5 busybox nc {addr} {port}"
    ));
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The real servers of `vip` as `ipvsadm -Ln` shows them: (address:port, weight, active, inactive).
pub fn real_servers(proto_flag: &str, vip: &str) -> Vec<(String, u32, u32, u32)> {
    let out = sh(&format!("ipvsadm -Ln {proto_flag} {vip}"));
    out.lines()
        .filter(|l| l.trim_start().starts_with("->") && !l.contains("RemoteAddress"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[1].to_owned(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
                f[5].parse().unwrap(),
            )
        })
        .collect()
}
