//! The `herald` binary: configuration checks, exit codes, serving and graceful stop.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::process::{Process, HERALD};
use common::RawClient;
use mqttbytes::QoS;

fn herald(args: &[&str], dir: &Path) -> Output {
    Command::new(HERALD)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("herald runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    std::fs::write(dir.join(name), text).unwrap();
    name.to_string()
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "b.toml", "[mqtt]\nmax_qos = 1\n");
    let out = herald(&["check-config", &file], dir.path());
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("max_qos = 1"), "{printed}");
    // Defaults are filled in.
    assert!(printed.contains("max_inflight_messages = 20"), "{printed}");
    assert!(printed.contains("bind = \"127.0.0.1:1883\""), "{printed}");
}

#[test]
fn the_shipped_broker_toml_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = herald(&["check-config", "broker.toml"], root);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_bad_configuration_names_line_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[mqtt]\nmax_qos = 1\nmax_qoss = 2\n", "line 3", "max_qoss"),
        (
            "[[listeners]]\nprotocol = \"mqtt\"\nbind = \"nowhere\"\n",
            "line 3",
            "bind",
        ),
        ("[storage]\nsync = \"sometimes\"\n", "line 2", "sometimes"),
        (
            "[mqtt]\nmax_inflight_messages = 0\n",
            "line 2",
            "max_inflight_messages",
        ),
    ];
    for (text, line, key) in cases {
        let file = write(dir.path(), "bad.toml", text);
        for args in [vec!["check-config", &file], vec!["--config", &file]] {
            let out = herald(&args, dir.path());
            assert_eq!(out.status.code(), Some(2), "{args:?} on {text:?}: {out:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(line) && err.contains(key), "{text:?}: {err}");
        }
    }
    let out = herald(&["--config", "missing.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_clients_and_stops_gracefully_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut herald = Process::start(dir.path(), "[storage]\npersistence = false\n");
        let mut sub = RawClient::open(herald.addr).await;
        sub.connect("cli-sub", true).await;
        sub.subscribe(1, "t", QoS::AtLeastOnce).await;
        let mut publisher = RawClient::open(herald.addr).await;
        publisher.connect("cli-pub", true).await;
        publisher
            .publish("t", QoS::AtLeastOnce, b"x", false, 1)
            .await;
        assert_eq!(&sub.expect_publish().await.payload[..], b"x");

        herald.signal(signal);
        // Connections are closed by the broker, then it exits 0.
        sub.expect_closed().await;
        assert_eq!(herald.wait_exit(), Some(0), "exit code after SIG{signal}");
        herald.wait_for_log("broker stopped");
    }
}
