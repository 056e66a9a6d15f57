//! Tests for the topic room: validation tables, the naive `matches` oracle,
//! and randomized comparisons of both tries against that oracle.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

/// xorshift64*: deterministic, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Topic levels: empty, `$`-prefixed (also in later levels), plain.
const TOPIC_LEVELS: &[&str] = &["", "$SYS", "$x", "a", "b", "c"];
/// Filter levels add the wildcards.
const FILTER_LEVELS: &[&str] = &["", "$SYS", "$x", "a", "b", "c", "+", "+", "#"];

/// A valid topic name (a lone empty level would be the invalid "").
fn random_topic(rng: &mut Rng, levels: &[&str], max_depth: usize) -> String {
    loop {
        let depth = 1 + rng.below(max_depth);
        let parts: Vec<&str> = (0..depth).map(|_| rng.pick(levels)).collect();
        let t = parts.join("/");
        if !t.is_empty() {
            assert!(valid_topic_name(&t), "generator made invalid topic {t:?}");
            return t;
        }
    }
}

fn random_filter(rng: &mut Rng, levels: &[&str], max_depth: usize) -> String {
    let mut depth = 1 + rng.below(max_depth);
    if depth == 1 && levels.len() > 1 && rng.below(2) == 0 {
        depth = 2;
    }
    let mut parts: Vec<&str> = Vec::new();
    for i in 0..depth {
        let mut level = rng.pick(levels);
        // '#' is only valid last; elsewhere take another pick.
        while level == "#" && i + 1 < depth {
            level = rng.pick(levels);
        }
        parts.push(level);
    }
    let f = parts.join("/");
    if f.is_empty() {
        return random_filter(rng, levels, max_depth);
    }
    assert!(
        valid_topic_filter(&f),
        "generator made invalid filter {f:?}"
    );
    f
}

// ---------------------------------------------------------------- validation

#[test]
fn topic_names() {
    for ok in [
        "a", "a/b", "/", "//", "/a", "a/", "$SYS/x", "$", " ", "ü/ß", "a b/c",
    ] {
        assert!(valid_topic_name(ok), "{ok:?} should be valid");
    }
    for bad in ["", "#", "+", "a/#", "a/+", "a+", "a#b", "a\0b", "\0"] {
        assert!(!valid_topic_name(bad), "{bad:?} should be invalid");
    }
    let longest = "x".repeat(65535);
    assert!(valid_topic_name(&longest));
    let too_long = "x".repeat(65536);
    assert!(!valid_topic_name(&too_long));
}

#[test]
fn topic_filters() {
    for ok in [
        "#", "+", "a/#", "+/+", "/", "//", "$SYS/#", "a/+/b", "+/#", "/+", "+/", "a", "$share",
    ] {
        assert!(valid_topic_filter(ok), "{ok:?} should be valid");
    }
    for bad in [
        "", "a/#/b", "#/a", "a+", "+a", "a/b#", "a/#b", "##", "++", "a/+b/c", "a\0", "\0",
    ] {
        assert!(!valid_topic_filter(bad), "{bad:?} should be invalid");
    }
    assert!(valid_topic_filter(&"x".repeat(65535)));
    assert!(!valid_topic_filter(&"x".repeat(65536)));
}

#[test]
fn shared_filters() {
    assert_eq!(parse_shared("$share/g/a/#"), Some(("g", "a/#")));
    assert_eq!(parse_shared("$share/group/+"), Some(("group", "+")));
    assert_eq!(parse_shared("$share/g//"), Some(("g", "/")));
    assert_eq!(parse_shared("$share/g"), None);
    assert_eq!(parse_shared("$share/g/"), None, "empty inner filter");
    assert_eq!(parse_shared("$share//a"), None);
    assert_eq!(parse_shared("$share/g+/a"), None);
    assert_eq!(parse_shared("$share/g#/a"), None);
    assert_eq!(parse_shared("$share/+/a"), None);
    assert_eq!(parse_shared("$share/g/a/#/b"), None);
    assert_eq!(parse_shared("$share/g\0/a"), None);
    assert_eq!(parse_shared("a/b"), None);
    assert_eq!(parse_shared("$SHARE/g/a"), None);
    assert!(is_shared("$share/g/a"));
    assert!(!is_shared("$share/"));
    assert!(!is_shared("$share/g"));
    assert!(!is_shared("$share//t"));
    assert!(!is_shared("$share"));
    assert!(!is_shared("$sharex/g/a"));
    assert!(!is_shared("a/$share/g"));
}

// ---------------------------------------------------------------- oracle

#[test]
fn oracle_cases() {
    let yes = [
        ("#", "a"),
        ("#", "a/b/c"),
        ("#", "/"),
        ("a/#", "a"),
        ("a/#", "a/b"),
        ("a/#", "a/b/c"),
        ("a/#", "a/"),
        ("+", "a"),
        ("+", ""),
        ("+/+", "/"),
        ("/+", "/a"),
        ("/+", "/"),
        ("a/+", "a/"),
        ("a/+", "a/$x"),
        ("+/x", "a/x"),
        ("$SYS/#", "$SYS"),
        ("$SYS/#", "$SYS/broker/uptime"),
        ("$SYS/+", "$SYS/x"),
        ("a/+/c", "a/b/c"),
        ("a//b", "a//b"),
        ("+/#", "a"),
        ("a", "a"),
    ];
    for (f, t) in yes {
        assert!(matches(f, t), "{f:?} should match {t:?}");
    }
    let no = [
        ("#", "$SYS/x"),
        ("#", "$SYS"),
        ("+/x", "$SYS/x"),
        ("+", "$x"),
        ("+/#", "$SYS/x"),
        ("$SYS/#", "a"),
        ("a/#", "b"),
        ("a/#", "ab"),
        ("+", "a/b"),
        ("+", "/"),
        ("a/+", "a"),
        ("a/+", "a/b/c"),
        ("/+", "a"),
        ("a", "a/b"),
        ("a/b", "a"),
        ("a", "A"),
        ("a//b", "a/b"),
    ];
    for (f, t) in no {
        assert!(!matches(f, t), "{f:?} should not match {t:?}");
    }
}

// ---------------------------------------------------------------- subscription tree

fn tree_matches(tree: &SubscriptionTree<u32>, topic: &str) -> Vec<(u32, u32)> {
    let mut got = Vec::new();
    tree.for_each_match(topic, |k, v| got.push((k, *v)));
    got.sort_unstable();
    got
}

fn model_matches(model: &BTreeMap<(String, u32), u32>, topic: &str) -> Vec<(u32, u32)> {
    let mut want: Vec<(u32, u32)> = model
        .iter()
        .filter(|((f, _), _)| matches(f, topic))
        .map(|((_, k), v)| (*k, *v))
        .collect();
    want.sort_unstable();
    want
}

#[test]
fn tree_edge_cases() {
    let mut tree = SubscriptionTree::new();
    let filters = [
        "#", "+", "+/x", "$SYS/#", "a/#", "a", "/+", "+/+", "a//b", "$SYS/+", "a/+/#",
    ];
    for (i, f) in filters.iter().enumerate() {
        assert_eq!(tree.insert(f, i as u32, i as u32), None);
    }
    let model: BTreeMap<(String, u32), u32> = filters
        .iter()
        .enumerate()
        .map(|(i, f)| ((f.to_string(), i as u32), i as u32))
        .collect();
    for topic in [
        "a", "$SYS", "$SYS/x", "$SYS/x/y", "/a", "/", "a/x", "a//b", "a/b", "a/", "b/x", "",
    ] {
        assert_eq!(
            tree_matches(&tree, topic),
            model_matches(&model, topic),
            "topic {topic:?}"
        );
    }
    // Spot checks that do not depend on the oracle being right.
    assert_eq!(tree_matches(&tree, "$SYS/x"), vec![(3, 3), (9, 9)]);
    let a: Vec<u32> = tree_matches(&tree, "a").iter().map(|p| p.0).collect();
    assert_eq!(a, vec![0, 1, 4, 5]);
}

#[test]
fn tree_insert_replace_get_remove() {
    let mut tree = SubscriptionTree::new();
    assert!(tree.is_empty());
    assert_eq!(tree.insert("a/+", 7, "one"), None);
    assert_eq!(tree.insert("a/+", 8, "two"), None);
    assert_eq!(tree.insert("a/+", 7, "three"), Some("one"));
    assert_eq!(tree.len(), 2);
    assert_eq!(tree.get("a/+", 7), Some(&"three"));
    assert_eq!(tree.get("a/+", 9), None);
    assert_eq!(tree.get("a/b", 7), None);
    assert_eq!(tree.get("a", 7), None);
    assert_eq!(tree.remove("a/b", 7), None);
    assert_eq!(tree.remove("a/+", 9), None);
    assert_eq!(tree.remove("a/+", 7), Some("three"));
    assert_eq!(tree.remove("a/+", 7), None);
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.remove("a/+", 8), Some("two"));
    assert!(tree.is_empty());
    assert_eq!(tree.live_nodes(), 2, "only the two roots remain");
}

#[test]
fn tree_random_against_oracle() {
    for (seed, levels, depth) in [
        (0x9e37_79b9_7f4a_7c15u64, FILTER_LEVELS, 4usize),
        (0x0123_4567_89ab_cdef, FILTER_LEVELS, 3),
        (0xdead_beef_cafe_f00d, FILTER_LEVELS, 5),
    ] {
        let mut rng = Rng(seed);
        let mut tree = SubscriptionTree::new();
        let mut model: BTreeMap<(String, u32), u32> = BTreeMap::new();
        for step in 0..4000u32 {
            let key = rng.below(300) as u32;
            if rng.below(3) != 0 {
                let f = random_filter(&mut rng, levels, depth);
                let prev = model.insert((f.clone(), key), step);
                assert_eq!(tree.insert(&f, key, step), prev, "insert {f:?} {key}");
            } else {
                // Mostly remove something that exists, sometimes something that doesn't.
                let target = if !model.is_empty() && rng.below(4) != 0 {
                    let i = rng.below(model.len());
                    model.keys().nth(i).cloned()
                } else {
                    Some((random_filter(&mut rng, levels, depth), key))
                };
                if let Some((f, k)) = target {
                    let prev = model.remove(&(f.clone(), k));
                    assert_eq!(tree.remove(&f, k), prev, "remove {f:?} {k}");
                }
            }
            assert_eq!(tree.len(), model.len());
            if step % 20 == 0 {
                for _ in 0..10 {
                    let topic = random_topic(&mut rng, TOPIC_LEVELS, depth + 1);
                    assert_eq!(
                        tree_matches(&tree, &topic),
                        model_matches(&model, &topic),
                        "seed {seed:#x} step {step} topic {topic:?}"
                    );
                }
                for ((f, k), v) in model.iter().take(20) {
                    assert_eq!(tree.get(f, *k), Some(v));
                }
            }
        }
        // for_each gives back exactly the model, filters rebuilt.
        let mut dumped = BTreeMap::new();
        tree.for_each(|f, k, v| {
            assert!(dumped.insert((f.to_string(), k), *v).is_none());
        });
        assert_eq!(dumped, model);
        // Removing everything leaves only the roots.
        for (f, k) in model.keys() {
            assert!(tree.remove(f, *k).is_some());
        }
        assert!(tree.is_empty());
        assert_eq!(tree.live_nodes(), 2);
        tree.for_each_match("a/b", |_, _| panic!("empty tree matched"));
    }
}

/// Many distinct levels under the same nodes, so child lists turn into hash
/// tables and back while subscribers come and go.
#[test]
fn tree_random_wide_against_oracle() {
    let names: Vec<String> = (0..40).map(|i| format!("l{i}")).collect();
    let mut topic_levels: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    topic_levels.extend(["", "$x"]);
    let mut filter_levels = topic_levels.clone();
    filter_levels.extend(["+", "+", "#"]);
    let mut rng = Rng(0x5151_2a2a_7777_0001);
    let mut tree = SubscriptionTree::new();
    let mut model: BTreeMap<(String, u32), u32> = BTreeMap::new();
    for step in 0..6000u32 {
        let key = rng.below(50) as u32;
        // Grow for a while, then shrink, twice, to cross both thresholds.
        let grow = (step / 1500) % 2 == 0;
        if rng.below(10) < if grow { 8 } else { 2 } {
            let f = random_filter(&mut rng, &filter_levels, 3);
            let prev = model.insert((f.clone(), key), step);
            assert_eq!(tree.insert(&f, key, step), prev);
        } else if !model.is_empty() {
            let i = rng.below(model.len());
            let Some((f, k)) = model.keys().nth(i).cloned() else {
                continue;
            };
            let prev = model.remove(&(f.clone(), k));
            assert_eq!(tree.remove(&f, k), prev);
        }
        if step % 50 == 0 {
            for _ in 0..10 {
                let topic = random_topic(&mut rng, &topic_levels, 3);
                assert_eq!(tree_matches(&tree, &topic), model_matches(&model, &topic));
            }
            for ((f, k), v) in &model {
                assert_eq!(tree.get(f, *k), Some(v), "get {f:?} {k}");
            }
        }
    }
    for (f, k) in model.keys() {
        assert!(tree.remove(f, *k).is_some());
    }
    assert_eq!(tree.live_nodes(), 2);
}

#[test]
fn tree_for_each_rebuilds_filters() {
    let mut tree = SubscriptionTree::new();
    let filters = [
        "#", "+", "/", "//", "a//b", "$SYS/#", "$SYS", "a/+/c/#", "/+", "+/+", "x",
    ];
    for (i, f) in filters.iter().enumerate() {
        tree.insert(f, i as u32, ());
        tree.insert(f, 1000 + i as u32, ());
    }
    let mut got = BTreeSet::new();
    tree.for_each(|f, k, _| {
        got.insert((f.to_string(), k));
    });
    let want: BTreeSet<(String, u32)> = filters
        .iter()
        .enumerate()
        .flat_map(|(i, f)| [(f.to_string(), i as u32), (f.to_string(), 1000 + i as u32)])
        .collect();
    assert_eq!(got, want);
}

#[test]
fn tree_reuses_node_slots_under_churn() {
    let mut tree = SubscriptionTree::new();
    let mut peak = None;
    for round in 0..50 {
        for i in 0..100u32 {
            tree.insert(&format!("r{round}/x/{i}"), i, i);
        }
        assert_eq!(tree.len(), 100);
        for i in 0..100u32 {
            assert_eq!(tree.remove(&format!("r{round}/x/{i}"), i), Some(i));
        }
        assert_eq!(tree.live_nodes(), 2);
        let slots = tree.arena_slots();
        match peak {
            None => peak = Some(slots),
            Some(p) => assert_eq!(slots, p, "arena grew in round {round}"),
        }
    }
    assert_eq!(peak, Some(2 + 2 + 100), "two roots, r/, x/, 100 leaves");
}

#[test]
fn tree_hundred_thousand_children() {
    let mut tree = SubscriptionTree::new();
    let n = 100_000u32;
    for i in 0..n {
        assert_eq!(tree.insert(&format!("wide/{i}"), i, i), None);
    }
    tree.insert("wide/+", n, n);
    assert_eq!(tree.len(), n as usize + 1);
    assert_eq!(
        tree_matches(&tree, "wide/77777"),
        vec![(77777, 77777), (n, n)]
    );
    assert_eq!(tree_matches(&tree, "wide/x"), vec![(n, n)]);
    for i in (0..n).step_by(2) {
        assert_eq!(tree.remove(&format!("wide/{i}"), i), Some(i));
    }
    assert_eq!(tree_matches(&tree, "wide/77776"), vec![(n, n)]);
    assert_eq!(
        tree_matches(&tree, "wide/77777"),
        vec![(77777, 77777), (n, n)]
    );
    let mut count = 0;
    tree.for_each(|_, _, _| count += 1);
    assert_eq!(count, n as usize / 2 + 1);
    for i in (1..n).step_by(2) {
        assert_eq!(tree.remove(&format!("wide/{i}"), i), Some(i));
    }
    assert_eq!(tree.remove("wide/+", n), Some(n));
    assert_eq!(tree.live_nodes(), 2);
}

/// 32768 levels is the most a valid topic can have; nothing may recurse on it.
#[test]
fn tree_deep_topics_do_not_recurse() {
    let depth = 32_768;
    let deep = vec!["a"; depth].join("/");
    let plus = vec!["+"; depth].join("/");
    let empties = "/".repeat(depth - 1);
    let mut tree = SubscriptionTree::new();
    tree.insert(&deep, 1, ());
    tree.insert(&plus, 2, ());
    tree.insert(&format!("{}/#", vec!["a"; depth - 1].join("/")), 3, ());
    tree.insert(&empties, 4, ());
    fn keys(tree: &SubscriptionTree<()>, topic: &str) -> Vec<u32> {
        let mut k = Vec::new();
        tree.for_each_match(topic, |key, _| k.push(key));
        k.sort_unstable();
        k
    }
    assert_eq!(keys(&tree, &deep), vec![1, 2, 3]);
    assert_eq!(keys(&tree, &empties), vec![2, 4]);
    assert_eq!(keys(&tree, "a/a"), Vec::<u32>::new());
    let mut count = 0;
    tree.for_each(|f, _, _| {
        assert!(f.len() >= depth - 1);
        count += 1;
    });
    assert_eq!(count, 4);
    assert_eq!(tree.remove(&deep, 1), Some(()));
    assert_eq!(tree.remove(&plus, 2), Some(()));
    assert_eq!(tree.remove(&empties, 4), Some(()));
    assert_eq!(keys(&tree, &deep), vec![3]);
}

// ---------------------------------------------------------------- retained store

fn store_matches(store: &RetainedStore<u32>, filter: &str) -> Vec<u32> {
    let mut got = Vec::new();
    store.for_each_match(filter, |v| got.push(*v));
    got.sort_unstable();
    got
}

fn model_retained(model: &BTreeMap<String, u32>, filter: &str) -> Vec<u32> {
    let mut want: Vec<u32> = model
        .iter()
        .filter(|(t, _)| matches(filter, t))
        .map(|(_, v)| *v)
        .collect();
    want.sort_unstable();
    want
}

#[test]
fn retained_edge_cases() {
    let mut store = RetainedStore::new();
    let topics = [
        "a", "a/b", "a/", "/", "/a", "$SYS", "$SYS/x", "$x/y", "a//b", "b/$x",
    ];
    let mut model = BTreeMap::new();
    for (i, t) in topics.iter().enumerate() {
        assert_eq!(store.insert(t, i as u32), None);
        model.insert(t.to_string(), i as u32);
    }
    assert_eq!(store.len(), topics.len());
    for f in [
        "#", "+", "+/#", "a/#", "$SYS/#", "+/x", "/+", "+/+", "a/+", "$SYS", "$x/+", "b/+", "a//b",
        "+/b", "c/#",
    ] {
        assert_eq!(
            store_matches(&store, f),
            model_retained(&model, f),
            "filter {f:?}"
        );
    }
    // Spot checks independent of the oracle.
    assert_eq!(store_matches(&store, "#").len(), 7, "no $ topics under #");
    assert_eq!(store_matches(&store, "$SYS/#"), vec![5, 6]);
    assert_eq!(store_matches(&store, "a/#"), vec![0, 1, 2, 8]);
    assert_eq!(store_matches(&store, "+/x"), Vec::<u32>::new());
}

#[test]
fn retained_insert_replace_get_remove() {
    let mut store = RetainedStore::new();
    assert!(store.is_empty());
    assert_eq!(store.insert("a/b", 1), None);
    assert_eq!(store.insert("a/b", 2), Some(1));
    assert_eq!(store.insert("a", 3), None);
    assert_eq!(store.len(), 2);
    assert_eq!(store.get("a/b"), Some(&2));
    assert_eq!(store.get("a"), Some(&3));
    assert_eq!(store.get("a/c"), None);
    assert_eq!(store.get("a/b/c"), None);
    assert_eq!(store.remove("a"), Some(3));
    assert_eq!(store.remove("a"), None);
    assert_eq!(
        store.get("a/b"),
        Some(&2),
        "child survives parent's removal"
    );
    assert_eq!(store.remove("a/b"), Some(2));
    assert!(store.is_empty());
    assert_eq!(store.live_nodes(), 2);
}

#[test]
fn retained_random_against_oracle() {
    for seed in [1u64, 0xfeed_face_0bad_f00d, 0x1234_5678_9abc_def0] {
        let mut rng = Rng(seed);
        let mut store = RetainedStore::new();
        let mut model: BTreeMap<String, u32> = BTreeMap::new();
        for step in 0..3000u32 {
            let topic = random_topic(&mut rng, TOPIC_LEVELS, 4);
            if rng.below(3) != 0 {
                assert_eq!(store.insert(&topic, step), model.insert(topic, step));
            } else {
                assert_eq!(store.remove(&topic), model.remove(&topic));
            }
            assert_eq!(store.len(), model.len());
            if step % 20 == 0 {
                for _ in 0..10 {
                    let filter = random_filter(&mut rng, FILTER_LEVELS, 5);
                    assert_eq!(
                        store_matches(&store, &filter),
                        model_retained(&model, &filter),
                        "seed {seed} step {step} filter {filter:?}"
                    );
                }
                for (t, v) in &model {
                    assert_eq!(store.get(t), Some(v));
                }
            }
        }
        let mut all = Vec::new();
        store.for_each(|v| all.push(*v));
        all.sort_unstable();
        let mut want: Vec<u32> = model.values().copied().collect();
        want.sort_unstable();
        assert_eq!(all, want);
        for t in model.keys() {
            assert!(store.remove(t).is_some());
        }
        assert_eq!(store.live_nodes(), 2);
    }
}

#[test]
fn retained_random_wide_against_oracle() {
    let names: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let mut levels: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    levels.extend(["", "$x"]);
    let mut filter_levels = levels.clone();
    filter_levels.extend(["+", "#"]);
    let mut rng = Rng(0xabcd_ef01_2345_6789);
    let mut store = RetainedStore::new();
    let mut model: BTreeMap<String, u32> = BTreeMap::new();
    for step in 0..8000u32 {
        let grow = (step / 2000) % 2 == 0;
        let topic = random_topic(&mut rng, &levels, 3);
        if rng.below(10) < if grow { 8 } else { 2 } {
            assert_eq!(store.insert(&topic, step), model.insert(topic, step));
        } else if !model.is_empty() {
            let i = rng.below(model.len());
            let Some(t) = model.keys().nth(i).cloned() else {
                continue;
            };
            assert_eq!(store.remove(&t), model.remove(&t));
        }
        if step % 50 == 0 {
            for _ in 0..10 {
                let filter = random_filter(&mut rng, &filter_levels, 3);
                assert_eq!(
                    store_matches(&store, &filter),
                    model_retained(&model, &filter)
                );
            }
        }
    }
    assert_eq!(store.len(), model.len());
}

#[test]
fn retained_retain_drops_and_prunes() {
    let mut store = RetainedStore::new();
    for i in 0..1000u32 {
        store.insert(&format!("r/{}/{i}", i % 7), i);
    }
    store.retain(|v| {
        *v += 1;
        *v % 2 == 0
    });
    assert_eq!(store.len(), 500);
    assert_eq!(store.get("r/1/1"), Some(&2));
    assert_eq!(store.get("r/0/0"), None);
    let got = store_matches(&store, "r/#");
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|v| v % 2 == 0));
    store.retain(|_| false);
    assert!(store.is_empty());
    assert_eq!(store.live_nodes(), 2);
    store.for_each(|_| panic!("empty store has a value"));
}

#[test]
fn retained_reuses_node_slots_under_churn() {
    let mut store = RetainedStore::new();
    let mut peak = None;
    for round in 0..50 {
        for i in 0..100u32 {
            store.insert(&format!("r{round}/x/{i}"), i);
        }
        for i in 0..100u32 {
            assert_eq!(store.remove(&format!("r{round}/x/{i}")), Some(i));
        }
        let slots = store.arena_slots();
        match peak {
            None => peak = Some(slots),
            Some(p) => assert_eq!(slots, p, "arena grew in round {round}"),
        }
    }
    assert_eq!(peak, Some(2 + 2 + 100));
}

#[test]
fn retained_hundred_thousand_topics() {
    let mut store = RetainedStore::new();
    let n = 100_000u32;
    for i in 0..n {
        assert_eq!(store.insert(&format!("bench/retained/{i}"), i), None);
    }
    assert_eq!(store.len(), n as usize);
    assert_eq!(store.get("bench/retained/12345"), Some(&12345));
    let mut count = 0usize;
    store.for_each_match("bench/retained/+", |_| count += 1);
    assert_eq!(count, n as usize);
    assert_eq!(store_matches(&store, "bench/retained/99999"), vec![99999]);
    assert_eq!(store_matches(&store, "+/+/5"), vec![5]);
    // Two roots, bench, retained, and one node per topic.
    assert_eq!(store.live_nodes(), n as usize + 4);
    for i in 0..n - 3 {
        assert_eq!(store.remove(&format!("bench/retained/{i}")), Some(i));
    }
    assert_eq!(store_matches(&store, "#"), vec![n - 3, n - 2, n - 1]);
}

#[test]
fn retained_deep_topics_do_not_recurse() {
    let depth = 32_768;
    let deep = vec!["a"; depth].join("/");
    let mut store = RetainedStore::new();
    store.insert(&deep, 1u32);
    store.insert(&"/".repeat(depth - 1), 2);
    assert_eq!(store_matches(&store, "#"), vec![1, 2]);
    assert_eq!(
        store_matches(&store, &vec!["+"; depth].join("/")),
        vec![1, 2]
    );
    assert_eq!(store_matches(&store, "a/#"), vec![1]);
    assert_eq!(store.remove(&deep), Some(1));
    assert_eq!(store.live_nodes(), 2 + depth);
}

#[test]
fn label_stays_compact() {
    // Inline labels are what keeps a retained topic's node small.
    assert_eq!(std::mem::size_of::<tree::Label>(), 24);
}

/// Overlapping subscriptions of one v5 client each get a copy, so the order
/// of matches is visible on the wire: it is Mosquitto's (literal subtree,
/// then `+`, then `#`, level by level; `x/#` before `x` at the last level).
#[test]
fn matches_come_in_mosquittos_order() {
    let mut tree = SubscriptionTree::new();
    let filters = ["#", "+/b/#", "a/#", "a/+/c", "a/b/c", "a/b/c/#", "+/+/+"];
    for (i, f) in filters.iter().enumerate() {
        tree.insert(f, i as u32, ());
    }
    let mut got = Vec::new();
    tree.for_each_match("a/b/c", |k, _| got.push(filters[k as usize]));
    assert_eq!(
        got,
        ["a/b/c/#", "a/b/c", "a/+/c", "a/#", "+/b/#", "+/+/+", "#"]
    );
}
