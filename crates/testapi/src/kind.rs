//! The resource kinds the server serves, and where they live in the URL space.

use std::fmt;

/// A kind of object the test API server stores and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` Service, namespaced.
    Service,
    /// `discovery.k8s.io/v1` EndpointSlice, namespaced.
    EndpointSlice,
    /// `v1` Node, cluster-scoped.
    Node,
    /// `v1` ConfigMap, namespaced.
    ConfigMap,
}

impl Kind {
    /// How many kinds there are.
    pub const COUNT: usize = 4;

    /// Every kind, in a fixed order (used to index per-kind tables).
    pub const ALL: [Kind; Kind::COUNT] = [
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Node,
        Kind::ConfigMap,
    ];

    /// The position of this kind in [`Kind::ALL`].
    pub fn index(self) -> usize {
        match self {
            Kind::Service => 0,
            Kind::EndpointSlice => 1,
            Kind::Node => 2,
            Kind::ConfigMap => 3,
        }
    }

    /// The `kind` field of one object.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
            Kind::ConfigMap => "ConfigMap",
        }
    }

    /// The `kind` field of a list of these objects.
    pub fn list_name(self) -> &'static str {
        match self {
            Kind::Service => "ServiceList",
            Kind::EndpointSlice => "EndpointSliceList",
            Kind::Node => "NodeList",
            Kind::ConfigMap => "ConfigMapList",
        }
    }

    /// The `apiVersion` field.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Service | Kind::Node | Kind::ConfigMap => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Node)
    }

    /// Looks a kind up by its `kind` field.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn group_prefix(self) -> &'static str {
        match self {
            Kind::Service | Kind::Node | Kind::ConfigMap => "/api/v1",
            Kind::EndpointSlice => "/apis/discovery.k8s.io/v1",
        }
    }

    pub(crate) fn plural(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Node => "nodes",
            Kind::ConfigMap => "configmaps",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A collection URL: a kind, across all namespaces or in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The kind of object listed or watched.
    pub kind: Kind,
    /// `Some(ns)` for `/namespaces/{ns}/...` paths.
    pub namespace: Option<String>,
}

impl Route {
    /// Matches a path naming one object, `{collection}/{name}` of a
    /// namespaced collection (or of a cluster-wide kind's).
    pub fn parse_object(path: &str) -> Option<(Route, String)> {
        let (collection, name) = path.trim_end_matches('/').rsplit_once('/')?;
        let route = Route::parse(collection)?;
        if name.is_empty() || route.namespace.is_some() != route.kind.namespaced() {
            return None;
        }
        Some((route, name.to_owned()))
    }

    /// Matches a request path against the collections the server serves.
    pub fn parse(path: &str) -> Option<Route> {
        let path = path.trim_end_matches('/');
        Kind::ALL.into_iter().find_map(|kind| {
            let rest = path.strip_prefix(kind.group_prefix())?;
            let plural = kind.plural();
            if rest.strip_prefix('/') == Some(plural) {
                return Some(Route {
                    kind,
                    namespace: None,
                });
            }
            if !kind.namespaced() {
                return None;
            }
            let (ns, tail) = rest.strip_prefix("/namespaces/")?.split_once('/')?;
            (tail == plural && !ns.is_empty()).then(|| Route {
                kind,
                namespace: Some(ns.to_owned()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let all = |kind| {
            Some(Route {
                kind,
                namespace: None,
            })
        };
        assert_eq!(Route::parse("/api/v1/services"), all(Kind::Service));
        assert_eq!(Route::parse("/api/v1/nodes"), all(Kind::Node));
        assert_eq!(
            Route::parse("/apis/discovery.k8s.io/v1/endpointslices"),
            all(Kind::EndpointSlice)
        );
        assert_eq!(
            Route::parse("/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices"),
            Some(Route {
                kind: Kind::EndpointSlice,
                namespace: Some("kube-system".into())
            })
        );
        assert_eq!(
            Route::parse("/api/v1/namespaces/ingress-nginx/configmaps"),
            Some(Route {
                kind: Kind::ConfigMap,
                namespace: Some("ingress-nginx".into())
            })
        );
        assert_eq!(Route::parse("/api/v1/namespaces/x/nodes"), None);
        assert_eq!(Route::parse("/api/v1/pods"), None);
        assert_eq!(Route::parse("/api/v1/servicesx"), None);
    }
}
