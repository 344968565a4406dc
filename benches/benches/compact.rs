//! The compact desired state: indexing it for planning (`Intent::new`),
//! looking every virtual server up in it, and a Service's per-port map
//! as the sorted vector the state keeps against the `BTreeMap` it was.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kube_ipvs_benches::{config, snapshot};
use kube_ipvs_controller::{desired, Intent, VecMap};
use kube_ipvs_netlink::{RealServer, RealServerKey};

const ENDPOINTS: usize = 10;

fn intent(c: &mut Criterion) {
    let mut group = c.benchmark_group("intent_new");
    group.sample_size(10);
    for services in [1_000, 10_000] {
        let state = desired(&snapshot(services, ENDPOINTS), &config());
        group.bench_with_input(BenchmarkId::from_parameter(services), &state, |b, s| {
            b.iter(|| Intent::new(s.clone()))
        });
    }
    group.finish();
}

fn lookup_every_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("intent_lookup_every_key");
    group.sample_size(10);
    for services in [1_000, 10_000] {
        let intent = Intent::new(desired(&snapshot(services, ENDPOINTS), &config()));
        group.bench_with_input(BenchmarkId::from_parameter(services), &intent, |b, i| {
            b.iter(|| {
                i.keys()
                    .filter_map(|k| i.virtual_server(k))
                    .map(|(_, vs)| vs.real_servers.len())
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

fn real_servers(n: u8) -> impl Iterator<Item = (RealServerKey, RealServer)> {
    (0..n).map(|i| {
        let server = RealServer::new([10, 0, 0, i].into(), 8080);
        (server.key, server)
    })
}

fn per_service_map(c: &mut Criterion) {
    let mut group = c.benchmark_group("real_servers_build_and_find");
    for n in [1u8, 10, 100] {
        group.bench_function(BenchmarkId::new("vec_map", n), |b| {
            b.iter(|| {
                let map: VecMap<_, _> = real_servers(n).collect();
                real_servers(n).filter(|(k, _)| map.contains_key(k)).count()
            })
        });
        group.bench_function(BenchmarkId::new("btree_map", n), |b| {
            b.iter(|| {
                let map: BTreeMap<_, _> = real_servers(n).collect();
                real_servers(n).filter(|(k, _)| map.contains_key(k)).count()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, intent, lookup_every_key, per_service_map);
criterion_main!(benches);
