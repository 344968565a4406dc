//! Real servers (destinations): what identifies one within its virtual
//! service, how IPVS forwards to it, and what `set dest` can change in place.

use std::fmt;
use std::net::IpAddr;

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
    Other(u8),
}

impl ForwardMethod {
    /// The kernel's value.
    pub fn number(self) -> u32 {
        match self {
            ForwardMethod::Masquerade => 0,
            ForwardMethod::Local => 1,
            ForwardMethod::Tunnel => 2,
            ForwardMethod::DirectRoute => 3,
            ForwardMethod::Other(n) => u32::from(n),
        }
    }

    /// The method for a kernel value (only the forward bits are read).
    pub fn from_number(n: u32) -> Self {
        // The low byte's forward bits: the value fits the byte.
        match n.to_le_bytes()[0] & 0x7 {
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
