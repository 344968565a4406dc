//! The HTTP side: routing list and watch requests to the [`Store`], and the
//! [`TestApiServer`] handle tests use to drive the fake cluster.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::kind::{Kind, Route};
use crate::selector::Selector;
use crate::store::{Filter, Store, WatchStart};
use crate::Error;

/// Watches without `timeoutSeconds` end after this long, as the apiserver's
/// own (randomised, 30-60 minute) default would.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// What the server has served, by kind (indexed like [`Kind::ALL`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// List requests that started a list (first pages: no `continue`).
    pub lists: [u64; Kind::COUNT],
    /// Watch requests received.
    pub watches: [u64; Kind::COUNT],
    /// The `resourceVersion` of the latest watch request, as sent.
    pub last_watch_rv: [Option<String>; Kind::COUNT],
    /// Requests refused as RBAC would ([`TestApiServer::grant_config_maps`]).
    pub forbidden: u64,
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

struct Shared {
    store: Mutex<Store>,
    stats: watch::Sender<Stats>,
    /// `Some`: ConfigMaps may be read only by these names (namespace, name).
    config_map_grants: Mutex<Option<Vec<(String, String)>>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether RBAC, as [`TestApiServer::grant_config_maps`] set it up, lets
    /// a list or watch of `kind` in `namespace` with `fields` through.
    fn authorized(&self, kind: Kind, namespace: Option<&str>, fields: &Selector) -> bool {
        if kind != Kind::ConfigMap {
            return true;
        }
        let grants = self
            .config_map_grants
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(grants) = grants.as_ref() else {
            return true;
        };
        match (namespace, fields.only_name()) {
            (Some(namespace), Some(name)) => {
                grants.iter().any(|(n, m)| n == namespace && m == name)
            }
            _ => false,
        }
    }
}

/// A running test API server: a real HTTP/1.1 endpoint with a handle to
/// change its objects and to take it down and back up.
pub struct TestApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl TestApiServer {
    /// Starts an empty server on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Result<Self, Error> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts an empty server on the given address.
    pub async fn bind(addr: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            store: Mutex::default(),
            stats: watch::Sender::new(Stats::default()),
            config_map_grants: Mutex::new(None),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        Ok(Self {
            shared,
            addr,
            task: Mutex::new(Some(task)),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or replaces an object; returns its new resource version.
    pub fn apply<K: k8s_openapi::Resource + Serialize>(&self, object: &K) -> Result<u64, Error> {
        let kind = Kind::from_name(K::KIND).ok_or(Error::UnknownKind(K::KIND))?;
        let value = serde_json::to_value(object).map_err(|_| Error::Apply {
            kind,
            reason: "not serializable",
        })?;
        self.shared.store().apply(kind, value)
    }

    /// Creates or replaces an object given as JSON.
    pub fn apply_json(&self, kind: Kind, object: serde_json::Value) -> Result<u64, Error> {
        self.shared.store().apply(kind, object)
    }

    /// Deletes an object (`namespace` is ignored for Nodes); returns the
    /// resource version of the deletion, or `None` if there was no such object.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Option<u64> {
        self.shared.store().delete(kind, namespace, name)
    }

    /// Sends a BOOKMARK at a fresh resource version to every watch that asked
    /// for bookmarks; returns that resource version.
    pub fn bookmark(&self) -> u64 {
        self.shared.store().bookmark()
    }

    /// Compacts the history: every watch resumed from an earlier resource
    /// version gets 410 Gone. Closes open watches so their clients resume.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Ends every open watch (the clients see the stream end and resume).
    pub fn close_watches(&self) {
        self.shared.store().close_watches();
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// The number of connected watches of a kind.
    pub fn open_watches(&self, kind: Kind) -> usize {
        self.shared.store().open_watches(kind)
    }

    /// Authorizes ConfigMaps as a Role whose rule lists `names` (namespace,
    /// name) in `resourceNames` does: a list or watch must be in the
    /// namespace and carry the field selector `metadata.name=NAME` of one of
    /// them; any other ConfigMap request is 403 Forbidden. Without this call
    /// every request is allowed.
    pub fn grant_config_maps(&self, names: &[(&str, &str)]) {
        *self
            .shared
            .config_map_grants
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(
            names
                .iter()
                .map(|(n, m)| ((*n).to_owned(), (*m).to_owned()))
                .collect(),
        );
    }

    /// What has been served so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats.borrow().clone()
    }

    /// Waits until the served requests satisfy `done` (checked after each).
    pub async fn wait_for(&self, mut done: impl FnMut(&Stats) -> bool) -> Stats {
        let mut rx = self.shared.stats.subscribe();
        let stats = rx
            .wait_for(|s| done(s))
            .await
            .expect("the sender lives in self");
        stats.clone()
    }

    /// Waits until the number of open watches of `kind` reaches `n`.
    pub async fn wait_for_open_watches(&self, kind: Kind, n: usize) {
        let mut rx = self.shared.stats.subscribe();
        while self.open_watches(kind) < n {
            rx.changed().await.expect("the sender lives in self");
        }
    }

    /// Takes the server down: stops accepting and drops every connection.
    /// The objects are kept.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        self.shared.store().close_watches();
    }

    /// Brings a stopped server back on the same address, with the same
    /// objects and history.
    pub async fn restart_same_port(&self) -> Result<(), Error> {
        self.stop();
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: self.addr,
                source,
            })?;
        let task = tokio::spawn(serve(listener, self.shared.clone()));
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(())
    }

    /// Writes a kubeconfig that points at this server (plain HTTP, no auth).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        crate::cluster::write_kubeconfig(path, &self.url())
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move {
                            if Route::parse(req.uri().path()).is_none() {
                                if let Some((route, name)) = Route::parse_object(req.uri().path()) {
                                    return Ok::<_, Infallible>(object(&shared, req, route, name).await);
                                }
                            }
                            Ok::<_, Infallible>(handle(&shared, req))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                        tracing::debug!(%error, "connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A get or a replace (`PUT`) of one object, as the API server answers
/// them: the object, or a `Status`. A replace of an object that is not
/// there is refused (404), as is a body naming another object (400).
async fn object(
    shared: &Shared,
    req: Request<Incoming>,
    route: Route,
    name: String,
) -> Response<Body> {
    let namespace = route.namespace.unwrap_or_default();
    let kind = route.kind;
    if req.method() == Method::GET {
        return match shared.store().get(kind, &namespace, &name) {
            Some(json) => json_response(StatusCode::OK, Full::new(json).boxed_unsync()),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{} \"{name}\" not found", kind.plural()),
            ),
        };
    }
    if req.method() != Method::PUT {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "lists and watches are served, and gets and replaces of one object",
        );
    }
    let body = match http_body_util::Limited::new(req.into_body(), 16 << 20)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let object: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(object) => object,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let meta = &object["metadata"];
    let names_it = meta["name"].as_str() == Some(name.as_str())
        && (!kind.namespaced() || meta["namespace"].as_str().is_none_or(|ns| ns == namespace));
    if !names_it {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name or namespace of the object does not match the request",
        );
    }
    let mut store = shared.store();
    if store.get(kind, &namespace, &name).is_none() {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} \"{name}\" not found", kind.plural()),
        );
    }
    let mut object = object;
    object["metadata"]["namespace"] = json!(namespace);
    if !kind.namespaced() {
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
    }
    match store.apply(kind, object) {
        Ok(_) => match store.get(kind, &namespace, &name) {
            Some(json) => json_response(StatusCode::OK, Full::new(json).boxed_unsync()),
            None => status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the object is gone",
            ),
        },
        Err(e) => status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    }
}

fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET is served",
        );
    }
    let Some(route) = Route::parse(req.uri().path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let selectors = (
        Selector::parse(param("labelSelector").unwrap_or_default()),
        Selector::parse(param("fieldSelector").unwrap_or_default()),
    );
    let (Some(labels), Some(fields)) = selectors else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "unsupported selector",
        );
    };
    let kind = route.kind;
    if !shared.authorized(kind, route.namespace.as_deref(), &fields) {
        shared.stats.send_modify(|s| s.forbidden += 1);
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "configmaps is forbidden: the Role grants only named ConfigMaps (resourceNames), \
             which a list or watch must select with metadata.name",
        );
    }
    let filter = Filter {
        namespace: route.namespace,
        labels,
        fields,
    };
    if param("watch").is_some_and(|w| w == "true" || w == "1") {
        let rv = param("resourceVersion").unwrap_or_default();
        let start = match rv {
            _ if param("sendInitialEvents") == Some("true") => {
                WatchStart::Current { end_bookmark: true }
            }
            "" | "0" => WatchStart::Current {
                end_bookmark: false,
            },
            rv => match rv.parse() {
                Ok(rv) => WatchStart::After(rv),
                Err(_) => {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "invalid resourceVersion",
                    )
                }
            },
        };
        let timeout = param("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
        let bookmarks = param("allowWatchBookmarks") == Some("true");
        let rx = shared.store().watch(kind, filter, start, bookmarks);
        shared.stats.send_modify(|s| {
            s.watches[kind.index()] += 1;
            s.last_watch_rv[kind.index()] = Some(rv.to_owned());
        });
        let deadline = tokio::time::Instant::now() + timeout;
        let lines = futures::stream::unfold(rx, move |mut rx| async move {
            tokio::select! {
                line = rx.recv() => line.map(|l| (Ok(Frame::data(l)), rx)),
                () = tokio::time::sleep_until(deadline) => None,
            }
        });
        return json_response(StatusCode::OK, StreamBody::new(lines).boxed_unsync());
    }
    let limit = param("limit")
        .and_then(|l| l.parse().ok())
        .filter(|&l| l > 0);
    let cont = param("continue").filter(|c| !c.is_empty());
    let page = shared.store().list(kind, &filter, limit, cont);
    match page {
        Ok(body) => {
            if cont.is_none() {
                shared.stats.send_modify(|s| s.lists[kind.index()] += 1);
            }
            json_response(StatusCode::OK, Full::new(body).boxed_unsync())
        }
        Err(error) => status(StatusCode::BAD_REQUEST, "BadRequest", &error.to_string()),
    }
}

fn json_response(code: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/json".parse().expect("a valid header"),
    );
    response
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    json_response(
        code,
        Full::new(Bytes::from(body.to_string())).boxed_unsync(),
    )
}
