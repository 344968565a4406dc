//! [`Ipvs`]: the IPVS handle. Synchronous: from async code, call it inside
//! `tokio::task::spawn_blocking` (each call is a few system calls, a batch of
//! thousands of operations a few milliseconds of kernel work).

use std::io;

use kube_ipvs_model::{
    DumpedRealServer, DumpedService, DumpedVirtualServer, IpvsInfo, Operation, Timeouts,
    VirtualServerKey,
};
use netlink_packet_core::NetlinkMessage;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_sys::constants::NETLINK_GENERIC;

use crate::convert;
use crate::error::{invalid_data, Error, OperationError};
use crate::packet::{IpvsAttr, IpvsCommand, IpvsMessage};
use crate::socket::{message, NetlinkSocket, SyscallCounts};

/// How many destination dumps are written per `sendmsg` by default.
///
/// A socket runs one dump at a time, and the kernel finishes a dump that
/// found anything only when the reader comes back for more (`recvmsg`), so
/// within one `sendmsg` every dump after the first non-empty one is refused
/// with `EBUSY`. Only services without destinations complete back to back:
/// measured with 5,000 services of 2 destinations, a window of 1 took 5,001
/// `sendmsg` and 10,051 `recvmsg`, larger windows the same `sendmsg` and up
/// to 18,888 `recvmsg` (the refusals), and were slower.
pub const DEFAULT_DUMP_WINDOW: usize = 1;

/// The outcome of [`Ipvs::apply`]: one result per operation, in order.
#[derive(Debug)]
pub struct BatchReport {
    /// `Ok` or the operation's error, in the order of the operations given.
    pub results: Vec<Result<(), OperationError>>,
    /// `sendmsg` calls the batch took.
    pub sendmsg_calls: usize,
    /// `recvmsg` calls the batch took (one per `sendmsg` and one per refusal).
    pub recvmsg_calls: usize,
}

impl BatchReport {
    /// The operations that failed.
    pub fn errors(&self) -> impl Iterator<Item = &OperationError> {
        self.results.iter().filter_map(|r| r.as_ref().err())
    }

    /// How many operations succeeded.
    pub fn succeeded(&self) -> usize {
        self.results.iter().filter(|r| r.is_ok()).count()
    }

    /// Whether every operation succeeded.
    pub fn is_ok(&self) -> bool {
        self.results.iter().all(Result::is_ok)
    }
}

type Msg = GenlMessage<IpvsMessage>;

/// A generic-netlink socket bound to the resolved `IPVS` family.
pub struct Ipvs {
    socket: NetlinkSocket,
    family_id: u16,
    dump_window: usize,
}

impl Ipvs {
    /// Opens a socket and resolves the `IPVS` family id.
    pub fn open() -> Result<Self, Error> {
        let mut socket = NetlinkSocket::open(NETLINK_GENERIC).map_err(|source| Error::Open {
            protocol: "generic",
            source,
        })?;
        let family_id = resolve_family(&mut socket).map_err(Error::ResolveFamily)?;
        Ok(Ipvs {
            socket,
            family_id,
            dump_window: DEFAULT_DUMP_WINDOW,
        })
    }

    /// The family id the kernel gave `IPVS`.
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    /// System calls made on this handle so far.
    pub fn syscalls(&self) -> SyscallCounts {
        self.socket.counts
    }

    /// Sets how many destination dumps [`Ipvs::dump_all`] writes per `sendmsg`.
    pub fn set_dump_window(&mut self, window: usize) {
        self.dump_window = window.max(1);
    }

    fn message(&self, msg: IpvsMessage, flags: u16) -> NetlinkMessage<Msg> {
        family_message(self.family_id, msg, flags)
    }

    /// Applies `operations` in order, many per `sendmsg`, each acknowledged
    /// on its own. A refused operation does not stop the others; its error
    /// is in the report. `Err` means the socket itself failed.
    pub fn apply(&mut self, operations: &[Operation]) -> Result<BatchReport, Error> {
        let before = self.socket.counts;
        let family_id = self.family_id;
        let requests = operations
            .iter()
            .map(|op| family_message(family_id, convert::operation_message(op), 0));
        let results = self.socket.acked(requests).map_err(Error::Apply)?;
        let after = self.socket.counts;
        Ok(BatchReport {
            results: results
                .into_iter()
                .zip(operations)
                .map(|(result, op)| {
                    result.map_err(|source| OperationError {
                        operation: op.clone(),
                        source,
                    })
                })
                .collect(),
            sendmsg_calls: after.sendmsg - before.sendmsg,
            recvmsg_calls: after.recvmsg - before.recvmsg,
        })
    }

    /// Every virtual service, with its counters.
    pub fn services(&mut self) -> Result<Vec<DumpedVirtualServer>, Error> {
        let request = self.message(IpvsMessage::new(IpvsCommand::GetService, vec![]), 0);
        // Each reply converted as it is read: at 10,000 virtual servers the
        // parsed messages were several times the converted ones.
        self.socket
            .dump_each(request, |reply| {
                service_attrs(reply)
                    .map(|attrs| convert::virtual_server(&attrs).map_err(invalid_data))
                    .transpose()
            })
            .map_err(Error::DumpServices)
    }

    fn dest_request(&self, key: &VirtualServerKey) -> NetlinkMessage<Msg> {
        let attrs = vec![IpvsAttr::Service(convert::service_key_attrs(key))];
        self.message(IpvsMessage::new(IpvsCommand::GetDest, attrs), 0)
    }

    /// The real servers of one service.
    pub fn destinations(&mut self, key: &VirtualServerKey) -> Result<Vec<DumpedRealServer>, Error> {
        let request = self.dest_request(key);
        let replies = self
            .socket
            .dump_each(request, |reply| parse_dest(reply, key))
            .map_err(|source| Error::DumpDestinations {
                service: *key,
                source,
            })?;
        Ok(replies)
    }

    /// The real servers of several services, their dumps written up to the
    /// dump window per `sendmsg` as in [`Self::dump_all_with`]; each
    /// service's real servers are handed to `convert` as soon as their dump
    /// is parsed. A service the kernel no longer holds has none.
    pub fn destinations_with<T>(
        &mut self,
        keys: &[VirtualServerKey],
        mut convert: impl FnMut(&VirtualServerKey, Vec<DumpedRealServer>) -> T,
    ) -> Result<Vec<T>, Error> {
        let requests = keys.iter().map(|key| self.dest_request(key)).collect();
        self.socket
            .dumps_each(
                requests,
                self.dump_window,
                |index, reply| parse_dest(reply, &keys[index]),
                |index, real_servers| Ok(convert(&keys[index], real_servers)),
            )
            .into_iter()
            .zip(keys)
            .map(|(result, key)| {
                result.map_err(|source| Error::DumpDestinations {
                    service: *key,
                    source,
                })
            })
            .collect()
    }

    /// Every service with its real servers: one service dump, then the
    /// per-service destination dumps pipelined many to a `sendmsg`, each
    /// parsed as soon as it is complete (the messages of 100,000 real
    /// servers are never held at once).
    pub fn dump_all(&mut self) -> Result<Vec<DumpedService>, Error> {
        Ok(self
            .dump_all_with(|_, destinations| destinations)?
            .into_iter()
            .map(|(service, destinations)| DumpedService {
                service,
                destinations,
            })
            .collect())
    }

    /// [`Self::dump_all`], each service's real servers handed to `convert`
    /// as soon as their dump is parsed, so a caller that keeps less than a
    /// [`DumpedRealServer`] (its traffic counters) never holds every one.
    pub fn dump_all_with<T>(
        &mut self,
        mut convert: impl FnMut(&VirtualServerKey, Vec<DumpedRealServer>) -> T,
    ) -> Result<Vec<(DumpedVirtualServer, T)>, Error> {
        let services = self.services()?;
        let requests = services
            .iter()
            .map(|s| self.dest_request(&s.service.key))
            .collect();
        let results = self.socket.dumps_each(
            requests,
            self.dump_window,
            |index, reply| parse_dest(reply, &services[index].service.key),
            |index, real_servers| Ok(convert(&services[index].service.key, real_servers)),
        );
        services
            .into_iter()
            .zip(results)
            .map(|(service, result)| {
                let key = service.service.key;
                let destinations = result.map_err(|source| Error::DumpDestinations {
                    service: key,
                    source,
                })?;
                Ok((service, destinations))
            })
            .collect()
    }

    fn get(&mut self, cmd: IpvsCommand) -> io::Result<Vec<IpvsAttr>> {
        let request = self.message(IpvsMessage::new(cmd, vec![]), 0);
        let mut replies = self.socket.request(request)?;
        match replies.pop() {
            Some(reply) => Ok(reply.payload.attrs),
            None => Err(invalid_data("empty reply")),
        }
    }

    /// The IPVS version and connection table size.
    pub fn info(&mut self) -> Result<IpvsInfo, Error> {
        let attrs = self.get(IpvsCommand::GetInfo).map_err(Error::GetInfo)?;
        let (mut version, mut size) = (None, None);
        for attr in attrs {
            match attr {
                IpvsAttr::Version(v) => version = Some(v),
                IpvsAttr::ConnTabSize(v) => size = Some(v),
                _ => {}
            }
        }
        match (version, size) {
            (Some(version), Some(connection_table_size)) => Ok(IpvsInfo {
                version,
                connection_table_size,
            }),
            _ => Err(Error::GetInfo(invalid_data("incomplete IPVS info"))),
        }
    }

    /// The global TCP, TCP FIN and UDP timeouts.
    pub fn timeouts(&mut self) -> Result<Timeouts, Error> {
        let attrs = self
            .get(IpvsCommand::GetConfig)
            .map_err(Error::GetTimeouts)?;
        let mut t = Timeouts::default();
        for attr in attrs {
            match attr {
                IpvsAttr::TimeoutTcp(v) => t.tcp = v,
                IpvsAttr::TimeoutTcpFin(v) => t.tcp_fin = v,
                IpvsAttr::TimeoutUdp(v) => t.udp = v,
                _ => {}
            }
        }
        Ok(t)
    }

    /// Sets the global timeouts; a 0 leaves that timeout unchanged.
    pub fn set_timeouts(&mut self, timeouts: &Timeouts) -> Result<(), Error> {
        let msg = timeouts_message(timeouts);
        self.acked_one(msg).map_err(Error::SetTimeouts)
    }

    /// Deletes every service and destination.
    pub fn flush(&mut self) -> Result<(), Error> {
        let msg = IpvsMessage::new(IpvsCommand::Flush, vec![]);
        self.acked_one(msg).map_err(Error::Flush)
    }

    fn acked_one(&mut self, msg: IpvsMessage) -> io::Result<()> {
        let request = self.message(msg, 0);
        self.socket
            .acked(vec![request])?
            .pop()
            .unwrap_or_else(|| Err(io::Error::other("no acknowledgement")))
    }
}

fn family_message(family_id: u16, msg: IpvsMessage, flags: u16) -> NetlinkMessage<Msg> {
    let mut genl = GenlMessage::from_payload(msg);
    genl.set_resolved_family_id(family_id);
    message(genl, flags)
}

/// The `IPVS_CMD_SET_CONFIG` request for `timeouts`, in `ipvsadm`'s order.
pub fn timeouts_message(timeouts: &Timeouts) -> IpvsMessage {
    IpvsMessage::new(
        IpvsCommand::SetConfig,
        vec![
            IpvsAttr::TimeoutTcp(timeouts.tcp),
            IpvsAttr::TimeoutTcpFin(timeouts.tcp_fin),
            IpvsAttr::TimeoutUdp(timeouts.udp),
        ],
    )
}

fn service_attrs(genl: Msg) -> Option<Vec<crate::packet::ServiceAttr>> {
    genl.payload.attrs.into_iter().find_map(|a| match a {
        IpvsAttr::Service(attrs) => Some(attrs),
        _ => None,
    })
}

/// The real server of one reply to a destination dump, if it holds one.
fn parse_dest(reply: Msg, key: &VirtualServerKey) -> io::Result<Option<DumpedRealServer>> {
    reply
        .payload
        .attrs
        .into_iter()
        .find_map(|a| match a {
            IpvsAttr::Dest(attrs) => Some(attrs),
            _ => None,
        })
        .map(|attrs| convert::real_server(&attrs, key.family()).map_err(invalid_data))
        .transpose()
}

fn resolve_family(socket: &mut NetlinkSocket) -> io::Result<u16> {
    let ctrl = GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(
            IpvsMessage::family_name().to_owned(),
        )],
    };
    let replies = socket.request(message(GenlMessage::from_payload(ctrl), 0))?;
    replies
        .iter()
        .flat_map(|m| m.payload.nlas.iter())
        .find_map(|a| match a {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
        .ok_or_else(|| invalid_data("no family id in the controller's reply"))
}
