//! auth: who may connect and what they may do.
//!
//! Owns: `mosquitto_passwd` password files (`password`), Mosquitto ACL files
//! (`acl`), and the per-listener `Security` that combines them.
//!
//! Must not: touch sockets, TLS or the clock. Files are read only when a
//! caller asks (start-up, SIGHUP); checks are pure functions of their inputs.

pub mod acl;
pub mod dynsec;
pub mod password;

use acl::{Access, AclFile};
use password::PasswordFile;

/// The security that applies to clients of one listener (or all listeners
/// when `per_listener_settings` is false).
#[derive(Default)]
pub struct Policy {
    pub passwords: Option<PasswordFile>,
    pub acl: Option<AclFile>,
    /// `auth_plugin_deny_special_chars`: a client id or username containing
    /// `+` or `#` gets no access through the ACL.
    pub deny_special_chars: bool,
    /// The dynamic security plugin (built in), when the config loads it.
    /// Like a Mosquitto plugin it is asked before the password and ACL files.
    pub dynsec: Option<dynsec::DynSec>,
}

impl Policy {
    /// Whether the ACL lets this client do `access` on `topic`. With no ACL
    /// file everything is allowed (Mosquitto's default).
    pub fn allows(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
        access: Access,
    ) -> bool {
        if self.deny_special_chars && (self.acl.is_some() || self.dynsec.is_some()) {
            let bad = |s: &str| s.contains(['+', '#']);
            if bad(client_id) || username.is_some_and(bad) {
                return false;
            }
        }
        if let Some(d) = &self.dynsec {
            // A plugin's answer decides; when it defers, the ACL file does,
            // and with neither the access is denied (Mosquitto 2.0).
            if let Some(decided) = d.decide(username, topic, access) {
                return decided;
            }
            return match &self.acl {
                Some(acl) => acl.check(client_id, username, topic, access),
                None => false,
            };
        }
        let Some(acl) = &self.acl else {
            return true;
        };
        acl.check(client_id, username, topic, access)
    }

    /// Whether a client may log in, decided as Mosquitto 2.0 decides it.
    ///
    /// The checkers run in Mosquitto's order: the dynamic security plugin,
    /// then the password file. Each accepts, refuses, or has no opinion;
    /// the first that is not silent decides. The plugin has no opinion on a
    /// client that sent no username or no password, or whose username it
    /// does not know; the password file has none on a client without a
    /// username, and refuses a username it does not hold or a missing
    /// password. When every checker was silent, only a client that sent no
    /// username may log in, and only if `allow_anonymous`; with no checker
    /// at all, `allow_anonymous` alone decides.
    pub fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        client_id: &str,
        allow_anonymous: bool,
    ) -> bool {
        // Mosquitto reads a zero-length password as no password at all
        // (`packet__read_binary` gives NULL), so `user:` with an empty
        // password never matches a stored hash.
        let password = password.filter(|p| !p.is_empty());
        let mut checked = false;
        if let Some(d) = &self.dynsec {
            checked = true;
            if let (Some(u), Some(p)) = (username, password) {
                if let Some(verdict) = d.authenticate(u, p, client_id) {
                    return verdict;
                }
            }
        }
        if let Some(file) = &self.passwords {
            checked = true;
            if let Some(u) = username {
                return match password {
                    Some(p) => file.verify(u, p),
                    None => {
                        // Same work as a wrong password: no timing hint.
                        let _ = file.verify(u, &[]);
                        false
                    }
                };
            }
        }
        if !checked {
            return allow_anonymous;
        }
        username.is_none() && allow_anonymous
    }
}

#[cfg(test)]
mod tests {
    use super::password::{encode_hash, HashKind, PasswordFile};
    use super::Policy;

    /// A user whose stored hash is that of the empty password still cannot
    /// log in with a zero-length password: Mosquitto reads it as none.
    #[test]
    fn empty_password_is_no_password() {
        let line = format!("empty:{}\n", encode_hash(b"", HashKind::Sha512, &[7; 12]));
        let (file, errors) = PasswordFile::parse(&line, "pw");
        assert!(errors.is_empty(), "{errors:?}");
        let policy = Policy {
            passwords: Some(file),
            ..Policy::default()
        };
        assert!(!policy.authenticate(Some("empty"), Some(b""), "c", false));
        assert!(!policy.authenticate(Some("empty"), None, "c", false));
        assert!(!policy.authenticate(Some("empty"), Some(b"x"), "c", false));
        assert!(!policy.authenticate(Some("empty"), Some(b""), "c", true));
    }
}
