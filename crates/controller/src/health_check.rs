//! The Services whose health check this node serves on their
//! `healthCheckNodePort`, and how many ready endpoints each has here: what
//! kube-proxy's `ServiceHealthServer` (`pkg/proxy/healthcheck/
//! service_health.go`) is given by `SyncServices` and `SyncEndpoints`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use crate::config::Config;
use crate::service_ref::ServiceRef;
use crate::skip::{SkipKind, SkipReason, Skipped};
use crate::snapshot::Snapshot;

/// One Service's health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// `spec.healthCheckNodePort`.
    pub port: u16,
    /// Ready endpoints on this node (each address once, whatever its
    /// ports): 0 answers 503, so load balancers skip the node.
    pub local_endpoints: usize,
}

/// The health checks of every Service of ours with a `healthCheckNodePort`
/// (`LoadBalancer`, `externalTrafficPolicy: Local`). A port outside
/// `node_ports`, or held by another Service (the first by namespace/name
/// keeps its health check port, and a node port is never given up), is
/// recorded in `skipped` and its Service gets no health check; every other
/// Service keeps its own.
pub fn health_checks(
    snapshot: &Snapshot,
    config: &Config,
    node_ports: &RangeInclusive<u16>,
    skipped: &mut Vec<Skipped>,
) -> BTreeMap<ServiceRef, HealthCheck> {
    let ours = || {
        snapshot
            .services()
            .filter(|(_, i)| i.proxied() && config.proxies(i.proxy_name.as_deref()))
    };
    // Node ports hold TCP and UDP alike on the node's addresses: a health
    // check listening on one would never see its probes.
    let mut owners: BTreeMap<u16, &ServiceRef> = BTreeMap::new();
    for (service, info) in ours() {
        for port in info.ports.iter().filter_map(|p| p.node_port) {
            owners.entry(port).or_insert(service);
        }
    }
    let mut out = BTreeMap::new();
    for (service, info) in ours() {
        let Some(port) = info.health_check_node_port else {
            continue;
        };
        let reason = if !node_ports.contains(&port) {
            Some(SkipReason::HealthCheckPortOutOfRange {
                port,
                low: *node_ports.start(),
                high: *node_ports.end(),
            })
        } else {
            match owners.get(&port) {
                Some(owner) if *owner != service => Some(SkipReason::HealthCheckPortTaken {
                    port,
                    owner: (*owner).clone(),
                }),
                _ => None,
            }
        };
        if let Some(reason) = reason {
            skipped.push(Skipped::new(SkipKind::Service, service.to_string(), reason));
            continue;
        }
        owners.insert(port, service);
        let local: BTreeSet<IpAddr> = snapshot
            .slices_of(service)
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.ready && e.node.as_deref() == Some(config.node_name.as_str()))
            .map(|e| e.address)
            .collect();
        out.insert(
            service.clone(),
            HealthCheck {
                port,
                local_endpoints: local.len(),
            },
        );
    }
    out
}
