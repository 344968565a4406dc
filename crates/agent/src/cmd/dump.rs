//! `kube-ipvs dump`: the virtual servers in the kernel now, named after the
//! Services they serve where the names can be learnt.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use kube_ipvs_controller::{desired, Config, Intent, Snapshot, StreamConfig};
use kube_ipvs_netlink::VirtualServerKey;

use super::print_document;
use crate::cli::DumpArgs;
use crate::dataplane::kernel::KernelDataplane;
use crate::output::{self, Document};
use crate::source::{self, SourceEvent};

/// How long the running agent has to answer `/debug/virtual-servers`.
const DEBUG_VIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the running agent's names could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DebugViewError {
    /// Connecting to the agent failed.
    #[error("connecting to {0}")]
    Connect(SocketAddr, #[source] std::io::Error),
    /// The HTTP exchange failed.
    #[error("asking {0} for /debug/virtual-servers")]
    Http(SocketAddr, #[source] hyper::Error),
    /// The agent answered with an error status.
    #[error("{0} answered /debug/virtual-servers with {1}")]
    Status(SocketAddr, hyper::StatusCode),
    /// The answer is not the document the agent serves.
    #[error("reading the answer of {0}")]
    Decode(SocketAddr, #[source] serde_json::Error),
    /// No answer in time.
    #[error("{0} did not answer within {DEBUG_VIEW_TIMEOUT:?}")]
    Timeout(SocketAddr),
}

/// Prints the kernel's virtual servers.
pub async fn dump(args: DumpArgs) -> Result<ExitCode> {
    let (mut dataplane, _) =
        KernelDataplane::open_existing("kube-ipvs0").context("opening netlink")?;
    let (observed, stats) = dataplane.observe_with_stats().context("dumping IPVS")?;
    let names = service_names(&args).await;
    print_document(
        &output::from_observed(&observed, &names, &stats, args.stats),
        args.output,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Which Service each virtual server serves: from a directory, or from the
/// agent running on this node. Best effort: an unnamed dump is still a
/// dump, and why the names are missing is said once.
async fn service_names(args: &DumpArgs) -> BTreeMap<VirtualServerKey, String> {
    let names = if let Some(dir) = &args.from_dir {
        names_from_dir(dir, StreamConfig::from(&args.streams))
    } else if let Some(addr) = args.metrics_bind_address.0 {
        fetch_debug_view(addr)
            .await
            .map(output::names_from_document)
            .map_err(anyhow::Error::from)
    } else {
        Ok(BTreeMap::new())
    };
    names.unwrap_or_else(|e| {
        eprintln!("kube-ipvs: virtual servers left unnamed: {e:#}");
        BTreeMap::new()
    })
}

/// The names the directory's Services (and stream-services entries) give,
/// mapped for this host.
fn names_from_dir(
    dir: &std::path::Path,
    streams: StreamConfig,
) -> Result<BTreeMap<VirtualServerKey, String>> {
    let node = super::node_name(&crate::cli::SourceArgs::default()).unwrap_or_default();
    let contents = source::load_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for error in contents.errors {
        SourceEvent::FileSkipped(error).log_failure();
    }
    let mut snapshot = Snapshot::new();
    snapshot.replace_services(contents.services.iter());
    snapshot.replace_slices(contents.endpoint_slices.iter());
    for (kind, r) in streams.config_maps() {
        let named = |c: &&k8s_openapi::api::core::v1::ConfigMap| {
            c.metadata.namespace.as_deref() == Some(&*r.namespace)
                && c.metadata.name.as_deref() == Some(&*r.name)
        };
        if let Some(config_map) = contents.config_maps.iter().find(named) {
            snapshot.apply_stream_services(kind, config_map);
        }
    }
    let config = Config {
        streams,
        ..Config::new(node)
    };
    Ok(output::names_from_intent(&Intent::new(desired(
        &snapshot, &config,
    ))))
}

/// `GET /debug/virtual-servers` from the agent at `addr`.
pub async fn fetch_debug_view(addr: SocketAddr) -> Result<Document, DebugViewError> {
    tokio::time::timeout(DEBUG_VIEW_TIMEOUT, get_debug_view(addr))
        .await
        .map_err(|_| DebugViewError::Timeout(addr))?
}

async fn get_debug_view(addr: SocketAddr) -> Result<Document, DebugViewError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| DebugViewError::Connect(addr, e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| DebugViewError::Http(addr, e))?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get("/debug/virtual-servers")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a static request is valid");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| DebugViewError::Http(addr, e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| DebugViewError::Http(addr, e))?
        .to_bytes();
    connection.abort();
    if !status.is_success() {
        return Err(DebugViewError::Status(addr, status));
    }
    serde_json::from_slice(&body).map_err(|e| DebugViewError::Decode(addr, e))
}
