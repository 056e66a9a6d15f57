//! cli::os: the operating-system duties of the `midge` process.
//!
//! Owns: daemonising (`-d`), telling systemd how start-up and reloads go
//! (`Type=notify`), dropping privileges to `user` (and handing over the files
//! root created), checking what the run-as user can write, and the random
//! seed from /dev/urandom.
//!
//! Must not: know the broker or the event loop. Every `unsafe` block here is
//! a libc call with its `// SAFETY:` line.

use std::path::Path;

use crate::config::{self, Config};

use super::plan::{dynsec_plugin, security_blocks};

/// A random seed for the broker (generated client ids, shared-subscription
/// picks), from the kernel, or from the clock and pid if that fails.
pub fn seed() -> u64 {
    let mut buf = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut buf).is_ok() {
            return u64::from_le_bytes(buf);
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id())
}

/// The host name (for a bridge's default client id, `hostname.name`, as
/// Mosquitto makes it); "localhost" if the system has none.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if !s.is_empty() => s.to_string(),
        _ => "localhost".into(),
    }
}

/// `-d`: fork, let the parent exit, start a new session, and point the
/// standard descriptors at /dev/null.
pub fn daemonise() -> std::io::Result<()> {
    // SAFETY: fork() is called before any other thread exists (midge is
    // single-threaded); the parent exits at once without touching shared state.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid > 0 {
        std::process::exit(0);
    }
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::unix::io::AsRawFd;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        unsafe {
            libc::dup2(devnull.as_raw_fd(), fd);
        }
    }
    Ok(())
}

/// Tell systemd (Type=notify) how we are doing, when started by it.
pub fn notify_systemd(state: &str) {
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        log::warn!("Warning: unable to notify systemd: {}.", e);
    }
}

/// The account midge runs as after start-up.
pub struct RunAs {
    uid: libc::uid_t,
    gid: libc::gid_t,
    name: String,
}

/// Started as root: the account `user` names (Mosquitto's `user` option,
/// default "mosquitto"), falling back to "nobody" when that user does not
/// exist. None when midge is not root or `user` is empty: it stays as it is.
pub fn resolve_user(user: &str) -> Result<Option<RunAs>, String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || user.is_empty() {
        return Ok(None);
    }
    let lookup = |name: &str| -> Option<(libc::uid_t, libc::gid_t)> {
        // /etc/passwd first: getpwnam loads the NSS modules (a few hundred
        // KB of resident memory on a Pi) for what is nearly always a local
        // system user.
        if let Some(ids) = passwd_entry(name) {
            return Some(ids);
        }
        let cname = std::ffi::CString::new(name).ok()?;
        // SAFETY: getpwnam returns a pointer to static storage or null; we
        // copy the two fields out before any other call could reuse it.
        unsafe {
            let pw = libc::getpwnam(cname.as_ptr());
            if pw.is_null() {
                None
            } else {
                Some(((*pw).pw_uid, (*pw).pw_gid))
            }
        }
    };
    match lookup(user) {
        Some((uid, gid)) => Ok(Some(RunAs {
            uid,
            gid,
            name: user.to_string(),
        })),
        None => {
            log::warn!(
                "Warning: Unable to drop privileges to '{}' because this user does not exist. Trying 'nobody' instead.",
                user
            );
            match lookup("nobody") {
                Some((uid, gid)) => Ok(Some(RunAs {
                    uid,
                    gid,
                    name: "nobody".to_string(),
                })),
                None => Err("Error: Unable to drop privileges to 'nobody'.".to_string()),
            }
        }
    }
}

/// Become `r`: supplementary groups, gid, then uid.
pub fn become_user(r: &RunAs) -> Result<(), String> {
    let cname = std::ffi::CString::new(r.name.as_str()).map_err(|_| "bad user name".to_string())?;
    // SAFETY: setgroups reads `g.len()` gids from a live Vec; initgroups,
    // setgid and setuid take plain values and a valid C string; failures
    // are reported through their return values.
    let local_groups = group_entries(&r.name, r.gid);
    unsafe {
        let grouped = match &local_groups {
            Some(g) => libc::setgroups(g.len() as _, g.as_ptr()),
            None => libc::initgroups(cname.as_ptr(), r.gid),
        };
        if grouped != 0 {
            return Err(format!(
                "Error setting groups whilst dropping privileges: {}.",
                std::io::Error::last_os_error()
            ));
        }
        if libc::setgid(r.gid) != 0 {
            return Err(format!(
                "Error setting gid whilst dropping privileges: {}.",
                std::io::Error::last_os_error()
            ));
        }
        if libc::setuid(r.uid) != 0 {
            return Err(format!(
                "Error setting uid whilst dropping privileges: {}.",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The log file when `log_dest file` is in force.
fn log_file_path(cfg: &Config) -> Option<&str> {
    let dests = cfg.effective_log_dest();
    if dests.contains(&config::LogDest::None) || !dests.contains(&config::LogDest::File) {
        return None;
    }
    cfg.log_file.as_deref()
}

/// Files root made at start-up that the run-as user must reopen or replace
/// later: the log file (reopened on SIGHUP, after logrotate), the database
/// and its journal (read at the next start, perhaps by systemd as that
/// user). Root-owned ones are given to the user; others are left alone.
pub fn hand_over_files(cfg: &Config, r: &RunAs) {
    use std::os::unix::fs::MetadataExt;
    if r.uid == 0 {
        return;
    }
    let mut files: Vec<String> = Vec::new();
    if let Some(log) = log_file_path(cfg) {
        // Created now (0600) if no line was logged yet, so it is there to hand over.
        let _ = crate::logging::open_log_file(log);
        files.push(log.to_string());
    }
    if cfg.persistence {
        let db = cfg.persistence_path();
        files.push(format!("{}.journal", db));
        files.push(db);
    }
    for f in files {
        let Ok(meta) = std::fs::metadata(&f) else {
            continue;
        };
        if meta.uid() != 0 {
            continue;
        }
        if let Err(e) = std::os::unix::fs::chown(&f, Some(r.uid), Some(r.gid)) {
            log::warn!("Warning: Unable to give {} to user {}: {}.", f, r.name, e);
        }
    }
}

/// The name of the account this process runs as (for messages).
pub fn current_user_name() -> String {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                let _pw = f.next()?;
                (f.next()?.parse::<libc::uid_t>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {}", uid))
}

/// Whether this process may create and replace files in `dir`.
fn dir_writable(dir: &Path) -> Result<(), std::io::Error> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: access(2) reads a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process may append to `file` (or create it).
fn file_writable(file: &Path) -> Result<(), std::io::Error> {
    if !file.exists() {
        return dir_writable(file.parent().unwrap_or(Path::new(".")));
    }
    let c = std::ffi::CString::new(file.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: access(2) reads a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Beyond Mosquitto: everything the broker writes after start-up, checked as
/// the user it runs as (call after the privilege drop). One message per
/// problem, with the path, the user and the fix; empty when all is well.
///
/// `root_creates_log`: the log file does not exist yet, and root will create
/// it and hand it over at start-up (the `--test-config` view).
pub fn writability_problems(cfg: &Config, user: &str, root_creates_log: bool) -> Vec<String> {
    let mut out = Vec::new();
    let fix = |path: &Path| {
        format!(
            "Fix: chown {} '{}' (or choose a path that user can write).",
            user,
            path.display()
        )
    };
    if let Some(log) = log_file_path(cfg) {
        let p = Path::new(log);
        let handed_over = root_creates_log && !p.exists();
        if let Err(e) = file_writable(p).or_else(|e| if handed_over { Ok(()) } else { Err(e) }) {
            out.push(format!(
                "Warning: log file {} is not writable by user {} ({}): logging to it will stop at the next reload or rotation. {}",
                log,
                user,
                e,
                fix(p)
            ));
        } else {
            // logrotate with `nocreate` (Mosquitto's own rule) moves the file
            // away and leaves the broker to create the next one on SIGHUP.
            let dir = p.parent().unwrap_or(Path::new(""));
            let shown = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Err(e) = dir_writable(dir) {
                out.push(format!(
                    "Warning: log directory {} is not writable by user {} ({}): after logrotate moves {} away, midge cannot create a new one and keeps writing to the moved file. {}",
                    shown.display(),
                    user,
                    e,
                    log,
                    fix(shown)
                ));
            }
        }
    }
    if cfg.persistence {
        let db = cfg.persistence_path();
        let dir = Path::new(&db).parent().unwrap_or(Path::new(""));
        if let Err(e) = dir_writable(dir) {
            let shown = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            out.push(format!(
                "Warning: persistence directory {} is not writable by user {} ({}): {} cannot be saved. {}",
                shown.display(),
                user,
                e,
                db,
                fix(shown)
            ));
        }
    }
    for s in security_blocks(cfg) {
        if let Ok(Some((_, Some(file)))) = dynsec_plugin(&s) {
            let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
            let shown = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Err(e) = dir_writable(dir).and_then(|_| file_writable(Path::new(&file))) {
                out.push(format!(
                    "Warning: dynamic security file {} cannot be rewritten by user {} ({}): changes made with midge_ctrl/mosquitto_ctrl will be lost at restart. {}",
                    file,
                    user,
                    e,
                    fix(shown)
                ));
            }
        }
    }
    out
}

/// `--test-config`: the writability check as the user midge would run as.
/// As root that needs the user's own view of the file system, so a child
/// process drops privileges, checks and reports back through a socket pair.
pub fn test_config_writability(cfg: &Config) -> Vec<String> {
    use std::io::{Read, Write};
    let r = match resolve_user(&cfg.user) {
        Ok(Some(r)) => r,
        Ok(None) => return writability_problems(cfg, &current_user_name(), false),
        Err(e) => return vec![e],
    };
    let Ok((mut parent, mut child)) = std::os::unix::net::UnixStream::pair() else {
        return vec!["Warning: unable to check which files are writable.".to_string()];
    };
    // SAFETY: --test-config is single-threaded at this point; the child only
    // drops privileges, checks paths, writes to its socket and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(parent);
        let lines = match become_user(&r) {
            Ok(()) => writability_problems(cfg, &r.name, r.uid != 0),
            Err(e) => vec![e],
        };
        let _ = child.write_all(lines.join("\n").as_bytes());
        drop(child);
        // SAFETY: leave the forked child without running the parent's
        // exit handlers or destructors.
        unsafe { libc::_exit(0) };
    }
    drop(child);
    let mut text = String::new();
    if pid > 0 {
        let _ = parent.read_to_string(&mut text);
        let mut status = 0;
        // SAFETY: reaps the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    text.lines().map(str::to_string).collect()
}

/// uid and gid of `name` from /etc/passwd, if it is there.
fn passwd_entry(name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// The supplementary groups of `name` from /etc/group (plus its primary
/// group), or None when the file cannot be read (then NSS is asked).
fn group_entries(name: &str, primary: libc::gid_t) -> Option<Vec<libc::gid_t>> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    let mut gids = vec![primary];
    for line in text.lines() {
        let mut f = line.split(':');
        let (_group, _pw, gid, members) = (f.next(), f.next(), f.next(), f.next());
        let (Some(gid), Some(members)) = (gid, members) else {
            continue;
        };
        if members.split(',').any(|m| m == name) {
            if let Ok(g) = gid.parse() {
                if !gids.contains(&g) {
                    gids.push(g);
                }
            }
        }
    }
    Some(gids)
}
