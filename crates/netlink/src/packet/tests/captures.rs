//! Captured bytes, both directions.
//!
//! Captured on Debian's 6.1.0-56-amd64 kernel with ipvsadm v1.31 (libnl-3):
//!
//! ```sh
//! strace -f -e trace=sendmsg,recvmsg -xx -s 65535 ipvsadm -A -t 10.0.0.1:80 -s rr
//! ```
//!
//! and likewise for each command named above its test (all of them are in
//! `capture.sh` beside this file). Each constant is
//! the generic-netlink payload after the 16-byte `nlmsghdr` (the genl header,
//! then the attributes), as strace prints it after the decoded header.
//! Requests come from ipvsadm; replies from the kernel.

use std::net::IpAddr;

use kube_ipvs_model::{
    AddressFamily, ForwardMethod, IpvsInfo, Operation, Protocol, RealServer, RealServerCounters,
    Scheduler, ServiceFlags, Stats, Timeouts, VirtualServer, VirtualServerKey,
};

use super::{emit, hex, parse};
use crate::convert;
use crate::packet::{
    Counter, DestAttr, FlagsMask, InetAddr, IpvsAttr, IpvsCommand, IpvsMessage, ServiceAttr,
    StatsAttr,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn both(raw: &str, expected: &IpvsMessage) {
    let raw = hex(raw);
    assert_eq!(&parse(&raw), expected);
    assert_eq!(emit(expected), raw);
}

const ALL: u32 = u32::MAX;

fn tcp_key_attrs() -> Vec<ServiceAttr> {
    vec![
        ServiceAttr::Af(2),
        ServiceAttr::Protocol(6),
        ServiceAttr::Addr(InetAddr::from_ip(ip("10.0.0.1"))),
        ServiceAttr::Port(80),
    ]
}

fn udp6_key_attrs() -> Vec<ServiceAttr> {
    vec![
        ServiceAttr::Af(10),
        ServiceAttr::Protocol(17),
        ServiceAttr::Addr(InetAddr::from_ip(ip("2001:db8::1"))),
        ServiceAttr::Port(53),
    ]
}

/// ipvsadm sends the whole service with an empty scheduler on destination
/// commands and on delete.
fn ipvsadm_service(key: Vec<ServiceAttr>, netmask: [u8; 4]) -> IpvsAttr {
    let mut attrs = key;
    attrs.extend([
        ServiceAttr::SchedName(String::new()),
        ServiceAttr::Flags(FlagsMask {
            flags: 0,
            mask: ALL,
        }),
        ServiceAttr::Timeout(0),
        ServiceAttr::Netmask(netmask),
    ]);
    IpvsAttr::Service(attrs)
}

fn ipvsadm_dest(
    address: &str,
    family: u16,
    port: u16,
    fwd: u32,
    weight: u32,
    thresholds: (u32, u32),
) -> IpvsAttr {
    IpvsAttr::Dest(vec![
        DestAttr::AddrFamily(family),
        DestAttr::Addr(InetAddr::from_ip(ip(address))),
        DestAttr::Port(port),
        DestAttr::FwdMethod(fwd),
        DestAttr::Weight(weight),
        DestAttr::TunType(0),
        DestAttr::TunPort(0),
        DestAttr::TunFlags(0),
        DestAttr::UThresh(thresholds.0),
        DestAttr::LThresh(thresholds.1),
    ])
}

/// `ipvsadm -A -t 10.0.0.1:80 -s rr`
#[test]
fn new_service() {
    let raw = "01010000 54000180 06000100 02000000 06000200 06000000 14000300 0a000001
               00000000 00000000 00000000 06000400 00500000 07000600 72720000 0c000700
               00000000 ffffffff 08000800 00000000 08000900 ffffffff";
    let mut attrs = tcp_key_attrs();
    attrs.extend([
        ServiceAttr::SchedName("rr".into()),
        ServiceAttr::Flags(FlagsMask {
            flags: 0,
            mask: ALL,
        }),
        ServiceAttr::Timeout(0),
        ServiceAttr::Netmask([0xff; 4]),
    ]);
    let expected = IpvsMessage::new(IpvsCommand::NewService, vec![IpvsAttr::Service(attrs)]);
    both(raw, &expected);
    let key = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.1"), 80);
    let op = Operation::NewService(VirtualServer::new(key, Scheduler::Rr));
    assert_eq!(convert::operation_message(&op), expected);
}

/// `ipvsadm -E -t 10.0.0.1:80 -s wrr -p 300 -M 255.255.255.0`
#[test]
fn set_service() {
    let raw = "02010000 54000180 06000100 02000000 06000200 06000000 14000300 0a000001
               00000000 00000000 00000000 06000400 00500000 08000600 77727200 0c000700
               01000000 ffffffff 08000800 2c010000 08000900 ffffff00";
    let mut attrs = tcp_key_attrs();
    attrs.extend([
        ServiceAttr::SchedName("wrr".into()),
        ServiceAttr::Flags(FlagsMask {
            flags: 1,
            mask: ALL,
        }),
        ServiceAttr::Timeout(300),
        ServiceAttr::Netmask([0xff, 0xff, 0xff, 0]),
    ]);
    let expected = IpvsMessage::new(IpvsCommand::SetService, vec![IpvsAttr::Service(attrs)]);
    both(raw, &expected);
    let key = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.1"), 80);
    let mut service = VirtualServer::new(key, Scheduler::Wrr).persistent(300);
    service.netmask = 24;
    assert_eq!(
        convert::operation_message(&Operation::SetService(service)),
        expected
    );
}

/// `ipvsadm -A -u [2001:db8::1]:53 -s sh -b sh-port,sh-fallback -p 60 -M 64`:
/// the IPv6 netmask is a host-order prefix length.
#[test]
fn new_service_ipv6_with_scheduler_flags() {
    let raw = "01010000 54000180 06000100 0a000000 06000200 11000000 14000300 20010db8
               00000000 00000000 00000001 06000400 00350000 07000600 73680000 0c000700
               19000000 ffffffff 08000800 3c000000 08000900 40000000";
    let mut attrs = udp6_key_attrs();
    attrs.extend([
        ServiceAttr::SchedName("sh".into()),
        ServiceAttr::Flags(FlagsMask {
            flags: 0x19,
            mask: ALL,
        }),
        ServiceAttr::Timeout(60),
        ServiceAttr::Netmask(64u32.to_ne_bytes()),
    ]);
    let expected = IpvsMessage::new(IpvsCommand::NewService, vec![IpvsAttr::Service(attrs)]);
    both(raw, &expected);
    let key = VirtualServerKey::inet(Protocol::Udp, ip("2001:db8::1"), 53);
    let mut service = VirtualServer::new(key, Scheduler::Sh).persistent(60);
    service.flags |= ServiceFlags::SCHED1 | ServiceFlags::SCHED2;
    service.netmask = 64;
    assert_eq!(
        convert::operation_message(&Operation::NewService(service)),
        expected
    );
}

/// `ipvsadm -A -f 7 -s mh -b mh-port`
#[test]
fn new_firewall_mark_service() {
    let raw = "01010000 38000180 06000100 02000000 08000500 07000000 07000600 6d680000
               0c000700 10000000 ffffffff 08000800 00000000 08000900 ffffffff";
    let expected = IpvsMessage::new(
        IpvsCommand::NewService,
        vec![IpvsAttr::Service(vec![
            ServiceAttr::Af(2),
            ServiceAttr::Fwmark(7),
            ServiceAttr::SchedName("mh".into()),
            ServiceAttr::Flags(FlagsMask {
                flags: 0x10,
                mask: ALL,
            }),
            ServiceAttr::Timeout(0),
            ServiceAttr::Netmask([0xff; 4]),
        ])],
    );
    both(raw, &expected);
    let key = VirtualServerKey::FirewallMark {
        family: AddressFamily::Inet,
        mark: 7,
    };
    let mut service = VirtualServer::new(key, Scheduler::Mh);
    service.flags = ServiceFlags::SCHED2;
    assert_eq!(
        convert::operation_message(&Operation::NewService(service)),
        expected
    );
}

/// `ipvsadm -D -t 10.0.0.1:80`
#[test]
fn del_service() {
    let raw = "03010000 54000180 06000100 02000000 06000200 06000000 14000300 0a000001
               00000000 00000000 00000000 06000400 00500000 05000600 00000000 0c000700
               00000000 ffffffff 08000800 00000000 08000900 ffffffff";
    let expected = IpvsMessage::new(
        IpvsCommand::DelService,
        vec![ipvsadm_service(tcp_key_attrs(), [0xff; 4])],
    );
    both(raw, &expected);
}

const NEW_DEST: &str = "05010000 54000180 06000100 02000000 06000200 06000000 14000300 0a000001
    00000000 00000000 00000000 06000400 00500000 05000600 00000000 0c000700 00000000 ffffffff
    08000800 00000000 08000900 ffffffff 60000280 06000b00 02000000 14000100 0a010001 00000000
    00000000 00000000 06000200 00500000 08000300 03000000 08000400 05000000 05000d00 00000000
    06000e00 00000000 06000f00 00000000 08000500 00000000 08000600 00000000";

/// `ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.1:8080 -g -w 5` (ipvsadm itself
/// puts the service's port on a direct-routed destination).
#[test]
fn new_dest() {
    let dest = ipvsadm_dest("10.1.0.1", 2, 80, 3, 5, (0, 0));
    let expected = IpvsMessage::new(
        IpvsCommand::NewDest,
        vec![ipvsadm_service(tcp_key_attrs(), [0xff; 4]), dest.clone()],
    );
    both(NEW_DEST, &expected);
    // From the model, the destination nest is ipvsadm's to the byte; the
    // service nest holds only the key, which is all the kernel reads there.
    let mut rs = RealServer::new(ip("10.1.0.1"), 80);
    rs.forward = ForwardMethod::DirectRoute;
    rs.weight = 5;
    assert_eq!(IpvsAttr::Dest(convert::dest_attrs(&rs)), dest);
    let key = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.1"), 80);
    let ours = convert::operation_message(&Operation::NewDest(key, rs));
    assert_eq!(ours.attrs, vec![IpvsAttr::Service(tcp_key_attrs()), dest]);
}

/// `ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.1:8080 -g -w 3 -x 100 -y 10`
#[test]
fn set_dest() {
    let raw = "06010000 54000180 06000100 02000000 06000200 06000000 14000300 0a000001
        00000000 00000000 00000000 06000400 00500000 05000600 00000000 0c000700 00000000 ffffffff
        08000800 00000000 08000900 ffffffff 60000280 06000b00 02000000 14000100 0a010001 00000000
        00000000 00000000 06000200 00500000 08000300 03000000 08000400 03000000 05000d00 00000000
        06000e00 00000000 06000f00 00000000 08000500 64000000 08000600 0a000000";
    let dest = ipvsadm_dest("10.1.0.1", 2, 80, 3, 3, (100, 10));
    let expected = IpvsMessage::new(
        IpvsCommand::SetDest,
        vec![ipvsadm_service(tcp_key_attrs(), [0xff; 4]), dest.clone()],
    );
    both(raw, &expected);
    let mut rs = RealServer::new(ip("10.1.0.1"), 80);
    rs.forward = ForwardMethod::DirectRoute;
    rs.weight = 3;
    rs.upper_threshold = 100;
    rs.lower_threshold = 10;
    assert_eq!(IpvsAttr::Dest(convert::dest_attrs(&rs)), dest);
}

/// `ipvsadm -a -u [2001:db8::1]:53 -r [2001:db8::10]:53 -i -w 2`
#[test]
fn new_dest_ipv6_tunnel() {
    let raw = "05010000 54000180 06000100 0a000000 06000200 11000000 14000300 20010db8
        00000000 00000000 00000001 06000400 00350000 05000600 00000000 0c000700 00000000 ffffffff
        08000800 00000000 08000900 80000000 60000280 06000b00 0a000000 14000100 20010db8 00000000
        00000000 00000010 06000200 00350000 08000300 02000000 08000400 02000000 05000d00 00000000
        06000e00 00000000 06000f00 00000000 08000500 00000000 08000600 00000000";
    let dest = ipvsadm_dest("2001:db8::10", 10, 53, 2, 2, (0, 0));
    let expected = IpvsMessage::new(
        IpvsCommand::NewDest,
        vec![
            ipvsadm_service(udp6_key_attrs(), 128u32.to_ne_bytes()),
            dest.clone(),
        ],
    );
    both(raw, &expected);
    let mut rs = RealServer::new(ip("2001:db8::10"), 53);
    rs.forward = ForwardMethod::Tunnel;
    rs.weight = 2;
    assert_eq!(IpvsAttr::Dest(convert::dest_attrs(&rs)), dest);
}

/// `ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.1:8080`
#[test]
fn del_dest() {
    let raw = "07010000 54000180 06000100 02000000 06000200 06000000 14000300 0a000001
        00000000 00000000 00000000 06000400 00500000 05000600 00000000 0c000700 00000000 ffffffff
        08000800 00000000 08000900 ffffffff 60000280 06000b00 02000000 14000100 0a010001 00000000
        00000000 00000000 06000200 1f900000 08000300 03000000 08000400 01000000 05000d00 00000000
        06000e00 00000000 06000f00 00000000 08000500 00000000 08000600 00000000";
    let expected = IpvsMessage::new(
        IpvsCommand::DelDest,
        vec![
            ipvsadm_service(tcp_key_attrs(), [0xff; 4]),
            ipvsadm_dest("10.1.0.1", 2, 8080, 3, 1, (0, 0)),
        ],
    );
    both(raw, &expected);
}

/// `ipvsadm -Ln`: the service dump request (`NLM_F_DUMP`), then the
/// destination dump request for one service, which carries only its key.
#[test]
fn get_service_and_get_dest_requests() {
    both(
        "04010000",
        &IpvsMessage::new(IpvsCommand::GetService, vec![]),
    );
    let raw = "08010000 30000180 06000100 02000000 06000200 06000000 14000300 0a000001
               00000000 00000000 00000000 06000400 00500000";
    let expected = IpvsMessage::new(
        IpvsCommand::GetDest,
        vec![IpvsAttr::Service(tcp_key_attrs())],
    );
    both(raw, &expected);
    let key = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.1"), 80);
    assert_eq!(
        IpvsAttr::Service(convert::service_key_attrs(&key)),
        expected.attrs[0]
    );
    let raw = "08010000 14000180 06000100 02000000 08000500 07000000";
    let fwm = VirtualServerKey::FirewallMark {
        family: AddressFamily::Inet,
        mark: 7,
    };
    let expected = IpvsMessage::new(
        IpvsCommand::GetDest,
        vec![IpvsAttr::Service(convert::service_key_attrs(&fwm))],
    );
    both(raw, &expected);
}

fn zero_stats32() -> Vec<StatsAttr> {
    vec![
        StatsAttr::Conns(Counter::U32(0)),
        StatsAttr::InPkts(Counter::U32(0)),
        StatsAttr::OutPkts(Counter::U32(0)),
        StatsAttr::InBytes(Counter::U64(0)),
        StatsAttr::OutBytes(Counter::U64(0)),
        StatsAttr::Cps(Counter::U32(0)),
        StatsAttr::InPps(Counter::U32(0)),
        StatsAttr::OutPps(Counter::U32(0)),
        StatsAttr::InBps(Counter::U32(0)),
        StatsAttr::OutBps(Counter::U32(0)),
    ]
}

fn zero_stats64() -> Vec<StatsAttr> {
    vec![
        StatsAttr::Conns(Counter::U64(0)),
        StatsAttr::InPkts(Counter::U64(0)),
        StatsAttr::OutPkts(Counter::U64(0)),
        StatsAttr::InBytes(Counter::U64(0)),
        StatsAttr::OutBytes(Counter::U64(0)),
        StatsAttr::Cps(Counter::U64(0)),
        StatsAttr::InPps(Counter::U64(0)),
        StatsAttr::OutPps(Counter::U64(0)),
        StatsAttr::InBps(Counter::U64(0)),
        StatsAttr::OutBps(Counter::U64(0)),
    ]
}

const STATS: &str = "5c000a00 08000100 00000000 08000200 00000000 08000300 00000000
    0c000400 00000000 00000000 0c000500 00000000 00000000 08000600 00000000 08000700 00000000
    08000800 00000000 08000900 00000000 08000a00 00000000 7c000c00 0c000100 00000000 00000000
    0c000200 00000000 00000000 0c000300 00000000 00000000 0c000400 00000000 00000000 0c000500
    00000000 00000000 0c000600 00000000 00000000 0c000700 00000000 00000000 0c000800 00000000
    00000000 0c000900 00000000 00000000 0c000a00 00000000 00000000";

/// A service of the `ipvsadm -Ln` dump reply. The kernel opens its nests
/// without `NLA_F_NESTED`, so the message is compared parsed, and the
/// service nest's content (the kernel's attribute order) in both directions.
#[test]
fn dumped_service() {
    let head = "01010000 2c010100";
    let nest = format!(
        "06000100 02000000 06000200 06000000 14000300 0a000001 00000000 00000000 00000000
         06000400 00500000 08000600 77727200 0c000700 03000000 ffffffff 08000800 2c010000
         08000900 ffffff00 {STATS}"
    );
    let mut attrs = tcp_key_attrs();
    attrs.extend([
        ServiceAttr::SchedName("wrr".into()),
        ServiceAttr::Flags(FlagsMask {
            flags: 3,
            mask: ALL,
        }),
        ServiceAttr::Timeout(300),
        ServiceAttr::Netmask([0xff, 0xff, 0xff, 0]),
        ServiceAttr::Stats(zero_stats32()),
        ServiceAttr::Stats64(zero_stats64()),
    ]);
    let raw = hex(&format!("{head} {nest}"));
    let parsed = parse(&raw);
    assert_eq!(
        parsed,
        IpvsMessage::new(
            IpvsCommand::NewService,
            vec![IpvsAttr::Service(attrs.clone())]
        )
    );
    let nest = hex(&nest);
    let mut emitted = vec![0; netlink_packet_core::Emitable::buffer_len(&attrs.as_slice())];
    netlink_packet_core::Emitable::emit(&attrs.as_slice(), &mut emitted);
    assert_eq!(emitted, nest);
    // HASHED is the kernel's, not the service's.
    let dumped = convert::virtual_server(&attrs).expect("service");
    let key = VirtualServerKey::inet(Protocol::Tcp, ip("10.0.0.1"), 80);
    let mut service = VirtualServer::new(key, Scheduler::Wrr).persistent(300);
    service.netmask = 24;
    assert_eq!(dumped.service, service);
    assert_eq!(dumped.stats, Stats::default());
}

/// The IPv6 service of the same dump.
#[test]
fn dumped_ipv6_service() {
    let raw = format!(
        "01010000 2c010100 06000100 0a000000 06000200 11000000 14000300 20010db8 00000000
         00000000 00000001 06000400 00350000 07000600 73680000 0c000700 1b000000 ffffffff
         08000800 3c000000 08000900 40000000 {STATS}"
    );
    let parsed = parse(&hex(&raw));
    let IpvsAttr::Service(attrs) = &parsed.attrs[0] else {
        panic!("not a service: {parsed:?}");
    };
    let dumped = convert::virtual_server(attrs).expect("service");
    assert_eq!(
        dumped.service.flags,
        ServiceFlags::PERSISTENT | ServiceFlags::SCHED1 | ServiceFlags::SCHED2
    );
    assert_eq!(dumped.service.netmask, 64);
    assert_eq!(dumped.service.scheduler, Scheduler::Sh);
}

/// A destination of `ipvsadm -Ln`'s destination dump reply.
#[test]
fn dumped_dest() {
    let nest = format!(
        "14000100 0a010001 00000000 00000000 00000000 06000200 00500000 08000300 03000000
         08000400 03000000 05000d00 00000000 06000e00 00000000 06000f00 00000000 08000500
         64000000 08000600 0a000000 08000700 00000000 08000800 00000000 08000900 00000000
         06000b00 02000000 {STATS}"
    );
    let raw = hex(&format!("05010000 50010200 {nest}"));
    let attrs = vec![
        DestAttr::Addr(InetAddr::from_ip(ip("10.1.0.1"))),
        DestAttr::Port(80),
        DestAttr::FwdMethod(3),
        DestAttr::Weight(3),
        DestAttr::TunType(0),
        DestAttr::TunPort(0),
        DestAttr::TunFlags(0),
        DestAttr::UThresh(100),
        DestAttr::LThresh(10),
        DestAttr::ActiveConns(0),
        DestAttr::InactConns(0),
        DestAttr::PersistConns(0),
        DestAttr::AddrFamily(2),
        DestAttr::Stats(zero_stats32()),
        DestAttr::Stats64(zero_stats64()),
    ];
    assert_eq!(
        parse(&raw),
        IpvsMessage::new(IpvsCommand::NewDest, vec![IpvsAttr::Dest(attrs.clone())])
    );
    let mut emitted = vec![0; netlink_packet_core::Emitable::buffer_len(&attrs.as_slice())];
    netlink_packet_core::Emitable::emit(&attrs.as_slice(), &mut emitted);
    assert_eq!(emitted, hex(&nest));
    let dumped = convert::real_server(&attrs, AddressFamily::Inet).expect("dest");
    let mut rs = RealServer::new(ip("10.1.0.1"), 80);
    rs.forward = ForwardMethod::DirectRoute;
    rs.weight = 3;
    rs.upper_threshold = 100;
    rs.lower_threshold = 10;
    assert_eq!(dumped.server, rs);
    assert_eq!(dumped.counters, RealServerCounters::default());
}

/// `ipvsadm -Ln` asks `IPVS_CMD_GET_INFO`; the kernel answers
/// `IPVS_CMD_SET_INFO` with `IPVS_INFO_ATTR_*`, which reuse the numbers of
/// `IPVS_CMD_ATTR_SERVICE` and `DEST`.
#[test]
fn get_info() {
    both("0f010000", &IpvsMessage::new(IpvsCommand::GetInfo, vec![]));
    let reply = IpvsMessage::new(
        IpvsCommand::SetInfo,
        vec![IpvsAttr::Version(0x010201), IpvsAttr::ConnTabSize(4096)],
    );
    both("0e010000 08000100 01020100 08000200 00100000", &reply);
    let info = IpvsInfo {
        version: 0x010201,
        connection_table_size: 4096,
    };
    assert_eq!(info.version_string(), "1.2.1");
}

/// `ipvsadm --set 900 120 300`, and `ipvsadm -L --timeout`, whose reply
/// (`IPVS_CMD_SET_CONFIG`) has the same bytes as the `--set` request.
#[test]
fn set_and_get_config() {
    let raw = "0c010000 08000400 84030000 08000500 78000000 08000600 2c010000";
    let expected = crate::ipvs::timeouts_message(&Timeouts {
        tcp: 900,
        tcp_fin: 120,
        udp: 300,
    });
    both(raw, &expected);
    both(
        "0d010000",
        &IpvsMessage::new(IpvsCommand::GetConfig, vec![]),
    );
}

/// `ipvsadm -C`
#[test]
fn flush() {
    both("11010000", &IpvsMessage::new(IpvsCommand::Flush, vec![]));
}

/// Every prefix of every capture parses or fails, and never panics.
#[test]
fn truncated_captures_never_panic() {
    let raw = hex(NEW_DEST);
    for len in 0..raw.len() {
        let _ = netlink_packet_core::ParseableParametrized::<[u8], u16>::parse_with_param(
            &raw[..len],
            0x20,
        )
        .map(|m: netlink_packet_generic::GenlMessage<IpvsMessage>| m.payload);
    }
}
