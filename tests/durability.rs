//! Durable state in sled, through the real binary: a graceful restart and a kill -9
//! lose nothing the broker acknowledged; a damaged or foreign data directory is a clear
//! error at start; disk use stays bounded under churn.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use common::process::Process;
use common::{Encode, RawClient, WAIT};
use mqttbytes::{v4, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Persistence on, flushed before every acknowledgement; offline queues long enough
/// for every message of these tests (beyond them, newer messages are dropped by design).
const DURABLE: &str = "[storage]\npersistence = true\npath = \"data\"\nsync = \"always\"\n\
                       [mqtt]\nmax_queued_messages = 100000\n";

/// The number after `name=` in a log line.
fn logged(line: &str, name: &str) -> u64 {
    let needle = format!(" {name}=");
    let at = line
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} in {line:?}"));
    let digits: String = line[at + needle.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// Restart test: a persistent subscriber offline while QoS 1 and QoS 2 messages arrive
/// from two publishers, a QoS 2 exchange cut after PUBREC in each direction, and a
/// retained message; SIGTERM, start again: every message arrives once, in order per
/// publisher, the cut exchanges complete with their own packet ids, the retained
/// message and the event-id sequence are still there.
#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_restart_keeps_sessions_messages_and_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::spawn(dir.path(), DURABLE);
    let first_id = logged(&herald.wait_for_log("state loaded"), "next_event_id");
    herald.listening();
    let addr = herald.addr;

    let mut sub = RawClient::open(addr).await;
    sub.connect("g-sub", false).await;
    sub.subscribe(1, "g/#", QoS::ExactlyOnce).await;
    sub.disconnect().await;

    let mut a = RawClient::open(addr).await;
    a.connect("g-pub-a", true).await;
    let mut b = RawClient::open(addr).await;
    b.connect("g-pub-b", true).await;
    for i in 0..50u16 {
        a.publish(
            "g/a",
            QoS::AtLeastOnce,
            format!("a{i}").as_bytes(),
            false,
            i + 1,
        )
        .await;
        b.publish(
            "g/b",
            QoS::ExactlyOnce,
            format!("b{i}").as_bytes(),
            false,
            i + 1,
        )
        .await;
    }
    a.publish("g/r", QoS::AtLeastOnce, b"kept", true, 100).await;

    // A QoS 2 PUBLISH received and answered with PUBREC, its PUBREL still to come.
    let mut c = RawClient::open(addr).await;
    c.connect("g-pub-c", false).await;
    let mut publish = v4::Publish::new("g/c", QoS::ExactlyOnce, b"c-once".to_vec());
    publish.pkid = 7;
    c.send_packet(publish).await;
    assert!(matches!(c.recv().await, Some(v4::Packet::PubRec(r)) if r.pkid == 7));
    c.disconnect().await;

    // A QoS 2 message sent, PUBREC answered with PUBREL, PUBCOMP never sent.
    let mut sub2 = RawClient::open(addr).await;
    sub2.connect("g-sub2", false).await;
    sub2.subscribe(1, "h/x", QoS::ExactlyOnce).await;
    a.publish("h/x", QoS::ExactlyOnce, b"h-once", false, 101)
        .await;
    let sent = sub2.expect_publish().await;
    sub2.send_packet(v4::PubRec::new(sent.pkid)).await;
    assert!(matches!(sub2.recv().await, Some(v4::Packet::PubRel(r)) if r.pkid == sent.pkid));
    sub2.disconnect().await;

    herald.signal("TERM");
    assert_eq!(herald.wait_exit(), Some(0));
    drop(herald);

    let mut herald = Process::spawn(dir.path(), DURABLE);
    let loaded = herald.wait_for_log("state loaded");
    assert_eq!(logged(&loaded, "sessions"), 3, "{loaded}");
    // g-sub: 50 + 50 + the retained one + c-once; g-sub2: h-once.
    assert_eq!(logged(&loaded, "queued"), 103, "{loaded}");
    assert_eq!(logged(&loaded, "retained"), 1, "{loaded}");
    assert!(
        logged(&loaded, "next_event_id") > first_id + 103,
        "{loaded}"
    );
    herald.listening();
    let addr = herald.addr;

    // The publisher's PUBREL completes the exchange begun before the restart.
    let mut c = RawClient::open(addr).await;
    assert!(c.connect("g-pub-c", false).await.session_present);
    c.send_packet(v4::PubRel::new(7)).await;
    match c.recv().await {
        Some(v4::Packet::PubComp(comp)) => assert_eq!(comp.pkid, 7),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // The subscriber is sent PUBREL again with the same packet id, not the message.
    let mut sub2 = RawClient::open(addr).await;
    assert!(sub2.connect("g-sub2", false).await.session_present);
    match sub2.recv().await {
        Some(v4::Packet::PubRel(rel)) => assert_eq!(rel.pkid, sent.pkid),
        other => panic!("expected PUBREL {}, got {other:?}", sent.pkid),
    }
    sub2.send_packet(v4::PubComp::new(sent.pkid)).await;
    sub2.expect_nothing(Duration::from_millis(300)).await;

    let mut sub = RawClient::open(addr).await;
    assert!(sub.connect("g-sub", false).await.session_present);
    let got = sub.receive_completing(102).await;
    sub.expect_nothing(Duration::from_millis(300)).await;
    let payloads = |topic: &str| -> Vec<String> {
        got.iter()
            .filter(|p| p.topic == topic)
            .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
            .collect()
    };
    let expected = |prefix: &str| (0..50).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    assert_eq!(payloads("g/a"), expected("a"));
    assert_eq!(payloads("g/b"), expected("b"));
    assert_eq!(payloads("g/c"), ["c-once"]);
    assert_eq!(payloads("g/r"), ["kept"]);

    let mut late = RawClient::open(addr).await;
    late.connect("g-late", true).await;
    late.subscribe(1, "g/r", QoS::AtLeastOnce).await;
    let retained = late.expect_publish().await;
    assert!(retained.retain);
    assert_eq!(&retained.payload[..], b"kept");
}

/// A publisher streaming QoS 1 messages (payload: an 8-byte sequence number) with 32
/// in flight, which SIGKILLs the broker once `kill_after` are acknowledged and goes on
/// until the connection breaks. Returns the acknowledged sequence numbers.
async fn stream_until_killed(herald: &Process, kill_after: usize) -> BTreeSet<u64> {
    let mut stream = TcpStream::connect(herald.addr).await.unwrap();
    let mut out = BytesMut::new();
    common::connect_packet("crash-pub", true, 0).encode(&mut out);
    stream.write_all(&out).await.unwrap();
    let mut input = BytesMut::new();
    let mut in_flight: HashMap<u16, u64> = HashMap::new();
    let mut acked = BTreeSet::new();
    let (mut next, mut killed) = (0u64, false);
    let mut connack = false;
    loop {
        out.clear();
        while connack && in_flight.len() < 32 {
            let pkid = (next % 60_000) as u16 + 1;
            let mut publish =
                v4::Publish::new("crash/p", QoS::AtLeastOnce, next.to_be_bytes().to_vec());
            publish.pkid = pkid;
            publish.encode(&mut out);
            in_flight.insert(pkid, next);
            next += 1;
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            break;
        }
        let read = tokio::time::timeout(WAIT, stream.read_buf(&mut input)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        while let Ok(packet) = v4::read(&mut input, 1 << 20) {
            match packet {
                v4::Packet::ConnAck(_) => connack = true,
                v4::Packet::PubAck(ack) => {
                    let seq = in_flight
                        .remove(&ack.pkid)
                        .expect("PUBACK for a message in flight");
                    acked.insert(seq);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if !killed && acked.len() >= kill_after {
            herald.signal("KILL");
            killed = true;
        }
    }
    assert!(killed, "the stream ended before the kill point");
    acked
}

/// Receives QoS 1 sequence numbers until none arrives for a second.
async fn collect(client: &mut RawClient) -> BTreeSet<u64> {
    let mut got = BTreeSet::new();
    while let Some(packet) = client.recv_within(Duration::from_secs(1)).await {
        if let v4::Packet::Publish(publish) = packet {
            client.send_packet(v4::PubAck::new(publish.pkid)).await;
            got.insert(u64::from_be_bytes(publish.payload[..8].try_into().unwrap()));
        }
    }
    got
}

/// Crash test: the broker is killed with SIGKILL in the middle of a stream of QoS 1
/// publishes, at several points, with the persistent subscriber offline and (last)
/// online; after a restart every message whose PUBACK the publisher received reaches
/// the subscriber. A retained message and the event-id sequence survive too.
#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_message_survives_a_kill_9() {
    for (kill_after, online) in [(1, false), (500, false), (4000, false), (2000, true)] {
        let dir = tempfile::tempdir().unwrap();
        let herald = Process::start(dir.path(), DURABLE);
        let mut sub = RawClient::open(herald.addr).await;
        sub.connect("crash-sub", false).await;
        sub.subscribe(1, "crash/p", QoS::AtLeastOnce).await;
        let mut retained = RawClient::open(herald.addr).await;
        retained.connect("crash-ret", true).await;
        retained
            .publish("crash/r", QoS::AtLeastOnce, b"r", true, 1)
            .await;

        let (acked, before) = if online {
            let receiving = tokio::spawn(async move { collect(&mut sub).await });
            let acked = stream_until_killed(&herald, kill_after).await;
            (acked, receiving.await.unwrap())
        } else {
            sub.disconnect().await;
            (
                stream_until_killed(&herald, kill_after).await,
                BTreeSet::new(),
            )
        };
        drop(herald);

        let mut herald = Process::spawn(dir.path(), DURABLE);
        let loaded = herald.wait_for_log("state loaded");
        assert!(
            logged(&loaded, "next_event_id") > acked.len() as u64,
            "{loaded}"
        );
        assert_eq!(logged(&loaded, "retained"), 1, "{loaded}");
        herald.listening();
        let addr = herald.addr;
        let mut sub = RawClient::open(addr).await;
        assert!(sub.connect("crash-sub", false).await.session_present);
        let after = collect(&mut sub).await;
        let lost: Vec<_> = acked
            .iter()
            .filter(|seq| !before.contains(seq) && !after.contains(seq))
            .collect();
        let first_lost = &lost[..lost.len().min(10)];
        println!(
            "kill after {kill_after} acks (subscriber online: {online}): {} acknowledged, \
             {} received before, {} after the restart",
            acked.len(),
            before.len(),
            after.len()
        );
        assert!(
            lost.is_empty(),
            "{} acknowledged messages lost, first {first_lost:?}",
            lost.len()
        );

        let mut late = RawClient::open(addr).await;
        late.connect("crash-late", true).await;
        late.subscribe(1, "crash/r", QoS::AtLeastOnce).await;
        assert_eq!(&late.expect_publish().await.payload[..], b"r");
    }
}

/// Starts herald on `dir` and returns its stderr once it has exited, asserting it
/// exited with 1 (an error, not a panic).
fn start_fails(dir: &Path) -> String {
    let mut herald = Process::spawn(dir, DURABLE);
    assert_eq!(herald.wait_exit(), Some(1), "herald exits with an error");
    herald.drain_log().join("\n")
}

/// Writes a sled database in `dir`/data holding `entries`, as another program could.
fn foreign_database(dir: &Path, entries: &[(&[u8], &[u8])]) {
    let db = sled::open(dir.join("data")).unwrap();
    for (key, value) in entries {
        db.insert(key, *value).unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn a_bad_data_directory_is_a_clear_error_at_start() {
    // A file where the directory should be.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), b"not a directory").unwrap();
    let log = start_fails(dir.path());
    assert!(log.contains("cannot open the database in data"), "{log}");

    // Damaged files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/conf"), [0xff; 64]).unwrap();
    std::fs::write(dir.path().join("data/db"), [0xa5; 4096]).unwrap();
    let log = start_fails(dir.path());
    assert!(log.contains("cannot open the database in data"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // A newer schema.
    let dir = tempfile::tempdir().unwrap();
    foreign_database(dir.path(), &[(b"Mschema", &99u32.to_be_bytes())]);
    let log = start_fails(dir.path());
    assert!(log.contains("has schema version 99"), "{log}");

    // Someone else's database.
    let dir = tempfile::tempdir().unwrap();
    foreign_database(dir.path(), &[(b"users/1", b"alice")]);
    let log = start_fails(dir.path());
    assert!(log.contains("not a Herald database"), "{log}");

    // A damaged record.
    let dir = tempfile::tempdir().unwrap();
    foreign_database(
        dir.path(),
        &[
            (b"Mschema", &1u32.to_be_bytes()),
            (b"Rtopic", b"\xff\xff\xff"),
        ],
    );
    let log = start_fails(dir.path());
    assert!(log.contains("database is corrupt: record Rtopic"), "{log}");
}

/// Bytes in the files under `path`.
fn disk_use(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_use(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Soak: rounds of 50 persistent sessions that subscribe, are sent 20 QoS 1 messages
/// of 1 KiB while offline, come back for them and end (some by a clean session, some
/// by expiry). The database does not grow round after round. The web readers' replay
/// log is kept short, so that it is full from the first round and trimmed from then
/// on: it is bounded too.
#[tokio::test(flavor = "multi_thread")]
async fn disk_use_stays_bounded_under_session_churn() {
    const ROUNDS: usize = 12;
    const SESSIONS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{DURABLE}[http]\nreplay_max_messages = 100\n");
    let herald = Process::start(dir.path(), &config);
    let mut publisher = RawClient::open(herald.addr).await;
    publisher.connect("soak-pub", true).await;
    let payload = vec![b'x'; 1024];
    let mut sizes = Vec::new();
    for round in 0..ROUNDS {
        for s in 0..SESSIONS {
            let mut sub = RawClient::open(herald.addr).await;
            sub.connect(&format!("soak-{round}-{s}"), false).await;
            sub.subscribe(1, &format!("soak/{s}"), QoS::AtLeastOnce)
                .await;
            sub.disconnect().await;
        }
        for i in 0..20u16 {
            for s in 0..SESSIONS {
                let pkid = i * SESSIONS as u16 + s as u16 + 1;
                publisher
                    .publish(
                        &format!("soak/{s}"),
                        QoS::AtLeastOnce,
                        &payload,
                        false,
                        pkid,
                    )
                    .await;
            }
        }
        for s in 0..SESSIONS {
            let mut sub = RawClient::open(herald.addr).await;
            sub.connect(&format!("soak-{round}-{s}"), false).await;
            assert_eq!(sub.receive_completing(20).await.len(), 20);
            sub.disconnect().await;
            // Ended by a clean session.
            let mut end = RawClient::open(herald.addr).await;
            end.connect(&format!("soak-{round}-{s}"), true).await;
            end.disconnect().await;
        }
        sizes.push(disk_use(&dir.path().join("data")));
    }
    println!("database size after each round (bytes): {sizes:?}");
    // sled's files move in whole segments: compare the peaks of each half.
    let (early, late) = sizes.split_at(ROUNDS / 2);
    let (early, late) = (early.iter().max().unwrap(), late.iter().max().unwrap());
    assert!(
        *late <= early + early / 2,
        "the database grows round after round: {sizes:?}"
    );
}

/// An MQTT 5.0 CONNECT resuming `client_id` with a Session Expiry Interval of `secs`.
fn connect_v5(client_id: &str, secs: u32) -> Vec<u8> {
    let mut body = common::field(b"MQTT");
    body.extend_from_slice(&[5, 0x00, 0, 30]);
    body.extend_from_slice(&[5, 0x11]);
    body.extend_from_slice(&secs.to_be_bytes());
    body.extend_from_slice(&common::field(client_id.as_bytes()));
    common::frame(0x10, &body)
}

/// Connects and disconnects an MQTT 5.0 client whose session expires `secs` later.
async fn leave_session(addr: std::net::SocketAddr, client_id: &str, secs: u32) {
    let mut client = RawClient::open(addr).await;
    client.send(&connect_v5(client_id, secs)).await;
    let connack = client.recv_frame().await.expect("CONNACK");
    assert_eq!(&connack[..1], [0x20]);
    assert_eq!(connack[3], 0, "CONNACK reason");
    client.disconnect().await;
}

/// Session expiry removes a session from disk too: one that expires while the broker
/// runs is gone at the next start, and one whose expiry passes while the broker is
/// down is removed when it starts.
#[tokio::test(flavor = "multi_thread")]
async fn expired_sessions_leave_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::start(dir.path(), DURABLE);
    leave_session(herald.addr, "exp-short", 1).await;
    leave_session(herald.addr, "exp-long", 3600).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    leave_session(herald.addr, "exp-down", 1).await;
    herald.signal("TERM");
    assert_eq!(herald.wait_exit(), Some(0));
    drop(herald);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let mut herald = Process::spawn(dir.path(), DURABLE);
    let loaded = herald.wait_for_log("state loaded");
    assert_eq!(logged(&loaded, "sessions"), 1, "{loaded}");
    assert_eq!(logged(&loaded, "expired_sessions"), 1, "{loaded}");
    herald.signal("TERM");
    assert_eq!(herald.wait_exit(), Some(0));
    drop(herald);

    // Removed for good: the next start finds only the long one.
    let mut herald = Process::spawn(dir.path(), DURABLE);
    let loaded = herald.wait_for_log("state loaded");
    assert_eq!(logged(&loaded, "sessions"), 1, "{loaded}");
    assert_eq!(logged(&loaded, "expired_sessions"), 0, "{loaded}");
}

/// With `sync = "interval"` (and a period longer than the test) nothing waits for the
/// disk, and a graceful stop still flushes everything.
#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_flushes_whatever_the_sync_mode() {
    let config = "[storage]\npersistence = true\npath = \"data\"\nsync = \"interval\"\n\
                  sync_interval_ms = 3600000\n";
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::start(dir.path(), config);
    let mut publisher = RawClient::open(herald.addr).await;
    publisher.connect("interval-pub", true).await;
    publisher
        .publish("interval/r", QoS::AtLeastOnce, b"kept", true, 1)
        .await;
    herald.signal("TERM");
    assert_eq!(herald.wait_exit(), Some(0));
    drop(herald);

    let mut herald = Process::spawn(dir.path(), config);
    let loaded = herald.wait_for_log("state loaded");
    assert_eq!(logged(&loaded, "retained"), 1, "{loaded}");
}
