//! One client connection, over any byte stream: TCP now, TLS and WebSocket later.
//!
//! A single task reads, writes and waits at once: incoming packets are handled as they
//! are decoded, and everything to send — acknowledgements and queued deliveries — is
//! gathered in one buffer and written with one call per wake-up.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep, timeout, Instant, Sleep};
use tracing::{debug, info, warn};

use crate::auth::Authenticator;
use crate::broker::{Attached, Broker};
use crate::message::Message;
use crate::protocol::{
    decode, encode, ConnAck, Connect, ConnectReturnCode, DecodeError, LastWill, Packet, QoS, SubAck,
};
use crate::session::{Acked, Kick, QueueLimits, Session};

/// Output beyond this many bytes stops reading until the peer catches up.
const HIGH_WATER: usize = 64 * 1024;
/// Queued deliveries are moved to the output only up to this mark, leaving room below
/// `HIGH_WATER` for the replies to what the client sends, so reading goes on.
const LOW_WATER: usize = HIGH_WATER / 2;

/// Largest empty output buffer kept between writes. Output buffers are allocated while
/// there is something to send: a burst's large buffer is not kept by an idle connection.
const KEEP_IDLE_OUTPUT: usize = 0;
/// Sizes reads to the traffic: a read that fills the room it was given doubles the next
/// one, up to `MAX`; one that uses less than a quarter halves it, down to `MIN`. An idle
/// connection thus reads into a few dozen bytes, a busy publisher into tens of KiB.
struct ReadSizing {
    chunk: usize,
    room: usize,
}

impl ReadSizing {
    const MIN: usize = 64;
    const MAX: usize = 8 * 1024;

    /// Makes room for the next read.
    fn prepare(&mut self, input: &mut BytesMut) {
        if input.capacity() - input.len() < self.chunk {
            input.reserve(self.chunk);
        }
        self.room = input.capacity() - input.len();
    }

    fn record(&mut self, read: usize) {
        if read >= self.room {
            self.chunk = (self.chunk * 2).min(Self::MAX);
        } else if read < self.room / 4 {
            self.chunk = (self.chunk / 2).max(Self::MIN);
        }
    }
}

impl Default for ReadSizing {
    fn default() -> Self {
        ReadSizing {
            chunk: Self::MIN,
            room: 0,
        }
    }
}

/// Frees `buf`'s memory once it is empty, if it holds more than `keep` bytes.
fn release_if_idle(buf: &mut BytesMut, keep: usize) {
    if buf.is_empty() && buf.capacity() > keep {
        *buf = BytesMut::new();
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Close {
    /// The client sent DISCONNECT: the only end that discards the will.
    #[error("client sent DISCONNECT")]
    Disconnect,
    #[error("peer closed the connection")]
    PeerClosed,
    #[error("I/O error: {0}")]
    Io(io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("keep alive expired")]
    KeepAliveExpired,
    #[error("session taken over by another connection")]
    TakenOver,
    #[error("server shutting down")]
    Shutdown,
}

impl Close {
    fn publishes_will(&self) -> bool {
        !matches!(self, Close::Disconnect)
    }
}

/// Everything a connection needs from the server around it.
#[derive(Clone)]
pub struct Context {
    pub broker: Arc<Broker>,
    pub auth: Arc<Authenticator>,
    pub shutdown: watch::Receiver<bool>,
}

/// Serves one client on `stream` until it disconnects, fails or the server stops.
pub async fn serve<S>(stream: S, peer: SocketAddr, mut cx: Context)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Buffers start empty and grow with the traffic: an idle connection holds almost
    // nothing (see `release_if_idle`).
    let mut input = BytesMut::new();
    let max_packet_size = cx.broker.limits.max_packet_size.0;
    let Some(connect) = read_connect(&mut reader, &mut writer, &mut input, peer, &mut cx).await
    else {
        return;
    };
    // Only what the connection keeps: the rest (credentials) is dropped here rather than
    // held in this task for its lifetime.
    let Connect {
        clean_session,
        keep_alive,
        client_id,
        will,
        ..
    } = connect;
    let connection_id = cx.broker.next_connection_id();
    let client_id = if client_id.is_empty() {
        format!("auto-{}", uuid_like(connection_id)).into()
    } else {
        client_id
    };
    let attached = cx.broker.attach(&client_id, clean_session, connection_id);
    let Attached {
        session,
        session_present,
        kicked,
    } = match attached {
        Ok(attached) => attached,
        Err(code) => {
            refuse(&mut writer, code).await;
            return;
        }
    };
    info!(
        %peer,
        client = %client_id,
        clean_session,
        keep_alive,
        session_present,
        "client connected"
    );
    let mut link = Link {
        broker: cx.broker.clone(),
        session: session.clone(),
        will,
        output: BytesMut::new(),
        window: cx.broker.limits.max_inflight_messages.0,
        max_packet_size,
        more_to_send: true,
        congested: None,
        connection_id,
    };
    encode(
        &Packet::ConnAck(ConnAck {
            session_present,
            code: ConnectReturnCode::Accepted,
        }),
        &mut link.output,
    );
    session.lock().resend_inflight(&mut link.output);
    let keep_alive = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    // Packets the client sent right behind CONNECT are already in the buffer.
    let close = match link.take_packets(&mut input) {
        Err(close) => close,
        Ok(_) => {
            let stream = Stream {
                reader: &mut reader,
                writer: &mut writer,
                input: &mut input,
            };
            link.run(stream, keep_alive, kicked).await
        }
    };
    match &close {
        Close::Disconnect | Close::PeerClosed | Close::Shutdown | Close::TakenOver => {
            info!(%peer, client = %client_id, reason = %close, "client disconnected")
        }
        Close::Io(_) | Close::Protocol(_) | Close::KeepAliveExpired => {
            warn!(%peer, client = %client_id, reason = %close, "connection closed")
        }
    }
    if close.publishes_will() {
        if let Some(will) = link.will.take() {
            debug!(client = %client_id, topic = %will.topic, "publishing will");
            // Nobody to pause here: the connection is ending.
            let _ = cx.broker.publish(Message {
                topic: will.topic,
                payload: will.payload,
                qos: will.qos,
                retain: will.retain,
            });
        }
    }
    cx.broker.detach(&session, connection_id);
    let _ = writer.shutdown().await;
}

/// Waits for the CONNECT and checks it. Refusals that have a return code are answered
/// with a CONNACK; everything else closes without one. `None`: the connection is done.
async fn read_connect<R, W>(
    reader: &mut R,
    writer: &mut W,
    input: &mut BytesMut,
    peer: SocketAddr,
    cx: &mut Context,
) -> Option<Connect>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max_packet_size = cx.broker.limits.max_packet_size.0;
    let connect_timeout = Duration::from_secs(cx.broker.limits.connect_timeout_secs.0 as u64);
    let first = tokio::select! {
        first = timeout(connect_timeout, read_packet(reader, input, max_packet_size)) => first,
        _ = cx.shutdown.changed() => return None,
    };
    let connect = match first {
        Err(_) => {
            info!(%peer, "no CONNECT within {}s, closing", connect_timeout.as_secs());
            return None;
        }
        Ok(Ok(Some(Packet::Connect(connect)))) => connect,
        Ok(Ok(Some(other))) => {
            warn!(%peer, "first packet was {}, not CONNECT, closing", other.name());
            return None;
        }
        Ok(Ok(None)) => return None,
        Ok(Err(ReadError::Decode(DecodeError::UnsupportedProtocolLevel(level)))) => {
            warn!(%peer, "refusing unsupported protocol level {level}");
            refuse(writer, ConnectReturnCode::UnacceptableProtocolVersion).await;
            return None;
        }
        Ok(Err(e)) => {
            warn!(%peer, "closing before CONNECT was read: {e}");
            return None;
        }
    };
    if let Some(will) = &connect.will {
        if !cx.broker.topic_depth_allowed(will.topic.as_str()) {
            // MQTT 3.1.1 has no return code for this: close without CONNACK.
            warn!(%peer, client = %connect.client_id, "will topic deeper than max_topic_levels, closing");
            return None;
        }
    }
    if let Err(code) = check_connect(&connect, cx) {
        warn!(%peer, client = %connect.client_id, "connection refused: {code:?}");
        refuse(writer, code).await;
        return None;
    }
    Some(connect)
}

/// Waits until `session`'s queue has room within `limits`.
async fn wait_for_room(session: Option<&Session>, limits: QueueLimits) {
    if let Some(session) = session {
        session.room(limits).await;
    }
}

/// A short unique suffix for generated client ids.
fn uuid_like(n: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    format!("{nanos:x}-{n:x}")
}

/// Checks an incoming CONNECT; `Err` carries the return code that refuses it.
fn check_connect(connect: &Connect, cx: &Context) -> Result<(), ConnectReturnCode> {
    if connect.client_id.is_empty() && !connect.clean_session {
        return Err(ConnectReturnCode::IdentifierRejected);
    }
    if connect.keep_alive > cx.broker.limits.max_keepalive_secs {
        return Err(ConnectReturnCode::IdentifierRejected);
    }
    match cx.auth.check(connect.username.as_deref()) {
        ConnectReturnCode::Accepted => Ok(()),
        refused => Err(refused),
    }
}

/// Sends a refusing CONNACK; the caller then closes the connection.
async fn refuse<W: AsyncWrite + Unpin>(writer: &mut W, code: ConnectReturnCode) {
    let mut out = BytesMut::with_capacity(4);
    encode(
        &Packet::ConnAck(ConnAck {
            session_present: false,
            code,
        }),
        &mut out,
    );
    let _ = writer.write_all(&out).await;
    let _ = writer.shutdown().await;
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Reads until one whole packet is buffered; `None` if the peer closed first.
async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    input: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Option<Packet>, ReadError> {
    loop {
        if let Some(packet) = decode(input, max_packet_size)? {
            return Ok(Some(packet));
        }
        if reader.read_buf(input).await? == 0 {
            return Ok(None);
        }
    }
}

/// The byte stream of an established connection, with its receive buffer.
struct Stream<'a, R, W> {
    reader: &'a mut R,
    writer: &'a mut W,
    input: &'a mut BytesMut,
}

/// The protocol side of an established connection.
struct Link {
    broker: Arc<Broker>,
    session: Arc<Session>,
    will: Option<LastWill>,
    output: BytesMut,
    window: usize,
    max_packet_size: usize,
    /// The session may have messages waiting to be sent.
    more_to_send: bool,
    /// A session whose queue this client's QoS 1/2 messages took beyond its limits:
    /// reading pauses until it has room, so that nothing acknowledged is dropped.
    congested: Option<Arc<Session>>,
    /// This connection's id, to tell whether the session is still attached to it.
    connection_id: u64,
}

impl Link {
    /// Reads, handles and writes until the connection ends; returns why it ended.
    async fn run<R, W>(
        &mut self,
        stream: Stream<'_, R, W>,
        keep_alive: Option<Duration>,
        mut kicked: oneshot::Receiver<Kick>,
    ) -> Close
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Stream {
            reader,
            writer,
            input,
        } = stream;
        // Without keep alive its branch is disabled and the timer never polled.
        let expiry = sleep(keep_alive.unwrap_or_default());
        tokio::pin!(expiry);
        let session = self.session.clone();
        let mut sizing = ReadSizing::default();
        let limits = self.broker.queue_limits();
        loop {
            self.fill_output();
            sizing.prepare(input);
            let congested = self.congested.clone();
            // Unbiased: a peer that keeps the socket writable must not starve reading
            // (its PINGREQs keep it alive), nor the keep-alive timer.
            tokio::select! {
                kick = &mut kicked => return match kick {
                    Ok(Kick::Shutdown) => Close::Shutdown,
                    Ok(Kick::TakenOver) | Err(_) => Close::TakenOver,
                },
                written = writer.write(&self.output), if !self.output.is_empty() => match written {
                    Ok(0) => return Close::PeerClosed,
                    Ok(n) => {
                        self.output.advance(n);
                        release_if_idle(&mut self.output, KEEP_IDLE_OUTPUT);
                    }
                    Err(e) => return Close::Io(e),
                },
                _ = wait_for_room(congested.as_deref(), limits), if congested.is_some() => {
                    self.congested = None;
                    // The pause was the broker's doing: the keep alive starts afresh, and
                    // what was read before it is handled now.
                    if let Some(keep_alive) = keep_alive {
                        expiry.as_mut().reset(Instant::now() + keep_alive);
                    }
                    if let Err(close) = self.take_input(input, keep_alive, expiry.as_mut()) {
                        return close;
                    }
                }
                read = reader.read_buf(input), if self.output.len() < HIGH_WATER && congested.is_none() => match read {
                    Ok(0) => return Close::PeerClosed,
                    Ok(n) => {
                        sizing.record(n);
                        if let Err(close) = self.take_input(input, keep_alive, expiry.as_mut()) {
                            return close;
                        }
                        release_if_idle(input, sizing.chunk);
                        // Let the subscribers just woken run before reading more: without
                        // this, busy publishers' batches starve their consumers, whose
                        // queues then overflow (fan-in QoS 0: ~0.1M delivered/s without,
                        // ~1M with, on 2 cores).
                        tokio::task::yield_now().await;
                    }
                    Err(e) => return Close::Io(e),
                },
                _ = session.woken() => self.more_to_send = true,
                // Not while paused: it is the broker that is not reading then.
                _ = &mut expiry, if keep_alive.is_some() && congested.is_none() => {
                    return Close::KeepAliveExpired;
                }
            }
        }
    }

    /// Moves waiting deliveries into the output buffer, as far as it and the in-flight
    /// window allow.
    fn fill_output(&mut self) {
        if self.more_to_send && self.output.len() < LOW_WATER {
            let mut state = self.session.lock();
            // Once another connection has taken the session over, messages put in flight
            // here would never be sent: the new connection has already resent what was in
            // flight when it attached, and sends everything queued after it.
            if state.attachment.as_ref().map(|a| a.connection_id) == Some(self.connection_id) {
                state.drain(self.window, &mut self.output, LOW_WATER);
                if state.take_room_made(self.broker.queue_limits()) {
                    drop(state);
                    self.session.room_made();
                }
            }
            // Anything left waits for room: an acknowledgement or a write sets this again.
            self.more_to_send = self.output.len() >= LOW_WATER;
        }
    }

    /// Handles the complete packets in `input` and, if there were any, restarts the
    /// keep-alive timer: keep alive counts whole control packets, not stray bytes.
    fn take_input(
        &mut self,
        input: &mut BytesMut,
        keep_alive: Option<Duration>,
        expiry: Pin<&mut Sleep>,
    ) -> Result<(), Close> {
        if self.take_packets(input)? > 0 {
            if let Some(keep_alive) = keep_alive {
                expiry.reset(Instant::now() + keep_alive);
            }
        }
        Ok(())
    }

    /// Handles complete packets in `input`; returns how many. Stops early when a publish
    /// congests a queue: the rest waits in `input` until the pause ends.
    fn take_packets(&mut self, input: &mut BytesMut) -> Result<usize, Close> {
        let mut handled = 0;
        while self.congested.is_none() {
            match decode(input, self.max_packet_size) {
                Ok(Some(packet)) => self.handle(packet)?,
                Ok(None) => break,
                Err(e) => return Err(Close::Protocol(e.to_string())),
            }
            handled += 1;
        }
        Ok(handled)
    }

    fn handle(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(publish) => {
                if !self.broker.topic_depth_allowed(publish.topic.as_str()) {
                    return Err(Close::Protocol(format!(
                        "topic {} is deeper than max_topic_levels",
                        publish.topic
                    )));
                }
                let message = Message {
                    topic: publish.topic,
                    payload: publish.payload,
                    qos: publish.qos,
                    retain: publish.retain,
                };
                let congested = match publish.qos {
                    QoS::AtMostOnce => self.broker.publish(message),
                    QoS::AtLeastOnce => {
                        encode(&Packet::PubAck(publish.pkid), &mut self.output);
                        self.broker.publish(message)
                    }
                    QoS::ExactlyOnce => {
                        encode(&Packet::PubRec(publish.pkid), &mut self.output);
                        // Delivered on first receipt; a resend before PUBREL is not.
                        let fresh = self.session.lock().receive_qos2(publish.pkid);
                        fresh.then(|| self.broker.publish(message)).flatten()
                    }
                };
                if congested.is_some() {
                    self.congested = congested;
                }
            }
            Packet::PubRel(pkid) => {
                self.session.lock().release_qos2(pkid);
                encode(&Packet::PubComp(pkid), &mut self.output);
            }
            Packet::PubAck(pkid) => {
                let acked = self.session.lock().puback(pkid);
                self.acknowledged(acked);
            }
            Packet::PubRec(pkid) => {
                if self.session.lock().pubrec(pkid) == Acked::Released {
                    encode(&Packet::PubRel(pkid), &mut self.output);
                }
            }
            Packet::PubComp(pkid) => {
                let acked = self.session.lock().pubcomp(pkid);
                self.acknowledged(acked);
            }
            Packet::Subscribe(subscribe) => {
                let codes = self.broker.subscribe(&self.session, &subscribe.filters);
                let ack = SubAck {
                    pkid: subscribe.pkid,
                    codes,
                };
                encode(&Packet::SubAck(ack), &mut self.output);
                // Retained messages were queued: send them after the SUBACK.
                self.more_to_send = true;
            }
            Packet::Unsubscribe(unsubscribe) => {
                self.broker.unsubscribe(&self.session, &unsubscribe.filters);
                encode(&Packet::UnsubAck(unsubscribe.pkid), &mut self.output);
            }
            Packet::PingReq => encode(&Packet::PingResp, &mut self.output),
            Packet::Disconnect => return Err(Close::Disconnect),
            other @ (Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                return Err(Close::Protocol(format!(
                    "unexpected {} from a client",
                    other.name()
                )))
            }
        }
        Ok(())
    }

    fn acknowledged(&mut self, acked: Acked) {
        if let Acked::Done(seq) = acked {
            self.broker.delivered(&self.session, seq);
            self.more_to_send = true;
        }
    }
}
