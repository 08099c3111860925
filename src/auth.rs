//! Who may connect: anonymous clients where allowed, and users of the password file.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::config::AuthConfig;
use crate::locks::{lock, read, write};
use crate::passwd::PasswordFile;
use crate::protocol::ReasonCode;

/// The first refusal after this many failed logins from one address is delayed…
const FREE_FAILURES: u32 = 3;
/// …by this, doubling with each further failure…
const FIRST_DELAY: Duration = Duration::from_millis(200);
/// …up to this.
const MOST_DELAY: Duration = Duration::from_secs(5);
/// An address's failures are forgotten this long after its last one.
const FAILURES_KEPT: Duration = Duration::from_secs(600);
/// Addresses with failures remembered at most.
const MAX_ADDRESSES: usize = 10_000;

pub struct Authenticator {
    allow_anonymous: bool,
    /// The password file's path and what was last read from it.
    passwords: Option<(PathBuf, RwLock<Arc<PasswordFile>>)>,
    /// Failed logins by address: how many, and the last one's time.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Authenticator {
    /// The rules of `config`, its password file read; an error names the file and line.
    pub fn new(config: &AuthConfig) -> Result<Authenticator, String> {
        let passwords = match &config.password_file {
            None => None,
            Some(path) => {
                let file = PasswordFile::load(path)?;
                Some((path.clone(), RwLock::new(Arc::new(file))))
            }
        };
        Ok(Authenticator {
            allow_anonymous: config.anonymous_allowed(),
            passwords,
            failures: Mutex::default(),
        })
    }

    /// Reads the password file again (SIGHUP), if there is one; `true` if it was read.
    /// Every later check uses it; connected clients stay. On an error the users read
    /// before stay.
    pub fn reload(&self) -> Result<bool, String> {
        let Some((path, users)) = &self.passwords else {
            return Ok(false);
        };
        let fresh = PasswordFile::load(path)?;
        *write(users) = Arc::new(fresh);
        Ok(true)
    }

    /// Decides on the credentials of a CONNECT (or an HTTP request) from `peer`. A
    /// client without a user name is anonymous. A user name is checked against the
    /// password file (on a blocking thread: hashing takes milliseconds); without one, it
    /// is accepted only where anonymous clients are, as Mosquitto does. After a few
    /// failures from one address, each further refusal to it comes later, up to
    /// [`MOST_DELAY`]. `Err` carries the CONNACK reason code that refuses the client.
    pub async fn authenticate(
        &self,
        peer: IpAddr,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), ReasonCode> {
        let decided = self.decide(username, password).await;
        match decided {
            Ok(()) => {
                lock(&self.failures).remove(&peer);
            }
            Err(_) => {
                if let Some(delay) = self.failed(peer) {
                    tokio::time::sleep(delay).await;
                }
            }
        }
        decided
    }

    async fn decide(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), ReasonCode> {
        let (Some(user), Some(passwords)) = (username, &self.passwords) else {
            return match (username, self.allow_anonymous) {
                (_, true) => Ok(()),
                (None, false) => Err(ReasonCode::NOT_AUTHORIZED),
                (Some(_), false) => Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            };
        };
        let (passwords, user) = (read(&passwords.1).clone(), user.to_string());
        let password = password.unwrap_or_default().to_vec();
        let verified = tokio::task::spawn_blocking(move || passwords.verify(&user, &password))
            .await
            .unwrap_or(false);
        if verified {
            Ok(())
        } else {
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        }
    }

    /// Counts a failed login from `peer`; how long its refusal should wait.
    fn failed(&self, peer: IpAddr) -> Option<Duration> {
        metrics::counter!(crate::telemetry::AUTH_FAILURES).increment(1);
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&peer) {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FAILURES_KEPT);
            if failures.len() >= MAX_ADDRESSES {
                // Under a flood from many addresses: start again rather than grow.
                failures.clear();
            }
        }
        let entry = failures.entry(peer).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURES_KEPT {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.1 = now;
        let beyond = entry.0.checked_sub(FREE_FAILURES + 1)?;
        if beyond == 0 {
            warn!(%peer, failures = entry.0, "repeated login failures; refusals to this address are slowed down");
        }
        let delay = FIRST_DELAY.saturating_mul(1u32 << beyond.min(8));
        Some(delay.min(MOST_DELAY))
    }

    /// Whether MQTT 5.0 enhanced authentication by `method` is available: the extension
    /// point for methods such as SCRAM. None is configured yet, so a client asking for
    /// one is refused with "bad authentication method".
    pub fn supports_method(&self, method: &str) -> bool {
        let _ = method;
        false
    }
}
