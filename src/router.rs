//! The subscription tree shared by all connections: which sessions want a topic.

use std::collections::HashMap;
use std::str::Split;
use std::sync::Arc;

use bytestring::ByteString;

use crate::level_tree::Node;
use crate::protocol::QoS;
use crate::session::Session;
use crate::topic::{TopicFilter, TopicName};

/// One session's subscription at a node of the tree.
#[derive(Clone)]
pub struct Subscriber {
    pub session: Arc<Session>,
    pub qos: QoS,
}

/// The sessions subscribed with one filter, by client id.
type Subscribers = HashMap<ByteString, Subscriber>;

/// A trie of topic filters, one level a node, with `+` and `#` as ordinary keys.
#[derive(Default)]
pub struct SubscriptionTree {
    root: Node<Subscribers>,
}

impl SubscriptionTree {
    /// Adds or replaces the subscription of `subscriber`'s session to `filter`.
    pub fn insert(&mut self, filter: &TopicFilter, subscriber: Subscriber) {
        let client_id = subscriber.session.client_id.clone();
        self.root
            .entry(filter.levels())
            .insert(client_id, subscriber);
    }

    /// Removes `client_id`'s subscription to `filter`; true if there was one.
    pub fn remove(&mut self, filter: &TopicFilter, client_id: &str) -> bool {
        let levels: Vec<&str> = filter.levels().collect();
        self.root
            .update(
                &levels,
                |subs| subs.remove(client_id).is_some(),
                &HashMap::is_empty,
            )
            .unwrap_or(false)
    }

    /// Every session subscribed to a filter matching `topic`, once each, with the
    /// highest QoS among its matching subscriptions.
    pub fn matches(&self, topic: &TopicName) -> Vec<Subscriber> {
        let mut found: Vec<Subscriber> = Vec::new();
        collect(&self.root, topic.levels(), topic.is_system(), &mut |node| {
            found.extend(node.value.values().cloned())
        });
        if found.len() > 1 {
            // One delivery a session. By session identity, not client id: a session that
            // was replaced under the same client id must never shadow the live one.
            found.sort_unstable_by_key(|s| Arc::as_ptr(&s.session));
            found.dedup_by(|later, kept| {
                let same = Arc::ptr_eq(&later.session, &kept.session);
                if same {
                    kept.qos = kept.qos.max(later.qos);
                }
                same
            });
        }
        found
    }
}

/// Walks the tree along the topic's remaining `levels`; the iterator is cloned where the
/// walk branches, so a publish allocates nothing to split its topic.
fn collect(
    node: &Node<Subscribers>,
    mut levels: Split<'_, char>,
    system_root: bool,
    add: &mut impl FnMut(&Node<Subscribers>),
) {
    // `system_root`: at the first level of a `$` topic, where wildcards do not match.
    if !system_root {
        if let Some(hash) = node.child("#") {
            add(hash);
        }
    }
    let Some(level) = levels.next() else {
        add(node);
        return;
    };
    if !system_root {
        if let Some(plus) = node.child("+") {
            collect(plus, levels.clone(), false, add);
        }
    }
    if let Some(child) = node.child(level) {
        collect(child, levels, false, add);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::retained::RetainedStore;

    const FILTERS: &[&str] = &[
        "#", "+", "a", "a/#", "a/+", "a/b", "a/b/c", "+/b", "+/+", "+/#", "/+", "/#", "a//b",
        "a/+/c", "$SYS/#", "$SYS/+", "+/SYS", "a/b/#", "b/#",
    ];
    const TOPICS: &[&str] = &[
        "a", "a/b", "a/b/c", "a/c", "b", "b/b", "/", "/a", "a//b", "a/x/c", "$SYS/x", "$SYS",
        "x/SYS", "a/b/c/d",
    ];

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(ByteString::from(s)).unwrap()
    }

    fn topic(s: &str) -> TopicName {
        TopicName::new(ByteString::from(s)).unwrap()
    }

    /// The trie agrees with matching each filter on its own, for every pair.
    #[test]
    fn trie_matches_like_the_filter_rules() {
        let mut tree = SubscriptionTree::default();
        for (i, f) in FILTERS.iter().enumerate() {
            let session = Arc::new(Session::new(ByteString::from(format!("c{i}")), false));
            tree.insert(
                &filter(f),
                Subscriber {
                    session,
                    qos: QoS::AtMostOnce,
                },
            );
        }
        for t in TOPICS {
            let mut got: Vec<String> = tree
                .matches(&topic(t))
                .into_iter()
                .map(|s| s.session.client_id.to_string())
                .collect();
            got.sort();
            let mut want: Vec<String> = FILTERS
                .iter()
                .enumerate()
                .filter(|(_, f)| filter(f).matches(&topic(t)))
                .map(|(i, _)| format!("c{i}"))
                .collect();
            want.sort();
            assert_eq!(got, want, "topic {t}");
        }
    }

    /// The retained tree finds, for every filter, exactly the topics the rules match.
    #[test]
    fn retained_lookup_matches_like_the_filter_rules() {
        let mut store = RetainedStore::default();
        for t in TOPICS {
            let message = Message {
                topic: topic(t),
                payload: bytes::Bytes::from_static(b"x"),
                qos: QoS::AtMostOnce,
                retain: true,
            };
            assert!(store.set(message, usize::MAX));
        }
        for f in FILTERS {
            let mut got: Vec<String> = store
                .matching(&filter(f), usize::MAX)
                .into_iter()
                .map(|m| m.topic.to_string())
                .collect();
            got.sort();
            let mut want: Vec<String> = TOPICS
                .iter()
                .filter(|t| filter(f).matches(&topic(t)))
                .map(|t| t.to_string())
                .collect();
            want.sort();
            assert_eq!(got, want, "filter {f}");
        }
    }

    #[test]
    fn removing_prunes_and_keeps_others() {
        let mut tree = SubscriptionTree::default();
        let one = Arc::new(Session::new(ByteString::from("one"), false));
        let two = Arc::new(Session::new(ByteString::from("two"), false));
        for session in [&one, &two] {
            let session = session.clone();
            tree.insert(
                &filter("a/+/c"),
                Subscriber {
                    session,
                    qos: QoS::AtLeastOnce,
                },
            );
        }
        assert!(tree.remove(&filter("a/+/c"), "one"));
        assert!(!tree.remove(&filter("a/+/c"), "one"));
        let left = tree.matches(&topic("a/b/c"));
        assert_eq!(left.len(), 1);
        assert_eq!(&*left[0].session.client_id, "two");
        assert!(tree.remove(&filter("a/+/c"), "two"));
        assert!(tree.root.children().next().is_none() && tree.root.value.is_empty());
    }
}
