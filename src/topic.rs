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
}

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
        let mut levels = s.split('/').peekable();
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

    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether this filter matches `topic`, by the rules of MQTT 4.7.
    pub fn matches(&self, topic: &TopicName) -> bool {
        if topic.is_system() && self.0.starts_with(['+', '#']) {
            return false;
        }
        let mut filter = self.levels();
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
        for bad in ["", "a#", "#/a", "a/#/b", "a+", "+a/b", "a/b+", "##"] {
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
        ];
        for (f, n, want) in cases {
            assert_eq!(filter(f).unwrap().matches(&name(n)), want, "{f} vs {n}");
        }
    }
}
