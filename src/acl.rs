//! What a client may read and write: the ACL file, in Mosquitto's syntax.
//!
//! ```text
//! # Lines before any `user` apply to anonymous clients.
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! # Patterns apply to every client, %u being its user name and %c its client id.
//! pattern write devices/%c/state
//! ```
//!
//! A topic line without an access is `readwrite`. `deny` wins over any grant. A
//! pattern naming `%u` does not apply to anonymous clients, nor one naming `%c` to web
//! readers (they have no client id); nor does a pattern apply where the value put in
//! would contain `/`, `+` or `#`, which would widen it to other clients' topics.
//!
//! Unlike Mosquitto, which accepts every subscription and filters what it delivers, a
//! SUBSCRIBE is refused unless the client may read the whole filter (a read grant
//! covers it, and no deny does): a client is told at once that it will not receive.
//! Deliveries are checked too, against grants and denies that cover part of a filter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytestring::ByteString;

use crate::config::AuthConfig;
use crate::locks::{read, write};
use crate::topic::{TopicFilter, TopicName};

/// What one rule allows, or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// A `topic` or `pattern` line.
#[derive(Debug, Clone)]
struct Rule {
    access: Access,
    filter: String,
}

/// The rules of an ACL file.
#[derive(Debug, Default)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl AclFile {
    pub fn load(path: &Path) -> Result<AclFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("ACL file {}: {e}", path.display()))?;
        AclFile::parse(&text).map_err(|e| format!("ACL file {}: {e}", path.display()))
    }

    /// Parses the file's text; an error names the line.
    pub fn parse(text: &str) -> Result<AclFile, String> {
        let mut file = AclFile::default();
        let mut user: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |what: String| format!("line {}: {what}", n + 1);
            let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" if !rest.is_empty() => {
                    file.users.entry(rest.to_string()).or_default();
                    user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    let rule = Rule::parse(rest, keyword == "pattern").map_err(at)?;
                    let rules = match (keyword, &user) {
                        ("pattern", _) => &mut file.patterns,
                        (_, None) => &mut file.anonymous,
                        (_, Some(user)) => file.users.entry(user.clone()).or_default(),
                    };
                    rules.push(rule);
                }
                _ => {
                    return Err(at(format!(
                        "expected `user NAME`, `topic [ACCESS] FILTER` or `pattern [ACCESS] FILTER`, not {line:?}"
                    )))
                }
            }
        }
        Ok(file)
    }

    /// The rules that apply to a client: its user's (the anonymous ones without a user
    /// name), then the patterns, filled in with `user` and `client`.
    fn grants(&self, user: Option<&str>, client: Option<&str>) -> Grants {
        let own = match user {
            Some(user) => self.users.get(user).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous,
        };
        let fixed = own.iter().map(|rule| (rule.access, rule.filter.clone()));
        let patterns = self.patterns.iter().filter_map(|rule| {
            let filled = fill(&rule.filter, user, client, rule.access)?;
            Some((rule.access, filled))
        });
        let rules = fixed
            .chain(patterns)
            .filter_map(|(access, filter)| {
                let filter = TopicFilter::new(ByteString::from(filter)).ok()?;
                Some((access, filter))
            })
            .collect();
        Grants { rules }
    }
}

impl Rule {
    /// `[read|write|readwrite|deny] FILTER`; the filter may hold spaces.
    fn parse(rest: &str, pattern: bool) -> Result<Rule, String> {
        let (first, after) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let access = match first {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "readwrite" => Some(Access::ReadWrite),
            "deny" => Some(Access::Deny),
            _ => None,
        };
        let (access, filter) = match access {
            Some(access) => (access, after.trim()),
            None => (Access::ReadWrite, rest),
        };
        if filter.is_empty() {
            return Err("a topic filter is needed".into());
        }
        // A pattern is checked as it will be once filled in.
        let checked = if pattern {
            filter.replace("%u", "u").replace("%c", "c")
        } else {
            filter.to_string()
        };
        TopicFilter::new(ByteString::from(checked)).map_err(|e| format!("{filter:?}: {e}"))?;
        Ok(Rule {
            access,
            filter: filter.to_string(),
        })
    }
}

/// `pattern` with `%u` and `%c` replaced, in one pass (a value holding `%c` stays as
/// it is). A value that is missing, empty, or would reach beyond one level (`/`, `+`,
/// `#`) is not put in: a grant does not apply then (`None`), and a deny applies to
/// every value, the level holding the placeholder becoming `+`.
fn fill(pattern: &str, user: Option<&str>, client: Option<&str>, access: Access) -> Option<String> {
    fn usable(value: Option<&str>) -> Option<&str> {
        value.filter(|v| !v.is_empty() && !v.contains(['/', '+', '#']))
    }
    let (user, client) = (usable(user), usable(client));
    let mut levels = Vec::new();
    for level in pattern.split('/') {
        let (mut filled, mut rest, mut unusable) = (String::new(), level, false);
        while let Some(at) = rest.find('%') {
            filled.push_str(&rest[..at]);
            let value = match rest.get(at..at + 2) {
                Some("%u") => Some(user),
                Some("%c") => Some(client),
                _ => None,
            };
            match value {
                Some(value) => {
                    filled.push_str(value.unwrap_or_default());
                    unusable |= value.is_none();
                    rest = &rest[at + 2..];
                }
                None => {
                    filled.push('%');
                    rest = &rest[at + 1..];
                }
            }
        }
        filled.push_str(rest);
        if unusable {
            if access != Access::Deny {
                return None;
            }
            filled = "+".to_string();
        }
        levels.push(filled);
    }
    Some(levels.join("/"))
}

/// The rules one client is held to.
#[derive(Debug)]
pub struct Grants {
    rules: Vec<(Access, TopicFilter)>,
}

impl Grants {
    pub fn may_read(&self, topic: &TopicName) -> bool {
        self.may(topic, Access::reads)
    }

    pub fn may_write(&self, topic: &TopicName) -> bool {
        self.may(topic, Access::writes)
    }

    /// One pass over the rules: a matching deny refuses, else a matching grant allows.
    fn may(&self, topic: &TopicName, grants: fn(Access) -> bool) -> bool {
        let mut granted = false;
        for (access, filter) in &self.rules {
            if (*access == Access::Deny || !granted && grants(*access)) && filter.matches(topic) {
                if *access == Access::Deny {
                    return false;
                }
                granted = true;
            }
        }
        granted
    }

    /// Whether a subscription to `filter` (a shared one: to its inner filter) may be
    /// made: a read grant covers it and no deny does.
    pub fn may_subscribe(&self, filter: &TopicFilter) -> bool {
        let inner = filter.share().map_or(filter.as_str(), |(_, inner)| inner);
        let covering = || {
            self.rules
                .iter()
                .filter(|(_, rule)| covers(rule.as_str(), inner))
        };
        !covering().any(|(access, _)| *access == Access::Deny)
            && covering().any(|(access, _)| access.reads())
    }
}

/// Whether every topic `filter` matches is matched by `rule` too.
fn covers(rule: &str, filter: &str) -> bool {
    if filter.starts_with('$') && rule.starts_with(['+', '#']) {
        return false;
    }
    let (mut rule, mut filter) = (rule.split('/'), filter.split('/'));
    loop {
        match (rule.next(), filter.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(r), Some(f)) if r == f => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The ACL file of the configuration, if there is one, read again on reload.
pub struct AccessControl {
    file: Option<(PathBuf, RwLock<Arc<AclFile>>)>,
    /// Counts the reloads: grants computed before one are computed again.
    generation: AtomicU64,
}

impl AccessControl {
    /// The rules of `config`'s ACL file; without one, everyone may do anything its
    /// login allows. An error names the file and line.
    pub fn new(config: &AuthConfig) -> Result<AccessControl, String> {
        let file = match &config.acl_file {
            None => None,
            Some(path) => Some((path.clone(), RwLock::new(Arc::new(AclFile::load(path)?)))),
        };
        Ok(AccessControl {
            file,
            generation: AtomicU64::new(0),
        })
    }

    /// Reads the ACL file again (SIGHUP), if there is one; `true` if it was read. On an
    /// error the rules read before stay.
    pub fn reload(&self) -> Result<bool, String> {
        let Some((path, rules)) = &self.file else {
            return Ok(false);
        };
        let fresh = AclFile::load(path)?;
        *write(rules) = Arc::new(fresh);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(true)
    }

    /// What a client logged in as `user` (none: anonymous) with `client` as its id is
    /// allowed, to be kept up to date across reloads with [`Permit::refresh`]; `None`
    /// without an ACL file.
    pub fn permit(
        self: &Arc<Self>,
        user: Option<&str>,
        client: Option<&str>,
    ) -> Option<Box<Permit>> {
        self.file.as_ref()?;
        let (user, client) = (user.map(ByteString::from), client.map(ByteString::from));
        let (generation, grants) = self.compute(user.as_deref(), client.as_deref());
        Some(Box::new(Permit {
            access: self.clone(),
            user,
            client,
            generation,
            grants,
        }))
    }

    fn compute(&self, user: Option<&str>, client: Option<&str>) -> (u64, Arc<Grants>) {
        let generation = self.generation.load(Ordering::Acquire);
        let grants = match &self.file {
            Some((_, file)) => read(file).grants(user, client),
            None => Grants { rules: Vec::new() },
        };
        (generation, Arc::new(grants))
    }
}

/// One client's grants, and who they were computed for.
pub struct Permit {
    access: Arc<AccessControl>,
    user: Option<ByteString>,
    client: Option<ByteString>,
    /// The reload the grants were computed after.
    generation: u64,
    grants: Arc<Grants>,
}

impl Permit {
    /// The grants as last computed (see [`Permit::refresh`]).
    pub fn grants(&self) -> &Arc<Grants> {
        &self.grants
    }

    /// Computes the grants again if the rules were reloaded since; the new ones if so.
    pub fn refresh(&mut self) -> Option<&Arc<Grants>> {
        if self.access.generation.load(Ordering::Acquire) == self.generation {
            return None;
        }
        (self.generation, self.grants) =
            (self.access).compute(self.user.as_deref(), self.client.as_deref());
        Some(&self.grants)
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &'static str) -> TopicName {
        TopicName::new(ByteString::from_static(s)).unwrap()
    }

    fn filter(s: &'static str) -> TopicFilter {
        TopicFilter::new(ByteString::from_static(s)).unwrap()
    }

    const FILE: &str = "\
# anonymous
topic read public/#

user alice
topic alice/#
topic deny alice/secret
topic write  shared/in box
user bob smith
topic read bob/+/x
pattern read devices/%c/#
pattern write users/%u/out
";

    #[test]
    fn rules_apply_to_their_user_and_patterns_to_everyone() {
        let file = AclFile::parse(FILE).unwrap();
        let alice = file.grants(Some("alice"), Some("a1"));
        assert!(alice.may_read(&topic("alice/x")) && alice.may_write(&topic("alice/x")));
        assert!(!alice.may_read(&topic("alice/secret")));
        assert!(!alice.may_write(&topic("alice/secret")));
        assert!(alice.may_write(&topic("shared/in box")));
        assert!(!alice.may_read(&topic("shared/in box")));
        assert!(!alice.may_read(&topic("public/x")));
        assert!(alice.may_read(&topic("devices/a1/t")));
        assert!(!alice.may_read(&topic("devices/a2/t")));
        assert!(alice.may_write(&topic("users/alice/out")));

        let bob = file.grants(Some("bob smith"), None);
        assert!(bob.may_read(&topic("bob/1/x")) && !bob.may_write(&topic("bob/1/x")));
        assert!(!bob.may_read(&topic("devices/a1/t")));

        let anonymous = file.grants(None, Some("anon"));
        assert!(anonymous.may_read(&topic("public/a/b")));
        assert!(!anonymous.may_write(&topic("public/a/b")));
        assert!(!anonymous.may_write(&topic("users//out")));

        let stranger = file.grants(Some("carol"), Some("c"));
        assert!(!stranger.may_read(&topic("public/a")));
    }

    #[test]
    fn deny_patterns_hold_whatever_the_name() {
        let file =
            AclFile::parse("topic read devices/#\npattern deny devices/%c/secret\n").unwrap();
        for client in [None, Some("x/y"), Some("+"), Some("")] {
            let grants = file.grants(None, client);
            assert!(!grants.may_read(&topic("devices/x/secret")), "{client:?}");
            assert!(grants.may_read(&topic("devices/x/open")), "{client:?}");
        }
        let grants = file.grants(None, Some("%u"));
        assert!(!grants.may_read(&topic("devices/%u/secret")));
        assert!(grants.may_read(&topic("devices/x/secret")));
        // A user name holding %c is taken as it is, not filled in again.
        let file = AclFile::parse("pattern read users/%u/#\n").unwrap();
        let grants = file.grants(Some("%c"), Some("bob"));
        assert!(!grants.may_read(&topic("users/bob/x")));
        assert!(grants.may_read(&topic("users/%c/x")));
    }

    #[test]
    fn patterns_do_not_widen_through_odd_names() {
        let file = AclFile::parse("pattern readwrite users/%u/#\n").unwrap();
        for user in ["a/b", "+", "#", ""] {
            let grants = file.grants(Some(user), None);
            assert!(!grants.may_read(&topic("users/a/b/c")), "{user:?}");
        }
    }

    #[test]
    fn a_subscription_needs_a_read_grant_covering_it_and_no_deny_covering_it() {
        let file = AclFile::parse(
            "topic read a/#\ntopic deny a/secret/#\ntopic read b/+/c\ntopic write w/#\n",
        )
        .unwrap();
        let grants = file.grants(None, None);
        for ok in ["a/#", "a", "a/+/x", "a/b", "b/x/c", "b/+/c", "$share/g/a/b"] {
            assert!(grants.may_subscribe(&filter(ok)), "{ok}");
        }
        for refused in [
            "#",
            "+/b",
            "a/secret",
            "a/secret/#",
            "b/#",
            "b/+/+",
            "w/x",
            "$share/g/#",
        ] {
            assert!(!grants.may_subscribe(&filter(refused)), "{refused}");
        }
    }

    #[test]
    fn wildcard_rules_keep_off_dollar_topics() {
        let grants = AclFile::parse("topic #\n").unwrap().grants(None, None);
        assert!(!grants.may_read(&topic("$SYS/x")));
        assert!(!grants.may_subscribe(&filter("$SYS/#")));
        assert!(grants.may_subscribe(&filter("x/#")));
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("topic read a/#\nfoo bar\n", "line 2"),
            ("user\n", "line 1"),
            ("\n\ntopic read a/#/b\n", "line 3"),
            ("topic read\n", "line 1"),
            ("pattern x%u+\n", "line 1"),
        ] {
            let err = AclFile::parse(text).unwrap_err();
            assert!(err.starts_with(line), "{text:?}: {err}");
        }
    }
}
