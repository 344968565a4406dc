//! `IPVS_STATS_ATTR_*`: the counters nested in `IPVS_SVC_ATTR_STATS[64]` and
//! `IPVS_DEST_ATTR_STATS[64]`.

use netlink_packet_core::{
    emit_u32, emit_u64, parse_u32, parse_u64, DecodeError, DefaultNla, Nla, NlaBuffer, Parseable,
};

/// `IPVS_STATS_ATTR_CONNS`.
pub const IPVS_STATS_ATTR_CONNS: u16 = 1;
/// `IPVS_STATS_ATTR_INPKTS`.
pub const IPVS_STATS_ATTR_INPKTS: u16 = 2;
/// `IPVS_STATS_ATTR_OUTPKTS`.
pub const IPVS_STATS_ATTR_OUTPKTS: u16 = 3;
/// `IPVS_STATS_ATTR_INBYTES`.
pub const IPVS_STATS_ATTR_INBYTES: u16 = 4;
/// `IPVS_STATS_ATTR_OUTBYTES`.
pub const IPVS_STATS_ATTR_OUTBYTES: u16 = 5;
/// `IPVS_STATS_ATTR_CPS`.
pub const IPVS_STATS_ATTR_CPS: u16 = 6;
/// `IPVS_STATS_ATTR_INPPS`.
pub const IPVS_STATS_ATTR_INPPS: u16 = 7;
/// `IPVS_STATS_ATTR_OUTPPS`.
pub const IPVS_STATS_ATTR_OUTPPS: u16 = 8;
/// `IPVS_STATS_ATTR_INBPS`.
pub const IPVS_STATS_ATTR_INBPS: u16 = 9;
/// `IPVS_STATS_ATTR_OUTBPS`.
pub const IPVS_STATS_ATTR_OUTBPS: u16 = 10;

/// A counter value with the width it had on the wire: the legacy
/// `IPVS_*_ATTR_STATS` nest mixes u32 and u64 values, `STATS64` is all u64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A 4-byte value.
    U32(u32),
    /// An 8-byte value.
    U64(u64),
}

impl Counter {
    /// The value, widened.
    pub fn get(self) -> u64 {
        match self {
            Counter::U32(v) => u64::from(v),
            Counter::U64(v) => v,
        }
    }

    fn len(self) -> usize {
        match self {
            Counter::U32(_) => 4,
            Counter::U64(_) => 8,
        }
    }

    fn emit(self, buffer: &mut [u8]) {
        // Emitting into a buffer sized by `len` cannot fail.
        let _ = match self {
            Counter::U32(v) => emit_u32(buffer, v),
            Counter::U64(v) => emit_u64(buffer, v),
        };
    }

    fn parse(payload: &[u8]) -> Option<Counter> {
        match payload.len() {
            4 => parse_u32(payload).ok().map(Counter::U32),
            8 => parse_u64(payload).ok().map(Counter::U64),
            _ => None,
        }
    }
}

/// One `IPVS_STATS_ATTR_*` attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatsAttr {
    /// `IPVS_STATS_ATTR_CONNS`.
    Conns(Counter),
    /// `IPVS_STATS_ATTR_INPKTS`.
    InPkts(Counter),
    /// `IPVS_STATS_ATTR_OUTPKTS`.
    OutPkts(Counter),
    /// `IPVS_STATS_ATTR_INBYTES`.
    InBytes(Counter),
    /// `IPVS_STATS_ATTR_OUTBYTES`.
    OutBytes(Counter),
    /// `IPVS_STATS_ATTR_CPS`.
    Cps(Counter),
    /// `IPVS_STATS_ATTR_INPPS`.
    InPps(Counter),
    /// `IPVS_STATS_ATTR_OUTPPS`.
    OutPps(Counter),
    /// `IPVS_STATS_ATTR_INBPS`.
    InBps(Counter),
    /// `IPVS_STATS_ATTR_OUTBPS`.
    OutBps(Counter),
    /// `IPVS_STATS_ATTR_PAD`, a value of unexpected width, or anything newer.
    Other(DefaultNla),
}

impl StatsAttr {
    fn counter(&self) -> Option<(u16, Counter)> {
        Some(match self {
            StatsAttr::Conns(c) => (IPVS_STATS_ATTR_CONNS, *c),
            StatsAttr::InPkts(c) => (IPVS_STATS_ATTR_INPKTS, *c),
            StatsAttr::OutPkts(c) => (IPVS_STATS_ATTR_OUTPKTS, *c),
            StatsAttr::InBytes(c) => (IPVS_STATS_ATTR_INBYTES, *c),
            StatsAttr::OutBytes(c) => (IPVS_STATS_ATTR_OUTBYTES, *c),
            StatsAttr::Cps(c) => (IPVS_STATS_ATTR_CPS, *c),
            StatsAttr::InPps(c) => (IPVS_STATS_ATTR_INPPS, *c),
            StatsAttr::OutPps(c) => (IPVS_STATS_ATTR_OUTPPS, *c),
            StatsAttr::InBps(c) => (IPVS_STATS_ATTR_INBPS, *c),
            StatsAttr::OutBps(c) => (IPVS_STATS_ATTR_OUTBPS, *c),
            StatsAttr::Other(_) => return None,
        })
    }
}

impl Nla for StatsAttr {
    fn value_len(&self) -> usize {
        match (self, self.counter()) {
            (StatsAttr::Other(nla), _) => nla.value_len(),
            (_, Some((_, c))) => c.len(),
            (_, None) => 0,
        }
    }

    fn kind(&self) -> u16 {
        match (self, self.counter()) {
            (StatsAttr::Other(nla), _) => nla.kind(),
            (_, Some((kind, _))) => kind,
            (_, None) => 0,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match (self, self.counter()) {
            (StatsAttr::Other(nla), _) => nla.emit_value(buffer),
            (_, Some((_, c))) => c.emit(buffer),
            (_, None) => {}
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for StatsAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        let Some(c) = Counter::parse(value) else {
            return Ok(StatsAttr::Other(DefaultNla::parse(buf)?));
        };
        Ok(match buf.kind() {
            IPVS_STATS_ATTR_CONNS => StatsAttr::Conns(c),
            IPVS_STATS_ATTR_INPKTS => StatsAttr::InPkts(c),
            IPVS_STATS_ATTR_OUTPKTS => StatsAttr::OutPkts(c),
            IPVS_STATS_ATTR_INBYTES => StatsAttr::InBytes(c),
            IPVS_STATS_ATTR_OUTBYTES => StatsAttr::OutBytes(c),
            IPVS_STATS_ATTR_CPS => StatsAttr::Cps(c),
            IPVS_STATS_ATTR_INPPS => StatsAttr::InPps(c),
            IPVS_STATS_ATTR_OUTPPS => StatsAttr::OutPps(c),
            IPVS_STATS_ATTR_INBPS => StatsAttr::InBps(c),
            IPVS_STATS_ATTR_OUTBPS => StatsAttr::OutBps(c),
            _ => StatsAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}
