//! The Kubernetes API source through the real kube client, against the test
//! API server.

use std::collections::HashSet;
use std::time::Duration;

use futures::stream::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use kube_ipvs::source::{client, kube_source, SourceEvent};
use kube_ipvs_controller::{ConfigMapRef, ServiceRef, StreamConfig, StreamKind};
use kube_ipvs_testapi::{generate, ClusterSpec, Kind, TestApiServer};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Safety net around awaits; every wait below ends on an event.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Drives the source in a task of its own, as the agent does, so that its
/// watches stay connected while the test looks elsewhere.
struct Consumer {
    events: mpsc::UnboundedReceiver<SourceEvent>,
    pump: JoinHandle<()>,
    _kubeconfig: tempfile::TempDir,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl Consumer {
    async fn start(server: &TestApiServer, node: &str) -> Self {
        Self::start_with(server, node, StreamConfig::default()).await
    }

    async fn start_with(server: &TestApiServer, node: &str, streams: StreamConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        server.write_kubeconfig(&path).unwrap();
        let client = client(Some(&path)).await.unwrap();
        let mut source = kube_source(client, node, None, &streams, Duration::from_secs(30)).boxed();
        let (tx, events) = mpsc::unbounded_channel();
        let pump = tokio::spawn(async move {
            while let Some(event) = source.next().await {
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        Consumer {
            events,
            pump,
            _kubeconfig: dir,
        }
    }

    async fn next(&mut self) -> SourceEvent {
        tokio::time::timeout(TIMEOUT, self.events.recv())
            .await
            .expect("timed out waiting for an event")
            .expect("the source never ends")
    }

    /// Every event up to and including the first that satisfies `done`.
    async fn until(&mut self, mut done: impl FnMut(&SourceEvent) -> bool) -> Vec<SourceEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let stop = done(&event);
            seen.push(event);
            if stop {
                return seen;
            }
        }
    }

    /// Every event until each kind has finished a listing.
    async fn until_all_listed(&mut self) -> Vec<SourceEvent> {
        let mut done = HashSet::new();
        self.until(|e| {
            if e.is_init_done() {
                done.insert(std::mem::discriminant(e));
            }
            done.len() == 3
        })
        .await
    }
}

/// The names in one kind's listing, checking it is `Init`, `InitApply`s,
/// `InitDone` in that order.
fn listing<K: ResourceExt>(events: impl Iterator<Item = Event<K>>) -> Vec<String> {
    let events: Vec<_> = events.collect();
    assert!(
        matches!(events.first(), Some(Event::Init)),
        "a listing starts with Init"
    );
    assert!(
        matches!(events.last(), Some(Event::InitDone)),
        "a listing ends with InitDone"
    );
    events[1..events.len() - 1]
        .iter()
        .map(|e| match e {
            Event::InitApply(o) => o.name_any(),
            _ => panic!("only InitApply inside a listing"),
        })
        .collect()
}

fn services(events: &[SourceEvent]) -> impl Iterator<Item = Event<Service>> + '_ {
    events.iter().filter_map(|e| match e {
        SourceEvent::Services(e) => Some(e.clone()),
        _ => None,
    })
}

fn service(name: &str, labels: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"namespace": "default", "name": name, "labels": labels}, "spec": {"clusterIP": "10.96.9.9", "ports": [{"port": 53, "protocol": "UDP"}]}})
}

async fn cluster() -> TestApiServer {
    let server = TestApiServer::start().await.unwrap();
    for (kind, object) in generate(ClusterSpec {
        services: 3,
        endpoints_per_service: 2,
        nodes: 2,
    }) {
        server.apply_json(kind, object).unwrap();
    }
    server
}

#[tokio::test]
async fn initial_lists_deliver_one_listing_per_kind_trimmed_and_selected() {
    let server = cluster().await;
    server
        .apply_json(
            Kind::Service,
            service(
                "other-proxy",
                json!({"service.kubernetes.io/service-proxy-name": "x"}),
            ),
        )
        .unwrap();
    let mut consumer = Consumer::start(&server, "node-1").await;
    let events = consumer.until_all_listed().await;
    assert_eq!(
        listing(services(&events)),
        ["svc-00000", "svc-00001", "svc-00002"]
    );
    let slices = events.iter().filter_map(|e| match e {
        SourceEvent::EndpointSlices(e) => Some(e.clone()),
        _ => None,
    });
    assert_eq!(
        listing(slices),
        ["svc-00000-x7k2p", "svc-00001-x7k2p", "svc-00002-x7k2p"]
    );
    let nodes = events.iter().filter_map(|e| match e {
        SourceEvent::Node(e) => Some(e.clone()),
        _ => None,
    });
    assert_eq!(listing(nodes), ["node-1"]);
    for event in services(&events) {
        if let Event::InitApply(s) = event {
            assert_eq!(s.metadata.managed_fields, None);
            assert_eq!(
                s.metadata.annotations, None,
                "the last-applied annotation is dropped"
            );
            assert_eq!(
                s.metadata.labels.unwrap()["app"],
                s.metadata.name.unwrap(),
                "labels are kept"
            );
        }
    }
    assert_eq!(server.stats().lists, [1, 1, 1, 0]);
}

#[tokio::test]
async fn watches_deliver_applies_and_deletes() {
    let server = cluster().await;
    let mut consumer = Consumer::start(&server, "node-0").await;
    consumer.until_all_listed().await;
    server
        .apply_json(Kind::Service, service("dns", json!({})))
        .unwrap();
    server
        .apply_json(
            Kind::Service,
            service("headless", json!({"service.kubernetes.io/headless": ""})),
        )
        .unwrap();
    let mut changed = service("dns", json!({}));
    changed["spec"]["ports"][0]["port"] = json!(5353);
    server.apply_json(Kind::Service, changed).unwrap();
    server
        .delete(Kind::Service, "bench-0", "svc-00001")
        .unwrap();
    server
        .delete(Kind::EndpointSlice, "bench-0", "svc-00001-x7k2p")
        .unwrap();
    server
        .apply_json(
            Kind::Node,
            json!({"metadata": {"name": "node-1", "labels": {"changed": "yes"}}}),
        )
        .unwrap();
    server
        .apply_json(
            Kind::Node,
            json!({"metadata": {"name": "node-0", "labels": {"changed": "yes"}}}),
        )
        .unwrap();

    // The three watches are separate streams: wait for the last change of each.
    let mut last = HashSet::new();
    let events = consumer
        .until(|e| {
            match e {
                SourceEvent::Services(Event::Delete(_)) => last.insert("svc"),
                SourceEvent::EndpointSlices(Event::Delete(_)) => last.insert("slice"),
                SourceEvent::Node(_) => last.insert("node"),
                _ => false,
            };
            last.len() == 3
        })
        .await;
    let mut services = services(&events).map(|e| match e {
        Event::Apply(s) => format!(
            "apply {} {}",
            s.name_any(),
            s.spec.unwrap().ports.unwrap()[0].port
        ),
        Event::Delete(s) => format!("delete {}", s.name_any()),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(services.next().as_deref(), Some("apply dns 53"));
    assert_eq!(services.next().as_deref(), Some("apply dns 5353"));
    assert_eq!(services.next().as_deref(), Some("delete svc-00001"));
    assert_eq!(
        services.next(),
        None,
        "the headless-labelled Service is not sent"
    );
    let nodes: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, SourceEvent::Node(_)))
        .collect();
    match nodes[..] {
        [SourceEvent::Node(Event::Apply(n))] => {
            assert_eq!(n.name_any(), "node-0", "only this node")
        }
        _ => panic!("unexpected {nodes:?}"),
    }
    assert!(events.iter().any(|e| matches!(e, SourceEvent::EndpointSlices(Event::Delete(s)) if s.name_any() == "svc-00001-x7k2p")));
    assert_eq!(server.stats().lists, [1, 1, 1, 0], "no relist");
}

#[tokio::test]
async fn bookmarks_move_the_resume_point_without_events() {
    let server = cluster().await;
    let mut consumer = Consumer::start(&server, "node-0").await;
    consumer.until_all_listed().await;
    // An event through the watch: it is connected.
    server
        .apply_json(Kind::Service, service("before", json!({})))
        .unwrap();
    consumer
        .until(|e| matches!(e, SourceEvent::Services(Event::Apply(_))))
        .await;
    let bookmark = server.bookmark();
    server.close_watches();
    // The resumed watch starts from the bookmark: it was received.
    let resumed = tokio::time::timeout(TIMEOUT, server.wait_for(|s| s.watches[0] >= 2))
        .await
        .unwrap();
    assert_eq!(
        resumed.last_watch_rv[0].as_deref(),
        Some(bookmark.to_string().as_str())
    );
    server
        .apply_json(Kind::Service, service("after", json!({})))
        .unwrap();
    match consumer.next().await {
        SourceEvent::Services(Event::Apply(s)) => assert_eq!(s.name_any(), "after"),
        other => panic!("the bookmark made an event, or the apply was lost: {other:?}"),
    }
    assert_eq!(server.stats().lists[0], 1, "resuming is not relisting");
}

#[tokio::test]
async fn gone_forces_a_relist() {
    let server = cluster().await;
    let mut consumer = Consumer::start(&server, "node-0").await;
    consumer.until_all_listed().await;
    server.compact();
    server
        .delete(Kind::Service, "bench-0", "svc-00000")
        .unwrap();
    let events = consumer.until_all_listed().await;
    assert!(events.iter().any(|e| matches!(
        e,
        SourceEvent::WatchError {
            resource: "Service",
            kind: "gone",
            ..
        }
    )));
    let relisted: Vec<_> = services(&events)
        .skip_while(|e| !matches!(e, Event::Init))
        .collect();
    assert_eq!(
        listing(relisted.into_iter()),
        ["svc-00001", "svc-00002"],
        "a fresh listing, without the deleted one"
    );
    assert_eq!(server.stats().lists, [2, 2, 2, 0]);
}

#[tokio::test]
async fn an_unreachable_api_is_retried_and_relisted_when_back() {
    let server = cluster().await;
    let mut consumer = Consumer::start(&server, "node-0").await;
    consumer.until_all_listed().await;
    server.stop();
    let errors = consumer
        .until(|e| {
            matches!(
                e,
                SourceEvent::WatchError {
                    resource: "Service",
                    ..
                }
            )
        })
        .await;
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, SourceEvent::WatchError { .. })),
        "no object events while down: {errors:?}"
    );
    // The apiserver comes back without its watch history.
    server
        .apply_json(Kind::Service, service("while-down", json!({})))
        .unwrap();
    server.compact();
    server.restart_same_port().await.unwrap();
    let events = consumer.until_all_listed().await;
    let relisted: Vec<_> = services(&events)
        .skip_while(|e| !matches!(e, Event::Init))
        .collect();
    assert_eq!(
        listing(relisted.into_iter()),
        ["svc-00000", "svc-00001", "svc-00002", "while-down"]
    );
    assert_eq!(server.stats().lists[0], 2);
}

fn config_map(name: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"namespace": "ingress-nginx", "name": name}, "data": data})
}

fn stream_events(events: &[SourceEvent], kind: StreamKind) -> Vec<Event<ConfigMap>> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::StreamServices(k, e) if *k == kind => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The two ConfigMaps are watched by name, as a Role with `resourceNames`
/// allows and nothing wider: the server refuses any other ConfigMap list or
/// watch, and another ConfigMap in the namespace never shows.
#[tokio::test]
async fn stream_services_config_maps_are_watched_by_name_as_resource_names_allow() {
    let server = cluster().await;
    server.grant_config_maps(&[
        ("ingress-nginx", "tcp-services"),
        ("ingress-nginx", "udp-services"),
    ]);
    server
        .apply_json(
            Kind::ConfigMap,
            config_map("tcp-services", json!({"10000": "default/a:10000"})),
        )
        .unwrap();
    server
        .apply_json(Kind::ConfigMap, config_map("other", json!({"x": "y"})))
        .unwrap();
    // Without the field selector, RBAC with resourceNames says no.
    let dir = tempfile::tempdir().unwrap();
    server
        .write_kubeconfig(&dir.path().join("kubeconfig"))
        .unwrap();
    let kube = client(Some(&dir.path().join("kubeconfig"))).await.unwrap();
    let all: kube::Api<ConfigMap> = kube::Api::namespaced(kube, "ingress-nginx");
    let refused = all.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 403),
        "{refused:?}"
    );

    let streams = StreamConfig {
        tcp_services: Some(ConfigMapRef::new("ingress-nginx", "tcp-services")),
        udp_services: Some(ConfigMapRef::new("ingress-nginx", "udp-services")),
        publish_service: Some(ServiceRef::new("ingress-nginx", "controller")),
    };
    let mut consumer = Consumer::start_with(&server, "node-0", streams).await;
    let mut done = std::collections::BTreeSet::new();
    let events = consumer
        .until(|e| {
            if let SourceEvent::StreamServices(kind, Event::InitDone) = e {
                done.insert(*kind);
            }
            done.len() == 2
        })
        .await;
    assert_eq!(
        listing(stream_events(&events, StreamKind::Tcp).into_iter()),
        ["tcp-services"]
    );
    assert!(
        listing(stream_events(&events, StreamKind::Udp).into_iter()).is_empty(),
        "no udp-services ConfigMap yet"
    );
    assert_eq!(
        server.stats().forbidden,
        1,
        "only the list above was refused"
    );

    server
        .apply_json(Kind::ConfigMap, config_map("other", json!({"x": "z"})))
        .unwrap();
    server
        .apply_json(
            Kind::ConfigMap,
            config_map("udp-services", json!({"53": "kube-system/kube-dns:53"})),
        )
        .unwrap();
    match consumer
        .until(|e| matches!(e, SourceEvent::StreamServices(..)))
        .await
        .pop()
    {
        Some(SourceEvent::StreamServices(StreamKind::Udp, Event::Apply(c))) => {
            assert_eq!(c.name_any(), "udp-services")
        }
        other => panic!("expected the udp-services apply: {other:?}"),
    }
    server
        .delete(Kind::ConfigMap, "ingress-nginx", "tcp-services")
        .unwrap();
    match consumer
        .until(|e| matches!(e, SourceEvent::StreamServices(..)))
        .await
        .pop()
    {
        Some(SourceEvent::StreamServices(StreamKind::Tcp, Event::Delete(c))) => {
            assert_eq!(c.name_any(), "tcp-services")
        }
        other => panic!("expected the tcp-services delete: {other:?}"),
    }
    assert_eq!(server.stats().forbidden, 1);
    assert_eq!(server.stats().lists[Kind::ConfigMap.index()], 2);
}
