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

use crate::acl::{AccessControl, Permit};
use crate::auth::Authenticator;
use crate::broker::{Admitted, Attached, Broker, Published, SubscribeOutcome};
use crate::clients::ConnectedClient;
use crate::config::MqttConfig;
use crate::message::{Message, MessageProperties, Stamp, Will};
use crate::protocol::{
    connect_version, Ack, ConnAck, Connect, DecodeError, Decoder, Disconnect, Encoder, Packet,
    PropertyFields, ProtocolVersion, QoS, ReasonCode, SubAck, UnsubAck, MAX_REMAINING_LENGTH,
};
use crate::rate::PublishRate;
use crate::session::{Acked, IncomingQos2, Kick, Session, SessionExpiry};
use crate::stats::{Refused, Stats};
use crate::storage::{Change, Durable, Ticket};
use crate::topic::TopicName;

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
    /// The client sent DISCONNECT: the will is discarded unless its MQTT 5.0 reason
    /// code was other than normal disconnection.
    #[error("client sent DISCONNECT")]
    Disconnect { with_will: bool },
    #[error("peer closed the connection")]
    PeerClosed,
    #[error("I/O error: {0}")]
    Io(io::Error),
    #[error("protocol error: {detail}")]
    Protocol { reason: ReasonCode, detail: String },
    #[error("keep alive expired")]
    KeepAliveExpired,
    #[error("session taken over by another connection")]
    TakenOver,
    #[error("server shutting down")]
    Shutdown,
    #[error("storage failed")]
    Storage,
}

impl Close {
    fn protocol(reason: ReasonCode, detail: impl Into<String>) -> Close {
        Close::Protocol {
            reason,
            detail: detail.into(),
        }
    }

    fn publishes_will(&self) -> bool {
        !matches!(self, Close::Disconnect { with_will: false })
    }

    /// The DISCONNECT an MQTT 5.0 client is told this with, if any.
    fn disconnect_packet(&self) -> Option<Disconnect> {
        let (reason, reason_string) = match self {
            Close::Protocol { reason, detail } => (*reason, Some(detail.as_str())),
            Close::KeepAliveExpired => (ReasonCode::KEEP_ALIVE_TIMEOUT, None),
            Close::TakenOver => (ReasonCode::SESSION_TAKEN_OVER, None),
            Close::Shutdown => (ReasonCode::SERVER_SHUTTING_DOWN, None),
            Close::Storage => (ReasonCode::UNSPECIFIED_ERROR, Some("storage failed")),
            Close::Disconnect { .. } | Close::PeerClosed | Close::Io(_) => return None,
        };
        let mut disconnect = Disconnect {
            reason,
            ..Disconnect::default()
        };
        if let Some(text) = reason_string {
            disconnect.properties.fields_mut().reason_string = Some(ByteString::from(text));
        }
        Some(disconnect)
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

impl From<DecodeError> for Close {
    fn from(e: DecodeError) -> Close {
        Close::protocol(e.reason_code(), e.to_string())
    }
}

/// What a connection needs from the server around it during its handshake.
#[derive(Clone)]
pub struct Context {
    pub auth: Arc<Authenticator>,
    pub access: Arc<AccessControl>,
    pub shutdown: watch::Receiver<bool>,
    /// The user the transport has already authenticated (a TLS client certificate's
    /// common name, with `use_identity_as_username`): it replaces the CONNECT's.
    pub identity: Option<ByteString>,
    /// The address of the listener the connection came in on.
    pub listener: SocketAddr,
}

/// How long a closing connection may take to send its last packets.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

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
            // Boxed: its timers would otherwise be sized into every connection's task.
            Box::pin(link.close(close)).await;
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

/// What the CONNECT settled that is not the session's: how the connection runs.
struct Agreed {
    /// The keep alive in force: the client's, or the server's where it overrides it.
    keep_alive: u16,
    /// Set when the server overrides the client's keep alive (MQTT 5.0).
    server_keep_alive: Option<u16>,
    /// The client id, if the server assigned it.
    assigned_client_id: Option<ByteString>,
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
    let version = connect.version;
    let checked = match check_connect(&connect, &broker, &cx) {
        // A transport that authenticated the client (a TLS certificate) names the user.
        Ok(agreed) if cx.identity.is_some() => Ok(agreed),
        Ok(agreed) => cx
            .auth
            .authenticate(
                peer.ip(),
                connect.username.as_deref(),
                connect.password.as_deref(),
            )
            .await
            .map(|()| agreed),
        Err(reason) => Err(reason),
    };
    // Kept for the session's lifetime: its own copy, not a slice pinning the buffer.
    let client_id = match &checked {
        Ok(Agreed {
            assigned_client_id: Some(assigned),
            ..
        }) => assigned.clone(),
        _ => ByteString::from(&*connect.client_id),
    };
    let user = cx.identity.as_deref().or(connect.username.as_deref());
    let permit = cx.access.permit(user, Some(&client_id));
    let checked = checked.and_then(|agreed| match (&permit, &connect.will) {
        (Some(permit), Some(will)) if !permit.grants().may_write(&will.topic) => {
            Err(ReasonCode::NOT_AUTHORIZED)
        }
        _ => Ok(agreed),
    });
    let agreed = match checked {
        Ok(agreed) => agreed,
        Err(reason) => {
            warn!(%peer, client = %connect.client_id, "connection refused: {reason}");
            let why = match reason {
                ReasonCode::BAD_USER_NAME_OR_PASSWORD | ReasonCode::NOT_AUTHORIZED => Refused::Auth,
                _ => Refused::Other,
            };
            broker.stats.refused(why);
            refuse(&mut stream, version, reason).await;
            return;
        }
    };
    let connection_id = broker.next_connection_id();
    let expiry = session_expiry(&connect);
    let attached = broker.attach(
        &client_id,
        connect.clean_start,
        version == ProtocolVersion::V5,
        expiry,
        connection_id,
        keep_alive_limit(agreed.keep_alive),
    );
    let Attached {
        session,
        session_present,
        ticket,
    } = match attached {
        Ok(attached) => attached,
        Err(reason) => {
            broker.stats.refused(Refused::Other);
            refuse(&mut stream, version, reason).await;
            return;
        }
    };
    info!(
        %peer,
        client = %client_id,
        protocol = ?version,
        clean_start = connect.clean_start,
        keep_alive = agreed.keep_alive,
        session_expiry = expiry.0,
        session_present,
        "client connected"
    );
    let (decoder, encoder) = codec(version, &connect.properties, &broker.limits);
    let server_window = broker.limits.max_inflight_messages.0;
    let window = connect
        .properties
        .receive_maximum
        .map_or(server_window, |max| server_window.min(usize::from(max)));
    let will = connect
        .will
        .as_ref()
        .map(|will| Box::new(Will::from_packet(will)));
    let connack = ConnAck {
        // MQTT 3.1's CONNACK has no such flag: its first byte is reserved.
        session_present: session_present && version != ProtocolVersion::V31,
        reason: ReasonCode::SUCCESS,
        // MQTT 3.x has none: nothing built for it.
        properties: if version == ProtocolVersion::V5 {
            connack_properties(&broker, &agreed).into()
        } else {
            Default::default()
        },
    };
    let rate = PublishRate::new(&broker.limits, Instant::now());
    let link = link.insert(Link {
        stream,
        peer: Box::new(peer),
        input,
        output: BytesMut::new(),
        decoder,
        encoder,
        broker,
        session,
        will,
        permit,
        rate,
        refusal_logged: false,
        keep_alive: agreed.keep_alive,
        window: u16::try_from(window).unwrap_or(u16::MAX),
        expiry_was_none: expiry == SessionExpiry::NONE,
        connection_id,
        paused: None,
        sizing: ReadSizing::default(),
        more_to_send: true,
        deadline_stale: false,
        held: None,
    });
    link.broker.stats.accepted();
    link.broker.clients.connected(
        connection_id,
        ConnectedClient {
            session: link.session.clone(),
            peer,
            protocol: version,
            listener: cx.listener,
        },
    );
    let client_max = connect.properties.maximum_packet_size;
    link.hold(ticket);
    write_connack(&mut link.encoder, connack, client_max, &mut link.output);
    // Sent after the CONNACK, by the first drain.
    link.session.lock().resend_inflight();
    if let Some(permit) = &link.permit {
        // Before anything is sent: what the session holds from before is checked too.
        let grants = permit.grants().clone();
        link.broker.set_grants(&link.session, connection_id, grants);
    }
}

/// The decoder and encoder for a connection speaking `version`, within the limits the
/// client's CONNECT properties (`client`) and the server's set.
fn codec(
    version: ProtocolVersion,
    client: &PropertyFields,
    limits: &MqttConfig,
) -> (Decoder, Encoder) {
    let mut decoder = Decoder::new(version, limits.max_packet_size.0);
    let mut encoder = Encoder::new(version);
    if version == ProtocolVersion::V5 {
        decoder.allow_topic_aliases(limits.max_topic_alias);
        if let Some(max) = client.maximum_packet_size {
            encoder.limit_packet_size(max);
        }
        if client.request_problem_information == Some(0) {
            encoder.omit_problem_information();
        }
        let aliases = client.topic_alias_maximum.unwrap_or(0);
        encoder.use_topic_aliases(aliases.min(limits.max_topic_alias));
    }
    (decoder, encoder)
}

/// Writes the CONNACK to `out`, which is empty. One too large for the client's Maximum
/// Packet Size (MQTT-3.1.2-24) goes without the properties that say what their absence
/// says too.
fn write_connack(
    encoder: &mut Encoder,
    connack: ConnAck,
    client_max: Option<u32>,
    out: &mut BytesMut,
) {
    let mut packet = Packet::ConnAck(connack);
    encoder.encode(&packet, out);
    if out.len() > client_max.map_or(usize::MAX, |max| max as usize) {
        if let Packet::ConnAck(connack) = &mut packet {
            let fields = connack.properties.fields_mut();
            fields.retain_available = None;
            fields.wildcard_subscription_available = None;
            fields.subscription_identifier_available = None;
            fields.shared_subscription_available = None;
        }
        out.clear();
        encoder.encode(&packet, out);
    }
}

/// The session expiry a CONNECT asks for: MQTT 3.x's clean session flag, or 5.0's
/// Session Expiry Interval (0 when absent).
fn session_expiry(connect: &Connect) -> SessionExpiry {
    match connect.version {
        ProtocolVersion::V5 => {
            SessionExpiry(connect.properties.session_expiry_interval.unwrap_or(0))
        }
        ProtocolVersion::V31 | ProtocolVersion::V311 if connect.clean_start => SessionExpiry::NONE,
        ProtocolVersion::V31 | ProtocolVersion::V311 => SessionExpiry::NEVER,
    }
}

/// The properties of a successful MQTT 5.0 CONNACK: what this server supports and
/// limits, so the client can keep within them. The features available are named
/// although their absence means the same, for clients and people reading traces.
fn connack_properties(broker: &Broker, agreed: &Agreed) -> PropertyFields {
    let limits = &broker.limits;
    PropertyFields {
        assigned_client_identifier: agreed.assigned_client_id.clone(),
        server_keep_alive: agreed.server_keep_alive,
        receive_maximum: Some(u16::try_from(limits.max_inflight_messages.0).unwrap_or(u16::MAX)),
        maximum_qos: (limits.max_qos.0 != QoS::ExactlyOnce).then_some(limits.max_qos.0 as u8),
        retain_available: Some(1),
        maximum_packet_size: (limits.max_packet_size.0 < MAX_REMAINING_LENGTH)
            .then(|| u32::try_from(limits.max_packet_size.0).unwrap_or(u32::MAX)),
        topic_alias_maximum: (limits.max_topic_alias > 0).then_some(limits.max_topic_alias),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(1),
        shared_subscription_available: Some(1),
        ..PropertyFields::default()
    }
}

/// Waits for the CONNECT. Refusals that have a return code are answered with a
/// CONNACK; everything else closes without one. `None`: the connection is done.
async fn read_connect<S>(
    stream: &mut S,
    input: &mut BytesMut,
    peer: SocketAddr,
    broker: &Broker,
    cx: &Context,
) -> Option<Box<Connect>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Any version decodes a CONNECT, which names its own.
    let mut decoder = Decoder::new(ProtocolVersion::V311, broker.limits.max_packet_size.0);
    let connect_timeout = Duration::from_secs(broker.limits.connect_timeout_secs.0 as u64);
    let mut shutdown = cx.shutdown.clone();
    let first = tokio::select! {
        first = timeout(connect_timeout, read_first_packet(stream, input, &mut decoder)) => first,
        _ = shutdown.changed() => return None,
    };
    match first {
        Err(_) => {
            info!(%peer, "no CONNECT within {}s, closing", connect_timeout.as_secs());
            None
        }
        Ok(Ok(Some(Packet::Connect(connect)))) => Some(connect),
        Ok(Ok(Some(other))) => {
            warn!(%peer, "first packet was {}, not CONNECT, closing", other.name());
            None
        }
        Ok(Ok(None)) => None,
        Ok(Err(ReadError::Decode(DecodeError::UnsupportedProtocolLevel(level), _))) => {
            warn!(%peer, "refusing unsupported protocol level {level}");
            refuse(
                stream,
                ProtocolVersion::V311,
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            )
            .await;
            None
        }
        Ok(Err(ReadError::Decode(e, version))) => {
            warn!(%peer, "closing on an invalid CONNECT: {e}");
            // Refused in the CONNECT's own version where its bytes name one (3.x has
            // no code for a malformed CONNECT: it is closed without one).
            if let Some(version) = version {
                refuse(stream, version, e.reason_code()).await;
            }
            None
        }
        Ok(Err(e)) => {
            warn!(%peer, "closing before CONNECT was read: {e}");
            None
        }
    }
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

/// Checks an incoming CONNECT and settles how the connection runs; `Err` carries the
/// reason code that refuses it (sent as the nearest return code to MQTT 3.x clients).
fn check_connect(connect: &Connect, broker: &Broker, cx: &Context) -> Result<Agreed, ReasonCode> {
    let limits = &broker.limits;
    let v5 = connect.version == ProtocolVersion::V5;
    // MQTT 3.1 allows client ids of 1 to 23 characters only; 3.1.1 an empty one only
    // with a clean session; 5.0 an empty one always.
    let id_ok = match connect.version {
        ProtocolVersion::V31 => (1..=23).contains(&connect.client_id.chars().count()),
        ProtocolVersion::V311 => !connect.client_id.is_empty() || connect.clean_start,
        ProtocolVersion::V5 => true,
    };
    if !id_ok {
        return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    }
    if let Some(will) = &connect.will {
        if broker.topic_refusal(will.topic.as_str()).is_some() {
            return Err(ReasonCode::TOPIC_NAME_INVALID);
        }
        if v5 && will.qos > limits.max_qos.0 {
            return Err(ReasonCode::QOS_NOT_SUPPORTED);
        }
    }
    if let Some(method) = &connect.properties.authentication_method {
        if !cx.auth.supports_method(method) {
            return Err(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
    }
    // A keep alive above the server's maximum, or none where there is a maximum: an
    // MQTT 5.0 client is told the server's (Server Keep Alive); a 3.x client is
    // refused, as Mosquitto does.
    let max = limits.max_keepalive_secs;
    let over = connect.keep_alive > max || (connect.keep_alive == 0 && max < u16::MAX);
    let server_keep_alive = match (over, v5) {
        (false, _) => None,
        (true, true) => Some(max),
        (true, false) => return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
    };
    Ok(Agreed {
        keep_alive: server_keep_alive.unwrap_or(connect.keep_alive),
        server_keep_alive,
        assigned_client_id: connect
            .client_id
            .is_empty()
            .then(|| format!("auto-{}", uuid_like(broker.next_connection_id())).into()),
    })
}

/// Sends a refusing CONNACK in `version` and closes the connection.
async fn refuse<W: AsyncWrite + Unpin>(
    writer: &mut W,
    version: ProtocolVersion,
    reason: ReasonCode,
) {
    let mut out = BytesMut::with_capacity(8);
    // Where MQTT 3.x has no return code for the refusal, it closes without a CONNACK.
    if version == ProtocolVersion::V5 || reason.connack_return_code().is_some() {
        let connack = ConnAck {
            session_present: false,
            reason,
            properties: Default::default(),
        };
        Encoder::new(version).encode(&Packet::ConnAck(connack), &mut out);
        let _ = timeout(FAREWELL_TIMEOUT, writer.write_all(&out)).await;
    }
    let _ = timeout(FAREWELL_TIMEOUT, writer.shutdown()).await;
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// With the version the packet's bytes named, if it was a readable CONNECT.
    #[error("{0}")]
    Decode(DecodeError, Option<ProtocolVersion>),
}

/// Reads until the first packet is buffered and decodes it; `None` if the peer closed
/// first.
async fn read_first_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    input: &mut BytesMut,
    decoder: &mut Decoder,
) -> Result<Option<Packet>, ReadError> {
    loop {
        // Decoding consumes the packet, even one it refuses: look at it first.
        let version = connect_version(input);
        match decoder.decode(input) {
            Ok(Some(packet)) => return Ok(Some(packet)),
            Ok(None) => {}
            Err(e) => return Err(ReadError::Decode(e, version)),
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
    /// Boxed: only logs read it, and an idle connection's task is to stay small.
    peer: Box<SocketAddr>,
    input: BytesMut,
    output: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
    broker: Admitted,
    session: Arc<Session>,
    /// Boxed: most clients have none, and a will is large.
    will: Option<Box<Will>>,
    /// What the ACL lets the client do; `None` without an ACL file.
    permit: Option<Box<Permit>>,
    /// Its publish budget; `None` without a rate limit.
    rate: Option<Box<PublishRate>>,
    /// A refusal of something the client asked for was logged.
    refusal_logged: bool,
    /// The keep alive in force, in seconds, 0 for none.
    keep_alive: u16,
    /// QoS 1/2 messages sent to the client and not yet acknowledged: the server's
    /// limit, or the client's Receive Maximum if lower.
    window: u16,
    /// The CONNECT set no session expiry: a DISCONNECT may not set one.
    expiry_was_none: bool,
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
    /// Output that acknowledges what storage has not made durable yet. Boxed: only
    /// stored sessions and publishers to them ever wait.
    held: Option<Box<Held>>,
}

/// The end of a connection's output, held back until storage reaches a ticket.
struct Held {
    /// Bytes at the front of the output that may go out meanwhile.
    free: usize,
    /// What the rest waits for.
    ticket: Ticket,
    /// The wait in progress, and the ticket it is for (tickets come in while it runs).
    wait: Durable,
    waiting_for: Ticket,
    /// Where the bytes `waiting_for` covers end, once a later ticket came in (before
    /// that, all of them).
    covered: Option<usize>,
}

impl Held {
    /// `n` bytes from the front of the output were written.
    fn advance(&mut self, n: usize) {
        self.free -= n;
        if let Some(covered) = &mut self.covered {
            *covered -= n;
        }
    }
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
        let writable = match self.poll_held(cx) {
            Err(close) => return Poll::Ready(Err(close)),
            Ok(writable) => writable,
        };
        let mut wrote = false;
        if writable > 0 {
            match Pin::new(&mut self.stream).poll_write(cx, &self.output[..writable]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Close::PeerClosed)),
                Poll::Ready(Ok(n)) => {
                    Stats::add(&self.broker.stats.bytes_sent, n as u64);
                    self.output.advance(n);
                    if let Some(held) = &mut self.held {
                        held.advance(n);
                    }
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
                    Stats::add(&self.broker.stats.bytes_received, n as u64);
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

    /// Holds what is written to the output from now on until storage has made `ticket`
    /// durable (nothing to hold for `Ticket::NONE`).
    fn hold(&mut self, ticket: Ticket) {
        self.hold_from(ticket, self.output.len());
    }

    /// Holds the output from byte `from` on until `ticket` is durable.
    fn hold_from(&mut self, ticket: Ticket, from: usize) {
        if ticket == Ticket::NONE {
            return;
        }
        match &mut self.held {
            Some(held) => {
                if ticket > held.ticket {
                    held.covered.get_or_insert(from);
                    held.ticket = ticket;
                }
            }
            None => {
                self.held = Some(Box::new(Held {
                    free: from,
                    ticket,
                    wait: self.broker.durable(ticket),
                    waiting_for: ticket,
                    covered: None,
                }))
            }
        }
    }

    /// Lets held output go once durable; returns how many bytes of the output may be
    /// written now.
    fn poll_held(&mut self, cx: &mut TaskContext<'_>) -> Result<usize, Close> {
        while let Some(held) = &mut self.held {
            match held.wait.as_mut().poll(cx) {
                Poll::Pending => return Ok(held.free),
                Poll::Ready(Err(_)) => return Err(Close::Storage),
                Poll::Ready(Ok(())) if held.ticket > held.waiting_for => {
                    // What the reached ticket covers goes; the rest waits for the next.
                    if let Some(covered) = held.covered.take() {
                        held.free = covered;
                    }
                    held.waiting_for = held.ticket;
                    held.wait = self.broker.durable(held.ticket);
                }
                Poll::Ready(Ok(())) => self.held = None,
            }
        }
        Ok(self.output.len())
    }

    /// Catches up with the session: a kick ends the connection; otherwise the keep-alive
    /// deadline is moved if due, and queued messages go to the output as far as it and
    /// the in-flight window allow. `waker` is registered for the next signal.
    fn sync(&mut self, waker: &Waker) -> Result<(), Close> {
        self.refresh_grants();
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
            let window = usize::from(self.window);
            let before = self.output.len();
            let drained = state.drain(window, &mut self.encoder, &mut self.output, LOW_WATER);
            self.broker.stats.sent(drained.published);
            if let Some(age) = drained.first_age {
                metrics::histogram!(crate::telemetry::DELIVERY_LATENCY).record(age.as_secs_f64());
            }
            for (reason, n) in [
                ("expired", drained.expired),
                ("too_large", drained.too_large),
            ] {
                if n > 0 {
                    metrics::counter!(crate::telemetry::MESSAGES_DROPPED, "reason" => reason)
                        .increment(n.into());
                }
            }
            // Recorded under the session's lock, so that no acknowledgement of these
            // messages is recorded first. A QoS 2 message goes out only once its packet
            // id is stored: sent again after a restart with another, it would be new to
            // the client.
            let mut ticket = Ticket::NONE;
            for sent in &drained.sent {
                let recorded = self.broker.record_if_stored(&state, || Change::InFlight {
                    client_id: self.session.client_id.clone(),
                    seq: sent.seq,
                    pkid: sent.pkid,
                    released: false,
                });
                if sent.qos == QoS::ExactlyOnce {
                    ticket = recorded;
                }
            }
            let room_made = state.take_room_made(self.broker.queue_limits());
            drop(state);
            self.hold_from(ticket, before);
            if room_made {
                self.broker.room_made();
            }
            for seq in drained.dropped {
                self.broker.delivered(&self.session, seq);
            }
            // Anything left waits for room: an acknowledgement or a write sets this again.
            self.more_to_send = self.output.len() >= LOW_WATER;
        }
        Ok(())
    }

    /// Pauses reading until `congested` has room.
    /// Stops reading for `wait` (after any pause already begun): the client published
    /// beyond its rate. Logged the first time.
    fn slow_down(&mut self, wait: Duration) {
        metrics::counter!(crate::telemetry::LIMIT_HITS, "limit" => "publish_rate").increment(1);
        if self.rate.as_mut().is_some_and(|rate| rate.first_hit()) {
            warn!(peer = %self.peer, client = %self.session.client_id,
                "publish rate limit reached: reading from this client is slowed down (logged once a connection)");
        }
        self.stop_reading_until(tokio::time::sleep(wait));
    }

    fn pause(&mut self, congested: Arc<Session>) {
        let broker = Arc::clone(&self.broker);
        let limits = broker.queue_limits();
        self.stop_reading_until(async move { broker.room(&congested, limits).await });
    }

    /// Reads no more packets until `until` is done, and any pause already begun.
    fn stop_reading_until(&mut self, until: impl Future<Output = ()> + Send + 'static) {
        let before = self.paused.take();
        self.paused = Some(Box::pin(async move {
            if let Some(before) = before {
                before.await;
            }
            until.await;
        }));
        self.deadline_stale = true;
    }

    /// Logs why the connection ended, tells an MQTT 5.0 client why where there is a
    /// reason code for it, publishes the will where due, detaches and closes.
    async fn close(&mut self, close: Close) {
        self.broker.clients.disconnected(self.connection_id);
        self.refresh_grants();
        let (peer, client_id) = (*self.peer, &self.session.client_id);
        match &close {
            Close::Disconnect { .. } | Close::PeerClosed | Close::Shutdown | Close::TakenOver => {
                info!(%peer, client = %client_id, reason = %close, "client disconnected")
            }
            Close::Io(_) | Close::Protocol { .. } | Close::KeepAliveExpired | Close::Storage => {
                warn!(%peer, client = %client_id, reason = %close, "connection closed")
            }
        }
        if close.publishes_will() {
            let will = self.will.take().filter(|will| {
                let topic = &will.message.topic;
                let allowed = self.permit.as_ref().map_or(true, |p| p.grants().may_write(topic));
                if !allowed {
                    warn!(%peer, client = %client_id, %topic, "will dropped: the ACL no longer lets the client write to its topic");
                }
                allowed
            });
            if let Some(will) = will {
                debug!(client = %client_id, topic = %will.message.topic, "publishing will");
                self.broker
                    .publish_will(&self.session, self.connection_id, *will);
            }
        }
        self.broker.detach(&self.session, self.connection_id);
        // What waits for storage goes out only once durable.
        if let Some(held) = self.held.take() {
            let durable = timeout(FAREWELL_TIMEOUT, self.broker.durable(held.ticket)).await;
            if !matches!(durable, Ok(Ok(()))) {
                self.output.truncate(held.free);
            }
        }
        if self.v5() {
            if let Some(disconnect) = close.disconnect_packet() {
                self.encoder
                    .encode(&Packet::Disconnect(disconnect), &mut self.output);
            }
        }
        // What is already buffered goes out too, but a peer that does not read holds
        // nothing up for long.
        if !self.output.is_empty() && !matches!(close, Close::Io(_) | Close::PeerClosed) {
            let _ = timeout(FAREWELL_TIMEOUT, self.stream.write_all(&self.output)).await;
        }
        let _ = timeout(FAREWELL_TIMEOUT, self.stream.shutdown()).await;
    }

    /// Handles the complete packets in `input`. Stops early when a publish congests a
    /// queue: the rest waits in `input` until the pause ends. Keep alive counts whole
    /// control packets, not stray bytes: only they (and a pause) move the deadline.
    fn take_packets(&mut self) -> Result<(), Close> {
        self.refresh_grants();
        // Counted here and added once: the totals are shared by every connection.
        let mut published = [0u64; 3];
        let mut taken = Ok(());
        while self.paused.is_none() {
            let packet = match self.decoder.decode(&mut self.input) {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(e) => {
                    taken = Err(e.into());
                    break;
                }
            };
            if let Packet::Publish(publish) = &packet {
                published[publish.qos as usize] += 1;
            }
            if let Err(close) = self.handle(packet) {
                taken = Err(close);
                break;
            }
            self.deadline_stale = true;
        }
        self.broker.stats.received(published);
        taken
    }

    fn v5(&self) -> bool {
        self.encoder.version() == ProtocolVersion::V5
    }

    /// After the ACL file was reloaded, holds the session to the new rules.
    fn refresh_grants(&mut self) {
        if let Some(fresh) = self.permit.as_mut().and_then(|p| p.refresh()) {
            let fresh = fresh.clone();
            self.broker
                .set_grants(&self.session, self.connection_id, fresh);
        }
    }

    /// Whether the ACL lets the client publish to `topic`; logs the client's first
    /// refusal.
    fn may_publish(&mut self, topic: &TopicName) -> bool {
        let Some(permit) = &self.permit else {
            return true;
        };
        if permit.grants().may_write(topic) {
            return true;
        }
        let user = permit.user().unwrap_or_default().to_owned();
        self.refused(format_args!(
            "publish to {topic} refused by the ACL (user {user:?})"
        ));
        false
    }

    /// Logs the first refusal of something the client asked for (a subscription, a
    /// publish): a client that keeps asking is not logged again.
    fn refused(&mut self, what: std::fmt::Arguments<'_>) {
        if !std::mem::replace(&mut self.refusal_logged, true) {
            warn!(peer = %self.peer, client = %self.session.client_id,
                "{what} (further refusals to this client are not logged)");
        }
    }

    fn send(&mut self, packet: &Packet) {
        self.encoder.encode(packet, &mut self.output);
    }

    fn handle(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(publish) => {
                let over_rate = (self.rate.as_mut())
                    .and_then(|rate| rate.charge(publish.payload.len(), Instant::now()));
                if let Some(wait) = over_rate {
                    // From the next packet on: this one is handled now.
                    self.slow_down(wait);
                }
                if let Some(why) = self.broker.topic_refusal(publish.topic.as_str()) {
                    return Err(Close::protocol(
                        ReasonCode::TOPIC_NAME_INVALID,
                        format!("topic {} is {why}", publish.topic),
                    ));
                }
                if self.v5() {
                    if publish.qos > self.broker.limits.max_qos.0 {
                        return Err(Close::protocol(
                            ReasonCode::QOS_NOT_SUPPORTED,
                            "PUBLISH above the Maximum QoS",
                        ));
                    }
                    if !publish.properties.subscription_identifiers.is_empty() {
                        return Err(Close::protocol(
                            ReasonCode::PROTOCOL_ERROR,
                            "a client's PUBLISH carries a Subscription Identifier",
                        ));
                    }
                }
                if !self.may_publish(&publish.topic) {
                    // MQTT 3.x has no way to say so: the message is acknowledged and
                    // dropped, as Mosquitto does. MQTT 5.0 says why.
                    let reason = if self.v5() {
                        ReasonCode::NOT_AUTHORIZED
                    } else {
                        ReasonCode::SUCCESS
                    };
                    let pkid = publish.pkid;
                    match publish.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            self.send(&Packet::PubAck(Ack::with_reason(pkid, reason)))
                        }
                        QoS::ExactlyOnce => {
                            self.send(&Packet::PubRec(Ack::with_reason(pkid, reason)))
                        }
                    }
                    return Ok(());
                }
                let properties = if publish.properties.is_empty() {
                    None
                } else {
                    MessageProperties::from_packet(&publish.properties, Instant::now())
                };
                let message = Message {
                    topic: publish.topic,
                    payload: publish.payload,
                    qos: publish.qos,
                    retain: publish.retain,
                    properties,
                    published_at: Stamp::now(),
                };
                let pkid = publish.pkid;
                let publisher = Some(&*self.session.client_id);
                // Acknowledged once what it led to is durable.
                let (published, ack) = match publish.qos {
                    QoS::AtMostOnce => (self.broker.publish(message, publisher), None),
                    QoS::AtLeastOnce => (
                        self.broker.publish(message, publisher),
                        Some(Packet::PubAck(Ack::new(pkid))),
                    ),
                    QoS::ExactlyOnce => {
                        let published = self.publish_exactly_once(pkid, message)?;
                        (published, Some(Packet::PubRec(Ack::new(pkid))))
                    }
                };
                if let Some(ack) = ack {
                    self.hold(published.ticket);
                    self.send(&ack);
                }
                if let Some(congested) = published.congested {
                    self.pause(congested);
                }
            }
            Packet::PubRel(rel) => {
                let ticket = {
                    let mut state = self.session.lock();
                    let known = state.release_qos2(rel.pkid);
                    known.then(|| {
                        self.broker
                            .record_if_stored(&state, || Change::Qos2Released {
                                client_id: self.session.client_id.clone(),
                                pkid: rel.pkid,
                            })
                    })
                };
                let reason = match ticket {
                    Some(ticket) => {
                        // PUBCOMP frees the packet id: a crash must not bring it back.
                        self.hold(ticket);
                        ReasonCode::SUCCESS
                    }
                    None => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                };
                self.send(&Packet::PubComp(Ack::with_reason(rel.pkid, reason)));
            }
            Packet::PubAck(ack) => {
                let acked = self.session.lock().puback(ack.pkid);
                self.acknowledged(acked);
            }
            Packet::PubRec(rec) => {
                let mut state = self.session.lock();
                // A failure code ends the exchange: the message is done (MQTT 5.0 4.3.3).
                let acked = if rec.reason.is_error() {
                    state.pubrec_refused(rec.pkid)
                } else {
                    state.pubrec(rec.pkid)
                };
                // Once PUBREL is sent, a restart must send PUBREL again, not the message.
                let ticket = match acked {
                    Acked::Released(seq) => {
                        self.broker.record_if_stored(&state, || Change::InFlight {
                            client_id: self.session.client_id.clone(),
                            seq,
                            pkid: rec.pkid,
                            released: true,
                        })
                    }
                    _ => Ticket::NONE,
                };
                drop(state);
                match acked {
                    Acked::Released(_) => {
                        self.hold(ticket);
                        self.send(&Packet::PubRel(Ack::new(rec.pkid)))
                    }
                    // MQTT 5.0 says why it does not know the packet id; 3.x says nothing.
                    Acked::Unknown if self.v5() && !rec.reason.is_error() => {
                        self.send(&Packet::PubRel(Ack::with_reason(
                            rec.pkid,
                            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                        )))
                    }
                    acked => self.acknowledged(acked),
                }
            }
            Packet::PubComp(comp) => {
                let acked = self.session.lock().pubcomp(comp.pkid);
                self.acknowledged(acked);
            }
            Packet::Subscribe(subscribe) => {
                let id = subscribe
                    .properties
                    .subscription_identifiers
                    .first()
                    .copied();
                let shared_no_local = subscribe
                    .filters
                    .iter()
                    .any(|(filter, options)| options.no_local && filter.starts_with("$share/"));
                if shared_no_local {
                    return Err(Close::protocol(
                        ReasonCode::PROTOCOL_ERROR,
                        "No Local on a shared subscription",
                    ));
                }
                let SubscribeOutcome {
                    codes,
                    ticket,
                    refused,
                } = self.broker.subscribe(
                    &self.session,
                    &subscribe.filters,
                    id.and_then(std::num::NonZeroU32::new),
                );
                if let Some(refused) = refused {
                    self.refused(format_args!("subscription refused: {refused}"));
                }
                let ack = SubAck {
                    pkid: subscribe.pkid,
                    codes,
                    properties: Default::default(),
                };
                self.hold(ticket);
                self.send(&Packet::SubAck(ack));
                // Retained messages were queued: send them after the SUBACK.
                self.more_to_send = true;
            }
            Packet::Unsubscribe(unsubscribe) => {
                let (codes, ticket) = self.broker.unsubscribe(&self.session, &unsubscribe.filters);
                let ack = UnsubAck {
                    pkid: unsubscribe.pkid,
                    codes,
                    properties: Default::default(),
                };
                self.hold(ticket);
                self.send(&Packet::UnsubAck(ack));
            }
            Packet::PingReq => self.send(&Packet::PingResp),
            Packet::Disconnect(disconnect) => {
                if let Some(secs) = disconnect.properties.session_expiry_interval {
                    // MQTT-3.14.2-2: a session that was to end with the connection
                    // cannot be kept by its DISCONNECT.
                    if self.expiry_was_none && secs != 0 {
                        return Err(Close::protocol(
                            ReasonCode::PROTOCOL_ERROR,
                            "DISCONNECT sets a Session Expiry Interval after CONNECT set none",
                        ));
                    }
                    self.broker.set_session_expiry(
                        &self.session,
                        self.connection_id,
                        SessionExpiry(secs),
                    );
                }
                // Only a normal disconnection discards the will (MQTT-3.1.2-10 of 5.0);
                // 0x04 asks for it, and so does any error.
                let with_will = disconnect.reason != ReasonCode::NORMAL_DISCONNECTION;
                return Err(Close::Disconnect { with_will });
            }
            Packet::Auth(_) => {
                // No authentication method is ever agreed, so AUTH is never expected.
                return Err(Close::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "AUTH without an agreed authentication method",
                ));
            }
            other @ (Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                return Err(Close::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    format!("unexpected {} from a client", other.name()),
                ))
            }
        }
        Ok(())
    }

    /// Records an incoming QoS 2 packet id and publishes its message on first receipt
    /// (a resend before PUBREL is not published again): both reach storage together or
    /// not at all, so that after a crash the resent PUBLISH is neither lost nor doubled.
    fn publish_exactly_once(&mut self, pkid: u16, message: Message) -> Result<Published, Close> {
        // MQTT 5.0's Receive Maximum; 3.x has none, and its packet ids bound the state.
        let max = if self.v5() {
            self.broker.limits.max_inflight_messages.0
        } else {
            usize::MAX
        };
        let broker = &self.broker;
        // Only a stored session records the packet id: nothing to keep together else.
        let stored = self.session.lock().stored;
        let _atomic = stored.then(|| broker.atomic());
        let (incoming, ticket) = {
            let mut state = self.session.lock();
            let incoming = state.receive_qos2(pkid, max);
            // Recorded again for a resend, so that its PUBREC too waits for the flush.
            let ticket = match incoming {
                IncomingQos2::OverLimit => Ticket::NONE,
                IncomingQos2::Fresh | IncomingQos2::Repeated => {
                    broker.record_if_stored(&state, || Change::Qos2Received {
                        client_id: self.session.client_id.clone(),
                        pkid,
                    })
                }
            };
            (incoming, ticket)
        };
        match incoming {
            IncomingQos2::OverLimit => Err(Close::protocol(
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                format!("more than {max} QoS 2 messages awaiting PUBREL"),
            )),
            IncomingQos2::Repeated => Ok(Published {
                id: None,
                congested: None,
                ticket,
            }),
            IncomingQos2::Fresh => {
                let mut published = broker.publish(message, Some(&*self.session.client_id));
                published.ticket = published.ticket.max(ticket);
                Ok(published)
            }
        }
    }

    fn acknowledged(&mut self, acked: Acked) {
        if let Acked::Done(seq) = acked {
            self.broker.delivered(&self.session, seq);
            self.more_to_send = true;
        }
    }
}
