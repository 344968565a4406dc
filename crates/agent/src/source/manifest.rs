//! Manifest files: YAML (several documents each) or JSON, holding Services,
//! EndpointSlices, Nodes, v1 Endpoints (mirrored into EndpointSlices),
//! ConfigMaps (the stream-services ones count) and lists of them. Other
//! kinds are ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use kube_ipvs_controller::StreamConfig;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::documents::FileReader;
use super::index::{FileKeys, Index};
use super::trim::Trim;
use super::unread::{Unneeded, Unread};
use super::yaml;
use super::{Error, SourceEvent};

pub use super::documents::parse_text;

/// Labels whose presence keeps an object out, as [`super::PROXY_LABEL_SELECTOR`]
/// keeps it out of a watch. `service-proxy-name` is not among them: whose
/// Service it is depends on `--service-proxy-name`, and the mapping decides
/// ([`kube_ipvs_controller::Config::proxies`]).
const EXCLUDING_LABELS: [&str; 1] = ["service.kubernetes.io/headless"];

/// A file, or one document of it, that was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// The document at fault (0-based), when the others of the file loaded.
    pub document: Option<usize>,
    /// Why.
    pub reason: FileSkipReason,
    /// The detail, for logs.
    pub message: String,
}

/// Why a file, or a document of it, was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileSkipReason {
    /// The file (or the directory) could not be read.
    Read,
    /// The text is not YAML or JSON, or a document is not a valid object of its kind.
    Parse,
    /// A document lacks what every object needs (`metadata.name`, a list's `items`).
    Invalid,
}

impl FileSkipReason {
    /// The reason as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FileSkipReason::Read => "read",
            FileSkipReason::Parse => "parse",
            FileSkipReason::Invalid => "invalid",
        }
    }
}

impl fmt::Display for FileSkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(document) = self.document {
            write!(f, " (document {document})")?;
        }
        write!(f, ": {}: {}", self.reason, self.message)
    }
}

/// The objects of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices, including those mirrored from Endpoints.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// ConfigMaps.
    pub config_maps: Vec<ConfigMap>,
}

/// Whether a directory entry is a manifest: `*.yaml`, `*.yml` or `*.json`,
/// and not hidden (editors' swap and lock files, `..data` of a mounted
/// ConfigMap).
pub fn is_manifest(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// The manifests of a directory (not its subdirectories), sorted.
pub(crate) fn manifest_paths(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let read_error = |source| Error::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if is_manifest(&path) && !path.is_dir() {
            paths.push(path);
        }
    }
    // In the order of their paths, which all join a name to `dir` the same
    // way: compared as bytes, not component by component.
    paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(paths)
}

type DocumentError = (FileSkipReason, String);

/// What [`Manifest::read_common`] made of a document's tree.
pub(crate) enum Common<'a> {
    /// A common object, read into its type (or left out by a label).
    Read(Manifest),
    /// Another kind of document: its tree, for its value.
    Other(yaml::Node<'a>),
    /// A common kind that does not make a valid object typed: the long
    /// way reads the text again, and reports what is wrong.
    LongWay,
}

impl Manifest {
    /// The object of one YAML document that is a Service, an EndpointSlice
    /// or a Node written in the subset [`yaml::block_subset_node`] reads,
    /// deserialized from that reader's tree without a JSON value between
    /// them; `None` for any other document, and for one that does not make
    /// a valid object (which [`Self::add`] then reads the long way and
    /// reports). What it returns is what [`Self::add`] would have added.
    pub fn from_common(text: &str) -> Option<Manifest> {
        yaml::with_block_subset_node(text, |node| match Manifest::read_common(node?) {
            Common::Read(manifest) => Some(manifest),
            Common::Other(_) | Common::LongWay => None,
        })
    }

    /// [`Self::from_common`] of a document the subset reader has read.
    pub(crate) fn read_common(node: yaml::Node<'_>) -> Common<'_> {
        let (Some(api_version), Some(kind)) = (
            node.get("apiVersion").and_then(yaml::Node::as_str),
            node.get("kind").and_then(yaml::Node::as_str),
        ) else {
            return Common::Other(node);
        };
        let mut manifest = Manifest::default();
        let read = match (api_version, kind) {
            ("v1", "Service") => typed(node).map(|o| manifest.services.extend(o)),
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                typed(node).map(|o| manifest.endpoint_slices.extend(o))
            }
            ("v1", "Node") => typed(node).map(|o| manifest.nodes.extend(o)),
            _ => return Common::Other(node),
        };
        match read {
            Some(()) => Common::Read(manifest),
            None => Common::LongWay,
        }
    }

    /// Adds the objects of `other`.
    pub(crate) fn extend(&mut self, other: Manifest) {
        self.services.extend(other.services);
        self.endpoint_slices.extend(other.endpoint_slices);
        self.nodes.extend(other.nodes);
        self.config_maps.extend(other.config_maps);
    }

    /// Adds the objects of one document; what was wrong with it, if
    /// anything was.
    pub fn add(&mut self, mut document: Value) -> Result<(), (FileSkipReason, String)> {
        if document.is_null() {
            return Ok(());
        }
        let field = |d: &Value, f: &str| {
            d.get(f)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (api_version, kind) = (field(&document, "apiVersion"), field(&document, "kind"));
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Service") => self.services.extend(object(document)?),
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                self.endpoint_slices.extend(object(document)?)
            }
            ("v1", "Node") => self.nodes.extend(object(document)?),
            ("v1", "ConfigMap") => self.config_maps.extend(object(document)?),
            ("v1", "Endpoints") => {
                if let Some(endpoints) = object::<Endpoints>(document)? {
                    self.endpoint_slices.extend(
                        endpoint_slices_from_endpoints(&endpoints)
                            .into_iter()
                            .map(|mut s| {
                                s.trim();
                                s
                            }),
                    );
                }
            }
            (_, list) if list.ends_with("List") => {
                let item_kind = list.strip_suffix("List").filter(|k| !k.is_empty());
                let Some(Value::Array(items)) = document.get_mut("items").map(Value::take) else {
                    return Err((FileSkipReason::Invalid, format!("{kind} without items")));
                };
                for mut item in items {
                    // Items of a typed list may leave their kind implied.
                    if let (Some(k), Some(fields)) = (item_kind, item.as_object_mut()) {
                        fields.entry("kind").or_insert_with(|| k.into());
                        fields
                            .entry("apiVersion")
                            .or_insert_with(|| api_version.clone().into());
                    }
                    self.add(item)?;
                }
            }
            _ => tracing::debug!(api_version, kind, "ignoring a document of another kind"),
        }
        Ok(())
    }
}

/// One object of a known kind: namespaced ones default to `default`, as
/// `kubectl apply` does; objects with an excluding label give `None`.
fn object<K: k8s_openapi::Resource + DeserializeOwned + Unneeded>(
    mut document: Value,
) -> Result<Option<K>, DocumentError> {
    let kind = K::KIND;
    let meta = document
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or((FileSkipReason::Invalid, format!("{kind} without metadata")))?;
    if meta
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err((
            FileSkipReason::Invalid,
            format!("{kind} without metadata.name"),
        ));
    }
    if kind != "Node"
        && meta
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        meta.insert("namespace".into(), "default".into());
    }
    let labels = meta.get("labels").and_then(Value::as_object);
    if let Some(label) = EXCLUDING_LABELS
        .iter()
        .find(|l| labels.is_some_and(|m| m.contains_key(**l)))
    {
        tracing::debug!(kind, name = ?meta.get("name"), label, "not this proxy's object");
        return Ok(None);
    }
    let Unread(mut object) = serde_json::from_value::<Unread<K>>(document)
        .map_err(|e| (FileSkipReason::Parse, format!("{kind}: {e}")))?;
    object.trim();
    Ok(Some(object))
}

/// [`object`] of a document's node, where [`object`] would succeed:
/// `Some(None)` for an object with an excluding label, `None` where
/// [`object`] would fail, or might say something else (a namespace that is
/// not a string, which it replaces).
fn typed<K>(node: yaml::Node<'_>) -> Option<Option<K>>
where
    K: k8s_openapi::Resource + kube::Resource + DeserializeOwned + Unneeded,
{
    let meta = node.get("metadata")?;
    if !matches!(meta, yaml::Node::Map(_))
        || meta
            .get("name")
            .and_then(yaml::Node::as_str)
            .is_none_or(str::is_empty)
    {
        return None;
    }
    let labels = meta.get("labels");
    if EXCLUDING_LABELS
        .iter()
        .any(|l| labels.is_some_and(|m| m.get(l).is_some()))
    {
        return Some(None);
    }
    let Unread::<K>(mut object) = serde::Deserialize::deserialize(node).ok()?;
    if <K as k8s_openapi::Resource>::KIND != "Node" {
        let namespace = &mut object.meta_mut().namespace;
        if namespace.as_deref().is_none_or(str::is_empty) {
            *namespace = Some("default".to_owned());
        }
    }
    object.trim();
    Some(Some(object))
}

/// Endpoints as the EndpointSlice mirroring controller writes them.
fn endpoint_slices_from_endpoints(endpoints: &Endpoints) -> Vec<EndpointSlice> {
    kube_ipvs_controller::endpoint_slices_from_endpoints(endpoints)
}

/// The objects of a directory of manifests, as [`load_dir`] reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirContents {
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices, including those mirrored from Endpoints.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// ConfigMaps.
    pub config_maps: Vec<ConfigMap>,
    /// Files, or documents, that were not used.
    pub errors: Vec<FileError>,
}

/// Reads every manifest of a directory once. Bad files are in
/// [`DirContents::errors`], for the caller to report; only an unreadable
/// directory fails. When files repeat an object, the last file's wins.
pub fn load_dir(dir: &Path) -> Result<DirContents, Error> {
    fn keep<K: ResourceExt>(kept: &mut BTreeMap<(String, String), K>, objects: Vec<K>) {
        for o in objects {
            kept.insert((o.namespace().unwrap_or_default(), o.name_any()), o);
        }
    }
    let (mut services, mut slices, mut nodes, mut config_maps) = Default::default();
    let mut errors = Vec::new();
    for path in manifest_paths(dir)? {
        let mut reader = match FileReader::open(&path) {
            Ok(Some(reader)) => reader,
            Ok(None) => continue,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        while let Some(parsed) = reader.next(&path) {
            errors.extend(parsed.errors);
            let m = parsed.manifest;
            keep(&mut services, m.services);
            keep(&mut slices, m.endpoint_slices);
            keep(&mut nodes, m.nodes);
            keep(&mut config_maps, m.config_maps);
        }
    }
    Ok(DirContents {
        services: services.into_values().collect(),
        endpoint_slices: slices.into_values().collect(),
        nodes: nodes.into_values().collect(),
        config_maps: config_maps.into_values().collect(),
        errors,
    })
}

/// The per-kind indexes of a watched directory.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    services: Index<Service>,
    endpoint_slices: Index<EndpointSlice>,
    nodes: Index<Node>,
    /// Only the stream-services ConfigMaps.
    config_maps: Index<ConfigMap>,
    /// The ConfigMaps to keep and make events of.
    streams: StreamConfig,
}

/// A file's read in progress, for every kind.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    services: FileKeys,
    endpoint_slices: FileKeys,
    nodes: FileKeys,
    config_maps: FileKeys,
}

impl Indexes {
    /// Indexes that keep only the stream-services ConfigMaps `streams`
    /// names, and make their events.
    pub fn new(streams: StreamConfig) -> Self {
        Indexes {
            streams,
            ..Indexes::default()
        }
    }

    /// The stream-services kinds whose ConfigMap is `config_map`.
    fn kinds_of<'a>(
        &'a self,
        config_map: &ConfigMap,
    ) -> impl Iterator<Item = kube_ipvs_controller::StreamKind> + 'a {
        let (namespace, name) = (
            config_map.namespace().unwrap_or_default(),
            config_map.name_any(),
        );
        self.streams
            .config_maps()
            .filter(move |(_, r)| r.namespace == namespace && r.name == name)
            .map(|(kind, _)| kind)
    }

    /// `event`, once per stream-services kind whose ConfigMap it is about.
    fn stream_events(&self, event: Event<ConfigMap>) -> Vec<SourceEvent> {
        let (Event::Apply(c) | Event::Delete(c) | Event::InitApply(c)) = &event else {
            return Vec::new();
        };
        self.kinds_of(c)
            .map(|kind| SourceEvent::StreamServices(kind, event.clone()))
            .collect()
    }

    /// Starts reading `path` again.
    pub fn begin(&mut self, path: &Path) -> Keys {
        Keys {
            services: self.services.begin(path),
            endpoint_slices: self.endpoint_slices.begin(path),
            nodes: self.nodes.begin(path),
            config_maps: self.config_maps.begin(path),
        }
    }

    /// Records one document's objects, its text of fingerprint `print`;
    /// returns the events of those that changed (`InitApply` while
    /// `listing`, else `Apply`), Services first.
    pub fn put(
        &mut self,
        path: &Arc<Path>,
        keys: &mut Keys,
        manifest: Manifest,
        print: u64,
        listing: bool,
    ) -> Vec<SourceEvent> {
        fn wrap<K>(listing: bool) -> impl Fn(K) -> Event<K> {
            move |o| {
                if listing {
                    Event::InitApply(o)
                } else {
                    Event::Apply(o)
                }
            }
        }
        let mut events = Vec::new();
        for s in manifest.services {
            let put = self.services.put(path, &mut keys.services, s, print);
            events.extend(put.map(wrap(listing)).map(SourceEvent::Services));
        }
        for s in manifest.endpoint_slices {
            let put = self
                .endpoint_slices
                .put(path, &mut keys.endpoint_slices, s, print);
            events.extend(put.map(wrap(listing)).map(SourceEvent::EndpointSlices));
        }
        for n in manifest.nodes {
            let put = self.nodes.put(path, &mut keys.nodes, n, print);
            events.extend(put.map(wrap(listing)).map(SourceEvent::Node));
        }
        for c in manifest.config_maps {
            if self.kinds_of(&c).next().is_none() {
                continue;
            }
            if let Some(c) = self.config_maps.put(path, &mut keys.config_maps, c, print) {
                events.extend(self.stream_events(wrap(listing)(c)));
            }
        }
        events
    }

    /// Ends reading `path` (see [`Index::finish`]): the `Delete` events,
    /// and the files to read again for objects they now win.
    pub fn finish(
        &mut self,
        path: &Arc<Path>,
        keys: Keys,
        complete: bool,
    ) -> (Vec<SourceEvent>, Vec<Arc<Path>>) {
        let services = self.services.finish(path, keys.services, complete);
        let slices = self
            .endpoint_slices
            .finish(path, keys.endpoint_slices, complete);
        let nodes = self.nodes.finish(path, keys.nodes, complete);
        let config_maps = self.config_maps.finish(path, keys.config_maps, complete);
        let mut reread = services.reread;
        reread.extend(slices.reread);
        reread.extend(nodes.reread);
        reread.extend(config_maps.reread);
        let mut events: Vec<SourceEvent> = services
            .deletes
            .into_iter()
            .map(SourceEvent::Services)
            .chain(slices.deletes.into_iter().map(SourceEvent::EndpointSlices))
            .chain(nodes.deletes.into_iter().map(SourceEvent::Node))
            .collect();
        for c in config_maps.deletes {
            events.extend(self.stream_events(c));
        }
        (events, reread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  clusterIP: 10.96.0.10
  ports:
  - {name: http, port: 80, targetPort: 8080}
";

    /// A common document read straight into its type holds what the long
    /// way through a JSON value makes of it (the default namespace, an
    /// excluding label, trimming); a document that would fail, or that
    /// the long way reads differently, is left to the long way.
    #[test]
    fn common_documents_read_typed_as_through_a_value() {
        let namespaced = |ns: &str| {
            SERVICE.replace(
                "  name: web\n",
                &format!("  name: web\n  namespace: {ns}\n"),
            )
        };
        let cases: Vec<(String, bool)> = vec![
            (SERVICE.to_owned(), true),
            (namespaced("shop"), true),
            (namespaced("''"), true),
            (namespaced("~"), true),
            // Replaced by `default` the long way; an error typed.
            (namespaced("5"), false),
            (SERVICE.replace("{app: web}", "{service.kubernetes.io/headless: ''}"), true),
            (SERVICE.replace("port: 80,", "port: [80],"), false),
            (SERVICE.replace("  name: web\n", ""), false),
            (SERVICE.replace("  name: web\n", "  name: ''\n"), false),
            ("apiVersion: v1\nkind: Service\nmetadata: web\n".to_owned(), false),
            ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n".to_owned(), false),
            ("apiVersion: v1\nkind: List\nitems: []\n".to_owned(), false),
            ("apiVersion: v1\nkind: Service\nmetadata: {name: &a web}\n".to_owned(), false),
            (
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  conditions: {ready: true}\n  nodeName: n1\n  targetRef: {kind: Pod, name: p}\nports: [{port: 8080}]\n".to_owned(),
                true,
            ),
            // The fields trimming drops are never read, nor checked.
            (
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  nodeName: n1\n  zone: [a]\n  targetRef: 5\nports: [{port: 8080}]\n".to_owned(),
                true,
            ),
            (
                SERVICE.replace(
                    "  labels: {app: web}\n",
                    "  labels: {app: web}\n  managedFields:\n  - manager: kubectl\n    fieldsV1:\n      f:spec: {}\n  annotations: {kubectl.kubernetes.io/last-applied-configuration: '{}', a: b}\n",
                ),
                true,
            ),
            (
                SERVICE.replace(
                    "  labels: {app: web}\n",
                    "  labels: {app: web}\n  managedFields: not a list\n  annotations: {kubectl.kubernetes.io/last-applied-configuration: [1]}\n",
                ),
                true,
            ),
            (
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  annotations: {a: b}\nspec: {podCIDRs: [10.244.0.0/24]}\nstatus:\n  addresses:\n  - {type: InternalIP, address: 192.0.2.1}\n".to_owned(),
                true,
            ),
        ];
        for (text, common) in cases {
            let fast = Manifest::from_common(&text);
            assert_eq!(fast.is_some(), common, "read typed or not:\n{text}");
            let Some(fast) = fast else {
                continue;
            };
            let mut slow = Manifest::default();
            slow.add(yaml::document(&text).expect("YAML"))
                .expect("a valid object");
            assert_eq!(fast, slow, "{text}");
            assert_eq!(
                fast.services.len() + fast.endpoint_slices.len() + fast.nodes.len(),
                usize::from(!text.contains("headless")),
                "{text}"
            );
        }
    }
}
