//! A tree with one node per topic level, shared by the subscription router (filters as
//! paths) and the retained store (topic names as paths).
//!
//! Walks recurse once per level; `mqtt.max_topic_levels` bounds every path put in.

use std::collections::HashMap;

use foldhash::fast::RandomState;

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
