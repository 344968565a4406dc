//! IPVS generic-netlink messages as the kernel sends them: a netlink message
//! (header, genl header, attributes) through the codec in
//! `kube_ipvs_netlink::packet`, then the dumped services and destinations
//! through `convert`; and the parsed message emitted and parsed again, which
//! must give back the attributes the codec knows (the unknown ones are
//! netlink-packet-core's `DefaultNla`, kept raw and never sent).
#![no_main]

use kube_ipvs_netlink::convert;
use kube_ipvs_netlink::model::AddressFamily;
use kube_ipvs_netlink::packet::{DestAttr, IpvsAttr, IpvsMessage, ServiceAttr, StatsAttr};
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_generic::GenlMessage;

fn known_stats(attrs: &[StatsAttr]) -> Vec<StatsAttr> {
    attrs
        .iter()
        .filter(|a| !matches!(a, StatsAttr::Other(_)))
        .cloned()
        .collect()
}

/// The message without the attributes the codec does not know.
fn known(message: &IpvsMessage) -> Vec<IpvsAttr> {
    message
        .attrs
        .iter()
        .filter_map(|attr| match attr {
            IpvsAttr::Service(attrs) => Some(IpvsAttr::Service(
                attrs
                    .iter()
                    .filter_map(|a| match a {
                        ServiceAttr::Other(_) => None,
                        ServiceAttr::Stats(s) => Some(ServiceAttr::Stats(known_stats(s))),
                        ServiceAttr::Stats64(s) => Some(ServiceAttr::Stats64(known_stats(s))),
                        a => Some(a.clone()),
                    })
                    .collect(),
            )),
            IpvsAttr::Dest(attrs) => Some(IpvsAttr::Dest(
                attrs
                    .iter()
                    .filter_map(|a| match a {
                        DestAttr::Other(_) => None,
                        DestAttr::Stats(s) => Some(DestAttr::Stats(known_stats(s))),
                        DestAttr::Stats64(s) => Some(DestAttr::Stats64(known_stats(s))),
                        a => Some(a.clone()),
                    })
                    .collect(),
            )),
            IpvsAttr::Other(_) | IpvsAttr::Daemon(_) => None,
            a => Some(a.clone()),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut message) = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(data) else {
        return;
    };
    let NetlinkPayload::InnerMessage(genl) = &message.payload else {
        return;
    };
    let mut family = AddressFamily::Inet;
    for attr in &genl.payload.attrs {
        match attr {
            IpvsAttr::Service(attrs) => {
                if let Ok(dumped) = convert::virtual_server(attrs) {
                    family = dumped.service.key.family();
                }
            }
            IpvsAttr::Dest(attrs) => {
                let _ = convert::real_server(attrs, family);
            }
            _ => {}
        }
    }
    let parsed = known(&genl.payload);
    // As the socket sends a message: the header's length from the payload.
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    let again = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(&bytes)
        .expect("an emitted message parses");
    if let NetlinkPayload::InnerMessage(again) = again.payload {
        assert_eq!(
            known(&again.payload),
            parsed,
            "emit then parse changed the message"
        );
    }
});
