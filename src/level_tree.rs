//! A tree with one node per topic level, shared by the subscription router (filters as
//! paths) and the retained store (topic names as paths).
//!
//! Walks recurse once per level; `mqtt.max_topic_levels` bounds every path put in.

use std::collections::HashMap;
use std::str::Split;

use foldhash::fast::RandomState;

use crate::topic::TopicName;

/// A node: its children by level name, and the value kept at this path.
#[derive(Default)]
pub struct Node<V> {
    /// foldhash, seeded per map: a level lookup on every publish is too hot for SipHash.
    children: HashMap<Box<str>, Node<V>, RandomState>,
    pub value: V,
}

impl<V: Default> Node<V> {
    /// The value at `levels` below this node, created (with the path) if missing.
    pub fn entry<'a>(&mut self, levels: impl Iterator<Item = &'a str>) -> &mut V {
        let mut node = self;
        for level in levels {
            node = node.children.entry(level.into()).or_default();
        }
        &mut node.value
    }

    /// The node at `levels` below this one, if the path exists.
    pub fn find<'a>(&self, levels: impl Iterator<Item = &'a str>) -> Option<&Node<V>> {
        let mut node = self;
        for level in levels {
            node = node.children.get(level)?;
        }
        Some(node)
    }

    /// Applies `change` to the value at `levels`, if the path exists, then removes the
    /// nodes along it left with no children and an `is_empty` value.
    pub fn update<R>(
        &mut self,
        levels: &[&str],
        change: impl FnOnce(&mut V) -> R,
        is_empty: &impl Fn(&V) -> bool,
    ) -> Option<R> {
        let Some((level, rest)) = levels.split_first() else {
            return Some(change(&mut self.value));
        };
        let child = self.children.get_mut(*level)?;
        let result = child.update(rest, change, is_empty);
        if child.children.is_empty() && is_empty(&child.value) {
            self.children.remove(*level);
        }
        result
    }

    pub fn child(&self, level: &str) -> Option<&Node<V>> {
        self.children.get(level)
    }

    pub fn children(&self) -> impl Iterator<Item = (&str, &Node<V>)> {
        self.children.iter().map(|(name, node)| (&**name, node))
    }
}

/// Calls `add` with every node of a tree of filters whose filter matches `topic`
/// (`+` and `#` as ordinary keys; no wildcard matches a `$` topic's first level).
pub fn collect_matching<'a, V: Default>(
    root: &'a Node<V>,
    topic: &TopicName,
    add: &mut impl FnMut(&'a Node<V>),
) {
    collect(root, topic.levels(), topic.is_system(), add);
}

/// Walks the tree along the topic's remaining `levels`; the iterator is cloned where the
/// walk branches, so a publish allocates nothing to split its topic.
fn collect<'a, V: Default>(
    node: &'a Node<V>,
    mut levels: Split<'_, char>,
    system_root: bool,
    add: &mut impl FnMut(&'a Node<V>),
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
