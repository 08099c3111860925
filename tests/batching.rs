//! Outgoing packets are written in batches: many small packets, one write per wake-up.
//!
//! The connection handler runs over any byte stream, so this test serves one client over
//! an in-memory stream that counts the handler's writes, while a publisher floods it
//! through the same broker.

mod common;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::BytesMut;
use herald::acl::AccessControl;
use herald::auth::Authenticator;
use herald::broker::Broker;
use herald::config::Config;
use herald::connection::{serve, Context};
use herald::storage::MemoryStorage;
use mqttbytes::v4;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// A stream that counts the writes made to it.
struct CountingStream {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn encode(packets: &[&dyn common::Encode]) -> BytesMut {
    let mut buf = BytesMut::new();
    for packet in packets {
        packet.encode(&mut buf);
    }
    buf
}

/// Every whole packet in `buf`, decoded by mqttbytes.
fn take_packets(buf: &mut BytesMut) -> Vec<v4::Packet> {
    std::iter::from_fn(|| v4::read(buf, 1 << 20).ok()).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn many_deliveries_leave_in_few_writes() {
    common::init_logging();
    const MESSAGES: usize = 500;
    let config = Config::default();
    let broker = Broker::new(
        config.mqtt.clone(),
        &config.http,
        Arc::new(MemoryStorage::default()),
    )
    .unwrap();
    let (_shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let context = || Context {
        auth: Arc::new(Authenticator::new(&config.auth).unwrap()),
        access: Arc::new(AccessControl::new(&config.auth).unwrap()),
        shutdown: shutdown_rx.clone(),
        identity: None,
        listener: "127.0.0.1:1883".parse().expect("an address"),
    };
    let peer = "127.0.0.1:9".parse().unwrap();

    let writes = Arc::new(AtomicUsize::new(0));
    let (mut subscriber, server_side) = tokio::io::duplex(4 << 20);
    let counted = CountingStream {
        inner: server_side,
        writes: writes.clone(),
    };
    tokio::spawn(serve(counted, peer, broker.admit(None).unwrap(), context()));
    let connect = common::connect_packet("batched", true, 0);
    let mut subscribe = v4::Subscribe::new("b", mqttbytes::QoS::AtMostOnce);
    subscribe.pkid = 1;
    subscriber
        .write_all(&encode(&[&connect, &subscribe]))
        .await
        .unwrap();
    let mut received = BytesMut::new();
    // CONNACK and SUBACK.
    let mut acks = 0;
    while acks < 2 {
        subscriber.read_buf(&mut received).await.unwrap();
        acks += take_packets(&mut received).len();
    }
    let writes_before = writes.load(Ordering::Relaxed);

    // One publisher burst of MESSAGES small PUBLISHes, in a single write.
    let (mut publisher, server_side) = tokio::io::duplex(4 << 20);
    tokio::spawn(serve(
        server_side,
        peer,
        broker.admit(None).unwrap(),
        context(),
    ));
    let mut burst = encode(&[&common::connect_packet("burst", true, 0)]);
    for i in 0..MESSAGES {
        v4::Publish::new("b", mqttbytes::QoS::AtMostOnce, i.to_string())
            .write(&mut burst)
            .unwrap();
    }
    publisher.write_all(&burst).await.unwrap();

    let mut delivered = 0;
    while delivered < MESSAGES {
        subscriber.read_buf(&mut received).await.unwrap();
        delivered += take_packets(&mut received)
            .iter()
            .filter(|p| matches!(p, v4::Packet::Publish(_)))
            .count();
    }
    let batch_writes = writes.load(Ordering::Relaxed) - writes_before;
    assert!(
        batch_writes * 20 <= MESSAGES,
        "{MESSAGES} deliveries took {batch_writes} writes"
    );
}
