//! The pure half of kube-ipvs: no I/O, no async.
//!
//! - [`state`]: the desired state, by Service.
//! - [`observed`]: what the kernel holds.
//! - [`plan`]: the operations that turn one into the other.

pub mod observed;
pub mod plan;
pub mod state;

pub use observed::{Observed, ObservedVirtualServer};
pub use plan::{plan, Draining, Extent, Intent, Op, Plan, PlanConfig, Scope};
pub use state::{DesiredState, DesiredVirtualServer, ServiceRef, ServiceState, VirtualServerKind};
