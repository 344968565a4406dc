//! ingress-nginx's `tcp-services` and `udp-services` ConfigMaps, served in
//! the kernel.
//!
//! Each key is an external port and each value names a Service port:
//! `namespace/service:port[:PROXY[:PROXY]]`, where `port` is the Service
//! port's number or name (ingress-nginx's `getStreamServices`). An entry is
//! served on the publish Service's addresses (`--publish-service`): its
//! load-balancer ingress IPs and external IPs at the key's port and, when the
//! publish Service declares that port, the port's node port on the node-port
//! addresses. Its real servers are the target Service port's endpoints,
//! chosen as for the target (ready, terminating fallback, topology) under the
//! publish Service's traffic policy; its scheduler and session affinity are
//! the target's. A port an entry serves is taken from the publish Service on
//! those addresses, so the ingress controller's pods need not run any more.
//!
//! Conversion ([`StreamServices::from_config_map`]) keeps the entries that
//! parse and names the others; the mapping ([`resolve`], and
//! `desired::desired_stream_checked`) names the entries whose Services or
//! ports are missing. [`affected`] widens a [`Changed`] to every owner whose
//! mapping it may alter.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::ConfigMap;
use kube_ipvs_model::{AddressFamily, Protocol};

use crate::config::Config;
use crate::service::{object_ref, PortInfo, ServiceInfo};
use crate::service_ref::{ConfigMapRef, Owner, ServiceRef, StreamKind};
use crate::skip::{SkipKind, SkipReason, Skipped};
use crate::snapshot::{Changed, Snapshot};

/// The port of the target Service an entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// The Service port's `port`.
    Number(u16),
    /// The Service port's `name`.
    Name(Box<str>),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPort::Number(n) => n.fmt(f),
            TargetPort::Name(name) => f.write_str(name),
        }
    }
}

impl TargetPort {
    fn matches(&self, port: &PortInfo) -> bool {
        match self {
            TargetPort::Number(n) => port.port == *n,
            TargetPort::Name(name) => port.name.as_deref() == Some(&**name),
        }
    }
}

/// What one entry asks for: a Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamTarget {
    /// The Service.
    pub service: ServiceRef,
    /// Its port.
    pub port: TargetPort,
}

/// One stream-services ConfigMap, reduced to the entries that parse, by
/// external port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamServices {
    /// The ConfigMap.
    pub config_map: ConfigMapRef,
    /// Its entries.
    pub entries: BTreeMap<u16, StreamTarget>,
}

/// Parses a key: the external port, in 1-65535.
pub fn parse_key(key: &str) -> Result<u16, SkipReason> {
    key.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| SkipReason::StreamKey {
            key: key.to_owned(),
        })
}

/// Parses a value, `namespace/service:port[:PROXY[:PROXY]]`, for a
/// ConfigMap of `kind`. The optional fields are empty or `PROXY` (in any
/// case): on a TCP entry, `PROXY` asks for the PROXY protocol, which IPVS
/// cannot speak, and the entry is refused; ingress-nginx ignores them on a
/// UDP entry, and so does this.
pub fn parse_value(kind: StreamKind, value: &str) -> Result<StreamTarget, SkipReason> {
    let malformed = |why| SkipReason::StreamValue {
        value: value.to_owned(),
        why,
    };
    let fields: Vec<&str> = value.trim().split(':').collect();
    let (service, port, proxy) = match fields.as_slice() {
        [service, port, proxy @ ..] if proxy.len() <= 2 => (*service, *port, proxy),
        [_] => return Err(malformed("no :port")),
        _ => return Err(malformed("more than four fields")),
    };
    let service = match service.split('/').collect::<Vec<_>>().as_slice() {
        [namespace, name] if !namespace.is_empty() && !name.is_empty() => {
            ServiceRef::new(*namespace, *name)
        }
        _ => return Err(malformed("the Service is not namespace/name")),
    };
    let port = if port.is_empty() {
        return Err(malformed("no port"));
    } else if port.bytes().all(|b| b.is_ascii_digit()) {
        match port.parse::<u16>() {
            Ok(n) if n != 0 => TargetPort::Number(n),
            _ => return Err(malformed("the port number is outside 1-65535")),
        }
    } else {
        TargetPort::Name(port.into())
    };
    let mut wants_proxy = false;
    for field in proxy {
        if field.eq_ignore_ascii_case("PROXY") {
            wants_proxy = true;
        } else if !field.is_empty() {
            return Err(malformed(
                "a field after the port is neither PROXY nor empty",
            ));
        }
    }
    if wants_proxy && kind == StreamKind::Tcp {
        return Err(SkipReason::ProxyProtocol {
            value: value.to_owned(),
        });
    }
    Ok(StreamTarget { service, port })
}

impl StreamServices {
    /// Converts the ConfigMap of `kind`'s entries, recording each entry that
    /// does not parse in `skipped`. `None` when the ConfigMap has no name.
    pub fn from_config_map(
        kind: StreamKind,
        config_map: &ConfigMap,
        skipped: &mut Vec<Skipped>,
    ) -> Option<StreamServices> {
        let skip_kind = SkipKind::from(kind);
        let (namespace, name) = object_ref(&config_map.metadata);
        let Some(name) = name else {
            skipped.push(Skipped::new(
                skip_kind,
                format!("{namespace}/"),
                SkipReason::MissingName,
            ));
            return None;
        };
        let config_map_ref = ConfigMapRef::new(namespace, name);
        let mut entries = BTreeMap::new();
        for (key, value) in config_map.data.iter().flatten() {
            let object = format!("{config_map_ref}:{key}");
            let parsed = parse_key(key).and_then(|port| Ok((port, parse_value(kind, value)?)));
            match parsed {
                Ok((port, target)) => {
                    entries.insert(port, target);
                }
                Err(reason) => skipped.push(Skipped::new(skip_kind, object, reason)),
            }
        }
        Some(StreamServices {
            config_map: config_map_ref,
            entries,
        })
    }
}

/// The target Service and port of `target`, for an entry of `kind`.
pub(crate) fn resolve<'a>(
    snapshot: &'a Snapshot,
    kind: StreamKind,
    target: &StreamTarget,
) -> Result<(&'a ServiceInfo, &'a PortInfo), SkipReason> {
    let info = snapshot
        .service(&target.service)
        .ok_or_else(|| SkipReason::UnknownService {
            role: "target",
            service: target.service.clone(),
        })?;
    if !info.proxied() {
        return Err(SkipReason::NotProxied {
            role: "target",
            service: target.service.clone(),
        });
    }
    let protocol = kind.protocol();
    let port = info
        .ports
        .iter()
        .find(|p| p.protocol == protocol && target.port.matches(p))
        .ok_or_else(|| SkipReason::UnknownServicePort {
            service: target.service.clone(),
            port: target.port.to_string(),
            protocol,
        })?;
    Ok((info, port))
}

/// The publish Service, when it is configured and proxied here.
pub(crate) fn publish_service<'a>(
    snapshot: &'a Snapshot,
    config: &Config,
) -> Result<&'a ServiceInfo, SkipReason> {
    let service = config
        .streams
        .publish_service
        .as_ref()
        .ok_or(SkipReason::NoPublishService)?;
    let info = snapshot
        .service(service)
        .ok_or_else(|| SkipReason::UnknownService {
            role: "publish",
            service: service.clone(),
        })?;
    if !info.proxied() || !config.proxies(info.proxy_name.as_deref()) {
        return Err(SkipReason::NotProxied {
            role: "publish",
            service: service.clone(),
        });
    }
    Ok(info)
}

/// The ports the entries take from the publish Service: each entry whose
/// target resolves, in each family the target has a cluster IP of. On those
/// the entry serves the publish Service's external addresses and node port
/// instead of the publish Service's own endpoints.
pub(crate) fn taken_ports(snapshot: &Snapshot) -> BTreeSet<(Protocol, u16, AddressFamily)> {
    let mut taken = BTreeSet::new();
    for (entry, target) in snapshot.stream_entries() {
        if let Ok((info, _)) = resolve(snapshot, entry.kind, target) {
            for ip in &info.cluster_ips {
                taken.insert((entry.kind.protocol(), entry.port, AddressFamily::of(ip)));
            }
        }
    }
    taken
}

/// Every owner whose desired state `changed` may alter: the Services and
/// entries it names; every entry whose target it names, and the publish
/// Service with them (which ports it gives up depends on the targets); every
/// entry when it names the publish Service; the publish Service when it
/// names an entry. With `changed.all`, every Service and entry.
pub fn affected(snapshot: &Snapshot, config: &Config, changed: &Changed) -> BTreeSet<Owner> {
    let publish = config.streams.publish_service.as_ref();
    if changed.all {
        return snapshot
            .services()
            .map(|(s, _)| Owner::Service(s.clone()))
            .chain(snapshot.stream_entries().map(|(e, _)| Owner::Stream(e)))
            .collect();
    }
    let mut owners: BTreeSet<Owner> = changed
        .services
        .iter()
        .cloned()
        .map(Owner::Service)
        .chain(changed.streams.iter().cloned().map(Owner::Stream))
        .collect();
    let publish_changed = publish.is_some_and(|p| changed.services.contains(p));
    let mut publish_affected = !changed.streams.is_empty();
    for (entry, target) in snapshot.stream_entries() {
        let targeted = changed.services.contains(&target.service);
        publish_affected |= targeted;
        if targeted || publish_changed {
            owners.insert(Owner::Stream(entry));
        }
    }
    if let Some(publish) = publish.filter(|_| publish_affected) {
        owners.insert(Owner::Service(publish.clone()));
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(namespace: &str, name: &str, port: TargetPort) -> StreamTarget {
        StreamTarget {
            service: ServiceRef::new(namespace, name),
            port,
        }
    }

    #[test]
    fn keys_are_ports_in_1_to_65535() {
        assert_eq!(parse_key("10000"), Ok(10000));
        assert_eq!(parse_key("65535"), Ok(65535));
        for bad in ["0", "65536", "-1", "http", "", " 80", "1e3"] {
            let err = parse_key(bad).unwrap_err();
            assert_eq!(err.as_str(), "invalid_key", "{bad:?}");
            assert_eq!(
                err.to_string(),
                format!("key {bad:?} is not a port in 1-65535")
            );
        }
    }

    #[test]
    fn values_name_a_service_port_by_number_or_name() {
        let tcp = StreamKind::Tcp;
        assert_eq!(
            parse_value(tcp, "default/layanan-xyz-port-10000:10000"),
            Ok(target(
                "default",
                "layanan-xyz-port-10000",
                TargetPort::Number(10000)
            ))
        );
        assert_eq!(
            parse_value(tcp, "kube-system/kube-dns:dns-tcp"),
            Ok(target(
                "kube-system",
                "kube-dns",
                TargetPort::Name("dns-tcp".into())
            ))
        );
        // Empty PROXY fields ask for nothing.
        assert_eq!(
            parse_value(tcp, " default/x:80:: "),
            Ok(target("default", "x", TargetPort::Number(80)))
        );
        assert_eq!(
            TargetPort::Name("dns".into()).to_string() + &TargetPort::Number(53).to_string(),
            "dns53"
        );
    }

    #[test]
    fn proxy_is_refused_on_tcp_and_ignored_on_udp_as_ingress_nginx_does() {
        for value in [
            "default/x:80:PROXY",
            "default/x:80::PROXY",
            "default/x:80:proxy:Proxy",
        ] {
            let err = parse_value(StreamKind::Tcp, value).unwrap_err();
            assert_eq!(err.as_str(), "proxy_protocol", "{value}");
            assert_eq!(
                err.to_string(),
                format!(
                    "value {value:?} asks for the PROXY protocol, which IPVS cannot add or strip"
                )
            );
            assert_eq!(
                parse_value(StreamKind::Udp, value),
                Ok(target("default", "x", TargetPort::Number(80))),
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_values_say_why() {
        for (value, why) in [
            ("default/x", "no :port"),
            ("", "no :port"),
            ("default/x:80:PROXY:PROXY:PROXY", "more than four fields"),
            ("x:80", "the Service is not namespace/name"),
            ("a/b/c:80", "the Service is not namespace/name"),
            ("/x:80", "the Service is not namespace/name"),
            ("default/:80", "the Service is not namespace/name"),
            ("default/x:", "no port"),
            ("default/x:0", "the port number is outside 1-65535"),
            ("default/x:70000", "the port number is outside 1-65535"),
            (
                "default/x:80:SEND",
                "a field after the port is neither PROXY nor empty",
            ),
        ] {
            for kind in StreamKind::ALL {
                let err = parse_value(kind, value).unwrap_err();
                assert_eq!(
                    err,
                    SkipReason::StreamValue {
                        value: value.to_owned(),
                        why
                    },
                    "{value:?}"
                );
                assert_eq!(err.as_str(), "malformed_value");
            }
        }
    }

    #[test]
    fn a_config_map_keeps_what_parses_and_names_the_rest() {
        let config_map: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ingress-nginx", "name": "tcp-services"},
            "data": {
                "10000": "default/a:10000",
                "20000": "default/b:tcp",
                "http": "default/c:80",
                "30000": "default/d",
                "40000": "default/e:5432:PROXY",
            }
        }))
        .unwrap();
        let mut skipped = Vec::new();
        let converted =
            StreamServices::from_config_map(StreamKind::Tcp, &config_map, &mut skipped).unwrap();
        assert_eq!(
            converted.config_map,
            ConfigMapRef::new("ingress-nginx", "tcp-services")
        );
        assert_eq!(
            converted.entries,
            BTreeMap::from([
                (10000, target("default", "a", TargetPort::Number(10000))),
                (
                    20000,
                    target("default", "b", TargetPort::Name("tcp".into()))
                ),
            ])
        );
        let skipped: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        assert_eq!(
            skipped,
            [
                "tcp-services ingress-nginx/tcp-services:30000: value \"default/d\" is not namespace/service:port[:PROXY[:PROXY]]: no :port",
                "tcp-services ingress-nginx/tcp-services:40000: value \"default/e:5432:PROXY\" asks for the PROXY protocol, which IPVS cannot add or strip",
                "tcp-services ingress-nginx/tcp-services:http: key \"http\" is not a port in 1-65535",
            ]
        );
        let nameless = ConfigMap::default();
        let mut skipped = Vec::new();
        assert!(
            StreamServices::from_config_map(StreamKind::Udp, &nameless, &mut skipped).is_none()
        );
        assert_eq!(
            skipped[0].to_string(),
            "udp-services default/: no metadata.name"
        );
    }
}
