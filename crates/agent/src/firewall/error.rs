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
