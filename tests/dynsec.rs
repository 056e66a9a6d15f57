//! The dynamic security plugin, black box: Mosquitto's own `mosquitto_ctrl`
//! administering midge through `$CONTROL/dynamic-security/v1`, logins and
//! ACLs following the configuration, changes saved to the JSON file and
//! surviving a restart. Fails without Mosquitto's tools (CI installs them).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn tools() -> bool {
    for t in ["mosquitto_ctrl", "mosquitto_pub", "mosquitto_sub"] {
        if !have(t) {
            panic!("{t} is not installed'+CI+'");
        }
    }
    true
}

/// A broker with the plugin line Mosquitto users write, on a fresh
/// `mosquitto_ctrl dynsec init` file.
fn start(dir: &Path) -> (TestBroker, String) {
    let file = dir.join("dynsec.json");
    common::dynsec_init_admin(&file);
    let conf = format!(
        "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\n\
         plugin_opt_config_file {}\nuser root\n",
        file.display()
    );
    (TestBroker::start(&conf), conf)
}

fn ctrl(port: u16, args: &[&str]) -> String {
    let out = Command::new("mosquitto_ctrl")
        .args([
            "-p",
            &port.to_string(),
            "-u",
            "admin",
            "-P",
            "adminpw",
            "dynsec",
        ])
        .args(args)
        .output()
        .expect("run mosquitto_ctrl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mosquitto_ctrl {:?}: {}", args, text);
    text
}

fn pub_as(port: u16, user: &str, pw: &str, topic: &str, msg: &str) -> bool {
    Command::new("mosquitto_pub")
        .args(["-p", &port.to_string(), "-u", user, "-P", pw, "-q", "1"])
        .args(["-t", topic, "-m", msg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn set_up_bob(port: u16) {
    ctrl(port, &["createClient", "bob", "-p", "bobpw"]);
    ctrl(port, &["createRole", "sensors"]);
    ctrl(
        port,
        &[
            "addRoleACL",
            "sensors",
            "publishClientSend",
            "sensors/#",
            "allow",
        ],
    );
    ctrl(
        port,
        &[
            "addRoleACL",
            "sensors",
            "subscribePattern",
            "sensors/#",
            "allow",
        ],
    );
    ctrl(port, &["addClientRole", "bob", "sensors"]);
}

#[test]
fn mosquitto_ctrl_administers_midge() {
    if !tools() {
        return;
    }
    let dir = temp_dir("dynsec");
    let (b, _) = start(&dir);
    set_up_bob(b.port);
    let list = ctrl(b.port, &["listClients"]);
    assert!(list.contains("admin") && list.contains("bob"), "{}", list);

    // bob may publish to sensors/#, the admin (who reads #) sees it.
    let watch = Running::spawn(
        Path::new("mosquitto_sub"),
        &[
            "-p",
            &b.port.to_string(),
            "-u",
            "admin",
            "-P",
            "adminpw",
            "-t",
            "sensors/#",
            "-t",
            "other/#",
            "-v",
            "-W",
            "3",
        ],
    );
    std::thread::sleep(Duration::from_millis(400));
    assert!(pub_as(b.port, "bob", "bobpw", "other/x", "denied"));
    assert!(pub_as(b.port, "bob", "bobpw", "sensors/t", "allowed"));
    assert!(!pub_as(b.port, "bob", "wrong", "sensors/t", "bad-password"));
    std::thread::sleep(Duration::from_millis(300));
    let out = watch.finish(Duration::from_secs(8)).output();
    assert!(out.contains("sensors/t allowed"), "{}", out);
    assert!(
        !out.contains("denied"),
        "publishClientSend not granted: {}",
        out
    );
    assert!(!out.contains("bad-password"), "{}", out);

    // The change is in the file, in Mosquitto's format.
    let saved = std::fs::read_to_string(dir.join("dynsec.json")).unwrap();
    assert!(saved.contains("\"bob\""), "{}", saved);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn configuration_survives_a_restart() {
    if !tools() {
        return;
    }
    let dir = temp_dir("dynsec-restart");
    let (b, conf) = start(&dir);
    set_up_bob(b.port);
    drop(b);
    let b = TestBroker::start(&conf);
    assert!(pub_as(b.port, "bob", "bobpw", "sensors/t", "again"));
    assert!(!pub_as(b.port, "bob", "not-bobs", "sensors/t", "no"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn control_topic_answers_json_and_disable_kicks() {
    if !tools() {
        return;
    }
    let dir = temp_dir("dynsec-json");
    let (b, _) = start(&dir);
    set_up_bob(b.port);
    // A raw JSON command through the control topic.
    let resp = Running::spawn(
        Path::new("mosquitto_sub"),
        &[
            "-p",
            &b.port.to_string(),
            "-u",
            "admin",
            "-P",
            "adminpw",
            "-t",
            "$CONTROL/dynamic-security/v1/response",
            "-C",
            "1",
            "-W",
            "5",
        ],
    );
    std::thread::sleep(Duration::from_millis(400));
    assert!(pub_as(
        b.port,
        "admin",
        "adminpw",
        "$CONTROL/dynamic-security/v1",
        r#"{"commands":[{"command":"bogus","correlationData":"abc"}]}"#
    ));
    let out = resp.finish(Duration::from_secs(8)).output();
    assert!(
        out.contains("Unknown command") && out.contains("abc"),
        "{}",
        out
    );

    // bob is connected; disabling him disconnects him and refuses him.
    let mut bob = Running::spawn(
        Path::new("mosquitto_sub"),
        &[
            "-p",
            &b.port.to_string(),
            "-u",
            "bob",
            "-P",
            "bobpw",
            "-t",
            "sensors/#",
            "-W",
            "8",
        ],
    );
    std::thread::sleep(Duration::from_millis(400));
    ctrl(b.port, &["disableClient", "bob"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !bob.exited() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(bob.exited(), "a disabled client is disconnected");
    assert!(!pub_as(b.port, "bob", "bobpw", "sensors/t", "disabled"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A CONNECT with username and password, MQTT 5 (level 5, no properties)
/// or 3.1.1 (level 4).
fn login_packet(client_id: &str, user: &str, pw: &str, v5: bool) -> Vec<u8> {
    let bin = |b: &mut Vec<u8>, s: &[u8]| {
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s);
    };
    let mut body = Vec::new();
    bin(&mut body, b"MQTT");
    body.push(if v5 { 5 } else { 4 });
    body.push(0xC2);
    body.extend_from_slice(&60u16.to_be_bytes());
    if v5 {
        body.push(0);
    }
    bin(&mut body, client_id.as_bytes());
    bin(&mut body, user.as_bytes());
    bin(&mut body, pw.as_bytes());
    frame(0x10, &body)
}

fn login(port: u16, client_id: &str, user: &str, pw: &str, v5: bool) -> RawClient {
    let mut c = RawClient::open(port);
    c.send(&login_packet(client_id, user, pw, v5));
    let p = c.expect_kind(CONNACK, Duration::from_secs(5));
    let rc = if v5 { p.body.get(1) } else { p.body.last() };
    assert_eq!(rc, Some(&0), "CONNACK {p:?}");
    c
}

/// Mosquitto asks the plugin before an UNSUBSCRIBE (MOSQ_ACL_UNSUBSCRIBE):
/// a denied one removes nothing; v5 answers 0x87 for it, 3.1.1 has no code.
#[test]
fn unsubscribe_follows_the_unsubscribe_acl() {
    if !tools() {
        return;
    }
    let dir = temp_dir("dynsec-unsub");
    let (b, _) = start(&dir);
    set_up_bob(b.port);
    // (mosquitto_ctrl 2.0.11's setDefaultACLAccess sends no `allow`, so a
    // role ACL is the way to deny here.)
    ctrl(
        b.port,
        &[
            "addRoleACL",
            "sensors",
            "unsubscribeLiteral",
            "sensors/#",
            "deny",
        ],
    );
    let wait = Duration::from_secs(5);
    for v5 in [true, false] {
        let mut bob = login(b.port, "bob-unsub", "bob", "bobpw", v5);
        let props: &[u8] = if v5 { &[0] } else { &[] };
        let mut sub = vec![0, 1];
        sub.extend_from_slice(props);
        sub.extend_from_slice(&[0, 9]);
        sub.extend_from_slice(b"sensors/#");
        sub.push(0);
        bob.send(&frame(0x82, &sub));
        let ack = bob.expect_kind(SUBACK, wait);
        assert_eq!(ack.body.last(), Some(&0), "{ack:?}");
        let mut unsub = vec![0, 2];
        unsub.extend_from_slice(props);
        unsub.extend_from_slice(&[0, 9]);
        unsub.extend_from_slice(b"sensors/#");
        bob.send(&frame(0xA2, &unsub));
        let ack = bob.expect_kind(UNSUBACK, wait);
        if v5 {
            assert_eq!(ack.body, vec![0, 2, 0, 0x87], "v5 UNSUBACK");
        } else {
            assert_eq!(ack.body, vec![0, 2], "3.1.1 UNSUBACK");
        }
        // Still subscribed: a message to sensors/x arrives.
        assert!(pub_as(b.port, "bob", "bobpw", "sensors/x", "still"));
        let p = bob.expect_kind(PUBLISH, wait);
        assert!(p.body.ends_with(b"still"), "{p:?}");
    }
    // Without the deny ACL the default (allow) applies again.
    ctrl(
        b.port,
        &[
            "removeRoleACL",
            "sensors",
            "unsubscribeLiteral",
            "sensors/#",
        ],
    );
    let mut bob = login(b.port, "bob-unsub2", "bob", "bobpw", true);
    bob.send(&frame(0x82, b"\x00\x01\x00\x00\x09sensors/#\x00"));
    bob.expect_kind(SUBACK, wait);
    bob.send(&frame(0xA2, b"\x00\x02\x00\x00\x09sensors/#"));
    let ack = bob.expect_kind(UNSUBACK, wait);
    assert_eq!(ack.body, vec![0, 2, 0, 0], "allowed v5 UNSUBACK");
    let _ = std::fs::remove_dir_all(dir);
}

/// Changing what the anonymous group may do disconnects clients without a
/// username, as Mosquitto's plugin does; back, they get the new rights.
#[test]
fn anonymous_group_changes_disconnect_anonymous_clients() {
    if !tools() {
        return;
    }
    let dir = temp_dir("dynsec-anon");
    let (b, conf) = start(&dir);
    drop(b);
    let b = TestBroker::start(&format!("{conf}allow_anonymous true\n"));
    let wait = Duration::from_secs(5);
    let mut anon = RawClient::connected(b.port, "anon");
    assert_eq!(anon.subscribe(&[("anon/topic", 0)]), vec![0x80]);
    ctrl(b.port, &["createGroup", "anon-clients"]);
    ctrl(b.port, &["setAnonymousGroup", "anon-clients"]);
    anon.expect_closed(wait);

    let mut anon = RawClient::connected(b.port, "anon");
    assert_eq!(anon.subscribe(&[("anon/topic", 0)]), vec![0x80]);
    ctrl(b.port, &["createRole", "anon"]);
    ctrl(
        b.port,
        &[
            "addRoleACL",
            "anon",
            "subscribeLiteral",
            "anon/topic",
            "allow",
        ],
    );
    ctrl(b.port, &["addGroupRole", "anon-clients", "anon"]);
    anon.expect_closed(wait);

    let mut anon = RawClient::connected(b.port, "anon");
    assert_eq!(anon.subscribe(&[("anon/topic", 0)]), vec![0]);
    let _ = std::fs::remove_dir_all(dir);
}
