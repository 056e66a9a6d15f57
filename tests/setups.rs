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
    let _ = std::fs::remove_dir_all(&dir);
}
