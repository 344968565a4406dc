//! The kube-ipvs agent: sources, the reconcile loop, the kernel seam, the
//! CLI's output, metrics and health. `main.rs` only wires these together.
//!
//! - [`source`]: Services, EndpointSlices and Nodes from the API or a directory.
//! - [`agent`]: the loop from source events to syncs.
//! - [`reconcile`]: plans and applies syncs against a [`dataplane`].
//! - [`dataplane`]: the kernel seam, with kernel and in-memory implementations.
//! - [`firewall`]: the nftables table and conntrack cleanup.
//! - [`cli`], [`output`]: flags, and how `plan` and `dump` print.
//! - [`metrics`], [`health`], [`http`]: what the agent exports.

pub mod agent;
pub mod cli;
pub mod dataplane;
pub mod firewall;
pub mod health;
pub mod http;
pub mod metrics;
pub mod output;
pub mod reconcile;
pub mod source;
