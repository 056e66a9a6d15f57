//! run_sub: midge_sub, a drop-in for mosquitto_sub 2.0.
//!
//! Owns: subscribing (all `-t` filters in one SUBSCRIBE, then one
//! UNSUBSCRIBE per `-U`), what is printed and when to stop (`-C`, `-W`,
//! `-E`, `-R`, `-T`, `--retained-only`, `--remove-retained`, SIGINT and
//! SIGTERM), reconnecting after a lost connection like libmosquitto's
//! `loop_forever`, and mosquitto_sub's messages and exit codes.
//!
//! Must not: parse options or format messages (see `options`, `format`).

use std::time::{Duration, Instant};

use super::connection::{Connection, Poll};
use super::messages::err;
use super::options::{self, Config, Tool};
use super::run::{self, Printer};
use super::session::{Event, Message};
use crate::protocol::{reason, QoS};

/// libmosquitto's default reconnect delay.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Entry point: returns the exit code.
pub fn main(args: &[Vec<u8>]) -> i32 {
    let cfg = match run::parse(Tool::Sub, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut printer = Printer::new(&cfg);
    if cfg.no_retain && cfg.retained_only {
        printer
            .out
            .stderr("\nError: Combining '-R' and '--retained-only' makes no sense.\n");
        return 1;
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
    conn.set_interrupt(run::interrupt_flag());
    Subscriber {
        cfg: &cfg,
        printer: &mut printer,
        process_messages: true,
        msg_count: 0,
        last_mid: 0,
        timed_out: false,
        connack_result: 0,
    }
    .run(&mut conn)
}

struct Subscriber<'a> {
    cfg: &'a Config,
    printer: &'a mut Printer,
    process_messages: bool,
    msg_count: u32,
    /// Id of the last `--remove-retained` publish; 0 when none.
    last_mid: u16,
    timed_out: bool,
    connack_result: u8,
}

impl Subscriber<'_> {
    fn disconnect(&mut self, conn: &mut Connection, reason_code: u8) {
        let props = self.cfg.disconnect_props.encode();
        conn.session.disconnect(reason_code, &props, Instant::now());
    }

    fn run(mut self, conn: &mut Connection) -> i32 {
        let deadline = (self.cfg.timeout > 0)
            .then(|| Instant::now() + Duration::from_secs(u64::from(self.cfg.timeout)));
        let mut reconnect_at: Option<Instant> = None;
        loop {
            if let Some(at) = reconnect_at {
                let wait_until = match deadline {
                    Some(d) if d < at => d,
                    _ => at,
                };
                std::thread::sleep(wait_until.saturating_duration_since(Instant::now()));
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    self.printer.out.error("Timed out\n");
                    return err::TIMEOUT;
                }
                reconnect_at = None;
                if conn.connect().is_err() {
                    reconnect_at = Some(Instant::now() + RECONNECT_DELAY);
                }
                continue;
            }
            let polled = conn.poll(deadline);
            let event = match polled {
                Ok(Poll::Event(e)) => e,
                Ok(Poll::Timeout) => {
                    // -W: leave with the will (v5 reason 4), like mosquitto_sub.
                    self.timed_out = true;
                    self.process_messages = false;
                    self.disconnect(conn, reason::DISCONNECT_WITH_WILL);
                    continue;
                }
                Ok(Poll::Interrupted) => {
                    // SIGINT/SIGTERM: leave like -W does, but quietly.
                    self.process_messages = false;
                    self.disconnect(conn, reason::DISCONNECT_WITH_WILL);
                    continue;
                }
                Ok(Poll::Closed) => {
                    conn.close();
                    if self.timed_out {
                        self.printer.out.error("Timed out\n");
                        return err::TIMEOUT;
                    }
                    return self.exit_code(0);
                }
                Err(e) => {
                    if run::is_fatal(&e) {
                        let (msg, code) = run::loop_failure(&e);
                        self.printer.out.error(&msg);
                        return self.exit_code(code);
                    }
                    reconnect_at = Some(Instant::now() + RECONNECT_DELAY);
                    continue;
                }
            };
            match event {
                Event::Log(l) => self.printer.log(&l),
                Event::Connack { code, .. } => {
                    self.connack_result = code;
                    if code != 0 {
                        self.printer
                            .out
                            .error(&run::connack_error(self.cfg.protocol, code));
                        self.disconnect(conn, 0);
                        continue;
                    }
                    self.subscribe(conn);
                }
                Event::Subscribed { mid, codes } => {
                    if self.cfg.debug && !self.cfg.quiet {
                        let list: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
                        self.printer.out.stdout(
                            format!("Subscribed (mid: {mid}): {}\n", list.join(", ")).as_bytes(),
                        );
                    }
                    if !codes.is_empty() && codes.iter().all(|&c| c >= 128) {
                        self.disconnect(conn, 0);
                        self.printer
                            .out
                            .error("All subscription requests were denied.\n");
                    }
                    if self.cfg.exit_after_sub {
                        self.disconnect(conn, 0);
                    }
                }
                Event::Message(m) => self.message(conn, &m),
                Event::Published { mid, .. } => {
                    if !self.process_messages && (mid == self.last_mid || self.last_mid == 0) {
                        self.disconnect(conn, 0);
                    }
                }
                Event::Disconnected { .. } => {
                    // The server sent DISCONNECT: libmosquitto reconnects.
                    conn.close();
                    reconnect_at = Some(Instant::now() + RECONNECT_DELAY);
                }
                Event::Unsubscribed { .. } => {}
            }
        }
    }

    fn exit_code(&self, rc: i32) -> i32 {
        if self.connack_result != 0 {
            i32::from(self.connack_result)
        } else {
            rc
        }
    }

    fn subscribe(&mut self, conn: &mut Connection) {
        let now = Instant::now();
        let props = if self.cfg.protocol.is_v5() {
            self.cfg.subscribe_props.encode()
        } else {
            Vec::new()
        };
        // mosquitto_subscribe_multiple refuses the whole list if one
        // filter is invalid (an empty -t passes the option check).
        if !self.cfg.topics.is_empty()
            && self
                .cfg
                .topics
                .iter()
                .all(|t| !t.is_empty() && options::sub_topic_ok(t))
        {
            let opts = self.cfg.qos | self.cfg.sub_opts;
            let filters: Vec<(&str, u8)> =
                self.cfg.topics.iter().map(|t| (t.as_str(), opts)).collect();
            let _ = conn.session.subscribe(&filters, &props, now);
        }
        let uprops = if self.cfg.protocol.is_v5() {
            self.cfg.unsubscribe_props.encode()
        } else {
            Vec::new()
        };
        for t in &self.cfg.unsub_topics {
            if !t.is_empty() {
                let _ = conn.session.unsubscribe(&[t.as_str()], &uprops, now);
            }
        }
    }

    fn message(&mut self, conn: &mut Connection, m: &Message) {
        if !self.process_messages {
            return;
        }
        if self.cfg.retained_only && !m.retain {
            self.process_messages = false;
            if self.last_mid == 0 {
                self.disconnect(conn, 0);
            }
            return;
        }
        if m.retain && self.cfg.no_retain {
            return;
        }
        if self
            .cfg
            .filter_outs
            .iter()
            .any(|f| crate::topic::matches(f, &m.topic))
        {
            return;
        }
        if self.cfg.remove_retained && m.retain {
            if let Ok(mid) =
                conn.session
                    .publish(&m.topic, &[], QoS::AtLeastOnce, true, &[], Instant::now())
            {
                self.last_mid = mid;
            }
        }
        self.printer.message(m);
        if self.cfg.msg_count > 0 {
            self.msg_count += 1;
            if self.msg_count == self.cfg.msg_count {
                self.process_messages = false;
                if self.last_mid == 0 {
                    self.disconnect(conn, 0);
                }
            }
        }
    }
}
