//! How a virtual service is configured: schedulers and their flags, per
//! Service, and session affinity.

mod common;

use common::*;
use kube_ipvs_model::{Scheduler, ServiceFlags};
use serde_json::json;

fn scheduler_of(w: &World) -> (Scheduler, ServiceFlags) {
    let d = w.desired();
    let vs = d.services[&r("web")]
        .virtual_servers
        .values()
        .next()
        .unwrap()
        .service
        .clone();
    (vs.scheduler, vs.flags)
}

#[test]
fn per_service_schedulers_and_flags() {
    let both = ServiceFlags::SCHED1 | ServiceFlags::SCHED2;
    let cases: Vec<(serde_json::Value, Scheduler, ServiceFlags, Option<&str>)> = vec![
        (json!({}), Scheduler::Rr, ServiceFlags::empty(), None),
        (json!({"kube-ipvs.io/scheduler": "wlc"}), Scheduler::Wlc, ServiceFlags::empty(), None),
        (json!({"kube-ipvs.io/scheduler": "sh", "kube-ipvs.io/scheduler-flags": "sh-fallback,sh-port"}), Scheduler::Sh, both, None),
        (json!({"kube-ipvs.io/scheduler": "mh", "kube-ipvs.io/scheduler-flags": "mh-port"}), Scheduler::Mh, ServiceFlags::SCHED2, None),
        (json!({"kube-router.io/service.scheduler": "sh", "kube-router.io/service.schedflags": "flag-1,flag-2"}), Scheduler::Sh, both, None),
        (json!({"kube-ipvs.io/scheduler": "lc", "kube-router.io/service.scheduler": "sh"}), Scheduler::Lc, ServiceFlags::empty(), None),
        (
            json!({"kube-ipvs.io/scheduler": "fastest"}),
            Scheduler::Rr,
            ServiceFlags::empty(),
            Some("Service default/web: annotation kube-ipvs.io/scheduler: unknown scheduler \"fastest\", using the default"),
        ),
        (
            json!({"kube-ipvs.io/scheduler": "sh", "kube-ipvs.io/scheduler-flags": "sh-port,turbo"}),
            Scheduler::Sh,
            ServiceFlags::empty(),
            Some("Service default/web: annotation kube-ipvs.io/scheduler-flags: invalid scheduler flags \"sh-port,turbo\" (unknown flag), setting none"),
        ),
        (
            json!({"kube-ipvs.io/scheduler": "mh", "kube-ipvs.io/scheduler-flags": "sh-port"}),
            Scheduler::Mh,
            ServiceFlags::empty(),
            Some("Service default/web: annotation kube-ipvs.io/scheduler-flags: flags \"sh-port\" do not apply to scheduler mh, setting none"),
        ),
        (
            json!({"kube-ipvs.io/scheduler-flags": "sh-port"}),
            Scheduler::Rr,
            ServiceFlags::empty(),
            Some("Service default/web: annotation kube-ipvs.io/scheduler-flags: flags \"sh-port\" do not apply to scheduler rr, setting none"),
        ),
    ];
    for (annotations, scheduler, flags, skip) in cases {
        let svc = service(json!({
            "metadata": {"namespace": "default", "name": "web", "annotations": annotations},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}
        }));
        let w = World::new().with(svc);
        assert_eq!(
            scheduler_of(&w),
            (scheduler.clone(), flags),
            "{annotations}"
        );
        let expected: Vec<String> = skip.into_iter().map(str::to_owned).collect();
        assert_eq!(w.skipped(), expected, "{annotations}");
    }
    // Flags without a scheduler annotation apply to a default that takes them.
    let mut w = World::new().with(service(json!({
        "metadata": {"namespace": "default", "name": "web", "annotations": {"kube-ipvs.io/scheduler-flags": "sh-port"}},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}
    })));
    w.config.scheduler = Scheduler::Sh;
    assert_eq!(scheduler_of(&w), (Scheduler::Sh, ServiceFlags::SCHED2));
}

#[test]
fn session_affinity() {
    for (spec, timeout) in [
        (json!({"sessionAffinity": "ClientIP"}), 10800),
        (
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}),
            600,
        ),
    ] {
        let svc = cluster_ip("web", json!({"clusterIPs": ["10.96.0.10", "fd00::10"]}));
        let mut v = serde_json::to_value(&svc).unwrap();
        for (k, val) in spec.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        let w = World::new().with(service(v));
        let d = w.desired();
        for vs in d.services[&r("web")].virtual_servers.values() {
            assert!(vs.service.flags.contains(ServiceFlags::PERSISTENT));
            assert_eq!(vs.service.timeout, timeout);
            let max = if vs.service.key.address().unwrap().is_ipv4() {
                32
            } else {
                128
            };
            assert_eq!(vs.service.netmask, max);
        }
        assert_eq!(d.services[&r("web")].virtual_servers.len(), 2);
    }
    let w = World::new().with(cluster_ip("web", json!({"sessionAffinity": "None"})));
    assert_eq!(scheduler_of(&w).1, ServiceFlags::empty());
}
