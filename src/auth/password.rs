//! auth::password: Mosquitto 2.0 password files (`mosquitto_passwd` format).
//!
//! Owns: parsing a password file into username -> hash entries, checking a
//! password against them in constant time, and encoding new `$6$` / `$7$`
//! hash fields (shared with the `midge_passwd` tool).
//!
//! Must not: touch sockets or the clock, or ever put a password or a hash into
//! a log line or a `Debug` string. Files are read only when a caller asks.
//!
//! Format (Mosquitto 2.0, `pwfile__parse` + `unpwd__decode_passwords`):
//! `username:$6$<b64 salt>$<b64 sha512(password ++ salt)>` or
//! `username:$7$<iterations>$<b64 salt>$<b64 pbkdf2-hmac-sha512>`. Fields are
//! split like C `strtok` does (runs of separators count as one, leading ones
//! are skipped, tokens after the ones used are ignored), then blanks are
//! trimmed. Salts of 12 bytes (Mosquitto 2.0) and 64 bytes (Mosquitto 2.1)
//! are accepted; the hash is always 64 bytes.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;

use ring::rand::SecureRandom;

use crate::protocol::base64;

/// Iterations `mosquitto_passwd` 2.0 uses for `$7$` when `-I` is not given.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// Salt length `mosquitto_passwd` 2.0 writes.
pub const SALT_LEN: usize = 12;
/// Salt length Mosquitto 2.1 writes; accepted when reading.
pub const LONG_SALT_LEN: usize = 64;
/// Length of a SHA-512 / PBKDF2-HMAC-SHA512 output.
pub const HASH_LEN: usize = 64;
/// Mosquitto refuses usernames and hash fields longer than this.
pub const MAX_FIELD_LEN: usize = 65535;
/// Mosquitto reads the iteration count with `atoi` into an `int`, so larger
/// counts never work there; refusing them keeps files portable both ways.
pub const MAX_ITERATIONS: u32 = i32::MAX as u32;

/// Which hash scheme an entry uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashKind {
    /// `$6$`: one SHA-512 pass over the password bytes followed by the salt.
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512 with 64 bytes of output.
    Pbkdf2Sha512 { iterations: u32 },
}

impl Default for HashKind {
    fn default() -> Self {
        HashKind::Pbkdf2Sha512 {
            iterations: DEFAULT_ITERATIONS,
        }
    }
}

/// One decoded hash field.
#[derive(Clone)]
struct Entry {
    kind: HashKind,
    salt: Vec<u8>,
    hash: [u8; HASH_LEN],
}

impl Entry {
    fn matches(&self, password: &[u8]) -> bool {
        let computed = digest(self.kind, &self.salt, password);
        constant_time_eq(&computed, &self.hash)
    }
}

/// Why a hash field was refused; the wording follows Mosquitto's log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldError {
    /// No `$` token at all (an empty field, or only `$` signs).
    Missing,
    /// The scheme token is neither `6` nor `7` (plain text lands here).
    UnknownType,
    /// `$7$` with an iteration count that is not a number in 1..=i32::MAX.
    BadIterations,
    /// The salt or hash token is missing.
    Truncated,
    /// The salt is not strict base64 of 12 or 64 bytes.
    BadSalt,
    /// The hash is not strict base64 of 64 bytes.
    BadHash,
}

impl FieldError {
    fn describe(self) -> &'static str {
        match self {
            FieldError::Missing | FieldError::Truncated => "Invalid password hash",
            FieldError::UnknownType => "Invalid password hash type",
            FieldError::BadIterations => "Invalid hash iterations",
            FieldError::BadSalt => "Unable to decode password salt",
            FieldError::BadHash => "Unable to decode password",
        }
    }
}

/// A loaded password file: username -> decoded hash.
#[derive(Clone)]
pub struct PasswordFile {
    users: HashMap<String, Entry>,
    /// Checked instead of a real entry when the username is unknown, so that
    /// the work done (and so the time taken) does not reveal which users exist.
    dummy: Entry,
}

impl Default for PasswordFile {
    fn default() -> Self {
        PasswordFile {
            users: HashMap::new(),
            dummy: dummy_entry(HashKind::default()),
        }
    }
}

impl fmt::Debug for PasswordFile {
    // Hand-written so that no hash or salt can ever reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// Parses a password file like Mosquitto 2.0 does.
    ///
    /// A line whose first character is `#`, or that holds no `:`, is skipped
    /// silently. Any other line that does not give a username and a valid
    /// `$6$`/`$7$` hash is skipped with a log line naming `file:line` and the
    /// username (never the hash field: it may be a plain-text password). When
    /// a username appears twice, the last valid entry wins (as in Mosquitto).
    /// Returns the file and the log lines for the caller to log.
    pub fn parse(text: &str, file_name: &str) -> (PasswordFile, Vec<String>) {
        Self::parse_bytes(text.as_bytes(), file_name)
    }

    /// As [`PasswordFile::parse`], for raw file contents. A line that is not
    /// UTF-8 is skipped with a log line: MQTT usernames are UTF-8, and a lossy
    /// conversion could let a different name match the entry.
    pub fn parse_bytes(text: &[u8], file_name: &str) -> (PasswordFile, Vec<String>) {
        let mut users: HashMap<String, Entry> = HashMap::new();
        let mut logs = Vec::new();
        for (index, raw_line) in text.split(|&b| b == b'\n').enumerate() {
            let line_no = index + 1;
            if raw_line.first() == Some(&b'#') || !raw_line.contains(&b':') {
                continue;
            }
            let line = match std::str::from_utf8(raw_line) {
                Ok(line) => line,
                Err(_) => {
                    logs.push(format!(
                        "Warning: Invalid line in password file {file_name}:{line_no}: not valid UTF-8, skipping."
                    ));
                    continue;
                }
            };
            let Some((username, field)) = split_entry_str(line) else {
                // Only ':' and blanks: strtok finds no username, Mosquitto says nothing.
                continue;
            };
            if username.is_empty() {
                logs.push(format!(
                    "Warning: Invalid line in password file {file_name}:{line_no}: empty username, skipping."
                ));
                continue;
            }
            if username.len() > MAX_FIELD_LEN {
                logs.push(format!(
                    "Warning: Invalid line in password file {file_name}:{line_no}: username too long, skipping."
                ));
                continue;
            }
            let shown = printable(username);
            let field = match field {
                Some(field) if !field.is_empty() => field,
                _ => {
                    logs.push(format!(
                        "Warning: Invalid line in password file {file_name}:{line_no}: no password hash for user {shown}, skipping."
                    ));
                    continue;
                }
            };
            if field.len() > MAX_FIELD_LEN {
                logs.push(format!(
                    "Warning: Invalid line in password file {file_name}:{line_no}: password hash too long for user {shown}, skipping."
                ));
                continue;
            }
            match parse_field(field) {
                Ok(entry) => {
                    if users.insert(username.to_owned(), entry).is_some() {
                        logs.push(format!(
                            "Warning: User {shown} appears again in password file {file_name}:{line_no}; this entry replaces the earlier one."
                        ));
                    }
                }
                Err(err) => logs.push(format!(
                    "Error: {} for user {shown} at {file_name}:{line_no}, removing entry.",
                    err.describe()
                )),
            }
        }
        let dummy = dummy_entry(most_common_kind(&users));
        (PasswordFile { users, dummy }, logs)
    }

    /// Reads and parses `path`. `Err` is a ready-to-log message when the file
    /// cannot be read; parse problems come back as log lines instead.
    pub fn load(path: &Path) -> Result<(PasswordFile, Vec<String>), String> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Self::parse_bytes(&bytes, &path.display().to_string())),
            Err(err) => Err(format!(
                "Error: Unable to open pwfile \"{}\": {}.",
                path.display(),
                os_error_text(&err)
            )),
        }
    }

    /// Checks `password` for `username` in constant time. An unknown user
    /// costs the same hash computation as a known one and is always refused.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(entry) => entry.matches(password),
            None => {
                // The result is thrown away; black_box keeps the work from
                // being optimised out, which would reopen the timing leak.
                std::hint::black_box(self.dummy.matches(std::hint::black_box(password)));
                false
            }
        }
    }

    /// Whether the file holds a valid entry for `username`.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// Number of valid entries.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when no valid entry was loaded.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The scheme of `username`'s entry, if any (for diagnostics; no secrets).
    pub fn kind_of(&self, username: &str) -> Option<HashKind> {
        self.users.get(username).map(|entry| entry.kind)
    }
}

/// Splits one password-file line into a trimmed username and hash field the
/// way Mosquitto's `strtok(line, ":")` does: empty tokens are skipped, and
/// anything after the second token is ignored. `None` when the line has no
/// non-empty token at all. Works on bytes so `midge_passwd` can use it on
/// files that are not UTF-8.
pub fn split_entry(line: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let mut tokens = line.split(|&b| b == b':').filter(|t| !t.is_empty());
    let username = trim_blanks(tokens.next()?);
    let field = tokens.next().map(trim_blanks);
    Some((username, field))
}

fn split_entry_str(line: &str) -> Option<(&str, Option<&str>)> {
    let mut tokens = line.split(':').filter(|t| !t.is_empty());
    let username = tokens.next()?.trim_matches(is_c_space);
    let field = tokens.next().map(|t| t.trim_matches(is_c_space));
    Some((username, field))
}

/// C `isspace` in the "C" locale, which Mosquitto's `misc__trimblanks` uses.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn is_c_space_byte(b: &u8) -> bool {
    matches!(*b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Trims C `isspace` bytes from both ends.
pub fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !is_c_space_byte(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_c_space_byte(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or(&[])
}

/// Usernames come from a file an operator edits; escape control characters
/// so a stray byte cannot forge or garble a log line.
fn printable(username: &str) -> String {
    if username.chars().any(char::is_control) {
        username.escape_debug().to_string()
    } else {
        username.to_owned()
    }
}

/// Text of an I/O error without Rust's " (os error N)" suffix, so messages
/// read like Mosquitto's `strerror` output.
pub fn os_error_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text.get(..cut).unwrap_or(&text).to_owned(),
        None => text,
    }
}

fn parse_field(field: &str) -> Result<Entry, FieldError> {
    // strtok(field, "$") semantics: empty tokens vanish, extra tokens are ignored.
    let mut tokens = field.split('$').filter(|t| !t.is_empty());
    let kind = match tokens.next() {
        None => return Err(FieldError::Missing),
        Some("6") => HashKind::Sha512,
        Some("7") => {
            let text = tokens.next().ok_or(FieldError::Truncated)?;
            HashKind::Pbkdf2Sha512 {
                iterations: parse_iterations(text).ok_or(FieldError::BadIterations)?,
            }
        }
        Some(_) => return Err(FieldError::UnknownType),
    };
    let salt_text = tokens.next().ok_or(FieldError::Truncated)?;
    let salt = base64::decode(salt_text)
        .filter(|s| s.len() == SALT_LEN || s.len() == LONG_SALT_LEN)
        .ok_or(FieldError::BadSalt)?;
    let hash_text = tokens.next().ok_or(FieldError::Truncated)?;
    let hash: [u8; HASH_LEN] = base64::decode(hash_text)
        .and_then(|h| <[u8; HASH_LEN]>::try_from(h.as_slice()).ok())
        .ok_or(FieldError::BadHash)?;
    Ok(Entry { kind, salt, hash })
}

/// Digits only, 1..=MAX_ITERATIONS. (Mosquitto's `atoi` would also take
/// "101abc"; no tool writes that, so refusing it is the safer reading.)
fn parse_iterations(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u32 = text.parse().ok()?;
    (1..=MAX_ITERATIONS).contains(&value).then_some(value)
}

/// Computes the 64-byte hash for `kind`. An iteration count of 0 is treated
/// as 1 (ring needs a non-zero count); parsing never produces 0.
fn digest(kind: HashKind, salt: &[u8], password: &[u8]) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    match kind {
        HashKind::Sha512 => {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
            ctx.update(password);
            ctx.update(salt);
            let done = ctx.finish();
            let bytes = done.as_ref();
            if bytes.len() == HASH_LEN {
                out.copy_from_slice(bytes);
            }
        }
        HashKind::Pbkdf2Sha512 { iterations } => {
            let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
            ring::pbkdf2::derive(
                ring::pbkdf2::PBKDF2_HMAC_SHA512,
                iterations,
                salt,
                password,
                &mut out,
            );
        }
    }
    out
}

/// Compares without an early exit, so the time taken does not say how many
/// leading bytes matched.
fn constant_time_eq(a: &[u8; HASH_LEN], b: &[u8; HASH_LEN]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn dummy_entry(kind: HashKind) -> Entry {
    Entry {
        kind,
        salt: vec![0u8; SALT_LEN],
        // No password hashes to all zeros, so the dummy can never match.
        hash: [0u8; HASH_LEN],
    }
}

/// The scheme most entries use (ties go to the costlier one), so a probe for
/// an unknown user costs what a probe for a typical real user costs.
fn most_common_kind(users: &HashMap<String, Entry>) -> HashKind {
    let mut counts: HashMap<HashKind, usize> = HashMap::new();
    for entry in users.values() {
        *counts.entry(entry.kind).or_insert(0) += 1;
    }
    let cost = |kind: &HashKind| match kind {
        HashKind::Sha512 => 0,
        HashKind::Pbkdf2Sha512 { iterations } => *iterations,
    };
    counts
        .into_iter()
        .max_by(|(ka, ca), (kb, cb)| ca.cmp(cb).then(cost(ka).cmp(&cost(kb))))
        .map_or_else(HashKind::default, |(kind, _)| kind)
}

/// Encodes one entry's hash field: `$6$<b64 salt>$<b64 hash>` or
/// `$7$<iterations>$<b64 salt>$<b64 hash>`. An iteration count of 0 is
/// written (and computed) as 1 so the result always parses.
pub fn encode_hash(password: &[u8], kind: HashKind, salt: &[u8]) -> String {
    let kind = match kind {
        HashKind::Pbkdf2Sha512 { iterations: 0 } => HashKind::Pbkdf2Sha512 { iterations: 1 },
        other => other,
    };
    let hash = digest(kind, salt, password);
    let salt64 = base64::encode(salt);
    let hash64 = base64::encode(&hash);
    match kind {
        HashKind::Sha512 => format!("$6${salt64}${hash64}"),
        HashKind::Pbkdf2Sha512 { iterations } => format!("$7${iterations}${salt64}${hash64}"),
    }
}

/// Encodes a hash field with a fresh random 12-byte salt, as
/// `mosquitto_passwd` 2.0 writes. `Err` when the iteration count is outside
/// 1..=i32::MAX or the system has no randomness to give.
pub fn new_hash(password: &[u8], kind: HashKind) -> Result<String, String> {
    if let HashKind::Pbkdf2Sha512 { iterations } = kind {
        if !(1..=MAX_ITERATIONS).contains(&iterations) {
            return Err("Error: Number of iterations must be > 0.".to_owned());
        }
    }
    let mut salt = [0u8; SALT_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "Error: Unable to generate a random salt.".to_owned())?;
    Ok(encode_hash(password, kind, &salt))
}

/// Checks `password` against one hash field (blanks around it are ignored).
/// `None` when the field is not a valid `$6$`/`$7$` hash.
pub fn verify_hash(field: &str, password: &[u8]) -> Option<bool> {
    parse_field(field.trim_matches(is_c_space))
        .ok()
        .map(|entry| entry.matches(password))
}

/// The scheme of a hash field without computing anything; `None` when the
/// field is not a valid `$6$`/`$7$` hash (e.g. a plain-text password).
pub fn hash_kind(field: &str) -> Option<HashKind> {
    parse_field(field.trim_matches(is_c_space))
        .ok()
        .map(|entry| entry.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by the real `mosquitto_passwd` 2.0.11:
    //   mosquitto_passwd -c -b f alice 'alice-secret'
    //   mosquitto_passwd -H sha512 -b f bob 'bob pass with spaces'
    //   mosquitto_passwd -I 1000 -b f carol 'c@rol:1000'
    const ALICE: &str = "alice:$7$101$DPqihtX5bILl56pP$l0aivr5WPQVBI46VMivDpu96LRLGoVCu05LEhIDLun1iRx+W9uIERq/xOMFdn9SIEabhTjKnK6A1pzP0+GA6Kg==";
    const BOB: &str = "bob:$6$Z2YbVxDKymcnGrx1$O0U+mGDxkl2YVEhhC/t2OCcDNuGRr/jkBX5oS7J2O81alyqeF++u/1JNa62A1vkAZvOycn4KTUWXS0BUNKxiew==";
    const CAROL: &str = "carol:$7$1000$LgMqEHkQyXiHmyTr$+XzGgl3+VkPAIfPEC7Nyo7XhQA2RmY9Bx40dKAD2W4YTYR8fUBZSEPhVYKB0bmVpZyZZ7XIEkDvoshUrEt1Gsw==";
    // 64-byte salts (bytes 0..64), computed with Python hashlib
    // (pbkdf2_hmac('sha512', b'dave-64', salt, 101, 64) and sha512(b'erin-64' + salt)).
    const DAVE64: &str = "dave:$7$101$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==$E96TvjX90JOeF+4Dxu9cHJVpbX0SUenUBa+OJVXmEo63Gd71fH/7XGn7i3X4O49Y8Vycj9VpQv+TM9KvNWs/Hg==";
    const ERIN64: &str = "erin:$6$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==$aqzNwof19ydxKOKVyU1lqX8r1iPJEqqK9t0gxRm/P0Tq6lOxLcpq9TGLG+y3rfvYFnE5qR6tRW6jVosRq04MAg==";

    fn field(line: &str) -> &str {
        line.split_once(':').map_or("", |(_, f)| f)
    }

    fn vectors() -> String {
        format!("{ALICE}\n{BOB}\n{CAROL}\n{DAVE64}\n{ERIN64}\n")
    }

    /// Small xorshift so the random tests are repeatable.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn base64_known_values() {
        assert_eq!(base64::encode(b""), "");
        assert_eq!(base64::encode(b"f"), "Zg==");
        assert_eq!(base64::encode(b"fo"), "Zm8=");
        assert_eq!(base64::encode(b"foo"), "Zm9v");
        assert_eq!(base64::encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64::encode(&[0xfb, 0xff, 0xfe]), "+//+");
        assert_eq!(base64::decode("Zm9vYg==").as_deref(), Some(&b"foob"[..]));
        assert_eq!(base64::decode("Zm9vYmE=").as_deref(), Some(&b"fooba"[..]));
        assert_eq!(base64::decode("").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn base64_round_trip_random() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let len = (rng.next() % 100) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let text = base64::encode(&data);
            assert_eq!(text.len() % 4, 0);
            assert_eq!(base64::decode(&text), Some(data));
        }
    }

    #[test]
    fn base64_strict_rejects() {
        for bad in [
            "Zg=",       // length not a multiple of 4
            "Zg",        // missing padding
            "Zm9v\n",    // newline
            "Zm 9v",     // space
            "Zm9v====",  // a whole quad of padding
            "Z===",      // three padding characters
            "Zg==Zm9v",  // padding in the middle
            "Zm=v",      // padding followed by data
            "Zh==",      // non-zero unused bits
            "Zm9=",      // non-zero unused bits
            "Zm9v-_==",  // URL-safe alphabet
            "Zm9vYmF*",  // not in the alphabet
            "Zm9vYmFyé", // non-ASCII
        ] {
            assert_eq!(base64::decode(bad), None, "accepted {bad:?}");
        }
    }

    #[test]
    fn mosquitto_vectors_verify() {
        let (file, logs) = PasswordFile::parse(&vectors(), "pw");
        assert!(logs.is_empty(), "{logs:?}");
        assert_eq!(file.len(), 5);
        assert!(file.verify("alice", b"alice-secret"));
        assert!(file.verify("bob", b"bob pass with spaces"));
        assert!(file.verify("carol", b"c@rol:1000"));
        assert!(file.verify("dave", b"dave-64"));
        assert!(file.verify("erin", b"erin-64"));
        assert_eq!(
            file.kind_of("alice"),
            Some(HashKind::Pbkdf2Sha512 { iterations: 101 })
        );
        assert_eq!(file.kind_of("bob"), Some(HashKind::Sha512));
        assert_eq!(
            file.kind_of("carol"),
            Some(HashKind::Pbkdf2Sha512 { iterations: 1000 })
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_refused() {
        let (file, _) = PasswordFile::parse(&vectors(), "pw");
        assert!(!file.verify("alice", b"alice-secreT"));
        assert!(!file.verify("alice", b"alice-secret "));
        assert!(!file.verify("alice", b""));
        assert!(!file.verify("bob", b"bob pass with space"));
        assert!(!file.verify("carol", b"c@rol"));
        // Another user's password does not work.
        assert!(!file.verify("bob", b"alice-secret"));
        assert!(!file.verify("mallory", b"alice-secret"));
        assert!(!file.verify("", b""));
        // Usernames are case-sensitive, as in Mosquitto's strcmp.
        assert!(!file.verify("Alice", b"alice-secret"));
        assert!(!file.contains("mallory"));
        assert!(file.contains("alice"));
    }

    #[test]
    fn verify_hash_and_hash_kind() {
        assert_eq!(verify_hash(field(ALICE), b"alice-secret"), Some(true));
        assert_eq!(verify_hash(field(ALICE), b"nope"), Some(false));
        assert_eq!(verify_hash(field(BOB), b"bob pass with spaces"), Some(true));
        assert_eq!(verify_hash("plain-text", b"plain-text"), None);
        assert_eq!(verify_hash("", b""), None);
        assert_eq!(hash_kind(field(BOB)), Some(HashKind::Sha512));
        assert_eq!(
            hash_kind(field(CAROL)),
            Some(HashKind::Pbkdf2Sha512 { iterations: 1000 })
        );
        assert_eq!(hash_kind("secret"), None);
    }

    #[test]
    fn encode_reproduces_mosquitto_output() {
        // Re-encoding with the same salt must give the byte-identical field.
        for (line, password) in [
            (ALICE, &b"alice-secret"[..]),
            (BOB, &b"bob pass with spaces"[..]),
            (CAROL, &b"c@rol:1000"[..]),
            (DAVE64, &b"dave-64"[..]),
        ] {
            let f = field(line);
            let kind = hash_kind(f).unwrap_or(HashKind::Sha512);
            let salt64 = match kind {
                HashKind::Sha512 => f.split('$').nth(2),
                HashKind::Pbkdf2Sha512 { .. } => f.split('$').nth(3),
            }
            .unwrap_or("");
            let salt = base64::decode(salt64).unwrap_or_default();
            assert_eq!(encode_hash(password, kind, &salt), f);
        }
    }

    #[test]
    fn new_hash_is_salted_and_verifies() {
        let a = new_hash(b"pw", HashKind::default()).unwrap_or_default();
        let b = new_hash(b"pw", HashKind::default()).unwrap_or_default();
        assert!(a.starts_with("$7$101$"), "{a}");
        assert_ne!(a, b, "two hashes of one password share a salt");
        assert_eq!(verify_hash(&a, b"pw"), Some(true));
        assert_eq!(verify_hash(&a, b"pW"), Some(false));
        // Salt is 12 bytes = 16 base64 characters, hash 88 characters.
        let parts: Vec<&str> = a.split('$').collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts.get(3).map(|s| s.len()), Some(16));
        assert_eq!(parts.get(4).map(|s| s.len()), Some(88));

        let s = new_hash(b"pw", HashKind::Sha512).unwrap_or_default();
        assert!(s.starts_with("$6$"), "{s}");
        assert_eq!(verify_hash(&s, b"pw"), Some(true));

        assert!(new_hash(b"pw", HashKind::Pbkdf2Sha512 { iterations: 0 }).is_err());
        assert!(new_hash(
            b"pw",
            HashKind::Pbkdf2Sha512 {
                iterations: MAX_ITERATIONS + 1
            }
        )
        .is_err());
        // encode_hash never writes an unparseable zero count.
        let z = encode_hash(b"pw", HashKind::Pbkdf2Sha512 { iterations: 0 }, &[1; 12]);
        assert!(z.starts_with("$7$1$"), "{z}");
        assert_eq!(verify_hash(&z, b"pw"), Some(true));
    }

    #[test]
    fn plain_text_entry_skipped_without_leaking() {
        let text = format!("{ALICE}\nplainuser:Sup3rSecretPlain\n");
        let (file, logs) = PasswordFile::parse(&text, "passwords.txt");
        assert_eq!(file.len(), 1);
        assert!(!file.contains("plainuser"));
        assert!(!file.verify("plainuser", b"Sup3rSecretPlain"));
        assert_eq!(logs.len(), 1, "{logs:?}");
        let log = &logs[0];
        assert!(log.contains("passwords.txt:2"), "{log}");
        assert!(log.contains("plainuser"), "{log}");
        assert!(log.contains("Invalid password hash type"), "{log}");
        assert!(!log.contains("Sup3rSecretPlain"), "{log}");
    }

    #[test]
    fn malformed_lines_logged_with_line_numbers() {
        let alice_hash = field(ALICE);
        let salt12 = "DPqihtX5bILl56pP";
        let hash = alice_hash.rsplit('$').next().unwrap_or("");
        let lines = [
            // 1: comment
            "# a comment: with a colon".to_owned(),
            // 2: no colon at all: skipped silently
            "no colon here".to_owned(),
            // 3: user with nothing after the colon
            "empty:".to_owned(),
            // 4: unknown scheme
            format!("md5user:$1$abc${hash}"),
            // 5: iterations not a number
            format!("iter:$7$x${salt12}${hash}"),
            // 6: zero iterations
            format!("zero:$7$0${salt12}${hash}"),
            // 7: salt of the wrong length (9 bytes)
            format!("shortsalt:$7$101$AAAAAAAAAAAA${hash}"),
            // 8: salt not base64
            format!("badsalt:$6$!!!!!!!!!!!!!!!!${hash}"),
            // 9: hash truncated (63 bytes)
            format!("shorthash:$6${salt12}${}", base64::encode(&[7u8; 63])),
            // 10: hash missing
            format!("nohash:$6${salt12}"),
            // 11: only a scheme
            "onlytype:$7$".to_owned(),
            // 12: empty username
            format!("  :{alice_hash}"),
            // 13: only colons: strtok finds no token, skipped silently
            ":::".to_owned(),
            // 14: a good one
            ALICE.to_owned(),
        ];
        let text = lines.join("\n");
        let (file, logs) = PasswordFile::parse(&text, "pw");
        assert_eq!(file.len(), 1);
        assert!(file.verify("alice", b"alice-secret"));
        let expect = [
            (3, "empty"),
            (4, "md5user"),
            (5, "iter"),
            (6, "zero"),
            (7, "shortsalt"),
            (8, "badsalt"),
            (9, "shorthash"),
            (10, "nohash"),
            (11, "onlytype"),
        ];
        assert_eq!(logs.len(), expect.len() + 1, "{logs:#?}");
        for ((line, user), log) in expect.iter().zip(&logs) {
            assert!(log.contains(&format!("pw:{line}")), "{log}");
            assert!(log.contains(user), "{log}");
            assert!(!log.contains(hash), "hash leaked: {log}");
        }
        let last = logs.last().map(String::as_str).unwrap_or("");
        assert!(
            last.contains("pw:12") && last.contains("empty username"),
            "{last}"
        );
        assert!(logs.iter().any(|l| l.contains("Invalid hash iterations")));
        assert!(logs
            .iter()
            .any(|l| l.contains("Unable to decode password salt")));
        assert!(logs
            .iter()
            .any(|l| l.contains("Unable to decode password for")));
    }

    #[test]
    fn user_colon_nothing_variants() {
        for text in ["empty:", "empty:\n", "empty:   \r\n", "empty:::\n"] {
            let (file, logs) = PasswordFile::parse(text, "f");
            assert!(file.is_empty(), "{text:?}");
            assert!(!file.verify("empty", b""), "{text:?}");
            assert_eq!(logs.len(), 1, "{text:?}: {logs:?}");
            assert!(logs[0].contains("f:1") && logs[0].contains("empty"));
        }
    }

    #[test]
    fn strtok_splitting_blanks_and_crlf() {
        let f = field(ALICE);
        let text =
            format!("  spaced\t:  {f}  \r\n::lead:{f}\ntrail:{f}:ignored:tokens\nvt\x0b:{f}\x0c\n");
        let (file, logs) = PasswordFile::parse(&text, "f");
        assert!(logs.is_empty(), "{logs:?}");
        for user in ["spaced", "lead", "trail", "vt"] {
            assert!(file.verify(user, b"alice-secret"), "{user}");
        }
        // Runs of '$' collapse like strtok and extra '$' tokens are ignored.
        let doubled = f.replace('$', "$$");
        assert_eq!(verify_hash(&doubled, b"alice-secret"), Some(true));
        assert_eq!(
            verify_hash(&format!("{f}$extra"), b"alice-secret"),
            Some(true)
        );
        // A comment is only a comment in column 0 (Mosquitto checks buf[0]).
        let (file, _) = PasswordFile::parse(&format!(" #x:{f}\n#alice:{f}\n"), "f");
        assert!(file.contains(" #x".trim()));
        assert!(!file.contains("alice"));
    }

    #[test]
    fn last_valid_duplicate_wins() {
        let text = format!("{ALICE}\nalice:{}\n", field(BOB));
        let (file, logs) = PasswordFile::parse(&text, "f");
        assert!(file.verify("alice", b"bob pass with spaces"));
        assert!(!file.verify("alice", b"alice-secret"));
        assert_eq!(logs.len(), 1);
        assert!(logs[0].contains("f:2"));
        // An invalid later duplicate does not remove the earlier valid entry.
        let text = format!("{ALICE}\nalice:plaintext\n");
        let (file, _) = PasswordFile::parse(&text, "f");
        assert!(file.verify("alice", b"alice-secret"));
    }

    #[test]
    fn non_utf8_line_skipped() {
        let mut bytes = b"al\xffice:".to_vec();
        bytes.extend_from_slice(field(ALICE).as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(BOB.as_bytes());
        let (file, logs) = PasswordFile::parse_bytes(&bytes, "f");
        assert_eq!(file.len(), 1);
        assert!(file.contains("bob"));
        assert_eq!(logs.len(), 1);
        assert!(logs[0].contains("f:1"));
    }

    #[test]
    fn control_characters_in_username_are_escaped_in_logs() {
        let (_, logs) = PasswordFile::parse("evil\x1b[2J:plain\n", "f");
        assert_eq!(logs.len(), 1);
        assert!(!logs[0].contains('\x1b'), "{:?}", logs[0]);
        assert!(!logs[0].contains("plain\n"));
    }

    #[test]
    fn debug_shows_no_secrets() {
        let (file, _) = PasswordFile::parse(&vectors(), "f");
        let text = format!("{file:?}");
        assert!(!text.contains("DPqihtX5"), "{text}");
        assert!(!text.contains("alice"), "{text}");
    }

    #[test]
    fn dummy_follows_the_common_scheme() {
        let (file, _) = PasswordFile::parse(&format!("{BOB}\nb2:{}\n{ALICE}\n", field(BOB)), "f");
        assert_eq!(file.dummy.kind, HashKind::Sha512);
        let (file, _) = PasswordFile::parse(&vectors(), "f");
        assert_eq!(file.dummy.kind, HashKind::Pbkdf2Sha512 { iterations: 101 });
        assert_eq!(PasswordFile::default().dummy.kind, HashKind::default());
        // The dummy can never match anything.
        assert!(!file.dummy.matches(b""));
        assert!(!file.verify("nobody", b""));
    }

    #[test]
    fn load_reports_missing_file() {
        let err = PasswordFile::load(Path::new("/nonexistent/dir/pwfile")).err();
        let err = err.unwrap_or_default();
        assert!(err.contains("/nonexistent/dir/pwfile"), "{err}");
        assert!(err.contains("No such file"), "{err}");
        assert!(!err.contains("os error"), "{err}");
    }

    #[test]
    fn load_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("midge-pw-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("pw");
        assert!(std::fs::write(&path, vectors()).is_ok());
        let loaded = PasswordFile::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        let (file, logs) = loaded.unwrap_or_default();
        assert!(logs.is_empty());
        assert!(file.verify("carol", b"c@rol:1000"));
    }

    #[test]
    fn split_entry_matches_strtok() {
        assert_eq!(split_entry(b"a:b"), Some((&b"a"[..], Some(&b"b"[..]))));
        assert_eq!(
            split_entry(b" a : b :c\n"),
            Some((&b"a"[..], Some(&b"b"[..])))
        );
        assert_eq!(split_entry(b"::a::b"), Some((&b"a"[..], Some(&b"b"[..]))));
        assert_eq!(split_entry(b"a:"), Some((&b"a"[..], None)));
        assert_eq!(split_entry(b"a:\n"), Some((&b"a"[..], Some(&b""[..]))));
        assert_eq!(split_entry(b":::"), None);
        assert_eq!(split_entry(b""), None);
        assert_eq!(trim_blanks(b" \t\r\n"), b"");
        assert_eq!(trim_blanks(b" x y "), b"x y");
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let pieces: [&[u8]; 10] = [
            b":", b"$", b"$7$", b"$6$", b"=", b"\n", b"#", b"AAAA", b"101", b"\xff",
        ];
        for _ in 0..300 {
            let mut text = Vec::new();
            for _ in 0..(rng.next() % 30) {
                if rng.next() % 3 == 0 {
                    text.push(rng.next() as u8);
                } else {
                    let idx = (rng.next() % pieces.len() as u64) as usize;
                    text.extend_from_slice(pieces.get(idx).copied().unwrap_or(b""));
                }
            }
            let (file, _) = PasswordFile::parse_bytes(&text, "f");
            assert!(!file.verify("x", b"y"));
            let _ = base64::decode(&String::from_utf8_lossy(&text));
        }
    }
}
