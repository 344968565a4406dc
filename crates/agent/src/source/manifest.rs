//! Manifest files: YAML (several documents each) or JSON, holding Services,
//! EndpointSlices, Nodes, v1 Endpoints (mirrored into EndpointSlices),
//! ConfigMaps (the stream-services ones count) and lists of them. Other
//! kinds are ignored.

use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use kube_ipvs_controller::{ConfigMapRef, StreamConfig};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::index::Index;
use super::trim::Trim;
use super::Error;

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

/// What reading one file gave.
#[derive(Debug)]
pub(crate) enum FileRead {
    /// The file is not there (any more).
    Missing,
    /// The file could not be used at all.
    Failed(FileError),
    /// Its objects, and the documents that could not be used.
    Loaded(Manifest, Vec<FileError>),
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
    paths.sort();
    Ok(paths)
}

/// Reads and parses one file.
pub(crate) fn read(path: &Path) -> FileRead {
    match std::fs::read_to_string(path) {
        Ok(text) => match parse(path, &text) {
            Ok((manifest, errors)) => FileRead::Loaded(manifest, errors),
            Err(error) => FileRead::Failed(error),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileRead::Missing,
        Err(e) => FileRead::Failed(FileError {
            path: path.to_owned(),
            document: None,
            reason: FileSkipReason::Read,
            message: e.to_string(),
        }),
    }
}

/// Parses the text of one file: JSON if it is named `*.json`, else YAML.
/// A syntax error fails the whole file; a document that is not a valid
/// object of its kind is reported alone.
pub fn parse(path: &Path, text: &str) -> Result<(Manifest, Vec<FileError>), FileError> {
    let failed = |message: String| FileError {
        path: path.to_owned(),
        document: None,
        reason: FileSkipReason::Parse,
        message,
    };
    let documents: Vec<Value> = if path.extension().is_some_and(|e| e == "json") {
        vec![serde_json::from_str(text).map_err(|e| failed(e.to_string()))?]
    } else {
        // The files are the operator's own, and may be large: no budget.
        let mut options = serde_saphyr::Options::default();
        options.budget = None;
        serde_saphyr::from_multiple_with_options(text, options)
            .map_err(|e| failed(e.to_string()))?
    };
    let mut manifest = Manifest::default();
    let mut errors = Vec::new();
    let single = documents.len() == 1;
    for (i, document) in documents.into_iter().enumerate() {
        if let Err((reason, message)) = manifest.add(document) {
            errors.push(FileError {
                path: path.to_owned(),
                document: (!single).then_some(i),
                reason,
                message,
            });
        }
    }
    Ok((manifest, errors))
}

type DocumentError = (FileSkipReason, String);

impl Manifest {
    fn add(&mut self, mut document: Value) -> Result<(), DocumentError> {
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
fn object<K: k8s_openapi::Resource + DeserializeOwned + Trim>(
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
    let mut object: K = serde_json::from_value(document)
        .map_err(|e| (FileSkipReason::Parse, format!("{kind}: {e}")))?;
    object.trim();
    Ok(Some(object))
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
/// directory fails.
pub fn load_dir(dir: &Path) -> Result<DirContents, Error> {
    let mut indexes = Indexes::default();
    let mut errors = Vec::new();
    for path in manifest_paths(dir)? {
        match read(&path) {
            FileRead::Missing => {}
            FileRead::Failed(error) => errors.push(error),
            FileRead::Loaded(manifest, file_errors) => {
                errors.extend(file_errors);
                indexes.replace(&path, manifest);
            }
        }
    }
    Ok(DirContents {
        services: indexes.services.objects().cloned().collect(),
        endpoint_slices: indexes.endpoint_slices.objects().cloned().collect(),
        nodes: indexes.nodes.objects().cloned().collect(),
        config_maps: indexes.config_maps.objects().cloned().collect(),
        errors,
    })
}

/// The per-kind indexes of a directory, and which ConfigMaps are the
/// stream-services ones.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    pub services: Index<Service>,
    pub endpoint_slices: Index<EndpointSlice>,
    pub nodes: Index<Node>,
    /// Every ConfigMap ([`load_dir`]), or only the stream-services ones
    /// (a watched directory, [`Indexes::new`]).
    pub config_maps: Index<ConfigMap>,
    /// `Some` for a watched directory: the ConfigMaps it keeps and makes
    /// events of.
    pub streams: Option<StreamConfig>,
}

impl Indexes {
    /// Indexes that keep only the stream-services ConfigMaps `streams`
    /// names, and make their events.
    pub fn new(streams: StreamConfig) -> Self {
        Indexes {
            streams: Some(streams),
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
            .iter()
            .flat_map(|s| s.config_maps())
            .filter(move |(_, r)| r.namespace == namespace && r.name == name)
            .map(|(kind, _)| kind)
    }

    /// `event`, once per stream-services kind whose ConfigMap it is about.
    fn stream_events(&self, event: Event<ConfigMap>) -> Vec<super::SourceEvent> {
        let (Event::Apply(c) | Event::Delete(c) | Event::InitApply(c)) = &event else {
            return Vec::new();
        };
        self.kinds_of(c)
            .map(|kind| super::SourceEvent::StreamServices(kind, event.clone()))
            .collect()
    }

    /// The stream-services ConfigMap `r` names, if the directory holds it.
    pub fn config_map(&self, r: &ConfigMapRef) -> Option<&ConfigMap> {
        self.config_maps.get(&r.namespace, &r.name)
    }

    /// Replaces what `path` contributes; returns the resulting events.
    pub fn replace(&mut self, path: &Path, manifest: Manifest) -> Vec<super::SourceEvent> {
        use super::SourceEvent;
        let services = self
            .services
            .replace(path, manifest.services)
            .into_iter()
            .map(SourceEvent::Services);
        let slices = self
            .endpoint_slices
            .replace(path, manifest.endpoint_slices)
            .into_iter()
            .map(SourceEvent::EndpointSlices);
        let nodes = self
            .nodes
            .replace(path, manifest.nodes)
            .into_iter()
            .map(SourceEvent::Node);
        let mut config_maps = manifest.config_maps;
        if self.streams.is_some() {
            config_maps.retain(|c| self.kinds_of(c).next().is_some());
        }
        let config_maps: Vec<SourceEvent> = self
            .config_maps
            .replace(path, config_maps)
            .into_iter()
            .flat_map(|e| self.stream_events(e))
            .collect();
        // Services first, so that a slice never arrives before its Service.
        services
            .chain(slices)
            .chain(nodes)
            .chain(config_maps)
            .collect()
    }
}
