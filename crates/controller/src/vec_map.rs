//! A map kept as one vector sorted by key, for the small per-Service maps of
//! the desired state.
//!
//! A Service has one virtual server per port and address (most have one or
//! two) and a handful of real servers each. A `BTreeMap` node reserves room
//! for eleven entries, so at 10,000 Services a tree per Service spent about
//! 2 KiB where the entries need a tenth of it. Lookups are binary searches,
//! and the API is the subset of `BTreeMap`'s that the mapping and the
//! planner use, so iteration stays in key order.

use std::borrow::Borrow;
use std::fmt;

/// A map sorted by key, in one vector.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        VecMap(Vec::new())
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value at `key`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let at = self.find(key).ok()?;
        self.0.get(at).map(|(_, v)| v)
    }

    /// The value at `key`, to change it.
    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let at = self.find(key).ok()?;
        self.0.get_mut(at).map(|(_, v)| v)
    }

    /// Whether the map holds `key`.
    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(at) => self
                .0
                .get_mut(at)
                .map(|slot| std::mem::replace(&mut slot.1, value)),
            Err(at) => {
                // Most maps hold one to a few entries: grow them one at a
                // time, where a vector's first growth would reserve four,
                // and larger ones by a quarter, where doubling would leave
                // a map of ten real servers room for sixteen.
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact((self.0.len() / 4).max(1));
                }
                self.0.insert(at, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let at = self.find(key).ok()?;
        Some(self.0.remove(at).1)
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }
}

impl<K, V> VecMap<K, V> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, by key.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The entries, by key, values to change.
    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + ExactSizeIterator {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    /// The values, by key.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    /// The values, by key, to change.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.0.iter_mut().map(|(_, v)| v)
    }

    /// The first entry.
    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.0.first().map(|(k, v)| (k, v))
    }

    /// Drops spare capacity: the maps of the desired state are built once
    /// and then kept.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    /// Later entries replace earlier ones with the same key, as in a
    /// `BTreeMap`.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(K, V)> = iter.into_iter().collect();
        // Stable: equal keys keep their order, and the last one is kept.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(K, V)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match out.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => out.push(entry),
            }
        }
        VecMap(out)
    }
}

impl<K: Ord, V> Extend<(K, V)> for VecMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for VecMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for VecMap<K, V> {
    type Output = V;

    /// The value at `key`; panics when there is none, as `BTreeMap`'s.
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry found for key")
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// A value that carries its own key (a real server its address and port).
pub trait Keyed {
    /// The key, small and copied.
    type Key: Ord + Copy;

    /// The value's key.
    fn key(&self) -> &Self::Key;
}

impl Keyed for kube_ipvs_model::RealServer {
    type Key = kube_ipvs_model::RealServerKey;

    fn key(&self) -> &Self::Key {
        &self.key
    }
}

/// A map of values that carry their keys ([`Keyed`]), sorted by key in one
/// vector: [`VecMap`]'s API without holding each key twice. A real server
/// holds its address and port; at 100,000 real servers the second copy was
/// 2 MB in the desired state and 2 MB in the kernel cache.
///
/// A value must keep its key: [`Self::get_mut`] and [`Self::values_mut`]
/// are for the rest of it (a weight), and the key is checked in debug builds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyedVec<V>(Vec<V>);

impl<V> Default for KeyedVec<V> {
    fn default() -> Self {
        KeyedVec(Vec::new())
    }
}

impl<V: Keyed + fmt::Debug> fmt::Debug for KeyedVec<V>
where
    V::Key: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|v| (v.key(), v)))
            .finish()
    }
}

impl<V: Keyed> KeyedVec<V> {
    /// An empty map.
    pub fn new() -> Self {
        KeyedVec(Vec::new())
    }

    fn find(&self, key: &V::Key) -> Result<usize, usize> {
        self.0.binary_search_by(|v| v.key().cmp(key))
    }

    /// The value at `key`.
    pub fn get(&self, key: &V::Key) -> Option<&V> {
        let at = self.find(key).ok()?;
        self.0.get(at)
    }

    /// The value at `key`, to change (all but its key).
    pub fn get_mut(&mut self, key: &V::Key) -> Option<&mut V> {
        let at = self.find(key).ok()?;
        self.0.get_mut(at)
    }

    /// Whether the map holds `key`.
    pub fn contains_key(&self, key: &V::Key) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: V::Key, value: V) -> Option<V> {
        debug_assert!(*value.key() == key, "a value under another key");
        match self.find(&key) {
            Ok(at) => self
                .0
                .get_mut(at)
                .map(|slot| std::mem::replace(slot, value)),
            Err(at) => {
                // Grown as a VecMap is: one at a time while small, then by
                // a quarter.
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact((self.0.len() / 4).max(1));
                }
                self.0.insert(at, value);
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &V::Key) -> Option<V> {
        let at = self.find(key).ok()?;
        Some(self.0.remove(at))
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&V::Key, &mut V) -> bool) {
        self.0.retain_mut(|v| {
            let key = *v.key();
            keep(&key, v)
        });
    }

    /// The entries, by key.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&V::Key, &V)> + ExactSizeIterator {
        self.0.iter().map(|v| (v.key(), v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &V::Key> + ExactSizeIterator {
        self.0.iter().map(Keyed::key)
    }
}

impl<V> KeyedVec<V> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values, by key.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.0.iter()
    }

    /// The values, by key, to change (all but their keys).
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.0.iter_mut()
    }

    /// Drops spare capacity.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }
}

impl<V: Keyed> FromIterator<(V::Key, V)> for KeyedVec<V> {
    /// Later entries replace earlier ones with the same key, as in a
    /// `BTreeMap`.
    fn from_iter<I: IntoIterator<Item = (V::Key, V)>>(iter: I) -> Self {
        iter.into_iter().map(|(_, v)| v).collect()
    }
}

impl<V: Keyed> FromIterator<V> for KeyedVec<V> {
    /// Later values replace earlier ones with the same key.
    fn from_iter<I: IntoIterator<Item = V>>(iter: I) -> Self {
        let mut values: Vec<V> = iter.into_iter().collect();
        // Stable: equal keys keep their order, and the last one is kept.
        values.sort_by(|a, b| a.key().cmp(b.key()));
        let mut out: Vec<V> = Vec::with_capacity(values.len());
        for value in values {
            match out.last_mut() {
                Some(last) if last.key() == value.key() => *last = value,
                _ => out.push(value),
            }
        }
        KeyedVec(out)
    }
}

impl<V: Keyed> Extend<(V::Key, V)> for KeyedVec<V> {
    fn extend<I: IntoIterator<Item = (V::Key, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<V: Keyed, const N: usize> From<[(V::Key, V); N]> for KeyedVec<V> {
    fn from(entries: [(V::Key, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<V: Keyed> std::ops::Index<&V::Key> for KeyedVec<V> {
    type Output = V;

    /// The value at `key`; panics when there is none, as `BTreeMap`'s.
    fn index(&self, key: &V::Key) -> &V {
        self.get(key).expect("no entry found for key")
    }
}

impl<V: Keyed> IntoIterator for KeyedVec<V> {
    type Item = (V::Key, V);
    type IntoIter = std::iter::Map<std::vec::IntoIter<V>, fn(V) -> (V::Key, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(|v| (*v.key(), v))
    }
}

impl<'a, V: Keyed> IntoIterator for &'a KeyedVec<V> {
    type Item = (&'a V::Key, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, V>, fn(&'a V) -> (&'a V::Key, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|v| (v.key(), v))
    }
}

/// A set kept as one sorted vector, for the small per-Service sets of the
/// desired state (a Service's addresses: one or two, where a `BTreeSet`
/// node reserves room for eleven). The API is the subset of `BTreeSet`'s
/// the mapping uses; iteration is in order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VecSet<T>(Vec<T>);

impl<T> Default for VecSet<T> {
    fn default() -> Self {
        VecSet(Vec::new())
    }
}

impl<T: fmt::Debug> fmt::Debug for VecSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl<T: Ord> VecSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        VecSet(Vec::new())
    }

    /// Adds `value`; whether it was not there.
    pub fn insert(&mut self, value: T) -> bool {
        match self.0.binary_search(&value) {
            Ok(_) => false,
            Err(at) => {
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact((self.0.len() / 4).max(1));
                }
                self.0.insert(at, value);
                true
            }
        }
    }

    /// Whether the set holds `value`.
    pub fn contains(&self, value: &T) -> bool {
        self.0.binary_search(value).is_ok()
    }

    /// Removes `value`; whether it was there.
    pub fn remove(&mut self, value: &T) -> bool {
        match self.0.binary_search(value) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }
}

impl<T> VecSet<T> {
    /// Removes every value.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values in order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T: Ord> FromIterator<T> for VecSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut values: Vec<T> = iter.into_iter().collect();
        values.sort();
        values.dedup();
        values.shrink_to_fit();
        VecSet(values)
    }
}

impl<T: Ord> Extend<T> for VecSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for value in iter {
            self.insert(value);
        }
    }
}

impl<T: Ord, const N: usize> From<[T; N]> for VecSet<T> {
    fn from(values: [T; N]) -> Self {
        values.into_iter().collect()
    }
}

impl<T> IntoIterator for VecSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a VecSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn vec_set_behaves_as_a_btree_set() {
        let mut tree = BTreeSet::new();
        let mut vec = VecSet::new();
        for i in 0..400u32 {
            let v = (i * 37 % 23) as u8;
            if i % 3 == 0 {
                assert_eq!(vec.remove(&v), tree.remove(&v));
            } else {
                assert_eq!(vec.insert(v), tree.insert(v));
            }
            assert_eq!(vec.contains(&v), tree.contains(&v));
            assert_eq!(vec.len(), tree.len());
            assert!(vec.iter().eq(tree.iter()));
        }
        let collected: VecSet<u8> = [3, 1, 3, 2].into_iter().collect();
        assert_eq!(collected.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn behaves_as_a_btree_map() {
        let ops: Vec<(bool, u8, u32)> = (0..400u32)
            .map(|i| (i % 3 != 0, (i * 37 % 23) as u8, i))
            .collect();
        let mut tree = BTreeMap::new();
        let mut vec = VecMap::new();
        for (insert, k, v) in ops {
            if insert {
                assert_eq!(vec.insert(k, v), tree.insert(k, v));
            } else {
                assert_eq!(vec.remove(&k), tree.remove(&k));
            }
            assert!(vec.iter().eq(tree.iter()));
            assert_eq!(vec.get(&k), tree.get(&k));
            assert_eq!(vec.contains_key(&k), tree.contains_key(&k));
        }
        let collected: VecMap<u8, u32> = [(3, 1), (1, 2), (3, 4)].into();
        assert_eq!(collected.iter().collect::<Vec<_>>(), [(&1, &2), (&3, &4)]);
        let mut one = VecMap::new();
        one.insert(1u8, 1u32);
        assert_eq!(one.0.capacity(), 1, "one entry, room for one");
    }

    /// A value keyed by its first field.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Entry(u8, u32);

    impl Keyed for Entry {
        type Key = u8;

        fn key(&self) -> &u8 {
            &self.0
        }
    }

    #[test]
    fn keyed_vec_behaves_as_a_btree_map() {
        let mut tree = BTreeMap::new();
        let mut vec = KeyedVec::new();
        for i in 0..400u32 {
            let k = (i * 37 % 23) as u8;
            if i % 3 == 0 {
                assert_eq!(vec.remove(&k), tree.remove(&k));
            } else {
                assert_eq!(vec.insert(k, Entry(k, i)), tree.insert(k, Entry(k, i)));
            }
            assert!(vec.iter().eq(tree.iter()));
            assert_eq!(vec.get(&k), tree.get(&k));
            assert_eq!(vec.contains_key(&k), tree.contains_key(&k));
        }
        vec.retain(|k, e| {
            e.1 += 1;
            k % 2 == 0
        });
        tree.retain(|k, e| {
            e.1 += 1;
            k % 2 == 0
        });
        assert!(vec.iter().eq(tree.iter()));
        let collected: KeyedVec<Entry> = [Entry(3, 1), Entry(1, 2), Entry(3, 4)]
            .into_iter()
            .collect();
        assert_eq!(
            collected.values().copied().collect::<Vec<_>>(),
            [Entry(1, 2), Entry(3, 4)]
        );
        assert_eq!(
            collected.into_iter().collect::<Vec<_>>(),
            [(1, Entry(1, 2)), (3, Entry(3, 4))]
        );
    }
}
