//! MQTT 5.0 conformance: see coverage.rs for how statements are named.
//!
//! Publishing: packet identifiers, the QoS 0/1/2 exchanges in both directions, DUP,
//! retained messages, topic names, the PUBLISH properties the broker forwards, message
//! expiry, topic aliases both ways, and the data representation rules (UTF-8 strings,
//! variable byte integers, fixed-header flags), each shown on the wire by MQTT 5.0
//! clients made of raw bytes (tests/common/v5). Absence is shown by a marker sent
//! after down the same path, or by waiting [`QUIET`].

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/v5/mod.rs"]
mod v5;

use std::collections::HashSet;
use std::time::Duration;

use common::{field, frame, TestBroker};
use v5::*;

/// A subscriber to `filter` at `qos` and a publisher, both connected.
async fn pair(broker: &TestBroker, filter: &str, qos: u8) -> (Client, Client) {
    let mut sub = Client::new(broker, "sub").await;
    assert_eq!(sub.subscribe(1, &[(filter, qos)]).await, vec![qos]);
    (sub, Client::new(broker, "pub").await)
}

fn users(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---- packet identifiers and acknowledgements ----

/// MQTT-2.2.1-5: PUBACK, PUBREC and PUBCOMP from the broker carry the packet id of the
/// PUBLISH or PUBREL they answer.
/// MQTT-3.3.4-1: the broker answers QoS 0 with nothing, QoS 1 with PUBACK, QoS 2 with
/// PUBREC (and PUBREL with PUBCOMP).
/// MQTT-4.3.2-4: the PUBACK comes once the broker owns the message: it is delivered.
/// MQTT-4.3.3-8: so does the PUBREC.
/// MQTT-4.3.3-11: PUBREL is answered by PUBCOMP with its packet id.
/// MQTT-3.4.2-1: the PUBACK's reason code is a defined one (0x00, here in the short form
/// 40 02 id).
/// MQTT-3.5.2-1: so is the PUBREC's (50 02 id).
/// MQTT-3.7.2-1: so is the PUBCOMP's (70 02 id).
#[tokio::test]
async fn publish_acknowledgements_echo_the_packet_id() {
    let broker = TestBroker::start().await;
    let (mut sub, mut publisher) = pair(&broker, "ack/#", 2).await;
    publisher
        .send(&Publish::new("ack/0", 0, b"zero").bytes())
        .await;
    publisher.ping().await;
    sub.expect_message("ack/0", b"zero").await;
    for pkid in [1u16, 0x1234, 0xffff] {
        publisher
            .send(&Publish::new("ack/1", 1, b"one").pkid(pkid).bytes())
            .await;
        let [hi, lo] = pkid.to_be_bytes();
        assert_eq!(
            publisher.raw.recv_frame().await,
            Some(vec![0x40, 0x02, hi, lo])
        );
        sub.expect_message("ack/1", b"one").await;
        publisher
            .send(&Publish::new("ack/2", 2, b"two").pkid(pkid).bytes())
            .await;
        assert_eq!(
            publisher.raw.recv_frame().await,
            Some(vec![0x50, 0x02, hi, lo])
        );
        sub.expect_message("ack/2", b"two").await;
        publisher.send(&ack(PUBREL, pkid)).await;
        assert_eq!(
            publisher.raw.recv_frame().await,
            Some(vec![0x70, 0x02, hi, lo])
        );
    }
}

/// MQTT-2.2.1-4: each QoS 1 and QoS 2 PUBLISH the broker sends has a non-zero packet id
/// not used by any other in flight to that client.
/// MQTT-4.3.2-1: a new QoS 1 message gets an unused packet id,
/// MQTT-4.3.2-2: and is sent with QoS 1 and DUP 0.
/// MQTT-4.3.3-1: a new QoS 2 message gets an unused packet id,
/// MQTT-4.3.3-2: and is sent with QoS 2 and DUP 0.
#[tokio::test]
async fn broker_publishes_carry_unused_non_zero_packet_ids() {
    let broker = TestBroker::start().await;
    let (mut sub, mut publisher) = pair(&broker, "ids/#", 2).await;
    for i in 0..10u16 {
        publisher
            .publish(&Publish::new("ids/1", 1, b"one").pkid(i + 1))
            .await;
        publisher
            .publish(&Publish::new("ids/2", 2, b"two").pkid(i + 100))
            .await;
    }
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let p = sub.expect_publish().await;
        let pkid = p.pkid.expect("QoS 1/2 PUBLISH has a packet id");
        assert!(pkid != 0);
        assert!(
            seen.insert(pkid),
            "packet id {pkid} used twice while in flight"
        );
        assert!(!p.dup, "{p:?}");
        let want = if p.topic == "ids/1" { 1 } else { 2 };
        assert_eq!(p.qos, want, "{p:?}");
    }
}

/// MQTT-4.3.2-3: a QoS 1 PUBLISH the broker sent stays unacknowledged until PUBACK: it
/// is resent on the next connection of the session, and no longer once acknowledged.
/// MQTT-4.4.0-1: it is resent with its original packet id on resumption, and never on
/// the connection it was sent on.
/// MQTT-3.3.1-1: the resent PUBLISH has DUP 1.
#[tokio::test]
async fn qos1_delivery_stays_unacknowledged_until_puback() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("q1", 60)).await;
    sub.subscribe(1, &[("q1/t", 1)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new("q1/t", 1, b"m")).await;
    let first = sub.expect_message("q1/t", b"m").await;
    assert!(!first.dup);
    sub.expect_nothing(Duration::from_millis(500)).await;
    sub.drop_connection().await;

    let (mut sub, _) = Client::connect(&broker, &Connect::resume("q1", 60)).await;
    let again = sub.expect_message("q1/t", b"m").await;
    assert_eq!(again.pkid, first.pkid);
    assert!(again.dup, "{again:?}");
    sub.complete(&again).await;
    sub.ping().await;
    sub.drop_connection().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("q1", 60)).await;
    sub.expect_nothing(QUIET).await;
}

/// MQTT-4.3.3-3: a QoS 2 PUBLISH the broker sent stays unacknowledged until PUBREC:
/// it is resent, same id, DUP 1, on the next connection.
/// MQTT-4.3.3-4: a PUBREC is answered with a PUBREL with the same packet id.
/// MQTT-4.3.3-5: that PUBREL stays unacknowledged until PUBCOMP: it is resent on the
/// next connection.
/// MQTT-4.3.3-6: once PUBREL was sent the PUBLISH is not resent.
/// MQTT-4.4.0-1: unacknowledged PUBLISH and PUBREL are resent with their original
/// packet ids on resumption.
/// MQTT-2.2.1-5: the PUBREL echoes the PUBLISH's packet id.
/// MQTT-3.6.2-1: the PUBREL's reason code is a defined one (0x00: 62 02 id).
#[tokio::test]
async fn qos2_delivery_resends_publish_then_pubrel() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("q2", 60)).await;
    sub.subscribe(1, &[("q2/t", 2)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new("q2/t", 2, b"m")).await;
    let first = sub.expect_message("q2/t", b"m").await;
    let pkid = first.pkid.unwrap();
    sub.drop_connection().await;

    let (mut sub, _) = Client::connect(&broker, &Connect::resume("q2", 60)).await;
    let again = sub.expect_message("q2/t", b"m").await;
    assert_eq!(again.pkid, Some(pkid));
    assert!(again.dup);
    sub.send(&ack(PUBREC, pkid)).await;
    let [hi, lo] = pkid.to_be_bytes();
    assert_eq!(sub.raw.recv_frame().await, Some(vec![0x62, 0x02, hi, lo]));
    sub.drop_connection().await;

    let (mut sub, _) = Client::connect(&broker, &Connect::resume("q2", 60)).await;
    let rel = sub.expect_ack(PUBREL, pkid).await;
    assert_eq!(rel.reason, SUCCESS);
    sub.send(&ack(PUBCOMP, pkid)).await;
    sub.expect_nothing(QUIET).await;
    sub.drop_connection().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("q2", 60)).await;
    sub.expect_nothing(QUIET).await;
}

/// MQTT-4.3.3-10: until PUBREL, a repeated QoS 2 PUBLISH with the same packet id gets
/// PUBREC again and is not delivered onwards a second time.
/// MQTT-4.3.3-12: after PUBCOMP the same packet id starts a new message.
/// MQTT-4.3.2-5: after PUBACK a QoS 1 PUBLISH with the same packet id is a new message,
/// even with DUP 1.
#[tokio::test]
async fn receiver_deduplicates_qos2_until_pubrel_only() {
    let broker = TestBroker::start().await;
    let (mut sub, mut publisher) = pair(&broker, "dd/#", 0).await;
    publisher
        .send(&Publish::new("dd/2", 2, b"a").pkid(9).bytes())
        .await;
    publisher.expect_ack(PUBREC, 9).await;
    publisher
        .send(&Publish::new("dd/2", 2, b"a").pkid(9).dup().bytes())
        .await;
    publisher.expect_ack(PUBREC, 9).await;
    publisher.send(&ack(PUBREL, 9)).await;
    publisher.expect_ack(PUBCOMP, 9).await;
    publisher
        .publish(&Publish::new("dd/2", 2, b"b").pkid(9))
        .await;
    sub.expect_message("dd/2", b"a").await;
    sub.expect_message("dd/2", b"b").await;

    publisher
        .publish(&Publish::new("dd/1", 1, b"c").pkid(7))
        .await;
    publisher
        .publish(&Publish::new("dd/1", 1, b"d").pkid(7).dup())
        .await;
    sub.expect_message("dd/1", b"c").await;
    sub.expect_message("dd/1", b"d").await;
    sub.expect_nothing(QUIET).await;
}

/// MQTT-3.7.2-1: a PUBREL for a packet id the broker does not know is answered with
/// PUBCOMP 0x92 (Packet Identifier not found), a defined PUBCOMP code.
/// MQTT-4.3.3-11: PUBCOMP carries the PUBREL's packet id.
/// MQTT-3.6.2-1: a PUBREC for an unknown packet id is answered with PUBREL 0x92, a
/// defined PUBREL code.
#[tokio::test]
async fn unknown_packet_ids_get_0x92() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "unknown").await;
    client.send(&ack(PUBREL, 77)).await;
    let comp = client.expect_ack(PUBCOMP, 77).await;
    assert_eq!(comp.reason, PACKET_IDENTIFIER_NOT_FOUND);
    client.send(&ack(PUBREC, 78)).await;
    let rel = client.expect_ack(PUBREL, 78).await;
    assert_eq!(rel.reason, PACKET_IDENTIFIER_NOT_FOUND);
    client.ping().await;
}

/// MQTT-4.4.0-2: a PUBLISH answered with an error PUBACK or PUBREC (0x80) is done: no
/// PUBREL follows the PUBREC, each frees its place in the client's Receive Maximum (1
/// here: the next message is sent at once), and neither is retransmitted on the next
/// connection, unlike a message left unacknowledged.
#[tokio::test]
async fn error_puback_or_pubrec_ends_the_delivery() {
    let broker = TestBroker::start().await;
    let connect = Connect::resume("refuser", 60).receive_maximum(1);
    let (mut sub, _) = Client::connect(&broker, &connect).await;
    sub.subscribe(1, &[("refuse/#", 2)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("refuse/1", 1, b"one").pkid(1))
        .await;
    publisher
        .publish(&Publish::new("refuse/2", 2, b"two").pkid(2))
        .await;
    publisher
        .publish(&Publish::new("refuse/3", 1, b"three").pkid(3))
        .await;

    let one = sub.expect_message("refuse/1", b"one").await;
    sub.expect_nothing(QUIET).await;
    sub.send(&ack_with(PUBACK, one.pkid.unwrap(), 0x80, &Props::new()))
        .await;
    let two = sub.expect_message("refuse/2", b"two").await;
    sub.send(&ack_with(PUBREC, two.pkid.unwrap(), 0x80, &Props::new()))
        .await;
    let three = sub.expect_message("refuse/3", b"three").await;
    sub.drop_connection().await;

    let (mut sub, ack) = Client::connect(&broker, &connect).await;
    assert!(ack.session_present);
    let resent = sub.expect_message("refuse/3", b"three").await;
    assert_eq!(resent.pkid, three.pkid);
    sub.complete(&resent).await;
    sub.expect_nothing(QUIET).await;
}

/// MQTT-4.3.3-13: the broker, receiving a QoS 2 message, completes the exchange even
/// after the message's expiry interval has passed: the PUBREL 1.5 s later (expiry
/// 1 s) is answered with PUBCOMP 0x00.
/// MQTT-4.3.3-7: the broker, sending a QoS 2 message, does not apply message expiry
/// once the PUBLISH was sent: unacknowledged, it is resent on the next connection after
/// its expiry interval, and the exchange completes.
#[tokio::test]
async fn qos2_exchange_ignores_message_expiry_once_started() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("q2x", 60)).await;
    sub.subscribe(1, &[("q2x/t", 2)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    let expiring = Props::new().u32(MESSAGE_EXPIRY_INTERVAL, 1);
    publisher
        .send(&Publish::new("q2x/t", 2, b"m").props(expiring).bytes())
        .await;
    publisher.expect_ack(PUBREC, 1).await;
    let first = sub.expect_message("q2x/t", b"m").await;
    sub.drop_connection().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    publisher.send(&ack(PUBREL, 1)).await;
    let comp = publisher.expect_ack(PUBCOMP, 1).await;
    assert_eq!(comp.reason, SUCCESS);

    let (mut sub, _) = Client::connect(&broker, &Connect::resume("q2x", 60)).await;
    let again = sub.expect_message("q2x/t", b"m").await;
    assert_eq!(again.pkid, first.pkid);
    assert!(again.dup);
    sub.complete(&again).await;
}

// ---- DUP and QoS ----

/// MQTT-3.3.1-3: the DUP flag of a PUBLISH the broker sends reflects only whether that
/// PUBLISH is a retransmission: a message received with DUP 1 goes out with DUP 0.
#[tokio::test]
async fn outgoing_dup_reflects_only_retransmission() {
    let broker = TestBroker::start().await;
    let (mut sub, mut publisher) = pair(&broker, "dup/#", 2).await;
    publisher
        .publish(&Publish::new("dup/1", 1, b"one").dup())
        .await;
    publisher
        .publish(&Publish::new("dup/2", 2, b"two").pkid(2).dup())
        .await;
    let one = sub.expect_message("dup/1", b"one").await;
    assert!(!one.dup);
    let two = sub.expect_message("dup/2", b"two").await;
    assert!(!two.dup);
}

/// MQTT-3.3.1-2: every QoS 0 PUBLISH the broker sends has DUP 0.
/// MQTT-4.3.1-1: a message delivered at QoS 0 is sent with QoS 0 and DUP 0, also when
/// published at QoS 1 or 2 with DUP 1.
/// MQTT-2.2.1-2: a QoS 0 PUBLISH has no packet identifier: the bytes are topic,
/// property length, payload.
#[tokio::test]
async fn qos0_deliveries_have_dup_0_and_no_packet_id() {
    let broker = TestBroker::start().await;
    let (mut sub, mut publisher) = pair(&broker, "q0/#", 0).await;
    publisher.publish(&Publish::new("q0/a", 0, b"x")).await;
    publisher
        .publish(&Publish::new("q0/a", 1, b"x").dup())
        .await;
    publisher
        .publish(&Publish::new("q0/a", 2, b"x").pkid(2).dup())
        .await;
    for _ in 0..3 {
        let p = sub.expect_message("q0/a", b"x").await;
        assert_eq!(
            p.raw,
            frame(0x30, &[&field(b"q0/a")[..], &[0x00], b"x"].concat())
        );
        assert!(p.pkid.is_none() && !p.dup && p.qos == 0);
    }
}

/// MQTT-3.3.1-4: a PUBLISH with both QoS bits set is malformed: DISCONNECT 0x81, the
/// close, and the message is not delivered.
#[tokio::test]
async fn publish_with_qos_3_is_malformed() {
    let broker = TestBroker::start().await;
    let (mut sub, mut publisher) = pair(&broker, "qos3/#", 2).await;
    let mut bytes = Publish::new("qos3/t", 2, b"bad").bytes();
    bytes[0] |= 0x06;
    publisher.send(&bytes).await;
    publisher.expect_disconnect(MALFORMED_PACKET).await;
    let mut other = Client::new(&broker, "other").await;
    other.publish(&Publish::new("qos3/marker", 0, b"m")).await;
    sub.expect_message("qos3/marker", b"m").await;
}

// ---- retained messages ----

/// MQTT-3.3.1-5: a RETAIN 1 PUBLISH replaces the topic's retained message and is stored
/// with its QoS: a new subscriber gets only the latest, at that QoS.
/// MQTT-3.3.1-9: with Retain Handling 0 a new subscription gets the retained messages
/// of the topics it matches.
#[tokio::test]
async fn retained_message_replaces_the_previous_one() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("ret/a", 1, b"first").retain())
        .await;
    publisher
        .publish(&Publish::new("ret/a", 2, b"second").pkid(2).retain())
        .await;
    publisher
        .publish(&Publish::new("ret/b", 0, b"other").retain())
        .await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("ret/a", 2)]).await;
    let got = sub.expect_message("ret/a", b"second").await;
    assert!(got.retain);
    assert_eq!(got.qos, 2);
    sub.complete(&got).await;
    sub.expect_nothing(QUIET).await;
}

/// MQTT-3.3.1-6: a retained PUBLISH with an empty payload removes the topic's retained
/// message, and is still forwarded to current subscribers.
/// MQTT-3.3.1-7: the empty message itself is never stored: a later subscriber gets
/// nothing for that topic.
#[tokio::test]
async fn empty_retained_message_clears_the_topic_and_is_forwarded() {
    let broker = TestBroker::start().await;
    let (mut sub, mut publisher) = pair(&broker, "clr/#", 0).await;
    publisher
        .publish(&Publish::new("clr/t", 0, b"kept").retain())
        .await;
    sub.expect_message("clr/t", b"kept").await;
    publisher
        .publish(&Publish::new("clr/t", 0, b"").retain())
        .await;
    sub.expect_message("clr/t", b"").await;
    publisher
        .publish(&Publish::new("clr/marker", 0, b"m").retain())
        .await;
    let mut late = Client::new(&broker, "late").await;
    late.subscribe(1, &[("clr/#", 0)]).await;
    late.expect_message("clr/marker", b"m").await;
    late.expect_nothing(QUIET).await;
}

/// MQTT-3.3.1-8: a RETAIN 0 PUBLISH is not stored and leaves the topic's retained
/// message as it was.
#[tokio::test]
async fn non_retained_publish_leaves_the_retained_message_alone() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("keep/t", 0, b"retained").retain())
        .await;
    publisher.publish(&Publish::new("keep/t", 0, b"live")).await;
    publisher.publish(&Publish::new("keep/u", 0, b"live")).await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("keep/#", 0)]).await;
    sub.expect_message("keep/t", b"retained").await;
    sub.expect_nothing(QUIET).await;
}

// ---- topic names ----

/// MQTT-3.3.2-1: the Topic Name is the first field of the PUBLISH variable header, a
/// UTF-8 string (checked byte for byte, with a non-ASCII topic).
#[tokio::test]
async fn topic_name_is_the_first_field_and_utf8() {
    let broker = TestBroker::start().await;
    let topic = "tn/é/日本";
    let (mut sub, mut publisher) = pair(&broker, "tn/#", 1).await;
    publisher.publish(&Publish::new(topic, 1, b"p")).await;
    let got = sub.expect_message(topic, b"p").await;
    let pkid = got.pkid.unwrap().to_be_bytes();
    let body = [&field(topic.as_bytes())[..], &pkid, &[0x00], b"p"].concat();
    assert_eq!(got.raw, frame(0x32, &body));
}

/// MQTT-3.3.2-2: a PUBLISH whose Topic Name holds a wildcard is refused: DISCONNECT with
/// Topic Name invalid (0x90), the close, and nothing delivered.
/// MQTT-4.7.0-1: wildcards are for filters only: the same strings subscribe fine.
#[tokio::test]
async fn publish_to_a_wildcard_topic_is_refused() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = pair(&broker, "#", 0).await;
    for topic in ["wc/+", "wc/#", "+", "#", "wc/+/x"] {
        let mut publisher = Client::new(&broker, "pub").await;
        assert_eq!(publisher.subscribe(1, &[(topic, 0)]).await, vec![0]);
        publisher
            .send(&Publish::new(topic, 0, b"bad").bytes())
            .await;
        publisher.expect_disconnect(TOPIC_NAME_INVALID).await;
    }
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new("wc/marker", 0, b"m")).await;
    sub.expect_message("wc/marker", b"m").await;
}

/// MQTT-3.3.2-3: the Topic Name of each PUBLISH the broker sends is the topic published
/// to, which matches the subscription's filter — not the filter itself.
#[tokio::test]
async fn delivered_topic_name_matches_the_subscription() {
    let broker = TestBroker::start().await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("m/+/x", 0), ("n/#", 0)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    for topic in ["m/a/x", "m/b/y", "n", "n/1/2", "m/x"] {
        publisher
            .publish(&Publish::new(topic, 0, topic.as_bytes()))
            .await;
    }
    for topic in ["m/a/x", "n", "n/1/2"] {
        sub.expect_message(topic, topic.as_bytes()).await;
    }
    sub.expect_nothing(QUIET).await;
}

// ---- properties ----

/// MQTT-3.3.2-4: the Payload Format Indicator reaches the subscriber unchanged,
/// MQTT-3.3.2-15: so does the Response Topic,
/// MQTT-3.3.2-16: the Correlation Data,
/// MQTT-3.3.2-17: every User Property, repeated keys included,
/// MQTT-3.3.2-18: in their order,
/// MQTT-3.3.2-20: and the Content Type — live at QoS 0, 1 and 2, from the retained
/// store, and from an offline session's queue.
/// MQTT-3.3.2-13: the forwarded Response Topic is a UTF-8 string (non-ASCII here),
/// MQTT-3.3.2-19: so is the Content Type,
/// MQTT-1.5.7-1: and both strings of each User Property.
#[tokio::test]
async fn publish_properties_are_forwarded_unchanged() {
    let broker = TestBroker::start().await;
    let (mut offline, _) = Client::connect(&broker, &Connect::resume("offline", 60)).await;
    offline.subscribe(1, &[("props/#", 1)]).await;
    offline.drop_connection().await;
    let (mut sub, mut publisher) = pair(&broker, "props/#", 2).await;
    let props = Props::new()
        .user("k", "1")
        .byte(PAYLOAD_FORMAT_INDICATOR, 1)
        .user("ключ", "значение")
        .str(CONTENT_TYPE, "application/json; charset=ü")
        .user("k", "2")
        .str(RESPONSE_TOPIC, "props/réponse")
        .bin(CORRELATION_DATA, &[0, 0xff, 0x10])
        .user("", "");
    let expected = users(&[("k", "1"), ("ключ", "значение"), ("k", "2"), ("", "")]);
    let check = |m: &Message| {
        assert_eq!(m.props.users(), expected, "{m:?}");
        assert_eq!(m.props.byte(PAYLOAD_FORMAT_INDICATOR), Some(1), "{m:?}");
        assert_eq!(
            m.props.str(CONTENT_TYPE),
            Some("application/json; charset=ü")
        );
        assert_eq!(m.props.str(RESPONSE_TOPIC), Some("props/réponse"));
        assert_eq!(m.props.bin(CORRELATION_DATA), Some(&[0u8, 0xff, 0x10][..]));
    };
    for qos in 0..=2 {
        let publish = Publish::new("props/t", qos, b"{}")
            .pkid(u16::from(qos) + 1)
            .props(props.clone());
        publisher.publish(&publish.retain()).await;
        let got = sub.expect_message("props/t", b"{}").await;
        check(&got);
        sub.complete(&got).await;
    }
    let mut late = Client::new(&broker, "late").await;
    late.subscribe(1, &[("props/t", 0)]).await;
    let retained = late.expect_message("props/t", b"{}").await;
    assert!(retained.retain);
    check(&retained);
    // QoS 1 and 2 were queued for the offline session (QoS 0 may be, or not).
    let (mut offline, _) = Client::connect(&broker, &Connect::resume("offline", 60)).await;
    let mut queued = 0;
    while let Some(packet) = offline.recv_within(QUIET).await {
        let Packet::Publish(m) = packet else {
            panic!("expected PUBLISH, got {packet:?}")
        };
        assert_eq!((m.topic.as_str(), &m.payload[..]), ("props/t", &b"{}"[..]));
        check(&m);
        queued += 1;
    }
    assert!(queued >= 2, "{queued} queued messages");
    // A message without properties gets none added.
    publisher.publish(&Publish::new("props/bare", 0, b"")).await;
    let bare = sub.expect_message("props/bare", b"").await;
    assert!(bare.props.is_empty(), "{bare:?}");
}

/// MQTT-1.5.4-1: ill-formed UTF-8 — a surrogate, a stray continuation byte, an overlong
/// encoding, a truncated sequence — in a Topic Name or a Topic Filter makes the packet
/// malformed: DISCONNECT 0x81 and the close.
/// MQTT-3.3.2-13: so does one in a Response Topic,
/// MQTT-3.3.2-19: in a Content Type,
/// MQTT-1.5.7-1: or in either string of a User Property. None is delivered.
#[tokio::test]
async fn ill_formed_utf8_is_malformed() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = pair(&broker, "utf/#", 0).await;
    let bad: [&[u8]; 4] = [b"\xed\xa0\x80", b"\x80", b"\xc0\xaf", b"\xe6\x97"];
    for bytes in bad {
        let topic = [&b"utf/"[..], bytes].concat();
        let bad_pair = [
            &[USER_PROPERTY][..],
            &field(bytes),
            &field(b"v"),
            &[USER_PROPERTY],
            &field(b"k"),
            &field(bytes),
        ]
        .concat();
        let packets = [
            Publish::raw_topic(&topic, 0, b"bad").bytes(),
            Publish::new("utf/t", 0, b"bad")
                .props(Props::new().bin(RESPONSE_TOPIC, bytes))
                .bytes(),
            Publish::new("utf/t", 0, b"bad")
                .props(Props::new().bin(CONTENT_TYPE, bytes))
                .bytes(),
            Publish::new("utf/t", 0, b"bad")
                .props(Props::new().raw(&bad_pair[..1 + 2 + bytes.len() + 3]))
                .bytes(),
            Publish::new("utf/t", 0, b"bad")
                .props(Props::new().raw(&bad_pair[1 + 2 + bytes.len() + 3..]))
                .bytes(),
            {
                let mut body = 1u16.to_be_bytes().to_vec();
                body.push(0);
                body.extend(field(&topic));
                body.push(0);
                frame(0x82, &body)
            },
        ];
        for packet in packets {
            let mut client = Client::new(&broker, "utf").await;
            client.send(&packet).await;
            client.expect_disconnect(MALFORMED_PACKET).await;
        }
    }
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("utf/marker", 0, b"m"))
        .await;
    sub.expect_message("utf/marker", b"m").await;
}

/// MQTT-1.5.4-2: U+0000 in a Topic Name, a Topic Filter or a User Property makes the
/// packet malformed: DISCONNECT 0x81 and the close.
/// MQTT-4.7.3-2: topic names and filters never contain U+0000.
#[tokio::test]
async fn null_character_is_malformed() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = pair(&broker, "nul/#", 0).await;
    let packets = [
        Publish::raw_topic(b"nul/a\0b", 0, b"bad").bytes(),
        Publish::new("nul/t", 0, b"bad")
            .props(Props::new().user("a\0", "b"))
            .bytes(),
        Publish::new("nul/t", 0, b"bad")
            .props(Props::new().str(CONTENT_TYPE, "\0"))
            .bytes(),
        subscribe(1, &Props::new(), &[("nul/\0", 0)]),
        unsubscribe(1, &Props::new(), &["nul/\0"]),
    ];
    for packet in packets {
        let mut client = Client::new(&broker, "nul").await;
        client.send(&packet).await;
        client.expect_disconnect(MALFORMED_PACKET).await;
    }
    let mut publisher = Client::new(&broker, "pub").await;
    publisher
        .publish(&Publish::new("nul/marker", 0, b"m"))
        .await;
    sub.expect_message("nul/marker", b"m").await;
}

/// MQTT-1.5.4-3: a leading EF BB BF (U+FEFF) is part of the string: a topic starting
/// with it is delivered with it to a subscription that has it, and not to one without.
#[tokio::test]
async fn byte_order_mark_is_kept() {
    let broker = TestBroker::start().await;
    let bom = "\u{feff}bom/t";
    let mut with = Client::new(&broker, "with").await;
    with.subscribe(1, &[(bom, 0)]).await;
    let mut without = Client::new(&broker, "without").await;
    without.subscribe(1, &[("bom/t", 0)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new(bom, 0, b"marked")).await;
    publisher.publish(&Publish::new("bom/t", 0, b"plain")).await;
    let got = with.expect_message(bom, b"marked").await;
    assert!(got.raw.windows(3).any(|w| w == [0xef, 0xbb, 0xbf]));
    without.expect_message("bom/t", b"plain").await;
    with.expect_nothing(QUIET).await;
}

/// MQTT-3.3.2-14: a Response Topic with a wildcard is refused — the broker would
/// otherwise forward it — with DISCONNECT 0x81 or 0x82 and the close; nothing is
/// delivered.
#[tokio::test]
async fn response_topic_with_a_wildcard_is_refused() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = pair(&broker, "rt/#", 0).await;
    for response in ["rt/+", "rt/#", "#"] {
        let mut client = Client::new(&broker, "rt").await;
        let publish =
            Publish::new("rt/t", 0, b"bad").props(Props::new().str(RESPONSE_TOPIC, response));
        client.send(&publish.bytes()).await;
        let got = match client.recv().await {
            Some(Packet::Disconnect(d)) => d,
            other => panic!("response topic {response:?}: expected DISCONNECT, got {other:?}"),
        };
        assert!(
            [MALFORMED_PACKET, PROTOCOL_ERROR].contains(&got.reason),
            "{got:?}"
        );
        client.expect_closed().await;
    }
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new("rt/marker", 0, b"m")).await;
    sub.expect_message("rt/marker", b"m").await;
}

// ---- message expiry ----

/// MQTT-3.3.2-5: a message whose Message Expiry Interval (1 s) passes while it waits in
/// an offline session is not delivered; messages with a longer interval or none are.
/// MQTT-3.3.2-6: the one delivered carries its interval less the time it waited (at
/// most 59 of 60 after 1.5 s), and one forwarded at once carries the full 60 s (or
/// 59, rounding down a few milliseconds).
#[tokio::test]
async fn message_expiry_drops_expired_and_counts_down_the_rest() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("exp", 60)).await;
    sub.subscribe(1, &[("exp/#", 1)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    let expiry = |secs| Props::new().u32(MESSAGE_EXPIRY_INTERVAL, secs);
    publisher
        .publish(&Publish::new("exp/now", 1, b"now").props(expiry(60)))
        .await;
    let now = sub.expect_message("exp/now", b"now").await;
    assert!(matches!(now.expiry(), Some(59..=60)), "{now:?}");
    sub.complete(&now).await;
    sub.ping().await;
    sub.drop_connection().await;

    publisher
        .publish(&Publish::new("exp/short", 1, b"short").props(expiry(1)))
        .await;
    publisher
        .publish(
            &Publish::new("exp/long", 1, b"long")
                .pkid(2)
                .props(expiry(60)),
        )
        .await;
    publisher
        .publish(&Publish::new("exp/none", 1, b"none").pkid(3))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut sub, _) = Client::connect(&broker, &Connect::resume("exp", 60)).await;
    let long = sub.expect_message("exp/long", b"long").await;
    assert!(matches!(long.expiry(), Some(1..=59)), "{long:?}");
    let none = sub.expect_message("exp/none", b"none").await;
    assert_eq!(none.expiry(), None);
}

/// MQTT-3.3.2-5: a retained message whose expiry interval has passed is not sent to a
/// new subscriber.
/// MQTT-3.3.2-6: one still valid is sent with the interval it has left.
#[tokio::test]
async fn retained_messages_expire() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::new(&broker, "pub").await;
    let expiry = |secs| Props::new().u32(MESSAGE_EXPIRY_INTERVAL, secs);
    publisher
        .publish(
            &Publish::new("rexp/short", 0, b"short")
                .retain()
                .props(expiry(1)),
        )
        .await;
    publisher
        .publish(
            &Publish::new("rexp/long", 0, b"long")
                .retain()
                .props(expiry(60)),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut sub = Client::new(&broker, "sub").await;
    sub.subscribe(1, &[("rexp/#", 0)]).await;
    let long = sub.expect_message("rexp/long", b"long").await;
    assert!(matches!(long.expiry(), Some(1..=59)), "{long:?}");
    sub.expect_nothing(QUIET).await;
}

// ---- topic aliases ----

/// MQTT-3.3.2-12: the broker accepts Topic Aliases from 1 to the Topic Alias Maximum it
/// announced (10): set with a topic, used with an empty one, and set anew.
/// MQTT-3.3.2-8: a Topic Alias of 0 is refused with DISCONNECT 0x94; so is one above the
/// maximum; an alias used before it was set is a protocol error (0x82).
#[tokio::test]
async fn client_topic_aliases_are_accepted_up_to_the_maximum() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = pair(&broker, "ta/#", 0).await;
    let (mut publisher, ack) = Client::connect(&broker, &Connect::new("pub")).await;
    assert_eq!(ack.props.u16(TOPIC_ALIAS_MAXIMUM), Some(10));
    let alias = |n| Props::new().u16(TOPIC_ALIAS, n);
    let sends = [
        ("ta/one", 1, "ta/one"),
        ("", 1, "ta/one"),
        ("ta/ten", 10, "ta/ten"),
        ("", 10, "ta/ten"),
        ("ta/uno", 1, "ta/uno"),
        ("", 1, "ta/uno"),
        ("", 10, "ta/ten"),
    ];
    for (i, (topic, n, _)) in sends.iter().enumerate() {
        let payload = [i as u8];
        publisher
            .publish(
                &Publish::new(topic, 1, &payload)
                    .pkid(i as u16 + 1)
                    .props(alias(*n)),
            )
            .await;
    }
    for (i, (_, _, delivered)) in sends.iter().enumerate() {
        sub.expect_message(delivered, &[i as u8]).await;
    }
    let refused = [
        (
            Publish::new("ta/x", 0, b"bad").props(alias(0)),
            TOPIC_ALIAS_INVALID,
        ),
        (
            Publish::new("ta/x", 0, b"bad").props(alias(11)),
            TOPIC_ALIAS_INVALID,
        ),
        (
            Publish::new("", 0, b"bad").props(alias(11)),
            TOPIC_ALIAS_INVALID,
        ),
        (Publish::new("", 0, b"bad").props(alias(5)), PROTOCOL_ERROR),
        (Publish::new("", 0, b"bad"), PROTOCOL_ERROR),
    ];
    for (publish, code) in refused {
        let mut client = Client::new(&broker, "bad").await;
        client.send(&publish.bytes()).await;
        client.expect_disconnect(code).await;
    }
    publisher.publish(&Publish::new("ta/marker", 0, b"m")).await;
    sub.expect_message("ta/marker", b"m").await;
}

/// MQTT-3.3.2-12: a broker whose Topic Alias Maximum is 0 announces none and accepts no
/// alias at all: alias 1 is refused with DISCONNECT 0x94.
#[tokio::test]
async fn no_topic_aliases_accepted_when_the_maximum_is_0() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_topic_alias = 0).await;
    let (mut client, ack) = Client::connect(&broker, &Connect::new("c")).await;
    assert!(!ack.props.has(TOPIC_ALIAS_MAXIMUM), "{ack:?}");
    let publish = Publish::new("ta/x", 0, b"bad").props(Props::new().u16(TOPIC_ALIAS, 1));
    client.send(&publish.bytes()).await;
    client.expect_disconnect(TOPIC_ALIAS_INVALID).await;
}

/// MQTT-3.3.2-7: topic aliases belong to one connection: an alias set on one connection
/// is unknown on the next, even of the same session (protocol error 0x82); and the
/// broker starts its own aliases afresh on the new connection (the first PUBLISH for a
/// topic there names it in full).
#[tokio::test]
async fn topic_aliases_do_not_outlive_their_connection() {
    let broker = TestBroker::start().await;
    let connect = Connect::resume("alias", 60).topic_alias_maximum(5);
    let (mut client, _) = Client::connect(&broker, &connect).await;
    client.subscribe(1, &[("tac/t", 0)]).await;
    let set = Publish::new("tac/t", 0, b"1").props(Props::new().u16(TOPIC_ALIAS, 1));
    client.publish(&set).await;
    let first = client.expect_message("tac/t", b"1").await;
    client
        .publish(&Publish::new("", 0, b"2").props(Props::new().u16(TOPIC_ALIAS, 1)))
        .await;
    let second = client.expect_message("tac/t", b"2").await;
    assert!(
        first.alias().is_some() && second.topic_field.is_empty(),
        "{second:?}"
    );
    client.drop_connection().await;

    let (mut client, ack) = Client::connect(&broker, &connect).await;
    assert!(ack.session_present);
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new("tac/t", 0, b"3")).await;
    let third = client.expect_message("tac/t", b"3").await;
    assert_eq!(third.topic_field, "tac/t", "{third:?}");
    client
        .send(
            &Publish::new("", 0, b"4")
                .props(Props::new().u16(TOPIC_ALIAS, 1))
                .bytes(),
        )
        .await;
    client.expect_disconnect(PROTOCOL_ERROR).await;
}

/// MQTT-3.1.2-26: the broker's Topic Aliases never exceed the client's Topic Alias
/// Maximum (2 here, with 5 topics in turn).
/// MQTT-3.3.2-11: every alias it sends lies within 1 to that maximum,
/// MQTT-3.3.2-8: never 0; and every message reaches the client under its own topic.
#[tokio::test]
async fn broker_topic_aliases_stay_within_the_clients_maximum() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("sub").topic_alias_maximum(2);
    let (mut sub, _) = Client::connect(&broker, &connect).await;
    sub.subscribe(1, &[("tas/#", 0)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    let topics = ["tas/a", "tas/b", "tas/c", "tas/d", "tas/e"];
    for _ in 0..3 {
        for topic in topics {
            publisher.publish(&Publish::new(topic, 0, b"x")).await;
        }
    }
    let mut by_alias_only = 0;
    for _ in 0..3 {
        for topic in topics {
            let got = sub.expect_message(topic, b"x").await;
            if let Some(alias) = got.alias() {
                assert!((1..=2).contains(&alias), "{got:?}");
            }
            if got.topic_field.is_empty() {
                by_alias_only += 1;
            }
        }
    }
    assert!(
        by_alias_only > 0,
        "the broker used no alias, so the test shows nothing"
    );
}

/// MQTT-3.1.2-27: a client that announces no Topic Alias Maximum, or 0, gets no Topic
/// Alias from the broker.
#[tokio::test]
async fn no_broker_topic_aliases_without_a_client_maximum() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::new(&broker, "pub").await;
    for (id, connect) in [
        ("none", Connect::new("none")),
        ("zero", Connect::new("zero").topic_alias_maximum(0)),
    ] {
        let (mut sub, _) = Client::connect(&broker, &connect).await;
        sub.subscribe(1, &[("tan/#", 0)]).await;
        for _ in 0..3 {
            publisher.publish(&Publish::new("tan/t", 0, b"x")).await;
        }
        for _ in 0..3 {
            let got = sub.expect_message("tan/t", b"x").await;
            assert_eq!(got.alias(), None, "{id}: {got:?}");
        }
        sub.disconnect().await;
    }
}

// ---- data representation ----

/// MQTT-1.5.5-1: the Variable Byte Integers the broker sends use the fewest bytes: the
/// Remaining Length at 127/128, 16383/16384 and 2097151/2097152 bytes, Property Lengths
/// around 127/128, and Subscription Identifiers 127, 128, 16383, 16384, 2097151,
/// 2097152 and 268435455 (each checked by the decoder, and the remaining length
/// compared byte for byte).
#[tokio::test]
async fn variable_byte_integers_use_the_fewest_bytes() {
    let broker = TestBroker::start().await;
    let (mut sub, mut publisher) = pair(&broker, "vbi/t", 0).await;
    // Remaining length = 2 + 5 (topic) + 1 (property length) + payload.
    for (remaining, header) in [
        (127usize, vec![0x30, 0x7f]),
        (128, vec![0x30, 0x80, 0x01]),
        (16383, vec![0x30, 0xff, 0x7f]),
        (16384, vec![0x30, 0x80, 0x80, 0x01]),
        (2097151, vec![0x30, 0xff, 0xff, 0x7f]),
        (2097152, vec![0x30, 0x80, 0x80, 0x80, 0x01]),
    ] {
        let payload = vec![b'v'; remaining - 8];
        publisher.publish(&Publish::new("vbi/t", 0, &payload)).await;
        let got = sub.expect_message("vbi/t", &payload).await;
        assert_eq!(
            &got.raw[..header.len()],
            &header[..],
            "remaining {remaining}"
        );
    }
    // Property lengths on both sides of one byte: user properties of 127 and 128 bytes.
    for len in [127usize, 128] {
        // Identifier, two 2-byte lengths and the 1-byte key: 6 bytes besides the value.
        let value = "u".repeat(len - 6);
        let props = Props::new().user("k", &value);
        publisher
            .publish(&Publish::new("vbi/t", 0, b"p").props(props))
            .await;
        let got = sub.expect_message("vbi/t", b"p").await;
        assert_eq!(got.props.users(), users(&[("k", &value)]));
    }
    let mut ids = Client::new(&broker, "ids").await;
    for (i, id) in [127u32, 128, 16383, 16384, 2097151, 2097152, 268435455]
        .into_iter()
        .enumerate()
    {
        let filter = format!("vbi/id/{i}");
        assert_eq!(ids.subscribe_id(1, id, &filter, 0).await, 0);
        publisher.publish(&Publish::new(&filter, 0, b"i")).await;
        let got = ids.expect_message(&filter, b"i").await;
        assert_eq!(got.props.subscription_ids(), vec![id]);
    }
}

/// MQTT-2.1.3-1: fixed-header flags not as tabled make a packet malformed: PUBREL
/// without 0010, SUBSCRIBE and UNSUBSCRIBE without 0010, PUBACK, PINGREQ with flags
/// set each get DISCONNECT 0x81 and the close. (Every packet the broker sends is checked
/// for its tabled flags by the decoder.)
/// MQTT-3.6.1-1: PUBREL with flags other than 0010 is malformed.
/// MQTT-3.8.1-1: so is SUBSCRIBE,
/// MQTT-3.10.1-1: and UNSUBSCRIBE.
#[tokio::test]
async fn invalid_fixed_header_flags_are_malformed() {
    let broker = TestBroker::start().await;
    let sub = subscribe(1, &Props::new(), &[("flags/t", 0)]);
    let unsub = unsubscribe(1, &Props::new(), &["flags/t"]);
    let with_first = |bytes: &[u8], first: u8| [&[first][..], &bytes[1..]].concat();
    let cases = [
        ("PUBREL 0000", frame(0x60, &[0, 1])),
        ("PUBREL 0011", frame(0x63, &[0, 1])),
        ("PUBREL 1010", frame(0x6a, &[0, 1])),
        ("SUBSCRIBE 0000", with_first(&sub, 0x80)),
        ("SUBSCRIBE 0011", with_first(&sub, 0x83)),
        ("SUBSCRIBE 1010", with_first(&sub, 0x8a)),
        ("UNSUBSCRIBE 0000", with_first(&unsub, 0xa0)),
        ("UNSUBSCRIBE 0110", with_first(&unsub, 0xa6)),
        ("PUBACK 0010", frame(0x42, &[0, 1])),
        ("PUBCOMP 0001", frame(0x71, &[0, 1])),
        ("PINGREQ 0001", vec![0xc1, 0x00]),
    ];
    for (what, bytes) in cases {
        let mut client = Client::new(&broker, "flags").await;
        client.send(&bytes).await;
        let got = match client.recv().await {
            Some(Packet::Disconnect(d)) => d,
            other => panic!("{what}: expected DISCONNECT 0x81, got {other:?}"),
        };
        assert_eq!(got.reason, MALFORMED_PACKET, "{what}: {got:?}");
        client.expect_closed().await;
    }
}

// ---- delivery ----

/// MQTT-4.5.0-1: the broker adds a message to the session of every matching subscriber,
/// connected or not.
#[tokio::test]
async fn message_reaches_every_matching_session() {
    let broker = TestBroker::start().await;
    let (mut offline, _) = Client::connect(&broker, &Connect::resume("off", 60)).await;
    offline.subscribe(1, &[("every/+", 1)]).await;
    offline.disconnect().await;
    let mut a = Client::new(&broker, "a").await;
    a.subscribe(1, &[("every/#", 0)]).await;
    let mut b = Client::new(&broker, "b").await;
    b.subscribe(1, &[("every/t", 2)]).await;
    let mut publisher = Client::new(&broker, "pub").await;
    publisher.publish(&Publish::new("every/t", 1, b"all")).await;
    a.expect_message("every/t", b"all").await;
    b.expect_message("every/t", b"all").await;
    let (mut offline, _) = Client::connect(&broker, &Connect::resume("off", 60)).await;
    offline.expect_message("every/t", b"all").await;
}

/// MQTT-4.6.0-5: messages from one publisher to one topic at one QoS reach a subscriber
/// in the order published, at QoS 0, 1 and 2 (100 each, 10 of each QoS per write);
/// MQTT-4.6.0-6: non-shared subscriptions treat every topic as ordered.
#[tokio::test]
async fn messages_keep_their_order_per_topic_and_qos() {
    let broker = TestBroker::start().await;
    let (mut sub, mut publisher) = pair(&broker, "order/#", 2).await;
    let mut pkid = 0u16;
    for round in 0..10u16 {
        let mut burst = Vec::new();
        let mut qos2 = Vec::new();
        for i in round * 10..round * 10 + 10 {
            for qos in 0..=2u8 {
                pkid += 1;
                let topic = format!("order/{qos}");
                burst.extend(
                    Publish::new(&topic, qos, &i.to_be_bytes())
                        .pkid(pkid)
                        .bytes(),
                );
                if qos == 2 {
                    qos2.push(pkid);
                }
            }
        }
        publisher.send(&burst).await;
        // Within the broker's Receive Maximum (20): 10 QoS 1 and 10 QoS 2 in flight.
        for _ in 0..20 {
            match publisher.recv().await {
                Some(Packet::PubAck(_)) => {}
                Some(Packet::PubRec(rec)) => publisher.send(&ack(PUBREL, rec.pkid)).await,
                other => panic!("expected PUBACK or PUBREC, got {other:?}"),
            }
        }
        for _ in 0..10 {
            match publisher.recv().await {
                Some(Packet::PubComp(comp)) => assert!(qos2.contains(&comp.pkid)),
                other => panic!("expected PUBCOMP, got {other:?}"),
            }
        }
    }
    let mut next = [0u16; 3];
    while next != [100; 3] {
        match sub.recv().await {
            Some(Packet::Publish(p)) => {
                let qos = usize::from(p.qos);
                assert_eq!(p.topic, format!("order/{qos}"));
                let n = u16::from_be_bytes([p.payload[0], p.payload[1]]);
                assert_eq!(n, next[qos], "QoS {qos} out of order");
                next[qos] += 1;
                match (p.qos, p.pkid) {
                    (1, Some(id)) => sub.send(&ack(PUBACK, id)).await,
                    (2, Some(id)) => sub.send(&ack(PUBREC, id)).await,
                    _ => {}
                }
            }
            Some(Packet::PubRel(rel)) => sub.send(&ack(PUBCOMP, rel.pkid)).await,
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
    }
}

/// MQTT-4.2.0-1: MQTT runs over an ordered, lossless, two-way byte stream: packets split
/// byte by byte across writes and many packets in one write are all read in order.
#[tokio::test]
async fn ordered_byte_stream_transport() {
    let broker = TestBroker::start().await;
    let mut client = Client::open(&broker).await;
    let mut bytes = Connect::new("stream").bytes();
    bytes.extend(subscribe(1, &Props::new(), &[("stream/t", 1)]));
    bytes.extend(Publish::new("stream/t", 1, b"one").pkid(2).bytes());
    for byte in bytes {
        client.send(&[byte]).await;
        tokio::task::yield_now().await;
    }
    client.expect_connack().await;
    client.expect_suback(1).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(client.recv().await.expect("packet"));
    }
    assert!(got
        .iter()
        .any(|p| matches!(p, Packet::PubAck(a) if a.pkid == 2)));
    assert!(got
        .iter()
        .any(|p| matches!(p, Packet::Publish(m) if m.payload == b"one")));
    let mut many = Vec::new();
    for i in 0..50u8 {
        many.extend(Publish::new("stream/t", 0, &[i]).bytes());
    }
    client.send(&many).await;
    for i in 0..50u8 {
        client.expect_message("stream/t", &[i]).await;
    }
}
