//! IPVS over generic netlink, and the rtnetlink link and address operations
//! kube-ipvs needs.
//!
//! - [`model`]: typed virtual servers, real servers and counters.
//! - [`operation`]: the write operations a batch applies.

pub mod model;
pub mod operation;

pub use model::*;
pub use operation::{Operation, OperationKind};
