//! Packing the large ordered maps once their bulk has arrived.
//!
//! A `BTreeMap` filled one ascending key at a time splits each full node
//! into six entries and five, and the left half is never touched again: a
//! map built from a listing (snapshot, desired state, kernel cache) leaves
//! its nodes a little over half full, about 45% of its node memory empty.
//! Rebuilding it from its own sorted entries fills every node but the last
//! few. The agent does so when a full sync has built or replaced them; a
//! later insert splits only the node it lands in.

use std::collections::{BTreeMap, BTreeSet};

/// Rebuilds `map` with its nodes full. Entries and order are unchanged; the
/// work is one pass over the map, and the old nodes are freed as the new
/// ones are filled, so at no time are two whole copies live.
pub fn pack<K: Ord, V>(map: &mut BTreeMap<K, V>) {
    let mut rest = std::mem::take(map);
    let Some((key, value)) = rest.pop_first() else {
        return;
    };
    // `append` into a non-empty map merges both sorted sequences and
    // pushes them into fresh nodes filled to capacity; into an empty one it
    // would only swap the two, hence the first entry.
    map.insert(key, value);
    map.append(&mut rest);
}

/// Rebuilds `set` with its nodes full, as [`pack`] does a map.
pub fn pack_set<T: Ord>(set: &mut BTreeSet<T>) {
    let mut rest = std::mem::take(set);
    let Some(first) = rest.pop_first() else {
        return;
    };
    set.insert(first);
    set.append(&mut rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_every_entry_in_order() {
        for n in [0usize, 1, 2, 11, 12, 1000, 10_007] {
            let mut map: BTreeMap<u32, String> = (0..n as u32)
                .rev()
                .map(|k| (k * 3, k.to_string()))
                .collect();
            let before: Vec<_> = map.clone().into_iter().collect();
            pack(&mut map);
            assert_eq!(map.len(), n);
            assert_eq!(map.into_iter().collect::<Vec<_>>(), before);
            let mut set: BTreeSet<u32> = (0..n as u32).rev().collect();
            pack_set(&mut set);
            assert!(set.into_iter().eq(0..n as u32));
        }
    }
}
