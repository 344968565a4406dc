//! `v1` Endpoints as EndpointSlices, the way the cluster's EndpointSlice
//! mirroring controller writes them for Services without a selector.
//!
//! One slice per subset and address family. Addresses are ready, not-ready
//! addresses are `ready: false` (and, as the mirroring controller leaves
//! `serving` and `terminating` unset, never a terminating fallback).
//! Slice names are deterministic, `<endpoints>-<subset>-ipv4|ipv6`, so
//! mirroring the same Endpoints twice gives the same slices; the caller
//! deletes the names a new version no longer produces.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::service::object_ref;
use crate::skip::{SkipKind, SkipReason, Skipped};
use crate::slice::SERVICE_NAME_LABEL;

/// The label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The mirroring controller's name in [`MANAGED_BY_LABEL`].
pub const MIRRORING_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// The label that keeps Endpoints from being mirrored (`"true"`).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// The mirroring controller mirrors at most this many addresses per subset.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;

/// The EndpointSlices mirroring `endpoints`.
pub fn endpoint_slices_from_endpoints(endpoints: &Endpoints) -> Vec<EndpointSlice> {
    mirror_endpoints(endpoints, &mut Vec::new())
}

/// The EndpointSlices mirroring `endpoints`, recording the addresses left
/// out in `skipped`.
pub fn mirror_endpoints(endpoints: &Endpoints, skipped: &mut Vec<Skipped>) -> Vec<EndpointSlice> {
    let labels = endpoints.metadata.labels.clone().unwrap_or_default();
    if labels.get(SKIP_MIRROR_LABEL).is_some_and(|v| v == "true") {
        return Vec::new();
    }
    let (namespace, name) = object_ref(&endpoints.metadata);
    let Some(name) = name else {
        skipped.push(Skipped::new(
            SkipKind::Endpoints,
            format!("{namespace}/"),
            SkipReason::MissingName,
        ));
        return Vec::new();
    };
    let object = format!("{namespace}/{name}");
    let mut out = Vec::new();
    for (i, subset) in endpoints.subsets.iter().flatten().enumerate() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        for (address, ready) in ready.chain(not_ready).take(MAX_ENDPOINTS_PER_SUBSET) {
            match address.ip.trim().parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => v4.push(endpoint(address, ready)),
                Ok(IpAddr::V6(_)) => v6.push(endpoint(address, ready)),
                Err(_) => skipped.push(Skipped::new(
                    SkipKind::Endpoints,
                    object.clone(),
                    SkipReason::InvalidAddress {
                        field: "subsets[].addresses[].ip",
                        value: address.ip.clone(),
                    },
                )),
            }
        }
        for (family, suffix, list) in [("IPv4", "ipv4", v4), ("IPv6", "ipv6", v6)] {
            if list.is_empty() {
                continue;
            }
            let mut labels: BTreeMap<String, String> = labels.clone();
            labels.insert(SERVICE_NAME_LABEL.to_owned(), name.to_owned());
            labels.insert(MANAGED_BY_LABEL.to_owned(), MIRRORING_CONTROLLER.to_owned());
            out.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{i}-{suffix}")),
                    namespace: Some(namespace.clone()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                address_type: family.to_owned(),
                endpoints: Some(list),
                ports: Some(ports.clone()),
            });
        }
    }
    out
}

fn endpoint(address: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![address.ip.trim().to_owned()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..EndpointConditions::default()
        }),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        node_name: address.node_name.clone(),
        target_ref: address.target_ref.clone(),
        ..Endpoint::default()
    }
}
