//! rtnetlink link and address messages as the kernel dumps them, through
//! netlink-packet-route and then what kube-ipvs reads of them: the link
//! (`Link::from_message`) and the address (`address::address_of`).
#![no_main]

use kube_ipvs_netlink::address::address_of;
use kube_ipvs_netlink::link::Link;
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data) else {
        return;
    };
    match message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
            let _ = Link::from_message(&link);
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(address)) => {
            let _ = address_of(&address);
        }
        _ => {}
    }
});
