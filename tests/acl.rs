//! The ACL file through the wire: what a client may not write is dropped (MQTT 3.x) or
//! refused with 0x87 (MQTT 5.0); what it may not read it never receives — live,
//! retained, through `$share`, or on the HTTP API — and subscriptions it may not make
//! are refused; wills are checked; patterns fill in user name and client id.

mod common;
#[path = "common/v5/mod.rs"]
mod v5;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use herald::passwd::{PasswordFile, PasswordHash};
use hyper::{Method, StatusCode};
use mqttbytes::{v4, QoS};

use common::web::{call, Answer, Sse};
use common::{RawClient, TestBroker};
use v5::{Client, Connect, Publish, Will, PUBACK, PUBREC};

/// How long a test waits to show that something does not arrive.
const QUIET: Duration = Duration::from_millis(300);

const ACL: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite a/#
topic deny a/secret
topic write in/#

user watcher
topic read #

user admin
topic readwrite #

pattern write devices/%c/#
pattern read users/%u/#
";

const USERS: [&str; 3] = ["alice", "watcher", "admin"];

/// Writes the password file (each user's password is its name) and `acl` into `dir`.
fn write_files(dir: &Path, users: &[&str], acl: &str) {
    let mut passwords = PasswordFile::parse("").unwrap();
    for user in users {
        passwords.set(user, PasswordHash::new(user.as_bytes()).unwrap());
    }
    std::fs::write(dir.join("passwd"), passwords.to_string()).unwrap();
    std::fs::write(dir.join("acl"), acl).unwrap();
}

/// A broker with an HTTP listener, the users above and `acl`.
async fn start(dir: &Path, acl: &str) -> (TestBroker, SocketAddr) {
    write_files(dir, &USERS, acl);
    let (passwd, acl) = (dir.join("passwd"), dir.join("acl"));
    TestBroker::start_with_http(|config| {
        config.auth.password_file = Some(passwd);
        config.auth.acl_file = Some(acl);
        config.auth.allow_anonymous = Some(true);
    })
    .await
}

/// An MQTT 3.1.1 connection logged in as `user` (password: the name) with a clean
/// session or not, and the CONNACK.
async fn v3_login(
    addr: SocketAddr,
    client_id: &str,
    user: Option<&str>,
    clean: bool,
) -> (RawClient, v4::ConnAck) {
    let mut client = RawClient::open(addr).await;
    let ack = match user {
        Some(user) => client.login(client_id, clean, user, user).await,
        None => client.connect(client_id, clean).await,
    };
    (client, ack)
}

/// A clean-session MQTT 3.1.1 client logged in as `user`, or anonymous.
async fn v3_client(addr: SocketAddr, client_id: &str, user: Option<&str>) -> RawClient {
    let (client, ack) = v3_login(addr, client_id, user, true).await;
    assert_eq!(
        ack.code,
        v4::ConnectReturnCode::Success,
        "{user:?}: {ack:?}"
    );
    client
}

fn v5_login(client_id: &str, user: &str) -> Connect {
    Connect::new(client_id)
        .username(user)
        .password(user.as_bytes())
}

fn basic(user: &str) -> String {
    let pair = format!("{user}:{user}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

async fn http_as(http: SocketAddr, method: Method, target: &str, user: &str) -> Answer {
    let auth = basic(user);
    call(http, method, target, &[("authorization", &auth)], "x").await
}

/// Receives the next PUBLISH and checks its topic: nothing denied came before it.
async fn expect_topic(client: &mut RawClient, topic: &str) {
    let publish = client.expect_publish().await;
    assert_eq!(publish.topic, topic, "{publish:?}");
}

#[tokio::test]
async fn mqtt3_writes_the_acl_denies_are_acknowledged_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), ACL).await;
    let mut watcher = v3_client(broker.addr, "watcher", Some("watcher")).await;
    assert_eq!(
        watcher.subscribe(1, "#", QoS::AtLeastOnce).await,
        [v4::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut alice = v3_client(broker.addr, "alice-1", Some("alice")).await;
    // Each acknowledged as usual (the QoS 2 exchange completed), and dropped.
    alice
        .publish("public/x", QoS::AtMostOnce, b"no", false, 0)
        .await;
    alice
        .publish("public/x", QoS::AtLeastOnce, b"no", false, 1)
        .await;
    alice
        .publish("a/secret", QoS::ExactlyOnce, b"no", true, 2)
        .await;
    alice
        .publish("in/box", QoS::AtLeastOnce, b"yes", false, 3)
        .await;
    expect_topic(&mut watcher, "in/box").await;
    watcher.expect_nothing(QUIET).await;
    // Nothing retained either.
    let mut late = v3_client(broker.addr, "watcher-2", Some("watcher")).await;
    late.subscribe(1, "a/#", QoS::AtMostOnce).await;
    late.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn mqtt5_writes_the_acl_denies_are_refused_with_0x87() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), ACL).await;
    let mut watcher = v3_client(broker.addr, "watcher", Some("watcher")).await;
    watcher.subscribe(1, "#", QoS::AtLeastOnce).await;
    let (mut alice, _) = Client::connect(&broker, &v5_login("alice-5", "alice")).await;
    alice
        .send(&Publish::new("public/x", 1, b"no").pkid(1).bytes())
        .await;
    assert_eq!(alice.expect_ack(PUBACK, 1).await.reason, 0x87);
    alice
        .send(&Publish::new("a/secret", 2, b"no").pkid(2).bytes())
        .await;
    assert_eq!(alice.expect_ack(PUBREC, 2).await.reason, 0x87);
    alice.publish(&Publish::new("public/x", 0, b"no")).await;
    alice
        .publish(&Publish::new("a/ok", 1, b"yes").pkid(3))
        .await;
    expect_topic(&mut watcher, "a/ok").await;
    watcher.expect_nothing(QUIET).await;
    // The connection goes on.
    alice.ping().await;
}

#[tokio::test]
async fn subscriptions_beyond_what_a_client_may_read_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), ACL).await;
    let mut alice = v3_client(broker.addr, "alice-3", Some("alice")).await;
    let refused = v4::SubscribeReasonCode::Failure;
    for (filter, allowed) in [
        ("a/#", true),
        ("a/+/x", true),
        ("#", false),
        ("a/secret", false),
        ("in/#", false),
        ("public/#", false),
        ("users/alice/#", true),
        ("users/bob/#", false),
        ("$share/g/a/b", true),
        ("$share/g/#", false),
    ] {
        let codes = alice.subscribe(1, filter, QoS::AtMostOnce).await;
        assert_eq!(codes[0] != refused, allowed, "{filter}: {codes:?}");
    }
    let (mut alice5, _) = Client::connect(&broker, &v5_login("alice-5", "alice")).await;
    assert_eq!(
        alice5.subscribe(1, &[("#", 1), ("a/#", 1)]).await,
        [0x87, 0x01]
    );
    // Anonymous clients have the rules before the first `user`.
    let mut anonymous = v3_client(broker.addr, "anon", None).await;
    let codes = anonymous.subscribe(1, "public/#", QoS::AtMostOnce).await;
    assert_eq!(codes, [v4::SubscribeReasonCode::Success(QoS::AtMostOnce)]);
    let codes = anonymous.subscribe(2, "a/#", QoS::AtMostOnce).await;
    assert_eq!(codes, [refused]);
}

#[tokio::test]
async fn a_reader_never_gets_what_it_may_not_read_live_retained_shared_or_on_the_web() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, http) = start(dir.path(), ACL).await;
    let mut admin = v3_client(broker.addr, "admin", Some("admin")).await;
    admin
        .publish("a/secret", QoS::AtLeastOnce, b"r-secret", true, 1)
        .await;
    admin
        .publish("a/ok", QoS::AtLeastOnce, b"r-ok", true, 2)
        .await;

    let mut alice = v3_client(broker.addr, "alice-r", Some("alice")).await;
    alice.subscribe(1, "a/#", QoS::AtLeastOnce).await;
    let retained = alice.expect_publish().await;
    assert_eq!(
        (&*retained.topic, &retained.payload[..]),
        ("a/ok", &b"r-ok"[..])
    );
    let mut shared = v3_client(broker.addr, "alice-s", Some("alice")).await;
    shared.subscribe(1, "$share/g/a/#", QoS::AtLeastOnce).await;
    let events = format!("/events?topic={}", common::web::encode("a/#"));
    let auth = basic("alice");
    let mut sse = Sse::open(http, &events, &[("authorization", &auth)]).await;

    for (n, topic) in ["a/secret", "a/ok", "a/secret", "a/last"]
        .iter()
        .enumerate()
    {
        let pkid = 10 + n as u16;
        admin
            .publish(topic, QoS::AtLeastOnce, topic.as_bytes(), false, pkid)
            .await;
    }
    for client in [&mut alice, &mut shared] {
        let mut topics = Vec::new();
        for _ in 0..2 {
            let publish = client.expect_publish().await;
            if publish.qos == QoS::AtLeastOnce {
                client.send_packet(v4::PubAck::new(publish.pkid)).await;
            }
            topics.push(publish.topic);
        }
        assert_eq!(topics, ["a/ok", "a/last"]);
        client.expect_nothing(QUIET).await;
    }
    let seen = sse.until_payload("a/last").await;
    let topics: Vec<String> = seen
        .iter()
        .map(|event| event.json()["topic"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(topics, ["a/ok", "a/ok", "a/last"], "retained, then live");

    // Polling and short polling are filtered alike; a filter reaching beyond is 403.
    let poll = format!(
        "/poll?topic={}&since=0&timeout=1",
        common::web::encode("a/#")
    );
    let answer = http_as(http, Method::GET, &poll, "alice").await;
    assert_eq!(answer.status, StatusCode::OK);
    let payloads: Vec<String> = answer.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["topic"].as_str().unwrap().to_string())
        .collect();
    assert!(!payloads.iter().any(|t| t == "a/secret"), "{payloads:?}");
    assert!(payloads.iter().any(|t| t == "a/last"), "{payloads:?}");
    let retained = format!("/retained?topic={}", common::web::encode("a/#"));
    let answer = http_as(http, Method::GET, &retained, "alice").await;
    assert_eq!(
        answer.json().as_array().unwrap().len(),
        1,
        "{:?}",
        answer.text()
    );
    assert_eq!(answer.json()[0]["topic"], "a/ok");
    for denied in [
        "/events?topic=%23",
        "/poll?topic=a%2Fsecret",
        "/retained?topic=in%2F%23",
    ] {
        let answer = http_as(http, Method::GET, denied, "alice").await;
        assert!(
            answer.error(StatusCode::FORBIDDEN).contains("not allowed"),
            "{denied}"
        );
    }
    let answer = http_as(http, Method::POST, "/publish?topic=public%2Fx", "alice").await;
    assert!(answer.error(StatusCode::FORBIDDEN).contains("not allowed"));
    let answer = http_as(http, Method::POST, "/publish?topic=in%2Fx", "alice").await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_will_on_a_topic_the_client_may_not_write_refuses_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), ACL).await;
    let mut client = broker.raw().await;
    let mut connect = common::connect_packet("alice-w", true, 30);
    connect.set_login("alice", "alice");
    connect.last_will = Some(v4::LastWill::new(
        "public/x",
        "gone",
        QoS::AtMostOnce,
        false,
    ));
    client.send_packet(connect).await;
    let ack = client.expect_connack().await;
    assert_eq!(ack.code, v4::ConnectReturnCode::NotAuthorized);

    let connect = v5_login("alice-w5", "alice").will(Will::new("a/secret", b"gone"));
    let (_, ack) = Client::try_connect(&broker, &connect).await;
    assert_eq!(ack.reason, 0x87);

    // A will it may write is published.
    let mut watcher = v3_client(broker.addr, "watcher", Some("watcher")).await;
    watcher.subscribe(1, "in/#", QoS::AtMostOnce).await;
    let connect = v5_login("alice-w6", "alice").will(Will::new("in/will", b"gone"));
    let (alice, _) = Client::connect(&broker, &connect).await;
    alice.drop_connection().await;
    expect_topic(&mut watcher, "in/will").await;
}

#[tokio::test]
async fn patterns_fill_in_the_user_name_and_the_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), ACL).await;
    let mut watcher = v3_client(broker.addr, "watcher", Some("watcher")).await;
    watcher.subscribe(1, "devices/#", QoS::AtMostOnce).await;
    let mut device = v3_client(broker.addr, "dev1", Some("alice")).await;
    device
        .publish("devices/dev2/t", QoS::AtLeastOnce, b"no", false, 1)
        .await;
    device
        .publish("devices/dev1/t", QoS::AtLeastOnce, b"yes", false, 2)
        .await;
    expect_topic(&mut watcher, "devices/dev1/t").await;
    // Anonymous clients have no user name: a pattern with %u is not theirs.
    let mut anonymous = v3_client(broker.addr, "anon", None).await;
    let codes = anonymous.subscribe(1, "users/+/x", QoS::AtMostOnce).await;
    assert_eq!(codes, [v4::SubscribeReasonCode::Failure]);
}

#[tokio::test]
async fn sighup_rereads_both_files_and_holds_connected_clients_to_the_new_rules() {
    let dir = tempfile::tempdir().unwrap();
    let before = "user alice\ntopic readwrite a/#\nuser admin\ntopic readwrite #\n";
    write_files(dir.path(), &["alice", "admin", "carol"], before);
    let rest = "[[listeners]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
                [auth]\npassword_file = \"passwd\"\nacl_file = \"acl\"\n";
    let mut herald = common::process::Process::start(dir.path(), rest);
    let http = herald.wait_for_addr("http listener on ");

    let mut alice = v3_client(herald.addr, "alice", Some("alice")).await;
    alice.subscribe(1, "a/#", QoS::AtMostOnce).await;
    let events = format!("/events?topic={}", common::web::encode("a/#"));
    let auth = basic("alice");
    let mut sse = Sse::open(http, &events, &[("authorization", &auth)]).await;
    let mut admin = v3_client(herald.addr, "admin", Some("admin")).await;
    let mut watch = v3_client(herald.addr, "watch", Some("admin")).await;
    watch.subscribe(1, "#", QoS::AtMostOnce).await;
    admin
        .publish("a/closed/1", QoS::AtLeastOnce, b"before", false, 1)
        .await;
    expect_topic(&mut alice, "a/closed/1").await;
    expect_topic(&mut watch, "a/closed/1").await;
    v3_client(herald.addr, "carol", Some("carol")).await;
    // A session of alice's, offline with a message queued that it may read now.
    let (mut away, _) = v3_login(herald.addr, "alice-away", Some("alice"), false).await;
    away.subscribe(1, "a/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    admin
        .publish("a/closed/queued", QoS::AtLeastOnce, b"queued", false, 5)
        .await;
    expect_topic(&mut watch, "a/closed/queued").await;
    expect_topic(&mut alice, "a/closed/queued").await;

    // Alice may now read a/open only, and write nothing; carol is gone.
    let after = "user alice\ntopic read a/open/#\nuser admin\ntopic readwrite #\n";
    write_files(dir.path(), &["alice", "admin"], after);
    herald.signal("HUP");
    herald.wait_for_log("ACL file reloaded");

    admin
        .publish("a/closed/2", QoS::AtLeastOnce, b"after", false, 2)
        .await;
    admin
        .publish("a/open/3", QoS::AtLeastOnce, b"after", false, 3)
        .await;
    expect_topic(&mut alice, "a/open/3").await;
    let seen = sse.until_payload("after").await;
    let topics: Vec<String> = seen
        .iter()
        .map(|event| {
            event.json()["topic"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(topics, ["a/closed/1", "a/closed/queued", "a/open/3"]);
    expect_topic(&mut watch, "a/closed/2").await;
    expect_topic(&mut watch, "a/open/3").await;
    alice
        .publish("a/open/4", QoS::AtLeastOnce, b"dropped", false, 4)
        .await;
    watch.expect_nothing(QUIET).await;

    // Of what the session queued while offline, a/closed/* is no longer hers to read.
    let (mut away, ack) = v3_login(herald.addr, "alice-away", Some("alice"), false).await;
    assert!(ack.session_present);
    let first = away.expect_publish().await;
    assert_eq!(first.topic, "a/open/3", "{first:?}");
    away.send_packet(v4::PubAck::new(first.pkid)).await;
    away.expect_nothing(QUIET).await;

    let (_, ack) = v3_login(herald.addr, "carol", Some("carol"), true).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::BadUserNamePassword);
}

#[tokio::test]
async fn refusals_are_logged_once_a_client_with_its_id_and_address() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acl"), "topic read a/#\n").unwrap();
    let rest = "[auth]\nallow_anonymous = true\nacl_file = \"acl\"\n";
    let mut herald = common::process::Process::start(dir.path(), rest);
    let mut client = v3_client(herald.addr, "pushy", None).await;
    for pkid in 1..=3 {
        client.subscribe(pkid, "#", QoS::AtMostOnce).await;
        client
            .publish("a/x", QoS::AtLeastOnce, b"no", false, pkid)
            .await;
    }
    let first = herald.wait_for_log("refused");
    assert!(
        first.contains("pushy") && first.contains("127.0.0.1:"),
        "{first}"
    );
    client.disconnect().await;
    tokio::time::sleep(QUIET).await;
    let more: Vec<String> = herald
        .drain_log()
        .into_iter()
        .filter(|line| line.contains("refused"))
        .collect();
    assert!(more.is_empty(), "{more:#?}");
}

#[tokio::test]
async fn other_sites_get_no_use_of_remembered_credentials() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &USERS, ACL);
    let passwd = dir.path().join("passwd");
    let (_broker, http) = TestBroker::start_with_http(|config| {
        config.auth.password_file = Some(passwd);
        config.http.cors_origins = vec!["*".into()];
    })
    .await;
    let auth = basic("admin");
    let from_elsewhere = [
        ("origin", "http://elsewhere.example"),
        ("authorization", auth.as_str()),
    ];
    // The Basic credentials a browser remembers and sends along do not count…
    let answer = call(
        http,
        Method::POST,
        "/publish?topic=in%2Fx",
        &from_elsewhere,
        "x",
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        answer.text()
    );
    // …credentials the page gives on purpose do.
    let token = base64::engine::general_purpose::STANDARD.encode("admin:admin");
    let target = format!("/publish?topic=in%2Fx&access_token={token}");
    let answer = call(http, Method::POST, &target, &from_elsewhere, "x").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.text());
    // The dashboard's data is not for other sites at all.
    let answer = call(http, Method::GET, "/clients", &from_elsewhere, "").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = call(
        http,
        Method::GET,
        "/clients",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_session_resumed_by_another_user_is_held_to_that_user_s_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), ACL).await;
    let (mut first, _) = v3_login(broker.addr, "handed-on", Some("watcher"), false).await;
    first.subscribe(1, "#", QoS::AtLeastOnce).await;
    let mut admin = v3_client(broker.addr, "admin", Some("admin")).await;
    admin
        .publish("public/news", QoS::AtLeastOnce, b"in flight", false, 1)
        .await;
    // Received, never acknowledged: due again to whoever resumes the session.
    expect_topic(&mut first, "public/news").await;
    first.close_write().await;
    drop(first);
    tokio::time::sleep(QUIET).await;
    admin
        .publish("public/later", QoS::AtLeastOnce, b"queued", false, 2)
        .await;
    admin
        .publish("a/ok", QoS::AtLeastOnce, b"hers", false, 3)
        .await;
    let (mut alice, ack) = v3_login(broker.addr, "handed-on", Some("alice"), false).await;
    assert!(ack.session_present);
    let got = alice.expect_publish().await;
    assert_eq!(got.topic, "a/ok", "{got:?}");
    alice.send_packet(v4::PubAck::new(got.pkid)).await;
    alice.expect_nothing(QUIET).await;
}
