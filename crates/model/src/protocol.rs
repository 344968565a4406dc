//! Transport protocols and address families, with the kernel's numbers.

use std::fmt;
use std::net::IpAddr;

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
