//! IPVS over generic netlink, and the rtnetlink link and address operations
//! kube-ipvs needs.
//!
//! - [`model`] holds typed virtual servers, real servers and counters.
//! - [`operation`] holds the write operations a batch applies.
//! - [`packet`] holds the sans-IO IPVS codec (messages and attributes).
//! - [`convert`] holds model to attributes and back.
//! - [`ipvs`] holds [`Ipvs`], the handle that applies batches and dumps.
//! - [`route`] holds [`Route`], the rtnetlink handle: the dummy link
//!   ([`link`]) and addresses ([`address`]).
//! - [`error`] holds [`Error`] and the per-operation [`OperationError`].
//!
//! The I/O API is synchronous (blocking netlink sockets); from tokio, call it
//! inside `spawn_blocking`.

pub mod address;
pub mod convert;
pub mod error;
pub mod ipvs;
pub mod link;
pub mod model;
pub mod operation;
pub mod packet;
pub mod route;
mod socket;

pub use error::{Error, OperationError};
pub use ipvs::{BatchReport, Ipvs};
pub use model::*;
pub use operation::{Operation, OperationKind};
pub use route::Route;
pub use socket::SyscallCounts;
