//! How the controller names a Service: by namespace and name, the key of
//! the desired state and of what a skip or a conflict is about; an
//! EndpointSlice, the key a relist's listing is checked against; and an
//! entry of ingress-nginx's stream-services ConfigMaps, which wants virtual
//! servers as a Service does (an [`Owner`]).

use std::fmt;

use kube_ipvs_model::Protocol;

/// A Service by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ServiceRef {
    /// `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An EndpointSlice by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SliceRef {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl SliceRef {
    /// `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        SliceRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for SliceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A ConfigMap by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigMapRef {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ConfigMapRef {
    /// `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ConfigMapRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ConfigMapRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Which of ingress-nginx's two stream-services ConfigMaps an entry comes
/// from (`--tcp-services-configmap` or `--udp-services-configmap`); it
/// decides the protocol the entry is served with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamKind {
    /// `tcp-services`.
    Tcp,
    /// `udp-services`.
    Udp,
}

impl StreamKind {
    /// Both kinds.
    pub const ALL: [StreamKind; 2] = [StreamKind::Tcp, StreamKind::Udp];

    /// `tcp-services` or `udp-services`, as ingress-nginx names them.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Tcp => "tcp-services",
            StreamKind::Udp => "udp-services",
        }
    }

    /// The protocol the entries are served with.
    pub fn protocol(self) -> Protocol {
        match self {
            StreamKind::Tcp => Protocol::Tcp,
            StreamKind::Udp => Protocol::Udp,
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a stream-services ConfigMap, named by the ConfigMap and its
/// key, the external port: `tcp-services ingress-nginx/tcp-services:10000`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamEntryRef {
    /// Which ConfigMap flag it comes from.
    pub kind: StreamKind,
    /// The ConfigMap.
    pub config_map: ConfigMapRef,
    /// Its key: the port it is served on.
    pub port: u16,
}

impl StreamEntryRef {
    /// The entry `port` of `config_map`.
    pub fn new(kind: StreamKind, config_map: ConfigMapRef, port: u16) -> Self {
        StreamEntryRef {
            kind,
            config_map,
            port,
        }
    }

    /// `namespace/name:port`: the object a skip of the entry names.
    pub fn object(&self) -> String {
        format!("{}:{}", self.config_map, self.port)
    }
}

impl fmt::Display for StreamEntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{}", self.kind, self.config_map, self.port)
    }
}

/// What wants virtual servers: a Service, or an entry of a stream-services
/// ConfigMap. Services sort first, so where a Service and an entry want one
/// virtual server, the Service keeps it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// A Service.
    Service(ServiceRef),
    /// An entry of `--tcp-services-configmap` or `--udp-services-configmap`.
    Stream(StreamEntryRef),
}

impl Owner {
    /// The object a skip of its mapping names: `namespace/name` for a
    /// Service, `namespace/name:port` (the ConfigMap and key) for an entry.
    pub fn object(&self) -> String {
        match self {
            Owner::Service(s) => s.to_string(),
            Owner::Stream(e) => e.object(),
        }
    }
}

impl From<ServiceRef> for Owner {
    fn from(service: ServiceRef) -> Self {
        Owner::Service(service)
    }
}

impl From<StreamEntryRef> for Owner {
    fn from(entry: StreamEntryRef) -> Self {
        Owner::Stream(entry)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Service(s) => s.fmt(f),
            Owner::Stream(e) => e.fmt(f),
        }
    }
}
