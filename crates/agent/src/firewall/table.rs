//! Applying a [`Ruleset`] to the kernel through the `nft` binary.

use std::time::{Duration, Instant};

use super::error::nft_detail;
use super::render;
use super::ruleset::Ruleset;
use super::FirewallError;

/// Sysctls the rules depend on, with the value they need.
///
/// - `conntrack=1`: IPVS keeps a conntrack entry for its connections, so the
///   nat postrouting chain sees them and the masquerade sticks to the whole
///   connection.
/// - `expire_nodest_conn=1`: a packet of an IPVS connection whose real
///   server is gone expires the connection, so once its conntrack entry is
///   deleted ([`super::Conntrack`]) the packet is scheduled to a live one.
pub const SYSCTLS: [(&str, &str); 2] = [
    ("net/ipv4/vs/conntrack", "1"),
    ("net/ipv4/vs/expire_nodest_conn", "1"),
];

/// What one [`Firewall::sync`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncReport {
    /// Set elements in the ruleset.
    pub elements: usize,
    /// Whether the table was replaced (`false`: it already matched).
    pub applied: bool,
    /// Time spent, rendering and `nft` included.
    pub duration: Duration,
}

/// The agent's `inet kube-ipvs` nftables table.
///
/// Blocking: `sync` runs `nft` and waits for it. From async code, call it
/// through `tokio::task::spawn_blocking`.
#[derive(Debug, Default)]
pub struct Firewall {
    /// The ruleset last applied, to skip a sync that changes nothing.
    applied: Option<Ruleset>,
}

impl Firewall {
    /// A firewall that has applied nothing yet; the first sync always applies.
    pub fn new() -> Self {
        Firewall::default()
    }

    /// The ruleset last applied.
    pub fn applied(&self) -> Option<&Ruleset> {
        self.applied.as_ref()
    }

    /// Makes the table hold `ruleset`, in one transaction. A no-op when
    /// `ruleset` equals the one last applied.
    pub fn sync(&mut self, ruleset: &Ruleset) -> Result<SyncReport, FirewallError> {
        let start = Instant::now();
        let elements = ruleset.element_count();
        if self.applied.as_ref() == Some(ruleset) {
            return Ok(SyncReport {
                elements,
                applied: false,
                duration: start.elapsed(),
            });
        }
        set_sysctls()?;
        // Forget the old value first: if nft fails, the kernel may hold
        // either, and the next sync must apply again.
        self.applied = None;
        let payload = serde_json::to_string(&render::replace(ruleset))
            .expect("an nftables ruleset always serializes");
        nftables::helper::apply_ruleset_raw(
            &payload,
            nftables::helper::DEFAULT_NFT,
            nftables::helper::DEFAULT_ARGS,
        )
        .map_err(|source| FirewallError::ApplyRuleset {
            elements,
            detail: nft_detail(&source),
            source: Box::new(source),
        })?;
        self.applied = Some(ruleset.clone());
        Ok(SyncReport {
            elements,
            applied: true,
            duration: start.elapsed(),
        })
    }

    /// Deletes the table (and nothing else). Succeeds when there is none.
    pub fn cleanup(&mut self) -> Result<(), FirewallError> {
        self.applied = None;
        let payload = serde_json::to_string(&render::delete())
            .expect("an nftables ruleset always serializes");
        nftables::helper::apply_ruleset_raw(
            &payload,
            nftables::helper::DEFAULT_NFT,
            nftables::helper::DEFAULT_ARGS,
        )
        .map(drop)
        .map_err(|source| FirewallError::DeleteTable {
            detail: nft_detail(&source),
            source: Box::new(source),
        })
    }
}

/// Writes [`SYSCTLS`] where they differ.
pub fn set_sysctls() -> Result<(), FirewallError> {
    for (name, value) in SYSCTLS {
        let path = format!("/proc/sys/{name}");
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
            continue;
        }
        std::fs::write(&path, value).map_err(|source| FirewallError::SetSysctl { name, source })?;
    }
    Ok(())
}
