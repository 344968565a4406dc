//! The Services' health checks, as kube-proxy's `ServiceHealthServer`
//! (`pkg/proxy/healthcheck/service_health.go`) serves them: one HTTP
//! listener per `LoadBalancer` Service with `externalTrafficPolicy: Local`,
//! on its `healthCheckNodePort` on the node-port addresses, answering any
//! path with 200 while this node has a ready endpoint of the Service (and
//! the proxy is healthy), 503 otherwise, so that a load balancer sends the
//! Service's traffic only to nodes that serve it locally.
//!
//! Each listener has the limits of the agent's other HTTP servers
//! ([`crate::http::Limits`]), its own connections among them, so that one
//! Service's clients cannot take another's.
//!
//! Listeners open and close as Services come and go. A port that cannot be
//! bound is logged, counted and tried again at the next sync; it never stops
//! the agent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use kube_ipvs_controller::{HealthCheck, ServiceRef};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::Chain;
use crate::health::Health;
use crate::http::{serve, Limits};
use crate::metrics::Metrics;

/// Where health checks listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenOn {
    /// Every address of the node (no `--nodeport-addresses`): kube-proxy
    /// listens on the unspecified address.
    Any,
    /// These node addresses (those `--nodeport-addresses` selects).
    Addresses(BTreeSet<IpAddr>),
}

/// The open health checks.
pub struct ServiceHealth {
    health: Health,
    metrics: Metrics,
    open: BTreeMap<ServiceRef, Instance>,
}

/// One Service's listeners. Dropping it closes them.
struct Instance {
    port: u16,
    on: ListenOn,
    local_endpoints: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binding a health check port failed.
#[derive(Debug, thiserror::Error)]
#[error("binding the health check port {address}")]
pub struct BindError {
    /// The address and port.
    pub address: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl ServiceHealth {
    /// No health check open yet; `health` gives `serviceProxyHealthy`.
    pub fn new(health: Health, metrics: Metrics) -> Self {
        ServiceHealth {
            health,
            metrics,
            open: BTreeMap::new(),
        }
    }

    /// The Services with an open health check, and their ports.
    pub fn ports(&self) -> BTreeMap<&ServiceRef, u16> {
        self.open.iter().map(|(s, i)| (s, i.port)).collect()
    }

    /// Makes `wanted` the open health checks, listening `on`: closes the
    /// others, opens the new ones (kube-proxy's `SyncServices`) and sets
    /// each one's local endpoints (`SyncEndpoints`). Must run inside the
    /// tokio runtime.
    pub fn sync(&mut self, wanted: &BTreeMap<ServiceRef, HealthCheck>, on: &ListenOn) {
        self.open.retain(|service, instance| {
            let keep = wanted
                .get(service)
                .is_some_and(|w| w.port == instance.port && instance.on == *on);
            if !keep {
                tracing::info!(service = %service, port = instance.port, "closing health check");
            }
            keep
        });
        for (service, check) in wanted {
            if let Some(instance) = self.open.get(service) {
                instance
                    .local_endpoints
                    .store(check.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match self.listen(service, check, on) {
                Ok(instance) => {
                    tracing::info!(service = %service, port = check.port, "opened health check");
                    self.open.insert(service.clone(), instance);
                }
                Err(e) => {
                    self.metrics.health_check_bind_errors.inc();
                    tracing::warn!(service = %service, error = %Chain(&e), "health check not served; trying again at the next sync");
                }
            }
        }
        self.metrics.health_checks.set(self.open.len() as i64);
    }

    fn listen(
        &self,
        service: &ServiceRef,
        check: &HealthCheck,
        on: &ListenOn,
    ) -> Result<Instance, BindError> {
        let local_endpoints = Arc::new(AtomicUsize::new(check.local_endpoints));
        // Dropped on an error half way: what was opened closes again.
        let mut instance = Instance {
            port: check.port,
            on: on.clone(),
            local_endpoints: local_endpoints.clone(),
            tasks: Vec::new(),
        };
        for listener in bind(on, check.port)? {
            let route = {
                let service = service.clone();
                let local_endpoints = local_endpoints.clone();
                let health = self.health.clone();
                move |_path: String, _peer: std::net::SocketAddr| {
                    let response = answer(
                        &service,
                        local_endpoints.load(Ordering::Relaxed),
                        health.proxy_healthy(),
                    );
                    async move { response }
                }
            };
            instance
                .tasks
                .push(tokio::spawn(serve(listener, Limits::default(), route)));
        }
        Ok(instance)
    }
}

fn bind(on: &ListenOn, port: u16) -> Result<Vec<TcpListener>, BindError> {
    // SO_REUSEPORT: a port that passes from one Service to another in one
    // sync is bound again at once, while the task that served the old
    // listener is still being cancelled and holds it open.
    let one = |address: SocketAddr| {
        let socket = if address.is_ipv6() {
            tokio::net::TcpSocket::new_v6()
        } else {
            tokio::net::TcpSocket::new_v4()
        };
        socket
            .and_then(|s| {
                s.set_reuseaddr(true)?;
                s.set_reuseport(true)?;
                s.bind(address)?;
                s.listen(1024)
            })
            .map_err(|source| BindError { address, source })
    };
    match on {
        // `[::]` takes IPv4 too unless the node has no IPv6.
        ListenOn::Any => one(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))
            .or_else(|_| one(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)))
            .map(|l| vec![l]),
        ListenOn::Addresses(addresses) => addresses
            .iter()
            .map(|a| one(SocketAddr::new(*a, port)))
            .collect(),
    }
}

/// kube-proxy's `hcHandler.ServeHTTP`: the same status, headers and body.
fn answer(
    service: &ServiceRef,
    local_endpoints: usize,
    proxy_healthy: bool,
) -> Response<Full<Bytes>> {
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {local_endpoints},\n\t\"serviceProxyHealthy\": {proxy_healthy}\n}}",
        serde_json::Value::from(service.namespace.as_str()),
        serde_json::Value::from(service.name.as_str()),
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = if local_endpoints != 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "X-Load-Balancing-Endpoint-Weight",
        HeaderValue::from(local_endpoints),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_like_kube_proxy() {
        let web = ServiceRef::new("default", "web");
        let up = answer(&web, 2, true);
        assert_eq!(up.status(), StatusCode::OK);
        assert_eq!(up.headers()["X-Load-Balancing-Endpoint-Weight"], "2");
        assert_eq!(up.headers()["Content-Type"], "application/json");
        assert_eq!(up.headers()["X-Content-Type-Options"], "nosniff");
        assert_eq!(
            answer(&web, 0, true).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            answer(&web, 2, false).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn opens_closes_and_survives_a_taken_port() {
        let metrics = Metrics::unregistered();
        let mut sh = ServiceHealth::new(
            Health::new(std::time::Duration::from_secs(60)),
            metrics.clone(),
        );
        let on = ListenOn::Addresses([IpAddr::from(Ipv4Addr::LOCALHOST)].into());
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let free_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let web = ServiceRef::new("default", "web");
        let db = ServiceRef::new("default", "db");
        let wanted = BTreeMap::from([
            (
                web.clone(),
                HealthCheck {
                    port: free_port,
                    local_endpoints: 1,
                },
            ),
            (
                db.clone(),
                HealthCheck {
                    port: taken_port,
                    local_endpoints: 1,
                },
            ),
        ]);
        sh.sync(&wanted, &on);
        assert_eq!(sh.ports(), BTreeMap::from([(&web, free_port)]));
        assert_eq!(metrics.health_check_bind_errors.get(), 1);
        // Freed: the next sync opens it.
        drop(taken);
        sh.sync(&wanted, &on);
        assert_eq!(sh.ports().len(), 2);
        sh.sync(&BTreeMap::new(), &on);
        assert!(sh.ports().is_empty());
        assert_eq!(metrics.health_checks.get(), 0);
    }
}
