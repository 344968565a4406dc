//! The seam between the reconciler and the kernel: one small trait, a
//! kernel implementation and an in-memory one for tests.

use std::future::Future;
use std::io;
use std::net::IpAddr;

use kube_ipvs_controller::{Observed, Op};
use kube_ipvs_netlink::{DumpedRealServer, VirtualServer, VirtualServerKey};

pub mod kernel;
pub mod memory;
pub mod setup;

pub use memory::MemoryDataplane;

/// What failed at the kernel seam, named after the operation; the netlink
/// error (or the kernel's errno) is the source.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Dumping the IPVS table.
    #[error("dumping the IPVS table")]
    DumpIpvs(#[source] kube_ipvs_netlink::Error),
    /// Dumping the destinations of one virtual server.
    #[error("dumping the real servers of {0}")]
    DumpDestinations(VirtualServerKey, #[source] kube_ipvs_netlink::Error),
    /// Listing the dummy interface's addresses.
    #[error("listing the addresses of the dummy interface")]
    DumpAddresses(#[source] kube_ipvs_netlink::Error),
    /// Listing the node's addresses.
    #[error("listing the node's addresses")]
    NodeAddresses(#[source] kube_ipvs_netlink::Error),
    /// Checking or recreating the dummy interface.
    #[error("ensuring the dummy interface {0}")]
    Dummy(String, #[source] kube_ipvs_netlink::Error),
    /// Checking or restoring a sysctl the agent set.
    #[error("restoring sysctl {0}")]
    Sysctl(String, #[source] std::io::Error),
    /// One write was not applied; the others of its batch were.
    #[error("{op}")]
    Operation {
        /// The operation, which names the object (boxed: results of
        /// successes stay small).
        op: Box<Op>,
        /// Why.
        #[source]
        source: OperationFailure,
    },
}

/// Why one operation was not applied.
#[derive(Debug, thiserror::Error)]
pub enum OperationFailure {
    /// The kernel answered the request with an errno.
    #[error("refused by the kernel")]
    Refused(#[source] io::Error),
    /// The request failed in netlink (an address request).
    #[error(transparent)]
    Netlink(#[from] kube_ipvs_netlink::Error),
    /// The whole batch failed in netlink (sending it, or reading its
    /// acknowledgements); every operation of the batch carries the error.
    #[error("the batch failed")]
    Batch(#[source] std::sync::Arc<kube_ipvs_netlink::Error>),
    /// The operation was not sent (its batch stopped before it).
    #[error("not applied")]
    NotApplied,
}

impl DataplaneError {
    /// The failure of `op` for `source`.
    pub fn operation(op: &Op, source: impl Into<OperationFailure>) -> Self {
        DataplaneError::Operation {
            op: Box::new(op.clone()),
            source: source.into(),
        }
    }

    /// The errno of a refused operation, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DataplaneError::Operation {
                source: OperationFailure::Refused(e),
                ..
            } => e.raw_os_error(),
            _ => None,
        }
    }
}

/// A piece of the kernel's set-up that had changed under the agent and was
/// put back by [`Dataplane::repair`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repaired {
    /// The dummy interface was gone (or down) and was recreated (or set up).
    DummyInterface(String),
    /// A sysctl held another value and was set again.
    Sysctl(String),
}

impl Repaired {
    /// A label for the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Repaired::DummyInterface(_) => "dummy_interface",
            Repaired::Sysctl(_) => "sysctl",
        }
    }
}

impl std::fmt::Display for Repaired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repaired::DummyInterface(name) => write!(f, "dummy interface {name}"),
            Repaired::Sysctl(path) => write!(f, "sysctl {path}"),
        }
    }
}

/// The result of applying a list of operations: one result per operation, in
/// order, and how many `sendmsg` calls it took.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Per operation.
    pub results: Vec<Result<(), DataplaneError>>,
    /// Kernel round trips.
    pub sendmsg_calls: usize,
}

/// The kernel's virtual servers without their real servers, and the
/// addresses bound on the dummy interface.
#[derive(Clone, Debug, Default)]
pub struct VirtualServerDump {
    /// Every virtual server, owned or not.
    pub virtual_servers: Vec<VirtualServer>,
    /// The dummy interface's addresses.
    pub addresses: Vec<IpAddr>,
    /// The node's addresses ([`Dataplane::node_addresses`]) when the same
    /// listing gave them; `None` when the caller must list them itself.
    pub node_addresses: Option<Vec<IpAddr>>,
}

/// What the reconciler needs from the kernel.
pub trait Dataplane: Send {
    /// One dump of every virtual server with its real servers and one listing
    /// of the dummy interface's addresses.
    fn observe(&mut self) -> impl Future<Output = Result<Observed, DataplaneError>> + Send;

    /// One dump of the virtual servers alone (not their real servers) and
    /// one listing of the dummy interface's addresses: how a full resync
    /// begins, its real servers then dumped a part at a time with
    /// [`Dataplane::destinations`].
    fn observe_virtual_servers(
        &mut self,
    ) -> impl Future<Output = Result<VirtualServerDump, DataplaneError>> + Send;

    /// The real servers, with fresh counters, of some virtual servers (a
    /// part of a full resync, or those with draining real servers between
    /// resyncs); a virtual server the kernel does not hold has none.
    fn destinations(
        &mut self,
        keys: &[VirtualServerKey],
    ) -> impl Future<Output = Result<Vec<(VirtualServerKey, Vec<DumpedRealServer>)>, DataplaneError>>
           + Send;

    /// Applies `ops` in order; a failed operation does not stop the others.
    fn apply(&mut self, ops: &[Op]) -> impl Future<Output = ApplyReport> + Send;

    /// Checks the kernel's set-up the dataplane depends on (the dummy
    /// interface, the sysctls set at start) and puts back what changed;
    /// each full resync calls it before its dump.
    fn repair(&mut self) -> impl Future<Output = Result<Vec<Repaired>, DataplaneError>> + Send;

    /// The node's local addresses that NodePorts listen on.
    fn node_addresses(
        &mut self,
    ) -> impl Future<Output = Result<Vec<IpAddr>, DataplaneError>> + Send;
}
