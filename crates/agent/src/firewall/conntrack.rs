//! Deleting conntrack entries of UDP flows whose endpoint is gone.
//!
//! UDP has no end of connection: a client that keeps sending to a Service
//! keeps its conntrack entry (and IPVS connection) alive, so after the
//! endpoint goes every datagram still follows the old entry into a void.
//! Deleting the entry makes the next datagram a new flow; IPVS, with
//! `net/ipv4/vs/expire_nodest_conn=1`, then drops its own stale connection
//! instead of the datagram (the flow's conntrack entry is unconfirmed) and
//! schedules it to a live endpoint.
//!
//! The kernel deletes by exact tuple only, so this dumps the family's table
//! (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`), picks the entries whose original
//! destination is the Service and whose reply source is the endpoint, and
//! deletes each by its original tuple (`IPCTNL_MSG_CT_DELETE`). Blocking I/O;
//! call it from `spawn_blocking` in async code.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol as CtProtocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr as NetlinkAddr};

use super::FirewallError;

/// `CTA_ZONE`: the conntrack zone, a big-endian u16; part of an entry's identity.
const CTA_ZONE: u16 = 18;
const IPPROTO_UDP: u8 = 17;
/// The kernel's answer to deleting an entry that is already gone.
const ENOENT: i32 = 2;

/// One direction of a conntrack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowTuple {
    /// The IP protocol number.
    pub protocol: u8,
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination address and port.
    pub destination: SocketAddr,
}

/// A conntrack entry, reduced to what finding and deleting it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    /// The original direction (client to Service).
    pub original: FlowTuple,
    /// The reply direction (endpoint to client, or to the node when masqueraded).
    pub reply: FlowTuple,
    /// The conntrack zone, when not the default one.
    pub zone: Option<u16>,
}

/// The UDP flows of a Service that an endpoint answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StaleUdpFlows {
    /// The Service address the clients sent to.
    pub vip: IpAddr,
    /// The Service port.
    pub vport: u16,
    /// The endpoint that is gone.
    pub endpoint: IpAddr,
    /// Its port.
    pub eport: u16,
}

impl StaleUdpFlows {
    /// Whether `flow` is one of these.
    pub fn matches(&self, flow: &Flow) -> bool {
        flow.original.protocol == IPPROTO_UDP
            && flow.original.destination == SocketAddr::new(self.vip, self.vport)
            && flow.reply.source == SocketAddr::new(self.endpoint, self.eport)
    }
}

/// A `NETLINK_NETFILTER` socket for conntrack.
pub struct Conntrack {
    socket: Socket,
    sequence: u32,
}

impl Conntrack {
    /// Opens the socket.
    pub fn open() -> Result<Self, FirewallError> {
        let open = || -> io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_NETFILTER)?;
            socket.bind_auto()?;
            socket.connect(&NetlinkAddr::new(0, 0))?;
            Ok(socket)
        };
        let socket = open().map_err(|source| FirewallError::OpenConntrack { source })?;
        Ok(Conntrack {
            socket,
            sequence: 0,
        })
    }

    /// Deletes the UDP flows to `vip:vport` that `endpoint:eport` answered;
    /// returns how many entries went.
    pub fn delete_udp_flows(
        &mut self,
        vip: IpAddr,
        vport: u16,
        endpoint: IpAddr,
        eport: u16,
    ) -> Result<usize, FirewallError> {
        self.delete_stale(&[StaleUdpFlows {
            vip,
            vport,
            endpoint,
            eport,
        }])
    }

    /// Deletes the flows of every entry of `stale`, with one table dump per
    /// address family; returns how many entries went.
    pub fn delete_stale(&mut self, stale: &[StaleUdpFlows]) -> Result<usize, FirewallError> {
        let mut deleted = 0;
        for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
            let wanted: Vec<&StaleUdpFlows> = stale
                .iter()
                .filter(|s| family_of(&s.vip) == u8::from(family))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let doomed: BTreeSet<Flow> = self
                .dump(family)?
                .into_iter()
                .filter(|flow| wanted.iter().any(|s| s.matches(flow)))
                .collect();
            for flow in &doomed {
                if self.delete(flow)? {
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Every entry of `family`'s table that parses as a flow.
    fn dump(&mut self, family: NetfilterProtoFamily) -> Result<Vec<Flow>, FirewallError> {
        let io_err = |source| FirewallError::DumpConntrack { source };
        let sequence = self
            .send(
                family,
                NLM_F_REQUEST | NLM_F_DUMP,
                ConntrackMessage::Get(vec![]),
            )
            .map_err(io_err)?;
        let mut flows = Vec::new();
        loop {
            let (buffer, _) = self.socket.recv_from_full().map_err(io_err)?;
            for message in messages(&buffer) {
                let message =
                    message.map_err(|source| FirewallError::DecodeConntrack { source })?;
                if message.header.sequence_number != sequence {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::Done(_) => return Ok(flows),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(io_err(e.to_io())),
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)),
                        ..
                    }) => flows.extend(parse_flow(&attributes)),
                    _ => {}
                }
            }
        }
    }

    /// Deletes one entry; `false` when it was already gone.
    fn delete(&mut self, flow: &Flow) -> Result<bool, FirewallError> {
        let fail = |source| FirewallError::DeleteConntrack {
            flow: describe(&flow.original),
            source,
        };
        let family = match flow.original.source {
            SocketAddr::V4(_) => NetfilterProtoFamily::IPv4,
            SocketAddr::V6(_) => NetfilterProtoFamily::IPv6,
        };
        let sequence = self
            .send(family, NLM_F_REQUEST | NLM_F_ACK, delete_message(flow))
            .map_err(fail)?;
        loop {
            let (buffer, _) = self.socket.recv_from_full().map_err(fail)?;
            for message in messages(&buffer) {
                let message =
                    message.map_err(|source| FirewallError::DecodeConntrack { source })?;
                if message.header.sequence_number != sequence {
                    continue;
                }
                if let NetlinkPayload::Error(e) = message.payload {
                    return match e.code {
                        None => Ok(true),
                        Some(code) if -code.get() == ENOENT => Ok(false),
                        Some(_) => Err(fail(e.to_io())),
                    };
                }
            }
        }
    }

    fn send(
        &mut self,
        family: NetfilterProtoFamily,
        flags: u16,
        message: ConntrackMessage,
    ) -> io::Result<u32> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(family, 0, 0),
                message,
            )),
        );
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer);
        self.socket.send(&buffer, 0)?;
        Ok(self.sequence)
    }
}

/// The netlink messages in one datagram.
fn messages(
    mut buffer: &[u8],
) -> impl Iterator<Item = Result<NetlinkMessage<NetfilterMessage>, netlink_packet_core::DecodeError>> + '_
{
    std::iter::from_fn(move || {
        if buffer.len() < 16 {
            return None;
        }
        let length = u32::from_ne_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
        let aligned = (length + 3) & !3;
        if length < 16 || length > buffer.len() {
            buffer = &[];
            return Some(Err("truncated netlink message".into()));
        }
        let message = NetlinkMessage::<NetfilterMessage>::deserialize(&buffer[..length]);
        buffer = &buffer[aligned.min(buffer.len())..];
        Some(message)
    })
}

/// The flow a dumped entry describes, if it has both tuples with ports.
pub fn parse_flow(attributes: &[ConntrackAttribute]) -> Option<Flow> {
    let mut original = None;
    let mut reply = None;
    let mut zone = None;
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(t) => original = parse_tuple(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = parse_tuple(t),
            ConntrackAttribute::Other(nla) if netlink_packet_core::Nla::kind(nla) == CTA_ZONE => {
                let mut value = [0u8; 2];
                if netlink_packet_core::Nla::value_len(nla) == 2 {
                    netlink_packet_core::Nla::emit_value(nla, &mut value);
                    zone = Some(u16::from_be_bytes(value)).filter(|z| *z != 0);
                }
            }
            _ => {}
        }
    }
    Some(Flow {
        original: original?,
        reply: reply?,
        zone,
    })
}

fn parse_tuple(tuple: &[Tuple]) -> Option<FlowTuple> {
    let (mut source, mut destination, mut protocol, mut sport, mut dport) =
        (None, None, None, None, None);
    for part in tuple {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => source = Some(*a),
                        IPTuple::DestinationAddress(a) => destination = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(n) => protocol = Some(u8::from(*n)),
                        ProtoTuple::SourcePort(n) => sport = Some(*n),
                        ProtoTuple::DestinationPort(n) => dport = Some(*n),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(FlowTuple {
        protocol: protocol?,
        source: SocketAddr::new(source?, sport?),
        destination: SocketAddr::new(destination?, dport?),
    })
}

/// `IPCTNL_MSG_CT_DELETE` for `flow`, by its original tuple (and zone).
pub fn delete_message(flow: &Flow) -> ConntrackMessage {
    let t = &flow.original;
    let mut attributes = vec![ConntrackAttribute::CtaTupleOrig(vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(t.source.ip()),
            IPTuple::DestinationAddress(t.destination.ip()),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(CtProtocol::from(t.protocol)),
            ProtoTuple::SourcePort(t.source.port()),
            ProtoTuple::DestinationPort(t.destination.port()),
        ]),
    ])];
    if let Some(zone) = flow.zone {
        attributes.push(ConntrackAttribute::Other(DefaultNla::new(
            CTA_ZONE,
            zone.to_be_bytes().to_vec(),
        )));
    }
    ConntrackMessage::Delete(attributes)
}

fn family_of(address: &IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => u8::from(NetfilterProtoFamily::IPv4),
        IpAddr::V6(_) => u8::from(NetfilterProtoFamily::IPv6),
    }
}

fn describe(t: &FlowTuple) -> String {
    format!("proto {} {} -> {}", t.protocol, t.source, t.destination)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, ParseableParametrized};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn flow(orig: (&str, &str), reply: (&str, &str)) -> Flow {
        Flow {
            original: FlowTuple {
                protocol: IPPROTO_UDP,
                source: sa(orig.0),
                destination: sa(orig.1),
            },
            reply: FlowTuple {
                protocol: IPPROTO_UDP,
                source: sa(reply.0),
                destination: sa(reply.1),
            },
            zone: None,
        }
    }

    #[test]
    fn stale_flows_match_service_and_endpoint_only() {
        let stale = StaleUdpFlows {
            vip: "10.96.0.10".parse().unwrap(),
            vport: 53,
            endpoint: "10.244.1.5".parse().unwrap(),
            eport: 5353,
        };
        let client = "10.244.2.7:40000";
        let cases = [
            (
                flow((client, "10.96.0.10:53"), ("10.244.1.5:5353", client)),
                true,
            ),
            // Masqueraded: the reply goes to the node, the source is still the endpoint.
            (
                flow(
                    (client, "10.96.0.10:53"),
                    ("10.244.1.5:5353", "172.18.0.2:61000"),
                ),
                true,
            ),
            (
                flow((client, "10.96.0.10:53"), ("10.244.1.6:5353", client)),
                false,
            ),
            (
                flow((client, "10.96.0.10:54"), ("10.244.1.5:5353", client)),
                false,
            ),
            (
                flow((client, "10.96.0.11:53"), ("10.244.1.5:5353", client)),
                false,
            ),
            (
                flow((client, "10.96.0.10:53"), ("10.244.1.5:5354", client)),
                false,
            ),
        ];
        for (f, want) in cases {
            assert_eq!(stale.matches(&f), want, "{f:?}");
        }
        let mut tcp = flow((client, "10.96.0.10:53"), ("10.244.1.5:5353", client));
        tcp.original.protocol = 6;
        assert!(!stale.matches(&tcp));
    }

    #[test]
    fn delete_message_round_trips_through_the_dump_parser() {
        let mut f = flow(
            ("10.244.2.7:40000", "10.96.0.10:53"),
            ("10.244.1.5:5353", "10.244.2.7:40000"),
        );
        f.zone = Some(7);
        let ConntrackMessage::Delete(attributes) = delete_message(&f) else {
            panic!("not a delete");
        };
        // The kernel's dump carries both tuples; add the reply one to parse.
        let mut dumped = attributes.clone();
        dumped.push(ConntrackAttribute::CtaTupleReply(vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(f.reply.source.ip()),
                IPTuple::DestinationAddress(f.reply.destination.ip()),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(CtProtocol::Udp),
                ProtoTuple::SourcePort(f.reply.source.port()),
                ProtoTuple::DestinationPort(f.reply.destination.port()),
            ]),
        ]));
        let message = ConntrackMessage::New(dumped);
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        let ConntrackMessage::New(parsed) =
            ConntrackMessage::parse_with_param(&bytes[..], 0).unwrap()
        else {
            panic!("not a new");
        };
        assert_eq!(parse_flow(&parsed), Some(f));
    }

    #[test]
    fn delete_message_bytes() {
        // Same layout as `conntrack -D -p udp -s 10.0.0.1 -d 10.0.0.2
        // --sport 1000 --dport 53` sends (after the nfgenmsg header).
        let f = flow(
            ("10.0.0.1:1000", "10.0.0.2:53"),
            ("10.0.0.3:53", "10.0.0.1:1000"),
        );
        let message = delete_message(&f);
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x34, 0x00, 0x01, 0x80,             // CTA_TUPLE_ORIG, nested
            0x14, 0x00, 0x01, 0x80,             //   CTA_TUPLE_IP, nested
            0x08, 0x00, 0x01, 0x00, 10, 0, 0, 1, //     CTA_IP_V4_SRC
            0x08, 0x00, 0x02, 0x00, 10, 0, 0, 2, //     CTA_IP_V4_DST
            0x1c, 0x00, 0x02, 0x80,             //   CTA_TUPLE_PROTO, nested
            0x05, 0x00, 0x01, 0x00, 17, 0, 0, 0, //     CTA_PROTO_NUM
            0x06, 0x00, 0x02, 0x00, 0x03, 0xe8, 0, 0, // CTA_PROTO_SRC_PORT 1000
            0x06, 0x00, 0x03, 0x00, 0x00, 0x35, 0, 0, // CTA_PROTO_DST_PORT 53
        ];
        assert_eq!(bytes, want);
    }
}
