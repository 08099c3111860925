//! Command line: `<scenario> [--name value]...`. Every option has a default; an unknown
//! option is an error. `cargo bench` appends `--bench`, which is ignored.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub const USAGE: &str = "\
usage: loadgen <scenario> [--option value]...
scenarios: fan-in round-trip latency fan-out idle retained offline-queue relay
           sse-idle sse-fan-out (Herald's SSE readers, on --http-port)
options (default):
  --host 127.0.0.1   --port 1883       --pid PID (broker, to read its VmRSS/VmHWM)
  --qos 0|1|2        --payload 64      --window 16          --duration 5 (s)
  --publishers N     --subscribers N   --rate msg/s         --max N (messages per publisher)
  --connections 19000 --hold 5 (s)    --count 100000       --sessions 100  --messages 100
  --settle 0 (s: retained, memory again this long after clearing)
  --persistent 0|1 (fan-in: the subscriber keeps its session, clean session 0)
  --http-port 8080 (sse-*: the HTTP listener)";

const KNOWN: &[&str] = &[
    "host",
    "port",
    "pid",
    "qos",
    "payload",
    "window",
    "duration",
    "publishers",
    "subscribers",
    "rate",
    "max",
    "connections",
    "hold",
    "count",
    "sessions",
    "messages",
    "settle",
    "persistent",
    "http-port",
];

pub struct Args {
    pub scenario: String,
    values: HashMap<String, String>,
}

impl Args {
    pub fn parse(argv: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut scenario = None;
        let mut values = HashMap::new();
        let mut argv = argv.filter(|a| a != "--bench");
        while let Some(arg) = argv.next() {
            if let Some(name) = arg.strip_prefix("--") {
                if !KNOWN.contains(&name) {
                    return Err(format!("unknown option --{name}"));
                }
                let value = argv.next().ok_or(format!("--{name} needs a value"))?;
                values.insert(name.to_string(), value);
            } else if scenario.is_none() {
                scenario = Some(arg);
            } else {
                return Err(format!("unexpected argument {arg}"));
            }
        }
        Ok(Args {
            scenario: scenario.ok_or("no scenario given")?,
            values,
        })
    }

    pub fn num(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v}")),
        }
    }

    pub fn float(&self, name: &str, default: f64) -> Result<f64, String> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v}")),
        }
    }

    pub fn secs(&self, name: &str, default: f64) -> Result<Duration, String> {
        Ok(Duration::from_secs_f64(self.float(name, default)?))
    }

    pub fn qos(&self, default: u8) -> Result<u8, String> {
        match self.num("qos", default as u64)? {
            q @ 0..=2 => Ok(q as u8),
            q => Err(format!("--qos {q}: must be 0, 1 or 2")),
        }
    }

    pub fn pid(&self) -> Result<Option<u32>, String> {
        self.values
            .get("pid")
            .map(|v| v.parse().map_err(|_| format!("--pid: not a number: {v}")))
            .transpose()
    }

    pub fn addr(&self) -> Result<SocketAddr, String> {
        self.addr_of("port", 1883)
    }

    /// The HTTP listener, for the SSE scenarios.
    pub fn http_addr(&self) -> Result<SocketAddr, String> {
        self.addr_of("http-port", 8080)
    }

    fn addr_of(&self, option: &str, default: u64) -> Result<SocketAddr, String> {
        let host = self.values.get("host").map_or("127.0.0.1", |h| h.as_str());
        let port = self.num(option, default)?;
        (host, port as u16)
            .to_socket_addrs()
            .map_err(|e| format!("{host}:{port}: {e}"))?
            .next()
            .ok_or(format!("{host}: no address"))
    }
}
