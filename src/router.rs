//! The subscription tree shared by all connections: which sessions want a topic.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytestring::ByteString;

use crate::level_tree::{collect_matching, Node};
use crate::protocol::QoS;
use crate::session::Session;
use crate::topic::{TopicFilter, TopicName};

/// How a session subscribed with one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// The QoS granted.
    pub qos: QoS,
    /// Messages the session published itself are not sent back to it.
    pub no_local: bool,
    /// Forwarded messages keep the RETAIN flag they were published with.
    pub retain_as_published: bool,
    /// The Subscription Identifier, sent back with matching messages (MQTT 5.0).
    pub id: Option<NonZeroU32>,
}

impl Subscription {
    /// An MQTT 3.x subscription at `qos`.
    pub fn qos(qos: QoS) -> Subscription {
        Subscription {
            qos,
            no_local: false,
            retain_as_published: false,
            id: None,
        }
    }
}

/// One session's subscription at a node of the tree.
#[derive(Clone)]
pub struct Subscriber {
    pub session: Arc<Session>,
    pub subscription: Subscription,
}

/// One delivery a published message is due: to a session, once, whatever the number of
/// its subscriptions that match (MQTT-3.3.4-2), or to one member of a shared group.
pub struct Matched {
    pub session: Arc<Session>,
    /// The highest QoS among the matching subscriptions.
    pub qos: QoS,
    pub retain_as_published: bool,
    /// The identifiers of all matching subscriptions that have one.
    pub subscription_ids: Vec<u32>,
    /// The shared subscription it is delivered for, if any.
    pub share: Option<Arc<TopicFilter>>,
}

/// The subscriptions made with one filter: plain ones by client id, shared ones by
/// group.
#[derive(Default)]
struct Subscribers {
    plain: HashMap<ByteString, Subscriber>,
    shared: HashMap<ByteString, SharedGroup>,
}

impl Subscribers {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.shared.is_empty()
    }
}

/// The members of one shared subscription. Each message goes to one of them, in turn
/// (round robin), skipping members that are offline while any member is online.
struct SharedGroup {
    /// `$share/{group}/{filter}`, as the deliveries made for it are marked.
    filter: Arc<TopicFilter>,
    members: Vec<Subscriber>,
    next: AtomicUsize,
}

impl SharedGroup {
    /// The member to deliver the next message to, other than `except`.
    fn choose(&self, except: Option<&Session>) -> Option<&Subscriber> {
        let eligible = |m: &&Subscriber| !except.is_some_and(|e| std::ptr::eq(&*m.session, e));
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.members.len();
        let in_turn = (0..n).map(|i| &self.members[(start + i) % n]);
        in_turn
            .clone()
            .filter(eligible)
            .find(|m| m.session.is_online())
            .or_else(|| in_turn.clone().find(eligible))
    }
}

/// A trie of topic filters, one level a node, with `+` and `#` as ordinary keys.
#[derive(Default)]
pub struct SubscriptionTree {
    root: Node<Subscribers>,
}

impl SubscriptionTree {
    /// Adds or replaces the subscription of `subscriber`'s session to `filter`.
    pub fn insert(&mut self, filter: &TopicFilter, subscriber: Subscriber) {
        let client_id = subscriber.session.client_id.clone();
        let node = self.root.entry(filter.levels());
        let Some((group, _)) = filter.share() else {
            node.plain.insert(client_id, subscriber);
            return;
        };
        let group = node
            .shared
            .entry(ByteString::from(group))
            .or_insert_with(|| SharedGroup {
                filter: Arc::new(filter.clone()),
                members: Vec::new(),
                next: AtomicUsize::new(0),
            });
        match group
            .members
            .iter_mut()
            .find(|m| m.session.client_id == client_id)
        {
            Some(member) => *member = subscriber,
            None => group.members.push(subscriber),
        }
    }

    /// Removes `client_id`'s subscription to `filter`; true if there was one.
    pub fn remove(&mut self, filter: &TopicFilter, client_id: &str) -> bool {
        let levels: Vec<&str> = filter.levels().collect();
        let share = filter.share();
        self.root
            .update(
                &levels,
                |subs| match share {
                    None => subs.plain.remove(client_id).is_some(),
                    Some((group, _)) => {
                        let Some(members) = subs.shared.get_mut(group) else {
                            return false;
                        };
                        let before = members.members.len();
                        members
                            .members
                            .retain(|m| *m.session.client_id != *client_id);
                        let removed = members.members.len() < before;
                        if members.members.is_empty() {
                            subs.shared.remove(group);
                        }
                        removed
                    }
                },
                &Subscribers::is_empty,
            )
            .unwrap_or(false)
    }

    /// Every delivery a message on `topic` published by `publisher` is due: one per
    /// session with matching plain subscriptions (those with No Local skipped for the
    /// publisher), and one per matching shared group.
    pub fn matches(&self, topic: &TopicName, publisher: Option<&str>) -> Vec<Matched> {
        let mut found: Vec<Matched> = Vec::new();
        // Allocated only where shared groups match.
        let mut shared: Vec<Matched> = Vec::new();
        collect_matching(&self.root, topic, &mut |node| {
            let plain =
                node.value.plain.values().filter(|s| {
                    !(s.subscription.no_local && publisher == Some(&*s.session.client_id))
                });
            found.extend(plain.map(Matched::from));
            for group in node.value.shared.values() {
                if let Some(member) = group.choose(None) {
                    let mut matched = Matched::from(member);
                    matched.share = Some(group.filter.clone());
                    shared.push(matched);
                }
            }
        });
        if found.len() > 1 {
            // One delivery a session. By session identity, not client id: a session that
            // was replaced under the same client id must never shadow the live one.
            found.sort_unstable_by_key(|m| Arc::as_ptr(&m.session));
            found.dedup_by(|later, kept| {
                let same = Arc::ptr_eq(&later.session, &kept.session);
                if same {
                    kept.merge(later);
                }
                same
            });
        }
        found.append(&mut shared);
        found
    }

    /// Another member of the shared subscription `filter` than `leaving`, to take over
    /// a message that was meant for it.
    pub fn other_member(&self, filter: &TopicFilter, leaving: &Session) -> Option<Matched> {
        let (group, _) = filter.share()?;
        let node = self.root.find(filter.levels())?;
        let group = node.value.shared.get(group)?;
        let member = group.choose(Some(leaving))?;
        let mut matched = Matched::from(member);
        matched.share = Some(group.filter.clone());
        Some(matched)
    }
}

impl From<&Subscriber> for Matched {
    fn from(subscriber: &Subscriber) -> Matched {
        let subscription = &subscriber.subscription;
        Matched {
            session: subscriber.session.clone(),
            qos: subscription.qos,
            retain_as_published: subscription.retain_as_published,
            subscription_ids: subscription.id.map(NonZeroU32::get).into_iter().collect(),
            share: None,
        }
    }
}

impl Matched {
    /// Adds another matching subscription of the same session.
    fn merge(&mut self, other: &mut Matched) {
        self.qos = self.qos.max(other.qos);
        self.retain_as_published |= other.retain_as_published;
        self.subscription_ids.append(&mut other.subscription_ids);
    }
}
