//! MQTT 3.1 ("MQIsdp", protocol level 3) on the same broker as 3.1.1: its client id rule,
//! its CONNACK, and messages both ways between the versions.

mod common;

use common::{expect_message, field, frame, TestBroker};
use mqttbytes::v4::ConnectReturnCode;
use mqttbytes::QoS;

/// An MQTT 3.1 CONNECT, keep alive 60 s.
fn connect_31(client_id: &str, clean_session: bool) -> Vec<u8> {
    let mut body = field(b"MQIsdp");
    body.extend([3, u8::from(clean_session) << 1, 0, 60]);
    body.extend(field(client_id.as_bytes()));
    frame(0x10, &body)
}

/// MQTT 3.1 allows client ids of 1 to 23 characters (not bytes); others get return code
/// 0x02, identifier rejected. 3.1.1 has no such limit.
#[tokio::test]
async fn mqtt_3_1_client_ids_are_1_to_23_characters() {
    let broker = TestBroker::start().await;
    let cases = [
        (String::new(), ConnectReturnCode::BadClientId),
        ("x".repeat(23), ConnectReturnCode::Success),
        ("é".repeat(23), ConnectReturnCode::Success),
        ("x".repeat(24), ConnectReturnCode::BadClientId),
    ];
    for (client_id, code) in cases {
        let mut client = broker.raw().await;
        client.send(&connect_31(&client_id, true)).await;
        assert_eq!(client.expect_connack().await.code, code, "{client_id:?}");
    }
    let mut long = broker.raw().await;
    long.send_packet(common::connect_packet(&"x".repeat(24), true, 60))
        .await;
    assert_eq!(
        long.expect_connack().await.code,
        ConnectReturnCode::Success,
        "a 3.1.1 client may use a longer id"
    );
}

/// A resumed MQTT 3.1 session gets what was queued for it while offline, from a 3.1.1
/// publisher, but its CONNACK's first byte stays 0: 3.1 has no Session Present flag.
#[tokio::test]
async fn mqtt_3_1_session_resumes_without_session_present() {
    let broker = TestBroker::start().await;
    let mut first = broker.raw().await;
    first.send(&connect_31("v31-durable", false)).await;
    assert_eq!(first.recv_frame().await, Some(vec![0x20, 2, 0, 0]));
    first.subscribe(1, "v31/queue", QoS::AtLeastOnce).await;
    first.disconnect().await;

    let mut publisher = broker.client("v311-publisher", true).await;
    publisher
        .publish("v31/queue", QoS::AtLeastOnce, b"kept", false, 1)
        .await;

    let mut back = broker.raw().await;
    back.send(&connect_31("v31-durable", false)).await;
    assert_eq!(back.recv_frame().await, Some(vec![0x20, 2, 0, 0]));
    let message = expect_message(&mut back, "v31/queue", b"kept").await;
    assert_eq!(message.qos, QoS::AtLeastOnce);
}

/// A 3.1 subscriber receives a 3.1.1 client's messages at every QoS, and the other way
/// round.
#[tokio::test]
async fn mqtt_3_1_and_3_1_1_clients_exchange_messages_both_ways() {
    let broker = TestBroker::start().await;
    let mut old = broker.raw().await;
    old.send(&connect_31("v31-client", true)).await;
    assert_eq!(old.recv_frame().await, Some(vec![0x20, 2, 0, 0]));
    old.subscribe(1, "mixed/to-old", QoS::ExactlyOnce).await;
    let mut new = broker.client("v311-client", true).await;
    new.subscribe(1, "mixed/to-new", QoS::ExactlyOnce).await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let pkid = 10 + i as u16;
        new.publish("mixed/to-old", qos, b"from 3.1.1", false, pkid)
            .await;
        assert_eq!(
            expect_message(&mut old, "mixed/to-old", b"from 3.1.1")
                .await
                .qos,
            qos
        );
        old.publish("mixed/to-new", qos, b"from 3.1", false, pkid)
            .await;
        assert_eq!(
            expect_message(&mut new, "mixed/to-new", b"from 3.1")
                .await
                .qos,
            qos
        );
    }
}
