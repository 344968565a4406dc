//! The typed IPVS model: what a virtual server and a real server are,
//! independent of how they are encoded on the wire.
//!
//! Identity and configuration (what a diff compares) are kept apart from
//! counters (what a dump also reports), so that a packet counter never looks
//! like a change.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A transport protocol IPVS balances (`IPVS_SVC_ATTR_PROTOCOL`, an IPPROTO number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// `IPPROTO_TCP` (6).
    Tcp,
    /// `IPPROTO_UDP` (17).
    Udp,
    /// `IPPROTO_SCTP` (132).
    Sctp,
    /// Any other protocol number the kernel reports.
    Other(u16),
}

impl Protocol {
    /// The IPPROTO number.
    pub fn number(self) -> u16 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Other(n) => n,
        }
    }

    /// The protocol for an IPPROTO number.
    pub fn from_number(n: u16) -> Self {
        match n {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            n => Protocol::Other(n),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("TCP"),
            Protocol::Udp => f.write_str("UDP"),
            Protocol::Sctp => f.write_str("SCTP"),
            Protocol::Other(n) => write!(f, "proto-{n}"),
        }
    }
}

/// An address family (`AF_INET` or `AF_INET6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressFamily {
    /// `AF_INET` (2).
    Inet,
    /// `AF_INET6` (10).
    Inet6,
}

impl AddressFamily {
    /// The family of an address.
    pub fn of(address: &IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        }
    }

    /// The kernel's `AF_*` number.
    pub fn number(self) -> u16 {
        match self {
            AddressFamily::Inet => 2,
            AddressFamily::Inet6 => 10,
        }
    }

    /// The family for a kernel `AF_*` number, if it is one IPVS supports.
    pub fn from_number(n: u16) -> Option<Self> {
        match n {
            2 => Some(AddressFamily::Inet),
            10 => Some(AddressFamily::Inet6),
            _ => None,
        }
    }

    /// The longest prefix of the family: 32 or 128.
    pub fn max_prefix(self) -> u8 {
        match self {
            AddressFamily::Inet => 32,
            AddressFamily::Inet6 => 128,
        }
    }
}

/// What identifies an IPVS virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VirtualServerKey {
    /// A service on an address, port and protocol: the only kind Services map to.
    Inet {
        /// The transport protocol.
        protocol: Protocol,
        /// The virtual IP.
        address: IpAddr,
        /// The virtual port.
        port: u16,
    },
    /// A firewall-mark service (`ipvsadm -f`).
    FirewallMark {
        /// Which family the mark applies to.
        family: AddressFamily,
        /// The mark.
        mark: u32,
    },
}

impl VirtualServerKey {
    /// A service on `address:port` for `protocol`.
    pub fn inet(protocol: Protocol, address: IpAddr, port: u16) -> Self {
        VirtualServerKey::Inet {
            protocol,
            address,
            port,
        }
    }

    /// The address family of the service.
    pub fn family(&self) -> AddressFamily {
        match self {
            VirtualServerKey::Inet { address, .. } => AddressFamily::of(address),
            VirtualServerKey::FirewallMark { family, .. } => *family,
        }
    }

    /// The virtual IP, for address-based services.
    pub fn address(&self) -> Option<IpAddr> {
        match self {
            VirtualServerKey::Inet { address, .. } => Some(*address),
            VirtualServerKey::FirewallMark { .. } => None,
        }
    }
}

impl fmt::Display for VirtualServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VirtualServerKey::Inet {
                protocol,
                address: IpAddr::V4(a),
                port,
            } => write!(f, "{protocol} {a}:{port}"),
            VirtualServerKey::Inet {
                protocol,
                address: IpAddr::V6(a),
                port,
            } => write!(f, "{protocol} [{a}]:{port}"),
            VirtualServerKey::FirewallMark { family, mark } => {
                write!(
                    f,
                    "FWM {mark} {}",
                    if *family == AddressFamily::Inet {
                        "IPv4"
                    } else {
                        "IPv6"
                    }
                )
            }
        }
    }
}

/// An IPVS scheduler (`IPVS_SVC_ATTR_SCHED_NAME`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Scheduler {
    /// Round robin.
    #[default]
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection.
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Maglev hashing.
    Mh,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Power of two random choices.
    Twos,
    /// A scheduler this crate does not know by name.
    Other(String),
}

impl Scheduler {
    /// Every scheduler this crate knows by name.
    pub const KNOWN: [Scheduler; 14] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Lblc,
        Scheduler::Lblcr,
        Scheduler::Dh,
        Scheduler::Sh,
        Scheduler::Sed,
        Scheduler::Nq,
        Scheduler::Mh,
        Scheduler::Fo,
        Scheduler::Ovf,
        Scheduler::Twos,
    ];

    /// The kernel's name of the scheduler.
    pub fn name(&self) -> &str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Lblc => "lblc",
            Scheduler::Lblcr => "lblcr",
            Scheduler::Dh => "dh",
            Scheduler::Sh => "sh",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Mh => "mh",
            Scheduler::Fo => "fo",
            Scheduler::Ovf => "ovf",
            Scheduler::Twos => "twos",
            Scheduler::Other(name) => name,
        }
    }

    /// The known scheduler of that name, or `None`.
    pub fn known(name: &str) -> Option<Self> {
        Self::KNOWN.into_iter().find(|s| s.name() == name)
    }

    /// Whether the `sched1`/`sched2` flags mean something for this scheduler.
    pub fn takes_flags(&self) -> bool {
        matches!(self, Scheduler::Sh | Scheduler::Mh)
    }
}

impl FromStr for Scheduler {
    type Err = std::convert::Infallible;

    /// Never fails: an unknown name becomes [`Scheduler::Other`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::known(s).unwrap_or_else(|| Scheduler::Other(s.to_owned())))
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Virtual service flags (`IP_VS_SVC_F_*`, carried in `IPVS_SVC_ATTR_FLAGS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    /// `IP_VS_SVC_F_PERSISTENT`: persistent port.
    pub const PERSISTENT: ServiceFlags = ServiceFlags(0x0001);
    /// `IP_VS_SVC_F_HASHED`: set by the kernel on every hashed service; never
    /// set by a client, and ignored when comparing.
    pub const HASHED: ServiceFlags = ServiceFlags(0x0002);
    /// `IP_VS_SVC_F_ONEPACKET`: one-packet scheduling (UDP).
    pub const ONEPACKET: ServiceFlags = ServiceFlags(0x0004);
    /// `IP_VS_SVC_F_SCHED1`: `sh-fallback` for sh, `mh-fallback` for mh.
    pub const SCHED1: ServiceFlags = ServiceFlags(0x0008);
    /// `IP_VS_SVC_F_SCHED2`: `sh-port` for sh, `mh-port` for mh.
    pub const SCHED2: ServiceFlags = ServiceFlags(0x0010);
    /// `IP_VS_SVC_F_SCHED3`: unused by the kernel's schedulers today.
    pub const SCHED3: ServiceFlags = ServiceFlags(0x0020);

    /// No flag.
    pub const fn empty() -> Self {
        ServiceFlags(0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: ServiceFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags a client sets, without kernel-internal bits such as `HASHED`.
    pub const fn configurable(self) -> Self {
        ServiceFlags(self.0 & !Self::HASHED.0)
    }

    /// The named scheduler flags, as `ipvsadm` spells them for `scheduler`
    /// (`sh-fallback`, `sh-port`, `mh-fallback`, `mh-port`, `flag-1`...).
    pub fn scheduler_flag_names(self, scheduler: &Scheduler) -> Vec<&'static str> {
        let prefix = match scheduler {
            Scheduler::Sh => Some(("sh-fallback", "sh-port")),
            Scheduler::Mh => Some(("mh-fallback", "mh-port")),
            _ => None,
        };
        let mut names = Vec::new();
        if self.contains(Self::SCHED1) {
            names.push(prefix.map_or("flag-1", |p| p.0));
        }
        if self.contains(Self::SCHED2) {
            names.push(prefix.map_or("flag-2", |p| p.1));
        }
        if self.contains(Self::SCHED3) {
            names.push("flag-3");
        }
        names
    }

    /// The flag a scheduler-flag name stands for, for `scheduler`.
    pub fn from_scheduler_flag_name(name: &str, scheduler: &Scheduler) -> Option<Self> {
        match (name, scheduler) {
            ("sh-fallback", Scheduler::Sh) | ("mh-fallback", Scheduler::Mh) => Some(Self::SCHED1),
            ("sh-port", Scheduler::Sh) | ("mh-port", Scheduler::Mh) => Some(Self::SCHED2),
            ("flag-1", _) => Some(Self::SCHED1),
            ("flag-2", _) => Some(Self::SCHED2),
            ("flag-3", _) => Some(Self::SCHED3),
            _ => None,
        }
    }
}

impl std::ops::BitOr for ServiceFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        ServiceFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ServiceFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// The configuration of a virtual service: its identity plus what `set
/// service` can change in place.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VirtualServer {
    /// What identifies the service.
    pub key: VirtualServerKey,
    /// The scheduler.
    pub scheduler: Scheduler,
    /// Flags, without the kernel-internal `HASHED` bit.
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (`IPVS_SVC_ATTR_TIMEOUT`); 0 when not persistent.
    pub timeout: u32,
    /// Persistence granularity as a prefix length (`IPVS_SVC_ATTR_NETMASK`:
    /// the kernel carries a dotted mask for IPv4 and a prefix length for IPv6).
    pub netmask: u8,
    /// Persistence engine name (`IPVS_SVC_ATTR_PE_NAME`, e.g. "sip"), if any.
    pub persistence_engine: Option<String>,
}

impl VirtualServer {
    /// A non-persistent service with `scheduler` and no flags.
    pub fn new(key: VirtualServerKey, scheduler: Scheduler) -> Self {
        VirtualServer {
            netmask: key.family().max_prefix(),
            key,
            scheduler,
            flags: ServiceFlags::empty(),
            timeout: 0,
            persistence_engine: None,
        }
    }

    /// Makes the service persistent for `timeout` seconds per client address.
    pub fn persistent(mut self, timeout: u32) -> Self {
        self.flags |= ServiceFlags::PERSISTENT;
        self.timeout = timeout;
        self
    }
}

/// How IPVS forwards to a real server (`IP_VS_CONN_F_FWD_MASK` of
/// `IPVS_DEST_ATTR_FWD_METHOD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ForwardMethod {
    /// `IP_VS_CONN_F_MASQ` (0): NAT.
    #[default]
    Masquerade,
    /// `IP_VS_CONN_F_LOCALNODE` (1): deliver locally.
    Local,
    /// `IP_VS_CONN_F_TUNNEL` (2): IP-in-IP tunnel.
    Tunnel,
    /// `IP_VS_CONN_F_DROUTE` (3): direct routing.
    DirectRoute,
    /// `IP_VS_CONN_F_BYPASS` (4) or anything else.
    Other(u32),
}

impl ForwardMethod {
    /// The kernel's value.
    pub fn number(self) -> u32 {
        match self {
            ForwardMethod::Masquerade => 0,
            ForwardMethod::Local => 1,
            ForwardMethod::Tunnel => 2,
            ForwardMethod::DirectRoute => 3,
            ForwardMethod::Other(n) => n,
        }
    }

    /// The method for a kernel value (only the forward bits are read).
    pub fn from_number(n: u32) -> Self {
        match n & 0x7 {
            0 => ForwardMethod::Masquerade,
            1 => ForwardMethod::Local,
            2 => ForwardMethod::Tunnel,
            3 => ForwardMethod::DirectRoute,
            other => ForwardMethod::Other(other),
        }
    }

    /// The name used in the CLI's output: masq, local, tunnel, route.
    pub fn name(self) -> &'static str {
        match self {
            ForwardMethod::Masquerade => "masq",
            ForwardMethod::Local => "local",
            ForwardMethod::Tunnel => "tunnel",
            ForwardMethod::DirectRoute => "route",
            ForwardMethod::Other(_) => "other",
        }
    }
}

/// What identifies a real server within its virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RealServerKey {
    /// The real server's address.
    pub address: IpAddr,
    /// The real server's port.
    pub port: u16,
}

impl fmt::Display for RealServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// The configuration of a real server (destination): its identity plus what
/// `set dest` can change in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RealServer {
    /// What identifies the real server.
    pub key: RealServerKey,
    /// Forwarding method.
    pub forward: ForwardMethod,
    /// Weight; 0 takes it out of rotation without breaking its connections.
    pub weight: u32,
    /// Upper connection threshold (0: none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0: none).
    pub lower_threshold: u32,
}

impl RealServer {
    /// A masqueraded real server with weight 1 and no thresholds.
    pub fn new(address: IpAddr, port: u16) -> Self {
        RealServer {
            key: RealServerKey { address, port },
            forward: ForwardMethod::Masquerade,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }
}

/// Traffic counters of a service or destination (`IPVS_*_ATTR_STATS64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Connections scheduled.
    pub connections: u64,
    /// Incoming packets.
    pub packets_in: u64,
    /// Outgoing packets.
    pub packets_out: u64,
    /// Incoming bytes.
    pub bytes_in: u64,
    /// Outgoing bytes.
    pub bytes_out: u64,
    /// Connection rate (per second).
    pub cps: u64,
    /// Incoming packet rate.
    pub pps_in: u64,
    /// Outgoing packet rate.
    pub pps_out: u64,
    /// Incoming byte rate.
    pub bps_in: u64,
    /// Outgoing byte rate.
    pub bps_out: u64,
}

/// Connection counts and traffic of a real server, as a dump reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RealServerCounters {
    /// Active (established) connections.
    pub active_connections: u32,
    /// Inactive connections.
    pub inactive_connections: u32,
    /// Persistent connection templates.
    pub persistent_connections: u32,
    /// Traffic counters.
    pub stats: Stats,
}

/// A virtual service as a dump reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedVirtualServer {
    /// Its configuration.
    pub service: VirtualServer,
    /// Its traffic counters.
    pub stats: Stats,
}

/// A real server as a dump reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpedRealServer {
    /// Its configuration.
    pub server: RealServer,
    /// Its counters.
    pub counters: RealServerCounters,
}

/// A virtual service with its real servers, as a full dump reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedService {
    /// The service and its counters.
    pub service: DumpedVirtualServer,
    /// Its real servers.
    pub destinations: Vec<DumpedRealServer>,
}

/// The global IPVS connection timeouts (`ipvsadm --set`), in seconds; in a
/// request, 0 leaves a timeout unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp: u32,
    /// TCP connections after a FIN.
    pub tcp_fin: u32,
    /// UDP "connections".
    pub udp: u32,
}

/// What `IPVS_CMD_GET_INFO` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpvsInfo {
    /// `IP_VS_VERSION_CODE`, e.g. `0x010201`.
    pub version: u32,
    /// Size of the connection hash table.
    pub connection_table_size: u32,
}

impl IpvsInfo {
    /// The version as `ipvsadm` prints it ("1.2.1").
    pub fn version_string(&self) -> String {
        let v = self.version;
        format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
    }
}
