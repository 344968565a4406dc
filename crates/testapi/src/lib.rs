//! A small Kubernetes API server for tests and benchmarks of kube-ipvs.
//!
//! It speaks the list/watch protocol of the real apiserver for Services,
//! EndpointSlices, Nodes and ConfigMaps over plain HTTP/1.1: paginated lists with a
//! resource version, chunked watch streams of newline-delimited events,
//! bookmarks, `timeoutSeconds`, label and field selectors, and 410 Gone for a
//! watch resumed from before the last compaction.
//!
//! - [`kind`]: the kinds served and their URL paths.
//! - [`selector`]: equality-based label and field selectors.
//! - `store`: objects, event history and open watches.
//! - [`server`]: the HTTP server and the [`TestApiServer`] handle.
//! - [`cluster`]: a generated cluster and a kubeconfig for it.

pub mod cluster;
pub mod kind;
pub mod selector;
pub mod server;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use cluster::{generate, write_kubeconfig, ClusterSpec};
pub use kind::Kind;
pub use server::{Stats, TestApiServer};

/// What can go wrong in the test API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the listening socket failed.
    #[error("binding {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// An object could not be stored.
    #[error("applying a {kind}: {reason}")]
    Apply {
        /// The kind of the object.
        kind: Kind,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The object's kind is not one the server serves.
    #[error("the server does not serve kind {0}")]
    UnknownKind(&'static str),
    /// A request parameter was malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Writing the kubeconfig failed.
    #[error("writing kubeconfig {path}")]
    WriteKubeconfig {
        /// Where it was written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
