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

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The retained messages whose topics match `filter`.
    pub fn matching(&self, filter: &TopicFilter) -> Vec<Message> {
        let levels: Vec<&str> = filter.levels().collect();
        let mut found = Vec::new();
        walk(&self.root, &levels, true, &mut found);
        found
    }
}

fn walk(node: &Node, filter: &[&str], at_root: bool, found: &mut Vec<Message>) {
    let Some((level, rest)) = filter.split_first() else {
        found.extend(node.message.iter().cloned());
        return;
    };
    match *level {
        "#" => {
            // `a/#` also matches `a` itself.
            found.extend(node.message.iter().cloned());
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

fn all_below(node: &Node, found: &mut Vec<Message>) {
    found.extend(node.message.iter().cloned());
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
