//! Retained messages, kept in a tree of topic levels so a wildcard subscription finds
//! its matches without scanning every topic.

use std::time::Instant;

use crate::level_tree::Node;
use crate::message::Message;
use crate::topic::{TopicFilter, TopicName};

#[derive(Default)]
pub struct RetainedStore {
    root: Node<Option<Message>>,
    count: usize,
}

impl RetainedStore {
    /// Stores `message` as the topic's retained message, replacing any before it,
    /// unless it is for a new topic and `max` topics already have one. Returns whether
    /// it was stored.
    /// Topics with a retained message.
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn set(&mut self, message: Message, max: usize) -> bool {
        let known = self
            .root
            .find(message.topic.levels())
            .is_some_and(|node| node.value.is_some());
        if !known && self.count >= max {
            return false;
        }
        let topic = message.topic.clone();
        if self.root.entry(topic.levels()).replace(message).is_none() {
            self.count += 1;
        }
        true
    }

    /// Deletes the topic's retained message, if there is one.
    pub fn remove(&mut self, topic: &TopicName) {
        let levels: Vec<&str> = topic.levels().collect();
        let removed = self
            .root
            .update(&levels, Option::take, &Option::is_none)
            .flatten();
        if removed.is_some() {
            self.count -= 1;
        }
    }

    /// Deletes the topic's retained message if it has expired by `now`; true if it did.
    pub fn remove_expired(&mut self, topic: &TopicName, now: Instant) -> bool {
        let expired = self
            .root
            .find(topic.levels())
            .and_then(|node| node.value.as_ref())
            .is_some_and(|message| message.expired(now));
        if expired {
            self.remove(topic);
        }
        expired
    }

    /// The retained messages whose topics match `filter`, at most `limit` of them.
    pub fn matching(&self, filter: &TopicFilter, limit: usize) -> Vec<Message> {
        let levels: Vec<&str> = filter.levels().collect();
        let mut found = Found {
            messages: Vec::new(),
            limit,
        };
        walk(&self.root, &levels, true, &mut found);
        found.messages
    }
}

/// Matches collected so far, up to a limit.
struct Found {
    messages: Vec<Message>,
    limit: usize,
}

impl Found {
    fn add(&mut self, node: &Node<Option<Message>>) {
        if let Some(message) = &node.value {
            if self.messages.len() < self.limit {
                self.messages.push(message.clone());
            }
        }
    }

    fn full(&self) -> bool {
        self.messages.len() >= self.limit
    }
}

/// Children a wildcard may match: at the first level, not the `$` topics.
fn wildcard_children(
    node: &Node<Option<Message>>,
    at_root: bool,
) -> impl Iterator<Item = &Node<Option<Message>>> {
    node.children()
        .filter(move |(name, _)| !(at_root && name.starts_with('$')))
        .map(|(_, child)| child)
}

fn walk(node: &Node<Option<Message>>, filter: &[&str], at_root: bool, found: &mut Found) {
    if found.full() {
        return;
    }
    let Some((level, rest)) = filter.split_first() else {
        found.add(node);
        return;
    };
    match *level {
        "#" => {
            // `a/#` also matches `a` itself.
            found.add(node);
            for child in wildcard_children(node, at_root) {
                all_below(child, found);
            }
        }
        "+" => {
            for child in wildcard_children(node, at_root) {
                walk(child, rest, false, found);
            }
        }
        exact => {
            if let Some(child) = node.child(exact) {
                walk(child, rest, false, found);
            }
        }
    }
}

fn all_below(node: &Node<Option<Message>>, found: &mut Found) {
    if found.full() {
        return;
    }
    found.add(node);
    for (_, child) in node.children() {
        all_below(child, found);
    }
}
