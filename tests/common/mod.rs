//! Test harness shared by tests/ and conformance/: a broker on an ephemeral loopback
//! port, and a raw-bytes MQTT client that decodes what it receives with mqttbytes, an
//! implementation independent of Herald's codec.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::BytesMut;
use herald::storage::MemoryStorage;
use herald::{Config, Server};
use mqttbytes::v4;
use mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(5);

/// Logs from the broker, shown when a test fails (`RUST_LOG` chooses the level).
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A broker running in this process on 127.0.0.1 with an ephemeral port.
pub struct TestBroker {
    pub addr: SocketAddr,
    pub config: Config,
    pub storage: Arc<MemoryStorage>,
    server: Option<Server>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        TestBroker::start_with(|_| {}).await
    }

    /// Starts with the test defaults changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestBroker {
        init_logging();
        let mut config = Config::default();
        config.listeners[0].bind = "127.0.0.1:0".parse().unwrap();
        // No $SYS messages among what tests count, unless a test asks for them.
        config.mqtt.sys_interval = 0;
        tweak(&mut config);
        TestBroker::launch(config, Arc::new(MemoryStorage::default())).await
    }

    /// Starts with an HTTP listener besides the TCP one, and the test defaults changed
    /// by `tweak`; returns the HTTP listener's address too.
    pub async fn start_with_http(tweak: impl FnOnce(&mut Config)) -> (TestBroker, SocketAddr) {
        let broker = TestBroker::start_with(|config| {
            let bind = "127.0.0.1:0".parse().expect("an address");
            config.listeners.push(herald::config::Listener::new(
                herald::config::ListenerProtocol::Http,
                bind,
            ));
            tweak(config);
        })
        .await;
        let http = broker.listener(1);
        (broker, http)
    }

    async fn launch(config: Config, storage: Arc<MemoryStorage>) -> TestBroker {
        let server = Server::start_with_storage(&config, storage.clone())
            .await
            .expect("broker starts");
        TestBroker {
            addr: server.local_addrs()[0],
            config,
            storage,
            server: Some(server),
        }
    }

    /// Stops gracefully and starts again on the same port with the same storage.
    pub async fn restart(mut self) -> TestBroker {
        self.stop_server().await;
        let mut config = self.config.clone();
        config.listeners[0].bind = self.addr;
        TestBroker::launch(config, self.storage.clone()).await
    }

    pub async fn stop(mut self) {
        self.stop_server().await;
    }

    async fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// The bound address of the configuration's listener `index` (0 is `addr`).
    pub fn listener(&self, index: usize) -> SocketAddr {
        self.server.as_ref().expect("running").local_addrs()[index]
    }

    pub async fn raw(&self) -> RawClient {
        RawClient::open(self.addr).await
    }

    /// A raw client that has connected with `client_id` and got CONNACK 0.
    pub async fn client(&self, client_id: &str, clean_session: bool) -> RawClient {
        let mut client = self.raw().await;
        let ack = client.connect(client_id, clean_session).await;
        assert_eq!(ack.code, v4::ConnectReturnCode::Success, "{ack:?}");
        client
    }
}

/// An MQTT client made of raw bytes, for what no client library will send.
pub struct RawClient {
    stream: TcpStream,
    input: BytesMut,
}

impl RawClient {
    pub async fn open(addr: SocketAddr) -> RawClient {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            input: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Encodes and sends `packet` with mqttbytes.
    pub async fn send_packet(&mut self, packet: impl Encode) {
        let mut buf = BytesMut::new();
        packet.encode(&mut buf);
        self.send(&buf).await;
    }

    /// Sends CONNECT and returns the CONNACK.
    pub async fn connect(&mut self, client_id: &str, clean_session: bool) -> v4::ConnAck {
        let mut connect = v4::Connect::new(client_id);
        connect.clean_session = clean_session;
        self.send_packet(connect).await;
        self.expect_connack().await
    }

    /// Sends CONNECT with a user name and password (keep alive 30 s) and returns the
    /// CONNACK.
    pub async fn login(
        &mut self,
        client_id: &str,
        clean_session: bool,
        user: &str,
        password: &str,
    ) -> v4::ConnAck {
        let mut connect = connect_packet(client_id, clean_session, 30);
        connect.set_login(user, password);
        self.send_packet(connect).await;
        self.expect_connack().await
    }

    pub async fn expect_connack(&mut self) -> v4::ConnAck {
        match self.recv().await {
            Some(v4::Packet::ConnAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next packet from the broker, or `None` once it closed the connection.
    /// Panics if nothing arrives within [`WAIT`].
    pub async fn recv(&mut self) -> Option<v4::Packet> {
        tokio::time::timeout(WAIT, self.next_packet())
            .await
            .expect("a packet or close within the wait")
    }

    /// The next packet if one arrives within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<v4::Packet> {
        tokio::time::timeout(wait, self.next_packet())
            .await
            .ok()
            .flatten()
    }

    async fn next_packet(&mut self) -> Option<v4::Packet> {
        loop {
            match v4::read(&mut self.input, 1 << 28) {
                Ok(packet) => return Some(packet),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("broker sent bytes mqttbytes cannot decode: {e:?}"),
            }
            match self.stream.read_buf(&mut self.input).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn expect_publish(&mut self) -> v4::Publish {
        match self.recv().await {
            Some(v4::Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts the broker closes the connection within [`WAIT`] without sending more.
    pub async fn expect_closed(&mut self) {
        if let Some(packet) = self.recv().await {
            panic!("expected the connection to close, got {packet:?}");
        }
    }

    /// Asserts nothing arrives for `wait` and the connection stays open.
    pub async fn expect_nothing(&mut self, wait: Duration) {
        match tokio::time::timeout(wait, self.next_packet()).await {
            Err(_) => {}
            Ok(Some(packet)) => panic!("expected nothing, got {packet:?}"),
            Ok(None) => panic!("expected nothing, but the connection closed"),
        }
    }

    /// The next packet's bytes exactly as sent (fixed header included, not decoded), or
    /// `None` once the broker closed the connection. Panics if nothing arrives within
    /// [`WAIT`].
    pub async fn recv_frame(&mut self) -> Option<Vec<u8>> {
        let next = async {
            loop {
                let mut len = 0usize;
                for (i, byte) in self.input.iter().skip(1).take(4).enumerate() {
                    len |= usize::from(byte & 0x7f) << (7 * i);
                    if byte & 0x80 == 0 {
                        let size = i + 2 + len;
                        if self.input.len() >= size {
                            return Some(self.input.split_to(size).to_vec());
                        }
                        break;
                    }
                }
                match self.stream.read_buf(&mut self.input).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(WAIT, next)
            .await
            .expect("a packet or close within the wait")
    }

    /// Closes the sending side without DISCONNECT, as a dropped network connection looks
    /// to the broker, and keeps reading: [`RawClient::expect_closed`] then shows the
    /// broker has finished with the connection.
    pub async fn close_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    pub async fn subscribe(
        &mut self,
        pkid: u16,
        filter: &str,
        qos: QoS,
    ) -> Vec<v4::SubscribeReasonCode> {
        let mut subscribe = v4::Subscribe::new(filter, qos);
        subscribe.pkid = pkid;
        self.send_packet(subscribe).await;
        match self.recv().await {
            Some(v4::Packet::SubAck(ack)) => {
                assert_eq!(ack.pkid, pkid);
                ack.return_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS handshake as a well-behaved client.
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        payload: &[u8],
        retain: bool,
        pkid: u16,
    ) {
        let mut publish = v4::Publish::new(topic, qos, payload.to_vec());
        publish.retain = retain;
        publish.pkid = if qos == QoS::AtMostOnce { 0 } else { pkid };
        self.send_packet(publish).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => match self.recv().await {
                Some(v4::Packet::PubAck(ack)) => assert_eq!(ack.pkid, pkid),
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                match self.recv().await {
                    Some(v4::Packet::PubRec(rec)) => assert_eq!(rec.pkid, pkid),
                    other => panic!("expected PUBREC, got {other:?}"),
                }
                self.send_packet(v4::PubRel::new(pkid)).await;
                match self.recv().await {
                    Some(v4::Packet::PubComp(comp)) => assert_eq!(comp.pkid, pkid),
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
            }
        }
    }

    /// Receives `count` PUBLISH packets as a well-behaved subscriber, completing each
    /// QoS 1/2 exchange (the broker may send more PUBLISH packets before a PUBREL, and
    /// every PUBREL due is answered before this returns); returns them in the order
    /// they arrived.
    pub async fn receive_completing(&mut self, count: usize) -> Vec<v4::Publish> {
        let mut got = Vec::new();
        let mut awaiting_release = std::collections::BTreeSet::new();
        while got.len() < count || !awaiting_release.is_empty() {
            match self.recv().await {
                Some(v4::Packet::Publish(publish)) => {
                    match publish.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => self.send_packet(v4::PubAck::new(publish.pkid)).await,
                        QoS::ExactlyOnce => {
                            self.send_packet(v4::PubRec::new(publish.pkid)).await;
                            awaiting_release.insert(publish.pkid);
                        }
                    }
                    got.push(publish);
                }
                Some(v4::Packet::PubRel(rel)) => {
                    assert!(
                        awaiting_release.remove(&rel.pkid),
                        "PUBREL {} unexpected",
                        rel.pkid
                    );
                    self.send_packet(v4::PubComp::new(rel.pkid)).await;
                }
                other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
            }
        }
        got
    }

    pub async fn disconnect(mut self) {
        self.send(&[0xe0, 0x00]).await;
        let _ = self.stream.shutdown().await;
    }
}

/// mqttbytes packets that can be written to the wire.
pub trait Encode {
    fn encode(&self, buf: &mut BytesMut);

    /// The packet's bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.to_vec()
    }
}

macro_rules! encodable {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, buf: &mut BytesMut) {
                self.write(buf).expect("mqttbytes encodes");
            }
        }
    )*};
}

encodable!(
    v4::Connect,
    v4::Publish,
    v4::PubAck,
    v4::PubRec,
    v4::PubRel,
    v4::PubComp,
    v4::Subscribe,
    v4::Unsubscribe,
    v4::PingReq,
    v4::Disconnect
);

/// A raw CONNECT for clean session `clean_session` and keep alive `keep_alive`.
pub fn connect_packet(client_id: &str, clean_session: bool, keep_alive: u16) -> v4::Connect {
    let mut connect = v4::Connect::new(client_id);
    connect.clean_session = clean_session;
    connect.keep_alive = keep_alive;
    connect
}
pub mod pki;
pub mod process;
pub mod tools;
pub mod web;
pub mod ws;

/// A whole packet from its first byte (type and flags) and body, the remaining length
/// encoded between, for malformed input no client library would send.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field of arbitrary bytes.
pub fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// The next PUBLISH, which must carry `topic` and `payload`.
pub async fn expect_message(client: &mut RawClient, topic: &str, payload: &[u8]) -> v4::Publish {
    let publish = client.expect_publish().await;
    assert_eq!(publish.topic, topic, "{publish:?}");
    assert_eq!(&publish.payload[..], payload, "{publish:?}");
    publish
}

/// QoS 1 PUBLISHes with packet ids 1..=`count` to `topic`, each carrying its id as the
/// payload (big-endian), encoded back to back: a burst sent in one write.
pub fn qos1_burst(topic: &str, count: u16) -> BytesMut {
    let mut burst = BytesMut::new();
    for pkid in 1..=count {
        let mut publish = v4::Publish::new(topic, QoS::AtLeastOnce, pkid.to_be_bytes().to_vec());
        publish.pkid = pkid;
        publish.encode(&mut burst);
    }
    burst
}
