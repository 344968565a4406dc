//! The store of what the cluster says, in the compact form the mapping
//! reads, kept up to date one watch event at a time.
//!
//! Every change reports the Services (and stream-services entries) it
//! affects. Storing an object equal (once converted) to the stored one
//! reports nothing, which keeps a relist cheap: only what really changed is
//! mapped again.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use foldhash::{HashMap, HashSet, HashSetExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

pub use crate::changed::Changed;
use crate::mirror::mirror_endpoints;
use crate::node::NodeInfo;
use crate::service::{object_ref, ServiceInfo};
use crate::service_ref::{ServiceRef, SliceRef, StreamEntryRef, StreamKind};
use crate::skip::{SkipKind, Skipped};
use crate::slice::{Names, SliceConversion, SliceInfo};
use crate::stream_services::{StreamServices, StreamTarget};

/// A namespace and a name.
type ObjectKey = (String, String);

/// Services, EndpointSlices and the node, as the mapping needs them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    services: BTreeMap<ServiceRef, ServiceInfo>,
    /// Slices by the Service they belong to.
    slices: HashMap<ServiceRef, SliceGroup>,
    /// The Service name each stored slice belongs to, by slice.
    slice_owner: HashMap<ObjectKey, Box<str>>,
    /// The slices mirrored from each Endpoints.
    mirrored: HashMap<ObjectKey, Vec<String>>,
    node: NodeInfo,
    node_addresses: Vec<IpAddr>,
    /// ingress-nginx's stream-services ConfigMaps, one of each kind.
    streams: BTreeMap<StreamKind, StreamServices>,
    skipped: BTreeMap<(SkipKind, String), Vec<Skipped>>,
    names: Names,
}

/// The slices of one Service, sorted by name. Most Services have one to
/// three slices: a sorted vector, grown one at a time, is far smaller.
#[derive(Clone, Debug, Default)]
struct SliceGroup(Vec<(Box<str>, SliceInfo)>);

impl SliceGroup {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    fn get(&self, name: &str) -> Option<&SliceInfo> {
        self.find(name)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, s)| s)
    }

    fn insert(&mut self, name: &str, info: SliceInfo) {
        match self.find(name) {
            Ok(i) => {
                if let Some(slot) = self.0.get_mut(i) {
                    slot.1 = info;
                }
            }
            Err(i) => {
                self.0.reserve_exact(usize::from(self.0.len() < 4));
                self.0.insert(i, (name.into(), info));
            }
        }
    }

    fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.0.remove(i);
        }
    }
}

impl Snapshot {
    /// Forgets node and zone names no endpoint uses any more.
    pub fn prune(&mut self) {
        self.names.prune();
    }

    /// Packs the Services' map, filled one listed object at a time, into
    /// full nodes ([`crate::dense`]).
    pub fn pack(&mut self) {
        crate::dense::pack(&mut self.services);
    }

    /// An empty snapshot.
    pub fn new() -> Self {
        Snapshot::default()
    }

    fn record(&mut self, kind: SkipKind, object: String, skipped: Vec<Skipped>) {
        if skipped.is_empty() {
            self.skipped.remove(&(kind, object));
        } else {
            self.skipped.insert((kind, object), skipped);
        }
    }

    /// Stores a Service (added or modified).
    pub fn apply_service(&mut self, service: &Service) -> Changed {
        let mut skipped = Vec::new();
        let converted = ServiceInfo::from_service(service, &mut skipped);
        let (namespace, name) = object_ref(&service.metadata);
        self.record(
            SkipKind::Service,
            format!("{namespace}/{}", name.unwrap_or_default()),
            skipped,
        );
        let Some((key, info)) = converted else {
            return Changed::default();
        };
        match self.services.get_mut(&key) {
            Some(stored) if *stored == info => Changed::default(),
            Some(stored) => {
                *stored = info;
                Changed::service(key)
            }
            None => {
                self.services.insert(key.clone(), info);
                Changed::service(key)
            }
        }
    }

    /// Forgets a Service.
    pub fn delete_service(&mut self, service: &ServiceRef) -> Changed {
        self.skipped
            .remove(&(SkipKind::Service, service.to_string()));
        match self.services.remove(service) {
            Some(_) => Changed::service(service.clone()),
            None => Changed::default(),
        }
    }

    /// Replaces every Service with a relisted set, reporting only the
    /// Services that were added, changed or removed.
    pub fn replace_services<I>(&mut self, services: I) -> Changed
    where
        I: IntoIterator,
        I::Item: Borrow<Service>,
    {
        let mut changed = Changed::default();
        let mut listed = HashSet::new();
        for service in services {
            let service = service.borrow();
            changed.merge(self.apply_service(service));
            let (namespace, name) = object_ref(&service.metadata);
            listed.insert(ServiceRef::new(namespace, name.unwrap_or_default()));
        }
        changed.merge(self.retain_services(&listed));
        changed
    }

    /// Ends a relist of the Services, each already applied: forgets every
    /// Service the listing did not name, and what was skipped of objects it
    /// did not name (a nameless object is named with an empty name).
    pub fn retain_services(&mut self, listed: &HashSet<ServiceRef>) -> Changed {
        // The few skipped objects are looked up in the listing, not the
        // listing's many names formatted for them.
        self.skipped.retain(|(kind, object), _| {
            *kind != SkipKind::Service
                || object
                    .split_once('/')
                    .is_some_and(|(ns, name)| listed.contains(&ServiceRef::new(ns, name)))
        });
        let gone: Vec<ServiceRef> = self
            .services
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        let mut changed = Changed::default();
        for key in gone {
            changed.merge(self.delete_service(&key));
        }
        changed
    }

    fn store_slice(&mut self, namespace: String, name: String, info: Option<SliceInfo>) -> Changed {
        let mut changed = Changed::default();
        let key = (namespace, name);
        let owner = info
            .as_ref()
            .map(|i| ServiceRef::new(key.0.clone(), &*i.service));
        if let Some(old) = self.slice_owner.get(&key) {
            let old = ServiceRef::new(key.0.clone(), &**old);
            if owner.as_ref() != Some(&old) {
                if let Some(group) = self.slices.get_mut(&old) {
                    group.remove(&key.1);
                    if group.0.is_empty() {
                        self.slices.remove(&old);
                    }
                }
                self.slice_owner.remove(&key);
                changed.services.insert(old);
            }
        }
        let (Some(owner), Some(info)) = (owner, info) else {
            return changed;
        };
        let group = self.slices.entry(owner.clone()).or_default();
        if group.get(key.1.as_str()) == Some(&info) {
            return changed;
        }
        self.slice_owner.insert(key.clone(), info.service.clone());
        self.slices
            .entry(owner.clone())
            .or_default()
            .insert(&key.1, info);
        changed.services.insert(owner);
        changed
    }

    fn apply_slice_as(
        &mut self,
        slice: &EndpointSlice,
        skips: Option<(SkipKind, &str)>,
    ) -> Changed {
        let mut skipped = Vec::new();
        let converted = SliceInfo::from_slice(slice, &mut skipped, &mut self.names);
        let (namespace, name, info) = match converted {
            SliceConversion::Nameless => (object_ref(&slice.metadata).0, String::new(), None),
            SliceConversion::Ignored { namespace, name } => (namespace, name, None),
            SliceConversion::Slice {
                namespace,
                name,
                info,
            } => (namespace, name, Some(info)),
        };
        match skips {
            None => self.record(
                SkipKind::EndpointSlice,
                format!("{namespace}/{name}"),
                skipped,
            ),
            Some((kind, object)) if !skipped.is_empty() => self
                .skipped
                .entry((kind, object.to_owned()))
                .or_default()
                .extend(
                    skipped
                        .into_iter()
                        .map(|s| Skipped::new(kind, object, s.reason)),
                ),
            Some(_) => {}
        }
        if name.is_empty() {
            return Changed::default();
        }
        self.store_slice(namespace, name, info)
    }

    /// Stores an EndpointSlice (added or modified). A slice without a
    /// `kubernetes.io/service-name` label, of a headless Service or of FQDN
    /// addresses is treated as absent.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) -> Changed {
        self.apply_slice_as(slice, None)
    }

    /// Forgets an EndpointSlice.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) -> Changed {
        self.skipped
            .remove(&(SkipKind::EndpointSlice, format!("{namespace}/{name}")));
        self.store_slice(namespace.to_owned(), name.to_owned(), None)
    }

    /// Replaces every EndpointSlice with a relisted set (slices mirrored
    /// from Endpoints stay), reporting only the Services whose slices were
    /// added, changed or removed.
    pub fn replace_slices<I>(&mut self, slices: I) -> Changed
    where
        I: IntoIterator,
        I::Item: Borrow<EndpointSlice>,
    {
        let mut changed = Changed::default();
        let mut listed = HashSet::new();
        for slice in slices {
            let slice = slice.borrow();
            changed.merge(self.apply_slice(slice));
            let (namespace, name) = object_ref(&slice.metadata);
            listed.insert(SliceRef::new(namespace, name.unwrap_or_default()));
        }
        changed.merge(self.retain_slices(&listed));
        changed
    }

    /// Ends a relist of the EndpointSlices, each already applied: forgets
    /// every slice the listing did not name (slices mirrored from Endpoints
    /// stay), and what was skipped of objects it did not name.
    pub fn retain_slices(&mut self, listed: &HashSet<SliceRef>) -> Changed {
        self.skipped.retain(|(kind, object), _| {
            *kind != SkipKind::EndpointSlice
                || object
                    .split_once('/')
                    .is_some_and(|(ns, name)| listed.contains(&SliceRef::new(ns, name)))
        });
        let mirrored: HashSet<ObjectKey> = self
            .mirrored
            .iter()
            .flat_map(|((ns, _), names)| names.iter().map(|n| (ns.clone(), n.clone())))
            .collect();
        let gone: Vec<ObjectKey> = self
            .slice_owner
            .keys()
            .filter(|(namespace, name)| {
                !mirrored.contains(&(namespace.clone(), name.clone()))
                    && !listed.contains(&SliceRef::new(namespace.as_str(), name.as_str()))
            })
            .cloned()
            .collect();
        let mut changed = Changed::default();
        for (namespace, name) in gone {
            changed.merge(self.delete_slice(&namespace, &name));
        }
        self.prune();
        changed
    }

    /// Stores a `v1` Endpoints as the slices the mirroring controller would
    /// write for it (see [`crate::endpoint_slices_from_endpoints`]),
    /// replacing the slices mirrored from its previous version.
    pub fn apply_endpoints(&mut self, endpoints: &Endpoints) -> Changed {
        let (namespace, name) = object_ref(&endpoints.metadata);
        let object = format!("{namespace}/{}", name.unwrap_or_default());
        let mut skipped = Vec::new();
        let slices = mirror_endpoints(endpoints, &mut skipped);
        self.record(SkipKind::Endpoints, object.clone(), skipped);
        let Some(name) = name else {
            return Changed::default();
        };
        let key = (namespace.clone(), name.to_owned());
        let mut changed = Changed::default();
        let mut names = Vec::new();
        for slice in &slices {
            changed.merge(self.apply_slice_as(slice, Some((SkipKind::Endpoints, &object))));
            names.extend(slice.metadata.name.clone());
        }
        for old in self.mirrored.remove(&key).unwrap_or_default() {
            if !names.contains(&old) {
                changed.merge(self.store_slice(namespace.clone(), old, None));
            }
        }
        if !names.is_empty() {
            self.mirrored.insert(key, names);
        }
        changed
    }

    /// Forgets a `v1` Endpoints and the slices mirrored from it.
    pub fn delete_endpoints(&mut self, namespace: &str, name: &str) -> Changed {
        self.skipped
            .remove(&(SkipKind::Endpoints, format!("{namespace}/{name}")));
        let mut changed = Changed::default();
        for slice in self
            .mirrored
            .remove(&(namespace.to_owned(), name.to_owned()))
            .unwrap_or_default()
        {
            changed.merge(self.store_slice(namespace.to_owned(), slice, None));
        }
        changed
    }

    /// Stores the Node the agent runs on. Only its zone matters to the
    /// mapping; a new zone affects every Service. (Its eligibility is for
    /// the health endpoint, read through [`Snapshot::node`].)
    pub fn set_node(&mut self, node: &Node) -> Changed {
        let info = NodeInfo::from_node(node);
        let changed = info.zone != self.node.zone;
        self.node = info;
        Changed {
            all: changed,
            ..Changed::default()
        }
    }

    /// Sets the node's addresses, which NodePort virtual servers listen on:
    /// the local addresses the agent found in the kernel, or
    /// [`crate::node_object_addresses`] for a caller not on the node.
    pub fn set_node_addresses(&mut self, mut addresses: Vec<IpAddr>) -> Changed {
        addresses.sort_unstable();
        addresses.dedup();
        let changed = addresses != self.node_addresses;
        self.node_addresses = addresses;
        Changed {
            all: changed,
            ..Changed::default()
        }
    }

    /// Stores the stream-services ConfigMap of `kind` (added or modified),
    /// replacing the one stored for it, and reports the entries that were
    /// added, changed or removed.
    pub fn apply_stream_services(&mut self, kind: StreamKind, config_map: &ConfigMap) -> Changed {
        let mut skipped = Vec::new();
        let converted = StreamServices::from_config_map(kind, config_map, &mut skipped);
        let skip_kind = SkipKind::from(kind);
        self.skipped.retain(|(k, _), _| *k != skip_kind);
        self.record(skip_kind, String::new(), skipped);
        self.store_stream_services(kind, converted)
    }

    /// Forgets the stream-services ConfigMap of `kind`.
    pub fn delete_stream_services(&mut self, kind: StreamKind) -> Changed {
        let skip_kind = SkipKind::from(kind);
        self.skipped.retain(|(k, _), _| *k != skip_kind);
        self.store_stream_services(kind, None)
    }

    fn store_stream_services(&mut self, kind: StreamKind, new: Option<StreamServices>) -> Changed {
        let old = match new {
            Some(new) => self.streams.insert(kind, new),
            None => self.streams.remove(&kind),
        };
        let new = self.streams.get(&kind);
        let entries = |s: Option<&StreamServices>| -> BTreeMap<StreamEntryRef, StreamTarget> {
            s.into_iter()
                .flat_map(|s| {
                    s.entries.iter().map(|(port, target)| {
                        (
                            StreamEntryRef::new(kind, s.config_map.clone(), *port),
                            target.clone(),
                        )
                    })
                })
                .collect()
        };
        let (before, after) = (entries(old.as_ref()), entries(new));
        let streams = before
            .keys()
            .chain(after.keys())
            .filter(|e| before.get(*e) != after.get(*e))
            .cloned()
            .collect();
        Changed {
            streams,
            ..Changed::default()
        }
    }

    /// Every stream-services entry that parsed, TCP first, by ConfigMap and port.
    pub fn stream_entries(&self) -> impl Iterator<Item = (StreamEntryRef, &StreamTarget)> {
        self.streams.iter().flat_map(|(kind, s)| {
            s.entries.iter().map(|(port, target)| {
                (
                    StreamEntryRef::new(*kind, s.config_map.clone(), *port),
                    target,
                )
            })
        })
    }

    /// What a stored stream-services entry asks for.
    pub fn stream_entry(&self, entry: &StreamEntryRef) -> Option<&StreamTarget> {
        self.streams
            .get(&entry.kind)
            .filter(|s| s.config_map == entry.config_map)?
            .entries
            .get(&entry.port)
    }

    /// A stored Service.
    pub fn service(&self, service: &ServiceRef) -> Option<&ServiceInfo> {
        self.services.get(service)
    }

    /// Every stored Service, by namespace/name.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceRef, &ServiceInfo)> {
        self.services.iter()
    }

    /// The slices of a Service, by slice name.
    pub fn slices_of(&self, service: &ServiceRef) -> impl Iterator<Item = &SliceInfo> {
        self.slices
            .get(service)
            .into_iter()
            .flat_map(|group| group.0.iter().map(|(_, s)| s))
    }

    /// The node's zone and other labels the mapping reads.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// The node's addresses, sorted.
    pub fn node_addresses(&self) -> &[IpAddr] {
        &self.node_addresses
    }

    /// What the stored objects left out when they were converted.
    pub fn skipped(&self) -> impl Iterator<Item = &Skipped> {
        self.skipped.values().flatten()
    }

    /// The number of stored Services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// The number of stored endpoints, across every slice.
    pub fn endpoint_count(&self) -> usize {
        self.slices
            .values()
            .flat_map(|g| g.0.iter().map(|(_, s)| s))
            .map(|s| s.endpoints.len())
            .sum()
    }
}
