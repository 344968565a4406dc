//! What can fail in the firewall module.

use std::io;

use netlink_packet_core::DecodeError;

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
    /// Opening or binding the `NETLINK_NETFILTER` socket failed.
    #[error("opening the conntrack netlink socket")]
    OpenConntrack {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Sending a conntrack dump request or reading its answer failed.
    #[error("dumping the conntrack table")]
    DumpConntrack {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A message from the kernel's conntrack subsystem did not parse.
    #[error("decoding a conntrack netlink message")]
    DecodeConntrack {
        /// The underlying error.
        #[source]
        source: DecodeError,
    },
    /// The kernel refused to delete a conntrack entry.
    #[error("deleting conntrack entry {flow}")]
    DeleteConntrack {
        /// The entry's original direction, as `proto src -> dst`.
        flow: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The most useful text in an `nft` failure: its stderr when it ran.
pub(crate) fn nft_detail(error: &nftables::helper::NftablesError) -> String {
    match error {
        nftables::helper::NftablesError::NftFailed { stderr, .. } => stderr.trim().to_owned(),
        other => other.to_string(),
    }
}
