//! Who may connect. Password files and ACLs plug in here.

use crate::config::AuthConfig;
use crate::protocol::ConnectReturnCode;

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
    pub fn check(&self, username: Option<&str>) -> ConnectReturnCode {
        match (username, self.allow_anonymous) {
            (_, true) => ConnectReturnCode::Accepted,
            (None, false) => ConnectReturnCode::NotAuthorized,
            (Some(_), false) => ConnectReturnCode::BadUserNameOrPassword,
        }
    }
}
