//! The test API server as the real kube client sees it.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::Client;
use kube_ipvs_testapi::{generate, ClusterSpec, Kind, TestApiServer};
use serde_json::json;

async fn client(server: &TestApiServer) -> Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn service(ns: &str, name: &str, labels: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"namespace": ns, "name": name, "labels": labels}, "spec": {"clusterIP": "10.96.0.1"}})
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn lists_page_through_a_generated_cluster() {
    let server = TestApiServer::start().await.unwrap();
    for (kind, object) in generate(ClusterSpec {
        services: 120,
        endpoints_per_service: 2,
        nodes: 3,
    }) {
        server.apply_json(kind, object).unwrap();
    }
    let client = client(&server).await;
    let services: Api<Service> = Api::all(client.clone());
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(50);
    loop {
        let page = within(services.list(&lp)).await.unwrap();
        names.extend(page.items.into_iter().map(|s| s.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(names.len(), 120);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bench-0");
    assert_eq!(
        within(slices.list(&ListParams::default()))
            .await
            .unwrap()
            .items
            .len(),
        120
    );
    let nodes: Api<Node> = Api::all(client);
    let one = within(nodes.list(&ListParams::default().fields("metadata.name=node-1")))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    assert_eq!(server.stats().lists, [1, 1, 1, 0]);
}

#[tokio::test]
async fn watches_follow_changes_and_filter_by_label() {
    let server = TestApiServer::start().await.unwrap();
    server
        .apply_json(Kind::Service, service("a", "old", json!({})))
        .unwrap();
    let client = client(&server).await;
    let services: Api<Service> = Api::all(client);
    let list = within(services.list(&ListParams::default())).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let wp = WatchParams::default()
        .labels("!service.kubernetes.io/headless")
        .timeout(30);
    let mut events = within(services.watch(&wp, &rv)).await.unwrap().boxed();
    server
        .apply_json(
            Kind::Service,
            service(
                "a",
                "headless",
                json!({"service.kubernetes.io/headless": ""}),
            ),
        )
        .unwrap();
    server
        .apply_json(Kind::Service, service("a", "new", json!({})))
        .unwrap();
    server.delete(Kind::Service, "a", "old").unwrap();
    let bookmark = server.bookmark();
    match within(events.try_next()).await.unwrap().unwrap() {
        WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("new")),
        other => panic!("unexpected {other:?}"),
    }
    match within(events.try_next()).await.unwrap().unwrap() {
        WatchEvent::Deleted(s) => assert_eq!(s.metadata.name.as_deref(), Some("old")),
        other => panic!("unexpected {other:?}"),
    }
    match within(events.try_next()).await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, bookmark.to_string()),
        other => panic!("unexpected {other:?}"),
    }
    server.compact();
    assert!(
        within(events.try_next()).await.unwrap().is_none(),
        "compaction ends open watches"
    );
    let mut events = within(services.watch(&wp, &rv)).await.unwrap().boxed();
    match within(events.try_next()).await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn watches_end_after_their_timeout() {
    let server = TestApiServer::start().await.unwrap();
    let services: Api<Service> = Api::all(client(&server).await);
    let mut events = within(services.watch(&WatchParams::default().timeout(1), "0"))
        .await
        .unwrap()
        .boxed();
    assert!(within(events.next()).await.is_none());
}

#[tokio::test]
async fn stopped_server_refuses_then_comes_back_with_its_objects() {
    let server = TestApiServer::start().await.unwrap();
    server
        .apply_json(Kind::Node, json!({"metadata": {"name": "n1"}}))
        .unwrap();
    let nodes: Api<Node> = Api::all(client(&server).await);
    server.stop();
    assert!(within(nodes.list(&ListParams::default())).await.is_err());
    server.restart_same_port().await.unwrap();
    let list = within(nodes.list(&ListParams::default())).await.unwrap();
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("n1"));
}

/// A get and a replace of one object through the kube client, as a
/// controller writes an EndpointSlice: the replace is a `MODIFIED` event to
/// a watch, a replace of a missing object is 404 and one naming another
/// object 400.
#[tokio::test]
async fn get_and_replace_one_object() {
    let server = TestApiServer::start().await.unwrap();
    server
        .apply_json(Kind::Service, service("ns", "web", json!({})))
        .unwrap();
    let client = client(&server).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "ns");
    let mut web = within(services.get("web")).await.unwrap();
    assert_eq!(
        web.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("10.96.0.1")
    );
    let version = web.metadata.resource_version.clone().unwrap();

    let watch = within(services.watch(&WatchParams::default(), &version))
        .await
        .unwrap();
    futures::pin_mut!(watch);
    web.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.2".into());
    let replaced = within(services.replace("web", &Default::default(), &web))
        .await
        .unwrap();
    assert_eq!(
        replaced.spec.unwrap().cluster_ip.as_deref(),
        Some("10.96.0.2")
    );
    assert_ne!(replaced.metadata.resource_version.unwrap(), version);
    match within(watch.next()).await {
        Some(Ok(WatchEvent::Modified(s))) => {
            assert_eq!(s.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.2"))
        }
        other => panic!("expected a MODIFIED event, got {other:?}"),
    }

    let missing = within(services.replace("gone", &Default::default(), &{
        let mut s = web.clone();
        s.metadata.name = Some("gone".into());
        s
    }))
    .await;
    assert!(matches!(missing, Err(kube::Error::Api(e)) if e.code == 404));
    let other = within(services.replace("other", &Default::default(), &web)).await;
    assert!(matches!(other, Err(kube::Error::Api(e)) if e.code == 400));
    assert!(matches!(
        within(services.get("gone")).await,
        Err(kube::Error::Api(e)) if e.code == 404
    ));
}
