//! What can fail in the firewall module.

use std::io;

/// An operation of the firewall module that failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// `nft -j -f -` refused the transaction that replaces the table, or
    /// could not be run.
    #[error("applying the kube-ipvs nftables table ({elements} set elements): {detail}")]
    ApplyRuleset {
        /// Set elements in the refused ruleset.
        elements: usize,
        /// What `nft` printed on stderr, or why it could not run.
        detail: String,
        /// The underlying error.
        #[source]
        source: Box<nftables::helper::NftablesError>,
    },
    /// `nft -j -f -` refused the transaction that adds and deletes set
    /// elements, or could not be run.
    #[error("updating the kube-ipvs nftables table ({added} set elements added, {deleted} deleted): {detail}")]
    UpdateElements {
        /// Elements to add.
        added: usize,
        /// Elements to delete.
        deleted: usize,
        /// What `nft` printed on stderr, or why it could not run.
        detail: String,
        /// The underlying error.
        #[source]
        source: Box<nftables::helper::NftablesError>,
    },
    /// `nft -j list table` failed.
    #[error("listing the kube-ipvs nftables table: {detail}")]
    ListTable {
        /// What `nft` printed on stderr, or why it could not run.
        detail: String,
        /// The underlying error.
        #[source]
        source: Box<nftables::helper::NftablesError>,
    },
    /// `nft -j list table` printed something that is not JSON.
    #[error("parsing the listing of the kube-ipvs nftables table")]
    ParseListing(#[source] serde_json::Error),
    /// The table was gone right after it was written.
    #[error("the kube-ipvs nftables table is gone right after it was written")]
    TableMissing,
    /// `nft` could not delete the table.
    #[error("deleting the kube-ipvs nftables table: {detail}")]
    DeleteTable {
        /// What `nft` printed on stderr, or why it could not run.
        detail: String,
        /// The underlying error.
        #[source]
        source: Box<nftables::helper::NftablesError>,
    },
    /// Writing a sysctl under `/proc/sys` failed.
    #[error("setting sysctl {name}")]
    SetSysctl {
        /// The sysctl, as a path under `/proc/sys`.
        name: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An iptables command refused to add or remove the rule that accepts
    /// IPVS replies in its `FORWARD` chain.
    #[error("changing the FORWARD chain with {command}: {detail}")]
    Iptables {
        /// The command.
        command: &'static str,
        /// What it printed on stderr, or why it could not run.
        detail: String,
    },
    /// Deleting the conntrack entries of stale UDP flows failed.
    #[error("cleaning stale UDP conntrack entries")]
    Conntrack(#[source] kube_ipvs_netlink::Error),
}

/// The most useful text in an `nft` failure: its stderr when it ran.
pub(crate) fn nft_detail(error: &nftables::helper::NftablesError) -> String {
    match error {
        nftables::helper::NftablesError::NftFailed { stderr, .. } => stderr.trim().to_owned(),
        other => other.to_string(),
    }
}
