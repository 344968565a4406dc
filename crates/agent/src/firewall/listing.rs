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
        let mut listing = Listing::empty(like);
        for object in objects {
            listing.take(object.clone());
        }
        listing
    }

    /// Reads an `nft -j list` output one object at a time, as
    /// [`Listing::parse`] of its [`objects`] does: only one object (a set
    /// with its elements, at most) is held as a JSON tree at once, and its
    /// elements are dropped as they are read (the tree of a whole listing
    /// held every element of every set at once, each resync).
    pub fn read(listed: &str, like: &Ruleset) -> Result<Listing, serde_json::Error> {
        let mut listing = Listing::empty(like);
        let mut json = serde_json::Deserializer::from_str(listed);
        serde::de::DeserializeSeed::deserialize(Root(&mut listing), &mut json)?;
        json.end()?;
        Ok(listing)
    }

    fn empty(like: &Ruleset) -> Listing {
        Listing {
            structure: Vec::new(),
            ruleset: Ruleset {
                ipv4: FamilySets {
                    masquerade: like.ipv4.masquerade,
                    ..FamilySets::default()
                },
                ipv6: FamilySets {
                    masquerade: like.ipv6.masquerade,
                    ..FamilySets::default()
                },
                ..like.clone()
            },
            unreadable: 0,
        }
    }

    /// Takes one listed object: its elements, if it is one of the agent's
    /// sets, into the ruleset; the rest into the structure.
    fn take(&mut self, mut object: Value) {
        let Some(outer) = object.as_object_mut() else {
            self.structure.push(object);
            return;
        };
        if outer.contains_key("metainfo") {
            return;
        }
        let is_set = outer.contains_key("set");
        // One key: "table", "set", "chain", "rule"...
        if let Some(Value::Object(fields)) = outer.values_mut().next() {
            fields.remove("handle");
            let elements = fields.remove("elem");
            let family = fields
                .get("name")
                .and_then(Value::as_str)
                .and_then(|name| name.rsplit_once('-'));
            let target = match family {
                Some((base, "v4")) if is_set => Some((base, &mut self.ruleset.ipv4)),
                Some((base, "v6")) if is_set => Some((base, &mut self.ruleset.ipv6)),
                _ => None,
            };
            if let (Some((base, sets)), Some(Value::Array(elements))) = (target, elements) {
                for element in elements {
                    if !insert(sets, base, unwrap_elem(&element)) {
                        self.unreadable += 1;
                    }
                }
            }
        }
        self.structure.push(object);
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

/// The root of an `nft -j` listing: its `nftables` array, object by object.
struct Root<'a>(&'a mut Listing);

impl<'de> serde::de::DeserializeSeed<'de> for Root<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Root<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an nft JSON listing")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "nftables" {
                map.next_value_seed(Objects(&mut *self.0))?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// The `nftables` array, each object taken as soon as it is read.
struct Objects<'a>(&'a mut Listing);

impl<'de> serde::de::DeserializeSeed<'de> for Objects<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Objects<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of nft objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(object) = seq.next_element::<Value>()? {
            self.0.take(object);
        }
        Ok(())
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
