//! A whole connection fed arbitrary bytes: the connection handler of the broker runs
//! over an in-memory stream, after a valid CONNECT (MQTT 3.1.1 or 5.0, chosen by the
//! first byte) or none, to reach the state machine beyond the handshake. It must never
//! panic, and must end once the client's bytes are done (time is virtual: a hang
//! shows as the deadline passing).

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use herald::acl::AccessControl;
use herald::auth::Authenticator;
use herald::broker::Broker;
use herald::config::Config;
use herald::connection::{serve, Context};
use herald::storage::MemoryStorage;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

include!("../with_connect.rs");

fuzz_target!(|data: &[u8]| {
    let input = with_connect(data);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(run(input));
});

async fn run(input: Vec<u8>) {
    let mut config = Config::default();
    config.mqtt.max_packet_size = herald::config::PacketSize(64 * 1024);
    let broker = Broker::new(
        config.mqtt.clone(),
        &config.http,
        Arc::new(MemoryStorage::default()),
    )
    .expect("a broker");
    let (_shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let cx = Context {
        auth: Arc::new(Authenticator::new(&config.auth).expect("no files")),
        access: Arc::new(AccessControl::new(&config.auth).expect("no files")),
        shutdown: shutdown_rx,
        identity: None,
        listener: "127.0.0.1:1883".parse().expect("an address"),
    };
    let admitted = broker.admit(None).expect("room");
    let (client, server) = tokio::io::duplex(16 * 1024);
    let peer = "127.0.0.1:9".parse().expect("an address");
    let connection = tokio::spawn(serve(server, peer, admitted, cx));
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let reader = tokio::spawn(async move {
        let mut sink = vec![0; 16 * 1024];
        while matches!(from_server.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    // The server may close before taking everything: that is fine.
    let _ = to_server.write_all(&input).await;
    let _ = to_server.shutdown().await;
    drop(to_server);
    tokio::time::timeout(Duration::from_secs(60), connection)
        .await
        .expect("the connection ends after the client's last byte")
        .expect("the connection task does not panic");
    let _ = reader.await;
}
