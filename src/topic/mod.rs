//! Topic names and filters: validation, matching, and the two tries the broker
//! routes with (`SubscriptionTree` for subscriptions, `RetainedStore` for
//! retained messages).
//!
//! This room owns the MQTT topic rules (levels split on '/', `+` and `#`
//! wildcards, `$`-topics hidden from first-level wildcards, `$share/` parsing).
//! It must not know about sessions, packets, sockets or time, and depends on
//! nothing else in the crate.

pub mod retained;
pub mod tree;

pub use retained::RetainedStore;
pub use tree::SubscriptionTree;

#[cfg(test)]
mod tests;

/// MQTT strings carry a 16-bit length prefix, so no topic can be longer.
const MAX_TOPIC_LEN: usize = 65535;

/// Valid PUBLISH topic name: non-empty, no '+' or '#', no U+0000, at most 65535 bytes.
pub fn valid_topic_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOPIC_LEN
        && memchr::memchr3(b'+', b'#', 0, s.as_bytes()).is_none()
}

/// Most `/` separators a broker accepts in a topic or filter (Mosquitto's
/// hierarchy limit: deeper ones are refused, so a client cannot make the
/// trie arbitrarily deep).
pub const MAX_TOPIC_SEPARATORS: usize = 200;

/// Whether a topic or filter has more levels than a broker accepts.
pub fn too_deep(s: &str) -> bool {
    // Each separator is a byte, so a short string cannot be too deep.
    s.len() > MAX_TOPIC_SEPARATORS
        && memchr::memchr_iter(b'/', s.as_bytes()).count() > MAX_TOPIC_SEPARATORS
}

/// Valid SUBSCRIBE filter: non-empty, at most 65535 bytes, '#' only as a whole
/// last level, '+' only as a whole level, no U+0000.
pub fn valid_topic_filter(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_TOPIC_LEN || memchr::memchr(0, s.as_bytes()).is_some() {
        return false;
    }
    let mut levels = s.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "#" => {
                if levels.peek().is_some() {
                    return false;
                }
            }
            "+" => {}
            _ => {
                if level.contains(['+', '#']) {
                    return false;
                }
            }
        }
    }
    true
}

/// Naive reference matcher: the oracle for the trie tests, and fine for
/// one-off checks such as ACLs. Assumes a valid filter and topic name, but
/// never panics on anything.
///
/// MQTT rules: `+` matches exactly one level (possibly empty), `#` matches the
/// rest including the parent level (`a/#` matches `a`), and a `+` or `#` in the
/// FIRST level never matches a topic starting with '$'.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') {
        let first = filter.split('/').next().unwrap_or("");
        if first == "+" || first == "#" {
            return false;
        }
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some(fl), Some(tl)) => {
                if fl != "+" && fl != tl {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `$share/<group>/<filter>` -> `Some((group, filter))`; the group must be
/// non-empty without '+', '#', '/' or U+0000 and the filter must be valid;
/// anything else is `None`.
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#', '\0']) || !valid_topic_filter(inner) {
        return None;
    }
    Some((group, inner))
}

/// True if the filter is a well-formed shared subscription. A filter that
/// starts with "$share/" but has no group or no inner filter (`$share/g`,
/// `$share//t`) is, as in Mosquitto 2.0.11, an ordinary filter.
pub fn is_shared(filter: &str) -> bool {
    parse_shared(filter).is_some()
}
