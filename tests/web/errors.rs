//! Bad requests get a JSON error with the right status and reach nothing; CORS.

use hyper::{Method, StatusCode};
use mqttbytes::QoS;

use crate::common::web::{call, get, post};
use crate::{encode, start};

#[tokio::test]
async fn bad_parameters_are_refused_with_400_and_a_reason() {
    let (broker, http) = start(|_| {}).await;
    let many_topics: String = (0..33).map(|i| format!("topic=t{i}&")).collect();
    let cases = [
        ("/events", "topic filter is needed"),
        ("/events?topic=a/%2B%2B", "'+' must fill a whole level"),
        ("/events?topic=a/%23/b", "'#' must be the last level"),
        ("/events?topic=%24share/g/a", "$share is for MQTT clients"),
        ("/events?topic=a&format=xml", "format must be json or raw"),
        (
            "/events?topic=a&retained=maybe",
            "retained must be true or false",
        ),
        (
            "/events?topic=a&last_event_id=x",
            "last_event_id must be a whole number",
        ),
        (
            &format!("/events?{many_topics}"),
            "at most 32 topic filters",
        ),
        ("/poll?topic=a&since=-1", "since must be a whole number"),
        ("/poll?topic=a&timeout=61", "timeout is at most 60 seconds"),
        (
            "/poll?topic=a&timeout=soon",
            "timeout must be a whole number",
        ),
        ("/retained?topic=", "topic is empty"),
        ("/iframe?topic=a&callback=alert(1)", "callback must match"),
        ("/iframe?topic=a", "callback must match"),
    ];
    for (target, reason) in cases {
        let error = get(http, target).await.error(StatusCode::BAD_REQUEST);
        assert!(error.contains(reason), "{target}: {error}");
    }
    let answer = call(
        http,
        Method::GET,
        "/events?topic=a",
        &[("last-event-id", "yesterday")],
        "",
    )
    .await;
    assert!(answer
        .error(StatusCode::BAD_REQUEST)
        .contains("Last-Event-ID"));
    let deep = format!("/events?topic={}", encode(&"a/".repeat(200)));
    assert!(get(http, &deep)
        .await
        .error(StatusCode::BAD_REQUEST)
        .contains("max_topic_levels"));
    broker.stop().await;
}

#[tokio::test]
async fn bad_publishes_are_refused_and_nothing_reaches_the_router() {
    let (broker, http) = start(|_| {}).await;
    let mut subscriber = broker.client("bad-publish-watcher", true).await;
    subscriber.subscribe(1, "#", QoS::AtMostOnce).await;
    let cases = [
        ("/publish", "a topic is needed"),
        ("/publish?topic=a/%2B", "wildcard"),
        ("/publish?topic=a&qos=3", "qos must be 0, 1 or 2"),
        (
            "/publish?topic=a&retain=yes",
            "retain must be true or false",
        ),
        ("/publish?topic=a&topic=b", "topic is given more than once"),
    ];
    for (target, reason) in cases {
        let error = post(http, target, "x").await.error(StatusCode::BAD_REQUEST);
        assert!(error.contains(reason), "{target}: {error}");
    }
    let wrong_method = get(http, "/publish?topic=a").await;
    wrong_method.error(StatusCode::METHOD_NOT_ALLOWED);
    get(http, "/nowhere").await.error(StatusCode::NOT_FOUND);
    // The first message the subscriber gets is this marker.
    post(http, "/publish?topic=marker", "marker").await;
    let first = subscriber.expect_publish().await;
    assert_eq!(first.topic, "marker");
    broker.stop().await;
}

#[tokio::test]
async fn pages_of_listed_origins_may_use_the_api_and_others_are_refused() {
    let (broker, http) = start(|config| {
        config.http.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let allowed = [("origin", "https://app.example")];
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ];
    let answer = call(http, Method::OPTIONS, "/publish?topic=a", &preflight, "").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(answer.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(answer.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Last-Event-ID"));

    let answer = call(http, Method::GET, "/retained?topic=a", &allowed, "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(answer.headers["vary"], "Origin");

    // Another site's page may not publish, even with a simple request.
    let mut subscriber = broker.client("cors-watcher", true).await;
    subscriber.subscribe(1, "#", QoS::AtMostOnce).await;
    let evil = [("origin", "https://evil.example")];
    let refused = call(http, Method::POST, "/publish?topic=a", &evil, "x").await;
    assert!(refused.error(StatusCode::FORBIDDEN).contains("not allowed"));
    assert!(refused.headers.get("access-control-allow-origin").is_none());
    let refused = call(http, Method::OPTIONS, "/events?topic=a", &evil, "").await;
    refused.error(StatusCode::FORBIDDEN);
    // The listener's own pages may.
    let own = format!("http://{http}");
    let answer = call(
        http,
        Method::POST,
        "/publish?topic=marker",
        &[("origin", &own)],
        "m",
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(subscriber.expect_publish().await.topic, "marker");
    broker.stop().await;
}

/// Without anonymous access, every endpoint of the API wants credentials that check out
/// as a CONNECT's would (none can, without a password file); /healthz stays open.
#[tokio::test]
async fn the_api_wants_credentials_where_anonymous_clients_are_refused() {
    let (broker, http) = start(|config| config.auth.allow_anonymous = Some(false)).await;
    for target in [
        "/events?topic=a",
        "/poll?topic=a&timeout=0",
        "/retained?topic=a",
        "/iframe?topic=a&callback=cb",
    ] {
        get(http, target).await.error(StatusCode::UNAUTHORIZED);
    }
    post(http, "/publish?topic=a", "x")
        .await
        .error(StatusCode::UNAUTHORIZED);
    let basic = [("authorization", "Basic dXNlcjpwYXNz")];
    let answer = call(http, Method::GET, "/retained?topic=a", &basic, "").await;
    answer.error(StatusCode::UNAUTHORIZED);
    let token = get(http, "/retained?topic=a&access_token=dXNlcjpwYXNz").await;
    token.error(StatusCode::UNAUTHORIZED);
    let garbled = get(http, "/retained?topic=a&access_token=%25%25").await;
    assert!(garbled.error(StatusCode::UNAUTHORIZED).contains("base64"));
    assert_eq!(get(http, "/healthz").await.status, 200);
    broker.stop().await;
}

/// Web readers beyond http.max_readers are refused with 503; a place freed is taken.
#[tokio::test]
async fn readers_beyond_the_limit_are_refused_until_one_leaves() {
    let (broker, http) = start(|config| config.http.max_readers = 2).await;
    let first = crate::common::web::Sse::open(http, "/events?topic=a", &[]).await;
    let _second = crate::common::web::Sse::open(http, "/events?topic=b", &[]).await;
    let refused = get(http, "/events?topic=c").await;
    assert!(refused
        .error(StatusCode::SERVICE_UNAVAILABLE)
        .contains("max_readers"));
    get(http, "/poll?topic=c&timeout=0")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE);
    drop(first);
    // The stream's end reaches the broker shortly after the client lets it go.
    let mut answer = get(http, "/poll?topic=c&timeout=0").await;
    for _ in 0..50 {
        if answer.status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        answer = get(http, "/poll?topic=c&timeout=0").await;
    }
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    broker.stop().await;
}

#[tokio::test]
async fn a_request_head_over_max_request_head_bytes_gets_431() {
    let (_broker, http) = start(|c| c.http.max_request_head_bytes.0 = 8192).await;
    let big = "a".repeat(10_000);
    let answer = call(http, Method::GET, "/healthz", &[("x-big", &big)], "").await;
    assert_eq!(answer.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let small = "a".repeat(6000);
    let answer = call(http, Method::GET, "/healthz", &[("x-small", &small)], "").await;
    assert_eq!(answer.status, StatusCode::OK);
}
