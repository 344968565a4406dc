//! Which manifest file contributed which object, so that a changed file is
//! re-read alone and only the objects that really changed become events.
//!
//! When two files hold the same object (kind, namespace and name), the file
//! whose path sorts last wins, as if the files were applied in order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use kube::runtime::watcher::Event;
use kube::ResourceExt;

/// An object's namespace and name.
type ObjectKey = (String, String);

/// The objects of one kind, by the file they came from. Each file's objects
/// are a vector sorted by key: most files hold one or two objects, and a
/// tree node per file would reserve room for eleven.
#[derive(Debug)]
pub(crate) struct Index<K> {
    by_file: HashMap<PathBuf, Vec<(ObjectKey, K)>>,
    owners: BTreeMap<ObjectKey, BTreeSet<PathBuf>>,
}

impl<K> Default for Index<K> {
    fn default() -> Self {
        Self {
            by_file: HashMap::new(),
            owners: BTreeMap::new(),
        }
    }
}

impl<K: ResourceExt + Clone + PartialEq> Index<K> {
    /// Replaces what `path` contributes; returns an `Apply` for every object
    /// whose winning version changed and a `Delete` for every object gone.
    pub fn replace(&mut self, path: &Path, objects: Vec<K>) -> Vec<Event<K>> {
        let mut new: Vec<(ObjectKey, K)> = objects.into_iter().map(|o| (key(&o), o)).collect();
        // Stable sort, then keep the last of equal keys: a file that repeats
        // an object means its last version.
        new.sort_by(|a, b| a.0.cmp(&b.0));
        let mut deduped: Vec<(ObjectKey, K)> = Vec::with_capacity(new.len());
        for entry in new {
            match deduped.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => deduped.push(entry),
            }
        }
        let new = deduped;
        let contains = |list: &[(ObjectKey, K)], k: &ObjectKey| {
            list.binary_search_by(|(x, _)| x.cmp(k)).is_ok()
        };
        let old = self.by_file.get(path);
        let touched: BTreeSet<ObjectKey> = old
            .into_iter()
            .flat_map(|o| o.iter().map(|(k, _)| k))
            .chain(new.iter().map(|(k, _)| k))
            .cloned()
            .collect();
        if touched.is_empty() {
            return Vec::new();
        }
        let before: Vec<Option<K>> = touched.iter().map(|k| self.winner(k).cloned()).collect();
        for k in old
            .into_iter()
            .flat_map(|o| o.iter().map(|(k, _)| k))
            .filter(|k| !contains(&new, k))
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Some(owners) = self.owners.get_mut(&k) {
                owners.remove(path);
                if owners.is_empty() {
                    self.owners.remove(&k);
                }
            }
        }
        for (k, _) in &new {
            let owners = self.owners.entry(k.clone()).or_default();
            if owners.insert(path.to_owned()) && owners.len() > 1 {
                tracing::warn!(object = %format!("{}/{}", k.0, k.1), files = ?owners, "object defined in several files; the last file wins");
            }
        }
        if new.is_empty() {
            self.by_file.remove(path);
        } else {
            self.by_file.insert(path.to_owned(), new);
        }
        touched
            .iter()
            .zip(before)
            .filter_map(|(k, before)| match (before, self.winner(k)) {
                (Some(b), None) => Some(Event::Delete(b)),
                (b, Some(a)) if b.as_ref() != Some(a) => Some(Event::Apply(a.clone())),
                _ => None,
            })
            .collect()
    }

    fn winner(&self, key: &ObjectKey) -> Option<&K> {
        let file = self.owners.get(key)?.last()?;
        let objects = self.by_file.get(file)?;
        let at = objects.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        Some(&objects[at].1)
    }

    /// The winning version of the object `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&K> {
        self.winner(&(namespace.to_owned(), name.to_owned()))
    }

    /// Every object, the winning version of each, by namespace and name.
    pub fn objects(&self) -> impl Iterator<Item = &K> + '_ {
        self.owners.keys().filter_map(|k| self.winner(k))
    }
}

fn key<K: ResourceExt>(object: &K) -> ObjectKey {
    (object.namespace().unwrap_or_default(), object.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(name: &str, ip: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn names(events: &[Event<Service>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Apply(s) => format!("apply {}", s.name_any()),
                Event::Delete(s) => format!("delete {}", s.name_any()),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn only_changed_objects_become_events() {
        let mut index = Index::default();
        let a = Path::new("/d/a.yaml");
        assert_eq!(
            names(&index.replace(a, vec![svc("x", "1"), svc("y", "1")])),
            ["apply x", "apply y"]
        );
        assert_eq!(
            names(&index.replace(a, vec![svc("x", "1"), svc("y", "2"), svc("z", "1")])),
            ["apply y", "apply z"]
        );
        assert_eq!(
            names(&index.replace(a, vec![svc("y", "2")])),
            ["delete x", "delete z"]
        );
        assert!(index.replace(a, vec![svc("y", "2")]).is_empty());
        assert_eq!(names(&index.replace(a, vec![])), ["delete y"]);
        assert_eq!(index.objects().count(), 0);
        assert!(index.by_file.is_empty());
    }

    #[test]
    fn the_last_file_wins_and_the_other_takes_over_when_it_goes() {
        let mut index = Index::default();
        let (a, b) = (Path::new("/d/a.yaml"), Path::new("/d/b.yaml"));
        index.replace(b, vec![svc("x", "b")]);
        assert!(
            index.replace(a, vec![svc("x", "a")]).is_empty(),
            "a sorts before b: b still wins"
        );
        let events = index.replace(b, vec![]);
        assert!(
            matches!(&events[..], [Event::Apply(s)] if s.spec.as_ref().unwrap().cluster_ip.as_deref() == Some("a"))
        );
        assert_eq!(index.objects().count(), 1);
    }
}
