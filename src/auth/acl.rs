//! auth::acl: Mosquitto 2.0 ACL files (`acl_file`).
//!
//! Owns: parsing an ACL file into per-user topic rules and global patterns,
//! and answering "may this client read / write / subscribe / unsubscribe this
//! topic?" exactly as Mosquitto 2.0.11's built-in ACL check does. Also owns
//! Mosquitto's broker-wide rule for `$`-topics ([`dollar_topic_allowed`]),
//! which applies whether or not an ACL file is configured.
//!
//! Must not: touch sockets, the clock or the log (pattern warnings are
//! handed back through [`AclFile::warnings`]); must not know about sessions
//! or bridges (bridge connections bypass ACLs in Mosquitto: the caller skips
//! the check for them). Checks run on every delivery, so they never allocate.
//!
//! # Facts verified against the real Mosquitto 2.0.11
//!
//! Each was checked by running `mosquitto -c conf` on a loopback port with
//! `allow_anonymous true`, `password_file` (made with `mosquitto_passwd -b`)
//! and `acl_file`, then `mosquitto_sub -d -v -W 2 -C 1 -t F` in the
//! background plus `mosquitto_pub -q 1 -t T` (with `-u/-P` or `-i` as
//! needed); "delivered" means the subscriber printed the message, "write
//! denied" means the broker logged `Denied PUBLISH` (`log_type all`).
//! Start-up errors came from `mosquitto -c conf` with one bad ACL line.
//!
//! Lines:
//! - `\n` ends a line; trailing whitespace (C `isspace`, so `\r` too: CRLF
//!   files work) is stripped first. A line is a comment only if its FIRST
//!   byte is `#`: `  # x` is refused as `Invalid line ... "  #"`. Blank and
//!   all-space lines are skipped.
//! - Words are split on single spaces only (C `strtok(" ")`; runs of spaces
//!   count as one, leading spaces are fine). A tab is not a separator:
//!   `topic<TAB>read<TAB>a` and `user<TAB>b` are refused as invalid lines.
//! - Keywords are case-sensitive: `Topic read a` is refused.
//! - `topic [read|write|readwrite|deny] <topic>`: the topic is the rest of the
//!   line after the access word, trimmed, so it may contain spaces
//!   (`topic read   a b  ` grants read on `a b`). Without an access word the
//!   rule is readwrite, so `topic a b` is refused (`Invalid topic access
//!   type "a"`), and `topic read` alone is a readwrite rule on the topic
//!   `read` (same for `topic deny`: topic `deny`; both delivered/accepted).
//! - `user <name>`: the name is the rest of the line, trimmed; spaces allowed
//!   (a user `sp ace` got its rules). A second block for the same user adds
//!   to the first. `user` with no name is refused.
//! - Start-up is refused (exit 3) on: unknown keyword (`Invalid line`),
//!   `topic`/`pattern` with nothing after it (`Empty topic`), a bad access
//!   word (`Invalid topic access type "bogus"`), a topic that is not a valid
//!   filter such as `a/#/b` or `a+` (`Invalid ACL topic "a+"`), `user` with no
//!   name (`Missing username`). `parse` returns these as `file:line: ...`.
//! - A `pattern` without `%c` or `%u` loads with a warning:
//!   `Warning: ACL pattern 'pa/#' does not contain '%c' or '%u'.`
//!
//! Who gets which rules:
//! - `topic` lines before the first `user` line apply only to clients with
//!   no username; a named user without a block gets no `topic` rules at all
//!   (not the anonymous ones), only patterns.
//! - `pattern` lines apply to every client wherever they appear. `%c` and
//!   `%u` are replaced anywhere in the text (`in/x%cx` matched `in/xmyidx`
//!   for client id `myid`). A pattern containing `%u` never applies to a
//!   client without a username (`u/%u/1` did not deliver `u/%u/1` nor
//!   `u//1`). A client id containing `/` spans levels: id `a/b` with
//!   `pattern readwrite c/%c/#` was delivered `c/a/b/z`.
//! - If any pattern exists, a client whose username or client id contains
//!   `+` or `#` is refused by every check that its `topic` rules did not
//!   already allow (`ACL denying access to client with dangerous client id
//!   "my+id"`), even for patterns without `%c`/`%u`; its own anonymous
//!   `topic read anon/r` still delivered. (This is the ACL file's own guard;
//!   `auth_plugin_deny_special_chars` is the separate guard for plugins.)
//! - An ACL file with no rules for a client (even an empty file) denies all
//!   reads and writes for it.
//!
//! Order of evaluation (read = delivery to the client, write = its PUBLISH):
//! 1. The client's `topic` rules: any matching `deny` refuses, whatever its
//!    position in the file (deny before or after the allow: both refused).
//! 2. Any of its matching `topic` rules with the access allows, and this
//!    beats a matching `pattern deny` (`topic read pt/allowed` delivered
//!    despite `pattern deny pt/allowed`), while a `topic deny` beats a
//!    `pattern read` (`topic deny pa/x` + `pattern read pa/#`: refused).
//! 3. The `+`/`#` guard above, then patterns: a matching `pattern deny`
//!    refuses, a matching pattern with the access allows.
//! 4. Otherwise refused. `deny` refuses reads and writes alike.
//!
//! Subscribe and unsubscribe: always allowed by the ACL file. Subscribing to
//! `#`, `x/y` or `$SYS/#` with no matching read rule got SUBACK granted QoS 0
//! (v3.1.1 and v5); the ACL then filters each message at delivery (`#` with
//! only `topic read a/b` received `a/b` and not `a/c`). Unsubscribe always
//! got reason code 0.
//!
//! `$` topics:
//! - Rules whose text does not start with `$` never match `$` topics:
//!   `topic read #` did not deliver `$SYS/broker/version` nor `$foo/bar`;
//!   `topic $SYS/#` did; `topic write #` could not publish `$foo/bar`.
//! - Broker-wide, even with no ACL file ([`dollar_topic_allowed`]): PUBLISH
//!   to a topic starting with `$SYS` is refused (`$SYS/foo`, `$SYS`, `$SYSx`),
//!   even with `topic $SYS/#` readwrite, except
//!   `$SYS/broker/connection/+/state` (bridge status), which was delivered.
//!   PUBLISH to a topic starting with `$share` is refused (`$share/g/x`,
//!   `$sharex`). Other `$` topics (`$foo/bar`) are left to the ACL file.
//!   Reading `$SYS` is allowed by this rule (then the ACL file decides).

use std::collections::HashMap;
use std::iter::Peekable;
use std::path::Path;

use crate::topic::{matches, valid_topic_filter};

/// What a client wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A message on this topic is about to be delivered to the client.
    Read,
    /// The client sent a PUBLISH on this topic.
    Write,
    /// The client sent a SUBSCRIBE with this filter.
    Subscribe,
    /// The client sent an UNSUBSCRIBE with this filter.
    Unsubscribe,
}

/// Access bits of a rule; a `deny` rule has none (Mosquitto's MOSQ_ACL_NONE).
const READ: u8 = 1;
const WRITE: u8 = 2;
const READWRITE: u8 = READ | WRITE;
const DENY: u8 = 0;

/// An allowing `topic` rule.
#[derive(Debug)]
struct Grant {
    filter: Box<str>,
    access: u8,
}

/// The `topic` rules of one user (or of anonymous clients). Mosquitto keeps
/// denies at the front of one list and stops at the first decisive match;
/// two lists give the same answer and let a check skip rules early.
#[derive(Debug, Default)]
struct TopicRules {
    deny: Vec<Box<str>>,
    allow: Vec<Grant>,
}

/// A `pattern` rule, kept as written: `%c` / `%u` are substituted while
/// matching, so a check needs no buffer.
#[derive(Debug)]
struct Pattern {
    text: Box<str>,
    access: u8,
    /// Contains `%u`: never applies to a client without a username.
    uses_username: bool,
}

/// A parsed ACL file.
#[derive(Debug, Default)]
pub struct AclFile {
    /// `topic` lines before the first `user` line; `None` if there were none.
    anonymous: Option<TopicRules>,
    users: HashMap<Box<str>, TopicRules>,
    deny_patterns: Vec<Pattern>,
    allow_patterns: Vec<Pattern>,
    rule_count: usize,
    warnings: Vec<String>,
}

impl AclFile {
    /// Parses ACL file text. `Err` is `"<file_name>:<line>: <message>"` with
    /// Mosquitto's wording, for every line Mosquitto refuses to start with.
    pub fn parse(text: &str, file_name: &str) -> Result<AclFile, String> {
        Self::parse_bytes(text.as_bytes(), file_name)
    }

    /// Like [`AclFile::parse`] for raw file bytes. Mosquitto reads the file
    /// with C strings, so a line ends at a NUL byte; bytes that are not UTF-8
    /// are replaced (no MQTT topic can contain them, so nothing is lost).
    pub fn parse_bytes(text: &[u8], file_name: &str) -> Result<AclFile, String> {
        let mut acl = AclFile::default();
        let mut user: Option<Box<str>> = None;
        for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
            let raw = match memchr::memchr(0, raw) {
                Some(nul) => raw.get(..nul).unwrap_or(raw),
                None => raw,
            };
            let line = String::from_utf8_lossy(raw);
            let line = line.trim_end_matches(is_c_space);
            if line.starts_with('#') {
                continue;
            }
            let at = |message: String| format!("{file_name}:{}: {message}", index + 1);
            let mut words = StrTok { rest: line };
            let Some(keyword) = words.word() else {
                continue;
            };
            match keyword {
                "topic" | "pattern" => {
                    let Some(first) = words.word() else {
                        return Err(at("Empty topic in acl_file.".to_owned()));
                    };
                    let (access_word, topic) = match words.rest_of_line() {
                        Some(rest) => (Some(first), rest.trim_matches(is_c_space)),
                        None => (None, first),
                    };
                    let access = match access_word {
                        None | Some("readwrite") => READWRITE,
                        Some("read") => READ,
                        Some("write") => WRITE,
                        Some("deny") => DENY,
                        Some(other) => {
                            return Err(at(format!(
                                "Invalid topic access type \"{other}\" in acl_file."
                            )))
                        }
                    };
                    if !valid_topic_filter(topic) {
                        return Err(at(format!("Invalid ACL topic \"{topic}\" in acl_file.")));
                    }
                    if keyword == "topic" {
                        acl.add_topic(user.as_deref(), topic, access);
                    } else {
                        acl.add_pattern(topic, access);
                    }
                    acl.rule_count += 1;
                }
                "user" => match words.rest_of_line() {
                    Some(rest) => user = Some(rest.trim_matches(is_c_space).into()),
                    None => return Err(at("Missing username in acl_file.".to_owned())),
                },
                _ => {
                    // Mosquitto prints the line up to the end of its first word
                    // (strtok has cut it there), leading spaces included.
                    let shown = line.len() - words.rest.len();
                    let shown = line.get(..shown).unwrap_or(line).trim_end_matches(' ');
                    return Err(at(format!("Invalid line in acl_file: {shown}.")));
                }
            }
        }
        Ok(acl)
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<AclFile, String> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse_bytes(&bytes, &path.display().to_string()),
            Err(err) => Err(format!(
                "Error: Unable to open acl_file \"{}\": {}.",
                path.display(),
                super::password::os_error_text(&err)
            )),
        }
    }

    /// May this client do `access` on `topic`? `topic` is a topic name for
    /// `Read`/`Write` and a filter for `Subscribe`/`Unsubscribe`. This is the
    /// ACL file alone: the caller also applies [`dollar_topic_allowed`] and
    /// skips ACLs for bridges, as Mosquitto does.
    pub fn check(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
        access: Access,
    ) -> bool {
        let bit = match access {
            Access::Read => READ,
            Access::Write => WRITE,
            // Mosquitto 2.0's ACL file never refuses (un)subscribing; reads
            // are checked per message at delivery instead.
            Access::Subscribe | Access::Unsubscribe => return true,
        };
        if topic.is_empty() {
            return false;
        }
        let rules = match username {
            None => self.anonymous.as_ref(),
            Some(name) => self.users.get(name),
        };
        if let Some(rules) = rules {
            if rules.deny.iter().any(|filter| matches(filter, topic)) {
                return false;
            }
            if rules
                .allow
                .iter()
                .any(|grant| grant.access & bit != 0 && matches(&grant.filter, topic))
            {
                return true;
            }
        }
        if self.deny_patterns.is_empty() && self.allow_patterns.is_empty() {
            return false;
        }
        // Without this guard a client id like `#` would turn `%c/#` into a
        // grant on everything (CVE-2017-7650).
        if has_wildcard(client_id) || username.is_some_and(has_wildcard) {
            return false;
        }
        let applies = |p: &&Pattern| !(p.uses_username && username.is_none());
        if self
            .deny_patterns
            .iter()
            .filter(applies)
            .any(|p| pattern_matches(&p.text, client_id, username, topic))
        {
            return false;
        }
        self.allow_patterns
            .iter()
            .filter(applies)
            .any(|p| p.access & bit != 0 && pattern_matches(&p.text, client_id, username, topic))
    }

    /// Number of `topic` and `pattern` lines loaded.
    pub fn rule_count(&self) -> usize {
        self.rule_count
    }

    /// Warnings Mosquitto logs while loading (patterns without `%c`/`%u`),
    /// in Mosquitto's wording, for the caller to log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn add_topic(&mut self, user: Option<&str>, filter: &str, access: u8) {
        let rules = match user {
            None => self.anonymous.get_or_insert_with(TopicRules::default),
            Some(name) => self.users.entry(name.into()).or_default(),
        };
        if access == DENY {
            rules.deny.push(filter.into());
        } else {
            rules.allow.push(Grant {
                filter: filter.into(),
                access,
            });
        }
    }

    fn add_pattern(&mut self, text: &str, access: u8) {
        let uses_client_id = text.contains("%c");
        let uses_username = text.contains("%u");
        if !uses_client_id && !uses_username {
            self.warnings.push(format!(
                "Warning: ACL pattern '{text}' does not contain '%c' or '%u'."
            ));
        }
        let pattern = Pattern {
            text: text.into(),
            access,
            uses_username,
        };
        if access == DENY {
            self.deny_patterns.push(pattern);
        } else {
            self.allow_patterns.push(pattern);
        }
    }
}

/// Mosquitto's broker-wide check on `$` topics, made before any ACL (and
/// when there is no ACL file at all); bridges are exempt (caller's job).
/// Publishing under `$SYS` is refused except bridge status topics
/// `$SYS/broker/connection/<name>/state`; publishing under `$share` is
/// refused, (un)subscribing to it is allowed. Prefixes are raw text:
/// `$SYSx` counts as `$SYS`, as in Mosquitto.
pub fn dollar_topic_allowed(topic: &str, access: Access) -> bool {
    if topic.starts_with("$SYS") {
        access != Access::Write || matches("$SYS/broker/connection/+/state", topic)
    } else if topic.starts_with("$share") {
        matches!(access, Access::Subscribe | Access::Unsubscribe)
    } else {
        true
    }
}

/// C `isspace` in the "C" locale.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn has_wildcard(s: &str) -> bool {
    memchr::memchr2(b'+', b'#', s.as_bytes()).is_some()
}

/// C `strtok_r` over one line with `" "` as the delimiter set.
struct StrTok<'a> {
    rest: &'a str,
}

impl<'a> StrTok<'a> {
    /// Next space-delimited word; consumes the one space that ends it.
    fn word(&mut self) -> Option<&'a str> {
        let s = self.rest.trim_start_matches(' ');
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        match s.split_once(' ') {
            Some((word, rest)) => {
                self.rest = rest;
                Some(word)
            }
            None => {
                self.rest = "";
                Some(s)
            }
        }
    }

    /// `strtok_r(NULL, "", ...)`: everything after the last word's delimiter,
    /// or `None` when nothing is left.
    fn rest_of_line(&mut self) -> Option<&'a str> {
        let rest = std::mem::take(&mut self.rest);
        (!rest.is_empty()).then_some(rest)
    }
}

/// The bytes of a pattern with `%c` / `%u` substituted, produced on the fly.
/// Each byte says whether it came from the pattern text itself: only those
/// can be wildcards (the `+`/`#` guard in `check` already refuses ids and
/// usernames containing them; this keeps the matcher safe on its own).
struct Expand<'a> {
    text: &'a [u8],
    at: usize,
    insert: &'a [u8],
    insert_at: usize,
    client_id: &'a [u8],
    username: Option<&'a [u8]>,
}

impl<'a> Expand<'a> {
    fn new(text: &'a str, client_id: &'a str, username: Option<&'a str>) -> Self {
        Expand {
            text: text.as_bytes(),
            at: 0,
            insert: &[],
            insert_at: 0,
            client_id: client_id.as_bytes(),
            username: username.map(str::as_bytes),
        }
    }
}

impl Iterator for Expand<'_> {
    type Item = (u8, bool);

    fn next(&mut self) -> Option<(u8, bool)> {
        loop {
            if let Some(&b) = self.insert.get(self.insert_at) {
                self.insert_at += 1;
                return Some((b, false));
            }
            let &b = self.text.get(self.at)?;
            if b == b'%' {
                // Same scan as Mosquitto: `%c` always, `%u` only with a
                // username (a `%u` pattern is skipped for anonymous clients).
                let insert = match (self.text.get(self.at + 1), self.username) {
                    (Some(b'c'), _) => Some(self.client_id),
                    (Some(b'u'), Some(name)) => Some(name),
                    _ => None,
                };
                if let Some(insert) = insert {
                    self.insert = insert;
                    self.insert_at = 0;
                    self.at += 2;
                    continue;
                }
            }
            self.at += 1;
            return Some((b, true));
        }
    }
}

/// Does the pattern, after substitution, match `topic` as an MQTT filter?
/// Same answers as substituting into a string and calling
/// [`crate::topic::matches`] (tested against it), without the string.
fn pattern_matches(text: &str, client_id: &str, username: Option<&str>, topic: &str) -> bool {
    stream_matches(
        Expand::new(text, client_id, username).peekable(),
        topic.as_bytes(),
    )
}

fn stream_matches<I: Iterator<Item = (u8, bool)>>(mut filter: Peekable<I>, topic: &[u8]) -> bool {
    let (Some(&(first, _)), Some(&topic_first)) = (filter.peek(), topic.first()) else {
        return false;
    };
    // A filter reaches `$` topics only if it starts with `$` itself.
    if (first == b'$') != (topic_first == b'$') {
        return false;
    }
    let mut at = 0;
    loop {
        // Here both the filter and the topic are at the start of a level.
        match filter.peek() {
            Some(&(b'#', true)) => return true,
            Some(&(b'+', true)) => {
                filter.next();
                while topic.get(at).is_some_and(|&b| b != b'/') {
                    at += 1;
                }
            }
            _ => {
                while let Some(&(b, _)) = filter.peek() {
                    if b == b'/' {
                        break;
                    }
                    if topic.get(at) != Some(&b) {
                        return false;
                    }
                    at += 1;
                    filter.next();
                }
                if topic.get(at).is_some_and(|&b| b != b'/') {
                    return false;
                }
            }
        }
        // Both at a level boundary: end of string or a '/'.
        if filter.next().is_none() {
            return at == topic.len();
        }
        if at == topic.len() {
            // `a/#` also matches `a`.
            return filter.next() == Some((b'#', true)) && filter.next().is_none();
        }
        at += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> AclFile {
        match AclFile::parse(text, "acl") {
            Ok(acl) => acl,
            Err(e) => panic!("unexpected parse error: {e}"),
        }
    }

    fn err(text: &str) -> String {
        match AclFile::parse(text, "acl") {
            Ok(_) => panic!("expected a parse error for {text:?}"),
            Err(e) => e,
        }
    }

    const ANON: Option<&str> = None;

    fn can(a: &AclFile, user: Option<&str>, topic: &str, access: Access) -> bool {
        a.check("cid", user, topic, access)
    }

    #[test]
    fn read_write_readwrite_and_default_access() {
        let a = acl("topic read r/x\ntopic write w/x\ntopic readwrite rw/x\ntopic d/x\n");
        assert!(can(&a, ANON, "r/x", Access::Read));
        assert!(!can(&a, ANON, "r/x", Access::Write));
        assert!(can(&a, ANON, "w/x", Access::Write));
        assert!(!can(&a, ANON, "w/x", Access::Read));
        for t in ["rw/x", "d/x"] {
            assert!(can(&a, ANON, t, Access::Read), "{t}");
            assert!(can(&a, ANON, t, Access::Write), "{t}");
        }
        assert!(!can(&a, ANON, "other", Access::Read));
        assert!(!can(&a, ANON, "other", Access::Write));
        assert_eq!(a.rule_count(), 4);
    }

    #[test]
    fn deny_wins_whatever_the_order() {
        let a = acl("topic deny s/secret\ntopic read s/#\ntopic write w/#\ntopic deny w/secret\n");
        assert!(can(&a, ANON, "s/other", Access::Read));
        assert!(!can(&a, ANON, "s/secret", Access::Read));
        assert!(can(&a, ANON, "w/x", Access::Write));
        assert!(!can(&a, ANON, "w/secret", Access::Write));
        // A deny refuses both directions.
        let a = acl("topic readwrite x/#\ntopic deny x/+/no\n");
        assert!(!can(&a, ANON, "x/a/no", Access::Read));
        assert!(!can(&a, ANON, "x/a/no", Access::Write));
        assert!(can(&a, ANON, "x/a/yes", Access::Write));
    }

    #[test]
    fn anonymous_rules_come_before_the_first_user() {
        let a = acl("topic anon/r\nuser alice\ntopic al/r\nuser bob\ntopic read bob/#\n");
        assert!(can(&a, ANON, "anon/r", Access::Read));
        assert!(!can(&a, ANON, "al/r", Access::Read));
        assert!(can(&a, Some("alice"), "al/r", Access::Write));
        assert!(!can(&a, Some("alice"), "anon/r", Access::Read));
        assert!(!can(&a, Some("alice"), "bob/x", Access::Read));
        assert!(can(&a, Some("bob"), "bob/x", Access::Read));
        // A named user without a block gets nothing, not the anonymous rules.
        assert!(!can(&a, Some("dave"), "anon/r", Access::Read));
        // An empty username is a username, not anonymous.
        assert!(!can(&a, Some(""), "anon/r", Access::Read));
        // Usernames are compared exactly.
        assert!(!can(&a, Some("Alice"), "al/r", Access::Read));
    }

    #[test]
    fn user_blocks_merge_and_names_may_have_spaces() {
        let a = acl("user alice\ntopic read a1\nuser sp ace\ntopic read s/t\nuser alice\ntopic read a2\nuser    bob  \t\ntopic b\n");
        assert!(can(&a, Some("alice"), "a1", Access::Read));
        assert!(can(&a, Some("alice"), "a2", Access::Read));
        assert!(can(&a, Some("sp ace"), "s/t", Access::Read));
        assert!(!can(&a, Some("sp"), "s/t", Access::Read));
        assert!(can(&a, Some("bob"), "b", Access::Read));
    }

    #[test]
    fn no_rules_means_denied() {
        for text in ["", "# only a comment\nuser alice\n"] {
            let a = acl(text);
            assert_eq!(a.rule_count(), 0);
            assert!(!can(&a, ANON, "x", Access::Read));
            assert!(!can(&a, Some("alice"), "x", Access::Write));
            // Subscribing is never refused by the ACL file.
            assert!(can(&a, Some("alice"), "#", Access::Subscribe));
        }
    }

    #[test]
    fn wildcard_rules() {
        let a = acl("topic read sensors/#\ntopic write cmd/+/set\n");
        assert!(can(&a, ANON, "sensors", Access::Read));
        assert!(can(&a, ANON, "sensors/a/b", Access::Read));
        assert!(!can(&a, ANON, "sensorsx", Access::Read));
        assert!(can(&a, ANON, "cmd/lamp/set", Access::Write));
        assert!(!can(&a, ANON, "cmd/lamp/x/set", Access::Write));
        assert!(!can(&a, ANON, "cmd/set", Access::Write));
        assert!(!can(&a, ANON, "", Access::Read));
    }

    #[test]
    fn subscribe_and_unsubscribe_are_always_allowed() {
        // Mosquitto 2.0.11 grants every SUBSCRIBE; delivery is filtered.
        let a = acl("topic read a/b\nuser alice\ntopic deny sensors/#\n");
        for f in [
            "#",
            "a/b",
            "a/#",
            "sensors/+/b",
            "x/y",
            "$SYS/#",
            "$share/g/#",
        ] {
            assert!(can(&a, ANON, f, Access::Subscribe), "{f}");
            assert!(can(&a, ANON, f, Access::Unsubscribe), "{f}");
            assert!(can(&a, Some("alice"), f, Access::Subscribe), "{f}");
        }
        // ...and after subscribing to `#`, only `a/b` is delivered.
        assert!(can(&a, ANON, "a/b", Access::Read));
        assert!(!can(&a, ANON, "a/c", Access::Read));
        assert!(!can(&a, Some("alice"), "sensors/x", Access::Read));
    }

    #[test]
    fn patterns_substitute_client_id_and_username() {
        let a = acl("pattern readwrite c/%c/#\npattern read u/%u/#\npattern read in/x%cx\n");
        assert!(a.check("myid", None, "c/myid/q", Access::Write));
        assert!(a.check("myid", None, "c/myid", Access::Read));
        assert!(!a.check("myid", None, "c/other/q", Access::Read));
        assert!(a.check("myid", None, "in/xmyidx", Access::Read));
        assert!(!a.check("myid", None, "in/xotherx", Access::Read));
        assert!(a.check("id", Some("dave"), "u/dave/1", Access::Read));
        assert!(!a.check("id", Some("dave"), "u/dave/1", Access::Write));
        assert!(!a.check("id", Some("dave"), "u/eve/1", Access::Read));
        // %u never applies to anonymous clients, not even literally.
        assert!(!a.check("id", None, "u/%u/1", Access::Read));
        assert!(!a.check("id", None, "u//1", Access::Read));
        // A '/' in the client id spans levels (Mosquitto 2.0 allows it).
        assert!(a.check("a/b", None, "c/a/b/z", Access::Read));
        // Patterns apply to named users too, wherever they appear.
        let a = acl("user alice\ntopic read x\npattern write p/%u\n");
        assert!(a.check("id", Some("alice"), "p/alice", Access::Write));
        assert!(a.check("id", Some("bob"), "p/bob", Access::Write));
        assert!(!a.check("id", Some("bob"), "p/alice", Access::Write));
    }

    #[test]
    fn percent_scanning_matches_mosquitto() {
        let a = acl("pattern read a/%%c\npattern read b/%x/%\npattern read c/%c%u\n");
        assert!(a.check("id", None, "a/%id", Access::Read));
        assert!(a.check("id", None, "b/%x/%", Access::Read));
        assert!(a.check("id", Some("u"), "c/idu", Access::Read));
    }

    #[test]
    fn wildcards_in_names_never_widen_access() {
        let a = acl("topic read anon/r\npattern read c/%c\npattern read u/%u\npattern read pa/#\n");
        for id in ["+", "#", "my+id", "my#id"] {
            assert!(!a.check(id, None, "c/x", Access::Read), "{id}");
            assert!(!a.check(id, None, &format!("c/{id}"), Access::Read), "{id}");
            // The guard refuses even patterns without %c/%u...
            assert!(!a.check(id, None, "pa/y", Access::Read), "{id}");
            // ...but the client's own topic rules still apply.
            assert!(a.check(id, None, "anon/r", Access::Read), "{id}");
        }
        assert!(!a.check("id", Some("ev+il"), "u/x", Access::Read));
        assert!(!a.check("id", Some("#"), "pa/y", Access::Read));
        assert!(a.check("id", Some("good"), "pa/y", Access::Read));
        // Without patterns there is no guard to trip.
        let a = acl("topic read anon/r\n");
        assert!(a.check("my+id", None, "anon/r", Access::Read));
    }

    #[test]
    fn topic_rules_are_checked_before_patterns() {
        let a = acl("user alice\ntopic read pt/allowed\nuser carol\ntopic deny pa/x\npattern deny pt/allowed\npattern read pa/#\n");
        // A topic allow beats a pattern deny...
        assert!(a.check("id", Some("alice"), "pt/allowed", Access::Read));
        assert!(!a.check("id", Some("bob"), "pt/allowed", Access::Read));
        // ...and a topic deny beats a pattern allow.
        assert!(!a.check("id", Some("carol"), "pa/x", Access::Read));
        assert!(a.check("id", Some("carol"), "pa/y", Access::Read));
        // Pattern denies win over pattern allows.
        let a = acl("pattern read d/%c/#\npattern deny d/%c/secret\n");
        assert!(a.check("id", None, "d/id/x", Access::Read));
        assert!(!a.check("id", None, "d/id/secret", Access::Read));
        // A deny pattern using %u does not apply to anonymous clients.
        let a = acl("pattern read d/#\npattern deny d/%u\n");
        assert!(a.check("id", None, "d/", Access::Read));
        assert!(!a.check("id", Some(""), "d/", Access::Read));
    }

    #[test]
    fn dollar_topics_need_dollar_rules() {
        let a = acl("topic read #\nuser bob\ntopic $SYS/#\ntopic $foo/#\nuser eve\ntopic +/#\npattern read %c/#\n");
        assert!(!can(&a, ANON, "$SYS/broker/version", Access::Read));
        assert!(!can(&a, ANON, "$foo/bar", Access::Read));
        assert!(can(&a, ANON, "a/b", Access::Read));
        assert!(can(&a, Some("bob"), "$SYS/broker/version", Access::Read));
        assert!(can(&a, Some("bob"), "$foo/bar", Access::Write));
        assert!(!can(&a, Some("eve"), "$foo/bar", Access::Write));
        // A client id starting with '$' makes a pattern that reaches `$` topics.
        assert!(a.check("$x", None, "$x/y", Access::Read));
        assert!(!a.check("x", None, "$x/y", Access::Read));
    }

    #[test]
    fn dollar_topic_rule_is_broker_wide() {
        use Access::*;
        assert!(!dollar_topic_allowed("$SYS/foo", Write));
        assert!(!dollar_topic_allowed("$SYS", Write));
        assert!(!dollar_topic_allowed("$SYSx", Write));
        assert!(dollar_topic_allowed(
            "$SYS/broker/connection/br1/state",
            Write
        ));
        assert!(!dollar_topic_allowed(
            "$SYS/broker/connection/br1/state/x",
            Write
        ));
        for a in [Read, Subscribe, Unsubscribe] {
            assert!(dollar_topic_allowed("$SYS/broker/version", a));
        }
        assert!(!dollar_topic_allowed("$share/g/x", Write));
        assert!(!dollar_topic_allowed("$sharex", Write));
        assert!(!dollar_topic_allowed("$share/g/x", Read));
        assert!(dollar_topic_allowed("$share/g/x", Subscribe));
        assert!(dollar_topic_allowed("$share/g/x", Unsubscribe));
        assert!(dollar_topic_allowed("$foo/bar", Write));
        assert!(dollar_topic_allowed("a/b", Write));
    }

    #[test]
    fn line_syntax() {
        // Comments only in column 0, blank and all-space lines, CRLF, tabs
        // and spaces around the topic and the username.
        let a = acl("# c\n\n   \r\ntopic read \ttab/t\t\r\ntopic read   a b  \r\ntopic   write   w\nuser    alice   \t\r\ntopic read al/t\r\n");
        assert!(can(&a, ANON, "tab/t", Access::Read));
        assert!(can(&a, ANON, "a b", Access::Read));
        assert!(!can(&a, ANON, "a b", Access::Write));
        assert!(can(&a, ANON, "w", Access::Write));
        assert!(can(&a, Some("alice"), "al/t", Access::Read));
        assert_eq!(a.rule_count(), 4);
        // `topic read` alone is a readwrite rule on the topic `read`.
        let a = acl("topic read\ntopic deny\n  topic x\n");
        assert!(can(&a, ANON, "read", Access::Write));
        assert!(can(&a, ANON, "deny", Access::Write));
        assert!(can(&a, ANON, "x", Access::Read));
        // A NUL ends the line, as in C.
        let a = acl("topic read a\0bc\n");
        assert!(can(&a, ANON, "a", Access::Read));
    }

    #[test]
    fn malformed_lines_refuse_to_load() {
        assert_eq!(
            err("topic read a\nfoo bar\n"),
            "acl:2: Invalid line in acl_file: foo."
        );
        assert_eq!(
            err("  # indented\n"),
            "acl:1: Invalid line in acl_file:   #."
        );
        assert_eq!(
            err("topic\tread\ta\n"),
            "acl:1: Invalid line in acl_file: topic\tread\ta."
        );
        assert_eq!(
            err("\ttopic read a\n"),
            "acl:1: Invalid line in acl_file: \ttopic."
        );
        assert_eq!(
            err("Topic read a\n"),
            "acl:1: Invalid line in acl_file: Topic."
        );
        assert_eq!(
            err("user a\nuser\tb\n"),
            "acl:2: Invalid line in acl_file: user\tb."
        );
        assert_eq!(err("\n\ntopic\n"), "acl:3: Empty topic in acl_file.");
        assert_eq!(err("pattern   \n"), "acl:1: Empty topic in acl_file.");
        assert_eq!(
            err("topic bogus a/b\n"),
            "acl:1: Invalid topic access type \"bogus\" in acl_file."
        );
        assert_eq!(
            err("pattern foo a/%c\n"),
            "acl:1: Invalid topic access type \"foo\" in acl_file."
        );
        assert_eq!(
            err("topic a b\n"),
            "acl:1: Invalid topic access type \"a\" in acl_file."
        );
        assert_eq!(
            err("topic READ a\n"),
            "acl:1: Invalid topic access type \"READ\" in acl_file."
        );
        assert_eq!(
            err("topic read a/#/b\n"),
            "acl:1: Invalid ACL topic \"a/#/b\" in acl_file."
        );
        assert_eq!(
            err("pattern read a+\n"),
            "acl:1: Invalid ACL topic \"a+\" in acl_file."
        );
        assert_eq!(err("user\n"), "acl:1: Missing username in acl_file.");
        assert_eq!(err("user   \r\n"), "acl:1: Missing username in acl_file.");
        let long = format!("topic read {}\n", "a".repeat(65536));
        assert!(err(&long).starts_with("acl:1: Invalid ACL topic"));
    }

    #[test]
    fn pattern_warnings() {
        let a = acl("pattern read pa/#\npattern read %c/x\npattern write %u\n");
        assert_eq!(
            a.warnings(),
            ["Warning: ACL pattern 'pa/#' does not contain '%c' or '%u'."]
        );
        assert_eq!(a.rule_count(), 3);
    }

    #[test]
    fn load_reads_files_and_reports_open_errors() {
        let dir = std::env::temp_dir().join(format!("midge-acl-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("acl");
        std::fs::write(&path, b"topic read a\xff/b\nuser u\ntopic x\n").unwrap_or(());
        match AclFile::load(&path) {
            Ok(a) => {
                assert_eq!(a.rule_count(), 2);
                assert!(a.check("id", Some("u"), "x", Access::Read));
                assert!(!a.check("id", None, "a/b", Access::Read));
            }
            Err(e) => panic!("{e}"),
        }
        std::fs::write(&path, b"bad\n").unwrap_or(());
        match AclFile::load(&path) {
            Ok(_) => panic!("bad file loaded"),
            Err(e) => assert_eq!(
                e,
                format!("{}:1: Invalid line in acl_file: bad.", path.display())
            ),
        }
        let _ = std::fs::remove_dir_all(&dir);
        match AclFile::load(&dir.join("missing")) {
            Ok(_) => panic!("missing file loaded"),
            Err(e) => {
                assert!(e.starts_with("Error: Unable to open acl_file"), "{e}");
                assert!(e.contains("No such file"), "{e}");
            }
        }
    }

    /// Mosquitto's substitution loop, building a string: the oracle.
    fn substitute(text: &str, client_id: &str, username: Option<&str>) -> String {
        let b = text.as_bytes();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 1 < b.len() {
                if b[i + 1] == b'c' {
                    out.push_str(client_id);
                    i += 2;
                    continue;
                }
                if let (b'u', Some(u)) = (b[i + 1], username) {
                    out.push_str(u);
                    i += 2;
                    continue;
                }
            }
            out.push(b[i] as char);
            i += 1;
        }
        out
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    fn random_filter(rng: &mut XorShift) -> String {
        let levels = 1 + rng.below(4);
        let mut parts = Vec::new();
        for i in 0..levels {
            let last = i + 1 == levels;
            let level = match rng.below(10) {
                0 => "+".to_owned(),
                1 if last => "#".to_owned(),
                _ => {
                    let mut s = String::new();
                    for _ in 0..rng.below(3) {
                        s.push_str(rng.pick(&["a", "b", "$", "%c", "%u", "%", "%x"]));
                    }
                    s
                }
            };
            parts.push(level);
        }
        parts.join("/")
    }

    fn random_name(rng: &mut XorShift) -> String {
        let mut s = String::new();
        for _ in 0..rng.below(4) {
            s.push_str(rng.pick(&["a", "b", "/", "$", "%", "c"]));
        }
        s
    }

    fn random_topic(rng: &mut XorShift) -> String {
        let levels = 1 + rng.below(5);
        let mut parts = Vec::new();
        for _ in 0..levels {
            let mut s = String::new();
            for _ in 0..rng.below(4) {
                s.push_str(rng.pick(&["a", "b", "$", "%", "c", "u", "%c"]));
            }
            parts.push(s);
        }
        parts.join("/")
    }

    #[test]
    fn pattern_matcher_agrees_with_substitute_then_match() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut hits = 0;
        for _ in 0..40_000 {
            let text = random_filter(&mut rng);
            if !valid_topic_filter(&text) {
                continue;
            }
            let id = random_name(&mut rng);
            let user_name = random_name(&mut rng);
            let user = if rng.below(3) == 0 {
                None
            } else {
                Some(user_name.as_str())
            };
            // Half the time derive the topic from the expansion so that
            // matches are common, not just misses.
            let expanded = substitute(&text, &id, user);
            let topic = if rng.below(2) == 0 {
                expanded.replace('+', "a").replace('#', "b/c")
            } else {
                random_topic(&mut rng)
            };
            let want = !topic.is_empty() && matches(&expanded, &topic);
            let got = pattern_matches(&text, &id, user, &topic);
            assert_eq!(
                got, want,
                "pattern {text:?} id {id:?} user {user:?} topic {topic:?}"
            );
            hits += usize::from(got);
        }
        assert!(hits > 2_000, "too few matches exercised: {hits}");
    }

    #[test]
    fn substituted_wildcards_are_literal_in_the_matcher() {
        // The guard in `check` refuses these names; the matcher alone still
        // must not treat them as wildcards.
        assert!(!pattern_matches("c/%c", "#", None, "c/x"));
        assert!(!pattern_matches("c/%c", "+", None, "c/x"));
        assert!(pattern_matches("c/%c", "+", None, "c/+"));
        assert!(!pattern_matches("%c/x", "#", None, "a/x"));
    }
}
