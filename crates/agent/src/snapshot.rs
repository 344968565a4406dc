//! Source events applied to the controller's [`Snapshot`], one at a time and
//! synchronously, the way kube-runtime's `reflector::store::Writer::
//! apply_watcher_event` keeps its store: `Apply` and `Delete` change the
//! snapshot at once; a listing (`Init`, `InitApply`..., `InitDone`) is
//! buffered and swapped in whole at `InitDone`, so what the listing did not
//! mention is gone and only what really changed is reported.
//!
//! The writer is the one owner of the relist bookkeeping; the loop, `plan`
//! and `dump --from-dir` all read the snapshot it keeps.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use kube_ipvs_controller::{node_object_addresses, Changed, ServiceRef, Snapshot};

use crate::source::SourceEvent;

/// A listing of one kind in progress: the objects it has delivered so far.
#[derive(Debug)]
struct Listing<K> {
    /// `Some` between `Init` and `InitDone`.
    buffer: Option<Vec<K>>,
    /// Whether a listing of this kind has completed.
    listed: bool,
}

impl<K> Default for Listing<K> {
    fn default() -> Self {
        Listing {
            buffer: None,
            listed: false,
        }
    }
}

impl<K> Listing<K> {
    /// Whether the kind's state is whole: listed once, and not relisting now.
    fn complete(&self) -> bool {
        self.listed && self.buffer.is_none()
    }

    fn begin(&mut self) {
        self.buffer = Some(Vec::new());
    }

    /// Buffers `object`; `Err` gives it back when no listing is in progress.
    fn push(&mut self, object: K) -> Result<(), K> {
        match self.buffer.as_mut() {
            Some(buffer) => {
                buffer.push(object);
                Ok(())
            }
            None => Err(object),
        }
    }

    fn finish(&mut self) -> Vec<K> {
        self.listed = true;
        self.buffer.take().unwrap_or_default()
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
    services: Listing<Service>,
    slices: Listing<EndpointSlice>,
    node: Listing<Node>,
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
        }
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
        self.services.complete() && self.slices.complete() && self.node.complete()
    }

    /// Applies one event; returns the Services it affects. Events that carry
    /// no object (errors) change nothing.
    pub fn apply(&mut self, event: SourceEvent) -> Changed {
        match event {
            SourceEvent::Services(e) => self.services(e),
            SourceEvent::EndpointSlices(e) => self.slices(e),
            SourceEvent::Node(e) => self.node(e),
            SourceEvent::WatchError { .. } | SourceEvent::FileSkipped(_) => Changed::default(),
        }
    }

    fn services(&mut self, event: Event<Service>) -> Changed {
        match event {
            Event::Init => {
                self.services.begin();
                Changed::default()
            }
            Event::InitApply(s) => match self.services.push(s) {
                Ok(()) => Changed::default(),
                Err(s) => self.snapshot.apply_service(&s),
            },
            Event::InitDone => {
                let listed = self.services.finish();
                self.snapshot.replace_services(listed)
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
            Event::InitApply(s) => match self.slices.push(s) {
                Ok(()) => Changed::default(),
                Err(s) => self.snapshot.apply_slice(&s),
            },
            Event::InitDone => {
                let listed = self.slices.finish();
                self.snapshot.replace_slices(listed)
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
            Event::InitApply(n) if n.name_any() == self.node_name => match self.node.push(n) {
                Ok(()) => Changed::default(),
                Err(n) => self.set_node(&n),
            },
            Event::InitDone => {
                let listed = self.node.finish();
                // A listing without our Node means it is gone.
                self.set_node(&listed.into_iter().last().unwrap_or_default())
            }
            Event::Apply(n) if n.name_any() == self.node_name => self.set_node(&n),
            Event::Delete(n) if n.name_any() == self.node_name => self.set_node(&Node::default()),
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
