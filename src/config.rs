//! broker.toml: the configuration file and its defaults.
//!
//! Every key is checked while the file is parsed, so a bad value is reported with its
//! line and key, and unknown keys are errors.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::{QoS, MAX_REMAINING_LENGTH};
use crate::proxy::ProxyNetwork;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listeners")]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub protocol: ListenerProtocol,
    pub bind: SocketAddr,
    /// Certificates for `mqtts` and `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Load balancers whose word on a client's address is believed: the PROXY header
    /// (with `proxy_protocol`) and, on `http`/`https`, `X-Forwarded-For`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<ProxyNetwork>,
    /// Connections from `trusted_proxies` start with a PROXY protocol v1 or v2 header.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_protocol: bool,
    /// Connections this listener takes at once, within `mqtt.max_connections`; more
    /// are closed as soon as they are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<Connections>,
}

impl Listener {
    /// Refuses settings that would be silently ignored.
    fn check(&self) -> Result<(), &'static str> {
        let http = matches!(
            self.protocol,
            ListenerProtocol::Http | ListenerProtocol::Https
        );
        let tls = matches!(
            self.protocol,
            ListenerProtocol::Mqtts | ListenerProtocol::Https
        );
        if self.tls.is_some() && !tls {
            return Err("a tls table needs protocol \"mqtts\" or \"https\"");
        }
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return Err("proxy_protocol needs trusted_proxies, the addresses it comes from");
        }
        if !self.trusted_proxies.is_empty() && !self.proxy_protocol && !http {
            return Err("trusted_proxies does nothing on an MQTT listener without proxy_protocol");
        }
        Ok(())
    }

    /// A listener of `protocol` on `bind`, without TLS or proxies.
    pub fn new(protocol: ListenerProtocol, bind: SocketAddr) -> Listener {
        Listener {
            protocol,
            bind,
            tls: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            max_connections: None,
        }
    }
}

/// A TLS listener's certificates, as PEM files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// CA certificates that client certificates are checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate.
    #[serde(default)]
    pub require_certificate: bool,
    /// A client is the user its certificate's common name names, as with Mosquitto:
    /// no user name or password is needed then.
    #[serde(default)]
    pub use_identity_as_username: bool,
}

/// Listener protocols this build serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenerProtocol {
    Mqtt,
    /// MQTT over TLS.
    Mqtts,
    /// HTTP: MQTT over WebSocket at /mqtt, /healthz.
    Http,
    /// The same over TLS.
    Https,
}

impl TryFrom<String> for ListenerProtocol {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "mqtt" => Ok(ListenerProtocol::Mqtt),
            "mqtts" => Ok(ListenerProtocol::Mqtts),
            "http" => Ok(ListenerProtocol::Http),
            "https" => Ok(ListenerProtocol::Https),
            _ => Err(format!(
                "unknown protocol \"{s}\", expected \"mqtt\", \"mqtts\", \"http\" or \"https\""
            )),
        }
    }
}

impl From<ListenerProtocol> for String {
    fn from(p: ListenerProtocol) -> String {
        match p {
            ListenerProtocol::Mqtt => "mqtt".into(),
            ListenerProtocol::Mqtts => "mqtts".into(),
            ListenerProtocol::Http => "http".into(),
            ListenerProtocol::Https => "https".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Keep durable state on disk (persistent sessions, retained messages, event ids).
    pub persistence: bool,
    /// The database directory.
    pub path: PathBuf,
    /// When writes reach the disk, and whether acknowledgements wait for them.
    pub sync: SyncMode,
    /// How often `sync = "interval"` flushes, in milliseconds.
    pub sync_interval_ms: SyncInterval,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            persistence: true,
            path: PathBuf::from("./data"),
            sync: SyncMode::Always,
            sync_interval_ms: SyncInterval(1000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Each PUBACK, PUBREC and SUBACK waits until what it acknowledges is flushed; all
    /// writes waiting meanwhile share one flush.
    Always,
    /// Flushed every `sync_interval_ms`; acknowledgements do not wait.
    Interval,
    /// Flushed only at shutdown (and when sled's buffers fill).
    Never,
}

/// The web readers (SSE, polling, iframe), HTTP publish and CORS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Origins whose pages may use the HTTP API (`"*"`: any); none by default.
    pub cors_origins: Vec<String>,
    /// Recent messages kept so that a reader can resume: at most this many…
    pub replay_max_messages: usize,
    /// …holding at most this many topic and payload bytes.
    pub replay_max_bytes: usize,
    /// What one SSE or iframe stream may have waiting to be sent, in bytes; a reader
    /// that falls further behind is cut off (and resumes from its last id).
    pub stream_buffer_bytes: StreamBuffer,
    /// Seconds between keepalive comments on an idle stream.
    pub keepalive_secs: KeepaliveInterval,
    /// The reconnection delay a stream asks its EventSource for.
    pub retry_ms: u32,
    /// Largest `POST /publish` body.
    pub max_body_bytes: usize,
    /// Web readers (SSE and iframe streams, long polls) at once; more are refused (503).
    pub max_readers: usize,
    /// Largest request head (request line and headers), in bytes: 431 beyond it.
    pub max_request_head_bytes: RequestHead,
    /// Requests one HTTP/2 connection may have open at once (SSE streams, mostly);
    /// the client is told, and further streams are refused.
    pub max_streams_per_connection: Streams,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            cors_origins: Vec::new(),
            replay_max_messages: 10_000,
            replay_max_bytes: 16 << 20,
            stream_buffer_bytes: StreamBuffer(1 << 20),
            keepalive_secs: KeepaliveInterval(15),
            retry_ms: 2000,
            max_body_bytes: 1 << 20,
            max_readers: 100_000,
            max_request_head_bytes: RequestHead(16 * 1024),
            max_streams_per_connection: Streams(100),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Clients without a user name may connect; by default only without a password
    /// file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Users and their password hashes (Mosquitto's format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// What each client may read and write (Mosquitto's format); without one, any
    /// client that may connect may read and write every topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_file: Option<PathBuf>,
}

impl AuthConfig {
    /// Whether clients without a user name may connect.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous.unwrap_or(self.password_file.is_none())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Largest keep alive a client may ask for; a client asking for more is refused.
    pub max_keepalive_secs: u16,
    /// Largest packet accepted, in bytes, fixed header included.
    pub max_packet_size: PacketSize,
    /// Connections beyond this are closed as soon as they are accepted.
    pub max_connections: Connections,
    /// QoS 1/2 messages sent to one client and not yet acknowledged; also the Receive
    /// Maximum announced to MQTT 5.0 clients, and the QoS 2 messages any client may
    /// have received and not yet released.
    pub max_inflight_messages: Window,
    /// Messages waiting per session beyond the in-flight window; newer ones are dropped.
    pub max_queued_messages: usize,
    /// Payload bytes waiting per session; newer messages are dropped beyond it.
    pub max_queued_bytes: usize,
    /// Subscriptions one session may hold; further filters are refused with 0x80.
    pub max_subscriptions_per_client: usize,
    /// Sessions the broker keeps, connected or not; a new client id beyond it is refused
    /// with CONNACK 0x03 (server unavailable), or 0x97 (quota exceeded) in MQTT 5.0.
    pub max_sessions: usize,
    /// Topics with a retained message; a retained message for a new topic beyond it is
    /// delivered but not retained.
    pub max_retained_messages: usize,
    /// Levels a topic name or filter may have: deeper PUBLISH topics close the
    /// connection, deeper filters are refused with 0x80.
    pub max_topic_levels: TopicLevels,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: TopicLength,
    /// Highest QoS granted to a subscription.
    pub max_qos: MaxQos,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout_secs: ConnectTimeout,
    /// Topic aliases an MQTT 5.0 client may set up, and the most the broker sets up
    /// towards one: 0 turns them off.
    pub max_topic_alias: u16,
    /// PUBLISH packets one client may send a second (a second's worth at once); a
    /// faster client is read from more slowly. 0: no limit.
    pub max_publish_rate: u32,
    /// Payload bytes one client may publish a second, likewise. 0: no limit.
    pub max_publish_bytes_rate: u64,
    /// What becomes of a message for a client whose queue is full.
    pub queue_full: QueueFull,
    /// Seconds between updates of the `$SYS` topics; 0: none are published.
    pub sys_interval: u32,
}

/// What becomes of a message for a client whose queue (`max_queued_messages`,
/// `max_queued_bytes`) is full. Either way the drop is counted and logged once per
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFull {
    /// QoS 1/2 messages for a connected client are queued (up to twice the limits)
    /// and their publishers pause until it has room, so nothing acknowledged is lost;
    /// QoS 0 messages, and messages for offline clients, are dropped.
    #[default]
    PausePublishers,
    /// The new message is dropped, whatever its QoS (as Mosquitto does).
    DropNew,
    /// The oldest message waiting is dropped to make room for the new one.
    DropOldest,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_keepalive_secs: 65535,
            max_packet_size: PacketSize(MAX_REMAINING_LENGTH),
            max_connections: Connections(100_000),
            max_inflight_messages: Window(20),
            max_queued_messages: 1000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_subscriptions_per_client: 10_000,
            max_sessions: 1_000_000,
            max_retained_messages: 1_000_000,
            max_topic_levels: TopicLevels(128),
            max_topic_length: TopicLength(65535),
            max_qos: MaxQos(QoS::ExactlyOnce),
            connect_timeout_secs: ConnectTimeout(10),
            max_topic_alias: 10,
            max_publish_rate: 0,
            max_publish_bytes_rate: 0,
            queue_full: QueueFull::PausePublishers,
            sys_interval: 10,
        }
    }
}

/// Declares a configuration integer that must lie within a range. It is checked while
/// the file is parsed, so an error names the value's line and key.
macro_rules! bounded {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(pub usize);

        impl TryFrom<u64> for $name {
            type Error = String;

            fn try_from(n: u64) -> Result<Self, String> {
                match usize::try_from(n) {
                    Ok(n) if ($min..=$max).contains(&n) => Ok($name(n)),
                    _ => Err(format!("{n} is not {} between {} and {}", $what, $min, $max)),
                }
            }
        }

        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0 as u64
            }
        }
    };
}

bounded!(
    /// A maximum packet size: at least 2 bytes, at most what MQTT can frame.
    PacketSize, 2, MAX_REMAINING_LENGTH, "a packet size"
);
bounded!(
    /// The largest HTTP request head: at least hyper's smallest buffer (8 KiB), at
    /// most 1 MiB.
    RequestHead, 8192, 1 << 20, "a request head size"
);
bounded!(
    /// Concurrent requests on one HTTP/2 connection.
    Streams, 1, 10_000, "a number of streams"
);
bounded!(
    /// An in-flight window: 1 to 65535 messages.
    Window, 1, 65535, "an in-flight window"
);
bounded!(
    /// How deep topics may be. The bound keeps every walk of the topic trees shallow.
    TopicLevels, 1, 1024, "a number of topic levels"
);
bounded!(
    /// How long topics may be: up to what MQTT can encode.
    TopicLength, 1, 65535, "a topic length in bytes"
);
bounded!(
    /// A connection limit.
    Connections, 1, 10_000_000, "a connection limit"
);
bounded!(
    /// Seconds to wait for CONNECT.
    ConnectTimeout, 1, 3600, "a connect timeout in seconds"
);
bounded!(
    /// Bytes a web stream may have waiting: room for at least one event.
    StreamBuffer, 4096, 1 << 30, "a stream buffer size"
);
bounded!(
    /// Seconds between keepalive comments.
    KeepaliveInterval, 1, 3600, "a keepalive interval in seconds"
);
bounded!(
    /// Milliseconds between flushes with `sync = "interval"`.
    SyncInterval, 1, 3_600_000, "a flush interval in milliseconds"
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct MaxQos(pub QoS);

impl TryFrom<u8> for MaxQos {
    type Error = String;

    fn try_from(n: u8) -> Result<Self, String> {
        QoS::from_bits(n)
            .map(MaxQos)
            .ok_or_else(|| format!("{n} is not a QoS (0, 1 or 2)"))
    }
}

impl From<MaxQos> for u8 {
    fn from(q: MaxQos) -> u8 {
        q.0 as u8
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `error`, `warn`, `info`, `debug`, `trace`, or per-module
    /// directives such as `info,herald::connection=debug`. RUST_LOG overrides it.
    pub level: String,
    /// Lines of text, or one JSON object a line.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

fn default_listeners() -> Vec<Listener> {
    vec![Listener::new(
        ListenerProtocol::Mqtt,
        SocketAddr::from(([127, 0, 0, 1], 1883)),
    )]
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: default_listeners(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            mqtt: MqttConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// A configuration that could not be read or is not valid.
#[derive(Debug)]
pub struct ConfigError {
    path: PathBuf,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Config::parse(&text).map_err(|message| ConfigError {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses broker.toml text; the error names the line, column and key.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.listeners.is_empty() {
            return Err("at least one [[listeners]] entry is needed".into());
        }
        for listener in &config.listeners {
            listener
                .check()
                .map_err(|e| format!("listener {}: {e}", listener.bind))?;
        }
        Ok(config)
    }

    /// The effective configuration as TOML, defaults filled in.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn listener_settings_that_would_be_ignored_are_errors() {
        let listener = |rest: &str| {
            Config::parse(&format!(
                "[[listeners]]\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:1\"\n{rest}"
            ))
        };
        let err = listener("tls = { cert = \"a\", key = \"b\" }").unwrap_err();
        assert!(err.contains("tls table needs"), "{err}");
        let err = listener("proxy_protocol = true").unwrap_err();
        assert!(err.contains("needs trusted_proxies"), "{err}");
        let err = listener("trusted_proxies = [\"10.0.0.1\"]").unwrap_err();
        assert!(err.contains("does nothing"), "{err}");
        let ok = listener("trusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol = true");
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn errors_name_line_and_key() {
        let err = Config::parse("[mqtt]\nmax_qos = 1\nbogus = 3\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("bogus"), "{err}");
        let err = Config::parse("[mqtt]\n\nmax_qos = 3\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("QoS"), "{err}");
    }

    #[test]
    fn effective_config_round_trips() {
        let config = Config::default();
        assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
    }
}
