//! The pure half of kube-ipvs: no I/O, no async.
//!
//! Kubernetes objects are converted at the boundary into compact structs
//! ([`service`], [`slice`], [`node`]; `v1` Endpoints through [`mirror`]) and
//! kept in a [`snapshot`], which reports the Services each change affects.
//! The mapping in [`desired`] turns the snapshot and the [`config`] into the
//! [`state`] the cluster wants, choosing real servers in `selection` and
//! schedulers in [`scheduling`]; what cannot be mapped is named in [`skip`].
//!
//! - [`observed`]: what the kernel holds.
//! - [`plan`]: the operations that turn one into the other.

pub mod config;
pub mod desired;
pub mod mirror;
pub mod node;
pub mod observed;
pub mod plan;
pub mod scheduling;
mod selection;
pub mod service;
pub mod skip;
pub mod slice;
pub mod snapshot;
pub mod state;

pub use config::Config;
pub use desired::{desired, desired_service, desired_service_checked};
pub use mirror::{endpoint_slices_from_endpoints, mirror_endpoints};
pub use node::{node_object_addresses, node_object_addresses_checked, NodeInfo};
pub use observed::{Observed, ObservedVirtualServer};
pub use plan::{plan, Draining, Extent, Intent, Op, Plan, PlanConfig, Scope};
pub use service::{PortInfo, ServiceInfo};
pub use skip::{SkipKind, SkipReason, Skipped};
pub use slice::{EndpointInfo, SliceInfo, SlicePort};
pub use snapshot::{Changed, Snapshot};
pub use state::{DesiredState, DesiredVirtualServer, ServiceRef, ServiceState, VirtualServerKind};
