//! The agent's two HTTP endpoints, as kube-proxy has them: metrics (and
//! debug output) on `--metrics-bind-address`, `/healthz` and `/livez` on
//! `--healthz-bind-address`.

use std::convert::Infallible;

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
    serve(listener, move |path| {
        let state = state.clone();
        async move {
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
    serve(listener, move |path| {
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
    F: Fn(String) -> R + Clone + Send + Sync + 'static,
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
                let response = route(req.uri().path().to_owned());
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
