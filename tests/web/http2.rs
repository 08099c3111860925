//! HTTP/2: with prior knowledge on the http listener and by ALPN on the https one, many
//! SSE streams share one connection (HTTP/1.1 allows a browser six per origin).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::common::pki::Pki;
use crate::common::WAIT;
use crate::start;
use herald::config::{Listener, ListenerProtocol};

/// Streams opened on one connection; more than HTTP/1.1's six.
const STREAMS: usize = 12;

async fn h2<S>(io: S) -> SendRequest<Empty<Bytes>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    sender
}

/// Opens [`STREAMS`] SSE streams on `sender`, publishes one message by MQTT, and
/// expects it on every stream.
async fn many_streams_on_one_connection(
    sender: &mut SendRequest<Empty<Bytes>>,
    authority: &str,
    mqtt: SocketAddr,
) {
    let mut bodies = Vec::new();
    for i in 0..STREAMS {
        let request = Request::get(format!("{authority}/events?topic=h2/{i}&topic=h2/all"))
            .body(Empty::new())
            .unwrap();
        let response = tokio::time::timeout(WAIT, sender.send_request(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        bodies.push(response.into_body());
    }
    let mut publisher = crate::common::RawClient::open(mqtt).await;
    publisher.connect("h2-publisher", true).await;
    publisher
        .publish("h2/all", QoS::AtMostOnce, b"to every stream", false, 0)
        .await;
    for body in &mut bodies {
        let mut text = String::new();
        while !text.contains("to every stream") {
            let frame = tokio::time::timeout(WAIT, body.frame())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn sse_streams_share_one_cleartext_http2_connection() {
    let (broker, http) = start(|_| {}).await;
    let mut sender = h2(TcpStream::connect(http).await.unwrap()).await;
    many_streams_on_one_connection(&mut sender, &format!("http://{http}"), broker.addr).await;
    broker.stop().await;
}

#[tokio::test]
async fn the_https_listener_offers_http2_by_alpn() {
    let pki = Pki::new();
    let tls = pki.tls();
    let (broker, _) = start(move |config| {
        let bind = "127.0.0.1:0".parse().unwrap();
        config.listeners.push(Listener {
            tls: Some(tls),
            ..Listener::new(ListenerProtocol::Https, bind)
        });
    })
    .await;
    let https = broker.listener(2);
    let stream = TcpStream::connect(https).await.unwrap();
    let tls = pki
        .connect_offering(stream, &[b"h2".as_slice(), b"http/1.1".as_slice()])
        .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2(tls).await;
    many_streams_on_one_connection(&mut sender, &format!("https://{https}"), broker.addr).await;

    // A client without ALPN still gets HTTP/1.1.
    let stream = TcpStream::connect(https).await.unwrap();
    let plain = pki.connect(stream).await;
    assert_eq!(plain.get_ref().1.alpn_protocol(), None);
    broker.stop().await;
}

#[tokio::test]
async fn one_connection_has_at_most_max_streams_per_connection_open() {
    let (_broker, http) = start(|c| c.http.max_streams_per_connection.0 = 2).await;
    let mut sender = h2(TcpStream::connect(http).await.unwrap()).await;
    let open = |n: usize| {
        Request::get(format!("http://{http}/events?topic=streams/{n}"))
            .body(Empty::new())
            .unwrap()
    };
    let first = sender.send_request(open(1)).await.unwrap();
    let _second = sender.send_request(open(2)).await.unwrap();
    // The server said two: the client holds the third back…
    let mut third = Box::pin(sender.send_request(open(3)));
    let waited = tokio::time::timeout(std::time::Duration::from_millis(500), &mut third).await;
    assert!(waited.is_err(), "a third stream opened");
    // …until one of the two ends.
    drop(first);
    let third = tokio::time::timeout(WAIT, third).await.unwrap().unwrap();
    assert_eq!(third.status(), 200);
}
