//! The Services' health checks: which Services get one, on which port, with
//! how many local endpoints; bad ports skipped by name.

mod common;

use common::*;
use kube_ipvs_controller::{health_checks, HealthCheck, SkipReason};
use serde_json::json;

fn lb(
    name: &str,
    ip: &str,
    node_port: u16,
    hc: u16,
    policy: &str,
) -> k8s_openapi::api::core::v1::Service {
    service(json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"type": "LoadBalancer", "clusterIP": ip, "externalTrafficPolicy": policy,
                 "healthCheckNodePort": hc,
                 "ports": [{"name": "http", "port": 80, "nodePort": node_port}]}
    }))
}

/// `pkg/proxy/healthcheck/service_health.go` `SyncServices`/`SyncEndpoints`
/// as fed by `serviceport.go` (`NeedsHealthCheck`: LoadBalancer with
/// `externalTrafficPolicy: Local`) and the local ready endpoint count.
#[test]
fn health_checks_of_local_load_balancers() {
    let w = World::new()
        .with(lb("here", "10.96.0.1", 30001, 32001, "Local"))
        .with_slice(http_slice(
            "here-1",
            "here",
            json!([
                ep("10.0.0.1", "node-a"),
                ep("10.0.0.2", "node-a"),
                ep("10.0.0.3", "node-b"),
                ep_cond("10.0.0.4", "node-a", false, true, true)
            ]),
        ))
        .with(lb("cluster", "10.96.0.2", 30002, 32002, "Cluster"))
        .with(lb("low", "10.96.0.3", 30003, 8000, "Local"))
        .with(lb("taken", "10.96.0.4", 30004, 32001, "Local"))
        .with(lb("on-node-port", "10.96.0.5", 30005, 30002, "Local"))
        .with(lb("zz-none-here", "10.96.0.6", 30006, 32006, "Local"));
    let mut skipped = Vec::new();
    let checks = health_checks(&w.snapshot, &w.config, &(30000..=32767), &mut skipped);
    assert_eq!(
        checks,
        [
            (
                r("here"),
                HealthCheck {
                    port: 32001,
                    local_endpoints: 2
                }
            ),
            (
                r("zz-none-here"),
                HealthCheck {
                    port: 32006,
                    local_endpoints: 0
                }
            ),
        ]
        .into_iter()
        .collect()
    );
    let reasons: Vec<(String, &str)> = skipped
        .iter()
        .map(|s| (s.object.clone(), s.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("default/low".to_owned(), "health_check_port_out_of_range"),
            ("default/on-node-port".to_owned(), "health_check_port_taken"),
            ("default/taken".to_owned(), "health_check_port_taken"),
        ]
    );
    assert!(
        matches!(&skipped[2].reason, SkipReason::HealthCheckPortTaken { owner, .. } if *owner == r("here"))
    );
}
