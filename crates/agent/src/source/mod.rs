//! Where the agent's input comes from: the Kubernetes API or a directory of
//! manifests. Both yield one stream of [`SourceEvent`]s with kube-runtime's
//! watcher semantics per kind: `Init`, `InitApply`..., `InitDone` for the
//! initial state (and again on every relist), then `Apply`/`Delete`. The
//! stream-services ConfigMaps (ingress-nginx's `--tcp-services-configmap`
//! and `--udp-services-configmap`) count as a kind each.
//!
//! - [`cluster`]: watches on the API server ([`kube_source`], [`client`]).
//! - `client`: the API client as kube-proxy's options make it
//!   ([`client_with`]: kubeconfig, `--master`, qps and burst).
//! - [`manifest`]: parsing manifest files ([`load_dir`]).
//! - [`dir`]: a watched directory of manifests ([`dir_source`]).
//! - `documents`: a manifest file read one document at a time.
//! - `index`: which file contributed which object, by fingerprint.
//! - `trim`: dropping the fields the agent never reads.
//! - `unread`: decoding API objects without them.
//! - [`yaml`]: a document's YAML, the common part read without a general parser.

mod client;
pub mod cluster;
pub mod dir;
mod documents;
mod index;
pub mod manifest;
mod trim;
mod unread;
pub mod yaml;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube_ipvs_controller::StreamKind;

pub use client::{client_with, ClientSettings, RateLimitLayer};
pub use cluster::{client, kube_source, proxy_label_selector, PROXY_LABEL_SELECTOR};
pub use dir::dir_source;
pub use manifest::{load_dir, DirContents, FileError, FileSkipReason};

/// One event from a source.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "each event is moved once, from the source to the loop; boxing every Node would \
              only part `Node` from kube-runtime's `Event<Node>`"
)]
pub enum SourceEvent {
    /// A change to the Services.
    Services(Event<Service>),
    /// A change to the EndpointSlices.
    EndpointSlices(Event<EndpointSlice>),
    /// A change to the Node: the agent's own one from the API; every Node
    /// of the directory from [`dir_source`].
    Node(Event<Node>),
    /// A change to the stream-services ConfigMap of a kind: the one the
    /// flag names, and no other.
    StreamServices(StreamKind, Event<ConfigMap>),
    /// A list or watch on the API failed. The source goes on by itself,
    /// retrying with backoff; a relist then starts with a fresh `Init`.
    WatchError {
        /// The resource watched: `"Service"`, `"EndpointSlice"`, `"Node"`
        /// or `"ConfigMap"`.
        resource: &'static str,
        /// What failed, as a metric label ([`cluster::error_kind`]).
        kind: &'static str,
        /// The error, for the one log line the consumer writes.
        error: std::sync::Arc<kube::runtime::watcher::Error>,
    },
    /// A file, or one document of it, was not used; everything else loads.
    FileSkipped(FileError),
}

impl SourceEvent {
    /// Logs a source's own failure (a failed list or watch, a file not
    /// used), the one place it is logged, and gives its metric labels:
    /// `None` for events that carry objects.
    pub fn log_failure(&self) -> Option<Failure> {
        match self {
            SourceEvent::WatchError {
                resource,
                kind,
                error,
            } => {
                tracing::warn!(resource, kind, error = %crate::error::Chain(&**error), "watch failed; the source retries");
                Some(Failure::Watch { resource, kind })
            }
            SourceEvent::FileSkipped(error) => {
                tracing::warn!(file = %error.path.display(), document = error.document, reason = error.reason.as_str(), message = %error.message, "skipping manifest");
                Some(Failure::File(error.reason))
            }
            _ => None,
        }
    }

    /// Whether this event ends the initial (or a re-)listing of its kind.
    pub fn is_init_done(&self) -> bool {
        matches!(
            self,
            SourceEvent::Services(Event::InitDone)
                | SourceEvent::EndpointSlices(Event::InitDone)
                | SourceEvent::Node(Event::InitDone)
                | SourceEvent::StreamServices(_, Event::InitDone)
        )
    }
}

/// A source's own failure, as metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A list or watch of `resource` failed with `kind`.
    Watch {
        /// The resource.
        resource: &'static str,
        /// The kind of error ([`cluster::error_kind`]).
        kind: &'static str,
    },
    /// A file, or a document of it, was not used.
    File(FileSkipReason),
}

/// What can go wrong setting a source up. Failures once a source runs are
/// reported in its stream instead ([`SourceEvent::WatchError`],
/// [`SourceEvent::FileSkipped`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the given kubeconfig failed.
    #[error("reading kubeconfig {path}")]
    ReadKubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No client configuration: none given, none in the environment, and
    /// not in a cluster.
    #[error("inferring the Kubernetes client configuration")]
    InferConfig(#[source] kube::config::InferConfigError),
    /// Building the client from its configuration failed.
    #[error("building the Kubernetes client")]
    BuildClient(#[source] kube::Error),
    /// `--master` is not a URL.
    #[error("--master {0:?} is not a URL")]
    Master(String, #[source] hyper::http::uri::InvalidUri),
    /// Listing the manifest directory failed.
    #[error("reading directory {path}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
