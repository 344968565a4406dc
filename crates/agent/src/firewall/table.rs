//! Applying a [`Ruleset`] to the kernel through the `nft` binary, and
//! checking what the kernel holds against it.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::diff::{diff, Drift, ElementChanges, TableChange};
use super::error::nft_detail;
use super::ruleset::Ruleset;
use super::{listing, render, FirewallError};

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

/// What one write to the table did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableWrite {
    /// What was sent.
    pub kind: WriteKind,
    /// Bytes of JSON handed to `nft` (0: nothing was sent).
    pub bytes: usize,
    /// Time spent, rendering and `nft` included.
    pub duration: Duration,
}

/// What a [`TableWrite`] sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Nothing: the table already held the ruleset.
    Unchanged,
    /// The whole table, with this many set elements.
    Table {
        /// Set elements in the table.
        elements: usize,
    },
    /// Set elements added and deleted.
    Elements {
        /// Elements added.
        added: usize,
        /// Elements deleted.
        deleted: usize,
    },
}

/// What a check of the kernel's table and sysctls found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableCheck {
    /// How the table differs from the ruleset, if it does.
    pub drift: Option<Drift>,
    /// The sysctls that differed, and were written again.
    pub sysctls: Vec<&'static str>,
}

/// The agent's `inet kube-ipvs` nftables table.
///
/// Blocking: every method runs `nft` and waits for it. From async code,
/// call them through `tokio::task::spawn_blocking`.
#[derive(Debug, Default)]
pub struct Firewall {
    /// The ruleset the table holds since the last write, if it succeeded.
    held: Option<Ruleset>,
    /// The table's chains, rules and set definitions as `nft` listed them
    /// right after the last whole write: a later listing that differs has
    /// been changed by someone else. `nft` prints rules in its own
    /// normal form, so they are compared with its output, not with ours.
    structure: Option<Vec<Value>>,
}

impl Firewall {
    /// A firewall that has written nothing yet; the first sync writes the
    /// whole table.
    pub fn new() -> Self {
        Firewall::default()
    }

    /// The ruleset the table holds since the last successful write.
    pub fn held(&self) -> Option<&Ruleset> {
        self.held.as_ref()
    }

    /// Makes the table hold `ruleset`: nothing when it does already, the
    /// changed set elements when only they differ from the last write,
    /// the whole table otherwise.
    pub fn sync(&mut self, ruleset: &Ruleset) -> Result<TableWrite, FirewallError> {
        match self.held.as_ref().map(|held| diff(held, ruleset)) {
            Some(TableChange::None) => Ok(TableWrite {
                kind: WriteKind::Unchanged,
                bytes: 0,
                duration: Duration::ZERO,
            }),
            Some(TableChange::Elements(changes)) => self.update(&changes),
            Some(TableChange::Structure) | None => self.write(ruleset),
        }
    }

    /// Replaces the table with `ruleset` in one transaction, after setting
    /// [`SYSCTLS`], and lists what the kernel made of its structure.
    pub fn write(&mut self, ruleset: &Ruleset) -> Result<TableWrite, FirewallError> {
        let start = Instant::now();
        let elements = ruleset.element_count();
        set_sysctls()?;
        // Forget the old state first: if nft fails, the kernel may hold
        // either, and the next write must be whole.
        self.held = None;
        self.structure = None;
        let payload = serde_json::to_string(&render::replace(ruleset))
            .expect("an nftables ruleset always serializes");
        run(&payload).map_err(|source| FirewallError::ApplyRuleset {
            elements,
            detail: nft_detail(&source),
            source: Box::new(source),
        })?;
        self.structure = Some(list_structure()?.ok_or(FirewallError::TableMissing)?);
        self.held = Some(ruleset.clone());
        Ok(TableWrite {
            kind: WriteKind::Table { elements },
            bytes: payload.len(),
            duration: start.elapsed(),
        })
    }

    /// Adds and deletes the set elements of `changes` in one transaction.
    /// `nft` refuses the whole transaction when an element to delete is
    /// missing; the table then needs a whole write.
    pub fn update(&mut self, changes: &ElementChanges) -> Result<TableWrite, FirewallError> {
        let start = Instant::now();
        let (added, deleted) = (changes.added(), changes.deleted());
        let held = self.held.take();
        let payload = serde_json::to_string(&super::diff::update(changes))
            .expect("an nftables ruleset always serializes");
        run(&payload).map_err(|source| FirewallError::UpdateElements {
            added,
            deleted,
            detail: nft_detail(&source),
            source: Box::new(source),
        })?;
        self.held = held.and_then(|mut held| held.apply_changes(changes).is_ok().then_some(held));
        Ok(TableWrite {
            kind: WriteKind::Elements { added, deleted },
            bytes: payload.len(),
            duration: start.elapsed(),
        })
    }

    /// Compares the table the kernel holds with `expected` (its structure
    /// with the listing taken after the last whole write, its elements one
    /// by one), and writes the [`SYSCTLS`] that differ.
    pub fn check(&mut self, expected: &Ruleset) -> Result<TableCheck, FirewallError> {
        let sysctls = set_sysctls()?;
        let drift = match list_raw(false)? {
            None => Some(Drift::Missing),
            Some(listed) => {
                let found = listing::Listing::read(&listed, expected)
                    .map_err(FirewallError::ParseListing)?;
                match &self.structure {
                    Some(structure) if *structure == found.structure => found.drift(expected),
                    _ => Some(Drift::Structure),
                }
            }
        };
        Ok(TableCheck { drift, sysctls })
    }

    /// Deletes the table (and nothing else). Succeeds when there is none.
    pub fn cleanup(&mut self) -> Result<(), FirewallError> {
        self.held = None;
        self.structure = None;
        let payload = serde_json::to_string(&render::delete())
            .expect("an nftables ruleset always serializes");
        run(&payload).map_err(|source| FirewallError::DeleteTable {
            detail: nft_detail(&source),
            source: Box::new(source),
        })
    }
}

fn run(payload: &str) -> Result<(), nftables::helper::NftablesError> {
    nftables::helper::apply_ruleset_raw(
        payload,
        nftables::helper::DEFAULT_NFT,
        nftables::helper::DEFAULT_ARGS,
    )
    .map(drop)
}

/// `nft -j list table inet kube-ipvs -t` (without set elements), its
/// structure ([`listing::structure`]); `None` when there is no such table.
fn list_structure() -> Result<Option<Vec<Value>>, FirewallError> {
    let Some(listed) = list_raw(true)? else {
        return Ok(None);
    };
    let objects = listing::objects(&listed).map_err(FirewallError::ParseListing)?;
    Ok(Some(listing::structure(&objects)))
}

/// `nft -j list table inet kube-ipvs` (`-t`: without set elements), as
/// printed; `None` when there is no such table.
fn list_raw(terse: bool) -> Result<Option<String>, FirewallError> {
    let args: &[&str] = if terse {
        &["-t", "list", "table", "inet", render::TABLE]
    } else {
        &["list", "table", "inet", render::TABLE]
    };
    let listed = match nftables::helper::get_current_ruleset_raw(
        nftables::helper::DEFAULT_NFT,
        args.iter().copied(),
    ) {
        Ok(listed) => listed,
        // `nft` answers ENOENT for a table that does not exist.
        Err(nftables::helper::NftablesError::NftFailed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            return Ok(None)
        }
        Err(source) => {
            return Err(FirewallError::ListTable {
                detail: nft_detail(&source),
                source: Box::new(source),
            })
        }
    };
    Ok(Some(listed))
}

/// Writes the [`SYSCTLS`] that differ, and names them.
pub fn set_sysctls() -> Result<Vec<&'static str>, FirewallError> {
    let mut written = Vec::new();
    for (name, value) in SYSCTLS {
        let path = format!("/proc/sys/{name}");
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
            continue;
        }
        std::fs::write(&path, value).map_err(|source| FirewallError::SetSysctl { name, source })?;
        written.push(name);
    }
    Ok(written)
}
