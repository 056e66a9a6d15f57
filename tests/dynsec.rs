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
    let ok = Command::new("mosquitto_ctrl")
        .args(["dynsec", "init"])
        .arg(&file)
        .args(["admin", "adminpw"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mosquitto_ctrl dynsec init failed");
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
