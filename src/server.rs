//! Listeners, the accept loops and graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::acl::AccessControl;
use crate::auth::Authenticator;
use crate::broker::Broker;
use crate::config::{Config, HttpConfig, ListenerProtocol};
use crate::connection::{self, Context};
use crate::http;
use crate::proxy::TrustedProxies;
use crate::storage::{SledStorage, Storage, StorageError, Volatile};
use crate::tls::{self, Certificates, TlsError};
use tokio_rustls::server::TlsStream;

/// How often the replay log's new events are written to storage.
const FEED_PERSIST_INTERVAL: Duration = Duration::from_millis(100);

/// How long shutdown waits for connections to reach a safe state.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A broker serving its listeners.
pub struct Server {
    broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    /// The accept loops and the keep-alive sweeper.
    background: Vec<JoinHandle<()>>,
    /// Each TLS listener's certificates, with its address.
    certificates: Vec<(SocketAddr, Arc<Certificates>)>,
    auth: Arc<Authenticator>,
    access: Arc<AccessControl>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Auth(String),
    #[error("listener {addr}: {source}")]
    Tls { addr: SocketAddr, source: TlsError },
    #[error(
        "listener {addr}: protocols \"mqtts\" and \"https\" need a tls table with cert and key"
    )]
    NoTls { addr: SocketAddr },
}

/// What a listener runs its connections over.
#[derive(Clone)]
enum Transport {
    Tcp,
    Tls(Arc<Certificates>),
    /// HTTP, with MQTT over WebSocket: a connection counts once it upgrades.
    Http,
    /// The same over TLS.
    Https(Arc<Certificates>),
}

impl Server {
    /// Binds every listener of `config` and starts serving, with durable state in the
    /// database `config` names, or in memory only without persistence.
    pub async fn start(config: &Config) -> Result<Server, StartError> {
        let storage: Arc<dyn Storage> = if config.storage.persistence {
            let storage = &config.storage;
            let interval = Duration::from_millis(storage.sync_interval_ms.0 as u64);
            let path = storage.path.clone();
            let sync = storage.sync;
            // Opening replays sled's log: blocking work.
            let opened =
                tokio::task::spawn_blocking(move || SledStorage::open(&path, sync, interval))
                    .await
                    .map_err(|e| StorageError::Io(e.to_string()))??;
            info!(path = %storage.path.display(), sync = ?storage.sync, "storage opened");
            Arc::new(opened)
        } else {
            Arc::new(Volatile)
        };
        Server::start_with_storage(config, storage).await
    }

    /// Binds every listener of `config` and starts serving, on state from `storage`.
    pub async fn start_with_storage(
        config: &Config,
        storage: Arc<dyn Storage>,
    ) -> Result<Server, StartError> {
        let broker = Broker::new(config.mqtt.clone(), &config.http, storage)?;
        // Event ids reserved and sessions found expired are on disk before anyone is served.
        broker.flush_storage().await?;
        crate::telemetry::install();
        let auth = Arc::new(Authenticator::new(&config.auth).map_err(StartError::Auth)?);
        let access = Arc::new(AccessControl::new(&config.auth).map_err(StartError::Auth)?);
        let web = Arc::new(config.http.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut local_addrs = Vec::new();
        let mut background = vec![tokio::spawn(broker.keep_alives.clone().run())];
        if config.storage.persistence {
            background.push(tokio::spawn(persist_feed(broker.clone())));
        }
        if config.mqtt.sys_interval > 0 {
            let interval = Duration::from_secs(config.mqtt.sys_interval.into());
            let sys = crate::sys::publish_every(broker.clone(), interval, shutdown_rx.clone());
            background.push(tokio::spawn(sys));
        }
        let mut certificates = Vec::new();
        for listener in &config.listeners {
            let addr = listener.bind;
            let transport = match (listener.protocol, &listener.tls) {
                (ListenerProtocol::Mqtt, _) => Transport::Tcp,
                (ListenerProtocol::Http, _) => Transport::Http,
                (ListenerProtocol::Mqtts | ListenerProtocol::Https, None) => {
                    return Err(StartError::NoTls { addr })
                }
                (protocol, Some(tls)) => {
                    // HTTP/2 first where the client speaks it: many SSE streams on one
                    // connection.
                    let alpn: &[&[u8]] = match protocol {
                        ListenerProtocol::Https => &[b"h2", b"http/1.1"],
                        _ => &[],
                    };
                    let loaded = Certificates::load(tls, alpn)
                        .map_err(|source| StartError::Tls { addr, source })?;
                    let loaded = Arc::new(loaded);
                    certificates.push((addr, loaded.clone()));
                    match protocol {
                        ListenerProtocol::Https => Transport::Https(loaded),
                        _ => Transport::Tls(loaded),
                    }
                }
            };
            let tcp =
                TcpListener::bind(listener.bind)
                    .await
                    .map_err(|source| StartError::Bind {
                        addr: listener.bind,
                        source,
                    })?;
            let addr = tcp.local_addr().map_err(|source| StartError::Bind {
                addr: listener.bind,
                source,
            })?;
            match listener.protocol {
                ListenerProtocol::Mqtt => info!("mqtt listener on {addr}"),
                ListenerProtocol::Mqtts => info!("mqtts listener on {addr}"),
                ListenerProtocol::Http => info!("http listener on {addr}"),
                ListenerProtocol::Https => info!("https listener on {addr}"),
            }
            if !addr.ip().is_loopback() && config.auth.anonymous_allowed() {
                warn!("listener {addr} is reachable from the network and allows anonymous clients");
            }
            local_addrs.push(addr);
            let cx = Context {
                auth: auth.clone(),
                access: access.clone(),
                shutdown: shutdown_rx.clone(),
                identity: None,
                listener: addr,
            };
            let proxies = TrustedProxies::new(&listener.trusted_proxies, listener.proxy_protocol);
            let listening = Listening {
                transport,
                proxies: Arc::new(proxies),
                web: web.clone(),
                places: (listener.max_connections)
                    .map(|max| Arc::new(Semaphore::new(max.0.min(Semaphore::MAX_PERMITS)))),
            };
            background.push(tokio::spawn(accept_loop(
                tcp,
                listening,
                broker.clone(),
                cx,
            )));
        }
        Ok(Server {
            broker,
            local_addrs,
            shutdown,
            background,
            certificates,
            auth,
            access,
        })
    }

    /// Reads the files named in the configuration again (SIGHUP): the password file,
    /// which later logins are checked against, the ACL file, which every client's next
    /// packet and delivery is checked against, and every TLS listener's certificates,
    /// which new connections use (open ones keep theirs). A file that fails to load
    /// leaves what was read before in place.
    pub fn reload(&self) {
        match self.auth.reload() {
            Ok(true) => info!("password file reloaded"),
            Ok(false) => {}
            Err(e) => error!("password file not reloaded, the users read before stay: {e}"),
        }
        match self.access.reload() {
            Ok(true) => info!("ACL file reloaded"),
            Ok(false) => {}
            Err(e) => error!("ACL file not reloaded, the rules read before stay: {e}"),
        }
        for (addr, certificates) in &self.certificates {
            match certificates.reload() {
                Ok(()) => info!("listener {addr}: certificates reloaded"),
                Err(e) => {
                    error!("listener {addr}: certificates not reloaded, the old ones stay: {e}")
                }
            }
        }
    }

    /// The addresses actually bound, in the order of the configuration's listeners.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops accepting, closes every connection (publishing wills where due) and waits
    /// until each has finished.
    pub async fn shutdown(mut self) {
        // Connections still in their CONNECT handshake watch this channel; attached ones
        // are kicked through their session.
        let _ = self.shutdown.send(true);
        self.broker.shut_down();
        for task in &self.background {
            task.abort();
        }
        for task in self.background.drain(..) {
            let _ = task.await;
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, self.broker.connections_closed())
            .await
            .is_err()
        {
            warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
        let broker = self.broker.clone();
        if tokio::task::spawn_blocking(move || broker.seal_feed())
            .await
            .is_err()
        {
            error!("the replay log was not written out at shutdown");
        }
        if let Err(e) = self.broker.flush_storage().await {
            error!("storage not flushed at shutdown: {e}");
        }
        info!("broker stopped");
    }
}

/// Writes the replay log's new events to storage every [`FEED_PERSIST_INTERVAL`], so
/// that readers can resume across a restart.
async fn persist_feed(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(FEED_PERSIST_INTERVAL);
    loop {
        tick.tick().await;
        let broker = broker.clone();
        if tokio::task::spawn_blocking(move || broker.persist_feed())
            .await
            .is_err()
        {
            error!("writing the replay log failed");
        }
    }
}

/// What one listener serves its connections with.
#[derive(Clone)]
struct Listening {
    transport: Transport,
    proxies: Arc<TrustedProxies>,
    web: Arc<HttpConfig>,
    /// The listener's own connection limit, if it has one.
    places: Option<Arc<Semaphore>>,
}

async fn accept_loop(
    listener: TcpListener,
    listening: Listening,
    broker: Arc<Broker>,
    cx: Context,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tune(&stream);
        tokio::spawn(serve(
            stream,
            peer,
            listening.clone(),
            broker.clone(),
            cx.clone(),
        ));
    }
}

/// Serves one accepted connection: its PROXY header if a trusted proxy sends one, its
/// TLS handshake, then MQTT or HTTP.
async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    listening: Listening,
    broker: Arc<Broker>,
    cx: Context,
) {
    let Listening {
        transport,
        proxies,
        web,
        places,
    } = listening;
    // The PROXY header and the TLS handshake each get the time a client has to send
    // CONNECT.
    let limit = Duration::from_secs(broker.limits.connect_timeout_secs.0 as u64);
    let peer = match tokio::time::timeout(limit, proxies.client_address(&mut stream, peer)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            warn!(%peer, "closing connection from a trusted proxy: {e}");
            return;
        }
        Err(_) => {
            warn!(%peer, "closing connection from a trusted proxy: no PROXY header within {limit:?}");
            return;
        }
    };
    // Every connection counts, HTTP ones too (one that upgrades to WebSocket hands its
    // place on).
    let Some(admitted) = broker.admit(places.as_ref()) else {
        metrics::counter!(crate::telemetry::LIMIT_HITS, "limit" => "connections").increment(1);
        warn!(%peer, "connection limit reached, closing new connection");
        return;
    };
    let listener = stream
        .local_addr()
        .map_or_else(|_| "unknown".to_string(), |addr| addr.to_string());
    let open = metrics::gauge!(crate::telemetry::LISTENER_CONNECTIONS, "listener" => listener);
    open.increment(1.0);
    match transport {
        Transport::Tcp => connection::serve(stream, peer, admitted, cx).await,
        Transport::Tls(certificates) => {
            if let Some((tls, cx)) = handshake(stream, peer, cx, &certificates, limit).await {
                connection::serve(tls, peer, admitted, cx).await;
            }
        }
        Transport::Http => http::serve(stream, peer, admitted, proxies, web, cx).await,
        Transport::Https(certificates) => {
            if let Some((tls, cx)) = handshake(stream, peer, cx, &certificates, limit).await {
                http::serve(tls, peer, admitted, proxies, web, cx).await;
            }
        }
    }
    open.decrement(1.0);
}

/// Completes the TLS handshake within `limit`; with `use_identity_as_username`, the
/// client's certificate names its user in the returned context. `None` (logged) if
/// the handshake fails.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    mut cx: Context,
    certificates: &Certificates,
    limit: Duration,
) -> Option<(TlsStream<TcpStream>, Context)> {
    let tls = match tokio::time::timeout(limit, certificates.acceptor().accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            warn!(%peer, "TLS handshake failed: {e}");
            return None;
        }
        Err(_) => {
            warn!(%peer, "TLS handshake not done within {limit:?}");
            return None;
        }
    };
    if certificates.use_identity_as_username() {
        // Verified by the handshake: require_certificate is on.
        let Some(name) = tls::peer_common_name(tls.get_ref().1) else {
            warn!(%peer, "client certificate has no common name, closing");
            return None;
        };
        cx.identity = Some(name.into());
    }
    Some((tls, cx))
}

fn tune(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        warn!("cannot set TCP_NODELAY: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap());
        tune(&accepted);
        assert!(accepted.nodelay().unwrap());
    }
}
