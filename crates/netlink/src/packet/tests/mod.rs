//! Codec tests: captured kernel and `ipvsadm` bytes in both directions, and
//! property round trips; and the ctnetlink flows and messages.

mod captures;
mod conntrack;
mod roundtrip;

use netlink_packet_core::{Emitable, ParseableParametrized};
use netlink_packet_generic::GenlMessage;

use super::IpvsMessage;

/// The family id the capturing kernel gave `IPVS` (any works for parsing).
const FAMILY: u16 = 0x20;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Parses a generic-netlink payload (genl header and attributes).
fn parse(raw: &[u8]) -> IpvsMessage {
    GenlMessage::<IpvsMessage>::parse_with_param(raw, FAMILY)
        .expect("parse")
        .payload
}

/// Emits a message as a generic-netlink payload.
fn emit(msg: &IpvsMessage) -> Vec<u8> {
    let genl = GenlMessage::from_payload(msg.clone());
    let mut buf = vec![0; genl.buffer_len()];
    genl.emit(&mut buf);
    buf
}
