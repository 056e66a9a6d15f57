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

    /// The dynamic security plugin's verdict on a login: None when it has
    /// no opinion (no plugin, no password given, or a username it does not
    /// know), and the password file and `allow_anonymous` decide.
    pub fn plugin_login(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        client_id: &str,
    ) -> Option<bool> {
        let d = self.dynsec.as_ref()?;
        let (u, p) = (username?, password?);
        d.authenticate(u, p, client_id)
    }
}
