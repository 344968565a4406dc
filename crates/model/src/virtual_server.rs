//! Virtual services: what identifies one, and what `set service` can change
//! in place.

use std::fmt;
use std::net::IpAddr;

use crate::protocol::{AddressFamily, Protocol};
use crate::scheduler::Scheduler;

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
