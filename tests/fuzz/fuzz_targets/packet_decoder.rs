//! The packet decoder fed arbitrary bytes as each protocol version: it never panics,
//! consumes nothing while a packet is incomplete, and where mqttbytes (the test oracle)
//! decodes the same bytes too, both see the same kind of packet.

#![no_main]

use bytes::BytesMut;
use herald::protocol::{Decoder, Packet, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

const MAX_PACKET: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    for version in [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut decoder = Decoder::new(version, MAX_PACKET);
        if version == ProtocolVersion::V5 {
            decoder.allow_topic_aliases(10);
        }
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    let used = before.len() - buf.len();
                    compare_with_oracle(version, &before[..used], &packet);
                }
                Ok(None) => {
                    assert_eq!(buf, before, "an incomplete packet is left as it was");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});

/// Where mqttbytes decodes the packet's bytes as well, it names the same packet type.
fn compare_with_oracle(version: ProtocolVersion, bytes: &[u8], ours: &Packet) {
    let mut stream = BytesMut::from(bytes);
    let theirs = match version {
        ProtocolVersion::V31 => return,
        ProtocolVersion::V311 => mqttbytes::v4::read(&mut stream, MAX_PACKET)
            .ok()
            .map(|p| v4_name(&p)),
        ProtocolVersion::V5 => mqttbytes::v5::read(&mut stream, MAX_PACKET)
            .ok()
            .map(|p| v5_name(&p)),
    };
    if let Some(theirs) = theirs {
        assert_eq!(ours.name(), theirs, "{bytes:?}");
    }
}

/// The name of an mqttbytes packet of module `$v`, as `Packet::name` gives ours;
/// `$disconnect` matches its DISCONNECT (a unit variant in v4, not in v5).
macro_rules! oracle_name {
    ($name:ident, $v:ident, $disconnect:pat) => {
        fn $name(packet: &mqttbytes::$v::Packet) -> &'static str {
            use mqttbytes::$v::Packet as P;
            match packet {
                P::Connect(_) => "CONNECT",
                P::ConnAck(_) => "CONNACK",
                P::Publish(_) => "PUBLISH",
                P::PubAck(_) => "PUBACK",
                P::PubRec(_) => "PUBREC",
                P::PubRel(_) => "PUBREL",
                P::PubComp(_) => "PUBCOMP",
                P::Subscribe(_) => "SUBSCRIBE",
                P::SubAck(_) => "SUBACK",
                P::Unsubscribe(_) => "UNSUBSCRIBE",
                P::UnsubAck(_) => "UNSUBACK",
                P::PingReq => "PINGREQ",
                P::PingResp => "PINGRESP",
                $disconnect => "DISCONNECT",
            }
        }
    };
}

oracle_name!(v4_name, v4, P::Disconnect);
oracle_name!(v5_name, v5, P::Disconnect(_));
