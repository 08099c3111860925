//! Retained messages, kept in a tree of topic levels so a wildcard subscription finds
//! its matches without scanning every topic.

use std::collections::HashMap;

use crate::message::Message;
use crate::topic::{TopicFilter, TopicName};

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    message: Option<Message>,
}

#[derive(Default)]
pub struct RetainedStore {
    root: Node,
    count: usize,
}

impl RetainedStore {
    /// Stores `message` as the topic's retained message, replacing any before it,
    /// unless it is for a new topic and `max` topics already have one. Returns whether
    /// it was stored.
    pub fn set(&mut self, message: Message, max: usize) -> bool {
        if self.count >= max && !self.contains(&message.topic) {
            return false;
        }
        let mut node = &mut self.root;
        for level in message.topic.levels() {
            node = node.children.entry(level.into()).or_default();
        }
        if node.message.replace(message).is_none() {
            self.count += 1;
        }
        true
    }

    fn contains(&self, topic: &TopicName) -> bool {
        let mut node = &self.root;
        for level in topic.levels() {
            match node.children.get(level) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.message.is_some()
    }

    /// Deletes the topic's retained message, if there is one.
    pub fn remove(&mut self, topic: &TopicName) {
        let levels: Vec<&str> = topic.levels().collect();
        if remove_at(&mut self.root, &levels) {
            self.count -= 1;
        }
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

fn walk(node: &Node, filter: &[&str], at_root: bool, found: &mut Found) {
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
            for (name, child) in &node.children {
                if !(at_root && name.starts_with('$')) {
                    all_below(child, found);
                }
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if !(at_root && name.starts_with('$')) {
                    walk(child, rest, false, found);
                }
            }
        }
        exact => {
            if let Some(child) = node.children.get(exact) {
                walk(child, rest, false, found);
            }
        }
    }
}

/// Matches collected so far, up to a limit.
struct Found {
    messages: Vec<Message>,
    limit: usize,
}

impl Found {
    fn add(&mut self, node: &Node) {
        if let Some(message) = &node.message {
            if self.messages.len() < self.limit {
                self.messages.push(message.clone());
            }
        }
    }

    fn full(&self) -> bool {
        self.messages.len() >= self.limit
    }
}

fn all_below(node: &Node, found: &mut Found) {
    if found.full() {
        return;
    }
    found.add(node);
    for child in node.children.values() {
        all_below(child, found);
    }
}

fn remove_at(node: &mut Node, levels: &[&str]) -> bool {
    let Some((level, rest)) = levels.split_first() else {
        return node.message.take().is_some();
    };
    let Some(child) = node.children.get_mut(*level) else {
        return false;
    };
    let removed = remove_at(child, rest);
    if child.children.is_empty() && child.message.is_none() {
        node.children.remove(*level);
    }
    removed
}
