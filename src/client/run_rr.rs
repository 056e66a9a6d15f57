//! run_rr: midge_rr, a drop-in for mosquitto_rr 2.0: publish one request
//! with a Response Topic, print the first response, exit.
//!
//! Owns: the request/response sequence (CONNACK -> SUBSCRIBE to `-e` ->
//! SUBACK -> PUBLISH to `-t` -> wait for one message -> DISCONNECT), `-W`,
//! and mosquitto_rr's messages and exit codes.
//!
//! Must not: parse options or format messages (see `options`, `format`).

use std::io::Read;
use std::time::{Duration, Instant};

use super::connection::{Connection, Poll};
use super::messages::{self, err};
use super::options::{PubMode, Tool};
use super::props::Value;
use super::run::{self, Printer};
use super::session::Event;
use crate::protocol::properties::id;
use crate::protocol::{reason, QoS};

/// Entry point: returns the exit code.
pub fn main(args: &[Vec<u8>]) -> i32 {
    let mut cfg = match run::parse(Tool::Rr, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut printer = Printer::new(&cfg);
    if cfg.topic.is_none() || cfg.pub_mode == PubMode::None || cfg.response_topic.is_none() {
        printer
            .out
            .stderr("Error: All of topic, message, and response topic must be supplied.\n");
        printer
            .out
            .stderr("\nUse 'midge_rr --help' to see usage.\n");
        return 1;
    }
    let response_topic = cfg.response_topic.clone().unwrap_or_default();
    cfg.publish_props
        .push(id::RESPONSE_TOPIC, Value::Str(response_topic.clone()));
    if cfg
        .publish_props
        .check_all(super::props::Command::Publish)
        .is_err()
    {
        printer
            .out
            .error("Error in PUBLISH properties: Duplicate response topic.\n");
        return 1;
    }
    match cfg.pub_mode {
        PubMode::File => {
            let path = cfg.file_input.clone().unwrap_or_default();
            match std::fs::read(&path) {
                Ok(b) => cfg.message = b,
                Err(_) => {
                    printer
                        .out
                        .error(&format!("Error: Unable to open file \"{path}\".\n"));
                    printer
                        .out
                        .error(&format!("Error loading input file \"{path}\".\n"));
                    return 1;
                }
            }
        }
        PubMode::StdinFile => {
            let mut b = Vec::new();
            if std::io::stdin().lock().read_to_end(&mut b).is_err() {
                printer.out.error("Error loading input from stdin.\n");
                return 1;
            }
            if b.is_empty() {
                printer.out.error("Error: Zero length input.\n");
                printer.out.error("Error loading input from stdin.\n");
                return 1;
            }
            cfg.message = b;
        }
        PubMode::Null => cfg.message.clear(),
        _ => {}
    }
    let mut conn = match run::connection(&cfg) {
        Ok(c) => c,
        Err((msg, code)) => {
            printer.out.error(&msg);
            return code;
        }
    };
    if let Err(code) = run::first_connect(&mut conn, &cfg) {
        return code;
    }
    let deadline =
        (cfg.timeout > 0).then(|| Instant::now() + Duration::from_secs(u64::from(cfg.timeout)));
    let qos = QoS::from_u8(cfg.qos).unwrap_or(QoS::AtMostOnce);
    let mut timed_out = false;
    let mut connack_result = 0u8;
    let exit = |rc: i32, connack: u8| if connack != 0 { i32::from(connack) } else { rc };
    loop {
        let event = match conn.poll(deadline) {
            Ok(Poll::Event(e)) => e,
            Ok(Poll::Timeout) => {
                timed_out = true;
                disconnect(
                    &cfg.disconnect_props,
                    &mut conn,
                    reason::DISCONNECT_WITH_WILL,
                );
                continue;
            }
            Ok(Poll::Closed) | Ok(Poll::Interrupted) => {
                conn.close();
                if timed_out {
                    printer.out.error("Timed out\n");
                    return err::TIMEOUT;
                }
                return exit(0, connack_result);
            }
            Err(e) => {
                let (msg, code) = run::loop_failure(&e);
                printer.out.error(&msg);
                return exit(code, connack_result);
            }
        };
        match event {
            Event::Log(l) => printer.log(&l),
            Event::Connack { code, .. } => {
                connack_result = code;
                if code != 0 {
                    if code == reason::UNSUPPORTED_PROTOCOL_VERSION {
                        printer.out.error(&format!(
                            "Connection error: {}. midge_rr only supports connecting to an MQTT v5 broker\n",
                            messages::reason_string(code)
                        ));
                    } else {
                        printer.out.error(&format!(
                            "Connection error: {}\n",
                            messages::reason_string(code)
                        ));
                    }
                    disconnect(&cfg.disconnect_props, &mut conn, 0);
                    continue;
                }
                let props = if cfg.protocol.is_v5() {
                    cfg.subscribe_props.encode()
                } else {
                    Vec::new()
                };
                let _ = conn.session.subscribe(
                    &[(response_topic.as_str(), cfg.qos)],
                    &props,
                    Instant::now(),
                );
            }
            Event::Subscribed { codes, .. } => {
                let first = codes.first().copied().unwrap_or(0x80);
                if first < 128 {
                    let props = if cfg.protocol.is_v5() {
                        cfg.publish_props.encode()
                    } else {
                        Vec::new()
                    };
                    let topic = cfg.topic.clone().unwrap_or_default();
                    let _ = conn.session.publish(
                        &topic,
                        &cfg.message,
                        qos,
                        cfg.retain,
                        &props,
                        Instant::now(),
                    );
                } else {
                    printer
                        .out
                        .error(&format!("{}\n", messages::reason_string(first)));
                    disconnect(&cfg.disconnect_props, &mut conn, 0);
                }
            }
            Event::Message(m) => {
                // mosquitto_rr just stops here: no DISCONNECT is sent.
                printer.message(&m);
                conn.close_without_disconnect();
                return exit(0, connack_result);
            }
            Event::Disconnected { .. } => {
                conn.close();
                let (msg, code) =
                    run::loop_failure(&super::connection::ClientError::ConnectionLost);
                printer.out.error(&msg);
                return exit(code, connack_result);
            }
            Event::Published { .. } | Event::Unsubscribed { .. } => {}
        }
    }
}

fn disconnect(props: &super::props::PropList, conn: &mut Connection, reason_code: u8) {
    conn.session
        .disconnect(reason_code, &props.encode(), Instant::now());
}
