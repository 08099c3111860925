//! One client connection, over any byte stream: TCP now, TLS and WebSocket later.
//!
//! A single task reads, writes and waits at once: incoming packets are handled as they
//! are decoded, and everything to send — acknowledgements and queued deliveries — is
//! gathered in one buffer and written with one call per wake-up.
//!
//! An idle connection holds no buffer, no timer and no channel: the broker reaches it
//! through its session's attachment (see `session`), its keep alive is watched by one
//! task for all connections (see `keep_alive`), and its buffers exist while there is
//! data to move. What stays is the task with a few hundred bytes of state.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::auth::Authenticator;
use crate::broker::{Admitted, Attached, Broker};
use crate::message::Message;
use crate::protocol::{
    decode, encode, ConnAck, Connect, ConnectReturnCode, DecodeError, LastWill, Packet,
    ProtocolVersion, QoS, SubAck,
};
use crate::session::{Acked, Kick, Session};

/// Output beyond this many bytes stops reading until the peer catches up.
const HIGH_WATER: usize = 64 * 1024;
/// Queued deliveries are moved to the output only up to this mark, leaving room below
/// `HIGH_WATER` for the replies to what the client sends, so reading goes on.
const LOW_WATER: usize = HIGH_WATER / 2;

/// Sizes reads to the traffic: a read that fills the room it was given doubles the next
/// one, up to `MAX`; one that uses less than a quarter halves it, down to `MIN`. At
/// `MIN`, the receive buffer is let go whenever it is empty and a read goes through the
/// stack, so a quiet connection holds no buffer while it waits.
#[derive(Clone, Copy)]
struct ReadSizing {
    chunk: u32,
    room: u32,
}

impl ReadSizing {
    const MIN: usize = 64;
    const MAX: usize = 8 * 1024;

    fn quiet(&self) -> bool {
        self.chunk as usize == Self::MIN
    }

    fn record(&mut self, read: usize) {
        let (chunk, room) = (self.chunk as usize, self.room as usize);
        let chunk = if read >= room {
            (chunk * 2).min(Self::MAX)
        } else if read < room / 4 {
            (chunk / 2).max(Self::MIN)
        } else {
            chunk
        };
        self.chunk = chunk as u32;
    }
}

impl Default for ReadSizing {
    fn default() -> Self {
        ReadSizing {
            chunk: Self::MIN as u32,
            room: 0,
        }
    }
}

/// Reads from `stream` into `input`, sized by `sizing`.
fn poll_read<S: AsyncRead + Unpin>(
    cx: &mut TaskContext<'_>,
    stream: &mut S,
    input: &mut BytesMut,
    sizing: &mut ReadSizing,
) -> Poll<io::Result<usize>> {
    if input.is_empty() && sizing.quiet() {
        let mut stack = [0; ReadSizing::MIN];
        sizing.room = stack.len() as u32;
        let read = std::task::ready!(pin!(stream.read(&mut stack)).poll(cx))?;
        input.extend_from_slice(&stack[..read]);
        return Poll::Ready(Ok(read));
    }
    let chunk = sizing.chunk as usize;
    if input.capacity() - input.len() < chunk {
        input.reserve(chunk);
    }
    sizing.room = (input.capacity() - input.len()).min(u32::MAX as usize) as u32;
    pin!(stream.read_buf(input)).poll(cx)
}

/// Frees `buf`'s memory once it is empty.
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
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

impl From<Kick> for Close {
    fn from(kick: Kick) -> Close {
        match kick {
            Kick::TakenOver => Close::TakenOver,
            Kick::Shutdown => Close::Shutdown,
            Kick::KeepAliveExpired => Close::KeepAliveExpired,
        }
    }
}

/// What a connection needs from the server around it during its handshake.
#[derive(Clone)]
pub struct Context {
    pub auth: Arc<Authenticator>,
    pub shutdown: watch::Receiver<bool>,
}

/// Serves one client on `stream` until it disconnects, fails or the server stops.
pub fn serve<S>(
    stream: S,
    peer: SocketAddr,
    broker: Admitted,
    cx: Context,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Not an `async fn`, and the handshake boxed: its state (a timer, the whole CONNECT,
    // these arguments) is freed once it is done rather than sized into the connection's
    // task for its whole life, and the `Link` it fills in is never moved.
    let handshake = Box::new(Handshake {
        stream,
        peer,
        broker,
        cx,
    });
    async move {
        let mut link = None;
        Box::pin(open(handshake, &mut link)).await;
        if let Some(link) = &mut link {
            let close = link.run().await;
            link.close(close);
            let _ = link.stream.shutdown().await;
        }
    }
}

/// A connection before its CONNECT.
struct Handshake<S> {
    stream: S,
    peer: SocketAddr,
    broker: Admitted,
    cx: Context,
}

/// Reads and checks the CONNECT, attaches the session, queues the CONNACK and puts the
/// established connection in `link`. Leaves `link` empty when the connection is refused
/// or ends first; a refusal is answered where MQTT has a return code for it.
async fn open<S>(handshake: Box<Handshake<S>>, link: &mut Option<Link<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Handshake {
        mut stream,
        peer,
        broker,
        cx,
    } = *handshake;
    let mut input = BytesMut::new();
    let Some(connect) = read_connect(&mut stream, &mut input, peer, &broker, &cx).await else {
        return;
    };
    release_if_empty(&mut input);
    // Only what the connection keeps: the rest (credentials) is dropped here.
    let Connect {
        version,
        clean_session,
        keep_alive,
        client_id,
        will,
        ..
    } = connect;
    let connection_id = broker.next_connection_id();
    // Kept for the session's lifetime: its own copy, not a slice pinning the buffer.
    let client_id = if client_id.is_empty() {
        format!("auto-{}", uuid_like(connection_id)).into()
    } else {
        ByteString::from(&*client_id)
    };
    let attached = broker.attach(
        &client_id,
        clean_session,
        connection_id,
        keep_alive_limit(keep_alive),
    );
    let Attached {
        session,
        session_present,
    } = match attached {
        Ok(attached) => attached,
        Err(code) => {
            refuse(&mut stream, code).await;
            return;
        }
    };
    info!(
        %peer,
        client = %client_id,
        protocol = ?version,
        clean_session,
        keep_alive,
        session_present,
        "client connected"
    );
    let link = link.insert(Link {
        stream,
        peer,
        input,
        output: BytesMut::new(),
        broker,
        session,
        will: will.map(Box::new),
        keep_alive,
        connection_id,
        paused: None,
        sizing: ReadSizing::default(),
        more_to_send: true,
        deadline_stale: false,
    });
    encode(
        &Packet::ConnAck(ConnAck {
            // MQTT 3.1's CONNACK has no such flag: its first byte is reserved.
            session_present: session_present && version != ProtocolVersion::V31,
            code: ConnectReturnCode::Accepted,
        }),
        &mut link.output,
    );
    link.session.lock().resend_inflight(&mut link.output);
}

/// Waits for the CONNECT and checks it. Refusals that have a return code are answered
/// with a CONNACK; everything else closes without one. `None`: the connection is done.
async fn read_connect<S>(
    stream: &mut S,
    input: &mut BytesMut,
    peer: SocketAddr,
    broker: &Broker,
    cx: &Context,
) -> Option<Connect>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max_packet_size = broker.limits.max_packet_size.0;
    let connect_timeout = Duration::from_secs(broker.limits.connect_timeout_secs.0 as u64);
    let mut shutdown = cx.shutdown.clone();
    let first = tokio::select! {
        first = timeout(connect_timeout, read_packet(stream, input, max_packet_size)) => first,
        _ = shutdown.changed() => return None,
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
            refuse(stream, ConnectReturnCode::UnacceptableProtocolVersion).await;
            return None;
        }
        Ok(Err(e)) => {
            warn!(%peer, "closing before CONNECT was read: {e}");
            return None;
        }
    };
    if let Some(will) = &connect.will {
        if !broker.topic_depth_allowed(will.topic.as_str()) {
            // MQTT 3.1.1 has no return code for this: close without CONNACK.
            warn!(%peer, client = %connect.client_id, "will topic deeper than max_topic_levels, closing");
            return None;
        }
    }
    if let Err(code) = check_connect(&connect, broker, cx) {
        warn!(%peer, client = %connect.client_id, "connection refused: {code:?}");
        refuse(stream, code).await;
        return None;
    }
    Some(connect)
}

/// How long a client with keep alive `secs` may stay silent: one and a half times that
/// (MQTT-3.1.2-24). `None` for 0, no keep alive.
fn keep_alive_limit(secs: u16) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_millis(u64::from(secs) * 1500))
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
fn check_connect(
    connect: &Connect,
    broker: &Broker,
    cx: &Context,
) -> Result<(), ConnectReturnCode> {
    if connect.client_id.is_empty() && !connect.clean_session {
        return Err(ConnectReturnCode::IdentifierRejected);
    }
    // MQTT 3.1 allows client ids of 1 to 23 characters only.
    if connect.version == ProtocolVersion::V31
        && !(1..=23).contains(&connect.client_id.chars().count())
    {
        return Err(ConnectReturnCode::IdentifierRejected);
    }
    if connect.keep_alive > broker.limits.max_keepalive_secs {
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

/// What one turn of the connection's loop did.
enum Step {
    Read,
    Wrote,
    /// The publisher was paused and may go on.
    Resumed,
}

/// An established connection: its stream and buffers, and the protocol on top.
struct Link<S> {
    stream: S,
    peer: SocketAddr,
    input: BytesMut,
    output: BytesMut,
    broker: Admitted,
    session: Arc<Session>,
    /// Boxed: most clients have none, and a will is large.
    will: Option<Box<LastWill>>,
    /// The client's keep alive in seconds, 0 for none.
    keep_alive: u16,
    /// This connection's id, to tell whether the session is still attached to it.
    connection_id: u64,
    /// Set while this client's QoS 1/2 messages have taken a queue beyond its limits:
    /// reading pauses until that queue has room, so that nothing acknowledged is
    /// dropped. Boxed: pauses are rare, and the wait is large.
    paused: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    sizing: ReadSizing,
    /// The session may have messages waiting to be sent.
    more_to_send: bool,
    /// The keep-alive deadline in the session is to be moved: packets arrived, or a
    /// pause began or ended.
    deadline_stale: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    /// Reads, handles and writes until the connection ends; returns why it ended.
    async fn run(&mut self) -> Close {
        // Packets the client sent right behind CONNECT are already in the buffer.
        if let Err(close) = self.take_packets() {
            return close;
        }
        loop {
            let read = match poll_fn(|cx| self.poll_step(cx)).await {
                Err(close) => return close,
                Ok(step) => matches!(step, Step::Read),
            };
            // Let the subscribers just woken run before reading more: without this, busy
            // publishers' batches starve their consumers, whose queues then overflow
            // (fan-in QoS 0: ~0.1M delivered/s without, ~1M with, on 2 cores).
            if read {
                tokio::task::yield_now().await;
            }
        }
    }

    /// One turn: catch up with the session, write what is buffered, read what arrived.
    /// Every source not ready has registered the task's waker when this is pending.
    fn poll_step(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<Step, Close>> {
        if let Some(paused) = &mut self.paused {
            if paused.as_mut().poll(cx).is_ready() {
                self.paused = None;
                // The pause was the broker's doing: the keep alive starts afresh, and
                // what was read before it is handled now.
                self.deadline_stale = true;
                return Poll::Ready(self.take_packets().map(|()| Step::Resumed));
            }
        }
        if let Err(close) = self.sync(cx.waker()) {
            return Poll::Ready(Err(close));
        }
        let mut wrote = false;
        if !self.output.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.output) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Close::PeerClosed)),
                Poll::Ready(Ok(n)) => {
                    self.output.advance(n);
                    release_if_empty(&mut self.output);
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Close::Io(e))),
                Poll::Pending => {}
            }
        }
        // Not while paused, nor while the output is backed up: the peer must read first.
        if self.paused.is_none() && self.output.len() < HIGH_WATER {
            match poll_read(cx, &mut self.stream, &mut self.input, &mut self.sizing) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Close::PeerClosed)),
                Poll::Ready(Ok(n)) => {
                    self.sizing.record(n);
                    let handled = self.take_packets();
                    if self.sizing.quiet() {
                        release_if_empty(&mut self.input);
                    }
                    return Poll::Ready(handled.map(|()| Step::Read));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Close::Io(e))),
                Poll::Pending => {}
            }
        }
        if wrote {
            Poll::Ready(Ok(Step::Wrote))
        } else {
            Poll::Pending
        }
    }

    /// Catches up with the session: a kick ends the connection; otherwise the keep-alive
    /// deadline is moved if due, and queued messages go to the output as far as it and
    /// the in-flight window allow. `waker` is registered for the next signal.
    fn sync(&mut self, waker: &Waker) -> Result<(), Close> {
        let mut state = self.session.lock();
        self.more_to_send |= state.poll_signal(self.connection_id, waker)?;
        if std::mem::take(&mut self.deadline_stale) {
            if let Some(keep_alive) = keep_alive_limit(self.keep_alive) {
                // Paused, the client is not heard from: it is the broker not reading.
                let deadline = self.paused.is_none().then(|| Instant::now() + keep_alive);
                state.set_deadline(self.connection_id, deadline);
            }
        }
        if self.more_to_send && self.output.len() < LOW_WATER {
            let window = self.broker.limits.max_inflight_messages.0;
            state.drain(window, &mut self.output, LOW_WATER);
            let room_made = state.take_room_made(self.broker.queue_limits());
            drop(state);
            if room_made {
                self.broker.room_made();
            }
            // Anything left waits for room: an acknowledgement or a write sets this again.
            self.more_to_send = self.output.len() >= LOW_WATER;
        }
        Ok(())
    }

    /// Pauses reading until `congested` has room.
    fn pause(&mut self, congested: Arc<Session>) {
        let broker = Arc::clone(&self.broker);
        let limits = broker.queue_limits();
        self.paused = Some(Box::pin(
            async move { broker.room(&congested, limits).await },
        ));
        self.deadline_stale = true;
    }

    /// Logs why the connection ended, publishes the will where due and detaches.
    fn close(&mut self, close: Close) {
        let (peer, client_id) = (self.peer, &self.session.client_id);
        match &close {
            Close::Disconnect | Close::PeerClosed | Close::Shutdown | Close::TakenOver => {
                info!(%peer, client = %client_id, reason = %close, "client disconnected")
            }
            Close::Io(_) | Close::Protocol(_) | Close::KeepAliveExpired => {
                warn!(%peer, client = %client_id, reason = %close, "connection closed")
            }
        }
        if close.publishes_will() {
            if let Some(will) = self.will.take() {
                debug!(client = %client_id, topic = %will.topic, "publishing will");
                let LastWill {
                    topic,
                    payload,
                    qos,
                    retain,
                } = *will;
                // Nobody to pause here: the connection is ending.
                let _ = self.broker.publish(Message {
                    topic,
                    payload,
                    qos,
                    retain,
                });
            }
        }
        self.broker.detach(&self.session, self.connection_id);
    }

    /// Handles the complete packets in `input`. Stops early when a publish congests a
    /// queue: the rest waits in `input` until the pause ends. Keep alive counts whole
    /// control packets, not stray bytes: only they (and a pause) move the deadline.
    fn take_packets(&mut self) -> Result<(), Close> {
        let max_packet_size = self.broker.limits.max_packet_size.0;
        while self.paused.is_none() {
            match decode(&mut self.input, max_packet_size) {
                Ok(Some(packet)) => self.handle(packet)?,
                Ok(None) => break,
                Err(e) => return Err(Close::Protocol(e.to_string())),
            }
            self.deadline_stale = true;
        }
        Ok(())
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
                if let Some(congested) = congested {
                    self.pause(congested);
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
