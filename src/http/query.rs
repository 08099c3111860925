//! Query parameters of the HTTP API, each checked before anything reaches the broker.

use bytestring::ByteString;
use hyper::StatusCode;

use super::Refusal;
use crate::broker::Broker;
use crate::topic::TopicFilter;

/// Most parameters one request may carry.
const MAX_PARAMS: usize = 64;

/// Most topic filters one reader may ask for.
pub const MAX_FILTERS: usize = 32;

pub struct Query(Vec<(String, String)>);

impl Query {
    /// The query of `uri`; a request with more than [`MAX_PARAMS`] parameters is refused.
    pub fn of(uri: &hyper::Uri) -> Result<Query, Refusal> {
        let pairs = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes());
        let pairs: Vec<(String, String)> = pairs
            .take(MAX_PARAMS + 1)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.len() > MAX_PARAMS {
            return Err(bad(format!("more than {MAX_PARAMS} query parameters")));
        }
        Ok(Query(pairs))
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The parameter `name`, given at most once.
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, Refusal> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad(format!("{name} is given more than once")));
        }
        Ok(first)
    }

    /// `true`/`false` (or `1`/`0`), `default` when absent.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, Refusal> {
        match self.single(name)? {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(bad(format!("{name} must be true or false, not {other:?}"))),
        }
    }

    /// A whole number, if given.
    pub fn number(&self, name: &str) -> Result<Option<u64>, Refusal> {
        self.single(name)?
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| bad(format!("{name} must be a whole number, not {value:?}")))
            })
            .transpose()
    }

    /// The `topic` filters of a reader: at least one, at most [`MAX_FILTERS`], each a
    /// valid filter within the broker's depth limit and not a shared subscription.
    pub fn filters(&self, broker: &Broker) -> Result<Vec<TopicFilter>, Refusal> {
        let raw: Vec<&str> = self.all("topic").collect();
        if raw.is_empty() {
            return Err(bad("at least one topic filter is needed: ?topic=a/b/#"));
        }
        if raw.len() > MAX_FILTERS {
            return Err(bad(format!("at most {MAX_FILTERS} topic filters")));
        }
        let mut raw = raw;
        // A filter given twice is one filter.
        raw.sort_unstable();
        raw.dedup();
        raw.into_iter()
            .map(|raw| {
                let filter = TopicFilter::new(ByteString::from(raw))
                    .map_err(|e| bad(format!("topic filter {raw:?}: {e}")))?;
                if filter.share().is_some() {
                    return Err(bad(format!(
                        "topic filter {raw:?}: $share is for MQTT clients"
                    )));
                }
                if let Some(why) = broker.topic_refusal(raw) {
                    return Err(bad(format!("topic filter {raw:?} is {why}")));
                }
                Ok(filter)
            })
            .collect()
    }
}

/// A 400 refusal saying `what`.
pub fn bad(what: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, what.into())
}
