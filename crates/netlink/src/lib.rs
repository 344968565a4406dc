//! IPVS over generic netlink, the rtnetlink link and address operations
//! kube-ipvs needs, and conntrack clean-up over ctnetlink.
//!
//! - [`model`] re-exports the `kube-ipvs-model` crate: typed virtual
//!   servers, real servers and counters, and in [`operation`] the write
//!   operations a batch applies. Its types are also at this crate's root, so
//!   `kube_ipvs_netlink::VirtualServerKey` and
//!   `kube_ipvs_netlink::model::VirtualServerKey` name the same type.
//! - [`packet`] holds the sans-IO IPVS codec (messages and attributes), and
//!   in [`packet::conntrack`] the conntrack flows and ctnetlink messages.
//! - [`convert`] holds model to attributes and back.
//! - [`ipvs`] holds [`Ipvs`], the handle that applies batches and dumps.
//! - [`route`] holds [`Route`], the rtnetlink handle: the dummy link
//!   ([`link`]) and addresses ([`address`]).
//! - [`conntrack`] holds [`Conntrack`], the ctnetlink handle that deletes
//!   the conntrack entries of stale UDP flows.
//! - [`error`] holds [`Error`] and the per-operation [`OperationError`].
//!
//! The I/O API is synchronous (blocking netlink sockets); from tokio, call it
//! inside `spawn_blocking`.

pub mod address;
pub mod conntrack;
pub mod convert;
pub mod error;
pub mod ipvs;
pub mod link;
pub mod packet;
pub mod route;
mod socket;

pub use conntrack::Conntrack;
pub use error::{Error, OperationError};
pub use ipvs::{BatchReport, Ipvs};
pub use kube_ipvs_model as model;
pub use kube_ipvs_model::*;
pub use route::Route;
pub use socket::SyscallCounts;
