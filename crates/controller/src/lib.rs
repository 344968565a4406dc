//! The pure half of kube-ipvs: no I/O, no async.
//!
//! - [`state`]: the desired state, by Service.

pub mod state;

pub use state::{DesiredState, DesiredVirtualServer, ServiceRef, ServiceState};
