//! Which manifest file contributed which object, so that a changed file is
//! re-read alone and only the objects that really changed become events.
//!
//! The index keeps no objects: per object and file a fingerprint of the
//! text the object was read from (its document's), and the few fields a
//! `Delete` event needs ([`Stub`]). The objects themselves go to the
//! snapshot as events and are dropped there once converted. A re-read
//! file's documents are fingerprinted as they are read; the objects of a
//! document whose text is the one they came from are unchanged and make no
//! event. An edit of what the agent does not read (a comment, a label)
//! makes an event of the object as it was, which maps to nothing new.
//!
//! When two files hold the same object (kind, namespace and name), the file
//! whose path sorts last wins, as if the files were applied in order. When
//! the winning file lets go of it, the next one's version is not at hand:
//! that file is named for a re-read ([`Finished::reread`]), and its version
//! is marked unknown so that the re-read applies it.

use std::path::Path;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt as _, HashSet};
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use smallvec::SmallVec;

/// An object's namespace and name, in one allocation that the index's two
/// maps share (a pair of strings cloned into both took four per object).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectKey {
    /// The namespace, then the name.
    text: Arc<str>,
    namespace_len: usize,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        ObjectKey {
            text: [namespace, name].concat().into(),
            namespace_len: namespace.len(),
        }
    }

    /// The namespace; empty for cluster-scoped objects.
    pub fn namespace(&self) -> &str {
        &self.text[..self.namespace_len]
    }

    pub fn name(&self) -> &str {
        &self.text[self.namespace_len..]
    }
}

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace(), self.name())
    }
}

/// What of an object a `Delete` event carries: its name, and what the
/// consumer reads of a deleted object (a Service's addresses, a slice's
/// Service and address type), nothing else.
pub(crate) trait Stub: Sized {
    /// The fields kept.
    type Identity: Clone + std::fmt::Debug;
    /// The fields to keep of `self`.
    fn identity(&self) -> Self::Identity;
    /// An object with only its name and the kept fields.
    fn stub(key: &ObjectKey, identity: &Self::Identity) -> Self;
}

/// The fingerprint of a document's text, for the objects read from it. Two
/// versions with the same fingerprint are taken as the same. Never
/// [`UNKNOWN`].
///
/// The text as read, not the objects as typed: serializing each typed
/// object to JSON to hash it was a twentieth of the directory source's
/// user CPU on a cold sync, more than the hashing. The hash is foldhash's
/// (its quality variant, a fixed seed), 64 bits as the standard library's
/// SipHash with its fixed keys was, in fewer instructions; neither is keyed
/// against an adversary, and the files are the operator's own.
pub(crate) fn fingerprint(text: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0)
        .hash_one(text)
        .max(UNKNOWN + 1)
}

/// The fingerprint of a version not known: the next read of its file
/// applies it.
const UNKNOWN: u64 = 0;

/// One file's version of an object.
#[derive(Debug)]
struct Version<I> {
    file: Arc<Path>,
    /// [`UNKNOWN`] when not known.
    fingerprint: u64,
    identity: I,
}

/// The keys one file holds: nearly always one, kept in place.
type Keys = SmallVec<[ObjectKey; 1]>;

/// The versions of one object, by path: nearly always one, kept in place.
type Versions<I> = SmallVec<[Version<I>; 1]>;

/// The objects of one kind, by the file they came from.
#[derive(Debug)]
pub(crate) struct Index<K: Stub> {
    /// The keys each file holds, sorted.
    by_file: HashMap<Arc<Path>, Keys>,
    /// Each file's version of each object, by path; the last one wins.
    /// Nearly always one.
    versions: HashMap<ObjectKey, Versions<K::Identity>>,
}

impl<K: Stub> Default for Index<K> {
    fn default() -> Self {
        Self {
            by_file: HashMap::new(),
            versions: HashMap::new(),
        }
    }
}

/// What the end of a file's read gives.
pub(crate) struct Finished<K> {
    /// `Delete` for each object no file holds any more.
    pub deletes: Vec<Event<K>>,
    /// Files whose version of an object now wins, to re-read for it.
    pub reread: Vec<Arc<Path>>,
}

/// A file's read in progress, for one kind.
#[derive(Debug, Default)]
pub(crate) struct FileKeys {
    /// The keys the file held before.
    old: Keys,
    /// The keys read so far.
    new: Vec<ObjectKey>,
}

impl<K: Stub + ResourceExt> Index<K> {
    /// Starts reading `file` again.
    pub fn begin(&mut self, file: &Path) -> FileKeys {
        FileKeys {
            old: self.by_file.remove(file).unwrap_or_default(),
            new: Vec::new(),
        }
    }

    /// Records `object` as read from `file`, from a document of fingerprint
    /// `print`; gives it back when it changes what wins (a new object, a
    /// new version, a version that now wins).
    pub fn put(
        &mut self,
        file: &Arc<Path>,
        keys: &mut FileKeys,
        object: K,
        print: u64,
    ) -> Option<K> {
        let key = key(&object);
        let versions = self.versions.entry(key.clone()).or_default();
        keys.new.push(key);
        let at = versions.binary_search_by(|v| (*v.file).cmp(&**file));
        let winner = match at {
            Ok(i) => {
                let version = versions.get_mut(i)?;
                if version.fingerprint == print {
                    return None;
                }
                version.fingerprint = print;
                version.identity = object.identity();
                i + 1 == versions.len()
            }
            Err(i) => {
                versions.insert(
                    i,
                    Version {
                        file: file.clone(),
                        fingerprint: print,
                        identity: object.identity(),
                    },
                );
                if versions.len() > 1 {
                    let files: Vec<_> = versions.iter().map(|v| v.file.display()).collect();
                    tracing::warn!(object = %format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any()), ?files, "object defined in several files; the last file wins");
                }
                i + 1 == versions.len()
            }
        };
        winner.then_some(object)
    }

    /// Ends reading `file`. A `complete` read lets go of the objects the
    /// file no longer holds; an incomplete one (a document was not YAML)
    /// keeps them, as the file last gave them.
    pub fn finish(&mut self, file: &Arc<Path>, mut keys: FileKeys, complete: bool) -> Finished<K> {
        let mut finished = Finished {
            deletes: Vec::new(),
            reread: Vec::new(),
        };
        let read: HashSet<&ObjectKey> = keys.new.iter().collect();
        let gone: Vec<ObjectKey> = keys
            .old
            .iter()
            .filter(|k| !read.contains(k))
            .cloned()
            .collect();
        if complete {
            for key in gone {
                let Some(versions) = self.versions.get_mut(&key) else {
                    continue;
                };
                let Ok(at) = versions.binary_search_by(|v| (*v.file).cmp(&**file)) else {
                    continue;
                };
                let was_winner = at + 1 == versions.len();
                let version = versions.remove(at);
                match versions.last_mut() {
                    None => {
                        finished
                            .deletes
                            .push(Event::Delete(K::stub(&key, &version.identity)));
                        self.versions.remove(&key);
                    }
                    Some(next) if was_winner => {
                        next.fingerprint = UNKNOWN;
                        finished.reread.push(next.file.clone());
                    }
                    Some(_) => {}
                }
            }
        } else {
            keys.new.extend(gone);
        }
        keys.new.sort();
        keys.new.dedup();
        if !keys.new.is_empty() {
            keys.new.shrink_to_fit();
            self.by_file
                .insert(file.clone(), SmallVec::from_vec(keys.new));
        }
        finished
    }

    /// The number of objects.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.versions.len()
    }
}

fn key<K: ResourceExt>(object: &K) -> ObjectKey {
    ObjectKey::new(
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default(),
    )
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

    /// Reads a whole file's objects; the events it makes, as names.
    fn read(index: &mut Index<Service>, file: &str, objects: Vec<Service>) -> Vec<String> {
        let file: Arc<Path> = Path::new(file).into();
        let mut keys = index.begin(&file);
        let mut out: Vec<String> = objects
            .into_iter()
            .filter_map(|o| {
                let print = fingerprint(&serde_json::to_vec(&o).unwrap());
                index.put(&file, &mut keys, o, print)
            })
            .map(|o| format!("apply {}", o.name_any()))
            .collect();
        let finished = index.finish(&file, keys, true);
        out.extend(finished.deletes.iter().map(|e| match e {
            Event::Delete(s) => format!("delete {}", s.name_any()),
            _ => unreachable!(),
        }));
        out.extend(
            finished
                .reread
                .iter()
                .map(|f| format!("reread {}", f.display())),
        );
        out
    }

    #[test]
    fn only_changed_objects_become_events() {
        let mut index = Index::default();
        let a = "/d/a.yaml";
        assert_eq!(
            read(&mut index, a, vec![svc("x", "1"), svc("y", "1")]),
            ["apply x", "apply y"]
        );
        assert_eq!(
            read(
                &mut index,
                a,
                vec![svc("x", "1"), svc("y", "2"), svc("z", "1")]
            ),
            ["apply y", "apply z"]
        );
        assert_eq!(
            read(&mut index, a, vec![svc("y", "2")]),
            ["delete x", "delete z"]
        );
        assert!(read(&mut index, a, vec![svc("y", "2")]).is_empty());
        assert_eq!(read(&mut index, a, vec![]), ["delete y"]);
        assert_eq!(index.len(), 0);
        assert!(index.by_file.is_empty());
    }

    #[test]
    fn an_incomplete_read_withdraws_nothing() {
        let mut index = Index::default();
        let file: Arc<Path> = Path::new("/d/a.yaml").into();
        read(&mut index, "/d/a.yaml", vec![svc("x", "1"), svc("y", "1")]);
        let mut keys = index.begin(&file);
        assert!(index.put(&file, &mut keys, svc("x", "2"), 2).is_some());
        let finished = index.finish(&file, keys, false);
        assert!(finished.deletes.is_empty());
        assert_eq!(
            read(&mut index, "/d/a.yaml", vec![]),
            ["delete x", "delete y"]
        );
    }

    #[test]
    fn the_last_file_wins_and_the_other_is_reread_when_it_goes() {
        let mut index = Index::default();
        let (a, b) = ("/d/a.yaml", "/d/b.yaml");
        assert_eq!(read(&mut index, b, vec![svc("x", "b")]), ["apply x"]);
        assert!(
            read(&mut index, a, vec![svc("x", "a")]).is_empty(),
            "a sorts before b: b still wins"
        );
        assert_eq!(read(&mut index, b, vec![]), ["reread /d/a.yaml"]);
        assert_eq!(
            read(&mut index, a, vec![svc("x", "a")]),
            ["apply x"],
            "the re-read applies a's version, though it did not change"
        );
        assert_eq!(index.len(), 1);
    }
}
