//! The typed IPVS model: what a virtual server and a real server are,
//! independent of how they are encoded on the wire, and the write
//! operations a batch applies. Sans-IO: plain data over `std`, shared by the
//! pure controller and the netlink crate that talks to the kernel.
//!
//! Identity and configuration (what a diff compares) are kept apart from
//! counters (what a dump also reports), so that a packet counter never looks
//! like a change.
//!
//! - [`protocol`] holds [`Protocol`] and [`AddressFamily`].
//! - [`scheduler`] holds [`Scheduler`].
//! - [`virtual_server`] holds [`VirtualServerKey`], [`VirtualServer`] and
//!   its [`ServiceFlags`].
//! - [`real_server`] holds [`RealServerKey`], [`RealServer`] and its
//!   [`ForwardMethod`].
//! - [`counters`] holds [`Stats`], [`RealServerCounters`] and the `Dumped*`
//!   pairs of configuration and counters a dump reports.
//! - [`global`] holds [`Timeouts`] and [`IpvsInfo`], IPVS as a whole.
//! - [`operation`] holds [`Operation`], one IPVS write, and its
//!   [`OperationKind`].

pub mod counters;
pub mod global;
pub mod operation;
pub mod protocol;
pub mod real_server;
pub mod scheduler;
pub mod virtual_server;

pub use counters::{
    DumpedRealServer, DumpedService, DumpedVirtualServer, RealServerCounters, Stats,
};
pub use global::{IpvsInfo, Timeouts};
pub use operation::{Operation, OperationKind};
pub use protocol::{AddressFamily, Protocol};
pub use real_server::{ForwardMethod, RealServer, RealServerKey};
pub use scheduler::Scheduler;
pub use virtual_server::{ServiceFlags, VirtualServer, VirtualServerKey};
