//! The subscription trie: which subscribers does a PUBLISH to `topic` reach.
//! Also home of the arena trie (`Arena`, `Label`) that `RetainedStore` reuses.
//!
//! Owns the node arena and the matching walk. It must not validate filters
//! (callers do), know what a subscriber key means, or allocate while matching:
//! `for_each_match` runs for every publish.
//!
//! Layout, chosen for small boards: nodes live in one `Vec` and point at each
//! other with `u32` indices; freed slots go on a free list. A node keeps its
//! own level label (short ones inline, no heap), its parent, and its literal
//! children as a short list that turns into an open-addressing hash table of
//! indices when it grows, so a node with 100 000 children still inserts in
//! O(1). `+` and `#` children are separate fields. Filters whose first level
//! starts with '$' live under a second root, and topics starting with '$' are
//! matched only from there, so first-level `+`/`#` can't reach `$SYS/...`.
//!
//! Nothing here recurses: a 65535-byte topic can have 32768 levels, and both
//! the match walk and pruning must survive that without growing the stack.

use smallvec::SmallVec;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// "No node": the empty value of child fields, parent of a root, empty table slot.
pub(super) const NONE: u32 = u32::MAX;
/// Root for everything whose first level does not start with '$'.
pub(super) const ROOT: u32 = 0;
/// Root for filters/topics whose first level starts with '$'.
pub(super) const DOLLAR_ROOT: u32 = 1;

/// Children are a plain list up to this many (a linear scan is faster than
/// hashing for a handful); one more turns the list into a hash table.
const LIST_MAX: usize = 16;
/// Smallest table. Always larger than `LIST_MAX`, which is how the two
/// representations of `Node::slots` are told apart.
const TABLE_MIN: usize = 64;
/// A table that drops to this many children goes back to a list. Well below
/// `LIST_MAX` so a node hovering around the threshold doesn't flip-flop.
const LIST_AGAIN: usize = 8;
/// Labels up to this many bytes are stored inside the node (no allocation);
/// 22 keeps `Label` at 24 bytes, the size of a `Vec`.
const INLINE: usize = 22;

/// The root a filter or topic starts from.
pub(super) fn root_for(s: &str) -> u32 {
    if s.as_bytes().first() == Some(&b'$') {
        DOLLAR_ROOT
    } else {
        ROOT
    }
}

/// Split the level starting at byte `pos` of `s`: returns the level and the
/// position after its '/', which is `s.len() + 1` once the last level is taken.
/// Levels are plain byte slices: labels are only ever compared, never printed
/// from here.
pub(super) fn level_at(s: &[u8], pos: usize) -> (&[u8], usize) {
    let rest = s.get(pos..).unwrap_or(&[]);
    let end = memchr::memchr(b'/', rest).map_or(s.len(), |i| pos + i);
    (s.get(pos..end).unwrap_or(&[]), end + 1)
}

/// One topic level's text.
pub(super) enum Label {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Label {
    const EMPTY: Label = Label::Inline {
        len: 0,
        bytes: [0; INLINE],
    };

    fn new(text: &[u8]) -> Label {
        let mut bytes = [0u8; INLINE];
        match (bytes.get_mut(..text.len()), u8::try_from(text.len())) {
            (Some(dst), Ok(len)) => {
                dst.copy_from_slice(text);
                Label::Inline { len, bytes }
            }
            _ => Label::Heap(text.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Label::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(&[]),
            Label::Heap(b) => b,
        }
    }
}

/// One trie node. `P` is what the owning structure keeps per node.
pub(super) struct Node<P> {
    label: Label,
    /// Literal children. List form (len <= LIST_MAX): every entry is a child.
    /// Table form (len >= TABLE_MIN, a power of two): open addressing with
    /// linear probing, NONE marks an empty slot, load kept at or below 1/2.
    slots: Vec<u32>,
    /// Number of literal children (equals `slots.len()` in list form).
    nchild: u32,
    parent: u32,
    payload: P,
}

impl<P: Default> Node<P> {
    fn empty(label: Label, parent: u32) -> Node<P> {
        Node {
            label,
            slots: Vec::new(),
            nchild: 0,
            parent,
            payload: P::default(),
        }
    }
}

/// Arena of trie nodes with literal-child lookup. Nodes 0 and 1 are the two
/// roots and are never freed. Freed nodes are reset to empty (payload
/// `P::default()`), so a scan over all slots can skip them by their payload.
pub(super) struct Arena<P> {
    nodes: Vec<Node<P>>,
    free: Vec<u32>,
    /// Keyed per arena: clients choose topic levels, so a fixed hash would let
    /// them pile every child of a node into one probe chain.
    hasher: RandomState,
}

impl<P: Default> Arena<P> {
    pub(super) fn new() -> Arena<P> {
        Arena {
            nodes: vec![
                Node::empty(Label::EMPTY, NONE),
                Node::empty(Label::EMPTY, NONE),
            ],
            free: Vec::new(),
            hasher: RandomState::new(),
        }
    }

    pub(super) fn payload(&self, i: u32) -> Option<&P> {
        self.nodes.get(i as usize).map(|n| &n.payload)
    }

    pub(super) fn payload_mut(&mut self, i: u32) -> Option<&mut P> {
        self.nodes.get_mut(i as usize).map(|n| &mut n.payload)
    }

    /// All payloads, live and freed (freed ones are `P::default()`).
    pub(super) fn payloads(&self) -> impl Iterator<Item = &P> {
        self.nodes.iter().map(|n| &n.payload)
    }

    pub(super) fn parent(&self, i: u32) -> u32 {
        self.nodes.get(i as usize).map_or(NONE, |n| n.parent)
    }

    pub(super) fn label(&self, i: u32) -> &[u8] {
        self.nodes
            .get(i as usize)
            .map_or(&[], |n| n.label.as_bytes())
    }

    pub(super) fn child_count(&self, i: u32) -> usize {
        self.nodes.get(i as usize).map_or(0, |n| n.nchild as usize)
    }

    /// Slots in the arena, live or free (what the arena has grown to).
    pub(super) fn slot_count(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes in use, roots included.
    #[cfg(test)]
    pub(super) fn live_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn hash(&self, label: &[u8]) -> usize {
        // Truncation on 32-bit targets only drops high bits, which the mask drops anyway.
        self.hasher.hash_one(label) as usize
    }

    /// The literal child of `parent` labelled `label`.
    pub(super) fn child(&self, parent: u32, label: &[u8]) -> Option<u32> {
        let slots = &self.nodes.get(parent as usize)?.slots;
        if slots.len() <= LIST_MAX {
            return slots.iter().copied().find(|&c| self.label(c) == label);
        }
        let mask = slots.len() - 1;
        let mut i = self.hash(label) & mask;
        for _ in 0..slots.len() {
            match slots.get(i).copied() {
                None | Some(NONE) => return None,
                Some(c) if self.label(c) == label => return Some(c),
                Some(_) => i = (i + 1) & mask,
            }
        }
        None
    }

    /// Iterate literal children without borrowing: returns the first child at
    /// or after `cursor` and the cursor to continue from. Unordered.
    pub(super) fn child_at(&self, parent: u32, cursor: usize) -> Option<(u32, usize)> {
        let slots = &self.nodes.get(parent as usize)?.slots;
        let rest = slots.get(cursor..)?;
        let off = rest.iter().position(|&c| c != NONE)?;
        Some((*rest.get(off)?, cursor + off + 1))
    }

    /// A new, unlinked node. `None` only if the arena has run out of `u32`
    /// indices, which would take hundreds of gigabytes.
    pub(super) fn alloc(&mut self, parent: u32, label: &[u8]) -> Option<u32> {
        let node = Node::empty(Label::new(label), parent);
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.nodes.get_mut(i as usize) {
                *slot = node;
                return Some(i);
            }
        }
        let i = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&i| i != NONE)?;
        if self.nodes.len() == self.nodes.capacity() && self.nodes.len() >= 1024 {
            // Grow by half rather than double: on a Pi with 100 000 topics
            // the spare half of a doubled arena is megabytes never used.
            self.nodes.reserve_exact(self.nodes.len() / 2);
        }
        self.nodes.push(node);
        Some(i)
    }

    /// The literal child labelled `label`, created if missing.
    pub(super) fn child_or_insert(&mut self, parent: u32, label: &[u8]) -> Option<u32> {
        if let Some(c) = self.child(parent, label) {
            return Some(c);
        }
        let c = self.alloc(parent, label)?;
        self.link(parent, c);
        Some(c)
    }

    /// Return a node's slot to the free list. The caller has unlinked it and
    /// its children are gone.
    pub(super) fn release(&mut self, i: u32) {
        if i == ROOT || i == DOLLAR_ROOT {
            return;
        }
        if let Some(slot) = self.nodes.get_mut(i as usize) {
            *slot = Node::empty(Label::EMPTY, NONE);
            self.free.push(i);
        }
    }

    fn table_insert(&self, slots: &mut [u32], child: u32) {
        let mask = slots.len().wrapping_sub(1);
        let mut i = self.hash(self.label(child)) & mask;
        for _ in 0..slots.len() {
            if let Some(s) = slots.get_mut(i) {
                if *s == NONE {
                    *s = child;
                    return;
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn build_table(&self, children: impl Iterator<Item = u32>, size: usize) -> Vec<u32> {
        let mut slots = vec![NONE; size];
        for c in children {
            self.table_insert(&mut slots, c);
        }
        slots
    }

    /// Add `child` (not yet a child, label already set) to `parent`'s literal children.
    fn link(&mut self, parent: u32, child: u32) {
        let Some(p) = self.nodes.get_mut(parent as usize) else {
            return;
        };
        // Taken out so the table code can read other nodes' labels.
        let mut slots = std::mem::take(&mut p.slots);
        let n = p.nchild as usize;
        if slots.len() < LIST_MAX {
            slots.push(child);
        } else if slots.len() == LIST_MAX {
            let old = std::mem::take(&mut slots);
            slots = self.build_table(old.into_iter().chain([child]), TABLE_MIN);
        } else if (n + 1) * 2 > slots.len() {
            let size = slots.len() * 2;
            let old = std::mem::take(&mut slots);
            let live = old.into_iter().filter(|&c| c != NONE);
            slots = self.build_table(live.chain([child]), size);
        } else {
            self.table_insert(&mut slots, child);
        }
        if let Some(p) = self.nodes.get_mut(parent as usize) {
            p.slots = slots;
            p.nchild = p.nchild.saturating_add(1);
        }
    }

    /// Delete `child` from a table by backward shifting, so lookups never need
    /// tombstones. Returns whether it was there.
    fn table_remove(&self, slots: &mut [u32], child: u32) -> bool {
        let len = slots.len();
        let mask = len.wrapping_sub(1);
        let mut i = self.hash(self.label(child)) & mask;
        let mut hole = None;
        for _ in 0..len {
            match slots.get(i).copied() {
                Some(c) if c == child => {
                    hole = Some(i);
                    break;
                }
                None | Some(NONE) => break,
                Some(_) => i = (i + 1) & mask,
            }
        }
        let Some(mut hole) = hole else {
            return false;
        };
        if let Some(s) = slots.get_mut(hole) {
            *s = NONE;
        }
        let mut j = hole;
        for _ in 0..len {
            j = (j + 1) & mask;
            let c = match slots.get(j).copied() {
                Some(c) if c != NONE => c,
                _ => break,
            };
            let ideal = self.hash(self.label(c)) & mask;
            // `c` may fill the hole if the hole lies on its probe path from `ideal` to `j`.
            if hole.wrapping_sub(ideal) & mask < j.wrapping_sub(ideal) & mask {
                if let Some(s) = slots.get_mut(hole) {
                    *s = c;
                }
                if let Some(s) = slots.get_mut(j) {
                    *s = NONE;
                }
                hole = j;
            }
        }
        true
    }

    /// Remove `child` from `parent`'s literal children (before releasing it:
    /// the table needs its label). Shrinks the table as it empties.
    pub(super) fn unlink(&mut self, parent: u32, child: u32) {
        let Some(p) = self.nodes.get_mut(parent as usize) else {
            return;
        };
        let mut slots = std::mem::take(&mut p.slots);
        let mut n = p.nchild as usize;
        if slots.len() <= LIST_MAX {
            if let Some(pos) = slots.iter().position(|&c| c == child) {
                slots.swap_remove(pos);
                n = slots.len();
            }
        } else if self.table_remove(&mut slots, child) {
            n = n.saturating_sub(1);
            if n <= LIST_AGAIN {
                slots = slots.iter().copied().filter(|&c| c != NONE).collect();
            } else if slots.len() > TABLE_MIN && n * 8 <= slots.len() {
                let size = (n * 4).next_power_of_two().max(TABLE_MIN);
                let old = std::mem::take(&mut slots);
                slots = self.build_table(old.into_iter().filter(|&c| c != NONE), size);
            }
        }
        if let Some(p) = self.nodes.get_mut(parent as usize) {
            p.slots = slots;
            p.nchild = u32::try_from(n).unwrap_or(u32::MAX);
        }
    }
}

/// What a subscription-tree node carries besides its literal children.
struct SubNode<V> {
    plus: u32,
    hash: u32,
    /// Subscribers whose filter ends here, by key. Most filters have one.
    subs: SmallVec<[(u32, V); 1]>,
}

impl<V> Default for SubNode<V> {
    fn default() -> Self {
        SubNode {
            plus: NONE,
            hash: NONE,
            subs: SmallVec::new(),
        }
    }
}

/// Subscriptions keyed by subscriber `key: u32` (the broker uses session ids,
/// and ids with the top bit set for shared groups). A key has at most one
/// value per filter.
pub struct SubscriptionTree<V> {
    arena: Arena<SubNode<V>>,
    len: usize,
}

impl<V> Default for SubscriptionTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> SubscriptionTree<V> {
    pub fn new() -> Self {
        SubscriptionTree {
            arena: Arena::new(),
            len: 0,
        }
    }

    /// Number of (filter, key) subscriptions.
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

    /// The node for `filter`, without creating anything.
    fn find(&self, filter: &str) -> Option<u32> {
        let mut n = root_for(filter);
        for level in filter.split('/') {
            n = match level {
                "+" => Some(self.arena.payload(n)?.plus),
                "#" => Some(self.arena.payload(n)?.hash),
                _ => self.arena.child(n, level.as_bytes()),
            }
            .filter(|&c| c != NONE)?;
        }
        Some(n)
    }

    /// The node for `filter`, creating the missing ones.
    fn find_or_create(&mut self, filter: &str) -> Option<u32> {
        let mut n = root_for(filter);
        for level in filter.split('/') {
            let next = match level {
                "+" | "#" => {
                    let existing = self.arena.payload(n).map_or(NONE, |p| {
                        if level == "+" {
                            p.plus
                        } else {
                            p.hash
                        }
                    });
                    if existing != NONE {
                        Some(existing)
                    } else {
                        let c = self.arena.alloc(n, b"");
                        if let (Some(c), Some(p)) = (c, self.arena.payload_mut(n)) {
                            if level == "+" {
                                p.plus = c;
                            } else {
                                p.hash = c;
                            }
                        }
                        c
                    }
                }
                _ => self.arena.child_or_insert(n, level.as_bytes()),
            };
            match next {
                Some(c) => n = c,
                None => {
                    // Out of node indices: undo the partial path.
                    self.prune(n);
                    return None;
                }
            }
        }
        Some(n)
    }

    /// Add or replace the subscription of `key` to `filter` (already
    /// validated). Returns the previous value if there was one.
    pub fn insert(&mut self, filter: &str, key: u32, value: V) -> Option<V> {
        let n = self.find_or_create(filter)?;
        let subs = &mut self.arena.payload_mut(n)?.subs;
        if let Some(slot) = subs.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        subs.push((key, value));
        self.len += 1;
        None
    }

    /// Remove the subscription of `key` to `filter`, pruning nodes left empty.
    pub fn remove(&mut self, filter: &str, key: u32) -> Option<V> {
        let n = self.find(filter)?;
        let subs = &mut self.arena.payload_mut(n)?.subs;
        let pos = subs.iter().position(|(k, _)| *k == key)?;
        let (_, value) = subs.remove(pos);
        self.len = self.len.saturating_sub(1);
        self.prune(n);
        Some(value)
    }

    pub fn get(&self, filter: &str, key: u32) -> Option<&V> {
        let n = self.find(filter)?;
        let subs = &self.arena.payload(n)?.subs;
        subs.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Free `n` and its ancestors for as long as they hold nothing.
    fn prune(&mut self, mut n: u32) {
        while n != ROOT && n != DOLLAR_ROOT {
            let Some(p) = self.arena.payload(n) else {
                return;
            };
            if !p.subs.is_empty() || p.plus != NONE || p.hash != NONE {
                return;
            }
            if self.arena.child_count(n) != 0 {
                return;
            }
            let parent = self.arena.parent(n);
            let Some(pp) = self.arena.payload_mut(parent) else {
                return;
            };
            if pp.plus == n {
                pp.plus = NONE;
            } else if pp.hash == n {
                pp.hash = NONE;
            } else {
                self.arena.unlink(parent, n);
            }
            self.arena.release(n);
            n = parent;
        }
    }

    /// Call `f(key, &value)` for every subscription whose filter matches
    /// `topic` (a valid topic name). Allocates nothing.
    ///
    /// A depth-first walk without a stack: from a node we first follow the
    /// literal child for the next level, then the `+` child; going back up,
    /// the parent pointer says where we are and the topic position of the
    /// level we leave is found again by scanning back to the previous '/'.
    pub fn for_each_match<F: FnMut(u32, &V)>(&self, topic: &str, mut f: F) {
        let t = topic.as_bytes();
        let root = root_for(topic);
        // `pos` is where the next unconsumed level starts; `end` means none is left.
        let end = t.len() + 1;
        let mut node = root;
        let mut pos = 0usize;
        let mut emit = |arena: &Arena<SubNode<V>>, n: u32| {
            if let Some(p) = arena.payload(n) {
                for (k, v) in &p.subs {
                    f(*k, v);
                }
            }
        };
        // Mosquitto's order, which clients can see when their subscriptions
        // overlap: at each level the literal child's subtree, then `+`'s,
        // then `#` (matching the rest); at the last level a `#` child (`a/#`
        // matches `a`) before the level's own subscribers.
        'enter: loop {
            let Some(here) = self.arena.payload(node) else {
                return;
            };
            if pos >= end {
                if here.hash != NONE {
                    emit(&self.arena, here.hash);
                }
                emit(&self.arena, node);
            } else {
                let (level, after) = level_at(t, pos);
                let next = match self.arena.child(node, level) {
                    Some(c) => c,
                    None => here.plus,
                };
                if next != NONE {
                    node = next;
                    pos = after;
                    continue 'enter;
                }
                // Nothing below: this level is done, so its `#` fires now.
                if here.hash != NONE {
                    emit(&self.arena, here.hash);
                }
            }
            // Climb until a parent has a `+` child we haven't tried; a parent
            // left behind is done, so its `#` fires as we pass it.
            loop {
                if node == root {
                    return;
                }
                let parent = self.arena.parent(node);
                let Some(pp) = self.arena.payload(parent) else {
                    return;
                };
                if pp.plus != NONE && pp.plus != node {
                    // We came from the literal child; `+` takes the same level.
                    node = pp.plus;
                    continue 'enter;
                }
                if pp.hash != NONE {
                    emit(&self.arena, pp.hash);
                }
                // Back to where `node`'s level started: just after the '/'
                // before the one (or the end) at `pos - 1`.
                pos = t
                    .get(..pos.saturating_sub(1))
                    .and_then(|b| memchr::memrchr(b'/', b))
                    .map_or(0, |i| i + 1);
                node = parent;
            }
        }
    }

    /// Every subscription, with its filter rebuilt from the trie (for
    /// persistence and dumps; allocates).
    pub fn for_each<F: FnMut(&str, u32, &V)>(&self, mut f: F) {
        let mut path: Vec<u32> = Vec::new();
        let mut text: Vec<u8> = Vec::new();
        for (i, payload) in self.arena.payloads().enumerate() {
            if payload.subs.is_empty() {
                continue;
            }
            let Ok(mut n) = u32::try_from(i) else {
                return;
            };
            path.clear();
            while n != ROOT && n != DOLLAR_ROOT && n != NONE {
                path.push(n);
                n = self.arena.parent(n);
            }
            text.clear();
            for (depth, &c) in path.iter().rev().enumerate() {
                if depth > 0 {
                    text.push(b'/');
                }
                let parent = self.arena.parent(c);
                match self.arena.payload(parent) {
                    Some(pp) if pp.plus == c => text.push(b'+'),
                    Some(pp) if pp.hash == c => text.push(b'#'),
                    _ => text.extend_from_slice(self.arena.label(c)),
                }
            }
            // Labels are pieces of `&str`s cut at ASCII '/', so this never
            // actually replaces anything (and borrows rather than copies).
            let filter = String::from_utf8_lossy(&text);
            for (k, v) in &payload.subs {
                f(&filter, *k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child list/table alone: every representation change keeps every
    /// child findable, and removal leaves no gaps in probe chains.
    #[test]
    fn children_switch_between_list_and_table() {
        let mut arena: Arena<()> = Arena::new();
        let labels: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
        let mut ids = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            let id = arena.child_or_insert(ROOT, l.as_bytes());
            assert!(id.is_some());
            ids.push(id);
            assert_eq!(arena.child_count(ROOT), i + 1);
            assert_eq!(
                arena.child_or_insert(ROOT, l.as_bytes()),
                id,
                "no duplicate"
            );
            let slots = arena.nodes[ROOT as usize].slots.len();
            if i < LIST_MAX {
                assert_eq!(slots, i + 1, "list form");
            } else {
                assert!(slots >= TABLE_MIN && slots.is_power_of_two() && slots >= 2 * (i + 1));
            }
        }
        // Remove in a scrambled order, checking all survivors each time.
        let mut order: Vec<usize> = (0..labels.len()).collect();
        let mut x = 7usize;
        for i in (1..order.len()).rev() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (x >> 33) % (i + 1));
        }
        let mut gone = vec![false; labels.len()];
        let mut saw_shrink = false;
        for (removed, &victim) in order.iter().enumerate() {
            let Some(id) = ids[victim] else {
                panic!("missing id")
            };
            let before = arena.nodes[ROOT as usize].slots.len();
            arena.unlink(ROOT, id);
            arena.release(id);
            gone[victim] = true;
            let left = labels.len() - removed - 1;
            assert_eq!(arena.child_count(ROOT), left);
            let after = arena.nodes[ROOT as usize].slots.len();
            saw_shrink |= after < before && after >= TABLE_MIN;
            if left <= LIST_AGAIN {
                assert_eq!(after, left, "back to a list");
            }
            for (j, l) in labels.iter().enumerate() {
                let found = arena.child(ROOT, l.as_bytes());
                if gone[j] {
                    assert_eq!(found, None, "{l} removed");
                } else {
                    assert_eq!(found, ids[j], "{l} still there");
                }
            }
        }
        assert!(
            saw_shrink,
            "the table shrank before turning back into a list"
        );
        assert_eq!(arena.live_count(), 2);
        let mut cursor = 0;
        assert_eq!(arena.child_at(ROOT, cursor), None);
        // Iteration visits each child exactly once.
        for l in &labels[..50] {
            arena.child_or_insert(ROOT, l.as_bytes());
        }
        let mut seen = Vec::new();
        while let Some((c, next)) = arena.child_at(ROOT, cursor) {
            seen.push(arena.label(c).to_vec());
            cursor = next;
        }
        seen.sort();
        let mut want: Vec<Vec<u8>> = labels[..50].iter().map(|l| l.as_bytes().to_vec()).collect();
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn labels_inline_and_heap() {
        for text in [
            "",
            "a",
            "exactly-22-bytes-long!",
            "twenty-three-bytes-long",
            "ü",
        ] {
            let l = Label::new(text.as_bytes());
            assert_eq!(l.as_bytes(), text.as_bytes());
            let inline = matches!(l, Label::Inline { .. });
            assert_eq!(inline, text.len() <= INLINE, "{text:?}");
        }
    }
}
