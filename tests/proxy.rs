//! Behind a load balancer: a PROXY protocol v1 or v2 header from a trusted proxy, and
//! `X-Forwarded-For` on the HTTP listener, give the client's real address; from anyone
//! else they are not believed. The herald binary runs as a child process and its log
//! shows the address each client connected from.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::pki::Pki;
use common::process::Process;
use common::ws::WsClient;
use common::{connect_packet, expect_message, Encode, RawClient};
use mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The first listener (mqtt) expects PROXY headers from loopback.
const FROM_LOOPBACK: &str = "trusted_proxies = [\"127.0.0.0/8\"]\nproxy_protocol = true\n";

/// A PROXY v2 header for a TCP connection from `source` (command PROXY), or the proxy's
/// own connection (command LOCAL, no addresses) when `source` is `None`.
fn v2_header(source: Option<SocketAddr>) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match source {
        None => header.extend_from_slice(&[0x20, 0x00, 0, 0]),
        Some(SocketAddr::V4(source)) => {
            header.extend_from_slice(&[0x21, 0x11, 0, 12]);
            header.extend_from_slice(&source.ip().octets());
            header.extend_from_slice(&[192, 0, 2, 1]);
            header.extend_from_slice(&source.port().to_be_bytes());
            header.extend_from_slice(&1883u16.to_be_bytes());
        }
        Some(SocketAddr::V6(source)) => {
            header.extend_from_slice(&[0x21, 0x21, 0, 36]);
            header.extend_from_slice(&source.ip().octets());
            header.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
            header.extend_from_slice(&source.port().to_be_bytes());
            header.extend_from_slice(&1883u16.to_be_bytes());
        }
    }
    header
}

/// Connects through `header` as `client_id` and expects to be accepted.
async fn connect_through(addr: SocketAddr, header: &[u8], client_id: &str) -> RawClient {
    let mut client = RawClient::open(addr).await;
    let mut first = header.to_vec();
    first.extend(connect_packet(client_id, true, 30).to_bytes());
    client.send(&first).await;
    client.expect_connack().await;
    client
}

#[tokio::test]
async fn a_v1_header_in_pieces_gives_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::start(dir.path(), FROM_LOOPBACK);
    let mut client = RawClient::open(herald.addr).await;
    // The header arrives in two pieces, its end in the same segment as CONNECT.
    client.send(b"PROXY TCP4 203.0.113.7 192.0.").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut rest = b"2.1 51234 1883\r\n".to_vec();
    rest.extend(connect_packet("behind-v1", true, 30).to_bytes());
    client.send(&rest).await;
    client.expect_connack().await;
    herald.wait_for_log("client connected peer=203.0.113.7:51234 client=behind-v1");

    // What follows the header is MQTT, untouched.
    client.subscribe(1, "proxied/#", QoS::AtMostOnce).await;
    client
        .publish("proxied/echo", QoS::AtMostOnce, b"through", false, 0)
        .await;
    expect_message(&mut client, "proxied/echo", b"through").await;
}

#[tokio::test]
async fn a_v2_header_gives_the_client_address_and_local_keeps_the_proxys() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::start(dir.path(), FROM_LOOPBACK);
    let v6 = "[2001:db8::7]:40000".parse().unwrap();
    let _v6 = connect_through(herald.addr, &v2_header(Some(v6)), "behind-v2-v6").await;
    herald.wait_for_log("client connected peer=[2001:db8::7]:40000 client=behind-v2-v6");
    let v4 = "198.51.100.4:3000".parse().unwrap();
    let _v4 = connect_through(herald.addr, &v2_header(Some(v4)), "behind-v2-v4").await;
    herald.wait_for_log("client connected peer=198.51.100.4:3000 client=behind-v2-v4");
    // LOCAL and UNKNOWN: the proxy speaks for itself (a health check, say).
    let _local = connect_through(herald.addr, &v2_header(None), "proxy-itself").await;
    let line = herald.wait_for_log("client=proxy-itself");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    let _unknown = connect_through(herald.addr, b"PROXY UNKNOWN\r\n", "proxy-v1-unknown").await;
    let line = herald.wait_for_log("client=proxy-v1-unknown");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}

#[tokio::test]
async fn a_trusted_proxy_must_send_a_valid_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::start(dir.path(), FROM_LOOPBACK);

    let mut direct = RawClient::open(herald.addr).await;
    direct
        .send(&connect_packet("no-header", true, 30).to_bytes())
        .await;
    direct.expect_closed().await;
    herald.wait_for_log("no PROXY header");

    let mut bad = RawClient::open(herald.addr).await;
    bad.send(b"PROXY TCP4 999.0.113.7 192.0.2.1 51234 1883\r\n")
        .await;
    bad.expect_closed().await;
    herald.wait_for_log("invalid PROXY header");

    // Neither disturbed the listener.
    let _fine = connect_through(herald.addr, &v2_header(None), "after-bad-headers").await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_address_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let rest = "trusted_proxies = [\"192.0.2.1\"]\nproxy_protocol = true\n";
    let mut herald = Process::start(dir.path(), rest);
    let forged = "203.0.113.66:1".parse().unwrap();
    let mut liar = RawClient::open(herald.addr).await;
    let mut first = v2_header(Some(forged));
    first.extend(connect_packet("liar", true, 30).to_bytes());
    liar.send(&first).await;
    liar.expect_closed().await;
    // A direct client is served under its own address.
    let _direct = connect_through(herald.addr, b"", "direct").await;
    let line = herald.wait_for_log("client=direct");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(!herald
        .drain_log()
        .iter()
        .any(|l| l.contains("203.0.113.66")));
}

/// The header comes before TLS on an mqtts listener.
#[tokio::test]
async fn the_header_precedes_the_tls_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let rest = format!(
        "[[listeners]]\nprotocol = \"mqtts\"\nbind = \"127.0.0.1:0\"\n{FROM_LOOPBACK}\
         tls = {{ cert = {:?}, key = {:?} }}\n",
        pki.path("server.pem"),
        pki.path("server.key"),
    );
    let mut herald = Process::spawn(dir.path(), &rest);
    let secure = herald.wait_for_addr("mqtts listener on ");
    let mut stream = TcpStream::connect(secure).await.unwrap();
    let source = "198.51.100.44:4444".parse().unwrap();
    stream.write_all(&v2_header(Some(source))).await.unwrap();
    let mut tls = pki.connect(stream).await;
    tls.write_all(&connect_packet("tls-behind-proxy", true, 30).to_bytes())
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    tls.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    herald.wait_for_log("client connected peer=198.51.100.44:4444 client=tls-behind-proxy");
}

/// A WebSocket upgrade to /mqtt with `forwarded_for`, then CONNECT as `client_id`.
async fn websocket_connect(http: SocketAddr, forwarded_for: &str, client_id: &str) {
    let stream = TcpStream::connect(http).await.unwrap();
    let headers = [
        ("Sec-WebSocket-Protocol", "mqtt"),
        ("X-Forwarded-For", forwarded_for),
    ];
    let mut ws = WsClient::over(stream, &format!("ws://{http}/mqtt"), &headers).await;
    ws.send_frame(connect_packet(client_id, true, 30).to_bytes())
        .await;
    assert_eq!(ws.packet_bytes().await, [0x20, 2, 0, 0]);
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let rest = "[[listeners]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
                trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
                [[listeners]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n";
    let mut herald = Process::spawn(dir.path(), rest);
    let behind_proxy = herald.wait_for_addr("http listener on ");
    let open = herald.wait_for_addr("http listener on ");

    // Client, then an inner proxy in 10/8, then the proxy that connects to us.
    websocket_connect(behind_proxy, "198.51.100.20, 10.1.1.1", "ws-behind-proxy").await;
    herald.wait_for_log("client connected peer=198.51.100.20:0 client=ws-behind-proxy");
    // A client cannot forge its way past the first address not in trusted_proxies.
    websocket_connect(behind_proxy, "1.2.3.4, 198.51.100.21:6000", "ws-forger").await;
    herald.wait_for_log("client connected peer=198.51.100.21:6000 client=ws-forger");
    // Where nobody is trusted, the header is ignored.
    websocket_connect(open, "198.51.100.22", "ws-direct").await;
    let line = herald.wait_for_log("client=ws-direct");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}

#[test]
fn proxy_protocol_without_trusted_proxies_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::spawn(dir.path(), "proxy_protocol = true\n");
    herald.wait_for_log("proxy_protocol needs trusted_proxies");
    assert_eq!(herald.wait_exit(), Some(2));
}
