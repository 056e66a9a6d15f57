//! cli::policy: reading the files a security block names.
//!
//! Owns: loading the password file, the ACL file and the dynamic-security
//! JSON of one security block into an `auth::Policy`, with Mosquitto's
//! messages when one cannot be read.
//!
//! Must not: decide which blocks exist or which plugin is in force (that is
//! `cli::plan`, which is pure); this is the I/O half.

use std::path::Path;

use super::plan::dynsec_plugin;
use crate::config::Security;

/// Read the password file and ACL of one security block.
pub fn load_policy(s: &Security) -> Result<crate::auth::Policy, String> {
    use crate::auth::{acl::AclFile, password::PasswordFile, Policy};
    let passwords = match &s.password_file {
        Some(path) => {
            let (pw, notes) = PasswordFile::load(Path::new(path))
                .map_err(|e| format!("Error: Unable to load password file {}: {}", path, e))?;
            for n in notes {
                log::warn!("{}", n);
            }
            Some(pw)
        }
        None => None,
    };
    let acl = match &s.acl_file {
        Some(path) => Some(
            AclFile::load(Path::new(path))
                .map_err(|e| format!("Error: Unable to load ACL file {}: {}", path, e))?,
        ),
        None => None,
    };
    let mut dynsec = None;
    if let Some((plugin, file)) = dynsec_plugin(s)? {
        match file {
            Some(path) => {
                let d = crate::auth::dynsec::DynSec::load(Path::new(&path)).map_err(|e| {
                    format!("Error: Unable to load dynamic security config {}: {}", path, e)
                })?;
                dynsec = Some(d);
            }
            None => log::warn!(
                "Warning: Dynamic security plugin ({}) has no plugin_opt_config_file, and is inactive.",
                plugin
            ),
        }
    }
    Ok(Policy {
        passwords,
        acl,
        deny_special_chars: s.auth_plugin_deny_special_chars,
        dynsec,
    })
}
