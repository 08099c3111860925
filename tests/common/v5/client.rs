//! A raw MQTT 5.0 client that checks every packet it receives with [`decode`].

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::common::{RawClient, TestBroker, WAIT};

/// How long a test waits to show that something does not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

/// An MQTT 5.0 client made of raw bytes, decoding what it receives with [`decode`].
pub struct Client {
    /// The connection underneath, to read a frame undecoded or close it half-way.
    pub raw: RawClient,
    aliases: HashMap<u16, String>,
    alias_max: u16,
    max_packet_size: Option<u32>,
}

impl Client {
    /// A connection with nothing sent on it yet, to a client that announced no limits.
    pub async fn open(broker: &TestBroker) -> Client {
        Client {
            raw: broker.raw().await,
            aliases: HashMap::new(),
            alias_max: 0,
            max_packet_size: None,
        }
    }

    /// Sends `connect` and returns what answers it, without judging it.
    pub async fn try_connect(broker: &TestBroker, connect: &Connect) -> (Client, ConnAck) {
        let mut client = Client::open(broker).await;
        client.alias_max = connect.topic_alias_maximum.unwrap_or(0);
        client.max_packet_size = connect.maximum_packet_size;
        client.send(&connect.bytes()).await;
        let ack = client.expect_connack().await;
        (client, ack)
    }

    /// Sends `connect` and asserts CONNACK 0x00.
    pub async fn connect(broker: &TestBroker, connect: &Connect) -> (Client, ConnAck) {
        let (client, ack) = Client::try_connect(broker, connect).await;
        assert_eq!(ack.reason, SUCCESS, "{ack:?}");
        (client, ack)
    }

    /// A connected client with clean start and no session expiry.
    pub async fn new(broker: &TestBroker, client_id: &str) -> Client {
        Client::connect(broker, &Connect::new(client_id)).await.0
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.raw.send(bytes).await;
    }

    fn decode(&mut self, frame: Vec<u8>) -> Packet {
        if let Some(max) = self.max_packet_size {
            assert!(
                frame.len() <= max as usize,
                "the broker sent a {}-byte packet to a client whose Maximum Packet Size is {max}",
                frame.len()
            );
        }
        decode(frame, &mut self.aliases, self.alias_max)
    }

    /// The next packet, or `None` once the broker closed the connection; panics if
    /// nothing arrives within [`WAIT`].
    pub async fn recv(&mut self) -> Option<Packet> {
        let frame = self.raw.recv_frame().await?;
        Some(self.decode(frame))
    }

    /// The next packet if one arrives within `wait` (at most [`WAIT`]).
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        assert!(wait < WAIT);
        let frame = tokio::time::timeout(wait, self.raw.recv_frame())
            .await
            .ok()
            .flatten()?;
        Some(self.decode(frame))
    }

    /// Asserts nothing arrives for `wait` and the connection stays open.
    pub async fn expect_nothing(&mut self, wait: Duration) {
        assert!(wait < WAIT);
        match tokio::time::timeout(wait, self.raw.recv_frame()).await {
            Err(_) => {}
            Ok(Some(frame)) => panic!("expected nothing, got {:?}", self.decode(frame)),
            Ok(None) => panic!("expected nothing, but the connection closed"),
        }
    }

    /// Asserts the broker closes the connection within [`WAIT`] without sending more.
    pub async fn expect_closed(&mut self) {
        if let Some(packet) = self.recv().await {
            panic!("expected the connection to close, got {packet:?}");
        }
    }

    pub async fn expect_connack(&mut self) -> ConnAck {
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn expect_publish(&mut self) -> Message {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next PUBLISH, which must carry `topic` and `payload`.
    pub async fn expect_message(&mut self, topic: &str, payload: &[u8]) -> Message {
        let p = self.expect_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            (topic, payload),
            "{p:?}"
        );
        p
    }

    /// Like [`Client::expect_message`], then acknowledged as [`Client::complete`] does.
    pub async fn expect_and_complete(&mut self, topic: &str, payload: &[u8]) -> Message {
        let p = self.expect_message(topic, payload).await;
        self.complete(&p).await;
        p
    }

    /// The next packet, which must be the acknowledgement `first` (PUBACK ... PUBCOMP)
    /// for `pkid`.
    pub async fn expect_ack(&mut self, first: u8, pkid: u16) -> Ack {
        let ack = match (first, self.recv().await) {
            (PUBACK, Some(Packet::PubAck(a)))
            | (PUBREC, Some(Packet::PubRec(a)))
            | (PUBREL, Some(Packet::PubRel(a)))
            | (PUBCOMP, Some(Packet::PubComp(a))) => a,
            (_, other) => panic!("expected acknowledgement {first:#04x}, got {other:?}"),
        };
        assert_eq!(ack.pkid, pkid, "{ack:?}");
        ack
    }

    pub async fn expect_suback(&mut self, pkid: u16) -> SubAck {
        match self.recv().await {
            Some(Packet::SubAck(ack)) => {
                assert_eq!(ack.pkid, pkid, "{ack:?}");
                ack
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn expect_unsuback(&mut self, pkid: u16) -> SubAck {
        match self.recv().await {
            Some(Packet::UnsubAck(ack)) => {
                assert_eq!(ack.pkid, pkid, "{ack:?}");
                ack
            }
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// The next packet must be a DISCONNECT with `reason`, after which the broker must
    /// close the connection having sent nothing more. A server's DISCONNECT never
    /// carries a Session Expiry Interval.
    pub async fn expect_disconnect(&mut self, reason: u8) -> Disconnect {
        let disconnect = match self.recv().await {
            Some(Packet::Disconnect(d)) => d,
            other => panic!("expected DISCONNECT {reason:#04x}, got {other:?}"),
        };
        assert_eq!(disconnect.reason, reason, "{disconnect:?}");
        assert!(
            !disconnect.props.has(SESSION_EXPIRY_INTERVAL),
            "server DISCONNECT with a Session Expiry Interval: {disconnect:?}"
        );
        self.expect_closed().await;
        disconnect
    }

    /// Like [`Client::expect_disconnect`], and the DISCONNECT must explain itself with a
    /// Reason String, which is returned.
    pub async fn expect_disconnect_explained(&mut self, reason: u8) -> String {
        let d = self.expect_disconnect(reason).await;
        let text = d
            .props
            .str(REASON_STRING)
            .unwrap_or_else(|| panic!("DISCONNECT {reason:#04x} without a Reason String: {d:?}"));
        assert!(!text.is_empty(), "{d:?}");
        text.to_string()
    }

    /// SUBSCRIBE with no properties; returns the SUBACK's reason codes.
    pub async fn subscribe(&mut self, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.subscribe_with(pkid, &Props::new(), filters).await
    }

    /// SUBSCRIBE with `props`; returns the SUBACK's reason codes, one per filter.
    pub async fn subscribe_with(
        &mut self,
        pkid: u16,
        props: &Props,
        filters: &[(&str, u8)],
    ) -> Vec<u8> {
        self.send(&subscribe(pkid, props, filters)).await;
        let ack = self.expect_suback(pkid).await;
        assert_eq!(ack.codes.len(), filters.len(), "{ack:?}");
        ack.codes
    }

    /// Subscribes to `filter` with a Subscription Identifier.
    pub async fn subscribe_id(&mut self, pkid: u16, id: u32, filter: &str, options: u8) -> u8 {
        let props = Props::new().varint(SUBSCRIPTION_IDENTIFIER, id);
        self.subscribe_with(pkid, &props, &[(filter, options)])
            .await[0]
    }

    pub async fn unsubscribe(&mut self, pkid: u16, filters: &[&str]) -> Vec<u8> {
        self.send(&unsubscribe(pkid, &Props::new(), filters)).await;
        self.expect_unsuback(pkid).await.codes
    }

    /// Sends `publish` and completes its QoS exchange as a well-behaved client; each
    /// acknowledgement must be a success.
    pub async fn publish(&mut self, publish: &Publish) {
        self.send(&publish.bytes()).await;
        let steps: &[u8] = match publish.qos {
            0 => &[],
            1 => &[PUBACK],
            _ => &[PUBREC, PUBCOMP],
        };
        for &step in steps {
            let got = self.expect_ack(step, publish.pkid).await;
            assert_eq!(got.reason, SUCCESS, "{got:?}");
            if step == PUBREC {
                self.send(&ack(PUBREL, publish.pkid)).await;
            }
        }
    }

    /// Acknowledges a delivery as its QoS requires, QoS 2 through to PUBCOMP.
    pub async fn complete(&mut self, message: &Message) {
        match (message.qos, message.pkid) {
            (1, Some(pkid)) => self.send(&ack(PUBACK, pkid)).await,
            (2, Some(pkid)) => {
                self.send(&ack(PUBREC, pkid)).await;
                self.expect_ack(PUBREL, pkid).await;
                self.send(&ack(PUBCOMP, pkid)).await;
            }
            _ => {}
        }
    }

    /// PINGREQ, and asserts PINGRESP is the next packet: everything sent before has
    /// been handled.
    pub async fn ping(&mut self) {
        self.send(&PINGREQ).await;
        match self.recv().await {
            Some(Packet::PingResp) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// DISCONNECT 0x00, then waits until the broker has closed the connection.
    pub async fn disconnect(mut self) {
        self.send(&NORMAL_DISCONNECT).await;
        self.expect_closed().await;
    }

    /// Drops the connection as a network failure would (no DISCONNECT) and waits until
    /// the broker has finished with it.
    pub async fn drop_connection(mut self) {
        self.raw.close_write().await;
        self.expect_closed().await;
    }
}
