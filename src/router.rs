//! The subscription tree shared by all connections: which sessions want a topic.

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;

use crate::protocol::QoS;
use crate::session::Session;
use crate::topic::{TopicFilter, TopicName};

/// One session's subscription at a node of the tree.
#[derive(Clone)]
pub struct Subscriber {
    pub session: Arc<Session>,
    pub qos: QoS,
}

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    subscribers: HashMap<ByteString, Subscriber>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty()
    }
}

/// A trie of topic filters, one level a node, with `+` and `#` as ordinary keys.
#[derive(Default)]
pub struct SubscriptionTree {
    root: Node,
}

impl SubscriptionTree {
    /// Adds or replaces the subscription of `subscriber`'s session to `filter`.
    pub fn insert(&mut self, filter: &TopicFilter, subscriber: Subscriber) {
        let mut node = &mut self.root;
        for level in filter.levels() {
            node = node.children.entry(level.into()).or_default();
        }
        let client_id = subscriber.session.client_id.clone();
        node.subscribers.insert(client_id, subscriber);
    }

    /// Removes `client_id`'s subscription to `filter`; true if there was one.
    pub fn remove(&mut self, filter: &TopicFilter, client_id: &str) -> bool {
        let levels: Vec<&str> = filter.levels().collect();
        remove_at(&mut self.root, &levels, client_id)
    }

    /// Every session subscribed to a filter matching `topic`, once each, with the
    /// highest QoS among its matching subscriptions.
    pub fn matches(&self, topic: &TopicName) -> Vec<Subscriber> {
        let levels: Vec<&str> = topic.levels().collect();
        let mut found: HashMap<ByteString, Subscriber> = HashMap::new();
        let mut add = |node: &Node| {
            for (id, sub) in &node.subscribers {
                found
                    .entry(id.clone())
                    .and_modify(|known| known.qos = known.qos.max(sub.qos))
                    .or_insert_with(|| sub.clone());
            }
        };
        collect(&self.root, &levels, topic.is_system(), &mut add);
        found.into_values().collect()
    }
}

fn collect(node: &Node, levels: &[&str], system_root: bool, add: &mut impl FnMut(&Node)) {
    // `system_root`: at the first level of a `$` topic, where wildcards do not match.
    if !system_root {
        if let Some(hash) = node.children.get("#") {
            add(hash);
        }
    }
    let Some((level, rest)) = levels.split_first() else {
        add(node);
        return;
    };
    if !system_root {
        if let Some(plus) = node.children.get("+") {
            collect(plus, rest, false, add);
        }
    }
    if let Some(child) = node.children.get(*level) {
        collect(child, rest, false, add);
    }
}

fn remove_at(node: &mut Node, levels: &[&str], client_id: &str) -> bool {
    let Some((level, rest)) = levels.split_first() else {
        return node.subscribers.remove(client_id).is_some();
    };
    let Some(child) = node.children.get_mut(*level) else {
        return false;
    };
    let removed = remove_at(child, rest, client_id);
    if child.is_empty() {
        node.children.remove(*level);
    }
    removed
}
