//! An EndpointSlice, reduced to what the mapping needs.

use std::net::IpAddr;
use std::sync::Arc;

use foldhash::HashSet;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use kube_ipvs_model::{AddressFamily, Protocol};

use crate::service::{object_ref, port_number, protocol, valid_label_value};
use crate::skip::{SkipKind, SkipReason, Skipped};

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label the EndpointSlice controller puts on slices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// What the mapping needs of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceInfo {
    /// The Service it belongs to (`kubernetes.io/service-name`), in the
    /// slice's namespace.
    pub service: Box<str>,
    /// `addressType`.
    pub family: AddressFamily,
    /// The ports that map.
    pub ports: Box<[SlicePort]>,
    /// The endpoints that map.
    pub endpoints: Box<[EndpointInfo]>,
}

/// An EndpointSlice port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    /// Its name (`None` when unnamed), matching a Service port's name.
    pub name: Option<Box<str>>,
    /// Its protocol.
    pub protocol: Protocol,
    /// The port real servers listen on.
    pub port: u16,
}

/// An endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Its first address (the API says all its addresses are fungible).
    pub address: IpAddr,
    /// `conditions.ready`, unset meaning ready.
    pub ready: bool,
    /// `conditions.serving`, unset meaning serving.
    pub serving: bool,
    /// `conditions.terminating`, unset meaning not terminating.
    pub terminating: bool,
    /// `nodeName`. Node names repeat across endpoints, so the snapshot
    /// shares one allocation per name.
    pub node: Option<Arc<str>>,
    /// Its topology hints, if it has any: most endpoints have none, and a
    /// hundred thousand are held at once, so they take one pointer here.
    pub hints: Option<Box<Hints>>,
}

/// An endpoint's topology hints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// `hints.forZones[].name`.
    pub zones: Box<[Arc<str>]>,
    /// `hints.forNodes[].name` (traffic distribution `PreferSameNode`).
    pub nodes: Box<[Arc<str>]>,
}

impl EndpointInfo {
    /// `hints.forZones[].name`.
    pub fn zones(&self) -> &[Arc<str>] {
        self.hints.as_deref().map_or(&[], |h| &h.zones)
    }

    /// `hints.forNodes[].name`.
    pub fn nodes(&self) -> &[Arc<str>] {
        self.hints.as_deref().map_or(&[], |h| &h.nodes)
    }
}

/// Node and zone names, one shared allocation each: thousands of endpoints
/// name the same few nodes and zones.
#[derive(Clone, Debug, Default)]
pub struct Names(HashSet<Arc<str>>);

impl Names {
    /// The shared copy of `name`.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        match self.0.get(name) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(name);
                self.0.insert(shared.clone());
                shared
            }
        }
    }

    /// Forgets the names nothing else holds any more.
    pub fn prune(&mut self) {
        self.0.retain(|n| Arc::strong_count(n) > 1);
    }
}

/// What converting a slice gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SliceConversion {
    /// The slice has no name.
    Nameless,
    /// A slice the mapping has no use for (no `kubernetes.io/service-name`,
    /// headless, FQDN, unknown address type): as if it did not exist.
    Ignored {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A slice to keep.
    Slice {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What the mapping needs of it.
        info: SliceInfo,
    },
}

fn skip(skipped: &mut Vec<Skipped>, object: &str, reason: SkipReason) {
    skipped.push(Skipped::new(SkipKind::EndpointSlice, object, reason));
}

fn slice_port(p: &EndpointPort, object: &str, skipped: &mut Vec<Skipped>) -> Option<SlicePort> {
    let protocol = protocol(p.protocol.as_deref())
        .map_err(|value| {
            skip(
                skipped,
                object,
                SkipReason::UnknownProtocol {
                    field: "ports[].protocol",
                    value,
                },
            )
        })
        .ok()?;
    let name = p.name.as_deref().filter(|n| !n.is_empty());
    let Some(number) = p.port else {
        skip(
            skipped,
            object,
            SkipReason::MissingPort {
                field: "ports[].port",
                name: name.unwrap_or_default().to_owned(),
            },
        );
        return None;
    };
    let Some(port) = port_number(number) else {
        skip(
            skipped,
            object,
            SkipReason::InvalidPort {
                field: "ports[].port",
                value: number,
            },
        );
        return None;
    };
    Some(SlicePort {
        name: name.map(Box::from),
        protocol,
        port,
    })
}

fn endpoint(
    e: &Endpoint,
    family: AddressFamily,
    object: &str,
    skipped: &mut Vec<Skipped>,
    names: &mut Names,
) -> Option<EndpointInfo> {
    let field = "endpoints[].addresses";
    let Some(first) = e.addresses.first() else {
        skip(skipped, object, SkipReason::MissingAddress { field });
        return None;
    };
    let Ok(address) = first.trim().parse::<IpAddr>() else {
        skip(
            skipped,
            object,
            SkipReason::InvalidAddress {
                field,
                value: first.clone(),
            },
        );
        return None;
    };
    if AddressFamily::of(&address) != family {
        skip(
            skipped,
            object,
            SkipReason::WrongFamily {
                field,
                address,
                expected: family,
            },
        );
        return None;
    }
    let conditions = e.conditions.as_ref();
    let hints = e.hints.as_ref();
    let mut hint = |field: &'static str, name: &str, valid: fn(&str) -> bool| {
        if valid(name) {
            Some(names.get(name))
        } else {
            // A name no zone or node can have: the endpoint keeps its other
            // hints, and one left without any turns topology off for the port.
            skip(
                skipped,
                object,
                SkipReason::InvalidHint {
                    field,
                    value: name.to_owned(),
                },
            );
            None
        }
    };
    let zones: Box<[Arc<str>]> = hints
        .and_then(|h| h.for_zones.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|z| hint("hints.forZones[].name", &z.name, valid_zone_name))
        .collect();
    let nodes: Box<[Arc<str>]> = hints
        .and_then(|h| h.for_nodes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|n| hint("hints.forNodes[].name", &n.name, valid_node_name))
        .collect();
    Some(EndpointInfo {
        address,
        ready: conditions.and_then(|c| c.ready).unwrap_or(true),
        serving: conditions.and_then(|c| c.serving).unwrap_or(true),
        terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
        node: e.node_name.as_deref().map(|n| names.get(n)),
        hints: (!zones.is_empty() || !nodes.is_empty()).then(|| Box::new(Hints { zones, nodes })),
    })
}

/// Whether `name` can be a zone: a non-empty label value.
fn valid_zone_name(name: &str) -> bool {
    !name.is_empty() && valid_label_value(name)
}

/// Whether `name` can be a Node's name: a DNS subdomain (RFC 1123), as the
/// API validates `metadata.name`.
pub fn valid_node_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

impl SliceInfo {
    /// Converts a slice, recording what it leaves out in `skipped` and
    /// sharing node and zone names through `names`.
    pub fn from_slice(
        slice: &EndpointSlice,
        skipped: &mut Vec<Skipped>,
        names: &mut Names,
    ) -> SliceConversion {
        let (namespace, name) = object_ref(&slice.metadata);
        let Some(name) = name else {
            skip(skipped, &format!("{namespace}/"), SkipReason::MissingName);
            return SliceConversion::Nameless;
        };
        let name = name.to_owned();
        let object = format!("{namespace}/{name}");
        let labels = slice.metadata.labels.as_ref();
        let service = labels
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .filter(|s| !s.is_empty());
        let headless = labels.is_some_and(|l| l.contains_key(HEADLESS_LABEL));
        let family = match slice.address_type.as_str() {
            "IPv4" => Some(AddressFamily::Inet),
            "IPv6" => Some(AddressFamily::Inet6),
            "FQDN" => None,
            other => {
                skip(
                    skipped,
                    &object,
                    SkipReason::UnknownAddressType {
                        value: other.to_owned(),
                    },
                );
                None
            }
        };
        let (Some(service), Some(family), false) = (service, family, headless) else {
            return SliceConversion::Ignored { namespace, name };
        };
        let ports: Vec<SlicePort> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| slice_port(p, &object, skipped))
            .collect();
        let endpoints: Vec<EndpointInfo> = slice
            .endpoints
            .iter()
            .flatten()
            .filter_map(|e| endpoint(e, family, &object, skipped, names))
            .collect();
        SliceConversion::Slice {
            namespace,
            name,
            info: SliceInfo {
                service: service.as_str().into(),
                family,
                ports: ports.into_boxed_slice(),
                endpoints: endpoints.into_boxed_slice(),
            },
        }
    }
}
