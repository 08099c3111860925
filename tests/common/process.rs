//! The `herald` binary run as a child process, on an ephemeral loopback port: for tests
//! of what only a real process shows (signals, exit codes, a kill -9, files on disk).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::WAIT;

pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// A running `herald` process, stopped by signal in the test (and killed when dropped).
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Process {
    /// Starts herald in `dir` with a broker.toml of one loopback listener on an
    /// ephemeral port and `rest`; the bound address is read from its log.
    pub fn start(dir: &Path, rest: &str) -> Process {
        let mut process = Process::spawn(dir, rest);
        process.listening();
        process
    }

    /// Waits until herald listens, and notes the address.
    pub fn listening(&mut self) {
        self.addr = self.wait_for_addr("mqtt listener on ");
    }

    /// The address at the end of the first log line from now on containing `needle`
    /// (`"mqtts listener on "`…).
    pub fn wait_for_addr(&mut self, needle: &str) -> SocketAddr {
        let line = self.wait_for_log(needle);
        let addr = line.rsplit(' ').next().unwrap_or_default();
        addr.parse().expect("address in log")
    }

    /// Starts herald as [`Process::start`] does, without waiting for it to listen.
    pub fn spawn(dir: &Path, rest: &str) -> Process {
        let config = format!("[[listeners]]\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n{rest}");
        std::fs::write(dir.join("broker.toml"), config).unwrap();
        let mut child = Command::new(HERALD)
            .args(["--config", "broker.toml"])
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald starts");
        let stderr = child.stderr.take().unwrap();
        let (lines, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        Process {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
        }
    }

    /// The first log line from now on containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("herald did not log {needle:?} in time"),
            }
        }
    }

    /// Sends signal `name` (TERM, INT, KILL…).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit code, once the process has exited (`None` if a signal ended it).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("herald did not exit in time");
    }

    /// Everything logged so far that was not yet read.
    pub fn drain_log(&mut self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
