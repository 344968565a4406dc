//! The agent's two HTTP endpoints, as kube-proxy has them: metrics (and
//! debug output) on `--metrics-bind-address`, `/healthz` and `/livez` on
//! `--healthz-bind-address`.
//!
//! `/debug/virtual-servers` names every Service of the cluster with its
//! addresses. The metrics address is often `0.0.0.0` so that Prometheus can
//! scrape it, which would put that list in reach of every pod; it is served
//! only to clients on the node itself (loopback peers: `kube-ipvs dump`,
//! `kubectl exec`), unless `--debug-allow-remote`. Other clients get 403.
//!
//! Every server, the Services' health checks too, bounds what one client
//! can take of it ([`Limits`]): a client must send its request head within
//! [`HEADER_READ_TIMEOUT`], in at most [`MAX_HEADER_BYTES`], with no body
//! over [`MAX_REQUEST_BODY`]; a server holds at most [`MAX_CONNECTIONS`],
//! and a new client closes the oldest rather than wait; no connection lives
//! past [`MAX_CONNECTION_AGE`]. Each server has its own connections, so a
//! flood of metrics clients cannot take `/healthz`'s. kube-proxy serves
//! these with Go's `http.Server{Handler: ...}` and none of its timeouts:
//! no header timeout, no connection bound, 1 MiB of headers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response, StatusCode};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::agent::DebugRequests;
use crate::health::Health;
use crate::metrics::render;

/// How long a client has to send a request head: from the connection's
/// start, or from the end of the previous response on a kept-alive one (so
/// it bounds idle connections too). A prober sends its head in one packet;
/// a slow or silent client is closed after this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections one server holds. A new client beyond it closes the
/// server's oldest connection instead of waiting behind it: a flood of slow
/// clients delays an honest one by no more than its own exchange. Probers
/// and scrapers use one or a few connections each.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection's life: after it, the connection closes once its request
/// in flight is answered, or after [`HEADER_READ_TIMEOUT`] more if the
/// client does not read the answer. Scrapers reconnect.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);

/// The request head's bytes (request line and headers); more is answered
/// 431 and closed. hyper's smallest read buffer: no request here needs more.
pub const MAX_HEADER_BYTES: usize = 8192;

/// The request body's bytes. No endpoint reads a body; a request declaring
/// more, or one of unknown length (chunked), is answered 413 and closed
/// without being read.
pub const MAX_REQUEST_BODY: u64 = 1024;

/// What one client may take of one HTTP server. [`Default`] is the
/// constants above; tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`MAX_CONNECTIONS`]; at least 1.
    pub max_connections: usize,
    /// See [`MAX_CONNECTION_AGE`].
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_connection_age: MAX_CONNECTION_AGE,
        }
    }
}

/// What the metrics endpoint serves.
#[derive(Clone)]
pub struct MetricsState {
    /// The registry to render on `/metrics`.
    pub registry: Registry,
    /// Asks the loop for the JSON of the desired virtual servers with their
    /// Services, served on `/debug/virtual-servers` so `kube-ipvs dump` can
    /// name what it shows. Built on request: it walks every virtual server.
    pub virtual_servers: DebugRequests,
    /// Serve `/debug/*` to any client, not only loopback ones.
    pub debug_allow_remote: bool,
}

/// Whether a client at `peer` may read `/debug/*`.
pub fn debug_allowed(peer: SocketAddr, allow_remote: bool) -> bool {
    allow_remote
        || match peer.ip() {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
        }
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// Serves `/metrics`, `/proxyMode` and `/debug/virtual-servers` on `listener`.
pub async fn serve_metrics(listener: TcpListener, state: MetricsState, limits: Limits) {
    serve(listener, limits, move |path, peer| {
        let state = state.clone();
        async move {
            if path.starts_with("/debug/") && !debug_allowed(peer, state.debug_allow_remote) {
                return respond(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    "/debug/ is served to the node itself only (see --debug-allow-remote)\n",
                );
            }
            match path.as_str() {
                "/metrics" => respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    render(&state.registry),
                ),
                "/proxyMode" => respond(StatusCode::OK, "text/plain", "ipvs"),
                "/debug/virtual-servers" => {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    let body = match state.virtual_servers.send(reply).await {
                        Ok(()) => answer.await.ok(),
                        Err(_) => None,
                    };
                    match body {
                        Some(json) => respond(StatusCode::OK, "application/json", json),
                        None => respond(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "text/plain",
                            "the agent is not running\n",
                        ),
                    }
                }
                _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
            }
        }
    })
    .await
}

/// Serves `/healthz` and `/livez` on `listener`: 200 while healthy, 503 otherwise.
pub async fn serve_health(listener: TcpListener, health: Health, limits: Limits) {
    serve(listener, limits, move |path, _| {
        let response = health_response(&health, &path);
        async move { response }
    })
    .await
}

fn health_response(health: &Health, path: &str) -> Response<Full<Bytes>> {
    let status = match path {
        "/healthz" => health.status(),
        "/livez" => health.liveness(),
        _ => return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    let code = if status.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = respond(code, "application/json", status.body);
    response.headers_mut().insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Serves HTTP/1 on `listener` within `limits`, answering each request
/// with `route` of its path.
pub(crate) async fn serve<F, R>(listener: TcpListener, limits: Limits, route: F)
where
    F: Fn(String, SocketAddr) -> R + Clone + Send + Sync + 'static,
    R: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                continue;
            }
        };
        let (id, evicted) = Open::admit(&open, limits.max_connections);
        let registered = Registered {
            open: open.clone(),
            id,
        };
        let route = route.clone();
        tokio::spawn(async move {
            let _registered = registered;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = if body_fits(&req) {
                    Err(route(req.uri().path().to_owned(), peer))
                } else {
                    Ok(too_large())
                };
                async move {
                    Ok::<_, Infallible>(match response {
                        Ok(refused) => refused,
                        Err(routed) => routed.await,
                    })
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // Half-close: clients such as `nc` shut their write side once the
            // request is sent and still wait for the answer.
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_HEADER_BYTES)
                .half_close(true)
                .serve_connection(io, service);
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = evicted => {
                    tracing::debug!(%peer, "HTTP connection closed: the server's oldest, at its connection limit");
                    return;
                }
                () = tokio::time::sleep(limits.max_connection_age) => {
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(limits.header_read_timeout, connection).await {
                        Ok(ended) => ended,
                        Err(_) => {
                            tracing::debug!(%peer, "HTTP connection closed: its answer was not read");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

/// Whether the request's body is within [`MAX_REQUEST_BODY`], by what its
/// head declares: the body itself is never read.
fn body_fits(req: &Request<Incoming>) -> bool {
    req.body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_REQUEST_BODY)
}

fn too_large() -> Response<Full<Bytes>> {
    let mut response = respond(
        StatusCode::PAYLOAD_TOO_LARGE,
        "text/plain",
        "no endpoint here takes a request body\n",
    );
    // The body is not read: the connection cannot carry another request.
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// A server's open connections, oldest first, each with the sender whose
/// drop closes it.
#[derive(Default)]
struct Open {
    next: u64,
    connections: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Open {
    /// Registers a new connection, closing the oldest ones beyond `max`.
    fn admit(open: &Mutex<Open>, max: usize) -> (u64, oneshot::Receiver<()>) {
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        while open.connections.len() >= max.max(1) {
            // Dropping the sender wakes the connection's task, which closes it.
            open.connections.pop_first();
        }
        let (evict, evicted) = oneshot::channel();
        let id = open.next;
        open.next += 1;
        open.connections.insert(id, evict);
        (id, evicted)
    }
}

/// Unregisters its connection when the connection's task ends, whichever
/// way it ends.
struct Registered {
    open: Arc<Mutex<Open>>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.connections.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_only_to_loopback_unless_allowed() {
        let peer = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(debug_allowed(peer("127.0.0.1:5000"), false));
        assert!(debug_allowed(peer("[::1]:5000"), false));
        assert!(debug_allowed(peer("[::ffff:127.0.0.1]:5000"), false));
        assert!(!debug_allowed(peer("10.244.1.5:5000"), false));
        assert!(!debug_allowed(peer("[fd00::5]:5000"), false));
        assert!(debug_allowed(peer("10.244.1.5:5000"), true));
    }
}
