//! Who may connect: anonymous clients where allowed, and users of the password file.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::config::AuthConfig;
use crate::locks::{read, write};
use crate::passwd::PasswordFile;
use crate::protocol::ReasonCode;

pub struct Authenticator {
    allow_anonymous: bool,
    /// The password file's path and what was last read from it.
    passwords: Option<(PathBuf, RwLock<Arc<PasswordFile>>)>,
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

    /// Decides on a CONNECT's (or an HTTP request's) credentials. A client without a
    /// user name is anonymous. A user name is checked against the password file (on a
    /// blocking thread: hashing takes milliseconds); without one, it is accepted only
    /// where anonymous clients are, as Mosquitto does. `Err` carries the CONNACK reason
    /// code that refuses the client.
    pub async fn authenticate(
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

    /// Whether MQTT 5.0 enhanced authentication by `method` is available: the extension
    /// point for methods such as SCRAM. None is configured yet, so a client asking for
    /// one is refused with "bad authentication method".
    pub fn supports_method(&self, method: &str) -> bool {
        let _ = method;
        false
    }
}
