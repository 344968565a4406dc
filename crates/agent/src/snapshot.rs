//! Source events applied to the controller's [`Snapshot`], one at a time and
//! synchronously, the way kube-runtime's `reflector::store::Writer::
//! apply_watcher_event` keeps its store: `Apply` and `Delete` change the
//! snapshot at once; a listing (`Init`, `InitApply`..., `InitDone`) is
//! buffered and swapped in at `InitDone`, so what the listing did not
//! mention is gone and only what really changed is reported.
//!
//! Services and slices are converted as they arrive, so the buffer of a
//! relist holds only the typed references it named, not the objects: at
//! 10,000 Services a buffer of whole objects would double the peak memory
//! of the first listing. At `InitDone` the snapshot forgets what the
//! listing did not name ([`Snapshot::retain_services`]), the same step
//! [`Snapshot::replace_services`] ends with. While a relist is under way
//! the snapshot is not [`SnapshotWriter::initialized`], so no sync sees a
//! half-listed state. The Node is one object, buffered whole, and so is
//! each stream-services ConfigMap.
//!
//! The writer is the one owner of the relist bookkeeping; the loop and
//! `plan` read the snapshot it keeps.

use std::collections::BTreeMap;

use foldhash::HashSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube::ResourceExt;

use kube_ipvs_controller::{
    node_object_addresses, Changed, ConfigMapRef, ServiceRef, SliceRef, Snapshot, StreamConfig,
    StreamKind,
};

use crate::source::SourceEvent;

/// A listing of one kind in progress: what it has named so far.
#[derive(Debug)]
struct Listing<T> {
    /// `Some` between `Init` and `InitDone`.
    listed: Option<T>,
    /// Whether a listing of this kind has completed.
    done: bool,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing {
            listed: None,
            done: false,
        }
    }
}

impl<T: Default> Listing<T> {
    /// Whether the kind's state is whole: listed once, and not relisting now.
    fn complete(&self) -> bool {
        self.done && self.listed.is_none()
    }

    fn begin(&mut self) {
        self.listed = Some(T::default());
    }

    fn finish(&mut self) -> T {
        self.done = true;
        self.listed.take().unwrap_or_default()
    }
}

/// Where the node's addresses come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAddresses {
    /// From the kernel, set by the caller ([`Snapshot::set_node_addresses`]):
    /// the agent on its node.
    Kernel,
    /// From the Node object's `status.addresses`: `plan`, off the node.
    NodeObject,
}

/// Keeps a [`Snapshot`] up to date from [`SourceEvent`]s.
#[derive(Debug)]
pub struct SnapshotWriter {
    snapshot: Snapshot,
    node_name: String,
    node_addresses: NodeAddresses,
    services: Listing<HashSet<ServiceRef>>,
    slices: Listing<HashSet<SliceRef>>,
    node: Listing<Option<Node>>,
    /// The stream-services ConfigMap of each configured kind, and its listing.
    streams: BTreeMap<StreamKind, (ConfigMapRef, Listing<Option<ConfigMap>>)>,
}

impl SnapshotWriter {
    /// A writer for the agent on node `node_name` (other Nodes are ignored).
    pub fn new(node_name: impl Into<String>, node_addresses: NodeAddresses) -> Self {
        SnapshotWriter {
            snapshot: Snapshot::new(),
            node_name: node_name.into(),
            node_addresses,
            services: Listing::default(),
            slices: Listing::default(),
            node: Listing::default(),
            streams: BTreeMap::new(),
        }
    }

    /// Also takes the stream-services ConfigMaps `streams` names (other
    /// ConfigMaps are ignored), and is whole only once each is listed.
    pub fn with_streams(mut self, streams: &StreamConfig) -> Self {
        self.streams = streams
            .config_maps()
            .map(|(kind, r)| (kind, (r.clone(), Listing::default())))
            .collect();
        self
    }

    /// The snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The snapshot, to set what does not come from the sources (the node's
    /// addresses in the kernel).
    pub fn snapshot_mut(&mut self) -> &mut Snapshot {
        &mut self.snapshot
    }

    /// The snapshot, once the writer is done.
    pub fn into_snapshot(self) -> Snapshot {
        self.snapshot
    }

    /// Whether every kind has been listed and none is being relisted: the
    /// snapshot is a whole picture of the sources.
    pub fn initialized(&self) -> bool {
        self.services.complete()
            && self.slices.complete()
            && self.node.complete()
            && self.streams.values().all(|(_, l)| l.complete())
    }

    /// Applies one event; returns the Services it affects. Events that carry
    /// no object (errors) change nothing.
    pub fn apply(&mut self, event: SourceEvent) -> Changed {
        match event {
            SourceEvent::Services(e) => self.services(e),
            SourceEvent::EndpointSlices(e) => self.slices(e),
            SourceEvent::Node(e) => self.node(e),
            SourceEvent::StreamServices(kind, e) => self.stream_services(kind, e),
            SourceEvent::WatchError { .. } | SourceEvent::FileSkipped(_) => Changed::default(),
        }
    }

    fn services(&mut self, event: Event<Service>) -> Changed {
        match event {
            Event::Init => {
                self.services.begin();
                Changed::default()
            }
            Event::InitApply(s) => {
                if let Some(listed) = self.services.listed.as_mut() {
                    listed.insert(ServiceRef::new(
                        s.namespace().unwrap_or_default(),
                        s.name_any(),
                    ));
                }
                self.snapshot.apply_service(&s)
            }
            Event::InitDone => {
                let listed = self.services.finish();
                self.snapshot.retain_services(&listed)
            }
            Event::Apply(s) => self.snapshot.apply_service(&s),
            Event::Delete(s) => self.snapshot.delete_service(&ServiceRef::new(
                s.namespace().unwrap_or_default(),
                s.name_any(),
            )),
        }
    }

    fn slices(&mut self, event: Event<EndpointSlice>) -> Changed {
        match event {
            Event::Init => {
                self.slices.begin();
                Changed::default()
            }
            Event::InitApply(s) => {
                if let Some(listed) = self.slices.listed.as_mut() {
                    listed.insert(SliceRef::new(
                        s.namespace().unwrap_or_default(),
                        s.name_any(),
                    ));
                }
                self.snapshot.apply_slice(&s)
            }
            Event::InitDone => {
                let listed = self.slices.finish();
                self.snapshot.retain_slices(&listed)
            }
            Event::Apply(s) => self.snapshot.apply_slice(&s),
            Event::Delete(s) => self
                .snapshot
                .delete_slice(&s.namespace().unwrap_or_default(), &s.name_any()),
        }
    }

    fn node(&mut self, event: Event<Node>) -> Changed {
        match event {
            Event::Init => {
                self.node.begin();
                Changed::default()
            }
            // The directory source yields every Node it finds; only ours counts.
            Event::InitApply(n) if n.name_any() == self.node_name => {
                match self.node.listed.as_mut() {
                    Some(listed) => {
                        *listed = Some(n);
                        Changed::default()
                    }
                    None => self.set_node(&n),
                }
            }
            Event::InitDone => {
                // A listing without our Node means it is gone.
                let listed = self.node.finish();
                self.set_node(&listed.unwrap_or_default())
            }
            Event::Apply(n) if n.name_any() == self.node_name => self.set_node(&n),
            Event::Delete(n) if n.name_any() == self.node_name => self.set_node(&Node::default()),
            Event::InitApply(_) | Event::Apply(_) | Event::Delete(_) => Changed::default(),
        }
    }

    fn stream_services(&mut self, kind: StreamKind, event: Event<ConfigMap>) -> Changed {
        let Some((name, listing)) = self.streams.get_mut(&kind) else {
            return Changed::default();
        };
        let ours = |c: &ConfigMap| {
            c.namespace().as_deref() == Some(&*name.namespace) && c.name_any() == name.name
        };
        match event {
            Event::Init => {
                listing.begin();
                Changed::default()
            }
            Event::InitApply(c) if ours(&c) => match listing.listed.as_mut() {
                Some(listed) => {
                    *listed = Some(c);
                    Changed::default()
                }
                None => self.snapshot.apply_stream_services(kind, &c),
            },
            Event::InitDone => match listing.finish() {
                // A listing without the ConfigMap means it is gone.
                Some(c) => self.snapshot.apply_stream_services(kind, &c),
                None => self.snapshot.delete_stream_services(kind),
            },
            Event::Apply(c) if ours(&c) => self.snapshot.apply_stream_services(kind, &c),
            Event::Delete(c) if ours(&c) => self.snapshot.delete_stream_services(kind),
            Event::InitApply(_) | Event::Apply(_) | Event::Delete(_) => Changed::default(),
        }
    }

    fn set_node(&mut self, node: &Node) -> Changed {
        let mut changed = self.snapshot.set_node(node);
        if self.node_addresses == NodeAddresses::NodeObject {
            changed.merge(
                self.snapshot
                    .set_node_addresses(node_object_addresses(node)),
            );
        }
        changed
    }
}
