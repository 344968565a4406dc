//! The agent's two HTTP endpoints, as kube-proxy has them: metrics (and
//! debug output) on `--metrics-bind-address`, `/healthz` and `/livez` on
//! `--healthz-bind-address`.
//!
//! `/debug/virtual-servers` names every Service of the cluster with its
//! addresses. The metrics address is often `0.0.0.0` so that Prometheus can
//! scrape it, which would put that list in reach of every pod; it is served
//! only to clients on the node itself (loopback peers: `kube-ipvs dump`,
//! `kubectl exec`), unless `--debug-allow-remote`. Other clients get 403.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::agent::DebugRequests;
use crate::health::Health;
use crate::metrics::render;

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
pub async fn serve_metrics(listener: TcpListener, state: MetricsState) {
    serve(listener, move |path, peer| {
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
pub async fn serve_health(listener: TcpListener, health: Health) {
    serve(listener, move |path, _| {
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

/// Serves HTTP/1 on `listener`, answering each request with `route` of its path.
pub(crate) async fn serve<F, R>(listener: TcpListener, route: F)
where
    F: Fn(String, SocketAddr) -> R + Clone + Send + Sync + 'static,
    R: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                continue;
            }
        };
        let route = route.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = route(req.uri().path().to_owned(), peer);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // Half-close: clients such as `nc` shut their write side once the
            // request is sent and still wait for the answer.
            let connection = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(io, service);
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
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
