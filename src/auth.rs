//! Who may connect. Password files and ACLs plug in here.

use crate::config::AuthConfig;
use crate::protocol::ReasonCode;

pub struct Authenticator {
    allow_anonymous: bool,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Authenticator {
        Authenticator {
            allow_anonymous: config.allow_anonymous,
        }
    }

    /// Decides on a CONNECT's credentials. A client without a user name is anonymous.
    /// With no password file to check against, a user name is accepted only where
    /// anonymous clients are, as Mosquitto does; otherwise it cannot be verified.
    /// `Err` carries the CONNACK reason code that refuses the client.
    pub fn check(&self, username: Option<&str>) -> Result<(), ReasonCode> {
        match (username, self.allow_anonymous) {
            (_, true) => Ok(()),
            (None, false) => Err(ReasonCode::NOT_AUTHORIZED),
            (Some(_), false) => Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
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
