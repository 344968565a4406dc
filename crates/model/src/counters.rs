//! Traffic counters and connection counts, as a dump reports them next to
//! the configuration.
//!
//! They are kept out of [`VirtualServer`] and [`RealServer`] so that a
//! packet counter never looks like a change.

use crate::real_server::RealServer;
use crate::virtual_server::VirtualServer;

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
