//! The ceiling: a server that speaks just enough MQTT to be measured like a broker.
//! It CONNACKs every CONNECT, grants every SUBSCRIBE as asked, acknowledges QoS 1 and 2
//! publishes at once and forwards each PUBLISH's bytes unchanged to every connection that
//! has subscribed to anything — no routing, no sessions, no retained messages, no queues
//! beyond one bounded channel per connection.

use crate::mqtt::{self, Packet};
use bytes::{Bytes, BytesMut};
use std::io;
use std::sync::{Arc, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Frames waiting for one connection's writer; a full channel makes publishers wait.
const CHANNEL: usize = 4096;
/// Bytes gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

type Subscribers = Arc<RwLock<Vec<(u64, mpsc::Sender<Bytes>)>>>;

pub async fn serve(addr: std::net::SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("relay listening on {addr}");
    let subscribers = Subscribers::default();
    for id in 0u64.. {
        let (stream, _) = listener.accept().await?;
        let subscribers = subscribers.clone();
        tokio::spawn(async move {
            let _ = connection(id, stream, &subscribers).await;
            subscribers.write().unwrap().retain(|(s, _)| *s != id);
        });
    }
    Ok(())
}

async fn connection(id: u64, stream: TcpStream, subscribers: &Subscribers) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(CHANNEL);
    let writer = tokio::spawn(write_loop(wr, rx));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut subscribed = false;
    'read: loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        if rd.read_buf(&mut buf).await? == 0 {
            break;
        }
        let mut reply = BytesMut::new();
        while let Some((packet, raw)) = mqtt::decode(&mut buf)? {
            match packet {
                Packet::Connect { clean } => mqtt::connack(&mut reply, !clean, 0),
                Packet::Subscribe { pkid, qos } => {
                    mqtt::suback(&mut reply, pkid, &qos);
                    if !subscribed {
                        subscribed = true;
                        subscribers.write().unwrap().push((id, tx.clone()));
                    }
                }
                Packet::Publish(p) => {
                    match p.qos {
                        1 => mqtt::ack(&mut reply, mqtt::PUBACK, p.pkid),
                        2 => mqtt::ack(&mut reply, mqtt::PUBREC, p.pkid),
                        _ => {}
                    }
                    // Replies first, so that the publisher's acks are never behind its
                    // own deliveries.
                    if !reply.is_empty() {
                        let _ = tx.send(reply.split().freeze()).await;
                    }
                    forward(raw, subscribers).await;
                }
                Packet::Ack {
                    kind: mqtt::PUBREL,
                    pkid,
                } => mqtt::ack(&mut reply, mqtt::PUBCOMP, pkid),
                Packet::Ack {
                    kind: mqtt::PUBREC,
                    pkid,
                } => mqtt::ack(&mut reply, mqtt::PUBREL, pkid),
                Packet::PingReq => mqtt::pingresp(&mut reply),
                Packet::Disconnect => break 'read,
                _ => {}
            }
        }
        if !reply.is_empty() && tx.send(reply.freeze()).await.is_err() {
            break;
        }
    }
    drop(tx);
    subscribers.write().unwrap().retain(|(s, _)| *s != id);
    let _ = writer.await;
    Ok(())
}

/// Sends `frame` to every subscriber: without waiting where there is room, then waiting
/// on the ones whose channel was full.
async fn forward(frame: Bytes, subscribers: &Subscribers) {
    let mut full = Vec::new();
    for (_, tx) in subscribers.read().unwrap().iter() {
        if let Err(mpsc::error::TrySendError::Full(frame)) = tx.try_send(frame.clone()) {
            full.push((tx.clone(), frame));
        }
    }
    for (tx, frame) in full {
        let _ = tx.send(frame).await;
    }
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) -> io::Result<()> {
    let mut out = BytesMut::with_capacity(WRITE_BATCH);
    while let Some(first) = rx.recv().await {
        out.extend_from_slice(&first);
        while out.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(frame) => out.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        wr.write_all(&out).await?;
        out.clear();
    }
    wr.shutdown().await
}
