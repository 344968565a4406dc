//! Tests of the parent module.

use std::net::IpAddr;

use kube_ipvs_netlink::Protocol;
use serde_json::{json, Value};

use super::*;
use crate::firewall::ruleset::{AllowedSource, Hairpin, MasqueradeScope, ServicePort};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn service(address: &str, port: u16) -> ServicePort {
    ServicePort {
        address: ip(address),
        protocol: Protocol::Tcp,
        port,
    }
}

fn hairpin(address: &str) -> Hairpin {
    Hairpin {
        address: ip(address),
        protocol: Protocol::Tcp,
        port: 8080,
    }
}

/// A ruleset of one v4 and one v6 Service, the v4 one with `endpoints`.
fn ruleset(endpoints: &[&str]) -> Ruleset {
    let mut r = Ruleset {
        masquerade_mark: 0x4000,
        ..Ruleset::default()
    };
    r.ipv4.masquerade = MasqueradeScope::OutsideClusterCidrs;
    r.ipv4
        .cluster_cidrs
        .insert("10.244.0.0/16".parse().unwrap());
    r.ipv4.vips.insert(ip("10.96.0.10"));
    r.ipv4.services.insert(service("10.96.0.10", 80));
    r.ipv4.hairpin = endpoints.iter().map(|e| hairpin(e)).collect();
    r.ipv6.vips.insert(ip("fd00::10"));
    r.ipv6.services.insert(service("fd00::10", 80));
    r
}

#[test]
fn equal_rulesets_need_nothing() {
    let a = ruleset(&["10.244.0.1", "10.244.0.2"]);
    assert_eq!(diff(&a, &a.clone()), TableChange::None);
}

#[test]
fn the_mark_the_interface_or_a_scope_changes_the_structure() {
    let a = ruleset(&["10.244.0.1"]);
    let mut mark = a.clone();
    mark.masquerade_mark = 0x8000;
    let mut interface = a.clone();
    interface.local_interface = Some("cbr0".into());
    let mut v4 = a.clone();
    v4.ipv4.masquerade = MasqueradeScope::All;
    let mut v6 = a.clone();
    v6.ipv6.masquerade = MasqueradeScope::OutsideLocalInterface;
    for b in [mark, interface, v4, v6] {
        assert_eq!(diff(&a, &b), TableChange::Structure, "{b:?}");
        assert!(!same_structure(&b, &a));
    }
}

#[test]
fn an_endpoint_replaced_adds_one_element_and_deletes_one() {
    let old = ruleset(&["10.244.0.1", "10.244.0.2"]);
    let new = ruleset(&["10.244.0.1", "10.244.0.3"]);
    let TableChange::Elements(changes) = diff(&old, &new) else {
        panic!("{:?}", diff(&old, &new));
    };
    assert_eq!((changes.added(), changes.deleted()), (1, 1));
    assert_eq!(
        changes.ipv4.added.hairpin,
        [hairpin("10.244.0.3")].into(),
        "{changes:?}"
    );
    assert_eq!(changes.ipv4.deleted.hairpin, [hairpin("10.244.0.2")].into());
    assert_eq!(changes.ipv6, FamilyChanges::default());
}

#[test]
fn changes_applied_to_the_old_ruleset_give_the_new_one() {
    let mut lb = ruleset(&["10.244.0.9"]);
    let vip = service("192.0.2.1", 443);
    lb.ipv4.vips.insert(vip.address);
    lb.ipv4.services.insert(vip);
    lb.ipv4.external_services.insert(vip);
    lb.ipv4.restricted.insert(vip);
    lb.ipv4.allowed_sources.insert(AllowedSource {
        service: vip,
        source: "203.0.113.0/24".parse().unwrap(),
    });
    lb.ipv6.vips.clear();
    let cases = [
        (ruleset(&[]), ruleset(&["10.244.0.1", "10.244.0.2"])),
        (ruleset(&["10.244.0.1"]), ruleset(&[])),
        (ruleset(&["10.244.0.1", "10.244.0.2"]), lb.clone()),
        (lb, ruleset(&["10.244.0.1"])),
    ];
    for (old, new) in cases {
        let TableChange::Elements(changes) = diff(&old, &new) else {
            panic!("{old:?} {new:?}");
        };
        let mut held = old.clone();
        held.apply_changes(&changes).unwrap();
        assert_eq!(held, new);
    }
}

#[test]
fn deleting_an_element_the_table_lacks_fails_and_changes_nothing() {
    let old = ruleset(&["10.244.0.1", "10.244.0.2"]);
    let new = ruleset(&["10.244.0.3"]);
    let TableChange::Elements(changes) = diff(&old, &new) else {
        panic!()
    };
    let mut held = ruleset(&["10.244.0.1"]);
    let before = held.clone();
    assert_eq!(held.apply_changes(&changes), Err(MissingElement));
    assert_eq!(held, before);
}

fn commands(changes: &ElementChanges) -> Vec<Value> {
    let v = serde_json::to_value(update(changes)).unwrap();
    v["nftables"].as_array().unwrap().clone()
}

#[test]
fn the_update_deletes_then_adds_one_command_per_set() {
    let old = ruleset(&["10.244.0.1", "10.244.0.2"]);
    let mut new = ruleset(&["10.244.0.3", "10.244.0.4"]);
    new.ipv6.vips.insert(ip("fd00::11"));
    let TableChange::Elements(changes) = diff(&old, &new) else {
        panic!()
    };
    let hairpin = |a: &str| json!({"concat": [a, "tcp", 8080, a]});
    assert_eq!(
        commands(&changes),
        [
            json!({"delete": {"element": {
                "family": "inet", "table": "kube-ipvs", "name": "hairpin-v4",
                "elem": [hairpin("10.244.0.1"), hairpin("10.244.0.2")],
            }}}),
            json!({"add": {"element": {
                "family": "inet", "table": "kube-ipvs", "name": "hairpin-v4",
                "elem": [hairpin("10.244.0.3"), hairpin("10.244.0.4")],
            }}}),
            json!({"add": {"element": {
                "family": "inet", "table": "kube-ipvs", "name": "vips-v6",
                "elem": ["fd00::11"],
            }}}),
        ]
    );
}

#[test]
fn interval_elements_render_as_prefixes() {
    let old = ruleset(&[]);
    let mut new = old.clone();
    new.ipv4.cluster_cidrs.clear();
    new.ipv4.cluster_cidrs.insert("10.0.0.0/8".parse().unwrap());
    let TableChange::Elements(changes) = diff(&old, &new) else {
        panic!()
    };
    let commands = commands(&changes);
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert_eq!(
        commands[0]["delete"]["element"]["elem"],
        json!([{"prefix": {"addr": "10.244.0.0", "len": 16}}])
    );
    assert_eq!(
        commands[1]["add"]["element"]["elem"],
        json!([{"prefix": {"addr": "10.0.0.0", "len": 8}}])
    );
}

#[test]
fn one_endpoint_changed_among_many_sends_a_small_fraction_of_the_table() {
    let many: Vec<String> = (0..2000)
        .map(|i| format!("10.244.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let old = ruleset(&refs);
    let new = ruleset(&refs[1..]);
    let TableChange::Elements(changes) = diff(&old, &new) else {
        panic!()
    };
    let full = serde_json::to_string(&crate::firewall::render::replace(&new)).unwrap();
    let update = serde_json::to_string(&update(&changes)).unwrap();
    assert!(
        update.len() * 100 < full.len(),
        "{} {}",
        update.len(),
        full.len()
    );
}
