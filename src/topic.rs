//! Topic names and topic filters, validated once when they enter the broker.

use std::fmt;

use bytestring::ByteString;

/// A topic name a message is published to: at least one character, no wildcards.
/// (UTF-8 validity and the absence of U+0000 are checked when the string is decoded.)
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

/// A subscription's topic filter: `+` fills a whole level, `#` is last and fills one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(ByteString);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic name contains a wildcard character")]
    WildcardInName,
    #[error("'#' must be the last level of a filter and stand alone in it")]
    BadMultiLevelWildcard,
    #[error("'+' must fill a whole level of a filter")]
    BadSingleLevelWildcard,
    #[error("topic contains U+0000")]
    Null,
    #[error("a shared subscription is $share/{{group}}/{{filter}}, with a group name free of '/', '+' and '#'")]
    BadShare,
}

/// The prefix of a shared subscription's filter.
const SHARE_PREFIX: &str = "$share/";

impl TopicName {
    pub fn new(s: ByteString) -> Result<Self, TopicError> {
        if s.is_empty() {
            return Err(TopicError::Empty);
        }
        if s.contains('\0') {
            return Err(TopicError::Null);
        }
        if s.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(s))
    }

    /// The empty placeholder of a PUBLISH that names its topic by alias, until the
    /// decoder resolves it: never seen outside the codec.
    pub(crate) fn unresolved_alias() -> TopicName {
        TopicName(ByteString::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// The same name in an allocation of its own.
    pub fn detached(&self) -> TopicName {
        TopicName(ByteString::from(self.as_str()))
    }

    /// Topics beginning with `$` are kept from filters that start with a wildcard.
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl TopicFilter {
    pub fn new(s: ByteString) -> Result<Self, TopicError> {
        if s.is_empty() {
            return Err(TopicError::Empty);
        }
        if s.contains('\0') {
            return Err(TopicError::Null);
        }
        let filter = match s.strip_prefix(SHARE_PREFIX) {
            Some(share) => match share.split_once('/') {
                Some((group, filter))
                    if !group.is_empty() && !group.contains(['+', '#']) && !filter.is_empty() =>
                {
                    filter
                }
                _ => return Err(TopicError::BadShare),
            },
            None => &s,
        };
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level.contains('#') && (level != "#" || levels.peek().is_some()) {
                return Err(TopicError::BadMultiLevelWildcard);
            }
            if level.contains('+') && level != "+" {
                return Err(TopicError::BadSingleLevelWildcard);
            }
        }
        Ok(TopicFilter(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels it matches topics by: a shared subscription's are those of its filter.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.share()
            .map_or(&*self.0, |(_, filter)| filter)
            .split('/')
    }

    /// For a shared subscription, `$share/{group}/{filter}`: its group and filter.
    pub fn share(&self) -> Option<(&str, &str)> {
        self.0.strip_prefix(SHARE_PREFIX)?.split_once('/')
    }

    /// Whether this filter matches `topic`, by the rules of MQTT 4.7.
    pub fn matches(&self, topic: &TopicName) -> bool {
        let mut filter = self.levels();
        if topic.is_system() && filter.clone().next().is_some_and(|l| l == "+" || l == "#") {
            return false;
        }
        let mut name = topic.levels();
        loop {
            match (filter.next(), name.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(f), Some(n)) if f == n => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

/// The number of levels in a topic name or filter.
pub fn level_count(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &'static str) -> Result<TopicFilter, TopicError> {
        TopicFilter::new(ByteString::from_static(s))
    }

    fn name(s: &'static str) -> TopicName {
        TopicName::new(ByteString::from_static(s)).unwrap()
    }

    #[test]
    fn filter_syntax() {
        for ok in [
            "#",
            "+",
            "a/#",
            "+/+",
            "/+",
            "a//b",
            "+/b/#",
            "sport/tennis/+",
        ] {
            assert!(filter(ok).is_ok(), "{ok}");
        }
        for ok in [
            "$share/g/#",
            "$share/g/a/+",
            "$share/g//",
            "$share",
            "$shared/a",
        ] {
            assert!(filter(ok).is_ok(), "{ok}");
        }
        assert_eq!(filter("$share/g/a/+").unwrap().share(), Some(("g", "a/+")));
        for bad in [
            "",
            "a#",
            "#/a",
            "a/#/b",
            "a+",
            "+a/b",
            "a/b+",
            "##",
            "$share/",
            "$share/g",
            "$share/g/",
            "$share//a",
            "$share/+/a",
            "$share/g#/a",
            "$share/g/a#",
        ] {
            assert!(filter(bad).is_err(), "{bad}");
        }
        assert!(TopicName::new(ByteString::from_static("a/+")).is_err());
        assert!(TopicName::new(ByteString::from_static("a/#")).is_err());
        assert!(TopicName::new(ByteString::from_static("")).is_err());
    }

    #[test]
    fn matching() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+/+", "/b", true),
            ("+", "/b", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("A/b", "a/b", false),
            ("$share/g/a/+", "a/b", true),
            ("$share/g/#", "$SYS/x", false),
        ];
        for (f, n, want) in cases {
            assert_eq!(filter(f).unwrap().matches(&name(n)), want, "{f} vs {n}");
        }
    }
}
