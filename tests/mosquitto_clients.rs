//! Black-box interoperability with Mosquitto's own command-line clients, `mosquitto_pub` and
//! `mosquitto_sub`, over MQTT 3.1.1 and 3.1. Fails when they are not
//! installed; CI installs them.

mod common;

use common::*;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

const CLIENT_LIMIT: Duration = Duration::from_secs(10);

fn clients_installed() -> bool {
    if have("mosquitto_pub") && have("mosquitto_sub") {
        true
    } else {
        panic!("mosquitto_pub and mosquitto_sub are not installed'+CI+'");
    }
}

fn pub_cmd(port: u16, extra: &[&str]) -> Finished {
    let port = port.to_string();
    let mut args = vec!["-h", "127.0.0.1", "-p", port.as_str()];
    args.extend_from_slice(extra);
    run(Path::new("mosquitto_pub"), &args, CLIENT_LIMIT)
}

/// `wait` is passed as `-W`: mosquitto_sub gives up by itself if nothing arrives.
fn sub_spawn(port: u16, wait: &str, extra: &[&str]) -> Running {
    let port = port.to_string();
    let mut args = vec!["-h", "127.0.0.1", "-p", port.as_str(), "-W", wait];
    args.extend_from_slice(extra);
    Running::spawn(Path::new("mosquitto_sub"), &args)
}

/// Starts `mosquitto_sub -C 1` and publishes with `mosquitto_pub` until the subscriber has
/// what it waits for: there is no way to know from outside when its SUBSCRIBE went through.
fn live_message(port: u16, sub_args: &[&str], pub_args: &[&str]) -> Finished {
    let mut sub = sub_spawn(port, "10", sub_args);
    let deadline = Instant::now() + CLIENT_LIMIT;
    while !sub.exited() && Instant::now() < deadline {
        let p = pub_cmd(port, pub_args);
        assert_eq!(
            p.status.and_then(|s| s.code()),
            Some(0),
            "mosquitto_pub failed:\n{}",
            p.output()
        );
        thread::sleep(Duration::from_millis(200));
    }
    sub.finish(Duration::from_secs(2))
}

#[test]
fn mosquitto_sub_sees_mosquitto_pub_qos2() {
    if !clients_installed() {
        return;
    }
    let broker = TestBroker::start("");
    let done = live_message(
        broker.port,
        &["-t", "#", "-v", "-C", "1", "-q", "2"],
        &["-t", "a/b", "-m", "hi", "-q", "2"],
    );
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(0),
        "{}",
        done.output()
    );
    assert_eq!(done.stdout, "a/b hi\n");
}

#[test]
fn retained_message_reaches_later_mosquitto_sub() {
    if !clients_installed() {
        return;
    }
    let broker = TestBroker::start("");
    let p = pub_cmd(
        broker.port,
        &["-t", "keep/me", "-m", "stored", "-r", "-q", "1"],
    );
    assert_eq!(p.status.and_then(|s| s.code()), Some(0), "{}", p.output());
    let done =
        sub_spawn(broker.port, "10", &["-t", "keep/#", "-v", "-C", "1"]).finish(CLIENT_LIMIT);
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(0),
        "{}",
        done.output()
    );
    assert_eq!(done.stdout, "keep/me stored\n");

    // Deleting it with an empty retained message leaves nothing for the next subscriber,
    // which would otherwise print it at once; it gives up after 2 s (-W 2).
    let p = pub_cmd(broker.port, &["-t", "keep/me", "-n", "-r"]);
    assert_eq!(p.status.and_then(|s| s.code()), Some(0), "{}", p.output());
    let done = sub_spawn(broker.port, "2", &["-t", "keep/#", "-v", "-C", "1"]).finish(CLIENT_LIMIT);
    assert_eq!(done.stdout, "", "retained message was deleted");
}

fn protocol_version(version: &str) {
    if !clients_installed() {
        return;
    }
    let broker = TestBroker::start("");
    let topic = format!("v/{version}");
    let done = live_message(
        broker.port,
        &["-V", version, "-t", &topic, "-v", "-C", "1", "-q", "1"],
        &[
            "-V",
            version,
            "-t",
            &topic,
            "-m",
            "payload with spaces",
            "-q",
            "1",
        ],
    );
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(0),
        "{}",
        done.output()
    );
    assert_eq!(done.stdout, format!("{topic} payload with spaces\n"));
}

#[test]
fn mosquitto_clients_speak_mqttv311() {
    protocol_version("mqttv311");
}

#[test]
fn mosquitto_clients_speak_mqttv31() {
    protocol_version("mqttv31");
}
