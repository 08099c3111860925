//! The password file: one `user:hash` a line, in Mosquitto's formats — `$7$` (PBKDF2
//! with HMAC-SHA512: `$7$iterations$salt$hash`, base64) as `mosquitto_passwd` writes
//! it and `herald passwd` too, and the older `$6$` (SHA-512 of password and salt).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::{digest, pbkdf2, rand::SecureRandom};

/// Iterations of the hashes `herald passwd` writes. Mosquitto writes 101; a stronger
/// count costs a few milliseconds a login, off the runtime's threads.
const ITERATIONS: u32 = 10_000;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;

/// How one user's password is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    Pbkdf2 {
        iterations: NonZeroU32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

impl PasswordHash {
    /// A fresh `$7$` hash of `password` with a random salt.
    pub fn new(password: &[u8]) -> Result<PasswordHash, String> {
        let mut salt = vec![0u8; SALT_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| "no randomness for a salt".to_string())?;
        let iterations = NonZeroU32::new(ITERATIONS).ok_or("zero iterations")?;
        let mut hash = vec![0u8; HASH_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            iterations,
            &salt,
            password,
            &mut hash,
        );
        Ok(PasswordHash::Pbkdf2 {
            iterations,
            salt,
            hash,
        })
    }

    /// Reads `$7$iterations$salt$hash` or `$6$salt$hash`.
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        let decode = |part: &str| BASE64.decode(part).map_err(|e| format!("bad base64: {e}"));
        let parts: Vec<&str> = text.split('$').collect();
        match parts.as_slice() {
            ["", "7", iterations, salt, hash] => {
                let iterations = iterations
                    .parse::<NonZeroU32>()
                    .map_err(|_| format!("bad iteration count {iterations:?}"))?;
                Ok(PasswordHash::Pbkdf2 {
                    iterations,
                    salt: decode(salt)?,
                    hash: decode(hash)?,
                })
            }
            ["", "6", salt, hash] => Ok(PasswordHash::Sha512 {
                salt: decode(salt)?,
                hash: decode(hash)?,
            }),
            _ => Err("not a $7$ or $6$ password hash".into()),
        }
    }

    /// Whether `password` is this one, in time that does not depend on where they
    /// differ.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA512,
                *iterations,
                salt,
                password,
                hash,
            )
            .is_ok(),
            PasswordHash::Sha512 { salt, hash } => {
                let mut context = digest::Context::new(&digest::SHA512);
                context.update(password);
                context.update(salt);
                let computed = context.finish();
                let computed = computed.as_ref();
                computed.len() == hash.len()
                    && computed
                        .iter()
                        .zip(hash)
                        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                        == 0
            }
        }
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                BASE64.encode(salt),
                BASE64.encode(hash)
            ),
            PasswordHash::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
        }
    }
}

/// Users and their password hashes, in the file's order.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: Vec<(String, PasswordHash)>,
    index: HashMap<String, usize>,
}

impl PasswordFile {
    /// Reads `path`; an error names the file and the line.
    pub fn load(path: &Path) -> Result<PasswordFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
        PasswordFile::parse(&text).map_err(|e| format!("password file {}: {e}", path.display()))
    }

    /// Lines `user:hash`; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<PasswordFile, String> {
        let mut file = PasswordFile::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: not user:hash", number + 1))?;
            let hash =
                PasswordHash::parse(hash).map_err(|e| format!("line {}: {e}", number + 1))?;
            file.set(user, hash);
        }
        Ok(file)
    }

    /// Adds `user`, or replaces their hash.
    pub fn set(&mut self, user: &str, hash: PasswordHash) {
        match self.index.get(user) {
            Some(&i) => self.users[i].1 = hash,
            None => {
                self.index.insert(user.to_string(), self.users.len());
                self.users.push((user.to_string(), hash));
            }
        }
    }

    /// Removes `user`; false if there was none.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(i) = self.index.remove(user) else {
            return false;
        };
        self.users.remove(i);
        for position in self.index.values_mut() {
            if *position > i {
                *position -= 1;
            }
        }
        true
    }

    /// Whether `user` exists and `password` is theirs. An unknown user costs a check
    /// against a hash of the same kind, so that timing does not tell whether a user
    /// exists.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.index.get(user) {
            Some(&i) => self.users[i].1.verify(password),
            None => {
                if let Some(hash) = self.decoy() {
                    let _ = hash.verify(password);
                }
                false
            }
        }
    }

    /// The first user's hash: what an unknown user is checked against.
    fn decoy(&self) -> Option<&PasswordHash> {
        self.users.first().map(|(_, hash)| hash)
    }
}

impl std::fmt::Display for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (user, hash) in &self.users {
            writeln!(f, "{user}:{hash}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Debian's `mosquitto_passwd -b` (2.0.11): alice / secret.
    const MOSQUITTO_LINE: &str = "alice:$7$101$IBaggHepFTpeU4ze$4OwdNuKEypWjics6WpIRGpTh/SDmftN8vSeGVFsi6yvpV5llNIEaWCWYqLpluA7i6WeP6PLeNLK9BZ7f1xo9AA==";

    #[test]
    fn mosquitto_lines_verify_as_they_are() {
        let file = PasswordFile::parse(&format!("# users\n\n{MOSQUITTO_LINE}\n")).unwrap();
        assert!(file.verify("alice", b"secret"));
        assert!(!file.verify("alice", b"Secret"));
        assert!(!file.verify("bob", b"secret"));
    }

    #[test]
    fn hashes_written_read_back_and_verify() {
        let mut file = PasswordFile::default();
        file.set("carol", PasswordHash::new(b"pw1").unwrap());
        file.set("dave", PasswordHash::new(b"pw2").unwrap());
        let again = PasswordFile::parse(&file.to_string()).unwrap();
        assert!(again.verify("carol", b"pw1") && again.verify("dave", b"pw2"));
        let mut again = again;
        assert!(again.remove("carol"));
        assert!(!again.verify("carol", b"pw1"));
        assert!(again.verify("dave", b"pw2"));
    }

    #[test]
    fn bad_lines_are_errors_that_name_the_line() {
        let err = PasswordFile::parse("ok:$6$c2FsdA==$aGFzaA==\nbroken\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let err = PasswordFile::parse("x:$7$0$c2FsdA==$aGFzaA==\n").unwrap_err();
        assert!(err.contains("iteration"), "{err}");
        let err = PasswordFile::parse("x:plaintext\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }
}
