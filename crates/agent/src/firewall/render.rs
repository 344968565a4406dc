//! Rendering a [`Ruleset`] as one `nft -j -f` transaction that replaces the
//! `inet kube-ipvs` table whole.
//!
//! Chains and where they sit relative to IPVS's own hooks (IPv4 priorities;
//! IPv6 uses the same numbers):
//!
//! | chain | hook, priority | runs | does |
//! | --- | --- | --- | --- |
//! | `prerouting` | prerouting, -100 | before IPVS, `ip daddr` is the VIP | marks Service traffic to masquerade (not external traffic to `Local` Services) |
//! | `output` | output, -150 | before IPVS's LOCAL_OUT hook (-99) | marks locally originated Service traffic |
//! | `input` | input, 0 | before IPVS's LOCAL_IN hook (98) | source ranges, closes VIPs' other ports |
//! | `forward` | forward, 0 | replies from real servers pass here | accepts Service traffic |
//! | `postrouting` | postrouting nat, 100 | after IPVS's DNAT | masquerades marked and hairpin connections |
//!
//! IPVS rewrites the destination in LOCAL_IN/LOCAL_OUT and sends the packet
//! straight to LOCAL_OUT's hooks and postrouting, so the decision to
//! masquerade is taken on the Service address (a mark, as kube-proxy's
//! `KUBE-MARK-MASQ`) and acted on in postrouting, where only the endpoint's
//! address is left in the header. With `net/ipv4/vs/conntrack=1` the
//! connection has a conntrack entry, so the nat chain runs for its first
//! packet and the masquerade applies to the whole connection.

use std::borrow::Cow;
use std::collections::HashSet;

use ipnetwork::IpNetwork;
use kube_ipvs_netlink::{AddressFamily, Protocol};
use nftables::batch::Batch;
use nftables::expr::{
    BinaryOperation, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix,
    SetItem, CT,
};
use nftables::schema::{
    Chain, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Mangle, Match, NATFlag, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::ruleset::{FamilySets, MasqueradeScope, Ruleset};

/// The table the agent owns, in the `inet` family.
pub const TABLE: &str = "kube-ipvs";

pub(super) const FAMILY: NfFamily = NfFamily::INet;

/// The transaction that replaces the table with `ruleset`: create it (a
/// no-op when it exists), delete it, and build it again. `nft` sends all of
/// it as one netlink batch, so packets see either the old table or the new.
pub fn replace(ruleset: &Ruleset) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(table());
    batch.delete(table());
    batch.add(table());
    for (name, hook, prio, kind) in CHAINS {
        batch.add(NfListObject::Chain(Chain {
            family: FAMILY,
            table: TABLE.into(),
            name: (*name).into(),
            _type: Some(*kind),
            hook: Some(*hook),
            prio: Some(*prio),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
    }
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let sets = ruleset.family(family);
        for set in family_sets(family, sets) {
            batch.add(NfListObject::Set(Box::new(set)));
        }
        for (chain, statements) in family_rules(family, sets, ruleset) {
            batch.add(rule(chain, statements));
        }
    }
    let mark = ruleset.masquerade_mark;
    batch.add(rule(
        "postrouting",
        vec![
            matches(
                Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                    meta(MetaKey::Mark),
                    Expression::Number(mark),
                ))),
                Expression::Number(mark),
            ),
            masquerade(),
        ],
    ));
    batch.add(rule(
        "forward",
        vec![
            matches(
                Expression::Named(NamedExpression::CT(CT {
                    key: "state".into(),
                    family: None,
                    dir: None,
                })),
                Expression::List(vec![
                    Expression::String("established".into()),
                    Expression::String("related".into()),
                ]),
            ),
            Statement::Accept(None),
        ],
    ));
    batch.to_nftables()
}

/// The transaction that removes the table, whether or not it exists.
pub fn delete() -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(table());
    batch.delete(table());
    batch.to_nftables()
}

const CHAINS: &[(&str, NfHook, i32, NfChainType)] = &[
    ("prerouting", NfHook::Prerouting, -100, NfChainType::Filter),
    ("output", NfHook::Output, -150, NfChainType::Filter),
    ("input", NfHook::Input, 0, NfChainType::Filter),
    ("forward", NfHook::Forward, 0, NfChainType::Filter),
    ("postrouting", NfHook::Postrouting, 100, NfChainType::NAT),
];

fn table() -> NfListObject<'static> {
    NfListObject::Table(Table {
        family: FAMILY,
        name: TABLE.into(),
        handle: None,
    })
}

/// `vips-v4`, `services-v6`...
fn set_name(base: &str, family: AddressFamily) -> String {
    match family {
        AddressFamily::Inet => format!("{base}-v4"),
        AddressFamily::Inet6 => format!("{base}-v6"),
    }
}

pub(super) fn family_sets(family: AddressFamily, sets: &FamilySets) -> Vec<Set<'static>> {
    let addr = match family {
        AddressFamily::Inet => SetType::Ipv4Addr,
        AddressFamily::Inet6 => SetType::Ipv6Addr,
    };
    let service_type = || vec![addr, SetType::InetProto, SetType::InetService];
    let service = |a: &std::net::IpAddr, p: Protocol, port: u16| {
        vec![address(a), protocol(p), Expression::Number(port.into())]
    };
    let services = |set: &std::collections::BTreeSet<super::ruleset::ServicePort>| {
        set.iter()
            .map(|s| concat(service(&s.address, s.protocol, s.port)))
            .collect::<Vec<_>>()
    };
    vec![
        new_set(
            set_name("vips", family),
            vec![addr],
            false,
            sets.vips.iter().map(address).collect(),
        ),
        new_set(
            set_name("services", family),
            service_type(),
            false,
            services(&sets.services),
        ),
        new_set(
            set_name("external-services", family),
            service_type(),
            false,
            services(&sets.external_services),
        ),
        new_set(
            set_name("local-services", family),
            service_type(),
            false,
            services(&sets.local_services),
        ),
        new_set(
            set_name("cluster-cidrs", family),
            vec![addr],
            true,
            sets.cluster_cidrs.iter().map(prefix).collect(),
        ),
        new_set(
            set_name("hairpin", family),
            vec![addr, SetType::InetProto, SetType::InetService, addr],
            false,
            sets.hairpin
                .iter()
                .map(|h| {
                    let mut e = service(&h.address, h.protocol, h.port);
                    e.push(address(&h.address));
                    concat(e)
                })
                .collect(),
        ),
        new_set(
            set_name("lb-restricted", family),
            service_type(),
            false,
            services(&sets.restricted),
        ),
        new_set(
            set_name("lb-allowed", family),
            vec![addr, SetType::InetProto, SetType::InetService, addr],
            true,
            sets.allowed_sources
                .iter()
                .map(|a| {
                    let mut e = service(&a.service.address, a.service.protocol, a.service.port);
                    e.push(prefix(&a.source));
                    concat(e)
                })
                .collect(),
        ),
    ]
}

fn new_set(
    name: String,
    types: Vec<SetType>,
    interval: bool,
    elements: Vec<Expression<'static>>,
) -> Set<'static> {
    let set_type = match types.as_slice() {
        [one] => SetTypeValue::Single(*one),
        _ => SetTypeValue::Concatenated(types.into()),
    };
    Set {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        set_type,
        flags: interval.then(|| HashSet::from([SetFlag::Interval])),
        // `nft` rejects an empty element list; leave it out instead.
        elem: (!elements.is_empty()).then(|| elements.into()),
        ..Set::default()
    }
}

fn family_rules(
    family: AddressFamily,
    sets: &FamilySets,
    ruleset: &Ruleset,
) -> Vec<(&'static str, Vec<Statement<'static>>)> {
    let mark = ruleset.masquerade_mark;
    let ip = match family {
        AddressFamily::Inet => "ip",
        AddressFamily::Inet6 => "ip6",
    };
    let saddr = || payload(ip, "saddr");
    let daddr = || payload(ip, "daddr");
    let service_of_packet = || {
        concat(vec![
            daddr(),
            meta(MetaKey::L4proto),
            payload("th", "dport"),
        ])
    };
    let set = |base: &str| Expression::String(format!("@{}", set_name(base, family)).into());
    let set_mark = || {
        Statement::Mangle(Mangle {
            key: meta(MetaKey::Mark),
            value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
                meta(MetaKey::Mark),
                Expression::Number(mark),
            ]))),
        })
    };

    let mut rules = Vec::new();
    // `externalTrafficPolicy: Local` keeps the client's address in every
    // scope, as kube-proxy's `KUBE-NODE-PORT-LOCAL-*`, `KUBE-EXTERNAL-IP-LOCAL`
    // and `KUBE-LOAD-BALANCER-LOCAL` sets return before `KUBE-MARK-MASQ`.
    rules.push((
        "prerouting",
        vec![
            matches(service_of_packet(), set("local-services")),
            Statement::Return(None),
        ],
    ));
    let prerouting = match sets.masquerade {
        MasqueradeScope::All => vec![matches(service_of_packet(), set("services")), set_mark()],
        MasqueradeScope::OutsideClusterCidrs => vec![
            differs(saddr(), set("cluster-cidrs")),
            matches(service_of_packet(), set("services")),
            set_mark(),
        ],
        MasqueradeScope::OutsideLocalInterface => vec![
            differs(
                meta(MetaKey::Iifname),
                Expression::String(ruleset.local_interface.clone().unwrap_or_default().into()),
            ),
            matches(service_of_packet(), set("services")),
            set_mark(),
        ],
        MasqueradeScope::ExternalOnly => vec![
            matches(service_of_packet(), set("external-services")),
            set_mark(),
        ],
    };
    rules.push(("prerouting", prerouting));
    // A process on the node reaching a Service: its source is a node
    // address, or the VIP itself, which no endpoint elsewhere can answer.
    rules.push((
        "output",
        vec![matches(service_of_packet(), set("services")), set_mark()],
    ));
    rules.push((
        "input",
        vec![
            matches(service_of_packet(), set("lb-restricted")),
            differs(
                concat(vec![
                    daddr(),
                    meta(MetaKey::L4proto),
                    payload("th", "dport"),
                    saddr(),
                ]),
                set("lb-allowed"),
            ),
            Statement::Drop(None),
        ],
    ));
    rules.push((
        "input",
        vec![
            // `in`: a bit test on the state bitmask, as `ct state new` is.
            Statement::Match(Match {
                left: Expression::Named(NamedExpression::CT(CT {
                    key: "state".into(),
                    family: None,
                    dir: None,
                })),
                right: Expression::String("new".into()),
                op: Operator::IN,
            }),
            matches(daddr(), set("vips")),
            matches(
                meta(MetaKey::L4proto),
                Expression::Named(NamedExpression::Set(
                    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                        .into_iter()
                        .map(|p| SetItem::Element(protocol(p)))
                        .collect(),
                )),
            ),
            differs(service_of_packet(), set("services")),
            Statement::Reject(None),
        ],
    ));
    rules.push((
        "postrouting",
        vec![
            matches(
                concat(vec![
                    daddr(),
                    meta(MetaKey::L4proto),
                    payload("th", "dport"),
                    saddr(),
                ]),
                set("hairpin"),
            ),
            masquerade(),
        ],
    ));
    rules
}

fn rule(chain: &'static str, statements: Vec<Statement<'static>>) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: FAMILY,
        table: TABLE.into(),
        chain: chain.into(),
        expr: statements.into(),
        ..Rule::default()
    })
}

fn matches(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn differs(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn masquerade() -> Statement<'static> {
    Statement::Masquerade(Some(NAT {
        addr: None,
        family: None,
        port: None,
        flags: Some(HashSet::from([NATFlag::FullyRandom])),
    }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn concat(parts: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(parts))
}

fn address(address: &std::net::IpAddr) -> Expression<'static> {
    Expression::String(address.to_string().into())
}

fn prefix(network: &IpNetwork) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(address(&network.ip())),
        len: network.prefix().into(),
    }))
}

/// `inet_proto` values by name where `nft` has one, by number otherwise.
fn protocol(protocol: Protocol) -> Expression<'static> {
    match protocol {
        Protocol::Tcp => Expression::String("tcp".into()),
        Protocol::Udp => Expression::String("udp".into()),
        Protocol::Sctp => Expression::String("sctp".into()),
        Protocol::Other(n) => Expression::Number(n.into()),
    }
}

#[cfg(test)]
mod tests;
