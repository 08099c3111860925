//! The HTTP listener: one hyper service with routes, for browsers and back ends.
//!
//! - `GET /mqtt` upgrades to MQTT over WebSocket ([`upgrade`]);
//! - `GET /events` (SSE) and `GET /iframe` stream messages ([`stream`]);
//! - `GET /poll` and `GET /retained` answer with messages ([`read`]);
//! - `POST /publish` publishes ([`publish`]);
//! - `GET /metrics` answers in Prometheus's text format;
//! - `GET /healthz` answers `ok`.
//!
//! Errors are JSON `{"error": …}`. Pages of the origins in `http.cors_origins` (and of
//! the listener's own) may use the API; a request from any other origin is refused.

mod publish;
pub mod query;
mod read;
mod render;
mod stream;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::acl::Permit;
use crate::broker::{Admitted, Broker};
use crate::config::HttpConfig;
use crate::connection::Context;
use crate::proxy::TrustedProxies;
use crate::topic::TopicFilter;

/// What the requests of one HTTP connection share.
struct Shared {
    broker: Arc<Broker>,
    web: Arc<HttpConfig>,
    cx: Context,
    /// The connection's place within `max_connections`, passed on to the WebSocket it
    /// may become.
    place: Mutex<Option<Admitted>>,
}

pub type Reply = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// A request refused, with the status and what to tell the person behind it.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    what: String,
}

impl Refusal {
    pub fn new(status: StatusCode, what: String) -> Refusal {
        Refusal { status, what }
    }
}

type Outcome = Result<Reply, Refusal>;

/// Serves HTTP on `stream` (TCP or TLS) until the peer closes it, it stays silent
/// for the connect timeout, or the server stops. Each request's client is `peer`, or
/// whom `X-Forwarded-For` names when `peer` is a trusted proxy.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    admitted: Admitted,
    proxies: Arc<TrustedProxies>,
    web: Arc<HttpConfig>,
    cx: Context,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = cx.shutdown.clone();
    let broker = Arc::clone(&admitted);
    let limit = Duration::from_secs(broker.limits.connect_timeout_secs.0 as u64);
    let head = web.max_request_head_bytes.0;
    let streams = u32::try_from(web.max_streams_per_connection.0).unwrap_or(u32::MAX);
    let shared = Arc::new(Shared {
        broker,
        web,
        cx,
        place: Mutex::new(Some(admitted)),
    });
    let service = service_fn(move |request| {
        let client = proxies.forwarded_client(peer, request.headers());
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(request, client, &shared).await) }
    });
    // HTTP/1.1, or HTTP/2 (by ALPN over TLS, or with prior knowledge in the clear).
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limit)
        .max_buf_size(head);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(streams)
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        debug!(%peer, "HTTP connection ended: {e}");
    }
}

async fn route(request: Request<Incoming>, client: SocketAddr, shared: &Shared) -> Reply {
    let path = request.uri().path();
    let api = matches!(
        path,
        "/events" | "/iframe" | "/poll" | "/retained" | "/publish" | "/" | "/clients"
    );
    let (origin, permit) = if api {
        let admitted = match allowed_origin(&request, &shared.web) {
            // The dashboard's own data is for the dashboard's own pages.
            Ok(Some(Origin::Any)) if matches!(path, "/" | "/clients") => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "not from another site".into(),
            )),
            Ok(origin) => {
                // A browser sends the Basic credentials it remembers to any site's
                // requests: only pages of trusted origins get them counted.
                let ambient = !matches!(origin, Some(Origin::Any));
                authenticate(&request, client, shared, ambient)
                    .await
                    .map(|permit| (origin, permit))
            }
            Err(refusal) => Err(refusal),
        };
        match admitted {
            Ok(admitted) => admitted,
            Err(refusal) => return error(refusal),
        }
    } else {
        (None, None)
    };
    let outcome = match (request.method(), path) {
        (&Method::GET, "/healthz") => Ok(plain(StatusCode::OK, "ok")),
        (&Method::GET, "/metrics") => Ok(exposition(&shared.broker)),
        (&Method::GET, "/") => Ok(dashboard()),
        (&Method::GET, "/clients") => Ok(json_reply(
            StatusCode::OK,
            render::to_json(&shared.broker.clients.list()),
        )),
        (&Method::GET, "/mqtt") => upgrade::upgrade(request, client, shared),
        (&Method::GET, "/events") => stream::events(&request, permit, shared),
        (&Method::GET, "/iframe") => stream::iframe(&request, permit, shared),
        (&Method::GET, "/poll") => read::poll(&request, permit, shared).await,
        (&Method::GET, "/retained") => read::retained(&request, permit, shared),
        (&Method::POST, "/publish") => publish::publish(request, permit, shared).await,
        (&Method::OPTIONS, _) if api => Ok(preflight()),
        _ if api || matches!(path, "/healthz" | "/mqtt" | "/metrics") => Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".into(),
        )),
        _ => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "no such endpoint".into(),
        )),
    };
    let mut reply = outcome.unwrap_or_else(error);
    if let Some(origin) = origin {
        let headers = reply.headers_mut();
        match origin {
            // Any site may read, without its visitors' credentials.
            Origin::Any => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            Origin::Trusted(origin) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    reply
}

/// Checks the request's credentials (`Authorization: Basic`, or the `access_token`
/// parameter holding the same base64 `user:password`, for EventSource) as a CONNECT's.
/// Returns what the ACL lets the user do (`None` without an ACL file). The
/// `Authorization` header counts only where `ambient` credentials are welcome.
async fn authenticate(
    request: &Request<Incoming>,
    client: SocketAddr,
    shared: &Shared,
    ambient: bool,
) -> Result<Option<Box<Permit>>, Refusal> {
    let basic = (request.headers())
        .get(header::AUTHORIZATION)
        .filter(|_| ambient)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .map(str::to_owned);
    let token = || {
        let query = request.uri().query().unwrap_or_default();
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "access_token")
            .map(|(_, value)| value.into_owned())
    };
    let credentials = match basic.or_else(token) {
        None => None,
        Some(encoded) => {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| unauthorized("credentials must be base64 of user:password"))?;
            let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
            Some((user.to_string(), password.to_string()))
        }
    };
    let (user, password) = match &credentials {
        Some((user, password)) => (Some(user.as_str()), Some(password.as_bytes())),
        None => (None, None),
    };
    shared
        .cx
        .auth
        .authenticate(client.ip(), user, password)
        .await
        .map_err(|_| unauthorized("no or wrong credentials"))?;
    // Web readers have no client id: patterns with %c do not apply to them.
    Ok(shared.cx.access.permit(user, None))
}

/// Refuses filters the ACL does not let the caller read whole.
fn may_read_all(permit: Option<&Permit>, filters: &[TopicFilter]) -> Result<(), Refusal> {
    let Some(permit) = permit else {
        return Ok(());
    };
    let grants = permit.grants();
    match filters.iter().find(|filter| !grants.may_subscribe(filter)) {
        None => Ok(()),
        Some(filter) => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("not allowed to read {filter}"),
        )),
    }
}

/// A reader refused because the feed has as many as it may.
fn too_many(full: crate::feed::Full) -> Refusal {
    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, full.to_string())
}

fn unauthorized(what: &str) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, what.into())
}

/// An origin allowed to use the API.
enum Origin {
    /// By `"*"`.
    Any,
    /// Listed by name, or the listener's own.
    Trusted(HeaderValue),
}

/// The request's `Origin` when it is allowed to use the API: the listener's own, one
/// of `cors_origins`, or any with `"*"` (but without credentials). `None` without an
/// `Origin` (not a browser's cross-origin request); a refusal for any other origin.
fn allowed_origin(
    request: &Request<Incoming>,
    web: &HttpConfig,
) -> Result<Option<Origin>, Refusal> {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return Ok(None);
    };
    let text = origin.to_str().unwrap_or_default();
    // HTTP/2 names the host in the request's authority rather than a Host header.
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let own = host.is_some_and(|host| {
        text.strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
            == Some(host)
    });
    if own || web.cors_origins.iter().any(|allowed| allowed == text) {
        Ok(Some(Origin::Trusted(origin.clone())))
    } else if web.cors_origins.iter().any(|allowed| allowed == "*") {
        Ok(Some(Origin::Any))
    } else {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("origin {text:?} is not allowed (http.cors_origins)"),
        ))
    }
}

/// The answer to a CORS preflight from an allowed origin.
fn preflight() -> Reply {
    let mut reply = Response::new(empty());
    *reply.status_mut() = StatusCode::NO_CONTENT;
    let headers = reply.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Last-Event-ID"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    reply
}

fn empty() -> UnsyncBoxBody<Bytes, Infallible> {
    Empty::new().boxed_unsync()
}

fn full(body: impl Into<Bytes>) -> UnsyncBoxBody<Bytes, Infallible> {
    Full::new(body.into()).boxed_unsync()
}

fn plain(status: StatusCode, text: &'static str) -> Reply {
    let mut reply = Response::new(full(text));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    reply
}

/// `GET /metrics`: Prometheus's text format.
/// The dashboard: one page, embedded in the binary, that reads `/metrics`, `/clients`
/// and `/events` of its own origin.
fn dashboard() -> Reply {
    let mut reply = Response::new(full(include_str!("dashboard.html")));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    reply
}

fn exposition(broker: &Broker) -> Reply {
    let mut reply = Response::new(full(crate::telemetry::render(broker)));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    reply
}

fn json_reply(status: StatusCode, json: String) -> Reply {
    let mut reply = Response::new(full(json));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

/// A JSON error, as every endpoint gives them.
fn error(refusal: Refusal) -> Reply {
    let json = serde_json::json!({ "error": refusal.what });
    let mut reply = json_reply(refusal.status, json.to_string());
    if refusal.status == StatusCode::UNAUTHORIZED {
        // A browser asks its user, for the dashboard.
        reply.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"herald\""),
        );
    }
    reply
}
