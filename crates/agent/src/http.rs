//! The agent's two HTTP endpoints, as kube-proxy has them: metrics (and
//! debug output) on `--metrics-bind-address`, `/healthz` and `/livez` on
//! `--healthz-bind-address`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::health::Health;
use crate::metrics::render;

/// What the metrics endpoint serves.
#[derive(Clone)]
pub struct MetricsState {
    /// The registry to render on `/metrics`.
    pub registry: Registry,
    /// The JSON of the desired virtual servers with their Services, served on
    /// `/debug/virtual-servers` so `kube-ipvs dump` can name what it shows.
    pub virtual_servers: Arc<Mutex<Arc<String>>>,
}

fn respond(
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
    serve(listener, move |path| match path {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            render(&state.registry),
        ),
        "/proxyMode" => respond(StatusCode::OK, "text/plain", "ipvs"),
        "/debug/virtual-servers" => {
            let body = state
                .virtual_servers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            respond(StatusCode::OK, "application/json", body.as_bytes().to_vec())
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    })
    .await
}

/// Serves `/healthz` and `/livez` on `listener`: 200 while healthy, 503 otherwise.
pub async fn serve_health(listener: TcpListener, health: Health) {
    serve(listener, move |path| match path {
        "/healthz" | "/livez" => {
            let status = health.status();
            let code = if status.healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(code, "application/json", status.body)
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    })
    .await
}

async fn serve<F>(listener: TcpListener, route: F)
where
    F: Fn(&str) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
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
                let response = route(req.uri().path());
                async move { Ok::<_, Infallible>(response) }
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
