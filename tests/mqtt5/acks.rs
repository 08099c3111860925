//! Acknowledgements and their reason codes: PUBACK/PUBREC/PUBCOMP, SUBACK, UNSUBACK,
//! and the MQTT 3.x forms kept for 3.x clients.

use herald::protocol::QoS;

use crate::common::{field, frame, TestBroker};
use crate::v5::*;

/// MQTT 5.0 §3.4.2.1, §3.5.2.1, §3.7.2.1: a success acknowledgement without properties
/// takes the short form — packet id only, remaining length 2 — with or without
/// subscribers for the message.
#[tokio::test]
async fn success_acknowledgements_take_the_two_byte_form() {
    let broker = TestBroker::start().await;
    let mut subscriber = Client::new(&broker, "acks-sub").await;
    subscriber.subscribe(1, &[("ack/with", 2)]).await;
    let mut client = Client::new(&broker, "acks").await;
    for (topic, first) in [("ack/with", 1u16), ("ack/without", 3)] {
        client
            .send(&Publish::new(topic, 1, b"q1").pkid(first).bytes())
            .await;
        assert_eq!(
            client.expect_ack(PUBACK, first).await.raw,
            [0x40, 0x02, 0x00, first as u8],
            "PUBACK for {topic}"
        );
        let id2 = first + 1;
        client
            .send(&Publish::new(topic, 2, b"q2").pkid(id2).bytes())
            .await;
        assert_eq!(
            client.expect_ack(PUBREC, id2).await.raw,
            [0x50, 0x02, 0x00, id2 as u8],
            "PUBREC for {topic}"
        );
        client.send(&ack(PUBREL, id2)).await;
        assert_eq!(
            client.expect_ack(PUBCOMP, id2).await.raw,
            [0x70, 0x02, 0x00, id2 as u8],
            "PUBCOMP for {topic}"
        );
    }
    subscriber.expect_and_complete("ack/with", b"q1").await;
    subscriber.expect_and_complete("ack/with", b"q2").await;
    broker.stop().await;
}

/// MQTT 5.0 §3.7.2.1 and §4.3.3: a PUBREL for a packet id the server holds no QoS 2
/// state for is answered with PUBCOMP 0x92 (Packet Identifier not found), and the
/// connection goes on.
#[tokio::test]
async fn pubrel_for_an_unknown_packet_id_gets_pubcomp_0x92() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "stray-rel").await;
    client.send(&ack(PUBREL, 77)).await;
    let comp = client.expect_ack(PUBCOMP, 77).await;
    assert_eq!(comp.reason, 0x92, "{comp:?}");
    // A second PUBREL after a completed exchange is unknown too.
    client
        .publish(&Publish::new("rel/t", 2, b"m").pkid(5))
        .await;
    client.send(&ack(PUBREL, 5)).await;
    let comp = client.expect_ack(PUBCOMP, 5).await;
    assert_eq!(comp.reason, 0x92, "{comp:?}");
    client.ping().await;
    broker.stop().await;
}

/// MQTT 5.0 §3.9.3: SUBACK has a reason code per filter, in order: the granted QoS, or
/// 0x8F (Topic Filter invalid) for a malformed filter or a `$share` filter without a
/// group and filter; the valid filters are subscribed even so.
#[tokio::test]
async fn suback_has_a_reason_code_per_filter() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "suback").await;
    let codes = client
        .subscribe(
            3,
            &[
                ("s/zero", 0),
                ("s/one", 1),
                ("s/two", 2),
                ("a/#/b", 1),
                ("$share/g", 1),
                ("$share/g/s/#", 1),
            ],
        )
        .await;
    assert_eq!(codes, [0x00, 0x01, 0x02, 0x8F, 0x8F, 0x01]);
    let mut publisher = Client::new(&broker, "suback-pub").await;
    publisher.publish(&Publish::new("s/two", 2, b"x")).await;
    // Through s/two and through the group of one.
    let first = client.expect_publish().await;
    let second = client.expect_publish().await;
    client.complete(&first).await;
    client.complete(&second).await;
    let mut qos = [first.qos, second.qos];
    qos.sort_unstable();
    assert_eq!(qos, [1, 2]);
    broker.stop().await;
}

/// MQTT 5.0 §3.9.3: a subscription is granted at most the server's maximum QoS.
#[tokio::test]
async fn suback_grants_at_most_the_maximum_qos() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_qos.0 = QoS::AtLeastOnce).await;
    let mut client = Client::new(&broker, "capped").await;
    let codes = client
        .subscribe(1, &[("c/0", 0), ("c/1", 1), ("c/2", 2)])
        .await;
    assert_eq!(codes, [0x00, 0x01, 0x01]);
    broker.stop().await;
}

/// MQTT 5.0 §3.9.3: a filter beyond max_subscriptions_per_client is refused with 0x97
/// (Quota exceeded); replacing a subscription the session already has is not a new
/// one and is granted.
#[tokio::test]
async fn subscriptions_beyond_the_quota_get_0x97() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_subscriptions_per_client = 2).await;
    let mut client = Client::new(&broker, "quota").await;
    let codes = client
        .subscribe(1, &[("q/1", 0), ("q/2", 1), ("q/3", 1)])
        .await;
    assert_eq!(codes, [0x00, 0x01, 0x97]);
    assert_eq!(client.subscribe(2, &[("q/2", 2)]).await, [0x02]);
    broker.stop().await;
}

/// MQTT 5.0 §3.11.3: UNSUBACK has a reason code per filter: 0x00 Success, 0x11 (No
/// subscription existed), 0x8F (Topic Filter invalid); the unsubscribed filter no
/// longer delivers.
#[tokio::test]
async fn unsuback_has_a_reason_code_per_filter() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "unsuback").await;
    assert_eq!(client.subscribe(1, &[("u/1", 0)]).await, [0x00]);
    let codes = client.unsubscribe(2, &["u/1", "u/2", "a/#/b"]).await;
    assert_eq!(codes, [0x00, 0x11, 0x8F]);
    client.publish(&Publish::new("u/1", 0, b"gone")).await;
    client.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 3.1.1 §3.9.3 and §3.11: on the same broker, a 3.1.1 client keeps the 3.x forms
/// — SUBACK failure 0x80 rather than a 5.0 reason code, UNSUBACK without a payload,
/// PUBCOMP without a reason code.
#[tokio::test]
async fn mqtt_3_1_1_clients_keep_the_3_x_acknowledgement_forms() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_subscriptions_per_client = 2).await;
    let mut client = broker.client("v311-acks", true).await;
    let mut body = vec![0x00, 0x01];
    for (filter, qos) in [("ok/1", 1u8), ("a/#/b", 1), ("$share/g", 1), ("ok/2", 2)] {
        body.extend(field(filter.as_bytes()));
        body.push(qos);
    }
    client.send(&frame(0x82, &body)).await;
    assert_eq!(
        client.recv_frame().await,
        Some(vec![0x90, 0x06, 0x00, 0x01, 0x01, 0x80, 0x80, 0x02])
    );
    let mut body = vec![0x00, 0x02];
    body.extend(field(b"ok/1"));
    body.extend(field(b"never"));
    client.send(&frame(0xa2, &body)).await;
    assert_eq!(
        client.recv_frame().await,
        Some(vec![0xb0, 0x02, 0x00, 0x02])
    );
    // Over quota: 0x80 too.
    let mut body = vec![0x00, 0x03];
    for filter in ["more/1", "more/2"] {
        body.extend(field(filter.as_bytes()));
        body.push(0);
    }
    client.send(&frame(0x82, &body)).await;
    assert_eq!(
        client.recv_frame().await,
        Some(vec![0x90, 0x04, 0x00, 0x03, 0x00, 0x80])
    );
    client.send(&frame(0x62, &[0x00, 0x09])).await;
    assert_eq!(
        client.recv_frame().await,
        Some(vec![0x70, 0x02, 0x00, 0x09])
    );
    broker.stop().await;
}

/// MQTT 5.0 §4.3.3 and §3.5.2.1: a PUBREC with a failure reason code
/// ends the QoS 2 exchange: the server sends no PUBREL, and the message no longer takes
/// a place in the client's Receive Maximum.
#[tokio::test]
async fn a_failed_pubrec_ends_the_qos2_exchange() {
    let broker = TestBroker::start().await;
    let (mut client, _) =
        Client::connect(&broker, &Connect::new("refuser").receive_maximum(1)).await;
    client.subscribe(1, &[("refuse/#", 2)]).await;
    let mut publisher = Client::new(&broker, "refuse-pub").await;
    publisher.publish(&Publish::new("refuse/a", 2, b"no")).await;
    publisher
        .publish(&Publish::new("refuse/b", 2, b"yes").pkid(2))
        .await;
    let first = client.expect_publish().await;
    assert_eq!(first.payload, b"no");
    // PUBREC 0x80 (Unspecified error), with an empty property list.
    let pkid = first.pkid.expect("QoS 2");
    client
        .send(&ack_with(PUBREC, pkid, 0x80, &Props::new()))
        .await;
    client.expect_and_complete("refuse/b", b"yes").await;
    client.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.6.2.1: a PUBREC for a packet id the server has no message in flight for
/// is answered with PUBREL 0x92 (Packet Identifier not found).
#[tokio::test]
async fn pubrec_for_an_unknown_packet_id_gets_pubrel_0x92() {
    let broker = TestBroker::start().await;
    let mut client = Client::new(&broker, "stray-rec").await;
    client.send(&ack(PUBREC, 33)).await;
    let rel = client.expect_ack(PUBREL, 33).await;
    assert_eq!(rel.reason, 0x92, "{rel:?}");
    client.ping().await;
    broker.stop().await;
}

/// MQTT 5.0 §3.4.2 and §3.7.2: a client may acknowledge in the long form — reason code
/// and properties (a Reason String, User Properties) — and the server takes it as the
/// acknowledgement it is: with Receive Maximum 1, the next message follows each.
#[tokio::test]
async fn long_form_acknowledgements_from_a_client_are_accepted() {
    let broker = TestBroker::start().await;
    let (mut client, _) =
        Client::connect(&broker, &Connect::new("verbose").receive_maximum(1)).await;
    client.subscribe(1, &[("long/#", 2)]).await;
    let mut publisher = Client::new(&broker, "verbose-pub").await;
    publisher.publish(&Publish::new("long/1", 1, b"1")).await;
    publisher
        .publish(&Publish::new("long/2", 2, b"2").pkid(2))
        .await;
    publisher
        .publish(&Publish::new("long/3", 1, b"3").pkid(3))
        .await;
    let props = Props::new().str(REASON_STRING, "fine").user("k", "v");
    let one = client.expect_publish().await;
    assert_eq!(one.payload, b"1");
    // PUBACK 0x10 (No matching subscribers) is a success code too.
    let pkid = one.pkid.expect("QoS 1");
    client.send(&ack_with(PUBACK, pkid, 0x10, &props)).await;
    let two = client.expect_publish().await;
    assert_eq!(two.payload, b"2");
    let pkid = two.pkid.expect("QoS 2");
    client.send(&ack_with(PUBREC, pkid, 0x00, &props)).await;
    let rel = client.expect_ack(PUBREL, pkid).await;
    assert_eq!(rel.reason, 0x00, "{rel:?}");
    client.send(&ack_with(PUBCOMP, pkid, 0x00, &props)).await;
    client.expect_and_complete("long/3", b"3").await;
    broker.stop().await;
}
