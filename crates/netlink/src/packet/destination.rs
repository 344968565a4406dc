//! `IPVS_DEST_ATTR_*`: the attributes nested in `IPVS_CMD_ATTR_DEST`.

use netlink_packet_core::{
    emit_u16, emit_u16_be, emit_u32, parse_u16, parse_u16_be, parse_u32, parse_u8, DecodeError,
    DefaultNla, ErrorContext, Nla, NlaBuffer, Parseable,
};

use super::stats::StatsAttr;
use super::{emit_nested, nested_len, parse_nested, InetAddr};

/// `IPVS_DEST_ATTR_ADDR`.
pub const IPVS_DEST_ATTR_ADDR: u16 = 1;
/// `IPVS_DEST_ATTR_PORT`.
pub const IPVS_DEST_ATTR_PORT: u16 = 2;
/// `IPVS_DEST_ATTR_FWD_METHOD`.
pub const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
/// `IPVS_DEST_ATTR_WEIGHT`.
pub const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
/// `IPVS_DEST_ATTR_U_THRESH`.
pub const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
/// `IPVS_DEST_ATTR_L_THRESH`.
pub const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
/// `IPVS_DEST_ATTR_ACTIVE_CONNS`.
pub const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
/// `IPVS_DEST_ATTR_INACT_CONNS`.
pub const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
/// `IPVS_DEST_ATTR_PERSIST_CONNS`.
pub const IPVS_DEST_ATTR_PERSIST_CONNS: u16 = 9;
/// `IPVS_DEST_ATTR_STATS`.
pub const IPVS_DEST_ATTR_STATS: u16 = 10;
/// `IPVS_DEST_ATTR_ADDR_FAMILY`.
pub const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;
/// `IPVS_DEST_ATTR_STATS64`.
pub const IPVS_DEST_ATTR_STATS64: u16 = 12;
/// `IPVS_DEST_ATTR_TUN_TYPE`.
pub const IPVS_DEST_ATTR_TUN_TYPE: u16 = 13;
/// `IPVS_DEST_ATTR_TUN_PORT`.
pub const IPVS_DEST_ATTR_TUN_PORT: u16 = 14;
/// `IPVS_DEST_ATTR_TUN_FLAGS`.
pub const IPVS_DEST_ATTR_TUN_FLAGS: u16 = 15;

/// One `IPVS_DEST_ATTR_*` attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestAttr {
    /// `IPVS_DEST_ATTR_ADDR`: the real server's address (`union nf_inet_addr`).
    Addr(InetAddr),
    /// `IPVS_DEST_ATTR_PORT` (big-endian on the wire).
    Port(u16),
    /// `IPVS_DEST_ATTR_FWD_METHOD`: `IP_VS_CONN_F_*` forwarding bits.
    FwdMethod(u32),
    /// `IPVS_DEST_ATTR_WEIGHT`.
    Weight(u32),
    /// `IPVS_DEST_ATTR_U_THRESH`.
    UThresh(u32),
    /// `IPVS_DEST_ATTR_L_THRESH`.
    LThresh(u32),
    /// `IPVS_DEST_ATTR_ACTIVE_CONNS`.
    ActiveConns(u32),
    /// `IPVS_DEST_ATTR_INACT_CONNS`.
    InactConns(u32),
    /// `IPVS_DEST_ATTR_PERSIST_CONNS`.
    PersistConns(u32),
    /// `IPVS_DEST_ATTR_STATS`.
    Stats(Vec<StatsAttr>),
    /// `IPVS_DEST_ATTR_ADDR_FAMILY`: the destination's own family, which may
    /// differ from the service's (IPv6 real servers behind an IPv4 tunnel VIP).
    AddrFamily(u16),
    /// `IPVS_DEST_ATTR_STATS64`.
    Stats64(Vec<StatsAttr>),
    /// `IPVS_DEST_ATTR_TUN_TYPE`: `IP_VS_CONN_F_TUNNEL_TYPE_*`.
    TunType(u8),
    /// `IPVS_DEST_ATTR_TUN_PORT` (big-endian on the wire).
    TunPort(u16),
    /// `IPVS_DEST_ATTR_TUN_FLAGS`: `IP_VS_TUNNEL_ENCAP_FLAG_*`.
    TunFlags(u16),
    /// Anything else.
    Other(DefaultNla),
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(_) => InetAddr::LEN,
            DestAttr::Port(_) | DestAttr::AddrFamily(_) | DestAttr::TunPort(_) => 2,
            DestAttr::TunFlags(_) => 2,
            DestAttr::TunType(_) => 1,
            DestAttr::FwdMethod(_)
            | DestAttr::Weight(_)
            | DestAttr::UThresh(_)
            | DestAttr::LThresh(_)
            | DestAttr::ActiveConns(_)
            | DestAttr::InactConns(_)
            | DestAttr::PersistConns(_) => 4,
            DestAttr::Stats(a) | DestAttr::Stats64(a) => nested_len(a),
            DestAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => IPVS_DEST_ATTR_ADDR,
            DestAttr::Port(_) => IPVS_DEST_ATTR_PORT,
            DestAttr::FwdMethod(_) => IPVS_DEST_ATTR_FWD_METHOD,
            DestAttr::Weight(_) => IPVS_DEST_ATTR_WEIGHT,
            DestAttr::UThresh(_) => IPVS_DEST_ATTR_U_THRESH,
            DestAttr::LThresh(_) => IPVS_DEST_ATTR_L_THRESH,
            DestAttr::ActiveConns(_) => IPVS_DEST_ATTR_ACTIVE_CONNS,
            DestAttr::InactConns(_) => IPVS_DEST_ATTR_INACT_CONNS,
            DestAttr::PersistConns(_) => IPVS_DEST_ATTR_PERSIST_CONNS,
            // The kernel opens the counter nests without NLA_F_NESTED
            // (nla_nest_start_noflag); so do we, to match its bytes.
            DestAttr::Stats(_) => IPVS_DEST_ATTR_STATS,
            DestAttr::AddrFamily(_) => IPVS_DEST_ATTR_ADDR_FAMILY,
            DestAttr::Stats64(_) => IPVS_DEST_ATTR_STATS64,
            DestAttr::TunType(_) => IPVS_DEST_ATTR_TUN_TYPE,
            DestAttr::TunPort(_) => IPVS_DEST_ATTR_TUN_PORT,
            DestAttr::TunFlags(_) => IPVS_DEST_ATTR_TUN_FLAGS,
            DestAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        // Each arm writes exactly `value_len` bytes into a buffer of that size.
        let _ = match self {
            DestAttr::Addr(a) => {
                buffer.copy_from_slice(&a.0);
                Ok(())
            }
            DestAttr::Port(v) | DestAttr::TunPort(v) => emit_u16_be(buffer, *v),
            DestAttr::AddrFamily(v) | DestAttr::TunFlags(v) => emit_u16(buffer, *v),
            DestAttr::TunType(v) => {
                buffer[0] = *v;
                Ok(())
            }
            DestAttr::FwdMethod(v)
            | DestAttr::Weight(v)
            | DestAttr::UThresh(v)
            | DestAttr::LThresh(v)
            | DestAttr::ActiveConns(v)
            | DestAttr::InactConns(v)
            | DestAttr::PersistConns(v) => emit_u32(buffer, *v),
            DestAttr::Stats(a) | DestAttr::Stats64(a) => {
                emit_nested(buffer, a);
                Ok(())
            }
            DestAttr::Other(nla) => {
                nla.emit_value(buffer);
                Ok(())
            }
        };
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DestAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        let kind = buf.kind();
        let parse = || -> Result<Self, DecodeError> {
            Ok(match kind {
                IPVS_DEST_ATTR_ADDR => DestAttr::Addr(InetAddr::parse(v)?),
                IPVS_DEST_ATTR_PORT => DestAttr::Port(parse_u16_be(v)?),
                IPVS_DEST_ATTR_FWD_METHOD => DestAttr::FwdMethod(parse_u32(v)?),
                IPVS_DEST_ATTR_WEIGHT => DestAttr::Weight(parse_u32(v)?),
                IPVS_DEST_ATTR_U_THRESH => DestAttr::UThresh(parse_u32(v)?),
                IPVS_DEST_ATTR_L_THRESH => DestAttr::LThresh(parse_u32(v)?),
                IPVS_DEST_ATTR_ACTIVE_CONNS => DestAttr::ActiveConns(parse_u32(v)?),
                IPVS_DEST_ATTR_INACT_CONNS => DestAttr::InactConns(parse_u32(v)?),
                IPVS_DEST_ATTR_PERSIST_CONNS => DestAttr::PersistConns(parse_u32(v)?),
                IPVS_DEST_ATTR_STATS => DestAttr::Stats(parse_nested(v)?),
                IPVS_DEST_ATTR_ADDR_FAMILY => DestAttr::AddrFamily(parse_u16(v)?),
                IPVS_DEST_ATTR_STATS64 => DestAttr::Stats64(parse_nested(v)?),
                IPVS_DEST_ATTR_TUN_TYPE => DestAttr::TunType(parse_u8(v)?),
                IPVS_DEST_ATTR_TUN_PORT => DestAttr::TunPort(parse_u16_be(v)?),
                IPVS_DEST_ATTR_TUN_FLAGS => DestAttr::TunFlags(parse_u16(v)?),
                _ => DestAttr::Other(DefaultNla::parse(buf)?),
            })
        };
        parse().with_context(|| format!("IPVS_DEST_ATTR {kind}"))
    }
}
