//! Inputs kept from fuzzing (`tests/fuzz`): the seeds, and every input that once
//! crashed or hung a target, replayed through the wire against a running broker. Each
//! must close or be answered without harming the broker, which still serves a client
//! afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::web::get;
use common::TestBroker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The inputs kept for fuzz target `target`.
fn kept(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/regressions")
        .join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs kept in {}", dir.display());
    inputs
}

/// Sends `bytes` on a new connection, hangs up, and reads until the broker closes.
async fn replay(addr: std::net::SocketAddr, bytes: &[u8], what: &Path) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "{} left the connection open",
        what.display()
    );
}

include!("fuzz/with_connect.rs");

#[tokio::test]
async fn kept_packet_and_connection_inputs_close_cleanly() {
    let broker = TestBroker::start_with(|c| c.mqtt.max_packet_size.0 = 64 * 1024).await;
    for (path, bytes) in kept("packet_decoder") {
        replay(broker.addr, &bytes, &path).await;
    }
    for (path, bytes) in kept("connection") {
        replay(broker.addr, &with_connect(&bytes), &path).await;
    }
    broker.client("still-serving", true).await;
}

#[tokio::test]
async fn kept_query_inputs_are_answered() {
    let (broker, http) = TestBroker::start_with_http(|_| {}).await;
    for (path, bytes) in kept("http_query") {
        let Ok(query) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let target = format!("/retained?{query}");
        // What hyper's client will not send, it refuses before the broker sees it.
        if target.parse::<hyper::Uri>().is_err() {
            continue;
        }
        let status = get(http, &target).await.status;
        assert!(
            status.is_success() || status.is_client_error(),
            "{}: {status}",
            path.display()
        );
    }
    broker.client("still-serving", true).await;
}
