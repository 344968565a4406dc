//! Tests of the parent module.

use super::*;
use crate::firewall::ruleset::{AllowedSource, ServicePort};
use serde_json::{json, Value};

fn service(a: &str, port: u16) -> ServicePort {
    ServicePort {
        address: a.parse().unwrap(),
        protocol: Protocol::Tcp,
        port,
    }
}

fn rendered(ruleset: &Ruleset) -> Vec<Value> {
    let v = serde_json::to_value(replace(ruleset)).unwrap();
    v["nftables"].as_array().unwrap().clone()
}

fn set<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["add"]["set"]["name"] == name)
        .unwrap_or_else(|| panic!("no set {name}"))
}

#[test]
fn replace_creates_deletes_and_recreates_the_table_first() {
    let objects = rendered(&Ruleset::default());
    let table = json!({"family": "inet", "name": "kube-ipvs"});
    assert_eq!(objects[0], json!({"add": {"table": table}}));
    assert_eq!(objects[1], json!({"delete": {"table": table}}));
    assert_eq!(objects[2], json!({"add": {"table": table}}));
    assert_eq!(
        objects[3],
        json!({"add": {"chain": {"family": "inet", "table": "kube-ipvs", "name": "prerouting",
            "type": "filter", "hook": "prerouting", "prio": -100, "policy": "accept"}}})
    );
}

#[test]
fn sets_carry_elements_and_empty_ones_none() {
    let mut ruleset = Ruleset::default();
    ruleset.ipv4.services.insert(service("10.96.0.10", 53));
    ruleset.ipv4.allowed_sources.insert(AllowedSource {
        service: service("192.0.2.10", 80),
        source: "198.51.100.0/24".parse().unwrap(),
    });
    let objects = rendered(&ruleset);
    assert_eq!(
        set(&objects, "services-v4")["add"]["set"],
        json!({"family": "inet", "table": "kube-ipvs", "name": "services-v4",
            "type": ["ipv4_addr", "inet_proto", "inet_service"],
            "elem": [{"concat": ["10.96.0.10", "tcp", 53]}]})
    );
    assert_eq!(
        set(&objects, "lb-allowed-v4")["add"]["set"]["elem"],
        json!([{"concat": ["192.0.2.10", "tcp", 80,
            {"prefix": {"addr": "198.51.100.0", "len": 24}}]}])
    );
    assert_eq!(
        set(&objects, "lb-allowed-v4")["add"]["set"]["flags"],
        json!(["interval"])
    );
    assert!(set(&objects, "services-v6")["add"]["set"]
        .get("elem")
        .is_none());
}

#[test]
fn prerouting_rule_follows_the_masquerade_scope() {
    let cases = [
        (MasqueradeScope::All, "@services-v4", false),
        (MasqueradeScope::OutsideClusterCidrs, "@services-v4", true),
        (
            MasqueradeScope::ExternalOnly,
            "@external-services-v4",
            false,
        ),
    ];
    for (scope, target, checks_source) in cases {
        let mut ruleset = Ruleset::default();
        ruleset.ipv4.masquerade = scope;
        ruleset.local_interface = None;
        let objects = rendered(&ruleset);
        let prerouting: Vec<String> = objects
            .iter()
            .filter(|o| o["add"]["rule"]["chain"] == "prerouting")
            .map(|o| o.to_string())
            .collect();
        // `Local` external traffic returns before any scope marks it.
        assert!(
            prerouting[0].contains("@local-services-v4") && prerouting[0].contains("return"),
            "{scope:?}: {prerouting:?}"
        );
        let text = prerouting
            .iter()
            .find(|r| r.contains("mangle"))
            .unwrap()
            .clone();
        assert!(text.contains(target), "{scope:?}: {text}");
        assert_eq!(
            text.contains("@cluster-cidrs-v4"),
            checks_source,
            "{scope:?}"
        );
        assert!(
            text.contains(r#"{"mangle":{"key":{"meta":{"key":"mark"}}"#),
            "{text}"
        );
    }
}

#[test]
fn delete_tolerates_a_missing_table() {
    let v = serde_json::to_value(delete()).unwrap();
    let table = json!({"family": "inet", "name": "kube-ipvs"});
    assert_eq!(
        v,
        json!({"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]})
    );
}

#[test]
fn interface_modes_match_the_incoming_interface() {
    let mut ruleset = Ruleset {
        local_interface: Some("cali*".into()),
        ..Ruleset::default()
    };
    ruleset.ipv4.masquerade = MasqueradeScope::OutsideLocalInterface;
    let objects = rendered(&ruleset);
    // Past the rule that returns for Local Services' external traffic.
    let rule = objects
        .iter()
        .filter(|o| o["add"]["rule"]["chain"] == "prerouting")
        .find(|o| !o.to_string().contains("@local-services"))
        .unwrap();
    assert_eq!(
        rule["add"]["rule"]["expr"][0],
        json!({"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "cali*"}})
    );
    let rule = rule.to_string();
    assert!(rule.contains("@services-v4"), "{rule}");
    assert!(!rule.contains("@cluster-cidrs-v4"), "{rule}");
}
