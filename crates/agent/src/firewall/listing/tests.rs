//! Tests of the parent module.
//!
//! `full.json` and `terse.json` are what nft 1.0.6 (Linux 6.x, Debian 12)
//! printed for [`sample`]'s table: `render::replace(&sample())` applied
//! with `nft -j -f` in a fresh network namespace (`unshare -n`), then
//! `nft -j list table inet kube-ipvs` and `nft -t -j list table inet
//! kube-ipvs`.

use std::net::IpAddr;

use kube_ipvs_netlink::Protocol;
use serde_json::Value;

use super::*;
use crate::firewall::ruleset::MasqueradeScope;

const FULL: &str = include_str!("full.json");
const TERSE: &str = include_str!("terse.json");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn service(address: &str, protocol: Protocol, port: u16) -> ServicePort {
    ServicePort {
        address: ip(address),
        protocol,
        port,
    }
}

/// Every set of both families holds something; intervals of one address
/// and of many.
pub(crate) fn sample() -> Ruleset {
    let mut r = Ruleset {
        masquerade_mark: 0x4000,
        ..Ruleset::default()
    };
    r.ipv4.masquerade = MasqueradeScope::OutsideClusterCidrs;
    r.ipv4
        .cluster_cidrs
        .insert("10.244.0.0/16".parse().unwrap());
    r.ipv4.cluster_cidrs.insert("10.9.9.9/32".parse().unwrap());
    let web = service("10.96.0.10", Protocol::Tcp, 80);
    let dns = service("10.96.0.53", Protocol::Udp, 53);
    let lb = service("192.0.2.1", Protocol::Sctp, 443);
    r.ipv4.vips.extend([web.address, dns.address, lb.address]);
    r.ipv4.services.extend([web, dns, lb]);
    r.ipv4.external_services.insert(lb);
    r.ipv4.local_services.insert(lb);
    r.ipv4.restricted.insert(lb);
    for source in ["203.0.113.0/24", "198.51.100.7/32"] {
        r.ipv4.allowed_sources.insert(AllowedSource {
            service: lb,
            source: source.parse().unwrap(),
        });
    }
    r.ipv4.hairpin.insert(Hairpin {
        address: ip("10.244.0.2"),
        protocol: Protocol::Tcp,
        port: 8080,
    });
    let web6 = service("fd00::10", Protocol::Tcp, 80);
    r.ipv6.vips.insert(web6.address);
    r.ipv6.services.insert(web6);
    r.ipv6.hairpin.insert(Hairpin {
        address: ip("fd00:244::2"),
        protocol: Protocol::Tcp,
        port: 8080,
    });
    r
}

fn full() -> Vec<Value> {
    objects(FULL).unwrap()
}

#[test]
fn the_listing_of_a_written_table_matches_its_ruleset() {
    let expected = sample();
    let listing = Listing::parse(&full(), &expected);
    assert_eq!(listing.unreadable, 0);
    assert_eq!(listing.ruleset, expected);
    assert_eq!(listing.drift(&expected), None);
    assert_eq!(listing.structure, structure(&objects(TERSE).unwrap()));
}

#[test]
fn read_object_by_object_is_parse_of_the_whole_tree() {
    let expected = sample();
    let read = Listing::read(FULL, &expected).unwrap();
    assert_eq!(read, Listing::parse(&full(), &expected));
    assert_eq!(read.ruleset, expected);
    assert!(Listing::read("{\"nftables\": [{\"set\": ", &expected).is_err());
}

#[test]
fn an_element_deleted_or_added_by_hand_is_drift() {
    let expected = sample();
    let mut fewer = expected.clone();
    fewer.ipv4.hairpin.clear();
    assert_eq!(
        Listing::parse(&full(), &fewer).drift(&expected),
        None,
        "elements come from the listing, not from the ruleset given"
    );
    let listing = Listing::parse(&full(), &expected);
    assert_eq!(
        listing.drift(&fewer),
        Some(Drift::Elements {
            missing: 0,
            unexpected: 1
        })
    );
    let mut more = expected.clone();
    more.ipv6.vips.insert(ip("fd00::11"));
    assert_eq!(
        listing.drift(&more),
        Some(Drift::Elements {
            missing: 1,
            unexpected: 0
        })
    );
}

#[test]
fn an_element_the_agent_never_writes_is_drift() {
    let tampered = FULL.replacen(
        r#""elem": ["10.96.0.10""#,
        r#""elem": [{"range": ["10.0.0.1", "10.0.0.9"]}, "10.96.0.10""#,
        1,
    );
    assert_ne!(tampered, FULL, "the sample lists vips-v4 so");
    let expected = sample();
    let listing = Listing::parse(&objects(&tampered).unwrap(), &expected);
    assert_eq!(listing.unreadable, 1);
    assert_eq!(
        listing.drift(&expected),
        Some(Drift::Elements {
            missing: 0,
            unexpected: 1
        })
    );
}

#[test]
fn handles_do_not_count_but_a_changed_rule_does() {
    let renumbered = FULL.replace(r#""handle": "#, r#""handle": 1"#);
    assert_ne!(renumbered, FULL);
    assert_eq!(
        structure(&objects(&renumbered).unwrap()),
        structure(&full())
    );
    let changed = FULL.replacen(r#""drop": null"#, r#""accept": null"#, 1);
    assert_ne!(changed, FULL, "the sample has a drop rule");
    assert_ne!(structure(&objects(&changed).unwrap()), structure(&full()));
}

#[test]
fn elements_with_options_are_read_through_their_wrapper() {
    let wrapped = serde_json::json!({"elem": {"val": "10.96.0.10", "comment": "x"}});
    assert_eq!(unwrap_elem(&wrapped), &Value::from("10.96.0.10"));
}

#[test]
#[ignore = "prints the transaction the sample listings were made from"]
fn print_the_sample_transaction() {
    println!(
        "{}",
        serde_json::to_string(&crate::firewall::render::replace(&sample())).unwrap()
    );
}

#[test]
fn a_whole_address_space_reads_as_a_zero_prefix_either_way() {
    let lb = service("192.0.2.1", Protocol::Tcp, 443);
    let mut expected = sample();
    expected.ipv4.allowed_sources = [AllowedSource {
        service: lb,
        source: "0.0.0.0/0".parse().unwrap(),
    }]
    .into();
    expected.ipv4.restricted = [lb].into();
    for source in [
        serde_json::json!({"prefix": {"addr": "0.0.0.0", "len": 0}}),
        serde_json::json!("*"),
    ] {
        let set = serde_json::json!({"set": {"name": "lb-allowed-v4", "elem": [
            {"concat": ["192.0.2.1", "tcp", 443, source]}
        ]}});
        let listing = Listing::parse(&[set], &expected);
        assert_eq!(listing.unreadable, 0);
        assert_eq!(
            listing.ruleset.ipv4.allowed_sources,
            expected.ipv4.allowed_sources
        );
    }
}
