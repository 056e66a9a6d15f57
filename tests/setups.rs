//! Set-ups: how the broker meets the host it is installed on. Listening on IPv4 and IPv6,
//! Mosquitto's local-only mode, refusing CA files that hold no certificate, log files and
//! state the dropped user can still write, file modes, and install.sh.
//!
//! Black-box: the `midge` binary (or `MIDGE_TEST_BROKER`) on free ports. The IPv6 tests need
//! `::1` and fail with a clear message without it (CI enables it in `.ci/run`).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// True when nothing accepts TCP on `ip:port`.
fn refused(ip: IpAddr, port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_millis(500)).is_err()
}

/// CONNACK return code for a v3.1.1 client at `ip:port`, with optional credentials.
fn connack_at(ip: IpAddr, port: u16, id: &str, user: Option<(&str, &str)>) -> u8 {
    let mut c = Connect::new(id);
    if let Some((u, p)) = user {
        c.username = Some(u.to_string());
        c.password = Some(p.as_bytes().to_vec());
    }
    RawClient::connect_at(SocketAddr::new(ip, port), &c).1
}

fn assert_logged(b: &TestBroker, line: &str) {
    let log = b.log();
    assert!(log.contains(line), "log lacks {line:?}:\n{log}");
}

// ---------------------------------------------------------------------------------------------
// 1. IPv4 and IPv6
// ---------------------------------------------------------------------------------------------

#[test]
fn listener_without_address_opens_ipv4_and_ipv6() {
    require_ipv6_loopback();
    let b = TestBroker::start_config(Some("listener {port}\nallow_anonymous true\n"), &[], V4);
    assert_eq!(connack_at(V4, b.port, "v4", None), 0);
    assert_eq!(connack_at(V6, b.port, "v6", None), 0);
    assert_logged(
        &b,
        &format!("Opening ipv4 listen socket on port {}.", b.port),
    );
    assert_logged(
        &b,
        &format!("Opening ipv6 listen socket on port {}.", b.port),
    );
}

#[test]
fn deprecated_port_directive_opens_ipv4_and_ipv6() {
    require_ipv6_loopback();
    let b = TestBroker::start_config(Some("port {port}\nallow_anonymous true\n"), &[], V6);
    assert_eq!(connack_at(V4, b.port, "v4", None), 0);
    assert_eq!(connack_at(V6, b.port, "v6", None), 0);
}

#[test]
fn socket_domain_ipv4_opens_ipv4_only() {
    require_ipv6_loopback();
    let b = TestBroker::start_config(
        Some("listener {port}\nsocket_domain ipv4\nallow_anonymous true\n"),
        &[],
        V4,
    );
    assert_eq!(connack_at(V4, b.port, "v4", None), 0);
    assert!(refused(V6, b.port), "socket_domain ipv4 but [::1] accepts");
    assert!(!b.log().contains("Opening ipv6"), "{}", b.log());
}

#[test]
fn socket_domain_ipv6_opens_ipv6_only() {
    require_ipv6_loopback();
    let b = TestBroker::start_config(
        Some("listener {port}\nsocket_domain ipv6\nallow_anonymous true\n"),
        &[],
        V6,
    );
    assert_eq!(connack_at(V6, b.port, "v6", None), 0);
    assert!(
        refused(V4, b.port),
        "socket_domain ipv6 but 127.0.0.1 accepts (not V6ONLY?)"
    );
    assert!(!b.log().contains("Opening ipv4"), "{}", b.log());
}

#[test]
fn local_only_mode_listens_on_both_loopbacks() {
    require_ipv6_loopback();
    let b = TestBroker::start_config(None, &[], V4);
    assert_eq!(connack_at(V4, b.port, "v4", None), 0);
    assert_eq!(connack_at(V6, b.port, "v6", None), 0);
    assert_logged(&b, "Starting in local only mode.");
    assert_logged(
        &b,
        &format!("Opening ipv4 listen socket on port {}.", b.port),
    );
    assert_logged(
        &b,
        &format!("Opening ipv6 listen socket on port {}.", b.port),
    );
}

/// A host without IPv6: a fresh network namespace whose loopback has IPv6 disabled. The
/// broker still starts on 127.0.0.1 and says why IPv6 is missing. Needs `unshare` and `ip`
/// (util-linux, iproute2) and root, as in CI.
#[test]
fn host_without_ipv6_still_starts_on_ipv4() {
    for tool in ["unshare", "ip", "sysctl"] {
        assert!(
            have(tool) || Path::new("/usr/sbin").join(tool).exists(),
            "{tool} is needed for this test (apt-get install util-linux iproute2 procps)"
        );
    }
    let bin = broker_binary();
    let script = format!(
        "ip link set lo up && sysctl -qw net.ipv6.conf.lo.disable_ipv6=1 && \
         exec timeout -s TERM 2 {} -p 1883",
        bin.display()
    );
    let f = run(
        Path::new("unshare"),
        &["--net", "sh", "-c", &script],
        Duration::from_secs(10),
    );
    let out = f.output();
    assert!(
        out.contains("Opening ipv4 listen socket on port 1883."),
        "{out}"
    );
    assert!(
        out.contains("Warning: Unable to open ipv6 listen socket"),
        "no warning about IPv6:\n{out}"
    );
    assert!(out.contains("running"), "the broker did not start:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// 5. Local-only mode and allow_anonymous
// ---------------------------------------------------------------------------------------------

/// Mosquitto 2.0.11 with no listener: its generated loopback listeners let anonymous clients
/// in even with `allow_anonymous false` (checked: `mosquitto -c a.conf -p N` with only that
/// line, then `mosquitto_pub -p N` succeeds).
#[test]
fn local_only_mode_lets_anonymous_in_despite_allow_anonymous_false() {
    require_ipv6_loopback();
    let b = TestBroker::start_config(Some("allow_anonymous false\n"), &["-p", "{port}"], V4);
    assert_eq!(
        connack_at(V4, b.port, "anon4", None),
        0,
        "anonymous refused on 127.0.0.1"
    );
    assert_eq!(
        connack_at(V6, b.port, "anon6", None),
        0,
        "anonymous refused on ::1"
    );
}

/// The global password file and ACL still apply in local-only mode: a wrong password is
/// refused and anonymous clients get the anonymous ACL.
#[test]
fn local_only_mode_keeps_password_file_and_acl() {
    let dir = temp_dir("setups-acl");
    let acl = dir.join("acl");
    std::fs::write(&acl, "topic read foo\nuser alice\ntopic readwrite #\n").expect("acl");
    let conf = format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\n",
        manifest("conf/passwd.example").display(),
        acl.display()
    );
    let b = TestBroker::start_config(Some(&conf), &["-p", "{port}"], V4);
    let addr = SocketAddr::new(V4, b.port);
    assert_eq!(connack_at(V4, b.port, "bad", Some(("alice", "wrong"))), 5);
    let mut watcher = Connect::new("watcher");
    watcher.username = Some("alice".into());
    watcher.password = Some(b"alicepw".to_vec());
    let (mut w, rc) = RawClient::connect_at(addr, &watcher);
    assert_eq!(rc, 0);
    assert_eq!(w.subscribe(&[("#", 0)]), vec![0]);
    let (mut anon, rc) = RawClient::connect_at(addr, &Connect::new("anon"));
    assert_eq!(rc, 0, "anonymous refused in local-only mode");
    anon.publish("x", b"denied by the anonymous ACL", 0, false);
    anon.ping();
    let mut marker = Connect::new("marker");
    marker.username = Some("alice".into());
    marker.password = Some(b"alicepw".to_vec());
    let (mut m, _) = RawClient::connect_at(addr, &marker);
    m.publish("marker", b"m", 0, false);
    let before = w.publishes_until("marker", WAIT);
    assert!(
        before.is_empty(),
        "anonymous write got past the ACL: {before:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// With per_listener_settings the generated listeners take listener defaults only: the
/// `acl_file` given before any listener (Mosquitto keeps it for a default listener that is
/// never created) does not apply, and anonymous clients are in.
#[test]
fn local_only_mode_with_per_listener_settings_uses_listener_defaults() {
    let dir = temp_dir("setups-pls");
    let acl = dir.join("acl");
    std::fs::write(&acl, "topic read foo\n").expect("acl");
    let conf = format!(
        "per_listener_settings true\nallow_anonymous false\nacl_file {}\n",
        acl.display()
    );
    let b = TestBroker::start_config(Some(&conf), &["-p", "{port}"], V4);
    let addr = SocketAddr::new(V4, b.port);
    let (mut sub, rc) = RawClient::connect_at(addr, &Connect::new("sub"));
    assert_eq!(rc, 0);
    assert_eq!(sub.subscribe(&[("x", 0)]), vec![0]);
    let (mut publ, rc) = RawClient::connect_at(addr, &Connect::new("pub"));
    assert_eq!(rc, 0);
    publ.publish("x", b"no acl here", 1, false);
    assert_eq!(sub.expect_publish(WAIT).payload, b"no acl here".to_vec());
    // Listener defaults include no auto_id_prefix: Mosquitto 2.0.11 logs such a client
    // "as ECE9FEED-AC95-5654-5163-2B3CBBAF3E08", without "auto-".
    let (mut nameless, rc) = RawClient::connect_at(addr, &Connect::new(""));
    assert_eq!(rc, 0, "zero-length client id refused");
    nameless.ping();
    let log = b.log();
    let line = log
        .lines()
        .filter(|l| l.contains("New client connected from"))
        .find(|l| !l.contains(" as sub ") && !l.contains(" as pub "))
        .unwrap_or_else(|| panic!("no connection line for the nameless client:\n{log}"));
    assert!(!line.contains(" as auto-"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// 3. Log files and state the run-as user can write; 4. file modes
// ---------------------------------------------------------------------------------------------

/// These tests start the broker as root with `user nobody`, as a packaged service starts.
fn require_root() {
    let f = run(Path::new("id"), &["-u"], Duration::from_secs(5));
    assert_eq!(
        f.stdout.trim(),
        "0",
        "this test starts the broker as root with `user nobody`; run the suite as root (CI does)"
    );
}

fn signal(pid: u32, sig: &str) {
    let f = run(
        Path::new("kill"),
        &[&format!("-{sig}"), &pid.to_string()],
        Duration::from_secs(5),
    );
    assert!(
        f.status.is_some_and(|s| s.success()),
        "kill -{sig}: {}",
        f.output()
    );
}

/// Waits (bounded) until `path` contains `needle`; returns the text.
fn wait_for_text(path: &Path, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Connects, then waits until the log file shows the connection: proves the broker still
/// writes to `log`.
fn connection_reaches_log(b: &TestBroker, log: &Path, id: &str) -> String {
    let mut c = RawClient::connected(b.port, id);
    c.ping();
    wait_for_text(log, &format!(" as {id} "))
}

const LOG_AS_NOBODY: &str = "listener {port} 127.0.0.1\nallow_anonymous true\nuser nobody\n\
                             log_dest file {dir}/midge.log\nlog_dest stderr\nlog_type all\n";

/// The log file root creates at start-up is handed to the run-as user, so the reopen after
/// SIGHUP (logrotate's postrotate) works and logging goes on.
#[test]
fn log_file_is_reopened_by_the_run_as_user_after_sighup() {
    require_root();
    let b = TestBroker::start_config(Some(LOG_AS_NOBODY), &[], V4);
    let log = b.dir().join("midge.log");
    let text = connection_reaches_log(&b, &log, "before-hup");
    assert!(text.contains(" as before-hup "), "{text}");
    // The file is writable; the root-owned directory would not let a new one be made.
    assert!(
        text.contains(&format!(
            "log directory {} is not writable by user nobody",
            b.dir().display()
        )),
        "no warning about rotation into a directory nobody cannot write:\n{text}"
    );
    signal(b.pid(), "HUP");
    let _ = wait_for_text(&log, "Reloading config.");
    let text = connection_reaches_log(&b, &log, "after-hup");
    assert!(
        text.contains(" as after-hup "),
        "logging went silent after SIGHUP:\n{text}\nstderr:\n{}",
        b.log()
    );
}

/// A reopen that fails (the file was given back to root) is reported on stderr and logging
/// continues into the file opened before.
#[test]
fn failed_log_reopen_is_reported_and_keeps_the_old_file() {
    require_root();
    let b = TestBroker::start_config(Some(LOG_AS_NOBODY), &[], V4);
    let log = b.dir().join("midge.log");
    let text = connection_reaches_log(&b, &log, "first");
    assert!(text.contains(" as first "), "{text}");
    std::os::unix::fs::chown(&log, Some(0), Some(0)).expect("chown log to root");
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod log");
    signal(b.pid(), "HUP");
    let text = connection_reaches_log(&b, &log, "second");
    assert!(
        text.contains(" as second "),
        "nothing logged after a failed reopen:\n{text}"
    );
    let stderr = b.log();
    assert!(
        stderr.contains("Unable to reopen log file") && stderr.contains("midge.log"),
        "the failed reopen was not reported on stderr:\n{stderr}"
    );
}

/// Beyond Mosquitto: a persistence directory the run-as user cannot write is reported at
/// start-up and by --test-config, with the path, the user and the fix.
#[test]
fn unwritable_persistence_directory_is_reported_with_the_fix() {
    require_root();
    let conf = "listener {port} 127.0.0.1\nallow_anonymous true\nuser nobody\n\
                persistence true\npersistence_location {dir}/\n";
    let b = TestBroker::start_config(Some(conf), &[], V4);
    let dir = b.dir().display().to_string();
    let log = b.log();
    for want in [
        format!("persistence directory {dir}"),
        "not writable by user nobody".to_string(),
        format!("Fix: chown nobody '{dir}"),
    ] {
        assert!(log.contains(&want), "start-up log lacks {want:?}:\n{log}");
    }
    let t = temp_dir("setups-tc");
    let conf_path = t.join("midge.conf");
    std::fs::write(
        &conf_path,
        format!(
            "listener 1883\nuser nobody\npersistence true\npersistence_location {}/\n",
            t.display()
        ),
    )
    .expect("write config");
    let f = run(
        &broker_binary(),
        &["-c", &conf_path.display().to_string(), "--test-config"],
        Duration::from_secs(10),
    );
    let out = f.output();
    assert!(
        out.contains(&format!("persistence directory {}", t.display()))
            && out.contains("not writable by user nobody")
            && out.contains("Fix: chown nobody"),
        "--test-config does not report it:\n{out}"
    );
    let _ = std::fs::remove_dir_all(&t);
}

/// The database, its journal and the log file hold messages, client ids and users: 0600.
#[test]
fn database_journal_and_log_file_are_owner_only() {
    let conf = "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n\
                persistence true\npersistence_location {dir}/\npersistence_mode journal\n\
                log_dest file {dir}/midge.log\n";
    let b = TestBroker::start_config(Some(conf), &[], V4);
    let mut c = RawClient::connected(b.port, "modes");
    c.publish("keep/this", b"retained", 1, true);
    let dir = b.dir();
    for f in ["mosquitto.db", "mosquitto.db.journal", "midge.log"] {
        let p = dir.join(f);
        assert_eq!(mode_of(&p), 0o600, "{} is {:o}", p.display(), mode_of(&p));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. CA files
// ---------------------------------------------------------------------------------------------

/// A self-signed server certificate and key (openssl is required: installed in CI).
fn server_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    let f = run(
        Path::new("openssl"),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key.display().to_string(),
            "-out",
            &crt.display().to_string(),
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
        ],
        Duration::from_secs(30),
    );
    assert!(
        f.status.is_some_and(|s| s.success()),
        "openssl is needed to make a test certificate (apt-get install openssl): {}",
        f.output()
    );
    (crt, key)
}

/// `--test-config` and a real start both refuse `ca_line`, with `expected` in the output.
fn ca_refused(ca_line: &str, expected: &str) {
    let dir = temp_dir("setups-ca");
    let (crt, key) = server_cert(&dir);
    let port = free_port();
    let conf = dir.join("midge.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nuser root\ncertfile {}\nkeyfile {}\n{ca_line}\n",
            crt.display(),
            key.display()
        ),
    )
    .expect("write config");
    let conf = conf.display().to_string();
    let bin = broker_binary();
    let checked = run(
        &bin,
        &["-c", &conf, "--test-config"],
        Duration::from_secs(10),
    );
    assert_eq!(
        checked.status.and_then(|s| s.code()),
        Some(1),
        "--test-config accepted {ca_line:?}:\n{}",
        checked.output()
    );
    assert!(checked.output().contains(expected), "{}", checked.output());
    let started = run(&bin, &["-c", &conf], Duration::from_secs(10));
    assert!(
        started.status.is_some_and(|s| !s.success()),
        "the broker started with {ca_line:?} (or did not stop within 10 s):\n{}",
        started.output()
    );
    assert!(started.output().contains(expected), "{}", started.output());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cafile_holding_no_certificate_is_refused() {
    ca_refused(
        "cafile /etc/hostname",
        "Error: Unable to load CA certificates. Check cafile \"/etc/hostname\".",
    );
}

#[test]
fn missing_cafile_is_refused() {
    ca_refused(
        "cafile /nonexistent/ca.crt",
        "Error: Unable to load CA certificates. Check cafile \"/nonexistent/ca.crt\".",
    );
}

/// Stricter than Mosquitto, which (with OpenSSL 3) only looks into capath at handshake time.
#[test]
fn missing_capath_is_refused() {
    ca_refused(
        "capath /nonexistent/certs",
        "Error: Unable to load CA certificates. Check capath \"/nonexistent/certs\".",
    );
}

// ---------------------------------------------------------------------------------------------
// 8. install.sh gives the package's layout
// ---------------------------------------------------------------------------------------------

/// A throwaway root with copies of the host's account files (without any `midge`), as
/// scripts/deb-smoke.sh makes for the package.
fn throwaway_root() -> PathBuf {
    let r = temp_dir("setups-root");
    std::fs::create_dir_all(r.join("etc")).expect("mkdir etc");
    for f in ["passwd", "group", "shadow", "gshadow"] {
        let host = Path::new("/etc").join(f);
        let Ok(text) = std::fs::read_to_string(&host) else {
            continue;
        };
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with("midge:"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(r.join("etc").join(f), kept).expect("copy account file");
    }
    if Path::new("/etc/login.defs").exists() {
        std::fs::copy("/etc/login.defs", r.join("etc/login.defs")).expect("copy login.defs");
    }
    r
}

fn install_sh(root: &Path) -> Finished {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_midge"))
        .parent()
        .expect("binary dir")
        .display()
        .to_string();
    run(
        Path::new("env"),
        &[
            &format!("DESTDIR={}", root.display()),
            &format!("BIN_DIR={bin_dir}"),
            &manifest("scripts/install.sh").display().to_string(),
        ],
        Duration::from_secs(60),
    )
}

#[test]
fn install_sh_into_a_throwaway_root_gives_the_package_layout() {
    require_root();
    assert!(
        have("useradd"),
        "useradd is needed (apt-get install passwd)"
    );
    let r = throwaway_root();
    let f = install_sh(&r);
    assert!(
        f.status.is_some_and(|s| s.success()),
        "install.sh failed:\n{}",
        f.output()
    );

    // Binaries, unit, config with what the package switches on, conf.d.
    for p in [
        "usr/bin/midge",
        "usr/bin/midge_passwd",
        "lib/systemd/system/midge.service",
    ] {
        assert!(r.join(p).is_file(), "{p} not installed");
    }
    let conf = std::fs::read_to_string(r.join("etc/midge/midge.conf")).expect("midge.conf");
    for line in [
        "user midge",
        "persistence_location /var/lib/midge/",
        "include_dir /etc/midge/conf.d",
    ] {
        assert!(conf.lines().any(|l| l == line), "midge.conf lacks {line:?}");
    }
    assert!(
        r.join("etc/midge/conf.d/README").is_file(),
        "conf.d/README missing"
    );
    // Byte for byte what scripts/deploy-conf.sh gives, which is what build-deb.sh ships.
    let other = temp_dir("setups-deploy");
    let d = run(
        &manifest("scripts/deploy-conf.sh"),
        &[&other.display().to_string()],
        Duration::from_secs(30),
    );
    assert!(d.status.is_some_and(|s| s.success()), "{}", d.output());
    let deployed = std::fs::read_to_string(other.join("etc/midge/midge.conf")).expect("deployed");
    assert_eq!(conf, deployed, "install.sh and deploy-conf.sh differ");
    let build_deb = std::fs::read_to_string(manifest("scripts/build-deb.sh")).expect("build-deb");
    assert!(
        build_deb.contains("scripts/deploy-conf.sh \"$ROOT\""),
        "build-deb.sh no longer uses scripts/deploy-conf.sh"
    );
    let _ = std::fs::remove_dir_all(&other);

    // The package's user and directories (the postinst's own code).
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).expect("passwd");
    let entry: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("midge:"))
        .expect("install.sh did not create the midge user")
        .split(':')
        .collect();
    let (uid, gid): (u32, u32) = (
        entry[2].parse().expect("uid"),
        entry[3].parse().expect("gid"),
    );
    assert!(uid < 1000, "midge is not a system user ({uid})");
    assert_eq!(entry[6], "/usr/sbin/nologin");
    for d in ["var/lib/midge", "var/log/midge"] {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(r.join(d)).expect(d);
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777),
            (uid, gid, 0o750),
            "{d}"
        );
    }

    // The installed config is valid and works (paths pointed into the root, user root
    // because `midge` exists only there, a listener of the test's own).
    let local = conf
        .replace(
            "include_dir /etc/midge/conf.d",
            &format!("include_dir {}/etc/midge/conf.d", r.display()),
        )
        .replace(
            "persistence_location /var/lib/midge/",
            &format!("persistence_location {}/var/lib/midge/", r.display()),
        )
        .replace("user midge", "user root");
    let local_conf = r.join("etc/midge/test.conf");
    std::fs::write(&local_conf, &local).expect("write test.conf");
    let t = run(
        &r.join("usr/bin/midge"),
        &["-c", &local_conf.display().to_string(), "--test-config"],
        Duration::from_secs(10),
    );
    assert!(
        t.stdout.contains("Configuration file is valid."),
        "{}",
        t.output()
    );
    let text =
        format!("{local}\npersistence true\nlistener {{port}} 127.0.0.1\nallow_anonymous true\n");
    let b = TestBroker::start_config(Some(&text), &[], V4);
    let mut c = RawClient::connected(b.port, "installed");
    c.publish("installed/works", b"yes", 1, true);
    let mut s = RawClient::connected(b.port, "reader");
    s.subscribe(&[("installed/#", 1)]);
    assert_eq!(s.expect_publish(WAIT).payload, b"yes".to_vec());
    drop(b);

    // Again: the config is kept (the new one beside it), no second user.
    let f = install_sh(&r);
    assert!(
        f.status.is_some_and(|s| s.success()),
        "second install.sh failed:\n{}",
        f.output()
    );
    assert!(r.join("etc/midge/midge.conf.dist").is_file());
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).expect("passwd");
    assert_eq!(
        passwd.lines().filter(|l| l.starts_with("midge:")).count(),
        1
    );
    let _ = std::fs::remove_dir_all(&r);
}

/// The dynamic-security JSON is rewritten (`<file>.new`, then rename) on every change: a
/// directory the run-as user cannot write is reported at start-up, with the fix.
#[test]
fn unwritable_dynsec_directory_is_reported_with_the_fix() {
    require_root();
    assert!(
        have("mosquitto_ctrl"),
        "mosquitto_ctrl is needed (apt-get install mosquitto-clients)"
    );
    let t = temp_dir("setups-dynsec");
    let file = t.join("dynsec.json");
    let f = run(
        Path::new("mosquitto_ctrl"),
        &[
            "dynsec",
            "init",
            &file.display().to_string(),
            "admin",
            "adminpw",
        ],
        Duration::from_secs(30),
    );
    assert!(f.status.is_some_and(|s| s.success()), "{}", f.output());
    let conf = format!(
        "listener {{port}} 127.0.0.1\nuser nobody\n\
         plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\n\
         plugin_opt_config_file {}\n",
        file.display()
    );
    let b = TestBroker::start_config(Some(&conf), &[], V4);
    let log = b.log();
    assert!(
        log.contains(&format!("dynamic security file {}", file.display()))
            && log.contains("user nobody")
            && log.contains(&format!("Fix: chown nobody '{}'", t.display())),
        "start-up log does not report the unwritable dynsec directory:\n{log}"
    );
    drop(b);
    let _ = std::fs::remove_dir_all(&t);
}
