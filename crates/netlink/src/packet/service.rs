//! `IPVS_SVC_ATTR_*`: the attributes nested in `IPVS_CMD_ATTR_SERVICE`.

use netlink_packet_core::{
    emit_u16, emit_u16_be, emit_u32, parse_u16, parse_u16_be, parse_u32, DecodeError, DefaultNla,
    ErrorContext, Nla, NlaBuffer, Parseable,
};

use super::stats::StatsAttr;
use super::{emit_nested, emit_string, nested_len, parse_nested, parse_string, InetAddr};

/// `IPVS_SVC_ATTR_AF`.
pub const IPVS_SVC_ATTR_AF: u16 = 1;
/// `IPVS_SVC_ATTR_PROTOCOL`.
pub const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
/// `IPVS_SVC_ATTR_ADDR`.
pub const IPVS_SVC_ATTR_ADDR: u16 = 3;
/// `IPVS_SVC_ATTR_PORT`.
pub const IPVS_SVC_ATTR_PORT: u16 = 4;
/// `IPVS_SVC_ATTR_FWMARK`.
pub const IPVS_SVC_ATTR_FWMARK: u16 = 5;
/// `IPVS_SVC_ATTR_SCHED_NAME`.
pub const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
/// `IPVS_SVC_ATTR_FLAGS`.
pub const IPVS_SVC_ATTR_FLAGS: u16 = 7;
/// `IPVS_SVC_ATTR_TIMEOUT`.
pub const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
/// `IPVS_SVC_ATTR_NETMASK`.
pub const IPVS_SVC_ATTR_NETMASK: u16 = 9;
/// `IPVS_SVC_ATTR_STATS`.
pub const IPVS_SVC_ATTR_STATS: u16 = 10;
/// `IPVS_SVC_ATTR_PE_NAME`.
pub const IPVS_SVC_ATTR_PE_NAME: u16 = 11;
/// `IPVS_SVC_ATTR_STATS64`.
pub const IPVS_SVC_ATTR_STATS64: u16 = 12;

/// `struct ip_vs_flags`: which flags to set (`flags`) among those to change
/// (`mask`). The kernel reports `mask` as all ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagsMask {
    /// The flag values (`IP_VS_SVC_F_*`).
    pub flags: u32,
    /// Which flags the request changes.
    pub mask: u32,
}

/// One `IPVS_SVC_ATTR_*` attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceAttr {
    /// `IPVS_SVC_ATTR_AF`: `AF_INET` or `AF_INET6`.
    Af(u16),
    /// `IPVS_SVC_ATTR_PROTOCOL`: an IPPROTO number.
    Protocol(u16),
    /// `IPVS_SVC_ATTR_ADDR`: the virtual address (`union nf_inet_addr`).
    Addr(InetAddr),
    /// `IPVS_SVC_ATTR_PORT` (big-endian on the wire).
    Port(u16),
    /// `IPVS_SVC_ATTR_FWMARK`.
    Fwmark(u32),
    /// `IPVS_SVC_ATTR_SCHED_NAME`.
    SchedName(String),
    /// `IPVS_SVC_ATTR_FLAGS`.
    Flags(FlagsMask),
    /// `IPVS_SVC_ATTR_TIMEOUT`: persistence timeout in seconds.
    Timeout(u32),
    /// `IPVS_SVC_ATTR_NETMASK`, raw: the kernel stores it in a `__be32` and
    /// reads it as a network-order mask for IPv4 but as a host-order prefix
    /// length for IPv6, so the bytes only mean something with the family.
    Netmask([u8; 4]),
    /// `IPVS_SVC_ATTR_STATS`.
    Stats(Vec<StatsAttr>),
    /// `IPVS_SVC_ATTR_PE_NAME`.
    PeName(String),
    /// `IPVS_SVC_ATTR_STATS64`.
    Stats64(Vec<StatsAttr>),
    /// Anything else.
    Other(DefaultNla),
}

impl Nla for ServiceAttr {
    fn value_len(&self) -> usize {
        match self {
            ServiceAttr::Af(_) | ServiceAttr::Protocol(_) | ServiceAttr::Port(_) => 2,
            ServiceAttr::Addr(_) => InetAddr::LEN,
            ServiceAttr::Fwmark(_) | ServiceAttr::Timeout(_) | ServiceAttr::Netmask(_) => 4,
            ServiceAttr::SchedName(s) | ServiceAttr::PeName(s) => s.len() + 1,
            ServiceAttr::Flags(_) => 8,
            ServiceAttr::Stats(a) | ServiceAttr::Stats64(a) => nested_len(a),
            ServiceAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            ServiceAttr::Af(_) => IPVS_SVC_ATTR_AF,
            ServiceAttr::Protocol(_) => IPVS_SVC_ATTR_PROTOCOL,
            ServiceAttr::Addr(_) => IPVS_SVC_ATTR_ADDR,
            ServiceAttr::Port(_) => IPVS_SVC_ATTR_PORT,
            ServiceAttr::Fwmark(_) => IPVS_SVC_ATTR_FWMARK,
            ServiceAttr::SchedName(_) => IPVS_SVC_ATTR_SCHED_NAME,
            ServiceAttr::Flags(_) => IPVS_SVC_ATTR_FLAGS,
            ServiceAttr::Timeout(_) => IPVS_SVC_ATTR_TIMEOUT,
            ServiceAttr::Netmask(_) => IPVS_SVC_ATTR_NETMASK,
            // The kernel opens the counter nests without NLA_F_NESTED
            // (nla_nest_start_noflag); so do we, to match its bytes.
            ServiceAttr::Stats(_) => IPVS_SVC_ATTR_STATS,
            ServiceAttr::PeName(_) => IPVS_SVC_ATTR_PE_NAME,
            ServiceAttr::Stats64(_) => IPVS_SVC_ATTR_STATS64,
            ServiceAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        // Each arm writes exactly `value_len` bytes into a buffer of that size.
        let _ = match self {
            ServiceAttr::Af(v) | ServiceAttr::Protocol(v) => emit_u16(buffer, *v),
            ServiceAttr::Port(v) => emit_u16_be(buffer, *v),
            ServiceAttr::Fwmark(v) | ServiceAttr::Timeout(v) => emit_u32(buffer, *v),
            ServiceAttr::Addr(a) => {
                buffer.copy_from_slice(&a.0);
                Ok(())
            }
            ServiceAttr::Netmask(b) => {
                buffer.copy_from_slice(b);
                Ok(())
            }
            ServiceAttr::SchedName(s) | ServiceAttr::PeName(s) => {
                emit_string(buffer, s);
                Ok(())
            }
            ServiceAttr::Flags(f) => {
                emit_u32(&mut buffer[..4], f.flags).and_then(|_| emit_u32(&mut buffer[4..], f.mask))
            }
            ServiceAttr::Stats(a) | ServiceAttr::Stats64(a) => {
                emit_nested(buffer, a);
                Ok(())
            }
            ServiceAttr::Other(nla) => {
                nla.emit_value(buffer);
                Ok(())
            }
        };
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for ServiceAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        let kind = buf.kind();
        let parse = || -> Result<Self, DecodeError> {
            Ok(match kind {
                IPVS_SVC_ATTR_AF => ServiceAttr::Af(parse_u16(v)?),
                IPVS_SVC_ATTR_PROTOCOL => ServiceAttr::Protocol(parse_u16(v)?),
                IPVS_SVC_ATTR_ADDR => ServiceAttr::Addr(InetAddr::parse(v)?),
                IPVS_SVC_ATTR_PORT => ServiceAttr::Port(parse_u16_be(v)?),
                IPVS_SVC_ATTR_FWMARK => ServiceAttr::Fwmark(parse_u32(v)?),
                IPVS_SVC_ATTR_SCHED_NAME => ServiceAttr::SchedName(parse_string(v)?),
                IPVS_SVC_ATTR_FLAGS => match (v.get(..4), v.get(4..8)) {
                    (Some(flags), Some(mask)) if v.len() == 8 => ServiceAttr::Flags(FlagsMask {
                        flags: parse_u32(flags)?,
                        mask: parse_u32(mask)?,
                    }),
                    _ => return Err(DecodeError::invalid_number(8, v.len())),
                },
                IPVS_SVC_ATTR_TIMEOUT => ServiceAttr::Timeout(parse_u32(v)?),
                IPVS_SVC_ATTR_NETMASK => ServiceAttr::Netmask(
                    v.try_into()
                        .map_err(|_| DecodeError::invalid_number(4, v.len()))?,
                ),
                IPVS_SVC_ATTR_STATS => ServiceAttr::Stats(parse_nested(v)?),
                IPVS_SVC_ATTR_PE_NAME => ServiceAttr::PeName(parse_string(v)?),
                IPVS_SVC_ATTR_STATS64 => ServiceAttr::Stats64(parse_nested(v)?),
                _ => ServiceAttr::Other(DefaultNla::parse(buf)?),
            })
        };
        parse().with_context(|| format!("IPVS_SVC_ATTR {kind}"))
    }
}
