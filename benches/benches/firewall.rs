//! The nftables table's cost for one endpoint changed at 10,000 Services
//! with 10 endpoints each: the ruleset diff and its `add element` /
//! `delete element` transaction, against rendering the whole table as
//! every change did before. Prints the bytes each hands to `nft` first.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kube_ipvs::firewall::{diff, render, FirewallConfig, Ruleset, TableChange};
use kube_ipvs_benches::{alternating_slices, config, snapshot};
use kube_ipvs_controller::desired;

const SERVICES: usize = 10_000;
const ENDPOINTS: usize = 10;

/// The ruleset at `SERVICES` Services, and again after one endpoint of a
/// ClusterIP Service was replaced.
fn rulesets() -> (Ruleset, Ruleset) {
    let config = config();
    let firewall = FirewallConfig {
        cluster_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
        ..FirewallConfig::default()
    };
    let mut snapshot = snapshot(SERVICES, ENDPOINTS);
    let before = Ruleset::new(&desired(&snapshot, &config), &firewall);
    snapshot.apply_slice(&alternating_slices(SERVICES / 2 + 1, ENDPOINTS)[0]);
    let after = Ruleset::new(&desired(&snapshot, &config), &firewall);
    (before, after)
}

fn update_json(before: &Ruleset, after: &Ruleset) -> String {
    let TableChange::Elements(changes) = diff(before, after) else {
        panic!("one endpoint changes elements only");
    };
    assert_eq!((changes.added(), changes.deleted()), (1, 1));
    serde_json::to_string(&kube_ipvs::firewall::diff::update(&changes)).unwrap()
}

fn whole_json(ruleset: &Ruleset) -> String {
    serde_json::to_string(&render::replace(ruleset)).unwrap()
}

fn one_endpoint_changed(c: &mut Criterion) {
    let (before, after) = rulesets();
    eprintln!(
        "bytes handed to nft for one endpoint changed at {SERVICES} Services x {ENDPOINTS} \
         endpoints ({} set elements): whole table {}, element changes {}",
        after.element_count(),
        whole_json(&after).len(),
        update_json(&before, &after).len()
    );
    let mut group = c.benchmark_group("firewall_one_endpoint_changed");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("diff_and_render", SERVICES), |b| {
        b.iter(|| update_json(&before, &after))
    });
    group.bench_function(BenchmarkId::new("whole_table_render", SERVICES), |b| {
        b.iter(|| whole_json(&after))
    });
    group.finish();
}

criterion_group!(benches, one_endpoint_changed);
criterion_main!(benches);
