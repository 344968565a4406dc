//! Conversions between the typed model and IPVS attributes.
//!
//! Requests are built in the attribute order `ipvsadm` (libipvs) uses, so a
//! request from the model is byte-identical to the one `ipvsadm` sends.

use std::net::IpAddr;

use kube_ipvs_model::{
    AddressFamily, DumpedRealServer, DumpedVirtualServer, ForwardMethod, Operation, Protocol,
    RealServer, RealServerCounters, RealServerKey, Scheduler, ServiceFlags, Stats, VirtualServer,
    VirtualServerKey,
};
use netlink_packet_core::DecodeError;

use crate::packet::{
    Counter, DestAttr, FlagsMask, InetAddr, IpvsAttr, IpvsCommand, IpvsMessage, ServiceAttr,
    StatsAttr,
};

/// The attributes that identify a service: what the kernel looks a service
/// up by (`AF` plus `PROTOCOL`/`ADDR`/`PORT`, or `AF` plus `FWMARK`).
pub fn service_key_attrs(key: &VirtualServerKey) -> Vec<ServiceAttr> {
    match *key {
        VirtualServerKey::Inet {
            protocol,
            address,
            port,
        } => vec![
            ServiceAttr::Af(AddressFamily::of(&address).number()),
            ServiceAttr::Protocol(protocol.number()),
            ServiceAttr::Addr(InetAddr::from_ip(address)),
            ServiceAttr::Port(port),
        ],
        VirtualServerKey::FirewallMark { family, mark } => {
            vec![ServiceAttr::Af(family.number()), ServiceAttr::Fwmark(mark)]
        }
    }
}

/// The full attributes of a service, for `NEW_SERVICE` and `SET_SERVICE`.
pub fn service_attrs(service: &VirtualServer) -> Vec<ServiceAttr> {
    let mut attrs = service_key_attrs(&service.key);
    attrs.push(ServiceAttr::SchedName(service.scheduler.name().to_owned()));
    if let Some(pe) = &service.persistence_engine {
        attrs.push(ServiceAttr::PeName(pe.clone()));
    }
    attrs.push(ServiceAttr::Flags(FlagsMask {
        flags: service.flags.configurable().0,
        mask: u32::MAX,
    }));
    attrs.push(ServiceAttr::Timeout(service.timeout));
    attrs.push(ServiceAttr::Netmask(netmask_bytes(
        service.key.family(),
        service.netmask,
    )));
    attrs
}

/// The attributes of a destination, for `NEW_DEST`, `SET_DEST` and `DEL_DEST`.
pub fn dest_attrs(server: &RealServer) -> Vec<DestAttr> {
    vec![
        DestAttr::AddrFamily(AddressFamily::of(&server.key.address).number()),
        DestAttr::Addr(InetAddr::from_ip(server.key.address)),
        DestAttr::Port(server.key.port),
        DestAttr::FwdMethod(server.forward.number()),
        DestAttr::Weight(server.weight),
        DestAttr::TunType(0),
        DestAttr::TunPort(0),
        DestAttr::TunFlags(0),
        DestAttr::UThresh(server.upper_threshold),
        DestAttr::LThresh(server.lower_threshold),
    ]
}

/// The attributes that identify a destination, for `DEL_DEST`.
pub fn dest_key_attrs(key: &RealServerKey) -> Vec<DestAttr> {
    vec![
        DestAttr::AddrFamily(AddressFamily::of(&key.address).number()),
        DestAttr::Addr(InetAddr::from_ip(key.address)),
        DestAttr::Port(key.port),
    ]
}

/// `IPVS_SVC_ATTR_NETMASK` for a prefix: a network-order mask for IPv4, a
/// host-order prefix length for IPv6 (what `ip_vs_ctl.c` compares against).
pub fn netmask_bytes(family: AddressFamily, prefix: u8) -> [u8; 4] {
    match family {
        AddressFamily::Inet => {
            let prefix = u32::from(prefix.min(32));
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            mask.to_be_bytes()
        }
        AddressFamily::Inet6 => u32::from(prefix.min(128)).to_ne_bytes(),
    }
}

/// The prefix length of an `IPVS_SVC_ATTR_NETMASK`.
pub fn netmask_prefix(family: AddressFamily, raw: [u8; 4]) -> u8 {
    match family {
        // leading_ones is at most 32.
        AddressFamily::Inet => u32::from_be_bytes(raw).leading_ones() as u8,
        AddressFamily::Inet6 => u32::from_ne_bytes(raw).min(128) as u8,
    }
}

/// The counters of a `STATS` or `STATS64` nest.
pub fn stats(attrs: &[StatsAttr]) -> Stats {
    let mut s = Stats::default();
    for attr in attrs {
        let (field, value): (&mut u64, Counter) = match attr {
            StatsAttr::Conns(c) => (&mut s.connections, *c),
            StatsAttr::InPkts(c) => (&mut s.packets_in, *c),
            StatsAttr::OutPkts(c) => (&mut s.packets_out, *c),
            StatsAttr::InBytes(c) => (&mut s.bytes_in, *c),
            StatsAttr::OutBytes(c) => (&mut s.bytes_out, *c),
            StatsAttr::Cps(c) => (&mut s.cps, *c),
            StatsAttr::InPps(c) => (&mut s.pps_in, *c),
            StatsAttr::OutPps(c) => (&mut s.pps_out, *c),
            StatsAttr::InBps(c) => (&mut s.bps_in, *c),
            StatsAttr::OutBps(c) => (&mut s.bps_out, *c),
            StatsAttr::Other(_) => continue,
        };
        *field = value.get();
    }
    s
}

fn family(n: u16) -> Result<AddressFamily, DecodeError> {
    AddressFamily::from_number(n).ok_or_else(|| DecodeError::from(format!("address family {n}")))
}

fn missing(what: &str) -> DecodeError {
    DecodeError::from(format!("missing {what}"))
}

/// A dumped service from its attributes. `HASHED` is dropped from the flags;
/// 64-bit counters are preferred over the legacy 32-bit nest.
pub fn virtual_server(attrs: &[ServiceAttr]) -> Result<DumpedVirtualServer, DecodeError> {
    let (mut af, mut protocol, mut addr, mut port, mut fwmark) = (None, None, None, None, None);
    let (mut sched, mut flags, mut timeout, mut netmask, mut pe) = (None, 0, 0, None, None);
    let (mut stats32, mut stats64) = (None, None);
    for attr in attrs {
        match attr {
            ServiceAttr::Af(v) => af = Some(*v),
            ServiceAttr::Protocol(v) => protocol = Some(*v),
            ServiceAttr::Addr(v) => addr = Some(*v),
            ServiceAttr::Port(v) => port = Some(*v),
            ServiceAttr::Fwmark(v) => fwmark = Some(*v),
            ServiceAttr::SchedName(v) => sched = Some(v.as_str()),
            ServiceAttr::Flags(f) => flags = f.flags,
            ServiceAttr::Timeout(v) => timeout = *v,
            ServiceAttr::Netmask(v) => netmask = Some(*v),
            ServiceAttr::Stats(v) => stats32 = Some(v),
            ServiceAttr::PeName(v) => pe = Some(v.clone()).filter(|s| !s.is_empty()),
            ServiceAttr::Stats64(v) => stats64 = Some(v),
            ServiceAttr::Other(_) => {}
        }
    }
    let family = family(af.ok_or_else(|| missing("IPVS_SVC_ATTR_AF"))?)?;
    let key = match (fwmark, protocol, addr, port) {
        (Some(mark), ..) if mark != 0 => VirtualServerKey::FirewallMark { family, mark },
        (_, Some(protocol), Some(addr), Some(port)) => VirtualServerKey::Inet {
            protocol: Protocol::from_number(protocol),
            address: addr.to_ip(family == AddressFamily::Inet6),
            port,
        },
        _ => return Err(missing("IPVS_SVC_ATTR_FWMARK or PROTOCOL/ADDR/PORT")),
    };
    let scheduler: Scheduler = match sched {
        Some(name) => name.parse().unwrap_or_default(),
        None => return Err(missing("IPVS_SVC_ATTR_SCHED_NAME")),
    };
    Ok(DumpedVirtualServer {
        service: VirtualServer {
            key,
            scheduler,
            flags: ServiceFlags(flags).configurable(),
            timeout,
            netmask: netmask.map_or(family.max_prefix(), |raw| netmask_prefix(family, raw)),
            persistence_engine: pe,
        },
        stats: stats64.or(stats32).map(|s| stats(s)).unwrap_or_default(),
    })
}

/// A dumped destination from its attributes; `service_family` is the
/// address family when the kernel does not say (`ADDR_FAMILY` is newer).
pub fn real_server(
    attrs: &[DestAttr],
    service_family: AddressFamily,
) -> Result<DumpedRealServer, DecodeError> {
    let (mut af, mut addr, mut port) = (None, None, None);
    let mut server = RealServer::new(IpAddr::from([0, 0, 0, 0]), 0);
    let mut counters = RealServerCounters::default();
    let (mut stats32, mut stats64) = (None, None);
    for attr in attrs {
        match attr {
            DestAttr::Addr(v) => addr = Some(*v),
            DestAttr::Port(v) => port = Some(*v),
            DestAttr::FwdMethod(v) => server.forward = ForwardMethod::from_number(*v),
            DestAttr::Weight(v) => server.weight = *v,
            DestAttr::UThresh(v) => server.upper_threshold = *v,
            DestAttr::LThresh(v) => server.lower_threshold = *v,
            DestAttr::ActiveConns(v) => counters.active_connections = *v,
            DestAttr::InactConns(v) => counters.inactive_connections = *v,
            DestAttr::PersistConns(v) => counters.persistent_connections = *v,
            DestAttr::Stats(v) => stats32 = Some(v),
            DestAttr::AddrFamily(v) => af = Some(*v),
            DestAttr::Stats64(v) => stats64 = Some(v),
            DestAttr::TunType(_)
            | DestAttr::TunPort(_)
            | DestAttr::TunFlags(_)
            | DestAttr::Other(_) => {}
        }
    }
    let family = match af {
        Some(n) => family(n)?,
        None => service_family,
    };
    let addr = addr.ok_or_else(|| missing("IPVS_DEST_ATTR_ADDR"))?;
    server.key = RealServerKey {
        address: addr.to_ip(family == AddressFamily::Inet6),
        port: port.ok_or_else(|| missing("IPVS_DEST_ATTR_PORT"))?,
    };
    counters.stats = stats64.or(stats32).map(|s| stats(s)).unwrap_or_default();
    Ok(DumpedRealServer { server, counters })
}

/// The request message for one write operation.
pub fn operation_message(op: &Operation) -> IpvsMessage {
    let (cmd, attrs) = match op {
        Operation::NewService(s) => (
            IpvsCommand::NewService,
            vec![IpvsAttr::Service(service_attrs(s))],
        ),
        Operation::SetService(s) => (
            IpvsCommand::SetService,
            vec![IpvsAttr::Service(service_attrs(s))],
        ),
        Operation::DelService(k) => (
            IpvsCommand::DelService,
            vec![IpvsAttr::Service(service_key_attrs(k))],
        ),
        Operation::NewDest(k, d) => (
            IpvsCommand::NewDest,
            vec![
                IpvsAttr::Service(service_key_attrs(k)),
                IpvsAttr::Dest(dest_attrs(d)),
            ],
        ),
        Operation::SetDest(k, d) => (
            IpvsCommand::SetDest,
            vec![
                IpvsAttr::Service(service_key_attrs(k)),
                IpvsAttr::Dest(dest_attrs(d)),
            ],
        ),
        Operation::DelDest(k, d) => (
            IpvsCommand::DelDest,
            vec![
                IpvsAttr::Service(service_key_attrs(k)),
                IpvsAttr::Dest(dest_key_attrs(d)),
            ],
        ),
    };
    IpvsMessage::new(cmd, attrs)
}
