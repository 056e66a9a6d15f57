//! Retained messages by topic name: which retained values does a new
//! SUBSCRIBE with `filter` receive.
//!
//! Owns a trie of topic levels built on the same arena as the subscription
//! tree (`tree::Arena`), holding at most one value per topic and no wildcards.
//! Topics starting with '$' live under their own root, so a filter with `+` or
//! `#` in its first level never reaches them. It must not decide what a value
//! is, when it expires, or whether a client may see it: `retain` lets the
//! broker drop expired ones.
//!
//! Cost per retained topic like `bench/retained/12345`: one node (56 bytes
//! plus `Option<V>`) with its label inline, 4-16 bytes of its parent's child
//! table, and the arena's growth slack; about 90 bytes excluding `V` measured
//! for 100 000 such topics on x86-64.

use super::tree::{level_at, root_for, Arena, DOLLAR_ROOT, ROOT};

/// Retained values keyed by topic name.
pub struct RetainedStore<V> {
    arena: Arena<Option<V>>,
    len: usize,
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedStore<V> {
    pub fn new() -> Self {
        RetainedStore {
            arena: Arena::new(),
            len: 0,
        }
    }

    /// Number of retained topics.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots the node arena has grown to (tests check churn reuses them).
    #[cfg(test)]
    pub(super) fn arena_slots(&self) -> usize {
        self.arena.slot_count()
    }

    /// Nodes in use, the two roots included.
    #[cfg(test)]
    pub(super) fn live_nodes(&self) -> usize {
        self.arena.live_count()
    }

    fn find(&self, topic: &str) -> Option<u32> {
        let mut n = root_for(topic);
        for level in topic.split('/') {
            n = self.arena.child(n, level.as_bytes())?;
        }
        Some(n)
    }

    /// Store `value` for `topic`, replacing (and returning) the previous one.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut n = root_for(topic);
        for level in topic.split('/') {
            match self.arena.child_or_insert(n, level.as_bytes()) {
                Some(c) => n = c,
                None => {
                    // Out of node indices: undo the partial path.
                    self.prune(n);
                    return None;
                }
            }
        }
        let slot = self.arena.payload_mut(n)?;
        let old = slot.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Remove the value for `topic`, pruning nodes left empty.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let n = self.find(topic)?;
        let old = self.arena.payload_mut(n)?.take()?;
        self.len = self.len.saturating_sub(1);
        self.prune(n);
        Some(old)
    }

    pub fn get(&self, topic: &str) -> Option<&V> {
        self.arena.payload(self.find(topic)?)?.as_ref()
    }

    /// Free `n` and its ancestors for as long as they hold nothing.
    fn prune(&mut self, mut n: u32) {
        while n != ROOT && n != DOLLAR_ROOT {
            let empty = matches!(self.arena.payload(n), Some(None));
            if !empty || self.arena.child_count(n) != 0 {
                return;
            }
            let parent = self.arena.parent(n);
            self.arena.unlink(parent, n);
            self.arena.release(n);
            n = parent;
        }
    }

    /// Every stored value whose topic matches `filter` (a valid filter with
    /// any `$share/<group>/` prefix already stripped). `#`/`+` in the first
    /// level never match '$' topics; `a/#` matches `a`.
    ///
    /// Runs once per subscription, not per message, so it may allocate its
    /// two small stacks (depth-bounded: one frame per `+` level / trie level).
    pub fn for_each_match<F: FnMut(&V)>(&self, filter: &str, mut f: F) {
        let fb = filter.as_bytes();
        let end = fb.len() + 1;
        // One frame per `+` being expanded: (node, filter position after the
        // `+`, cursor into the node's children).
        let mut plus: Vec<(u32, usize, usize)> = Vec::new();
        let mut walk: Vec<(u32, usize)> = Vec::new();
        let mut start = Some((root_for(filter), 0usize));
        loop {
            if let Some((mut node, mut pos)) = start.take() {
                loop {
                    if pos >= end {
                        if let Some(Some(v)) = self.arena.payload(node) {
                            f(v);
                        }
                        break;
                    }
                    let (level, after) = level_at(fb, pos);
                    match level {
                        b"#" => {
                            self.walk_subtree(node, &mut walk, &mut f);
                            break;
                        }
                        b"+" => {
                            plus.push((node, after, 0));
                            break;
                        }
                        _ => match self.arena.child(node, level) {
                            Some(c) => {
                                node = c;
                                pos = after;
                            }
                            None => break,
                        },
                    }
                }
            }
            let Some(top) = plus.last_mut() else {
                return;
            };
            match self.arena.child_at(top.0, top.2) {
                Some((child, cursor)) => {
                    top.2 = cursor;
                    start = Some((child, top.1));
                }
                None => {
                    plus.pop();
                }
            }
        }
    }

    /// `f` for the value at `node` and every value below it.
    fn walk_subtree<F: FnMut(&V)>(&self, node: u32, walk: &mut Vec<(u32, usize)>, f: &mut F) {
        walk.clear();
        if let Some(Some(v)) = self.arena.payload(node) {
            f(v);
        }
        walk.push((node, 0));
        while let Some(top) = walk.last_mut() {
            match self.arena.child_at(top.0, top.1) {
                Some((child, cursor)) => {
                    top.1 = cursor;
                    if let Some(Some(v)) = self.arena.payload(child) {
                        f(v);
                    }
                    walk.push((child, 0));
                }
                None => {
                    walk.pop();
                }
            }
        }
    }

    /// Every stored value, in no particular order.
    pub fn for_each<F: FnMut(&V)>(&self, mut f: F) {
        for v in self.arena.payloads().flatten() {
            f(v);
        }
    }

    /// Keep only values for which `keep` returns true (used to drop expired
    /// messages), pruning the nodes that empties.
    pub fn retain<F: FnMut(&mut V) -> bool>(&mut self, mut keep: F) {
        // Pruning only frees nodes (now empty, so skipped if reached later)
        // and never allocates, so a scan by index stays valid throughout.
        for i in 0..self.arena.slot_count() {
            let Ok(n) = u32::try_from(i) else {
                return;
            };
            let drop_it = match self.arena.payload_mut(n) {
                Some(Some(v)) => !keep(v),
                _ => continue,
            };
            if drop_it {
                if let Some(slot) = self.arena.payload_mut(n) {
                    *slot = None;
                }
                self.len = self.len.saturating_sub(1);
                self.prune(n);
            }
        }
    }
}
