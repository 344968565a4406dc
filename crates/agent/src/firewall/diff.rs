//! What changed between two rulesets, and the one `nft` transaction that
//! makes a table holding the old one hold the new one.
//!
//! The table's chains, rules and set definitions depend only on the
//! masquerade scope of each family, the mark and the pods' interface; every
//! Service and endpoint lives in set elements. So an endpoint or Service
//! change is a handful of `add element` / `delete element` commands, and
//! the cost of a sync grows with the change, not with the cluster. A change
//! of the structure (a flag, the Node's pod CIDRs moving the scope) is rare
//! and writes the table whole ([`super::render::replace`]).

use std::collections::BTreeSet;

use kube_ipvs_netlink::AddressFamily;
use nftables::batch::Batch;
use nftables::schema::{Element, NfListObject, Nftables};

use super::render::{family_sets, FAMILY, TABLE};
use super::ruleset::{FamilySets, Ruleset};

/// How the table holding one ruleset is brought to hold another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableChange {
    /// They are equal: nothing to send.
    None,
    /// Only set elements differ.
    Elements(Box<ElementChanges>),
    /// Chains, rules or set definitions differ: the table is written whole.
    Structure,
}

/// Set elements to add and delete, per family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElementChanges {
    /// IPv4 sets.
    pub ipv4: FamilyChanges,
    /// IPv6 sets.
    pub ipv6: FamilyChanges,
}

/// Set elements to add and delete in the sets of one family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilyChanges {
    /// Elements the new ruleset has and the old lacks (`masquerade` unused).
    pub added: FamilySets,
    /// Elements the old ruleset has and the new lacks (`masquerade` unused).
    pub deleted: FamilySets,
}

impl ElementChanges {
    /// The changes of `family`.
    pub fn family(&self, family: AddressFamily) -> &FamilyChanges {
        match family {
            AddressFamily::Inet => &self.ipv4,
            AddressFamily::Inet6 => &self.ipv6,
        }
    }

    /// How many elements are added.
    pub fn added(&self) -> usize {
        self.ipv4.added.element_count() + self.ipv6.added.element_count()
    }

    /// How many elements are deleted.
    pub fn deleted(&self) -> usize {
        self.ipv4.deleted.element_count() + self.ipv6.deleted.element_count()
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added() == 0 && self.deleted() == 0
    }
}

/// How a table holding `old` is brought to hold `new`.
pub fn diff(old: &Ruleset, new: &Ruleset) -> TableChange {
    if !same_structure(old, new) {
        return TableChange::Structure;
    }
    let changes = ElementChanges {
        ipv4: family_changes(&old.ipv4, &new.ipv4),
        ipv6: family_changes(&old.ipv6, &new.ipv6),
    };
    if changes.is_empty() {
        TableChange::None
    } else {
        TableChange::Elements(Box::new(changes))
    }
}

/// Whether the two rulesets render the same chains, rules and sets
/// ([`super::render::replace`] reads nothing else of a ruleset but
/// elements).
pub fn same_structure(a: &Ruleset, b: &Ruleset) -> bool {
    a.masquerade_mark == b.masquerade_mark
        && a.local_interface == b.local_interface
        && a.ipv4.masquerade == b.ipv4.masquerade
        && a.ipv6.masquerade == b.ipv6.masquerade
}

fn family_changes(old: &FamilySets, new: &FamilySets) -> FamilyChanges {
    FamilyChanges {
        added: difference(new, old),
        deleted: difference(old, new),
    }
}

/// The elements of `a` that `b` lacks.
fn difference(a: &FamilySets, b: &FamilySets) -> FamilySets {
    fn minus<T: Ord + Copy>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> BTreeSet<T> {
        a.difference(b).copied().collect()
    }
    FamilySets {
        masquerade: a.masquerade,
        vips: minus(&a.vips, &b.vips),
        services: minus(&a.services, &b.services),
        external_services: minus(&a.external_services, &b.external_services),
        local_services: minus(&a.local_services, &b.local_services),
        cluster_cidrs: minus(&a.cluster_cidrs, &b.cluster_cidrs),
        hairpin: minus(&a.hairpin, &b.hairpin),
        restricted: minus(&a.restricted, &b.restricted),
        allowed_sources: minus(&a.allowed_sources, &b.allowed_sources),
    }
}

impl Ruleset {
    /// Applies `changes` as the kernel would: deletions first, then
    /// additions. Fails, changing nothing, when a deleted element is
    /// missing, as `nft` refuses the transaction then.
    pub fn apply_changes(&mut self, changes: &ElementChanges) -> Result<(), MissingElement> {
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let held = self.family(family);
            let deleted = &changes.family(family).deleted;
            if difference(deleted, held).element_count() > 0 {
                return Err(MissingElement);
            }
        }
        for (held, change) in [
            (&mut self.ipv4, &changes.ipv4),
            (&mut self.ipv6, &changes.ipv6),
        ] {
            let masquerade = held.masquerade;
            *held = union(&difference(held, &change.deleted), &change.added);
            held.masquerade = masquerade;
        }
        Ok(())
    }
}

/// How the table the kernel holds differs from the one expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drift {
    /// There is no table (`nft flush ruleset`, `nft delete table`).
    Missing,
    /// Its chains, rules or set definitions differ.
    Structure,
    /// Set elements differ.
    Elements {
        /// Expected elements the table lacks.
        missing: usize,
        /// Elements the table holds and should not.
        unexpected: usize,
    },
}

/// How a table holding `held` differs from `expected`.
pub fn drift(held: &Ruleset, expected: &Ruleset) -> Option<Drift> {
    match diff(held, expected) {
        TableChange::None => None,
        TableChange::Structure => Some(Drift::Structure),
        TableChange::Elements(changes) => Some(Drift::Elements {
            missing: changes.added(),
            unexpected: changes.deleted(),
        }),
    }
}

/// A deleted element that the table did not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a set element to delete is not in the table")]
pub struct MissingElement;

fn union(a: &FamilySets, b: &FamilySets) -> FamilySets {
    fn plus<T: Ord + Copy>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> BTreeSet<T> {
        a.union(b).copied().collect()
    }
    FamilySets {
        masquerade: a.masquerade,
        vips: plus(&a.vips, &b.vips),
        services: plus(&a.services, &b.services),
        external_services: plus(&a.external_services, &b.external_services),
        local_services: plus(&a.local_services, &b.local_services),
        cluster_cidrs: plus(&a.cluster_cidrs, &b.cluster_cidrs),
        hairpin: plus(&a.hairpin, &b.hairpin),
        restricted: plus(&a.restricted, &b.restricted),
        allowed_sources: plus(&a.allowed_sources, &b.allowed_sources),
    }
}

/// The one transaction that applies `changes`: every `delete element`,
/// then every `add element`, one command per set that changes. Deletions
/// go first so that an interval set never holds an old and a new prefix
/// that overlap.
pub fn update(changes: &ElementChanges) -> Nftables<'static> {
    let mut batch = Batch::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        for set in family_sets(family, &changes.family(family).deleted) {
            if let Some(elem) = set.elem {
                batch.delete(element(set.name.into_owned(), elem.into_owned()));
            }
        }
    }
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        for set in family_sets(family, &changes.family(family).added) {
            if let Some(elem) = set.elem {
                batch.add(element(set.name.into_owned(), elem.into_owned()));
            }
        }
    }
    batch.to_nftables()
}

fn element(set: String, elem: Vec<nftables::expr::Expression<'static>>) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: FAMILY,
        table: TABLE.into(),
        name: set.into(),
        elem: elem.into(),
    })
}

#[cfg(test)]
mod tests;
