//! The kube-ipvs agent. Data flows through it in this order:
//!
//! - [`source`]: Services, EndpointSlices and the Node from the API or a
//!   directory, as one stream of watch events.
//! - [`snapshot`]: the events applied to the controller's snapshot, with
//!   relists swapped in whole.
//! - the controller crate maps the snapshot to the desired state and plans.
//! - [`reconcile`]: plans and applies syncs against a [`dataplane`], the
//!   kernel seam (IPVS and addresses), with kernel and in-memory
//!   implementations.
//! - [`firewall`]: the nftables table and conntrack clean-up behind their
//!   own seam, run beside the loop.
//! - [`agent`]: the loop from source events to syncs, and when each is due.
//!
//! Around it: [`cmd`] (one module per subcommand), [`cli`] and [`config`]
//! (flags, and each part's configuration from them), [`kubeproxy_config`]
//! (kube-proxy's configuration file, merged into the flags), [`logging`]
//! (text or JSON lines), [`output`] (how `plan`
//! and `dump` print), [`metrics`], [`health`] and [`http`] (what the agent
//! exports), and [`error`] (how an error is printed, once).

pub mod agent;
pub mod allocator;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod dataplane;
pub mod drain_state;
pub mod error;
pub mod firewall;
pub mod health;
pub mod http;
pub mod kubeproxy_config;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod reconcile;
pub mod service_health;
pub mod snapshot;
pub mod source;
