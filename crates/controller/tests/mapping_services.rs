//! Which Services are mapped at all, and that mapping them one at a time
//! gives what mapping them all does.

mod common;

use common::*;
use kube_ipvs_controller::{desired_service, Config, ServiceState};
use kube_ipvs_model::Scheduler;
use serde_json::json;

/// A `service-proxy-name` label the API would not admit leaves the
/// Service to nobody, named as skipped; the Service beside it is served.
#[test]
fn invalid_proxy_name_label_is_skipped_by_name() {
    let bad = service(json!({
        "metadata": {"namespace": "default", "name": "bad",
                     "labels": {"service.kubernetes.io/service-proxy-name": "-kube ipvs-"}},
        "spec": {"clusterIP": "10.96.0.2", "clusterIPs": ["10.96.0.2"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }));
    let mut w = World::new().with(bad).with(cluster_ip("web", json!({})));
    w.config.service_proxy_name = Some("kube-ipvs".to_owned());
    assert!(desired_service(&w.snapshot, &w.config, &r("bad")).is_none());
    assert_eq!(
        w.skipped(),
        ["Service default/bad: label service.kubernetes.io/service-proxy-name: \"-kube ipvs-\" is not a valid label value"]
    );
    w.config.service_proxy_name = None;
    assert!(desired_service(&w.snapshot, &w.config, &r("bad")).is_none());
    assert!(desired_service(&w.snapshot, &w.config, &r("web")).is_some());
}

#[test]
fn not_proxied() {
    let labelled = |value: &str| {
        service(json!({
            "metadata": {"namespace": "default", "name": "web",
                         "labels": {"service.kubernetes.io/service-proxy-name": value}},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}
        }))
    };
    let cases: Vec<(
        &str,
        k8s_openapi::api::core::v1::Service,
        Option<&str>,
        bool,
    )> = vec![
        (
            "headless",
            cluster_ip("web", json!({"clusterIP": "None"})),
            None,
            false,
        ),
        (
            "headless clusterIPs",
            cluster_ip("web", json!({"clusterIP": "None", "clusterIPs": ["None"]})),
            None,
            false,
        ),
        (
            "no cluster IP yet",
            cluster_ip("web", json!({"clusterIP": ""})),
            None,
            false,
        ),
        (
            "ExternalName",
            cluster_ip(
                "web",
                json!({"type": "ExternalName", "externalName": "db.example", "clusterIP": ""}),
            ),
            None,
            false,
        ),
        ("another proxy's", labelled("other"), None, false),
        (
            "labelled, we have no name",
            labelled("kube-ipvs"),
            None,
            false,
        ),
        (
            "labelled with our name",
            labelled("kube-ipvs"),
            Some("kube-ipvs"),
            true,
        ),
        (
            "another proxy's, we have a name",
            labelled("other"),
            Some("kube-ipvs"),
            false,
        ),
        (
            "unlabelled, we have a name: kube-proxy's",
            cluster_ip("web", json!({})),
            Some("kube-ipvs"),
            false,
        ),
    ];
    for (what, svc, proxy_name, proxied) in cases {
        let mut w = World::new().with(svc);
        w.config.service_proxy_name = proxy_name.map(str::to_owned);
        assert_eq!(
            desired_service(&w.snapshot, &w.config, &r("web")).is_some(),
            proxied,
            "{what}"
        );
        assert!(w.skipped().is_empty(), "{what}");
    }
    // Slices of headless Services, and slices without a Service, feed nothing.
    let mut headless = http_slice("web-h", "web", json!([ep("10.0.0.9", "n")]));
    headless
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("service.kubernetes.io/headless".into(), String::new());
    let mut orphan = http_slice("web-o", "web", json!([ep("10.0.0.8", "n")]));
    orphan.metadata.labels = None;
    let w = World::new()
        .with(cluster_ip("web", json!({})))
        .with_slice(headless)
        .with_slice(orphan);
    assert_eq!(w.vs("web"), ["ClusterIP TCP 10.96.0.10:80 http ->"]);
}

#[test]
fn desired_equals_desired_service_for_every_service() {
    let mut w = World::new()
        .with(cluster_ip(
            "a",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30001}]}),
        ))
        .with(cluster_ip(
            "b",
            json!({"clusterIP": "10.96.0.11", "externalIPs": ["203.0.113.1"]}),
        ))
        .with(cluster_ip("c", json!({"clusterIP": "None"})))
        .with(cluster_ip(
            "d",
            json!({"clusterIP": "10.96.0.13", "internalTrafficPolicy": "Local"}),
        ))
        .with_slice(http_slice("a-1", "a", json!([ep("10.0.0.1", "node-a")])))
        .with_slice(http_slice(
            "d-1",
            "d",
            json!([ep("10.0.0.2", "node-a"), ep("10.0.0.3", "node-b")]),
        ));
    w.config.scheduler = Scheduler::Wrr;
    let full = w.desired();
    let mut assembled = std::collections::BTreeMap::new();
    for (service, _) in w.snapshot.services() {
        if let Some(state) = desired_service(&w.snapshot, &w.config, service) {
            assembled.insert(service.clone(), state);
        }
    }
    assert_eq!(full.services, assembled);
    assert_eq!(full.services.len(), 3);
    let empty: ServiceState = Default::default();
    assert!(full.services.values().all(|s| *s != empty));
    let _ = Config::default();
}
