//! run: what midge_pub, midge_sub and midge_rr share once the command
//! line is parsed: turning a `Config` into a session and a transport,
//! connecting with Mosquitto's error messages and exit codes, printing
//! debug lines and messages, and stopping on SIGINT/SIGTERM.
//!
//! Must not: contain one tool's behaviour (that is in `run_pub`,
//! `run_sub`, `run_rr`).

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::connection::{ClientError, Connection};
use super::format::{self, OutputOptions};
use super::help;
use super::localtime::{self, LocalZone};
use super::messages::{self, err};
use super::options::{self, Config, ParseError, Tool};
use super::session::{Event, Message, Session, SessionConfig, WillConfig};
use super::tls::{self, TlsOptions};
use super::transport::{self, ConnectError, Endpoint, TransportOptions};
use crate::protocol::{ProtocolVersion, QoS};

/// The command line as bytes (no program name): arguments need not be
/// UTF-8.
pub fn args() -> Vec<Vec<u8>> {
    std::env::args_os()
        .skip(1)
        .map(|a| a.as_bytes().to_vec())
        .collect()
}

/// Output to stdout and stderr.
pub struct Out {
    pub quiet: bool,
}

impl Out {
    /// Write to stdout. When the reader has gone (`midge_sub ... | head
    /// -1`), die of SIGPIPE like a C program does; Rust ignores SIGPIPE,
    /// which would leave us running with nobody to print to.
    pub fn stdout(&self, b: &[u8]) {
        let mut o = io::stdout().lock();
        let r = o.write_all(b).and_then(|()| o.flush());
        if let Err(e) = r {
            if e.kind() == io::ErrorKind::BrokenPipe {
                let _ =
                    signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
                std::process::exit(1);
            }
        }
    }

    /// `fprintf(stderr, ...)`: always printed.
    pub fn stderr(&self, s: &str) {
        let mut e = io::stderr().lock();
        let _ = e.write_all(s.as_bytes());
        let _ = e.flush();
    }

    /// Mosquitto's `err_printf`: silenced by `--quiet`.
    pub fn error(&self, s: &str) {
        if !self.quiet {
            self.stderr(s);
        }
    }
}

/// Parse the command line, or print what Mosquitto prints and give the exit
/// code.
pub fn parse(tool: Tool, args: &[Vec<u8>]) -> Result<Config, i32> {
    let out = Out { quiet: false };
    match options::load(tool, args) {
        Ok(cfg) => Ok(cfg),
        Err(ParseError::Help) => {
            out.stdout(usage_text(tool).as_bytes());
            Err(1)
        }
        Err(ParseError::Version) => {
            out.stdout(
                format!(
                    "{} version {}, compatible with {} 2.0.11.\n",
                    tool.name(),
                    env!("CARGO_PKG_VERSION"),
                    tool.name().replace("midge", "mosquitto")
                )
                .as_bytes(),
            );
            Err(1)
        }
        Err(ParseError::Usage(msg)) => {
            out.stderr(&msg);
            out.stderr(&format!("\nUse '{} --help' to see usage.\n", tool.name()));
            Err(1)
        }
    }
}

pub fn usage_text(tool: Tool) -> String {
    let t = match tool {
        Tool::Pub => help::PUB,
        Tool::Sub => help::SUB,
        Tool::Rr => help::RR,
        Tool::Ctrl => help::CTRL,
    };
    t.replace("{VERSION}", env!("CARGO_PKG_VERSION"))
}

/// The session's configuration. Err: message (for `err_printf`) and exit
/// code.
pub fn session_config(cfg: &Config) -> Result<SessionConfig, (String, i32)> {
    let mut s = SessionConfig::new(cfg.protocol);
    s.client_id = match (&cfg.id, &cfg.id_prefix) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(prefix)) => Some(format!("{prefix}{}", std::process::id())),
        (None, None) => None,
    };
    s.clean_start = cfg.clean_session;
    s.keep_alive = cfg.keepalive;
    let bad_credentials = || {
        (
            "Error: Problem setting username and/or password.\n".to_string(),
            1,
        )
    };
    if let Some(u) = &cfg.username {
        match std::str::from_utf8(u) {
            Ok(u) if options::valid_utf8_mosquitto(u) => s.username = Some(u.to_string()),
            _ => return Err(bad_credentials()),
        }
    } else if cfg.password.is_some() && cfg.protocol != ProtocolVersion::V5 {
        // 3.1.x cannot carry a password without a user name.
        return Err(bad_credentials());
    }
    s.password = cfg.password.clone();
    if let Some(topic) = &cfg.will_topic {
        s.will = Some(WillConfig {
            topic: topic.clone(),
            payload: cfg.will_payload.clone().unwrap_or_default(),
            qos: QoS::from_u8(cfg.will_qos).unwrap_or(QoS::AtMostOnce),
            retain: cfg.will_retain,
            properties: cfg.will_props.encode(),
        });
    }
    s.connect_properties = cfg.connect_props.encode();
    if cfg.msg_count > 0 && cfg.msg_count < 20 {
        // Never let the server push more than we will print before we
        // disconnect (what mosquitto_sub does).
        s.receive_maximum = cfg.msg_count as u16;
    }
    s.max_inflight = cfg.max_inflight;
    s.debug = cfg.debug;
    Ok(s)
}

/// The command line's TLS settings.
pub fn tls_options(cfg: &Config) -> TlsOptions {
    TlsOptions {
        cafile: cfg.cafile.clone(),
        capath: cfg.capath.clone(),
        certfile: cfg.certfile.clone(),
        keyfile: cfg.keyfile.clone(),
        insecure: cfg.insecure,
        version: cfg.tls_version.clone(),
        alpn: cfg.tls_alpn.clone(),
        use_os_certs: cfg.tls_use_os_certs,
    }
}

/// How to reach the broker. Err: message and exit code.
pub fn transport_options(cfg: &Config) -> Result<TransportOptions, (String, i32)> {
    if cfg.bind_address.is_some() {
        return Err((
            format!(
                "Error: -A is not supported by {}: the standard library cannot bind before connecting.\n",
                cfg.tool.name()
            ),
            1,
        ));
    }
    let port = cfg.effective_port();
    let endpoint = if port == 0 {
        Endpoint::Unix(cfg.host.clone())
    } else {
        Endpoint::Tcp {
            host: cfg.host.clone(),
            port,
        }
    };
    let tls = if cfg.uses_tls() && port != 0 {
        if let Some(k) = &cfg.keyfile {
            if !std::path::Path::new(k).is_file() {
                return Err((
                    "Error: Problem setting TLS options: File not found.\n".into(),
                    1,
                ));
            }
        }
        Some(tls::client_config(&tls_options(cfg)).map_err(|e| (format!("Error: {e}\n"), 1))?)
    } else {
        None
    };
    Ok(TransportOptions {
        endpoint,
        tls,
        websocket: cfg.websocket,
        nodelay: cfg.tcp_nodelay,
        connect_timeout: Duration::from_secs(60),
    })
}

/// Build the connection. Err: message and exit code.
pub fn connection(cfg: &Config) -> Result<Connection, (String, i32)> {
    let s = session_config(cfg)?;
    let t = transport_options(cfg)?;
    Ok(Connection::new(Session::new(s), t))
}

/// Connect for the first time. On failure, print what Mosquitto prints
/// (debug lines first) and return the exit code.
pub fn first_connect(conn: &mut Connection, cfg: &Config) -> Result<(), i32> {
    let out = Out { quiet: cfg.quiet };
    match conn.connect() {
        Ok(()) => Ok(()),
        Err(e) => {
            for ev in conn.session.drain_events() {
                if let (Event::Log(l), true) = (ev, cfg.debug) {
                    out.stdout(format!("{l}\n").as_bytes());
                }
            }
            if let (ClientError::Connect(ConnectError::Tls(detail)), true) = (&e, cfg.debug) {
                out.stdout(format!("TLS error: {detail}\n").as_bytes());
            }
            let (msg, code) = connect_failure(&e);
            out.error(&msg);
            Err(code)
        }
    }
}

/// The first connection attempt failed: Mosquitto's message and code.
pub fn connect_failure(e: &ClientError) -> (String, i32) {
    match e {
        ClientError::Connect(ConnectError::Lookup) => {
            ("Unable to connect (Lookup error.).\n".into(), 1)
        }
        ClientError::Connect(ConnectError::Io(e)) => {
            (format!("Error: {}\n", transport::os_error_text(e)), 1)
        }
        ClientError::Connect(ConnectError::Tls(_)) | ClientError::Tls(_) => (
            format!("Error: {}\n", messages::strerror(err::TLS)),
            err::TLS,
        ),
        ClientError::Connect(ConnectError::WebSocket(w)) => {
            (format!("Error: {w}.\n"), err::PROTOCOL)
        }
        other => loop_failure(other),
    }
}

/// The connection broke while running: Mosquitto's "Error: ..." line and
/// the exit code (`MOSQ_ERR_*`).
pub fn loop_failure(e: &ClientError) -> (String, i32) {
    match e {
        ClientError::Connect(_) => connect_failure(e),
        ClientError::Io(io) => (
            format!("Error: {}\n", transport::os_error_text(io)),
            err::ERRNO,
        ),
        other => {
            let code = error_code(other);
            (format!("Error: {}\n", messages::strerror(code)), code)
        }
    }
}

/// libmosquitto's error number for a broken connection.
pub fn error_code(e: &ClientError) -> i32 {
    use super::session::SessionError;
    match e {
        ClientError::Connect(ConnectError::Lookup) => err::EAI,
        ClientError::Connect(ConnectError::Io(_)) | ClientError::Io(_) => err::ERRNO,
        ClientError::Connect(ConnectError::Tls(_)) | ClientError::Tls(_) => err::TLS,
        ClientError::Connect(ConnectError::WebSocket(_)) => err::PROTOCOL,
        ClientError::ConnectionLost => err::CONN_LOST,
        ClientError::Session(SessionError::KeepaliveTimeout) => err::KEEPALIVE,
        ClientError::Session(SessionError::NotConnected) => err::NO_CONN,
        ClientError::Session(_) => err::PROTOCOL,
    }
}

/// Errors after which libmosquitto's `loop_forever` gives up instead of
/// reconnecting.
pub fn is_fatal(e: &ClientError) -> bool {
    matches!(
        error_code(e),
        err::PROTOCOL | err::TLS | err::EAI | err::INVAL | err::NOMEM
    )
}

/// "Connection error: ..." for a refused CONNACK, as mosquitto_pub/sub
/// word it.
pub fn connack_error(version: ProtocolVersion, code: u8) -> String {
    if version.is_v5() {
        if code == crate::protocol::reason::UNSUPPORTED_PROTOCOL_VERSION {
            format!(
                "Connection error: {}. Try connecting to an MQTT v5 broker, or use MQTT v3.x mode.\n",
                messages::reason_string(code)
            )
        } else {
            format!("Connection error: {}\n", messages::reason_string(code))
        }
    } else {
        format!("Connection error: {}\n", messages::connack_string(code))
    }
}

/// SIGINT and SIGTERM raise the returned flag instead of killing us.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

/// Prints debug lines and messages for sub and rr.
pub struct Printer {
    pub out: Out,
    pub debug: bool,
    output: OutputOptions,
    zone: Option<LocalZone>,
    random_filter: u32,
    rng: u64,
}

impl Printer {
    pub fn new(cfg: &Config) -> Printer {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        Printer {
            out: Out { quiet: cfg.quiet },
            debug: cfg.debug,
            output: OutputOptions {
                format: cfg.format.clone(),
                verbose: cfg.verbose,
                eol: cfg.eol,
                pretty: cfg.pretty,
            },
            zone: None,
            random_filter: cfg.random_filter,
            rng: seed,
        }
    }

    /// A debug line from the session (`Event::Log`).
    pub fn log(&self, line: &str) {
        if self.debug {
            let mut s = line.as_bytes().to_vec();
            s.push(b'\n');
            self.out.stdout(&s);
        }
    }

    /// Print a received message (`print_message`).
    pub fn message(&mut self, m: &Message) {
        if self.random_filter < 10_000 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if (self.rng % 10_000) as u32 >= self.random_filter {
                return;
            }
        }
        let zone = self.zone.get_or_insert_with(LocalZone::from_env).clone();
        let mut now = || localtime::now(&zone);
        let r = format::render(&self.output, m, &mut now);
        if !r.stderr.is_empty() {
            self.out.error(&String::from_utf8_lossy(&r.stderr));
        }
        if !r.stdout.is_empty() {
            self.out.stdout(&r.stdout);
        }
    }

    /// Handle an `Event::Log`; true if it was one.
    pub fn maybe_log(&self, e: &Event) -> bool {
        if let Event::Log(l) = e {
            self.log(l);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(tool: Tool, a: &[&str]) -> Config {
        let mut args: Vec<Vec<u8>> = a.iter().map(|s| s.as_bytes().to_vec()).collect();
        args.push(b"-o".to_vec());
        args.push(b"/dev/null".to_vec());
        match options::load(tool, &args) {
            Ok(c) => c,
            Err(e) => panic!("{a:?}: {e:?}"),
        }
    }

    #[test]
    fn connack_errors_read_like_mosquitto() {
        assert_eq!(
            connack_error(ProtocolVersion::V311, 5),
            "Connection error: Connection Refused: not authorised.\n"
        );
        assert_eq!(
            connack_error(ProtocolVersion::V5, 0x87),
            "Connection error: Not authorized\n"
        );
        assert_eq!(
            connack_error(ProtocolVersion::V5, 0x84),
            "Connection error: Unsupported Protocol Version. Try connecting to an MQTT v5 broker, or use MQTT v3.x mode.\n"
        );
    }

    #[test]
    fn connection_errors_and_codes() {
        let refused = ClientError::Connect(ConnectError::Io(io::Error::from_raw_os_error(111)));
        assert_eq!(
            connect_failure(&refused),
            ("Error: Connection refused\n".to_string(), 1)
        );
        assert_eq!(
            connect_failure(&ClientError::Connect(ConnectError::Lookup)),
            ("Unable to connect (Lookup error.).\n".to_string(), 1)
        );
        assert_eq!(
            loop_failure(&ClientError::ConnectionLost),
            ("Error: The connection was lost.\n".to_string(), 7)
        );
        assert_eq!(
            loop_failure(&ClientError::Tls("x".into())),
            ("Error: A TLS error occurred.\n".to_string(), 8)
        );
        assert!(!is_fatal(&ClientError::ConnectionLost));
        assert!(is_fatal(&ClientError::Tls("x".into())));
    }

    #[test]
    fn session_config_from_the_command_line() {
        let c = cfg(
            Tool::Sub,
            &[
                "-t", "a", "-C", "3", "-I", "pre-", "-u", "user", "-P", "pw", "-k", "30",
            ],
        );
        let s = session_config(&c).unwrap();
        assert_eq!(s.client_id, Some(format!("pre-{}", std::process::id())));
        assert_eq!(s.receive_maximum, 3);
        assert_eq!(s.keep_alive, 30);
        assert_eq!(s.username.as_deref(), Some("user"));
        assert_eq!(s.password.as_deref(), Some(&b"pw"[..]));
        // 3.1.1 cannot send a password alone; v5 can.
        let c = cfg(Tool::Pub, &["-t", "a", "-n", "-P", "pw"]);
        assert_eq!(
            session_config(&c).unwrap_err().0,
            "Error: Problem setting username and/or password.\n"
        );
        let c = cfg(Tool::Pub, &["-t", "a", "-n", "-P", "pw", "-V", "5"]);
        assert!(session_config(&c).is_ok());
        let c = cfg(
            Tool::Pub,
            &[
                "-t",
                "a",
                "-n",
                "--will-topic",
                "w",
                "--will-payload",
                "bye",
                "--will-qos",
                "2",
            ],
        );
        let w = session_config(&c).unwrap().will.unwrap();
        assert_eq!(
            (w.topic.as_str(), w.payload.as_slice(), w.qos),
            ("w", &b"bye"[..], QoS::ExactlyOnce)
        );
    }

    #[test]
    fn endpoints() {
        let c = cfg(Tool::Pub, &["-t", "a", "-n", "--unix", "/run/m.sock"]);
        let t = transport_options(&c).unwrap();
        assert_eq!(t.endpoint, Endpoint::Unix("/run/m.sock".into()));
        let c = cfg(Tool::Pub, &["-t", "a", "-n", "-h", "example.org"]);
        let t = transport_options(&c).unwrap();
        assert_eq!(
            t.endpoint,
            Endpoint::Tcp {
                host: "example.org".into(),
                port: 1883
            }
        );
        assert!(t.tls.is_none());
        let c = cfg(Tool::Pub, &["-t", "a", "-n", "-A", "127.0.0.1"]);
        assert_eq!(transport_options(&c).unwrap_err().1, 1);
    }
}
