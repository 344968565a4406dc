//! Reading back what `nft -j list table inet kube-ipvs` prints: the
//! table's structure, to compare with the listing taken after the last
//! whole write, and its set elements, parsed into a [`Ruleset`] to compare
//! element by element with the one expected.
//!
//! `nft` prints elements as it parsed them back from the kernel: a plain
//! address, a `{"prefix": ..}` for an interval (a `/32` or `/128` as a
//! plain address; a whole address space in a concatenation may be `*`),
//! a `{"concat": [..]}` of them, protocols by name and
//! ports as numbers; an element with options is wrapped in
//! `{"elem": {"val": ..}}`.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use kube_ipvs_netlink::Protocol;
use serde_json::Value;

use super::diff::{drift, Drift};
use super::ruleset::{AllowedSource, FamilySets, Hairpin, Ruleset, ServicePort};

/// The objects of an `nft -j list` output, without its `metainfo`.
pub fn objects(listed: &str) -> Result<Vec<Value>, serde_json::Error> {
    let mut root: Value = serde_json::from_str(listed)?;
    let objects = match root.get_mut("nftables").map(Value::take) {
        Some(Value::Array(objects)) => objects,
        _ => Vec::new(),
    };
    Ok(objects
        .into_iter()
        .filter(|o| o.get("metainfo").is_none())
        .collect())
}

/// The objects without what changes on every write (`handle`s) or with
/// every Service (set elements).
pub fn structure(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .cloned()
        .map(|mut object| {
            if let Some(Value::Object(fields)) = object.as_object_mut().and_then(|o| {
                // One key: "table", "set", "chain", "rule"...
                o.values_mut().next()
            }) {
                fields.remove("handle");
                fields.remove("elem");
            }
            object
        })
        .collect()
}

/// A listed table, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Its structure ([`structure`]).
    pub structure: Vec<Value>,
    /// Its set elements, with the structure fields of the ruleset it was
    /// parsed against.
    pub ruleset: Ruleset,
    /// Elements in the agent's sets that no ruleset holds.
    pub unreadable: usize,
}

impl Listing {
    /// Takes the listed `objects` apart; `like` gives the fields that are
    /// not set elements.
    pub fn parse(objects: &[Value], like: &Ruleset) -> Listing {
        let mut ruleset = Ruleset {
            ipv4: FamilySets {
                masquerade: like.ipv4.masquerade,
                ..FamilySets::default()
            },
            ipv6: FamilySets {
                masquerade: like.ipv6.masquerade,
                ..FamilySets::default()
            },
            ..like.clone()
        };
        let mut unreadable = 0;
        for set in objects.iter().filter_map(|o| o.get("set")) {
            let Some(name) = set.get("name").and_then(Value::as_str) else {
                continue;
            };
            let (base, sets) = match name.rsplit_once('-') {
                Some((base, "v4")) => (base, &mut ruleset.ipv4),
                Some((base, "v6")) => (base, &mut ruleset.ipv6),
                _ => continue,
            };
            let elements = set.get("elem").and_then(Value::as_array);
            for element in elements.into_iter().flatten() {
                if !insert(sets, base, unwrap_elem(element)) {
                    unreadable += 1;
                }
            }
        }
        Listing {
            structure: structure(objects),
            ruleset,
            unreadable,
        }
    }

    /// How the listed elements differ from `expected`'s (the structure is
    /// compared by the caller).
    pub fn drift(&self, expected: &Ruleset) -> Option<Drift> {
        match drift(&self.ruleset, expected) {
            Some(Drift::Elements {
                missing,
                unexpected,
            }) => Some(Drift::Elements {
                missing,
                unexpected: unexpected + self.unreadable,
            }),
            None if self.unreadable > 0 => Some(Drift::Elements {
                missing: 0,
                unexpected: self.unreadable,
            }),
            other => other,
        }
    }
}

fn unwrap_elem(element: &Value) -> &Value {
    element
        .get("elem")
        .and_then(|e| e.get("val"))
        .unwrap_or(element)
}

/// Adds `element` of set `base` to `sets`; `false` when it is not one the
/// agent writes there.
fn insert(sets: &mut FamilySets, base: &str, element: &Value) -> bool {
    let parts = element
        .get("concat")
        .and_then(Value::as_array)
        .map(Vec::as_slice);
    match (base, parts) {
        ("vips", None) => address(element).map(|a| sets.vips.insert(a)),
        ("cluster-cidrs", None) => network(element).map(|n| sets.cluster_cidrs.insert(n)),
        ("services", Some(p)) => service(p).map(|s| sets.services.insert(s)),
        ("external-services", Some(p)) => service(p).map(|s| sets.external_services.insert(s)),
        ("local-services", Some(p)) => service(p).map(|s| sets.local_services.insert(s)),
        ("lb-restricted", Some(p)) => service(p).map(|s| sets.restricted.insert(s)),
        ("hairpin", Some([a, p, port, again])) => service(&[a.clone(), p.clone(), port.clone()])
            .filter(|s| address(again) == Some(s.address))
            .map(|s| {
                sets.hairpin.insert(Hairpin {
                    address: s.address,
                    protocol: s.protocol,
                    port: s.port,
                })
            }),
        ("lb-allowed", Some([a, p, port, source])) => {
            service(&[a.clone(), p.clone(), port.clone()])
                .and_then(|service| Some((service, source_network(source, &service.address)?)))
                .map(|(service, source)| {
                    sets.allowed_sources
                        .insert(AllowedSource { service, source })
                })
        }
        _ => None,
    }
    .is_some()
}

fn address(value: &Value) -> Option<IpAddr> {
    value.as_str()?.parse().ok()
}

fn network(value: &Value) -> Option<IpNetwork> {
    if let Some(address) = address(value) {
        return Some(IpNetwork::from(address));
    }
    let prefix = value.get("prefix")?;
    let len = u8::try_from(prefix.get("len")?.as_u64()?).ok()?;
    IpNetwork::new(address(prefix.get("addr")?)?, len).ok()
}

/// A source range in an interval concatenation: as [`network`], or `*`,
/// which nft may print for a whole address space there.
fn source_network(value: &Value, of: &IpAddr) -> Option<IpNetwork> {
    match (value.as_str(), of) {
        (Some("*"), IpAddr::V4(_)) => {
            IpNetwork::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0).ok()
        }
        (Some("*"), IpAddr::V6(_)) => {
            IpNetwork::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 0).ok()
        }
        _ => network(value),
    }
}

fn service(parts: &[Value]) -> Option<ServicePort> {
    let [address_value, protocol_value, port] = parts else {
        return None;
    };
    let protocol = match protocol_value {
        Value::String(name) => match name.as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => return None,
        },
        other => Protocol::from_number(u16::try_from(other.as_u64()?).ok()?),
    };
    Some(ServicePort {
        address: address(address_value)?,
        protocol,
        port: u16::try_from(port.as_u64()?).ok()?,
    })
}

#[cfg(test)]
mod tests;
