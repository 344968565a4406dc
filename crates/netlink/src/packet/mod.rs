//! The sans-IO IPVS generic-netlink codec: messages and attributes that
//! implement `Emitable` / `Parseable`, after the kernel's
//! `include/uapi/linux/ip_vs.h`. Unknown attributes parse into `Other`.
//!
//! - [`message`] holds [`IpvsMessage`], commands and top-level attributes.
//! - [`service`] holds `IPVS_SVC_ATTR_*`.
//! - [`destination`] holds `IPVS_DEST_ATTR_*`.
//! - [`stats`] holds `IPVS_STATS_ATTR_*`.
//!
//! Beside it, [`conntrack`] holds the sans-IO half of ctnetlink: conntrack
//! entries as flows, over `netlink-packet-netfilter`'s messages.

pub mod conntrack;
pub mod destination;
pub mod message;
pub mod service;
pub mod stats;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{DecodeError, Emitable, NlaBuffer, NlasIterator, Parseable};

pub use destination::DestAttr;
pub use message::{IpvsAttr, IpvsCommand, IpvsMessage};
pub use service::{FlagsMask, ServiceAttr};
pub use stats::{Counter, StatsAttr};

/// A `union nf_inet_addr` as IPVS carries it: always 16 bytes, an IPv4
/// address in the first 4 and zeros after. Which family it is comes from a
/// sibling attribute (`IPVS_SVC_ATTR_AF`, `IPVS_DEST_ATTR_ADDR_FAMILY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InetAddr(pub [u8; 16]);

impl InetAddr {
    /// The size on the wire.
    pub const LEN: usize = 16;

    /// The union holding `address`.
    pub fn from_ip(address: IpAddr) -> Self {
        let mut raw = [0u8; 16];
        match address {
            IpAddr::V4(a) => raw[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => raw = a.octets(),
        }
        InetAddr(raw)
    }

    /// The address, read as IPv4 (`ipv6 == false`) or IPv6.
    pub fn to_ip(self, ipv6: bool) -> IpAddr {
        if ipv6 {
            IpAddr::V6(Ipv6Addr::from(self.0))
        } else {
            IpAddr::V4(Ipv4Addr::new(self.0[0], self.0[1], self.0[2], self.0[3]))
        }
    }

    /// Reads the union; a shorter attribute (4 bytes) is zero-padded, as the
    /// kernel's `nla_memcpy` would.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        if payload.len() != 4 && payload.len() != Self::LEN {
            return Err(DecodeError::invalid_ip_address(payload.len()));
        }
        let mut raw = [0u8; 16];
        raw[..payload.len()].copy_from_slice(payload);
        Ok(InetAddr(raw))
    }
}

/// The summed length of nested attributes.
fn nested_len<A: netlink_packet_core::Nla>(attrs: &[A]) -> usize {
    attrs.buffer_len()
}

/// Emits nested attributes into a buffer of [`nested_len`] bytes.
fn emit_nested<A: netlink_packet_core::Nla>(buffer: &mut [u8], attrs: &[A]) {
    emit_all(buffer, attrs);
}

/// Writes attributes one after the other from the start of `buffer` (at
/// least their summed `buffer_len`); gives that length.
pub(crate) fn emit_all<A: netlink_packet_core::Nla>(buffer: &mut [u8], attrs: &[A]) -> usize {
    attrs
        .iter()
        .fold(0, |at, attr| at + emit_nla(&mut buffer[at..], attr))
}

/// Writes one attribute at the start of `buffer`, the same bytes as
/// `Nla::emit`, measuring its value once: `Nla::emit` measures it three
/// times and a slice's `emit` twice more, and each measure of a nest walks
/// its children. Gives the attribute's length with padding.
fn emit_nla<A: netlink_packet_core::Nla>(buffer: &mut [u8], attr: &A) -> usize {
    use netlink_packet_core::{NLA_ALIGNTO, NLA_HEADER_SIZE};
    let value_len = attr.value_len();
    let len = (NLA_HEADER_SIZE + value_len).next_multiple_of(NLA_ALIGNTO);
    let buffer = &mut buffer[..len];
    let mut nla = NlaBuffer::new(&mut *buffer);
    nla.set_kind(attr.kind());
    if attr.is_network_byteorder() {
        nla.set_network_byte_order_flag();
    }
    if attr.is_nested() {
        nla.set_nested_flag();
    }
    // An attribute's value is at most a page: its length fits.
    nla.set_length((NLA_HEADER_SIZE + value_len) as u16);
    attr.emit_value(nla.value_mut());
    buffer[NLA_HEADER_SIZE + value_len..].fill(0);
    len
}

/// Parses every attribute of a nest; a malformed one fails the nest.
fn parse_nested<'a, A>(payload: &'a [u8]) -> Result<Vec<A>, DecodeError>
where
    A: Parseable<NlaBuffer<&'a [u8]>>,
{
    NlasIterator::new(payload)
        .map(|nla| nla.and_then(|nla| A::parse(&nla)))
        .collect()
}

/// A NUL-terminated string (`NLA_NUL_STRING`), as the kernel and libnl write it.
fn emit_string(buffer: &mut [u8], s: &str) {
    let (text, nul) = buffer.split_at_mut(s.len());
    text.copy_from_slice(s.as_bytes());
    nul.fill(0);
}

/// A string without its NUL terminator(s).
fn parse_string(payload: &[u8]) -> Result<String, DecodeError> {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    String::from_utf8(payload[..end].to_vec()).map_err(DecodeError::from)
}
