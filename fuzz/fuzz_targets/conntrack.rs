//! A ctnetlink dump datagram: its messages split and parsed
//! (`packet::conntrack::messages`), each entry reduced to a flow
//! (`parse_flow`), and the delete message of each flow emitted.
#![no_main]

use kube_ipvs_netlink::packet::conntrack::{delete_message, messages, parse_flow};
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::{Emitable, NetlinkPayload};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};

fuzz_target!(|data: &[u8]| {
    for message in messages(data) {
        let Ok(message) = message else { continue };
        if let NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)),
            ..
        }) = message.payload
        {
            if let Some(flow) = parse_flow(&attributes) {
                let delete = delete_message(&flow);
                let mut bytes = vec![0; delete.buffer_len()];
                delete.emit(&mut bytes);
            }
        }
    }
});
