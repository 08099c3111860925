//! How messages travel on a connection: topic aliases both ways, and the limits an
//! MQTT 5.0 client sets on what it is sent (Maximum Packet Size, Receive Maximum).

use crate::common::TestBroker;
use crate::v5::*;

/// MQTT 5.0 §3.3.2.3.4: a client may set a topic alias (1..=Topic Alias Maximum) with a
/// PUBLISH naming the topic, publish later with an empty topic and the alias, and map
/// the alias to another topic; subscribers see the full topics.
#[tokio::test]
async fn inbound_topic_alias_names_the_topic() {
    let broker = TestBroker::start().await;
    let mut subscriber = Client::new(&broker, "alias-sub").await;
    subscriber.subscribe(1, &[("alias/#", 1)]).await;
    let (mut publisher, ack) = Client::connect(&broker, &Connect::new("alias-pub")).await;
    let max = ack
        .props
        .u16(TOPIC_ALIAS_MAXIMUM)
        .expect("Topic Alias Maximum");
    let alias = |n| Props::new().u16(TOPIC_ALIAS, n);
    publisher
        .publish(&Publish::new("alias/t", 1, b"one").props(alias(max)))
        .await;
    publisher
        .publish(&Publish::new("", 1, b"two").pkid(2).props(alias(max)))
        .await;
    publisher
        .publish(
            &Publish::new("alias/u", 1, b"three")
                .pkid(3)
                .props(alias(max)),
        )
        .await;
    publisher
        .publish(&Publish::new("", 0, b"four").props(alias(max)))
        .await;
    publisher
        .publish(&Publish::new("alias/v", 1, b"five").pkid(4).props(alias(1)))
        .await;
    publisher
        .publish(&Publish::new("", 1, b"six").pkid(5).props(alias(max)))
        .await;
    for (topic, payload) in [
        ("alias/t", &b"one"[..]),
        ("alias/t", b"two"),
        ("alias/u", b"three"),
        ("alias/u", b"four"),
        ("alias/v", b"five"),
        ("alias/u", b"six"),
    ] {
        let got = subscriber.expect_and_complete(topic, payload).await;
        assert!(got.props.get(TOPIC_ALIAS).is_none(), "{got:?}");
    }
    broker.stop().await;
}

/// (topic as sent, alias, resolved topic) of a PUBLISH received, its alias checked to
/// be within `max`. The client resolves aliases as it decodes, and fails on an empty
/// topic without an alias or an alias used before it was set.
fn resolve(p: &Message, max: u16) -> (String, Option<u16>, String) {
    let alias = p.alias();
    if let Some(n) = alias {
        assert!((1..=max).contains(&n), "alias {n} above {max}: {p:?}");
    }
    (p.topic_field.clone(), alias, p.topic.clone())
}

/// MQTT 5.0 §3.3.2.3.4 and §3.1.2.11.5: towards a client whose CONNECT allowed N topic
/// aliases, the server names the first N topics it sends with aliases 1..=N and then
/// sends an empty topic with the alias for them; other topics go out in full.
#[tokio::test]
async fn outbound_topic_aliases_within_the_clients_maximum() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("alias-out").topic_alias_maximum(2);
    let (mut subscriber, _) = Client::connect(&broker, &connect).await;
    subscriber.subscribe(1, &[("out/#", 0)]).await;
    let mut publisher = Client::new(&broker, "alias-out-pub").await;
    let topics = ["out/first", "out/second", "out/third"];
    let mut seen = Vec::new();
    for round in 0..2 {
        for topic in topics {
            let payload = format!("{topic} {round}");
            publisher
                .publish(&Publish::new(topic, 0, payload.as_bytes()))
                .await;
            let got = subscriber.expect_publish().await;
            assert_eq!(got.payload, payload.as_bytes());
            let (sent, alias, resolved) = resolve(&got, 2);
            assert_eq!(resolved, topic);
            seen.push((sent, alias));
        }
    }
    let s = |t: &str| t.to_string();
    assert_eq!(
        seen,
        [
            (s("out/first"), Some(1)),
            (s("out/second"), Some(2)),
            (s("out/third"), None),
            (s(""), Some(1)),
            (s(""), Some(2)),
            (s("out/third"), None),
        ]
    );
    broker.stop().await;
}

/// The server uses at most max_topic_alias aliases towards a client, whatever the
/// client allows, and none towards a client that allowed none (MQTT 5.0 §3.1.2.11.5:
/// absent Topic Alias Maximum means 0 [MQTT-3.1.2-27]).
#[tokio::test]
async fn outbound_topic_aliases_are_capped_by_the_server_and_off_by_default() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_topic_alias = 1).await;
    let connect = Connect::new("alias-many").topic_alias_maximum(50);
    let (mut many, _) = Client::connect(&broker, &connect).await;
    many.subscribe(1, &[("cap/#", 0)]).await;
    let mut none = Client::new(&broker, "alias-none").await;
    none.subscribe(1, &[("cap/#", 0)]).await;
    let mut publisher = Client::new(&broker, "alias-cap-pub").await;
    for round in 0..2 {
        for topic in ["cap/a", "cap/b", "cap/c"] {
            publisher.publish(&Publish::new(topic, 0, b"m")).await;
            let got = many.expect_publish().await;
            let (_, alias, resolved) = resolve(&got, 1);
            assert_eq!(resolved, topic, "round {round}");
            assert_eq!(alias.is_some(), topic == "cap/a", "{got:?}");
            let plain = none.expect_publish().await;
            assert_eq!(plain.topic, topic);
            assert!(plain.props.get(TOPIC_ALIAS).is_none(), "{plain:?}");
        }
    }
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.4 [MQTT-3.1.2-25]: a message that would make a PUBLISH larger
/// than the client's Maximum Packet Size is not sent to that client — and at QoS 1 it
/// does not stay in flight (the client's Receive Maximum 1 is not used up by it) —
/// while other subscribers get it.
#[tokio::test]
async fn message_above_the_clients_maximum_packet_size_is_dropped_for_that_client() {
    let broker = TestBroker::start().await;
    let connect = Connect::new("small")
        .maximum_packet_size(100)
        .receive_maximum(1);
    let (mut small, _) = Client::connect(&broker, &connect).await;
    small.subscribe(1, &[("size/#", 1)]).await;
    let mut large = Client::new(&broker, "large").await;
    large.subscribe(1, &[("size/#", 1)]).await;
    let mut publisher = Client::new(&broker, "size-pub").await;
    let big = vec![b'B'; 200];
    publisher.publish(&Publish::new("size/big", 1, &big)).await;
    publisher
        .publish(&Publish::new("size/small", 1, b"s1").pkid(2))
        .await;
    publisher
        .publish(&Publish::new("size/small", 1, b"s2").pkid(3))
        .await;

    large.expect_and_complete("size/big", &big).await;
    large.expect_and_complete("size/small", b"s1").await;
    large.expect_and_complete("size/small", b"s2").await;
    let p = small.expect_and_complete("size/small", b"s1").await;
    assert!(p.raw.len() <= 100);
    small.expect_and_complete("size/small", b"s2").await;
    small.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-9] and §4.9: the server keeps at most the client's
/// Receive Maximum QoS 1/2 PUBLISHes unacknowledged towards it; the rest follow as
/// acknowledgements arrive, in order.
#[tokio::test]
async fn the_clients_receive_maximum_limits_unacknowledged_messages() {
    let broker = TestBroker::start().await;
    let (mut slow, _) = Client::connect(&broker, &Connect::new("slow").receive_maximum(2)).await;
    slow.subscribe(1, &[("flow/#", 2)]).await;
    let mut publisher = Client::new(&broker, "flow-pub").await;
    for i in 1..=5u16 {
        let qos = if i % 2 == 0 { 2 } else { 1 };
        publisher
            .publish(&Publish::new("flow/t", qos, &[i as u8]).pkid(i))
            .await;
    }
    let first = slow.expect_publish().await;
    let second = slow.expect_publish().await;
    assert_eq!((first.payload[0], second.payload[0]), (1, 2));
    slow.expect_nothing(QUIET).await;
    // PUBACK for the first frees a place.
    slow.complete(&first).await;
    let third = slow.expect_publish().await;
    assert_eq!(third.payload[0], 3);
    slow.expect_nothing(QUIET).await;
    // A QoS 2 message holds its place until PUBCOMP, not PUBREC.
    let pkid = second.pkid.expect("QoS 2");
    slow.send(&ack(PUBREC, pkid)).await;
    slow.expect_ack(PUBREL, pkid).await;
    slow.expect_nothing(QUIET).await;
    slow.send(&ack(PUBCOMP, pkid)).await;
    let fourth = slow.expect_publish().await;
    assert_eq!(fourth.payload[0], 4);
    // The fourth's exchange completes while the third waits: that frees a place.
    slow.complete(&fourth).await;
    let fifth = slow.expect_publish().await;
    assert_eq!(fifth.payload[0], 5);
    slow.complete(&third).await;
    slow.complete(&fifth).await;
    slow.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §4.9: the window towards a client is the smaller of its Receive Maximum and
/// the server's max_inflight_messages.
#[tokio::test]
async fn the_servers_inflight_limit_caps_a_larger_receive_maximum() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_inflight_messages.0 = 2).await;
    let (mut wide, _) = Client::connect(&broker, &Connect::new("wide").receive_maximum(100)).await;
    wide.subscribe(1, &[("cap/#", 1)]).await;
    let mut publisher = Client::new(&broker, "cap-pub").await;
    for i in 1..=4u16 {
        publisher
            .publish(&Publish::new("cap/t", 1, &[i as u8]).pkid(i))
            .await;
    }
    let first = wide.expect_publish().await;
    let _second = wide.expect_publish().await;
    wide.expect_nothing(QUIET).await;
    wide.complete(&first).await;
    assert_eq!(wide.expect_publish().await.payload, [3]);
    broker.stop().await;
}

/// MQTT 5.0 §3.3.2.3.4: topic aliases towards a client are set up afresh on each
/// connection: after reconnecting to its session, a topic the server had aliased is
/// sent in full again before its alias is used.
#[tokio::test]
async fn outbound_topic_aliases_start_afresh_on_a_new_connection() {
    let broker = TestBroker::start().await;
    let connect = || Connect::resume("alias-back", 30).topic_alias_maximum(5);
    let (mut subscriber, _) = Client::connect(&broker, &connect()).await;
    subscriber.subscribe(1, &[("again/#", 1)]).await;
    let mut publisher = Client::new(&broker, "alias-back-pub").await;
    publisher.publish(&Publish::new("again/t", 1, b"1")).await;
    publisher
        .publish(&Publish::new("again/t", 1, b"2").pkid(2))
        .await;
    let first = subscriber.expect_and_complete("again/t", b"1").await;
    assert_eq!(first.alias(), Some(1));
    let second = subscriber.expect_and_complete("again/t", b"2").await;
    assert_eq!(second.topic_field, "", "{second:?}");
    assert_eq!(second.alias(), Some(1));
    subscriber.disconnect().await;

    // One message waits in the session, one comes live.
    publisher
        .publish(&Publish::new("again/t", 1, b"3").pkid(3))
        .await;
    let (mut subscriber, ack) = Client::connect(&broker, &connect()).await;
    assert!(ack.session_present);
    let third = subscriber.expect_publish().await;
    subscriber.complete(&third).await;
    assert_eq!(resolve(&third, 5).2, "again/t", "{third:?}");
    publisher
        .publish(&Publish::new("again/t", 1, b"4").pkid(4))
        .await;
    let fourth = subscriber.expect_publish().await;
    assert_eq!(resolve(&fourth, 5).2, "again/t", "{fourth:?}");
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.4 [MQTT-3.1.2-25]: a retained message too large for the client's
/// Maximum Packet Size is left out when it subscribes, and takes no place in its
/// Receive Maximum: the retained messages that fit still arrive.
#[tokio::test]
async fn retained_message_above_the_clients_maximum_packet_size_is_left_out() {
    let broker = TestBroker::start().await;
    let mut publisher = Client::new(&broker, "ret-size-pub").await;
    publisher
        .publish(&Publish::new("rs/a", 1, &[b'A'; 300]).retain())
        .await;
    publisher
        .publish(&Publish::new("rs/b", 1, b"small").pkid(2).retain())
        .await;
    let connect = Connect::new("ret-small")
        .maximum_packet_size(100)
        .receive_maximum(1);
    let (mut client, _) = Client::connect(&broker, &connect).await;
    client.subscribe(1, &[("rs/#", 1)]).await;
    let got = client.expect_and_complete("rs/b", b"small").await;
    assert!(got.retain);
    client.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-9] with §4.4: messages left unacknowledged on a lost
/// connection are sent again on resumption, but never more at once than the Receive
/// Maximum of the new connection; the rest follow as acknowledgements arrive.
#[tokio::test]
async fn resent_messages_respect_the_new_connections_receive_maximum() {
    let broker = TestBroker::start().await;
    let connect =
        |receive_maximum| Connect::resume("shrinking", 30).receive_maximum(receive_maximum);
    let (mut client, _) = Client::connect(&broker, &connect(5)).await;
    client.subscribe(1, &[("shrink/#", 1)]).await;
    let mut publisher = Client::new(&broker, "shrinking-pub").await;
    for i in 1..=5u16 {
        publisher
            .publish(&Publish::new("shrink/t", 1, &[i as u8]).pkid(i))
            .await;
    }
    for i in 1..=5u8 {
        assert_eq!(client.expect_publish().await.payload, [i]);
    }
    client.drop_connection().await;

    let (mut back, ack) = Client::connect(&broker, &connect(2)).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    while let Some(packet) = back.recv_within(QUIET).await {
        match packet {
            Packet::Publish(p) => got.push(p),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    assert_eq!(got.len(), 2, "Receive Maximum 2, got {got:?}");
    // Each acknowledgement lets one more through, in order, until all five are done.
    let mut payloads: Vec<u8> = got.iter().map(|p| p.payload[0]).collect();
    while let Some(p) = got.first().cloned() {
        got.remove(0);
        back.complete(&p).await;
        if let Some(Packet::Publish(next)) = back.recv_within(QUIET).await {
            payloads.push(next.payload[0]);
            got.push(next);
        }
    }
    assert_eq!(payloads, [1, 2, 3, 4, 5]);
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.4 [MQTT-3.1.2-25]: a message left in flight on a lost connection
/// that is too large for the Maximum Packet Size of the resuming connection is
/// discarded "as if it had completed sending": it does not hold the Receive Maximum,
/// and later messages flow.
#[tokio::test]
async fn a_resent_message_above_the_new_maximum_packet_size_is_discarded() {
    let broker = TestBroker::start().await;
    let connect = |max_packet_size| {
        Connect::resume("narrowing", 30)
            .receive_maximum(1)
            .maximum_packet_size(max_packet_size)
    };
    let (mut client, _) = Client::connect(&broker, &connect(10_000)).await;
    client.subscribe(1, &[("narrow/#", 1)]).await;
    let mut publisher = Client::new(&broker, "narrowing-pub").await;
    let big = vec![b'B'; 500];
    publisher
        .publish(&Publish::new("narrow/big", 1, &big))
        .await;
    assert_eq!(client.expect_publish().await.payload, big);
    client.drop_connection().await;

    let (mut back, ack) = Client::connect(&broker, &connect(100)).await;
    assert!(ack.session_present);
    publisher
        .publish(&Publish::new("narrow/small", 1, b"s").pkid(2))
        .await;
    back.expect_and_complete("narrow/small", b"s").await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}

/// MQTT 5.0 §3.1.2.11.4: messages queued for an offline session that are too large for
/// the Maximum Packet Size the client resumes with are discarded; those that fit are
/// delivered.
#[tokio::test]
async fn queued_messages_above_the_new_maximum_packet_size_are_discarded() {
    let broker = TestBroker::start().await;
    let connect = |max_packet_size| {
        Connect::resume("queued-narrow", 30)
            .receive_maximum(1)
            .maximum_packet_size(max_packet_size)
    };
    let (mut client, _) = Client::connect(&broker, &connect(10_000)).await;
    client.subscribe(1, &[("qn/#", 2)]).await;
    client.disconnect().await;
    let mut publisher = Client::new(&broker, "queued-narrow-pub").await;
    publisher
        .publish(&Publish::new("qn/big", 2, &[b'B'; 500]))
        .await;
    publisher
        .publish(&Publish::new("qn/small", 1, b"s").pkid(2))
        .await;
    let (mut back, ack) = Client::connect(&broker, &connect(100)).await;
    assert!(ack.session_present);
    back.expect_and_complete("qn/small", b"s").await;
    back.expect_nothing(QUIET).await;
    broker.stop().await;
}
