//! [`Conntrack`]: deleting conntrack entries of UDP flows whose endpoint is
//! gone.
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
//! call it from `spawn_blocking` in async code. The flows and messages are
//! in [`crate::packet::conntrack`].

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr as NetlinkAddr};

use kube_ipvs_model::AddressFamily;

use crate::error::{invalid_data, Error};
use crate::packet::conntrack::{delete_message, messages, parse_flow};

pub use crate::packet::conntrack::{Flow, FlowTuple, StaleUdpFlows};

/// The kernel's answer to deleting an entry that is already gone.
const ENOENT: i32 = 2;

/// A `NETLINK_NETFILTER` socket for conntrack.
pub struct Conntrack {
    socket: Socket,
    sequence: u32,
}

impl Conntrack {
    /// Opens the socket.
    pub fn open() -> Result<Self, Error> {
        let open = || -> io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_NETFILTER)?;
            socket.bind_auto()?;
            socket.connect(&NetlinkAddr::new(0, 0))?;
            Ok(socket)
        };
        let socket = open().map_err(Error::OpenConntrack)?;
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
    ) -> Result<usize, Error> {
        self.delete_stale(&[StaleUdpFlows {
            vip,
            vport,
            endpoint,
            eport,
        }])
    }

    /// Deletes the flows of every entry of `stale`, with one table dump per
    /// address family; returns how many entries went.
    pub fn delete_stale(&mut self, stale: &[StaleUdpFlows]) -> Result<usize, Error> {
        let mut deleted = 0;
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let wanted: Vec<&StaleUdpFlows> = stale
                .iter()
                .filter(|s| AddressFamily::of(&s.vip) == family)
                .collect();
            if !wanted.is_empty() {
                deleted +=
                    self.delete_matching(family, |flow| wanted.iter().any(|s| s.matches(flow)))?;
            }
        }
        Ok(deleted)
    }

    /// Dumps `family`'s table once and deletes every entry `doomed` picks;
    /// returns how many entries went (one already gone does not count).
    pub fn delete_matching(
        &mut self,
        family: AddressFamily,
        doomed: impl Fn(&Flow) -> bool,
    ) -> Result<usize, Error> {
        let family = match family {
            AddressFamily::Inet => NetfilterProtoFamily::IPv4,
            AddressFamily::Inet6 => NetfilterProtoFamily::IPv6,
        };
        let doomed: BTreeSet<Flow> = self
            .dump(family)?
            .into_iter()
            .filter(|f| doomed(f))
            .collect();
        let mut deleted = 0;
        for flow in &doomed {
            if self.delete(flow)? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Every entry of `family`'s table that parses as a flow.
    fn dump(&mut self, family: NetfilterProtoFamily) -> Result<Vec<Flow>, Error> {
        let sequence = self
            .send(
                family,
                NLM_F_REQUEST | NLM_F_DUMP,
                ConntrackMessage::Get(vec![]),
            )
            .map_err(Error::DumpConntrack)?;
        let mut flows = Vec::new();
        loop {
            let (buffer, _) = self.socket.recv_from_full().map_err(Error::DumpConntrack)?;
            for message in messages(&buffer) {
                let message = message.map_err(|e| Error::DumpConntrack(invalid_data(e)))?;
                if message.header.sequence_number != sequence {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::Done(_) => return Ok(flows),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(Error::DumpConntrack(e.to_io()))
                    }
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
    fn delete(&mut self, flow: &Flow) -> Result<bool, Error> {
        let fail = |source| Error::DeleteConntrack {
            flow: flow.original,
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
                let message = message.map_err(|e| fail(invalid_data(e)))?;
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
