//! The crate's error type, and the per-operation error a batch reports.

use std::io;
use std::net::IpAddr;

use kube_ipvs_model::{Operation, VirtualServerKey};

use crate::packet::conntrack::FlowTuple;

/// What failed, named after the operation. The source is the socket error,
/// the kernel's errno (as an [`io::Error`] with `raw_os_error`), or
/// `InvalidData` wrapping a decode error for a malformed reply.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening or configuring a netlink socket.
    #[error("opening a {protocol} netlink socket")]
    Open {
        /// "generic" or "route".
        protocol: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Resolving the `IPVS` generic-netlink family id.
    #[error("resolving the IPVS generic netlink family (is the ip_vs module loaded?)")]
    ResolveFamily(#[source] io::Error),
    /// Sending a batch or reading its acknowledgements (the per-operation
    /// results are in [`crate::BatchReport`]; this is the transport failing).
    #[error("applying a batch of IPVS operations")]
    Apply(#[source] io::Error),
    /// Dumping the virtual services.
    #[error("dumping IPVS services")]
    DumpServices(#[source] io::Error),
    /// Dumping the destinations of a service.
    #[error("dumping the destinations of {service}")]
    DumpDestinations {
        /// The service.
        service: VirtualServerKey,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `IPVS_CMD_GET_INFO`.
    #[error("getting IPVS info")]
    GetInfo(#[source] io::Error),
    /// `IPVS_CMD_GET_CONFIG`.
    #[error("getting IPVS timeouts")]
    GetTimeouts(#[source] io::Error),
    /// `IPVS_CMD_SET_CONFIG`.
    #[error("setting IPVS timeouts")]
    SetTimeouts(#[source] io::Error),
    /// `IPVS_CMD_FLUSH`.
    #[error("flushing IPVS")]
    Flush(#[source] io::Error),
    /// Looking a link up by name.
    #[error("looking up link {name}")]
    GetLink {
        /// The link's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Creating or setting up the dummy link.
    #[error("ensuring dummy link {name}")]
    EnsureDummy {
        /// The link's name.
        name: String,
        /// Why; `AlreadyExists` when a link of another kind has the name.
        #[source]
        source: io::Error,
    },
    /// Deleting a link.
    #[error("deleting link {name}")]
    DeleteLink {
        /// The link's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Listing addresses.
    #[error("listing addresses")]
    ListAddresses(#[source] io::Error),
    /// Adding an address (the whole batch failed; per-address results are
    /// returned by the batch call).
    #[error("adding address {address} to link {ifindex}")]
    AddAddress {
        /// The link.
        ifindex: u32,
        /// The address.
        address: IpAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Removing an address.
    #[error("removing address {address} from link {ifindex}")]
    RemoveAddress {
        /// The link.
        ifindex: u32,
        /// The address.
        address: IpAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Opening or binding the `NETLINK_NETFILTER` socket for conntrack.
    #[error("opening the conntrack netlink socket")]
    OpenConntrack(#[source] io::Error),
    /// Sending a conntrack dump request or reading its answer.
    #[error("dumping the conntrack table")]
    DumpConntrack(#[source] io::Error),
    /// Deleting a conntrack entry.
    #[error(
        "deleting conntrack entry proto {} {} -> {}",
        .flow.protocol,
        .flow.source,
        .flow.destination
    )]
    DeleteConntrack {
        /// The entry's original direction.
        flow: FlowTuple,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One operation of a batch that the kernel refused (or whose
/// acknowledgement was lost); the rest of the batch is unaffected.
#[derive(Debug, thiserror::Error)]
#[error("{operation}")]
pub struct OperationError {
    /// The operation, which names the object.
    pub operation: Operation,
    /// The kernel's errno as an `io::Error` (`raw_os_error()`).
    #[source]
    pub source: io::Error,
}

impl OperationError {
    /// The kernel's errno, if the kernel answered.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// A malformed reply as an `io::Error`.
pub(crate) fn invalid_data<E>(error: E) -> io::Error
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    io::Error::new(io::ErrorKind::InvalidData, error)
}
