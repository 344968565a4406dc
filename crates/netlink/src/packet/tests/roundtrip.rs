//! Property round trips: model → attributes → bytes → attributes → model.

use std::net::IpAddr;

use kube_ipvs_model::{
    AddressFamily, ForwardMethod, Operation, Protocol, RealServer, RealServerKey, Scheduler,
    ServiceFlags, VirtualServer, VirtualServerKey,
};
use proptest::prelude::*;

use super::{emit, parse};
use crate::convert;
use crate::packet::{IpvsAttr, IpvsCommand, IpvsMessage};

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp),
        any::<u16>().prop_map(Protocol::from_number),
    ]
}

fn key() -> impl Strategy<Value = VirtualServerKey> {
    prop_oneof![
        (protocol(), address(), any::<u16>())
            .prop_map(|(p, a, port)| VirtualServerKey::inet(p, a, port)),
        (any::<bool>(), 1..=u32::MAX).prop_map(|(v6, mark)| VirtualServerKey::FirewallMark {
            family: if v6 {
                AddressFamily::Inet6
            } else {
                AddressFamily::Inet
            },
            mark,
        }),
    ]
}

fn scheduler() -> impl Strategy<Value = Scheduler> {
    prop_oneof![
        (0..Scheduler::KNOWN.len()).prop_map(|i| Scheduler::KNOWN[i].clone()),
        "[a-z0-9_]{1,15}".prop_map(|s| s.parse().expect("infallible")),
    ]
}

fn service() -> impl Strategy<Value = VirtualServer> {
    (
        key(),
        scheduler(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        proptest::option::of("[a-z]{1,15}"),
    )
        .prop_map(
            |(key, scheduler, flags, timeout, netmask, pe)| VirtualServer {
                netmask: netmask % (key.family().max_prefix() + 1),
                key,
                scheduler,
                flags: ServiceFlags(flags).configurable(),
                timeout,
                persistence_engine: pe,
            },
        )
}

fn forward() -> impl Strategy<Value = ForwardMethod> {
    (0u32..8).prop_map(ForwardMethod::from_number)
}

fn real_server() -> impl Strategy<Value = RealServer> {
    (
        address(),
        any::<u16>(),
        forward(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(address, port, forward, weight, upper_threshold, lower_threshold)| RealServer {
                key: RealServerKey { address, port },
                forward,
                weight,
                upper_threshold,
                lower_threshold,
            },
        )
}

proptest! {
    #[test]
    fn services_round_trip(service in service()) {
        let msg = IpvsMessage::new(
            IpvsCommand::NewService,
            vec![IpvsAttr::Service(convert::service_attrs(&service))],
        );
        let parsed = parse(&emit(&msg));
        prop_assert_eq!(&parsed, &msg);
        let IpvsAttr::Service(attrs) = &parsed.attrs[0] else {
            return Err(TestCaseError::fail("no service"));
        };
        prop_assert_eq!(convert::virtual_server(attrs).expect("valid").service, service);
    }

    #[test]
    fn destinations_round_trip(key in key(), server in real_server()) {
        let msg = convert::operation_message(&Operation::NewDest(key, server));
        let parsed = parse(&emit(&msg));
        prop_assert_eq!(&parsed, &msg);
        let IpvsAttr::Dest(attrs) = &parsed.attrs[1] else {
            return Err(TestCaseError::fail("no destination"));
        };
        let dumped = convert::real_server(attrs, key.family()).expect("valid");
        prop_assert_eq!(dumped.server, server);
        let IpvsAttr::Service(attrs) = &parsed.attrs[0] else {
            return Err(TestCaseError::fail("no service"));
        };
        // The key alone is not a full service (no scheduler): an error, not a panic.
        prop_assert!(convert::virtual_server(attrs).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(cmd in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut raw = vec![cmd, 1, 0, 0];
        raw.extend(body);
        let _ = netlink_packet_core::ParseableParametrized::<[u8], u16>::parse_with_param(&raw[..], 0x20)
            .map(|m: netlink_packet_generic::GenlMessage<IpvsMessage>| m.payload);
    }

    #[test]
    fn netmask_round_trips(v6 in any::<bool>(), prefix in any::<u8>()) {
        let family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let prefix = prefix % (family.max_prefix() + 1);
        prop_assert_eq!(convert::netmask_prefix(family, convert::netmask_bytes(family, prefix)), prefix);
    }
}

/// Unknown attributes are kept, not rejected.
#[test]
fn unknown_attributes_parse_into_other() {
    // A service nest with an attribute 0x63 the crate does not know.
    let raw = super::hex("01010000 14000180 06000100 02000000 08006300 01020304");
    let msg = parse(&raw);
    let IpvsAttr::Service(attrs) = &msg.attrs[0] else {
        panic!("{msg:?}");
    };
    assert!(matches!(attrs[1], crate::packet::ServiceAttr::Other(_)));
    assert_eq!(emit(&msg), raw);
    // An unknown command too.
    assert_eq!(parse(&super::hex("63010000")).cmd, IpvsCommand::Other(0x63));
}
