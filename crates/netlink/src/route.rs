//! [`Route`]: the rtnetlink handle for the dummy link and its addresses.
//! Synchronous, like [`crate::Ipvs`]; many address changes go out in one
//! `sendmsg`.

use std::io;

use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::constants::NETLINK_ROUTE;

use crate::error::Error;
use crate::socket::{message, NetlinkSocket, SyscallCounts};

/// An rtnetlink socket.
pub struct Route {
    pub(crate) socket: NetlinkSocket,
}

impl Route {
    /// Opens the socket.
    pub fn open() -> Result<Self, Error> {
        let socket = NetlinkSocket::open(NETLINK_ROUTE).map_err(|source| Error::Open {
            protocol: "route",
            source,
        })?;
        Ok(Route { socket })
    }

    /// System calls made on this handle so far.
    pub fn syscalls(&self) -> SyscallCounts {
        self.socket.counts
    }

    pub(crate) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let replies = self.socket.request(message(msg, flags))?;
        Ok(replies)
    }

    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.socket.dump(message(msg, 0))
    }

    /// A dump whose replies are converted (or dropped) as they are read.
    pub(crate) fn dump_each<E>(
        &mut self,
        msg: RouteNetlinkMessage,
        mut each: impl FnMut(RouteNetlinkMessage) -> Option<E>,
    ) -> io::Result<Vec<E>> {
        self.socket
            .dump_each(message(msg, 0), |reply| Ok(each(reply)))
    }

    pub(crate) fn acked(
        &mut self,
        requests: Vec<(RouteNetlinkMessage, u16)>,
    ) -> io::Result<Vec<io::Result<()>>> {
        let requests: Vec<NetlinkMessage<RouteNetlinkMessage>> = requests
            .into_iter()
            .map(|(msg, flags)| message(msg, flags))
            .collect();
        self.socket.acked(requests)
    }
}
