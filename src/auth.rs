//! Who may connect: anonymous clients where allowed, and users of the password file.

use std::sync::Arc;

use crate::config::AuthConfig;
use crate::passwd::PasswordFile;
use crate::protocol::ReasonCode;

pub struct Authenticator {
    allow_anonymous: bool,
    passwords: Option<Arc<PasswordFile>>,
}

impl Authenticator {
    /// The rules of `config`, its password file read; an error names the file and line.
    pub fn new(config: &AuthConfig) -> Result<Authenticator, String> {
        let passwords = config
            .password_file
            .as_deref()
            .map(PasswordFile::load)
            .transpose()?;
        Ok(Authenticator {
            allow_anonymous: config.anonymous_allowed(),
            passwords: passwords.map(Arc::new),
        })
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
        let (passwords, user) = (passwords.clone(), user.to_string());
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
