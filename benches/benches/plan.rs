//! The planner's cost at 1,000 to 50,000 Services with 10 endpoints each:
//! a full plan (`Extent::All`) from an empty kernel and over a kernel that
//! already matches, and the incremental path for one endpoint changed
//! (`Intent::replace` of one Service, then a plan over its `Scope`).

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kube_ipvs_benches::{alternating_slices, config, service_ref, snapshot};
use kube_ipvs_controller::{
    desired, desired_service, plan, Draining, Extent, Intent, Observed, PlanConfig,
};

const ENDPOINTS: usize = 10;
const SIZES: [usize; 3] = [1_000, 10_000, 50_000];

/// The desired state of `services` Services, indexed.
fn intent(services: usize) -> Intent {
    Intent::new(desired(&snapshot(services, ENDPOINTS), &config()))
}

/// A kernel that holds exactly what `intent` wants: the cold plan, recorded.
fn synced(intent: &Intent, config: &PlanConfig) -> Observed {
    let cold = plan(
        &Observed::default(),
        intent,
        Extent::All,
        config,
        &Draining::new(),
        Instant::now(),
    );
    let mut observed = Observed::default();
    for op in &cold.ops {
        observed.record(op);
    }
    observed
}

fn full(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan_full");
    group.sample_size(10);
    let config = PlanConfig::default();
    let draining = Draining::new();
    for services in SIZES {
        let intent = intent(services);
        let empty = Observed::default();
        group.bench_with_input(BenchmarkId::new("cold", services), &intent, |b, i| {
            b.iter(|| plan(&empty, i, Extent::All, &config, &draining, Instant::now()))
        });
        let observed = synced(&intent, &config);
        group.bench_with_input(BenchmarkId::new("in_sync", services), &intent, |b, i| {
            b.iter(|| {
                let p = plan(
                    &observed,
                    i,
                    Extent::All,
                    &config,
                    &draining,
                    Instant::now(),
                );
                assert!(p.ops.is_empty());
                p
            })
        });
    }
    group.finish();
}

fn one_endpoint_changed(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan_one_endpoint_changed");
    let config = config();
    let plan_config = PlanConfig::default();
    for services in SIZES {
        let mut snapshot = snapshot(services, ENDPOINTS);
        let mut intent = Intent::new(desired(&snapshot, &config));
        let mut observed = synced(&intent, &plan_config);
        let mut draining = Draining::new();
        // A ClusterIP Service (one in four has node ports too).
        let target = services / 2 + 1;
        let versions = alternating_slices(target, ENDPOINTS);
        let service = service_ref(target);
        let mut turn = 0;
        group.bench_function(BenchmarkId::from_parameter(services), |b| {
            b.iter(|| {
                snapshot.apply_slice(&versions[turn]);
                turn ^= 1;
                let state = desired_service(&snapshot, &config, &service);
                let scope = intent.replace(service.clone(), state);
                let planned = plan(
                    &observed,
                    &intent,
                    Extent::Scope(&scope),
                    &plan_config,
                    &draining,
                    Instant::now(),
                );
                // One real server added, one drained or removed.
                assert!(!planned.ops.is_empty() && planned.ops.len() <= 2);
                for op in &planned.ops {
                    observed.record(op);
                }
                draining = planned.draining;
            })
        });
    }
    group.finish();
}

criterion_group!(benches, full, one_endpoint_changed);
criterion_main!(benches);
