//! The password file: a file written by Debian's `mosquitto_passwd` is read as it is;
//! its users connect with mosquitto_pub and mosquitto_sub and call the HTTP API, wrong
//! passwords and unknown users are refused, and anonymous clients are refused by
//! default once there is a password file.

mod common;

use std::path::Path;

use common::process::Process;
use common::tools::{mosquitto, mosquitto_tools, require, run_tool};
use common::web::{call, get};
use hyper::{Method, StatusCode};
use tokio::process::Command;

const HTTP_LISTENER: &str = "[[listeners]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n";

/// `mosquitto_passwd -b` adding `user` with `password` to `file` (`-H sha512` for
/// Mosquitto 1.x's `$6$` lines when `old`).
async fn mosquitto_passwd(tool: &Path, file: &Path, user: &str, password: &str, old: bool) {
    let mut command = Command::new(tool);
    if old {
        command.args(["-H", "sha512"]);
    }
    if !file.exists() {
        command.arg("-c");
    }
    command.arg("-b").arg(file).args([user, password]);
    run_tool(command, b"").await;
}

/// `herald passwd FILE ARGS…` with `stdin`, to completion.
async fn herald_passwd(file: &Path, args: &[&str], stdin: &[u8]) {
    let mut command = Command::new(common::process::HERALD);
    command.arg("passwd").arg(file).args(args);
    run_tool(command, stdin).await;
}

/// Publishes one message as `user`/`password`; whether the broker took the client.
async fn publish_as(tool: &Path, herald: &Process, user: Option<(&str, &str)>) -> bool {
    let mut command = mosquitto(tool, herald.addr);
    command.args(["-t", "auth/test", "-m", "hi", "-q", "1"]);
    if let Some((user, password)) = user {
        command.args(["-u", user, "-P", password]);
    }
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    tokio::time::timeout(common::WAIT, status)
        .await
        .expect("mosquitto_pub ends")
        .expect("mosquitto_pub runs")
        .success()
}

#[tokio::test]
async fn users_of_a_mosquitto_passwd_file_connect_and_others_do_not() {
    let Some((sub_tool, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let Some(passwd_tool) = require("mosquitto_passwd", "install Debian's mosquitto") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    mosquitto_passwd(&passwd_tool, &file, "alice", "secret", false).await;
    mosquitto_passwd(&passwd_tool, &file, "bob", "older", true).await;
    let rest = format!("{HTTP_LISTENER}[auth]\npassword_file = \"passwd\"\n");
    let mut herald = Process::start(dir.path(), &rest);
    let http = herald.wait_for_addr("http listener on ");

    assert!(publish_as(&pub_tool, &herald, Some(("alice", "secret"))).await);
    assert!(
        publish_as(&pub_tool, &herald, Some(("bob", "older"))).await,
        "$6$ lines"
    );
    assert!(!publish_as(&pub_tool, &herald, Some(("alice", "wrong"))).await);
    assert!(!publish_as(&pub_tool, &herald, Some(("mallory", "secret"))).await);
    assert!(
        !publish_as(&pub_tool, &herald, None).await,
        "anonymous is off by default"
    );
    herald.wait_for_log("connection refused");

    // A user receives what another publishes.
    let mut sub = mosquitto(&sub_tool, herald.addr);
    sub.args([
        "-u", "bob", "-P", "older", "-t", "auth/#", "-C", "1", "-W", "10",
    ]);
    let subscriber = tokio::spawn(run_tool(sub, b""));
    let mut received = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if subscriber.is_finished() {
            received = Some(subscriber.await.unwrap());
            break;
        }
        assert!(publish_as(&pub_tool, &herald, Some(("alice", "secret"))).await);
    }
    assert_eq!(received.as_deref().map(str::trim_end), Some("hi"));

    // The HTTP API takes the same users.
    let alice = [("authorization", "Basic YWxpY2U6c2VjcmV0")];
    let answer = call(http, Method::GET, "/retained?topic=auth/%23", &alice, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let wrong = [("authorization", "Basic YWxpY2U6d3Jvbmc=")];
    let answer = call(http, Method::GET, "/retained?topic=auth/%23", &wrong, "").await;
    answer.error(StatusCode::UNAUTHORIZED);
    let token = get(
        http,
        "/retained?topic=auth/%23&access_token=YWxpY2U6c2VjcmV0",
    )
    .await;
    assert_eq!(token.status, StatusCode::OK);
    get(http, "/retained?topic=auth/%23")
        .await
        .error(StatusCode::UNAUTHORIZED);
    herald.signal("TERM");
    herald.wait_exit();
}

#[test]
fn a_bad_password_file_stops_the_start_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("passwd"),
        "alice:$7$101$c2FsdA==$aGFzaA==\nbroken\n",
    )
    .unwrap();
    let mut herald = Process::spawn(dir.path(), "[auth]\npassword_file = \"passwd\"\n");
    herald.wait_for_log("line 2");
    assert_ne!(herald.wait_exit(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Process::spawn(dir.path(), "[auth]\npassword_file = \"missing\"\n");
    herald.wait_for_log("cannot read the password file");
    assert_ne!(herald.wait_exit(), Some(0));
}

/// `herald passwd` adds, changes and removes users; the broker takes them.
#[tokio::test]
async fn herald_passwd_writes_users_the_broker_takes() {
    let Some((_, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    herald_passwd(&file, &["carol"], b"first\n").await;
    herald_passwd(&file, &["dave"], b"other\n").await;
    herald_passwd(&file, &["carol"], b"second\n").await;
    herald_passwd(&file, &["dave", "--delete"], b"").await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("carol:$7$"), "{text}");

    let herald = Process::start(dir.path(), "[auth]\npassword_file = \"passwd\"\n");
    assert!(publish_as(&pub_tool, &herald, Some(("carol", "second"))).await);
    assert!(!publish_as(&pub_tool, &herald, Some(("carol", "first"))).await);
    assert!(!publish_as(&pub_tool, &herald, Some(("dave", "other"))).await);
}

/// SIGHUP reads the password file again: a user removed from it cannot log in any
/// more, one added can, and a broken file leaves the users read before.
#[tokio::test]
async fn sighup_reloads_the_password_file() {
    let Some((_, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    herald_passwd(&file, &["carol"], b"carols\n").await;
    herald_passwd(&file, &["dave"], b"daves\n").await;
    let mut herald = Process::start(dir.path(), "[auth]\npassword_file = \"passwd\"\n");
    assert!(publish_as(&pub_tool, &herald, Some(("dave", "daves"))).await);

    herald_passwd(&file, &["dave", "--delete"], b"").await;
    herald_passwd(&file, &["erin"], b"erins\n").await;
    herald.signal("HUP");
    herald.wait_for_log("password file reloaded");
    assert!(!publish_as(&pub_tool, &herald, Some(("dave", "daves"))).await);
    assert!(publish_as(&pub_tool, &herald, Some(("erin", "erins"))).await);
    assert!(publish_as(&pub_tool, &herald, Some(("carol", "carols"))).await);

    std::fs::write(&file, "broken\n").unwrap();
    herald.signal("HUP");
    herald.wait_for_log("password file not reloaded");
    assert!(publish_as(&pub_tool, &herald, Some(("erin", "erins"))).await);
    herald.signal("TERM");
    herald.wait_exit();
}

/// After three failed logins from one address, each further refusal comes later
/// (200 ms, then 400, 800…); a good login clears the count.
#[tokio::test]
async fn repeated_failures_from_one_address_are_slowed_down() {
    let Some((_, pub_tool)) = mosquitto_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(common::process::HERALD);
    command
        .arg("passwd")
        .arg(dir.path().join("passwd"))
        .arg("carol");
    run_tool(command, b"right\n").await;
    let mut herald = Process::start(dir.path(), "[auth]\npassword_file = \"passwd\"\n");
    for _ in 0..3 {
        assert!(!publish_as(&pub_tool, &herald, Some(("carol", "wrong"))).await);
    }
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert!(!publish_as(&pub_tool, &herald, Some(("carol", "wrong"))).await);
    }
    let slowed = started.elapsed();
    assert!(
        slowed >= std::time::Duration::from_millis(200 + 400 + 800),
        "refusals 4 to 6 took {slowed:?}"
    );
    herald.wait_for_log("repeated login failures");
    assert!(publish_as(&pub_tool, &herald, Some(("carol", "right"))).await);
    // Counted from zero again: no delay for the next failure.
    assert!(!publish_as(&pub_tool, &herald, Some(("carol", "wrong"))).await);
    herald.signal("TERM");
    herald.wait_exit();
}
