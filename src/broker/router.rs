//! broker/router: where a message goes.
//!
//! Owns: the subscription tree (session keys and shared-group keys), the
//! shared-subscription groups with their round-robin position, and the
//! retained store. Answers "which subscriptions does this topic hit" and
//! "which retained messages does this filter see"; adds and removes
//! subscriptions, plain or shared, with one call each.
//!
//! Must not: queue, encode or send anything, or ask the ACL; `broker`
//! decides what happens to each match.

use slab::Slab;

use super::{Message, SubOptions};
use crate::topic::{self, RetainedStore, SubscriptionTree};

/// Subscription tree keys with this bit set name a shared subscription
/// group rather than a session.
pub(crate) const SHARED_BIT: u32 = 1 << 31;

/// A `$share/<group>/<filter>` subscription and its members.
#[derive(Debug)]
pub(crate) struct SharedGroup {
    /// The whole `$share/...` filter, as the members subscribed to it.
    pub full: Box<str>,
    /// The filter inside it.
    pub filter: Box<str>,
    pub members: Vec<(usize, SubOptions)>,
    /// Round-robin position.
    pub next: usize,
}

/// One subscription a topic matched, in the tree's order.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Hit {
    /// A session's own subscription.
    Session(usize, SubOptions),
    /// A shared group (deliver to one member).
    Group(u32),
}

#[derive(Default)]
pub(crate) struct Router {
    tree: SubscriptionTree<SubOptions>,
    pub retained: RetainedStore<Message>,
    shared: Slab<SharedGroup>,
    shared_index: std::collections::HashMap<Box<str>, usize>,
    /// Some retained message carries an expiry: prune the store now and then.
    pub retained_expiring: bool,
    last_retained_prune: u64,
}

impl Router {
    pub fn new(now: u64) -> Router {
        Router {
            tree: SubscriptionTree::new(),
            last_retained_prune: now,
            ..Default::default()
        }
    }

    /// Subscribe session `skey` to `filter` (`$share/...` joins its group).
    /// Returns whether it replaced a subscription on the same filter.
    pub fn subscribe(&mut self, filter: &str, skey: usize, sub: SubOptions) -> bool {
        match topic::parse_shared(filter) {
            Some((_, inner)) => self.join_shared(filter, inner, skey, sub),
            None => self.tree.insert(filter, skey as u32, sub).is_some(),
        }
    }

    /// Remove the subscription of `skey` on `filter`. Returns whether there
    /// was one.
    pub fn unsubscribe(&mut self, filter: &str, skey: usize) -> bool {
        if topic::is_shared(filter) {
            self.leave_shared(filter, skey)
        } else {
            self.tree.remove(filter, skey as u32).is_some()
        }
    }

    /// Every subscription `topic` matches, in the tree's order (literal
    /// levels, then `+`, then `#`), as Mosquitto visits them.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(Hit)) {
        self.tree.for_each_match(topic, |key, sub| {
            if key & SHARED_BIT != 0 {
                f(Hit::Group(key & !SHARED_BIT));
            } else {
                f(Hit::Session(key as usize, *sub));
            }
        });
    }

    /// Every plain subscription (shared groups shown once, by their filter).
    pub fn for_each_subscription(&self, mut f: impl FnMut(&str, u32, &SubOptions)) {
        self.tree.for_each(|filter, key, sub| f(filter, key, sub));
    }

    pub fn subscription_count(&self) -> usize {
        self.tree.len()
    }

    pub fn shared_member_count(&self) -> usize {
        self.shared.iter().map(|(_, g)| g.members.len()).sum()
    }

    /// The next member of group `gidx` to receive a message, round robin,
    /// preferring members `online` says are connected, skipping `except`.
    pub fn pick_member(
        &mut self,
        gidx: usize,
        except: usize,
        online: impl Fn(usize) -> bool,
    ) -> Option<(usize, SubOptions)> {
        let g = self.shared.get_mut(gidx)?;
        let n = g.members.len();
        if n == 0 {
            return None;
        }
        let mut fallback = None;
        for i in 0..n {
            let idx = (g.next + i) % n;
            let (skey, opts) = g.members[idx];
            if skey == except {
                continue;
            }
            if online(skey) {
                g.next = idx + 1;
                return Some((skey, opts));
            }
            if fallback.is_none() {
                fallback = Some((idx, skey, opts));
            }
        }
        let (idx, skey, opts) = fallback?;
        g.next = idx + 1;
        Some((skey, opts))
    }

    /// Add a session to a shared group, creating the group on first use.
    /// Returns whether the session was already a member.
    fn join_shared(&mut self, full: &str, inner: &str, skey: usize, sub: SubOptions) -> bool {
        let gidx = match self.shared_index.get(full) {
            Some(&g) => g,
            None => {
                let g = self.shared.insert(SharedGroup {
                    full: full.into(),
                    filter: inner.into(),
                    members: Vec::new(),
                    next: 0,
                });
                self.shared_index.insert(full.into(), g);
                // The tree holds one entry for the whole group.
                self.tree.insert(inner, SHARED_BIT | g as u32, sub);
                g
            }
        };
        let Some(g) = self.shared.get_mut(gidx) else {
            return false;
        };
        match g.members.iter_mut().find(|(k, _)| *k == skey) {
            Some(m) => {
                m.1 = sub;
                true
            }
            None => {
                g.members.push((skey, sub));
                false
            }
        }
    }

    /// Remove a session from a shared group; the group goes with its last
    /// member. Returns whether it was a member.
    fn leave_shared(&mut self, full: &str, skey: usize) -> bool {
        let Some(&gidx) = self.shared_index.get(full) else {
            return false;
        };
        let Some(g) = self.shared.get_mut(gidx) else {
            return false;
        };
        let before = g.members.len();
        g.members.retain(|(k, _)| *k != skey);
        let removed = g.members.len() != before;
        if g.members.is_empty() {
            let g = self.shared.remove(gidx);
            self.tree.remove(&g.filter, SHARED_BIT | gidx as u32);
            self.shared_index.remove(&g.full);
        }
        removed
    }

    /// Set (or replace) the retained message of its topic.
    pub fn retain(&mut self, m: Message) {
        self.retained_expiring |= m.expiry_at.is_some();
        self.retained.insert(m.clone().topic(), m);
    }

    /// Drop expired retained messages, at most once a minute, and only
    /// when some retained message can expire.
    pub fn prune_retained(&mut self, now: u64) {
        if self.retained_expiring && now >= self.last_retained_prune + 60_000 {
            self.last_retained_prune = now;
            self.retained.retain(|m| !m.expired(now));
        }
    }
}
