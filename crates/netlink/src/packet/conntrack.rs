//! The sans-IO half of ctnetlink (`NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_CTNETLINK`): conntrack entries reduced to the flows that
//! finding and deleting stale UDP entries needs, and the messages that read
//! and delete them. The messages themselves are `netlink-packet-netfilter`'s
//! [`ConntrackMessage`]; [`crate::conntrack`] sends and receives them.

use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{DefaultNla, NetlinkMessage};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol as CtProtocol, Tuple,
};
use netlink_packet_netfilter::NetfilterMessage;

/// `CTA_ZONE`: the conntrack zone, a big-endian u16; part of an entry's identity.
const CTA_ZONE: u16 = 18;
pub(crate) const IPPROTO_UDP: u8 = 17;
/// `NLMSG_MIN_TYPE`: message types below it are netlink's own.
const NLMSG_MIN_TYPE: u16 = 0x10;
/// `NFNL_SUBSYS_CTNETLINK`, the high byte of a ctnetlink message type.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;

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

/// The netlink messages in one datagram (of a dump, say): netlink's own
/// (`NLMSG_DONE`, `NLMSG_ERROR`...) and ctnetlink's. A message of another
/// netfilter subsystem is skipped unparsed: a ctnetlink socket gets none,
/// and netlink-packet-netfilter's nftables parser panics on some malformed
/// attributes. A message whose length runs past the datagram ends it with
/// an error.
pub fn messages(
    mut buffer: &[u8],
) -> impl Iterator<Item = Result<NetlinkMessage<NetfilterMessage>, netlink_packet_core::DecodeError>> + '_
{
    std::iter::from_fn(move || loop {
        if buffer.len() < 16 {
            return None;
        }
        let length = u32::from_ne_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
        let message_type = u16::from_ne_bytes([buffer[4], buffer[5]]);
        let aligned = (length + 3) & !3;
        if length < 16 || length > buffer.len() {
            buffer = &[];
            return Some(Err("truncated netlink message".into()));
        }
        let message = &buffer[..length];
        buffer = &buffer[aligned.min(buffer.len())..];
        if message_type >= NLMSG_MIN_TYPE && message_type >> 8 != NFNL_SUBSYS_CTNETLINK {
            continue;
        }
        return Some(NetlinkMessage::<NetfilterMessage>::deserialize(message));
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
