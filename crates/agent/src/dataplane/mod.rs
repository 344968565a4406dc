//! The seam between the reconciler and the kernel: one small trait, a
//! kernel implementation and an in-memory one for tests.

use std::future::Future;
use std::net::IpAddr;

use kube_ipvs_controller::{Observed, Op};
use kube_ipvs_netlink::{DumpedRealServer, VirtualServerKey};

pub mod kernel;
pub mod memory;

pub use memory::MemoryDataplane;

/// Why an operation or a dump failed, as far as the reconciler cares.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Reading the IPVS table or the dummy interface's addresses failed.
    #[error("dump failed: {0}")]
    Dump(String),
    /// Listing the node's addresses failed.
    #[error("listing node addresses failed: {0}")]
    NodeAddresses(String),
    /// One write was refused.
    #[error("{op}: {reason}")]
    Operation {
        /// The operation, as it reads in a log.
        op: String,
        /// The kernel's reason.
        reason: String,
    },
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

/// What the reconciler needs from the kernel.
pub trait Dataplane: Send {
    /// One dump of every virtual server with its real servers and one listing
    /// of the dummy interface's addresses.
    fn observe(&mut self) -> impl Future<Output = Result<Observed, DataplaneError>> + Send;

    /// The real servers, with fresh counters, of a few virtual servers
    /// (draining real servers are checked this way between full dumps).
    fn destinations(
        &mut self,
        keys: &[VirtualServerKey],
    ) -> impl Future<Output = Result<Vec<(VirtualServerKey, Vec<DumpedRealServer>)>, DataplaneError>>
           + Send;

    /// Applies `ops` in order; a failed operation does not stop the others.
    fn apply(&mut self, ops: &[Op]) -> impl Future<Output = ApplyReport> + Send;

    /// The node's local addresses that NodePorts listen on.
    fn node_addresses(
        &mut self,
    ) -> impl Future<Output = Result<Vec<IpAddr>, DataplaneError>> + Send;
}
