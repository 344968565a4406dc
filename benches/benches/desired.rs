//! The mapping's cost: the full desired state of clusters of 1,000 to
//! 50,000 Services with 10 endpoints each, and the incremental path when
//! one endpoint changes.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kube_ipvs_benches::{alternating_slices, config, service, service_ref, slice, snapshot};
use kube_ipvs_controller::{desired, desired_service};

const ENDPOINTS: usize = 10;

fn full(c: &mut Criterion) {
    let mut group = c.benchmark_group("desired_full");
    group.sample_size(10);
    let config = config();
    for services in [1_000, 10_000, 50_000] {
        let snapshot = snapshot(services, ENDPOINTS);
        group.bench_with_input(BenchmarkId::from_parameter(services), &snapshot, |b, s| {
            b.iter(|| desired(s, &config))
        });
    }
    group.finish();
}

fn one_endpoint_changed(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_endpoint_changed");
    let config = config();
    for services in [1_000, 10_000, 50_000] {
        let mut snapshot = snapshot(services, ENDPOINTS);
        let target = services / 2;
        let versions = alternating_slices(target, ENDPOINTS);
        let service = service_ref(target);
        let mut turn = 0;
        group.bench_function(BenchmarkId::from_parameter(services), |b| {
            b.iter(|| {
                let changed = snapshot.apply_slice(&versions[turn]);
                turn ^= 1;
                assert!(changed.affects(&service));
                desired_service(&snapshot, &config, &service)
            })
        });
    }
    group.finish();
}

fn relist_unchanged(c: &mut Criterion) {
    let mut group = c.benchmark_group("relist_unchanged");
    group.sample_size(10);
    let services = 10_000;
    let mut snapshot = snapshot(services, ENDPOINTS);
    let svcs: Vec<_> = (0..services).map(service).collect();
    let slices: Vec<_> = (0..services).map(|i| slice(i, ENDPOINTS, 0)).collect();
    group.bench_function(BenchmarkId::from_parameter(services), |b| {
        b.iter(|| {
            let mut changed = snapshot.replace_services(&svcs);
            changed.merge(snapshot.replace_slices(&slices));
            assert!(changed.is_empty());
        })
    });
    group.finish();
}

criterion_group!(benches, full, one_endpoint_changed, relist_unchanged);
criterion_main!(benches);
