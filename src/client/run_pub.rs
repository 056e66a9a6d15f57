//! run_pub: midge_pub, a drop-in for mosquitto_pub 2.0.
//!
//! Owns: loading the message (`-m`, `-f`, `-s`, `-n`), publishing it
//! (`--repeat`, `--repeat-delay`), `-l` line mode (a thread reads stdin,
//! the main loop publishes within the inflight window and keeps the
//! connection serviced), and mosquitto_pub's messages and exit codes.
//!
//! Must not: parse options (that is `options`) or touch the wire format.
//!
//! Known difference: when the connection drops in `-l` mode, lines read
//! meanwhile wait and are published after the reconnect (mosquitto_pub
//! drops QoS 0 lines read while disconnected).

use std::io::{BufRead, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use super::connection::{Connection, Poll};
use super::messages::{self, err};
use super::options::{Config, PubMode, Tool};
use super::run::{self, Out};
use super::session::{Event, SessionError, State};
use crate::protocol::QoS;

/// The largest payload MQTT can carry.
const MAX_PAYLOAD: usize = 268_435_455;

/// Reconnect delay after a lost connection in `-l` mode (libmosquitto's
/// default).
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Entry point: returns the exit code.
pub fn main(args: &[Vec<u8>]) -> i32 {
    let mut cfg = match run::parse(Tool::Pub, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let out = Out { quiet: cfg.quiet };
    match cfg.pub_mode {
        PubMode::StdinFile => {
            let mut buf = Vec::new();
            let read = std::io::stdin().lock().read_to_end(&mut buf);
            if read.is_err() || buf.len() > MAX_PAYLOAD {
                out.error("Error loading input from stdin.\n");
                return 1;
            }
            if buf.is_empty() {
                out.error("Error: Zero length input.\n");
                out.error("Error loading input from stdin.\n");
                return 1;
            }
            cfg.message = buf;
        }
        PubMode::File => {
            let path = cfg.file_input.clone().unwrap_or_default();
            match std::fs::read(&path) {
                Ok(b) if b.len() <= MAX_PAYLOAD => cfg.message = b,
                Ok(_) => {
                    out.error(&format!(
                        "Error: File must be less than {MAX_PAYLOAD} bytes.\n\n"
                    ));
                    out.error(&format!("Error loading input file \"{path}\".\n"));
                    return 1;
                }
                Err(_) => {
                    out.error(&format!("Error: Unable to open file \"{path}\".\n"));
                    out.error(&format!("Error loading input file \"{path}\".\n"));
                    return 1;
                }
            }
        }
        _ => {}
    }
    if cfg.topic.is_none() || cfg.pub_mode == PubMode::None {
        out.stderr("Error: Both topic and message must be supplied.\n");
        out.stdout(run::usage_text(Tool::Pub).as_bytes());
        return 1;
    }
    let mut conn = match run::connection(&cfg) {
        Ok(c) => c,
        Err((msg, code)) => {
            out.error(&msg);
            return code;
        }
    };
    if let Err(code) = run::first_connect(&mut conn, &cfg) {
        return code;
    }
    if cfg.pub_mode == PubMode::StdinLine {
        line_mode(&cfg, &mut conn, &out)
    } else {
        message_mode(&cfg, &mut conn, &out)
    }
}

fn qos(cfg: &Config) -> QoS {
    QoS::from_u8(cfg.qos).unwrap_or(QoS::AtMostOnce)
}

/// Tracks the topic alias trick: with `-D publish topic-alias N`, every
/// publish after the first sends an empty topic.
struct Publisher {
    first: bool,
}

impl Publisher {
    /// Publish one message. Err: the text mosquitto_pub prints.
    fn publish(
        &mut self,
        cfg: &Config,
        conn: &mut Connection,
        payload: &[u8],
    ) -> Result<u16, String> {
        let topic = cfg.topic.as_deref().unwrap_or("");
        let v5 = cfg.protocol.is_v5();
        let topic = if v5 && cfg.have_topic_alias && !self.first {
            ""
        } else {
            self.first = false;
            if topic.is_empty() {
                return Err("Error: Invalid input. Does your topic contain '+' or '#'?\n".into());
            }
            topic
        };
        let props = if v5 {
            cfg.publish_props.encode()
        } else {
            Vec::new()
        };
        conn.session
            .publish(topic, payload, qos(cfg), cfg.retain, &props, Instant::now())
            .map_err(|e| {
                match e {
                    SessionError::PayloadTooLarge => "Error: Message payload is too large.\n",
                    SessionError::QosNotSupported => {
                        "Error: Message QoS not supported on broker, try a lower QoS.\n"
                    }
                    SessionError::InvalidArgument(_) => {
                        "Error: Invalid input. Does your topic contain '+' or '#'?\n"
                    }
                    SessionError::NotConnected => {
                        "Error: Client not connected when trying to publish.\n"
                    }
                    // mosquitto_pub prints nothing for these, it just leaves.
                    _ => "",
                }
                .to_string()
            })
    }
}

/// Report a refused CONNACK the way mosquitto_pub does; returns the exit
/// code.
fn refused(cfg: &Config, out: &Out, code: u8) -> i32 {
    out.error(&run::connack_error(cfg.protocol, code));
    // mosquitto_pub's loop then ends with one of these.
    let rc = if cfg.protocol.is_v5() {
        err::PROTOCOL
    } else {
        err::CONN_REFUSED
    };
    out.error(&format!("Error: {}\n", messages::strerror(rc)));
    i32::from(code)
}

fn publish_failed(out: &Out, mid: u16, reason: u8, properties: &[u8]) {
    if reason > 127 {
        out.error(&format!(
            "Warning: Publish {mid} failed: {}.\n",
            messages::reason_string(reason)
        ));
        if let Some(r) = crate::protocol::Properties::from_raw_unchecked(properties).reason_string()
        {
            out.error(&format!("{r}\n"));
        }
    }
}

/// `-m`, `-f`, `-s`, `-n`: publish `--repeat` times and disconnect.
fn message_mode(cfg: &Config, conn: &mut Connection, out: &Out) -> i32 {
    let payload: &[u8] = if cfg.pub_mode == PubMode::Null {
        &[]
    } else {
        &cfg.message
    };
    let mut publisher = Publisher { first: true };
    let mut published = 0u32;
    let mut next_at: Option<Instant> = None;
    let mut disconnecting = false;
    loop {
        let polled = conn.poll(next_at);
        let event = match polled {
            Ok(Poll::Event(e)) => e,
            Ok(Poll::Timeout) => {
                next_at = None;
                if let Err(msg) = publisher.publish(cfg, conn, payload) {
                    out.error(&format!("Error sending repeat publish: {}", msg.trim_end()));
                }
                continue;
            }
            Ok(Poll::Closed) | Ok(Poll::Interrupted) => {
                conn.close();
                return 0;
            }
            Err(e) => {
                let (msg, code) = run::loop_failure(&e);
                out.error(&msg);
                return code;
            }
        };
        match event {
            Event::Log(l) => log(cfg, out, &l),
            Event::Connack { code, .. } => {
                if code != 0 {
                    conn.close();
                    return refused(cfg, out, code);
                }
                if let Err(msg) = publisher.publish(cfg, conn, payload) {
                    out.error(&msg);
                    disconnect(cfg, conn);
                    disconnecting = true;
                }
            }
            Event::Published {
                mid,
                reason,
                properties,
            } => {
                publish_failed(out, mid, reason, &properties);
                published += 1;
                if published < cfg.repeat_count {
                    next_at = Some(Instant::now() + cfg.repeat_delay);
                } else if !disconnecting {
                    disconnect(cfg, conn);
                    disconnecting = true;
                }
            }
            Event::Disconnected { .. } => {
                conn.close();
                let (msg, code) =
                    run::loop_failure(&super::connection::ClientError::ConnectionLost);
                out.error(&msg);
                return code;
            }
            Event::Message(_) | Event::Subscribed { .. } | Event::Unsubscribed { .. } => {}
        }
    }
}

fn log(cfg: &Config, out: &Out, line: &str) {
    if cfg.debug {
        out.stdout(format!("{line}\n").as_bytes());
    }
}

fn disconnect(cfg: &Config, conn: &mut Connection) {
    let props = cfg.disconnect_props.encode();
    conn.session.disconnect(0, &props, Instant::now());
}

/// Lines from stdin, read by a thread so the connection stays serviced
/// while the reader blocks. `None` marks the end of input.
fn stdin_lines() -> Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::sync_channel(1024);
    thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
            let mut line = Vec::new();
            match lock.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.send(Some(line)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// How a round of servicing the connection ended in `-l` mode.
enum Serviced {
    /// Events were handled.
    Busy,
    /// Nothing arrived.
    Idle,
    /// The tool must exit with this code.
    Exit(i32),
    /// The connection broke; reconnect.
    Lost,
}

struct LineMode<'a> {
    cfg: &'a Config,
    out: &'a Out,
    /// CONNACK accepted on the current connection.
    ready: bool,
    disconnecting: bool,
}

impl LineMode<'_> {
    /// Handle every event that arrives before `deadline`.
    fn service(&mut self, conn: &mut Connection, deadline: Instant) -> Serviced {
        let mut busy = false;
        loop {
            match conn.poll(Some(deadline)) {
                Ok(Poll::Event(e)) => {
                    busy = true;
                    match e {
                        Event::Log(l) => log(self.cfg, self.out, &l),
                        Event::Connack { code, .. } => {
                            if code != 0 {
                                conn.close();
                                return Serviced::Exit(refused(self.cfg, self.out, code));
                            }
                            self.ready = true;
                        }
                        Event::Published {
                            mid,
                            reason,
                            properties,
                        } => publish_failed(self.out, mid, reason, &properties),
                        _ => {}
                    }
                }
                Ok(Poll::Timeout) => return if busy { Serviced::Busy } else { Serviced::Idle },
                Ok(Poll::Closed) | Ok(Poll::Interrupted) => {
                    conn.close();
                    return Serviced::Exit(0);
                }
                Err(e) => {
                    if run::is_fatal(&e) || self.disconnecting {
                        let (msg, code) = run::loop_failure(&e);
                        self.out.error(&msg);
                        return Serviced::Exit(code);
                    }
                    return Serviced::Lost;
                }
            }
        }
    }
}

/// `-l`: one message per line of stdin, then disconnect once every
/// message is acknowledged. The connection is serviced between lines, and
/// lost connections are reestablished after a second.
fn line_mode(cfg: &Config, conn: &mut Connection, out: &Out) -> i32 {
    const IDLE_WAIT: Duration = Duration::from_millis(100);
    let lines = stdin_lines();
    let mut publisher = Publisher { first: true };
    let mut state = LineMode {
        cfg,
        out,
        ready: false,
        disconnecting: false,
    };
    let mut eof = false;
    let window = |c: &Connection| qos(cfg) == QoS::AtMostOnce || c.session.window_open();
    loop {
        let mut busy = match state.service(conn, Instant::now()) {
            Serviced::Exit(code) => return code,
            Serviced::Lost => {
                state.ready = false;
                reconnect(conn);
                continue;
            }
            Serviced::Busy => true,
            Serviced::Idle => false,
        };
        let connected = state.ready && conn.session.state() == State::Connected;
        if connected && !eof {
            // Publish what stdin has, within the inflight window.
            let mut sent = 0;
            while window(conn) && sent < 1024 {
                match lines.try_recv() {
                    Ok(Some(line)) => {
                        if let Err(msg) = publisher.publish(cfg, conn, &line) {
                            out.error(&msg);
                        }
                        sent += 1;
                    }
                    Ok(None) | Err(TryRecvError::Disconnected) => {
                        eof = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            busy |= sent > 0;
        }
        if connected && eof && !state.disconnecting && conn.session.pending_publishes() == 0 {
            disconnect(cfg, conn);
            state.disconnecting = true;
            continue;
        }
        if busy {
            continue;
        }
        // Nothing happened: block on whichever source can make progress.
        if connected && !eof && window(conn) {
            match lines.recv_timeout(IDLE_WAIT) {
                Ok(Some(line)) => {
                    if let Err(msg) = publisher.publish(cfg, conn, &line) {
                        out.error(&msg);
                    }
                }
                Ok(None) | Err(RecvTimeoutError::Disconnected) => eof = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
        } else {
            match state.service(conn, Instant::now() + IDLE_WAIT) {
                Serviced::Exit(code) => return code,
                Serviced::Lost => {
                    state.ready = false;
                    reconnect(conn);
                }
                Serviced::Busy | Serviced::Idle => {}
            }
        }
    }
}

/// Retry every second until connected again (libmosquitto's loop thread
/// does the same, forever).
fn reconnect(conn: &mut Connection) {
    loop {
        thread::sleep(RECONNECT_DELAY);
        if conn.connect().is_ok() {
            return;
        }
    }
}
