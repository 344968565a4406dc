//! A synchronous netlink socket that batches requests: many messages per
//! `sendmsg`, acknowledgements matched back by sequence number, and several
//! dumps pipelined in one `sendmsg`.
//!
//! The kernel handles every message of a `sendmsg` in turn, in the sender's
//! context: one refused message does not stop the others. A refused message
//! is answered with an `NLMSG_ERROR` carrying its sequence number whether or
//! not it asked for an acknowledgement, so only the last message of a
//! `sendmsg` asks for one: when that acknowledgement arrives, every earlier
//! message without an error of its own succeeded. A batch of thousands of
//! writes then costs one `recvmsg` per `sendmsg` plus one per refusal,
//! instead of one per write. Errors queue on our receive buffer while the
//! kernel works through the batch, so the buffer is made large (and a batch
//! is cut to what it can hold if everything failed); an overrun shows up as
//! `ENOBUFS`, and then every operation of the batch without a reply is
//! reported as failed, since its error may be the one that was lost.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::time::Duration;

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_sys::{Socket, SocketAddr};
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::error::invalid_data;

/// Bytes of requests written per `sendmsg`, at most (the kernel refuses a
/// `sendmsg` larger than the send buffer with `EMSGSIZE`).
const MAX_SEND_BYTES: usize = 256 * 1024;
/// Send buffer asked for, so that `MAX_SEND_BYTES` fit.
const SNDBUF: usize = 1024 * 1024;
/// Receive buffer asked for (the kernel doubles it for bookkeeping). Root
/// gets it with `SO_RCVBUFFORCE`; others get at most `net.core.rmem_max`.
const RCVBUF: usize = 32 * 1024 * 1024;
/// What one queued acknowledgement costs on the receive buffer: a small skb's
/// truesize (data, `sk_buff` and shared info) rounded up generously.
const ACK_TRUESIZE: usize = 1024;
/// Largest datagram read at once; dump skbs are at most 32 KiB.
const RECV_BUFFER: usize = 64 * 1024;
/// A reply that takes longer than this is an error, never a hang.
const RECV_TIMEOUT: Duration = Duration::from_secs(30);
/// Rounds of dump retries (`EBUSY`) without progress before giving up.
const MAX_IDLE_ROUNDS: usize = 100;

/// How many system calls a piece of work took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallCounts {
    /// `sendmsg` calls.
    pub sendmsg: usize,
    /// `recvmsg` calls.
    pub recvmsg: usize,
}

/// One message of a received datagram.
enum Reply<I> {
    /// A data message (a dump entry or a `GET` reply).
    Data(I),
    /// `NLMSG_DONE`, with the errno of a dump that failed midway (0 if none).
    Done(i32),
    /// `NLMSG_ERROR`: 0 for an acknowledgement, else a negative errno.
    Ack(i32),
}

/// A connected netlink socket of one protocol.
pub(crate) struct NetlinkSocket {
    socket: Socket,
    seq: u32,
    buffer: Vec<u8>,
    /// Acknowledgements the receive buffer holds without overrunning.
    max_in_flight: usize,
    /// Bytes of requests per `sendmsg`.
    max_send: usize,
    /// System calls made so far.
    pub counts: SyscallCounts,
}

impl NetlinkSocket {
    /// Opens, binds and connects a socket of `protocol` (`NETLINK_*`).
    pub fn open(protocol: isize) -> io::Result<Self> {
        let mut socket = Socket::new(protocol)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Errors then carry only the request's header, not the request.
        socket.set_cap_ack(true)?;
        if setsockopt(&socket, sockopt::RcvBufForce, &RCVBUF).is_err() {
            socket.set_rx_buf_sz(RCVBUF)?;
        }
        if setsockopt(&socket, sockopt::SndBufForce, &SNDBUF).is_err() {
            setsockopt(&socket, sockopt::SndBuf, &SNDBUF).map_err(io::Error::from)?;
        }
        let sndbuf = getsockopt(&socket, sockopt::SndBuf).map_err(io::Error::from)?;
        let timeout = TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout).map_err(io::Error::from)?;
        let rcvbuf = socket.get_rx_buf_sz()?;
        Ok(NetlinkSocket {
            socket,
            seq: 0,
            buffer: vec![0; RECV_BUFFER],
            max_in_flight: (rcvbuf / ACK_TRUESIZE).max(1),
            // The kernel's limit is the (doubled) send buffer less 32 bytes.
            max_send: MAX_SEND_BYTES.min(sndbuf.saturating_sub(64)).max(4096),
            counts: SyscallCounts::default(),
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.counts.sendmsg += 1;
        let sent = self.socket.send(bytes, 0)?;
        if sent != bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }
        Ok(())
    }

    /// Reads one datagram and calls `each(seq, reply)` for its messages.
    fn recv<I, F>(&mut self, flags: libc_flags::Flags, mut each: F) -> io::Result<()>
    where
        I: NetlinkDeserializable + Debug,
        F: FnMut(u32, Reply<I>),
    {
        self.counts.recvmsg += 1;
        let mut buf = &mut self.buffer[..];
        let len = self.socket.recv(&mut buf, flags | libc_flags::MSG_TRUNC)?;
        if len > self.buffer.len() {
            return Err(invalid_data(format!(
                "netlink datagram of {len} bytes truncated"
            )));
        }
        let mut data = &self.buffer[..len];
        while !data.is_empty() {
            let nl = NetlinkBuffer::new_checked(data).map_err(invalid_data)?;
            let msg_len = nl.length() as usize;
            let seq = nl.sequence_number();
            let payload = nl.payload();
            let mut header = NetlinkHeader::default();
            header.length = nl.length();
            header.message_type = nl.message_type();
            header.flags = nl.flags();
            header.sequence_number = seq;
            header.port_number = nl.port_number();
            match header.message_type {
                NLMSG_ERROR => {
                    let err = ErrorBuffer::new_checked(payload).map_err(invalid_data)?;
                    each(seq, Reply::Ack(err.code().map_or(0, |c| c.get())));
                }
                NLMSG_DONE => {
                    // The errno after NLMSG_DONE is optional in old kernels.
                    let code = DoneBuffer::new_checked(payload).map_or(0, |d| d.code());
                    each(seq, Reply::Done(code));
                }
                NLMSG_NOOP | NLMSG_OVERRUN => {}
                _ => {
                    let msg = I::deserialize(&header, payload).map_err(invalid_data)?;
                    each(seq, Reply::Data(msg));
                }
            }
            let advance = msg_len.checked_add(3).map(|n| n & !3).unwrap_or(usize::MAX);
            data = data.get(advance..).unwrap_or(&[]);
        }
        Ok(())
    }

    /// Reads and discards whatever is queued (after an overrun).
    fn drain<I: NetlinkDeserializable + Debug>(&mut self) {
        while self
            .recv::<I, _>(libc_flags::MSG_DONTWAIT, |_, _| {})
            .is_ok()
        {}
    }

    /// Sends every request and returns each one's result in order: `Ok` for
    /// success, the kernel's errno otherwise. Only the last request of each
    /// `sendmsg` carries `NLM_F_ACK` (see the module's documentation).
    ///
    /// The requests are taken one `sendmsg` at a time, so a lazy iterator
    /// never holds more than one chunk of messages in memory (a message is
    /// a few hundred bytes of nested attribute vectors, its bytes a tenth).
    pub fn acked<I, R>(&mut self, requests: R) -> io::Result<Vec<io::Result<()>>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
        R: IntoIterator<Item = NetlinkMessage<I>>,
        R::IntoIter: ExactSizeIterator,
    {
        let requests = requests.into_iter();
        let mut results: Vec<Option<io::Result<()>>> = Vec::with_capacity(requests.len());
        results.resize_with(requests.len(), || None);
        let mut out = Vec::with_capacity(MAX_SEND_BYTES);
        let max_send = self.max_send;
        let mut requests = requests.into_iter().enumerate().peekable();
        while requests.peek().is_some() {
            out.clear();
            let mut in_flight: HashMap<u32, usize> = HashMap::new();
            let mut last = (0, 0);
            // Each message's length is worked out once, by `finalize` (a
            // walk of its nested attributes), and read from its header after.
            while let Some((_, msg)) = requests.peek_mut() {
                msg.finalize();
                let len = msg.header.length as usize;
                if !out.is_empty() && out.len() + len > max_send {
                    break;
                }
                let Some((index, mut msg)) = requests.next() else {
                    break;
                };
                let seq = self.next_seq();
                msg.header.flags |= NLM_F_REQUEST;
                msg.header.flags &= !NLM_F_ACK;
                msg.header.sequence_number = seq;
                let start = out.len();
                out.resize(start + len, 0);
                msg.serialize(&mut out[start..]);
                in_flight.insert(seq, index);
                last = (start, seq);
                if in_flight.len() >= self.max_in_flight {
                    break;
                }
            }
            let (last_start, barrier) = last;
            let mut header = NetlinkBuffer::new(&mut out[last_start..]);
            let flags = header.flags();
            header.set_flags(flags | NLM_F_ACK);
            if let Err(e) = self.send(&out) {
                // Nothing of this chunk reached the kernel.
                for index in in_flight.into_values() {
                    results[index] = Some(Err(io::Error::new(e.kind(), e.to_string())));
                }
                continue;
            }
            self.collect_acks::<I>(barrier, &mut in_flight, &mut results)?;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("no acknowledgement"))))
            .collect())
    }

    /// Reads replies until the acknowledgement of `barrier`, the chunk's
    /// last request: the kernel has then answered every earlier request that
    /// failed, and the others succeeded.
    fn collect_acks<I>(
        &mut self,
        barrier: u32,
        in_flight: &mut HashMap<u32, usize>,
        results: &mut [Option<io::Result<()>>],
    ) -> io::Result<()>
    where
        I: NetlinkDeserializable + Debug,
    {
        while !in_flight.is_empty() {
            let mut done = false;
            let received = self.recv::<I, _>(0, |seq, reply| {
                if let Reply::Ack(code) = reply {
                    if let Some(index) = in_flight.remove(&seq) {
                        results[index] = Some(errno_result(code));
                    }
                    done |= seq == barrier;
                }
            });
            match received {
                Ok(()) if done => {
                    for index in in_flight.drain().map(|(_, i)| i) {
                        results[index] = Some(Ok(()));
                    }
                }
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                    // Some replies were dropped: the kernel has
                    // processed the whole chunk already, so read what is left
                    // and report the rest as lost; send smaller chunks after.
                    while self
                        .recv::<I, _>(libc_flags::MSG_DONTWAIT, |seq, reply| {
                            if let Reply::Ack(code) = reply {
                                if let Some(index) = in_flight.remove(&seq) {
                                    results[index] = Some(errno_result(code));
                                }
                            }
                        })
                        .is_ok()
                    {}
                    for index in in_flight.drain().map(|(_, i)| i) {
                        results[index] =
                            Some(Err(io::Error::from_raw_os_error(nix::libc::ENOBUFS)));
                    }
                    self.max_in_flight = (self.max_in_flight / 2).max(1);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One request with `NLM_F_ACK` whose reply is data (a `GET`): returns
    /// the data messages.
    pub fn request<I>(&mut self, mut msg: NetlinkMessage<I>) -> io::Result<Vec<I>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
    {
        let seq = self.next_seq();
        msg.header.flags |= NLM_F_REQUEST | NLM_F_ACK;
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut out = vec![0; msg.header.length as usize];
        msg.serialize(&mut out);
        self.send(&out)?;
        let mut data = Vec::new();
        let mut done: Option<i32> = None;
        while done.is_none() {
            self.recv::<I, _>(0, |s, reply| {
                if s != seq {
                    return;
                }
                match reply {
                    Reply::Data(m) => data.push(m),
                    Reply::Ack(code) | Reply::Done(code) => done = Some(code),
                }
            })?;
        }
        errno_result(done.unwrap_or(0)).map(|()| data)
    }

    /// A single dump.
    pub fn dump<I>(&mut self, msg: NetlinkMessage<I>) -> io::Result<Vec<I>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
    {
        self.dumps(vec![msg], 1)
            .pop()
            .unwrap_or_else(|| Err(io::Error::other("no dump result")))
    }

    /// Several dumps, up to `window` of them written per `sendmsg`. A dump
    /// cannot start while another runs on the socket (`EBUSY`): those are
    /// sent again in the next round. Returns each dump's result in order.
    pub fn dumps<I>(
        &mut self,
        requests: Vec<NetlinkMessage<I>>,
        window: usize,
    ) -> Vec<io::Result<Vec<I>>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
    {
        self.dumps_into(requests, window, |_, replies| Ok(replies))
    }

    /// [`Self::dumps`], each dump's replies handed to `convert` (with the
    /// request's index) as soon as that dump is complete: only the
    /// converted results are kept, not every dump's messages at once.
    pub fn dumps_into<I, T>(
        &mut self,
        requests: Vec<NetlinkMessage<I>>,
        window: usize,
        convert: impl FnMut(usize, Vec<I>) -> io::Result<T>,
    ) -> Vec<io::Result<T>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
    {
        self.dumps_each(requests, window, |_, reply| Ok(Some(reply)), convert)
    }

    /// One dump, each reply handed to `each` as it is read: only what
    /// `each` keeps of a message (`Some`) is held until the dump ends, not
    /// the messages (a dump of 10,000 virtual servers parsed whole was
    /// about 12 MB at once). The first error of `each` is the dump's.
    pub fn dump_each<I, E>(
        &mut self,
        request: NetlinkMessage<I>,
        each: impl FnMut(I) -> io::Result<Option<E>>,
    ) -> io::Result<Vec<E>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
    {
        let mut each = each;
        self.dumps_each(vec![request], 1, |_, reply| each(reply), |_, kept| Ok(kept))
            .pop()
            .unwrap_or_else(|| Err(io::Error::other("no dump result")))
    }

    /// [`Self::dumps_into`], each reply first handed to `each` (with the
    /// request's index) as it is read, and what `each` keeps of the dump's
    /// replies then to `convert`. A dump sent again (`EBUSY`, an overrun)
    /// starts over from nothing kept.
    pub fn dumps_each<I, E, T>(
        &mut self,
        requests: Vec<NetlinkMessage<I>>,
        window: usize,
        mut each: impl FnMut(usize, I) -> io::Result<Option<E>>,
        mut convert: impl FnMut(usize, Vec<E>) -> io::Result<T>,
    ) -> Vec<io::Result<T>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
    {
        let max_window = window.max(1);
        let mut window = max_window;
        let mut results: Vec<Option<io::Result<T>>> = Vec::with_capacity(requests.len());
        results.resize_with(requests.len(), || None);
        let mut requests: Vec<Option<NetlinkMessage<I>>> = requests.into_iter().map(Some).collect();
        let mut queue: VecDeque<usize> = (0..requests.len()).collect();
        let mut idle_rounds = 0;
        let mut out = Vec::new();
        while !queue.is_empty() {
            out.clear();
            // Per dump in flight: its index, and what `each` kept so far
            // (or its first error).
            let mut in_flight: HashMap<u32, (usize, io::Result<Vec<E>>)> = HashMap::new();
            while in_flight.len() < window && out.len() + 1024 < self.max_send {
                let Some(index) = queue.pop_front() else {
                    break;
                };
                let Some(msg) = requests[index].as_mut() else {
                    continue;
                };
                let seq = self.next_seq();
                msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
                msg.header.sequence_number = seq;
                msg.finalize();
                let start = out.len();
                out.resize(start + msg.header.length as usize, 0);
                msg.serialize(&mut out[start..]);
                in_flight.insert(seq, (index, Ok(Vec::new())));
            }
            let sent = in_flight.len();
            if let Err(e) = self.send(&out) {
                for (index, _) in in_flight.into_values() {
                    results[index] = Some(Err(io::Error::new(e.kind(), e.to_string())));
                }
                continue;
            }
            let mut retry = Vec::new();
            let mut completed = 0;
            while !in_flight.is_empty() {
                let received = self.recv::<I, _>(0, |seq, reply| {
                    let Some((index, kept)) = in_flight.get_mut(&seq) else {
                        return;
                    };
                    let code = match reply {
                        Reply::Data(m) => {
                            if let Ok(items) = kept {
                                match each(*index, m) {
                                    Ok(Some(item)) => items.push(item),
                                    Ok(None) => {}
                                    Err(e) => *kept = Err(e),
                                }
                            }
                            return;
                        }
                        Reply::Done(code) | Reply::Ack(code) => code,
                    };
                    let Some((index, kept)) = in_flight.remove(&seq) else {
                        return;
                    };
                    let busy = [nix::libc::EBUSY, nix::libc::ENOBUFS];
                    if busy.contains(&-code) {
                        retry.push(index);
                    } else {
                        completed += 1;
                        results[index] = Some(
                            errno_result(code)
                                .and(kept)
                                .and_then(|kept| convert(index, kept)),
                        );
                    }
                });
                match received {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                        // A dump's output was dropped: which one is unknown,
                        // so everything in flight is dumped again.
                        self.drain::<I>();
                        retry.extend(in_flight.drain().map(|(_, (index, _))| index));
                    }
                    Err(e) => {
                        for (index, _) in in_flight.drain().map(|(_, v)| v) {
                            results[index] = Some(Err(io::Error::new(e.kind(), e.to_string())));
                        }
                    }
                }
            }
            retry.sort_unstable();
            for index in retry.into_iter().rev() {
                queue.push_front(index);
            }
            // After a collision, send as many as went through at once: the
            // empty dumps before the first one that had to wait for a read.
            window = if completed < sent {
                completed.clamp(1, max_window)
            } else {
                (window * 2).min(max_window)
            };
            idle_rounds = if completed == 0 { idle_rounds + 1 } else { 0 };
            if idle_rounds > MAX_IDLE_ROUNDS {
                for index in queue.drain(..) {
                    results[index] = Some(Err(io::Error::from_raw_os_error(nix::libc::EBUSY)));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("no dump result"))))
            .collect()
    }
}

fn errno_result(code: i32) -> io::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(
            code.checked_neg().unwrap_or(i32::MAX),
        ))
    }
}

/// `recv` flags, by name.
mod libc_flags {
    pub type Flags = nix::libc::c_int;
    pub const MSG_DONTWAIT: Flags = nix::libc::MSG_DONTWAIT;
    pub const MSG_TRUNC: Flags = nix::libc::MSG_TRUNC;
}

/// A message ready to send: `payload` with an empty header (the socket fills
/// in flags and sequence number).
pub(crate) fn message<I>(payload: I, flags: u16) -> NetlinkMessage<I>
where
    I: NetlinkSerializable,
    NetlinkPayload<I>: From<I>,
{
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    NetlinkMessage::new(header, NetlinkPayload::from(payload))
}
