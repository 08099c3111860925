//! External tools some tests need: skipped loudly on a developer's machine without
//! them, a failure in CI (`CI=true`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::timeout;

use super::WAIT;

/// The path of `name` on PATH, or `None` (after a loud message) when it is missing
/// outside CI. Panics when it is missing and `CI=true`. `remedy` says how to get it.
pub fn require(name: &str, remedy: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        unavailable(name, remedy);
    }
    found
}

/// Reports a missing test tool: a failure in CI, a loud skip elsewhere (written to
/// stderr directly, past the test harness's capture, so it shows even on success).
pub fn unavailable(what: &str, remedy: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!ci, "{what} is required in CI but is missing; {remedy}");
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!! SKIPPED: {what} is missing; {remedy} to run this test !!!!\n"
    );
}

/// mosquitto_sub and mosquitto_pub, or `None` (loudly) where they are missing.
pub fn mosquitto_tools() -> Option<(PathBuf, PathBuf)> {
    const REMEDY: &str = "install Debian's mosquitto-clients";
    Some((
        require("mosquitto_sub", REMEDY)?,
        require("mosquitto_pub", REMEDY)?,
    ))
}

/// A mosquitto client tool pointed at the broker listening on `addr`.
pub fn mosquitto(tool: &Path, addr: SocketAddr) -> Command {
    let mut command = Command::new(tool);
    command
        .args(["-h", "127.0.0.1", "-p"])
        .arg(addr.port().to_string())
        .kill_on_drop(true);
    command
}

/// Runs a tool to completion within the wait, `stdin` written to it; returns stdout.
pub async fn run_tool(mut command: Command, stdin: &[u8]) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tool runs");
    let mut input = child.stdin.take().expect("stdin piped");
    input.write_all(stdin).await.expect("stdin written");
    drop(input);
    let output = timeout(WAIT, child.wait_with_output())
        .await
        .expect("tool finishes in time")
        .expect("tool runs");
    assert!(output.status.success(), "{command:?} failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
