//! The mqtts listener: Debian's mosquitto clients over TLS with a test CA (made here
//! with rcgen, nothing committed), client certificates, clear errors for bad files,
//! and a failed handshake that disturbs no one.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::pki::Pki;
use common::process::Process;
use common::tools::{mosquitto, mosquitto_tools, run_tool};
use common::{expect_message, init_logging, RawClient, WAIT};
use herald::config::{Listener, ListenerProtocol, TlsConfig};
use herald::{Config, Server};
use mqttbytes::QoS;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::Command;

/// A broker with a plain and a TLS listener, both on ephemeral loopback ports.
async fn start(
    tls: TlsConfig,
) -> Result<(Server, SocketAddr, SocketAddr), herald::server::StartError> {
    start_with(tls, true).await
}

/// [`start`], allowing anonymous clients or not.
async fn start_with(
    tls: TlsConfig,
    allow_anonymous: bool,
) -> Result<(Server, SocketAddr, SocketAddr), herald::server::StartError> {
    init_logging();
    let mut config = Config::default();
    config.auth.allow_anonymous = Some(allow_anonymous);
    config.storage.persistence = false;
    config.listeners[0].bind = "127.0.0.1:0".parse().unwrap();
    config.listeners.push(Listener {
        tls: Some(tls),
        ..Listener::new(ListenerProtocol::Mqtts, "127.0.0.1:0".parse().unwrap())
    });
    let server = Server::start(&config).await?;
    let (plain, secure) = (server.local_addrs()[0], server.local_addrs()[1]);
    Ok((server, plain, secure))
}

/// A mosquitto tool on the TLS port `addr`, trusting the test CA.
fn over_tls(tool: &Path, addr: SocketAddr, pki: &Pki) -> Command {
    let mut command = mosquitto(tool, addr);
    command.arg("--cafile").arg(pki.path("ca.pem"));
    command
}

#[tokio::test]
async fn mosquitto_clients_talk_over_tls_and_with_tcp_clients() {
    let Some((sub_tool, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let pki = Pki::new();
    let (server, plain, secure) = start(pki.tls()).await.unwrap();
    // A TCP subscriber gets what a TLS publisher sends…
    let mut tcp = RawClient::open(plain).await;
    tcp.connect("tcp-sub", true).await;
    tcp.subscribe(1, "tls/#", QoS::AtLeastOnce).await;
    let mut publish = over_tls(&pub_tool, secure, &pki);
    publish.args(["-q", "1", "-t", "tls/up", "-m", "over tls"]);
    run_tool(publish, b"").await;
    expect_message(&mut tcp, "tls/up", b"over tls").await;

    // …and a TLS subscriber what a TCP publisher sends, QoS 2 and retained.
    let mut subscribe = over_tls(&sub_tool, secure, &pki);
    subscribe.args(["-q", "2", "-t", "tls/down", "-C", "1", "-W", "5"]);
    let mut publisher = RawClient::open(plain).await;
    publisher.connect("tcp-pub", true).await;
    publisher
        .publish("tls/down", QoS::ExactlyOnce, b"retained", true, 1)
        .await;
    assert_eq!(run_tool(subscribe, b"").await, "retained\n");
    server.shutdown().await;
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let Some((_, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let pki = Pki::new();
    let tls = TlsConfig {
        client_ca: Some(pki.path("ca.pem")),
        require_certificate: true,
        ..pki.tls()
    };
    let (server, plain, secure) = start(tls).await.unwrap();
    let mut watcher = RawClient::open(plain).await;
    watcher.connect("cert-watch", true).await;
    watcher.subscribe(1, "cert/#", QoS::AtLeastOnce).await;

    let mut without = over_tls(&pub_tool, secure, &pki);
    without.args(["-q", "1", "-t", "cert/no", "-m", "x"]);
    let status = tokio::time::timeout(WAIT, without.status())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !status.success(),
        "a client without a certificate is refused"
    );

    let mut with = over_tls(&pub_tool, secure, &pki);
    with.args(["--cert"]).arg(pki.path("client.pem"));
    with.args(["--key"]).arg(pki.path("client.key"));
    with.args(["-q", "1", "-t", "cert/yes", "-m", "signed"]);
    run_tool(with, b"").await;
    expect_message(&mut watcher, "cert/yes", b"signed").await;
    watcher.expect_nothing(Duration::from_millis(200)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_files_are_clear_errors_at_start() {
    let pki = Pki::new();
    let error = |tls| async { start(tls).await.err().expect("start fails").to_string() };
    let missing = TlsConfig {
        cert: pki.path("missing.pem"),
        ..pki.tls()
    };
    let message = error(missing).await;
    assert!(
        message.contains("cannot read the certificate chain") && message.contains("missing.pem"),
        "{message}"
    );
    let not_a_key = TlsConfig {
        key: pki.path("server.pem"),
        ..pki.tls()
    };
    let message = error(not_a_key).await;
    assert!(message.contains("cannot read the private key"), "{message}");
    let other_key = TlsConfig {
        key: pki.path("other.key"),
        ..pki.tls()
    };
    let message = error(other_key).await;
    assert!(
        message.contains("cannot serve the certificate"),
        "{message}"
    );
}

#[tokio::test]
async fn a_failed_handshake_disturbs_no_one() {
    let Some((_, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let pki = Pki::new();
    let (server, plain, secure) = start(pki.tls()).await.unwrap();
    let mut watcher = RawClient::open(plain).await;
    watcher.connect("hs-watch", true).await;
    watcher.subscribe(1, "hs/#", QoS::AtLeastOnce).await;
    // Plain MQTT to the TLS port: the handshake fails, the connection is closed.
    let mut garbage = TcpStream::connect(secure).await.unwrap();
    garbage
        .write_all(&[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0])
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut garbage, &mut rest),
    )
    .await;
    assert!(read.is_ok(), "the broker closes the failed connection");

    let mut publish = over_tls(&pub_tool, secure, &pki);
    publish.args(["-q", "1", "-t", "hs/after", "-m", "fine"]);
    run_tool(publish, b"").await;
    expect_message(&mut watcher, "hs/after", b"fine").await;
    server.shutdown().await;
}

/// With use_identity_as_username a client is the user its certificate names: admitted
/// without a user name where anonymous clients are not; without it, the same client
/// is refused (CONNACK 0x05).
#[tokio::test]
async fn a_certificate_identifies_its_client_with_use_identity_as_username() {
    let Some((_, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let pki = Pki::new();
    for use_identity in [true, false] {
        let tls = TlsConfig {
            client_ca: Some(pki.path("ca.pem")),
            require_certificate: true,
            use_identity_as_username: use_identity,
            ..pki.tls()
        };
        let (server, _, secure) = start_with(tls, false).await.unwrap();
        let mut with_cert = over_tls(&pub_tool, secure, &pki);
        with_cert.args(["--cert"]).arg(pki.path("client.pem"));
        with_cert.args(["--key"]).arg(pki.path("client.key"));
        with_cert.args(["-q", "1", "-t", "id/x", "-m", "x"]);
        let status = tokio::time::timeout(WAIT, with_cert.status())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            status.success(),
            use_identity,
            "use_identity_as_username = {use_identity}"
        );
        server.shutdown().await;
    }
    let without = TlsConfig {
        use_identity_as_username: true,
        ..pki.tls()
    };
    let message = start(without).await.err().expect("start fails").to_string();
    assert!(
        message.contains("use_identity_as_username needs require_certificate"),
        "{message}"
    );
}

/// SIGHUP reads the certificate files again: new connections get the new certificate,
/// a client connected before keeps its connection, and files that fail to load leave
/// the certificates in use as they were.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_certificates_without_dropping_connections() {
    let Some((sub_tool, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let (old, new) = (Pki::new(), Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let install = |pki: &Pki| {
        std::fs::copy(pki.path("server.pem"), dir.path().join("live.pem")).unwrap();
        std::fs::copy(pki.path("server.key"), dir.path().join("live.key")).unwrap();
    };
    install(&old);
    let config = "[[listeners]]\nprotocol = \"mqtts\"\nbind = \"127.0.0.1:0\"\n\
                  tls = { cert = \"live.pem\", key = \"live.key\" }\n\
                  [storage]\npersistence = false\n";
    let mut herald = Process::start(dir.path(), config);
    let secure = herald.wait_for_addr("mqtts listener on ");

    let mut subscribe = over_tls(&sub_tool, secure, &old);
    subscribe.args(["-q", "1", "-t", "reload/#", "-C", "2", "-W", "10"]);
    let subscriber = subscribe
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    herald.wait_for_log("client connected");

    install(&new);
    herald.signal("HUP");
    herald.wait_for_log("certificates reloaded");
    let publish = |pki: &Pki, payload: &str| {
        let mut command = over_tls(&pub_tool, secure, pki);
        command.args(["-q", "1", "-t", "reload/x", "-m", payload]);
        command
    };
    run_tool(publish(&new, "1"), b"").await;
    let refused = tokio::time::timeout(WAIT, publish(&old, "x").status())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !refused.success(),
        "the old CA no longer matches the listener's certificate"
    );

    std::fs::write(dir.path().join("live.key"), "not a key").unwrap();
    herald.signal("HUP");
    herald.wait_for_log("certificates not reloaded");
    run_tool(publish(&new, "2"), b"").await;

    let output = tokio::time::timeout(WAIT, subscriber.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "1\n2\n",
        "the subscriber stayed connected"
    );
}

/// rumqttc, a Rust client with its own TLS stack, over the mqtts listener.
#[tokio::test]
async fn rumqttc_talks_over_tls() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};

    let pki = Pki::new();
    let (server, _, secure) = start(pki.tls()).await.unwrap();
    let mut options = MqttOptions::new("rumqttc-tls", "127.0.0.1", secure.port());
    options.set_transport(Transport::Tls(TlsConfiguration::Simple {
        ca: std::fs::read(pki.path("ca.pem")).unwrap(),
        alpn: None,
        client_auth: None,
    }));
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .subscribe("rumqttc/tls", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let received = tokio::time::timeout(WAIT, async {
        loop {
            match events.poll().await.expect("the TLS connection holds") {
                Event::Incoming(Packet::SubAck(_)) => {
                    client
                        .publish(
                            "rumqttc/tls",
                            rumqttc::QoS::AtLeastOnce,
                            false,
                            b"tls".to_vec(),
                        )
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::Publish(publish)) => return publish.payload,
                _ => {}
            }
        }
    })
    .await
    .expect("the message comes back in time");
    assert_eq!(&received[..], b"tls");
    server.shutdown().await;
}
