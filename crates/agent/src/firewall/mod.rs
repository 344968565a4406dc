//! The node's packet plumbing around IPVS: an nftables table for
//! masquerade, hairpin, closed VIP ports and load-balancer source ranges,
//! and conntrack clean-up for UDP flows whose endpoint is gone.
//!
//! - [`ruleset`]: pure; [`Ruleset::new`] turns the desired IPVS state into
//!   the contents of the table's sets.
//! - [`render`]: pure; the `nft` JSON transaction that replaces the table.
//! - [`diff`]: pure; what changed between two rulesets, and the one `nft`
//!   transaction of `add element` / `delete element` commands that applies
//!   it.
//! - [`listing`]: pure; reads `nft -j list table` back into a structure to
//!   compare and a ruleset of the elements the kernel holds.
//! - [`table`]: [`Firewall`] writes a ruleset whole or as element changes,
//!   checks the kernel's table against it, and removes the table.
//! - [`Conntrack`] deletes stale UDP flows over ctnetlink; it lives in the
//!   netlink crate ([`kube_ipvs_netlink::conntrack`]) beside the other
//!   netlink code, and is re-exported here with its flow types.
//! - [`forward`]: one rule in iptables' `FORWARD` chain, only while its
//!   policy drops, so that IPVS replies routed by the node get through.
//! - [`filter`]: the seam, [`PacketFilter`], over both: the kernel's
//!   ([`KernelPacketFilter`]) and an in-memory one for tests.
//! - [`worker`]: runs a [`PacketFilter`] beside the reconcile loop, so
//!   neither holds up IPVS programming; [`feed`] is what the loop hands it.
//!
//! One `inet kube-ipvs` table serves both families: one object to replace
//! atomically and to delete on clean-up, one set of chains, and nat in the
//! `inet` family (Linux 5.2+). Its rules are fixed; only set elements grow
//! with Services, so a sync costs in elements, not rules, and a change
//! costs only the elements it adds and deletes. The table is written
//! whole at start-up, when its structure changes, after a failed `nft`
//! run and when a full resync finds it differing from what was written. Other tables
//! (other software's, iptables-nft's) are never read or written.
//!
//! nftables goes through the `nftables` crate (typed JSON for `nft -j -f`):
//! the runtime image ships `nft`, and JSON through `nft` gets the kernel's
//! full expression set (concatenations, interval concatenations, `masquerade
//! fully-random`) without writing an nf_tables netlink codec. `rustables`
//! (GPL-3.0) and the libnftnl bindings (C libraries) were not taken.
//! Conntrack, in the netlink crate, uses `netlink-packet-netfilter`'s
//! ctnetlink messages, on the workspace's netlink-packet-core.

pub mod diff;
mod error;
pub mod feed;
pub mod filter;
pub mod forward;
pub mod listing;
pub mod render;
pub mod ruleset;
pub mod table;
pub mod worker;

pub use diff::{diff, Drift, ElementChanges, FamilyChanges, TableChange};
pub use error::FirewallError;
pub use feed::FirewallFeed;
pub use filter::{
    KernelPacketFilter, MemoryFilterState, MemoryPacketFilter, MemoryWrite, PacketFilter,
};
pub use kube_ipvs_netlink::conntrack::{Conntrack, Flow, FlowTuple, StaleUdpFlows};
pub use ruleset::{
    AllowedSource, FamilySets, FirewallConfig, Hairpin, LocalTraffic, MasqueradeScope, Ruleset,
    ServicePort, DEFAULT_MASQUERADE_MARK,
};
pub use table::{set_sysctls, Firewall, TableCheck, TableWrite, WriteKind, SYSCTLS};
pub use worker::FirewallHandle;
