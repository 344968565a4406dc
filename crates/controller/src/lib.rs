//! The pure half of kube-ipvs: no I/O, no async.
//!
//! Kubernetes objects are converted at the boundary into compact structs
//! ([`service`], [`slice`], [`node`]; `v1` Endpoints through [`mirror`]) and
//! kept in a [`snapshot`], which reports the Services each change affects
//! ([`changed`]).
//! The mapping in [`desired`] turns the snapshot and the [`config`] into the
//! [`state`] the cluster wants, choosing real servers in `selection` and
//! schedulers in [`scheduling`]; what cannot be mapped is named in [`skip`].
//! Services are named by a [`service_ref`]. Entries of ingress-nginx's
//! `tcp-services` and `udp-services` ConfigMaps are parsed and mapped in
//! [`stream_services`] and want virtual servers as Services do.
//!
//! - [`health_check`]: the Services whose `healthCheckNodePort` this node
//!   answers, with their local endpoints.
//! - [`observed`]: what the kernel holds.
//! - [`intent`]: the desired state indexed for planning, and the [`Scope`]
//!   a change touches.
//! - [`plan`]: the operations ([`op`]) that turn one into the other.
//! - [`udp_flows`]: which UDP flows each frontend's endpoints may answer,
//!   for the conntrack clean-up.
//! - [`vec_map`]: the sorted-vector map the per-Service state is kept in;
//!   [`dense`]: packing the large maps once they are built.

pub mod changed;
pub mod config;
pub mod dense;
pub mod desired;
pub mod health_check;
pub mod intent;
pub mod mirror;
pub mod node;
pub mod observed;
pub mod op;
pub mod plan;
pub mod scheduling;
mod selection;
pub mod service;
pub mod service_ref;
pub mod skip;
pub mod slice;
pub mod snapshot;
pub mod state;
pub mod stream_services;
pub mod udp_flows;
pub mod vec_map;

pub use config::{Config, StreamConfig};
pub use desired::{
    desired, desired_owner_checked, desired_service, desired_service_checked,
    desired_stream_checked,
};
pub use health_check::{health_checks, HealthCheck};
pub use intent::{Intent, Scope};
pub use mirror::{endpoint_slices_from_endpoints, mirror_endpoints};
pub use node::{node_object_addresses, node_object_addresses_checked, Eligibility, NodeInfo};
pub use observed::{Connections, Observed, ObservedRealServer, ObservedVirtualServer};
pub use op::Op;
pub use plan::{plan, Draining, Extent, Plan, PlanConfig};
pub use service::{valid_label_value, PortInfo, ServiceInfo, SERVICE_PROXY_NAME_LABEL};
pub use service_ref::{ConfigMapRef, Owner, ServiceRef, SliceRef, StreamEntryRef, StreamKind};
pub use skip::{SkipKind, SkipReason, Skipped};
pub use slice::{EndpointInfo, Hints, SliceInfo, SlicePort};
pub use snapshot::{Changed, Snapshot};
pub use state::{
    DesiredState, DesiredVirtualServer, ServiceState, TrafficPolicy, VirtualServerKind,
};
pub use stream_services::{affected, StreamServices, StreamTarget, TargetPort};
pub use udp_flows::{udp_frontends, UdpFrontend, UdpFrontends};
pub use vec_map::{Keyed, KeyedVec, VecMap, VecSet};
