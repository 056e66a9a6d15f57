//! ctrl::request: one request/response exchange with the broker, as
//! mosquitto_ctrl 2.0.11's `client_request_response` does it: warn when
//! not encrypted, ask for a missing password, connect, SUBSCRIBE to the
//! response topic, PUBLISH the request once subscribed, print the first
//! reply, DISCONNECT. At most ten seconds.
//!
//! Owns: that sequence, its messages (connection, subscribe and publish
//! errors) and its exit codes: like mosquitto_ctrl, only failing to set up
//! or to open the connection is an error exit; a refused CONNACK, a refused
//! subscription or no reply still exits 0.
//!
//! Must not: build requests or format replies (`dynsec`, `response`).

use std::path::Path;
use std::time::{Duration, Instant};

use super::super::connection::{ClientError, Connection, Poll};
use super::super::messages::{self, err};
use super::super::options::Config;
use super::super::run;
use super::super::session::{Event, Session};
use super::super::tls;
use super::super::transport::ConnectError;
use super::console::{self, Console};
use super::response;
use crate::protocol::{reason, QoS};

/// mosquitto_ctrl gives up after this long without printing anything.
const LIMIT: Duration = Duration::from_secs(10);

/// Send `payload` to `request_topic`, print the reply from
/// `response_topic`. Returns the exit code.
pub fn exchange(
    c: &mut dyn Console,
    cfg: &mut Config,
    request_topic: &str,
    response_topic: &str,
    payload: &[u8],
) -> i32 {
    if cfg.cafile.is_none() && cfg.capath.is_none() {
        c.err(
            "Warning: You are running midge_ctrl without encryption.\n\
             This means all of the configuration changes you are making are visible on the network, including passwords.\n\n",
        );
    }
    if let (Some(user), None) = (&cfg.username, &cfg.password) {
        let prompt = format!("Password for {}: ", String::from_utf8_lossy(user));
        match console::get_password(c, &prompt, None, false) {
            Ok(p) => cfg.password = Some(p),
            Err(_) => {
                c.err("Error getting password.\n");
                return 1;
            }
        }
    }
    let mut session = match run::session_config(cfg) {
        Ok(s) => s,
        Err((msg, code)) => {
            c.err(&msg);
            return code;
        }
    };
    // mosquitto_ctrl never prints libmosquitto's debug log, even with -d.
    session.debug = false;
    if cfg.cafile.is_some() || cfg.capath.is_some() {
        // libmosquitto's tls_set opens each file it is given, and wants a
        // key with a certificate.
        let missing = [&cfg.cafile, &cfg.certfile, &cfg.keyfile]
            .into_iter()
            .flatten()
            .any(|f| std::fs::File::open(Path::new(f)).is_err());
        if missing || cfg.certfile.is_some() != cfg.keyfile.is_some() {
            c.err("Error: Problem setting TLS options: File not found.\n");
            return 1;
        }
    }
    if cfg.uses_tls() && cfg.effective_port() != 0 {
        if let Err(e) = tls::client_config(&run::tls_options(cfg)) {
            let text = e.to_string();
            // libmosquitto checks the TLS version while setting options,
            // but loads certificates and keys only when connecting.
            if text.contains("check the options are valid") || text.starts_with("TLS version") {
                c.err(&format!("Error: {text}\n"));
                return 1;
            }
            c.err(&format!(
                "Unable to connect ({}).\n",
                messages::strerror(err::TLS)
            ));
            return err::TLS;
        }
    }
    if cfg.host.is_empty() {
        // Left so by a certificate without a key (see `options`).
        c.err(&format!(
            "Unable to connect ({}).\n",
            messages::strerror(err::INVAL)
        ));
        return err::INVAL;
    }
    let mut transport = match run::transport_options(cfg) {
        Ok(t) => t,
        Err((msg, code)) => {
            c.err(&msg);
            return code;
        }
    };
    // mosquitto_ctrl's whole exchange fits in its ten seconds.
    transport.connect_timeout = LIMIT;
    let mut conn = Connection::new(Session::new(session), transport);
    let started = Instant::now();
    if let Err(e) = conn.connect() {
        if let ClientError::Connect(ConnectError::Tls(detail)) = &e {
            // libmosquitto starts the handshake while connecting: a server
            // that rejects it at once (a certificate it does not trust)
            // fails the connect. A server that goes quiet or hangs up is
            // noticed later, inside the loop whose errors mosquitto_ctrl
            // ignores: nothing is printed and the exit code is 0.
            if !rejected_by_server(detail) || started.elapsed() >= LIMIT {
                return 0;
            }
            c.err(&format!(
                "Unable to connect ({}).\n",
                messages::strerror(err::TLS)
            ));
            return err::TLS;
        }
        let (msg, _) = run::connect_failure(&e);
        c.err(&msg);
        return run::error_code(&e);
    }
    let deadline = Instant::now() + LIMIT;
    let qos = QoS::from_u8(cfg.qos).unwrap_or(QoS::AtLeastOnce);
    let v5 = cfg.protocol.is_v5();
    loop {
        let event = match conn.poll(Some(deadline)) {
            Ok(Poll::Event(e)) => e,
            // No reply in time, or the connection went away: mosquitto_ctrl
            // just stops, exit code 0.
            Ok(_) | Err(_) => {
                conn.close_without_disconnect();
                return 0;
            }
        };
        match event {
            Event::Connack { code: 0, .. } => {
                let _ = conn
                    .session
                    .subscribe(&[(response_topic, cfg.qos)], &[], Instant::now());
            }
            Event::Connack { code, .. } => {
                c.err(&run::connack_error(cfg.protocol, code));
                return finish(&mut conn);
            }
            Event::Subscribed { codes, .. } => match codes.as_slice() {
                [granted] if *granted < 128 => {
                    let _ = conn.session.publish(
                        request_topic,
                        payload,
                        qos,
                        false,
                        &[],
                        Instant::now(),
                    );
                }
                [refused] => {
                    if v5 {
                        c.err(&format!(
                            "Subscribe error: {}\n",
                            messages::reason_string(*refused)
                        ));
                    } else {
                        c.err("Subscribe error: Subscription refused.\n");
                    }
                    return finish(&mut conn);
                }
                _ => return finish(&mut conn),
            },
            Event::Published { reason: code, .. } => {
                if code > 127 {
                    c.err(&format!(
                        "Publish error: {}\n",
                        messages::reason_string(code)
                    ));
                    return finish(&mut conn);
                }
            }
            Event::Message(m) => {
                let r = response::render(&m.payload);
                if !r.stdout.is_empty() {
                    c.out(&r.stdout);
                }
                if !r.stderr.is_empty() {
                    c.err(&r.stderr);
                }
                return finish(&mut conn);
            }
            Event::Disconnected { .. } => {
                conn.close_without_disconnect();
                return 0;
            }
            Event::Log(_) | Event::Unsubscribed { .. } => {}
        }
    }
}

/// Whether a failed handshake was the TLS peer saying no (rustls's
/// protocol and certificate errors) rather than the socket failing (reset,
/// end of file, timeout), which libmosquitto only notices in its loop.
fn rejected_by_server(detail: &str) -> bool {
    const REJECTIONS: [&str; 10] = [
        "received corrupt message",
        "peer is incompatible",
        "peer misbehaved",
        "received fatal alert",
        "invalid peer certificate",
        "invalid certificate revocation list",
        "peer sent no certificates",
        "cannot decrypt peer's message",
        "peer sent excess record size",
        "peer doesn't support any known protocol",
    ];
    REJECTIONS.iter().any(|r| detail.starts_with(r))
}

/// DISCONNECT (reason 0, no properties) and close; exit code 0.
fn finish(conn: &mut Connection) -> i32 {
    conn.session
        .disconnect(reason::SUCCESS, &[], Instant::now());
    conn.close();
    0
}
