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
        let Some(acl) = &self.acl else {
            return true;
        };
        if self.deny_special_chars {
            let bad = |s: &str| s.contains(['+', '#']);
            if bad(client_id) || username.is_some_and(bad) {
                return false;
            }
        }
        acl.check(client_id, username, topic, access)
    }
}
