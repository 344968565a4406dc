//! The object store: current objects, the event history since the last
//! compaction, and the open watches, all behind one lock so that "replay the
//! history, then follow" never misses or repeats an event.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::kind::Kind;
use crate::selector::Selector;
use crate::Error;

/// One stored object: its identity, labels and serialized JSON.
#[derive(Debug)]
struct Stored {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    json: Bytes,
}

/// One entry of the event history.
#[derive(Debug)]
struct Record {
    kind: Kind,
    rv: u64,
    event: &'static str,
    object: Arc<Stored>,
}

/// Which objects a list or watch returns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Only this namespace, if set.
    pub namespace: Option<String>,
    /// The `labelSelector` parameter.
    pub labels: Selector,
    /// The `fieldSelector` parameter.
    pub fields: Selector,
}

impl Filter {
    fn matches(&self, o: &Stored) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == o.namespace)
            && self.labels.matches_labels(&o.labels)
            && self.fields.matches_fields(&o.namespace, &o.name)
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchStart {
    /// Synthetic ADDED events for every current object first; with
    /// `end_bookmark`, followed by the bookmark that ends a streaming list.
    Current {
        /// Whether to send the `k8s.io/initial-events-end` bookmark.
        end_bookmark: bool,
    },
    /// Every event after this resource version.
    After(u64),
}

struct Watcher {
    kind: Kind,
    filter: Filter,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<Bytes>,
}

/// The state of the fake cluster.
#[derive(Default)]
pub(crate) struct Store {
    rv: u64,
    compacted: u64,
    objects: [BTreeMap<(String, String), Arc<Stored>>; Kind::COUNT],
    history: Vec<Record>,
    watchers: Vec<Watcher>,
}

type Key = (String, String);

impl Store {
    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Creates or replaces an object; returns its new resource version.
    pub fn apply(&mut self, kind: Kind, mut object: Value) -> Result<u64, Error> {
        let meta = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or(Error::Apply {
                kind,
                reason: "no metadata",
            })?;
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return Err(Error::Apply {
                kind,
                reason: "no metadata.name",
            });
        }
        let namespace = match (
            kind.namespaced(),
            meta.get("namespace").and_then(Value::as_str),
        ) {
            (false, _) => String::new(),
            (true, Some(ns)) if !ns.is_empty() => ns.to_owned(),
            (true, _) => "default".to_owned(),
        };
        if kind.namespaced() {
            meta.insert("namespace".into(), json!(namespace));
        }
        let labels = meta
            .get("labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        self.rv += 1;
        let rv = self.rv;
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.entry("uid")
            .or_insert_with(|| json!(format!("00000000-0000-4000-8000-{rv:012}")));
        object["kind"] = json!(kind.name());
        object["apiVersion"] = json!(kind.api_version());
        let json = Bytes::from(serde_json::to_vec(&object).expect("a JSON value serializes"));
        let stored = Arc::new(Stored {
            namespace,
            name,
            labels,
            json,
        });
        let key = (stored.namespace.clone(), stored.name.clone());
        let event = match self.objects[kind.index()].insert(key, stored.clone()) {
            Some(_) => "MODIFIED",
            None => "ADDED",
        };
        self.record(kind, event, stored);
        Ok(rv)
    }

    /// One object's JSON, as a get of it answers.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Bytes> {
        let ns = if kind.namespaced() { namespace } else { "" };
        self.objects[kind.index()]
            .get(&(ns.to_owned(), name.to_owned()))
            .map(|o| o.json.clone())
    }

    /// Deletes an object; returns the resource version of the deletion.
    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> Option<u64> {
        let ns = if kind.namespaced() { namespace } else { "" };
        let old = self.objects[kind.index()].remove(&(ns.to_owned(), name.to_owned()))?;
        self.rv += 1;
        let mut object: Value = serde_json::from_slice(&old.json).expect("stored JSON parses");
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let stored = Arc::new(Stored {
            namespace: old.namespace.clone(),
            name: old.name.clone(),
            labels: old.labels.clone(),
            json: Bytes::from(serde_json::to_vec(&object).expect("a JSON value serializes")),
        });
        self.record(kind, "DELETED", stored);
        Some(self.rv)
    }

    fn record(&mut self, kind: Kind, event: &'static str, object: Arc<Stored>) {
        let line = event_line(event, &object.json);
        self.watchers.retain(|w| {
            if w.kind != kind || !w.filter.matches(&object) {
                return !w.tx.is_closed();
            }
            w.tx.send(line.clone()).is_ok()
        });
        self.history.push(Record {
            kind,
            rv: self.rv,
            event,
            object,
        });
    }

    /// Sends a BOOKMARK at a new resource version to every watch that asked
    /// for bookmarks; returns that resource version.
    pub fn bookmark(&mut self) -> u64 {
        self.rv += 1;
        let rv = self.rv;
        self.watchers
            .retain(|w| !w.bookmarks || w.tx.send(bookmark_line(w.kind, rv, false)).is_ok());
        rv
    }

    /// Forgets the history: a watch resumed from any earlier resource version
    /// gets 410 Gone. Open watches are closed so that their clients resume.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.compacted = self.rv;
        self.history.clear();
        self.watchers.clear();
    }

    /// Ends every open watch stream.
    pub fn close_watches(&mut self) {
        self.watchers.clear();
    }

    /// The number of watches still connected, by kind.
    pub fn open_watches(&self, kind: Kind) -> usize {
        self.watchers
            .iter()
            .filter(|w| w.kind == kind && !w.tx.is_closed())
            .count()
    }

    /// One page of a list, as the JSON body of a `*List`.
    pub fn list(
        &self,
        kind: Kind,
        filter: &Filter,
        limit: Option<usize>,
        cont: Option<&str>,
    ) -> Result<Bytes, Error> {
        let (rv, after) = match cont {
            Some(token) => {
                parse_continue(token).ok_or(Error::BadRequest("invalid continue token"))?
            }
            None => (self.rv, None),
        };
        let objects = &self.objects[kind.index()];
        let range = match &after {
            Some(key) => objects
                .range::<Key, _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded)),
            None => objects.range::<Key, _>(..),
        };
        let mut matching = range.filter(|(_, o)| filter.matches(o));
        let mut items = BytesMut::new();
        let mut last = None;
        for (key, object) in matching.by_ref().take(limit.unwrap_or(usize::MAX)) {
            if last.is_some() {
                items.put_u8(b',');
            }
            items.put_slice(&object.json);
            last = Some(key);
        }
        let more = limit.is_some() && matching.next().is_some();
        let continue_token = match (more, last) {
            (true, Some((ns, name))) => format!("{rv}:{ns}/{name}"),
            _ => String::new(),
        };
        let head = json!({
            "kind": kind.list_name(),
            "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": rv.to_string(), "continue": continue_token},
        });
        let mut body = serde_json::to_vec(&head).expect("a JSON value serializes");
        body.pop(); // the closing brace
        body.extend_from_slice(b",\"items\":[");
        body.extend_from_slice(&items);
        body.extend_from_slice(b"]}");
        Ok(body.into())
    }

    /// Opens a watch: queues its first events and registers it for the rest.
    /// A start before the compaction point yields a 410 ERROR event and ends.
    pub fn watch(
        &mut self,
        kind: Kind,
        filter: Filter,
        start: WatchStart,
        bookmarks: bool,
    ) -> mpsc::UnboundedReceiver<Bytes> {
        let (tx, rx) = mpsc::unbounded_channel();
        match start {
            WatchStart::After(rv) if rv < self.compacted => {
                let _ = tx.send(gone_line(rv, self.compacted));
                return rx;
            }
            WatchStart::After(rv) => {
                let replay = self
                    .history
                    .iter()
                    .filter(|r| r.rv > rv && r.kind == kind && filter.matches(&r.object));
                for r in replay {
                    let _ = tx.send(event_line(r.event, &r.object.json));
                }
            }
            WatchStart::Current { end_bookmark } => {
                for object in self.objects[kind.index()]
                    .values()
                    .filter(|o| filter.matches(o))
                {
                    let _ = tx.send(event_line("ADDED", &object.json));
                }
                if end_bookmark {
                    let _ = tx.send(bookmark_line(kind, self.rv, true));
                }
            }
        }
        self.watchers.push(Watcher {
            kind,
            filter,
            bookmarks,
            tx,
        });
        rx
    }
}

fn parse_continue(token: &str) -> Option<(u64, Option<Key>)> {
    let (rv, key) = token.split_once(':')?;
    let (ns, name) = key.split_once('/')?;
    Some((rv.parse().ok()?, Some((ns.to_owned(), name.to_owned()))))
}

fn event_line(event: &str, object: &[u8]) -> Bytes {
    let mut line = BytesMut::with_capacity(object.len() + 32);
    line.put_slice(b"{\"type\":\"");
    line.put_slice(event.as_bytes());
    line.put_slice(b"\",\"object\":");
    line.put_slice(object);
    line.put_slice(b"}\n");
    line.freeze()
}

fn bookmark_line(kind: Kind, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object =
        json!({"kind": kind.name(), "apiVersion": kind.api_version(), "metadata": metadata});
    event_line(
        "BOOKMARK",
        &serde_json::to_vec(&object).expect("a JSON value serializes"),
    )
}

fn gone_line(rv: u64, compacted: u64) -> Bytes {
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("too old resource version: {rv} ({compacted})"),
        "reason": "Expired",
        "code": 410,
    });
    event_line(
        "ERROR",
        &serde_json::to_vec(&status).expect("a JSON value serializes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ns: &str, name: &str) -> Value {
        json!({"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": "10.0.0.1"}})
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Bytes>) -> Vec<Value> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|l| serde_json::from_slice(&l).unwrap())
            .collect()
    }

    #[test]
    fn list_pages_cover_every_object_once() {
        let mut store = Store::default();
        for i in 0..5 {
            store
                .apply(Kind::Service, service("a", &format!("s{i}")))
                .unwrap();
        }
        let mut names = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let page: Value = serde_json::from_slice(
                &store
                    .list(Kind::Service, &Filter::default(), Some(2), cont.as_deref())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(page["metadata"]["resourceVersion"], "5");
            names.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned()),
            );
            match page["metadata"]["continue"].as_str().unwrap() {
                "" => break,
                c => cont = Some(c.to_owned()),
            }
        }
        assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"]);
    }

    #[test]
    fn watch_replays_history_then_follows() {
        let mut store = Store::default();
        let rv = store.apply(Kind::Service, service("a", "x")).unwrap();
        store.apply(Kind::Service, service("a", "y")).unwrap();
        store
            .apply(Kind::Node, json!({"metadata": {"name": "n"}}))
            .unwrap();
        let mut rx = store.watch(
            Kind::Service,
            Filter::default(),
            WatchStart::After(rv),
            true,
        );
        store.delete(Kind::Service, "a", "x").unwrap();
        let bm = store.bookmark();
        let events = drain(&mut rx);
        let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["ADDED", "DELETED", "BOOKMARK"]);
        assert_eq!(events[0]["object"]["metadata"]["name"], "y");
        assert_eq!(events[1]["object"]["metadata"]["resourceVersion"], "4");
        assert_eq!(
            events[2]["object"]["metadata"]["resourceVersion"],
            bm.to_string()
        );
    }

    #[test]
    fn compaction_makes_old_resource_versions_gone() {
        let mut store = Store::default();
        let rv = store.apply(Kind::Service, service("a", "x")).unwrap();
        let mut open = store.watch(
            Kind::Service,
            Filter::default(),
            WatchStart::After(rv),
            true,
        );
        store.compact();
        assert!(open.try_recv().is_err() && open.is_closed());
        let mut rx = store.watch(
            Kind::Service,
            Filter::default(),
            WatchStart::After(rv),
            true,
        );
        let events = drain(&mut rx);
        assert_eq!(events[0]["type"], "ERROR");
        assert_eq!(events[0]["object"]["code"], 410);
        let now = store.resource_version();
        let mut rx = store.watch(
            Kind::Service,
            Filter::default(),
            WatchStart::After(now),
            true,
        );
        store.apply(Kind::Service, service("a", "z")).unwrap();
        assert_eq!(drain(&mut rx)[0]["type"], "ADDED");
    }
}
