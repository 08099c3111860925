//! Listeners, the accept loops and graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::auth::Authenticator;
use crate::broker::Broker;
use crate::config::{Config, ListenerProtocol};
use crate::connection::{self, Context};
use crate::storage::{MemoryStorage, Storage};

/// How long shutdown waits for connections to reach a safe state.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A broker serving its listeners.
pub struct Server {
    broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    /// Closes when every task holding a sender has finished.
    finished: mpsc::Receiver<()>,
    accept_loops: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl Server {
    /// Binds every listener of `config` and starts serving, with state kept in memory.
    pub async fn start(config: &Config) -> Result<Server, StartError> {
        if config.storage.persistence {
            warn!(
                "storage.persistence is on, but this version keeps state in memory only: \
                 sessions and retained messages do not survive a restart"
            );
        }
        Server::start_with_storage(config, Arc::new(MemoryStorage::default())).await
    }

    /// Binds every listener of `config` and starts serving, on state from `storage`.
    pub async fn start_with_storage(
        config: &Config,
        storage: Arc<dyn Storage>,
    ) -> Result<Server, StartError> {
        let broker = Arc::new(Broker::new(config.mqtt.clone(), storage)?);
        let auth = Arc::new(Authenticator::new(&config.auth));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (finished_tx, finished) = mpsc::channel(1);
        let permits = Arc::new(Semaphore::new(config.mqtt.max_connections.0));
        let mut local_addrs = Vec::new();
        let mut accept_loops = Vec::new();
        for listener in &config.listeners {
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
            }
            if !addr.ip().is_loopback() && config.auth.allow_anonymous {
                warn!("listener {addr} is reachable from the network and allows anonymous clients");
            }
            local_addrs.push(addr);
            let cx = Context {
                broker: broker.clone(),
                auth: auth.clone(),
                shutdown: shutdown_rx.clone(),
            };
            accept_loops.push(tokio::spawn(accept_loop(
                tcp,
                cx,
                permits.clone(),
                finished_tx.clone(),
            )));
        }
        Ok(Server {
            broker,
            local_addrs,
            shutdown,
            finished,
            accept_loops,
        })
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
        for accept in &self.accept_loops {
            accept.abort();
        }
        for accept in self.accept_loops.drain(..) {
            let _ = accept.await;
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, self.finished.recv())
            .await
            .is_err()
        {
            warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
        info!("broker stopped");
    }
}

async fn accept_loop(
    listener: TcpListener,
    cx: Context,
    permits: Arc<Semaphore>,
    finished: mpsc::Sender<()>,
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, "connection limit reached, closing new connection");
            continue;
        };
        tune(&stream);
        let cx = cx.clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            connection::serve(stream, peer, cx).await;
            drop(permit);
            drop(finished);
        });
    }
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
