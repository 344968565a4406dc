//! The conformance suite's lab: a node, an outside client, and pods whose
//! servers answer with their name and the client address they see.
//!
//! ```text
//!  client   192.168.100.2 ─veth─ 192.168.100.1 ┐
//!  client2  192.168.101.2 ─veth─ 192.168.101.1 ├ node (root ns), agent node-1
//!  pod p1   10.244.1.2 ─────veth─ 10.244.1.1    │ (EndpointSlices say which
//!  pod p2   10.244.2.2 ─────veth─ 10.244.2.1    │  node each pod is on)
//!  pod p3   10.244.3.2 ─────veth─ 10.244.3.1    ┘
//! ```
//!
//! Every pod routes everything through the node, as a pod network does, so
//! a reply to an outside client that was not masqueraded goes back through
//! the node (and IPVS un-NATs it there). Each pod serves TCP and UDP on
//! [`PORTS`]: a connection or datagram is answered with `"<pod> <client
//! address>"`, which is what the backend saw.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::sh;

/// The node's address towards `client`.
pub const NODE: &str = "192.168.100.1";
/// The outside client.
pub const CLIENT: &str = "192.168.100.2";
/// A second outside client, on another network.
pub const CLIENT2: &str = "192.168.101.2";
/// The pods: (name, address).
pub const PODS: [(&str, &str); 3] = [
    ("p1", "10.244.1.2"),
    ("p2", "10.244.2.2"),
    ("p3", "10.244.3.2"),
];
/// The ports every pod serves, over TCP and UDP.
pub const PORTS: [u16; 3] = [8080, 10000, 20000];
/// How long a client waits for an answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Parses an address.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Builds the lab once per test process (the tests run one at a time, as
/// root, in the VM); later calls return at once.
pub fn lab() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        crate::support::reset();
        sh(r#"
            set -e
            sysctl -qw net.ipv4.ip_forward=1
            peer() { # ns host-addr ns-addr
                ip netns add $1
                ip link add $1-host type veth peer name eth0 netns $1
                ip addr add $2/24 dev $1-host
                ip link set $1-host up
                ip -n $1 addr add $3/24 dev eth0
                ip -n $1 link set eth0 up
                ip -n $1 link set lo up
                ip -n $1 route add default via $2
            }
            peer client 192.168.100.1 192.168.100.2
            peer client2 192.168.101.1 192.168.101.2
            peer p1 10.244.1.1 10.244.1.2
            peer p2 10.244.2.1 10.244.2.2
            peer p3 10.244.3.1 10.244.3.2
        "#);
        for (pod, _) in PODS {
            serve(pod);
        }
    });
}

/// Runs `f` on a thread inside network namespace `ns` ("" for the node's).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
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

/// A listener of the node's own on `port` (all addresses), answering as
/// the pods do with `"node <client address>"`. Started once per port.
pub fn node_listener(port: u16) {
    static STARTED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut started = STARTED.lock().unwrap();
    if started.contains(&port) {
        return;
    }
    let tcp = TcpListener::bind(("0.0.0.0", port)).unwrap();
    std::thread::spawn(move || {
        for mut stream in tcp.incoming().flatten() {
            let peer = stream.peer_addr().map(|p| p.ip().to_string());
            let _ = stream.write_all(format!("node {}", peer.unwrap_or_default()).as_bytes());
        }
    });
    started.push(port);
}

fn serve(pod: &'static str) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(pod);
        for port in PORTS {
            let tcp = TcpListener::bind(("0.0.0.0", port)).unwrap();
            let udp = UdpSocket::bind(("0.0.0.0", port)).unwrap();
            std::thread::spawn(move || {
                for mut stream in tcp.incoming().flatten() {
                    let peer = stream.peer_addr().map(|p| p.ip().to_string());
                    let _ =
                        stream.write_all(format!("{pod} {}", peer.unwrap_or_default()).as_bytes());
                }
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{pod} {}", peer.ip()).as_bytes(), peer);
                }
            });
        }
        tx.send(()).unwrap();
    });
    rx.recv().unwrap();
}

/// What a client got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A pod answered, and saw the client at this address.
    From {
        /// The pod.
        pod: String,
        /// The client address the pod saw.
        client: IpAddr,
    },
    /// Refused (RST or ICMP unreachable).
    Refused,
    /// Nothing came back in time.
    TimedOut,
    /// Something else went wrong.
    Failed(String),
}

impl Answer {
    fn parse(text: &str) -> Answer {
        match text.split_once(' ') {
            Some((pod, client)) => match client.trim().parse() {
                Ok(client) => Answer::From {
                    pod: pod.to_owned(),
                    client,
                },
                Err(_) => Answer::Failed(format!("unexpected answer {text:?}")),
            },
            None => Answer::Failed(format!("unexpected answer {text:?}")),
        }
    }

    /// The pod that answered, if one did.
    pub fn pod(&self) -> Option<&str> {
        match self {
            Answer::From { pod, .. } => Some(pod),
            _ => None,
        }
    }
}

/// One TCP connection from namespace `ns` to `to:port`.
pub fn tcp(ns: &str, to: &str, port: u16) -> Answer {
    let addr = SocketAddr::new(ip(to), port);
    in_netns(ns, || match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Ok(mut s) => {
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut text = String::new();
            match s.read_to_string(&mut text) {
                Ok(_) => Answer::parse(&text),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Answer::TimedOut,
                Err(e) => Answer::Failed(e.to_string()),
            }
        }
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Answer::Refused,
        Err(e) if e.kind() == ErrorKind::TimedOut => Answer::TimedOut,
        Err(e) => Answer::Failed(e.to_string()),
    })
}

/// One UDP datagram from namespace `ns` to `to:port`, from source port
/// `from_port` (0: any), and its answer.
pub fn udp(ns: &str, from_port: u16, to: &str, port: u16) -> Answer {
    let addr = SocketAddr::new(ip(to), port);
    in_netns(ns, || {
        let socket = UdpSocket::bind(("0.0.0.0", from_port)).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        socket.send_to(b"hello", addr).unwrap();
        let mut buf = [0u8; 512];
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => Answer::parse(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Answer::TimedOut
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Answer::Refused,
            Err(e) => Answer::Failed(e.to_string()),
        }
    })
}

/// `n` TCP connections; how many each pod answered (others by outcome).
pub fn tally(ns: &str, to: &str, port: u16, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let key = match tcp(ns, to, port) {
            Answer::From { pod, .. } => pod,
            other => format!("{other:?}"),
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}
