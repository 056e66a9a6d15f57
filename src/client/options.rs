//! options: the command line shared by midge_pub, midge_sub and midge_rr,
//! parsed the way mosquitto_pub/sub/rr 2.0 parse theirs.
//!
//! Owns: every flag, which tool accepts it, the checks made while parsing
//! and right after (with Mosquitto's error text, blank lines included),
//! `-L` URLs, `-D` properties (through `props`), the options file (`-o`, or
//! `~/.config/midge_pub` etc. by default) and Mosquitto's topic and UTF-8
//! rules for arguments.
//!
//! Must not: open connections or read stdin. Arguments are bytes, not
//! `String`s, so a payload need not be UTF-8 and a bad topic gets
//! Mosquitto's "Malformed UTF-8" message instead of a panic.
//!
//! Extensions over mosquitto 2.0.11 (which rejects them as unknown):
//! `-o`, `-L ws://` and `-L wss://` (both from later Mosquitto releases).

use std::time::Duration;

pub use super::props::valid_utf8_mosquitto;
use super::props::{self, Command, PropList, Value};
use crate::protocol::properties::id;
use crate::protocol::ProtocolVersion;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Pub,
    Sub,
    Rr,
    /// midge_ctrl: parses its own command line (`ctrl::options`) into this
    /// `Config` so it can share the connection code.
    Ctrl,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Pub => "midge_pub",
            Tool::Sub => "midge_sub",
            Tool::Rr => "midge_rr",
            Tool::Ctrl => "midge_ctrl",
        }
    }
}

/// Where the message to publish comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubMode {
    None,
    /// `-m`
    Cmd,
    /// `-f`
    File,
    /// `-s`
    StdinFile,
    /// `-l`
    StdinLine,
    /// `-n`
    Null,
}

/// Everything the command line says. Field names follow Mosquitto's
/// `struct mosq_config` so the two are easy to compare.
#[derive(Clone, Debug)]
pub struct Config {
    pub tool: Tool,
    pub id: Option<String>,
    pub id_prefix: Option<String>,
    pub protocol: ProtocolVersion,
    pub keepalive: u16,
    pub host: String,
    /// None: 1883, or 8883 with TLS. Some(0): `host` is a unix socket path.
    pub port: Option<u16>,
    pub qos: u8,
    pub retain: bool,
    pub pub_mode: PubMode,
    pub message: Vec<u8>,
    pub file_input: Option<String>,
    /// pub and rr: the topic to publish to.
    pub topic: Option<String>,
    /// sub: the filters to subscribe to.
    pub topics: Vec<String>,
    pub filter_outs: Vec<String>,
    pub unsub_topics: Vec<String>,
    pub response_topic: Option<String>,
    pub username: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    pub will_topic: Option<String>,
    pub will_payload: Option<Vec<u8>>,
    pub will_qos: u8,
    pub will_retain: bool,
    pub clean_session: bool,
    /// -1: not given.
    pub session_expiry_interval: i64,
    pub debug: bool,
    pub quiet: bool,
    pub verbose: bool,
    pub eol: bool,
    pub pretty: bool,
    pub no_retain: bool,
    pub retained_only: bool,
    pub remove_retained: bool,
    pub exit_after_sub: bool,
    pub msg_count: u32,
    pub timeout: u32,
    pub format: Option<Vec<u8>>,
    pub repeat_count: u32,
    pub repeat_delay: Duration,
    pub max_inflight: u16,
    /// v5 subscription options above the QoS bits (-R, --retain-as-published).
    pub sub_opts: u8,
    /// Percentage * 100 of messages printed (`--random-filter`); 10000 = all.
    pub random_filter: u32,
    pub cafile: Option<String>,
    pub capath: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    pub ciphers: Option<String>,
    pub tls_version: Option<String>,
    pub tls_alpn: Option<String>,
    pub insecure: bool,
    pub tls_use_os_certs: bool,
    pub websocket: bool,
    pub tcp_nodelay: bool,
    pub bind_address: Option<String>,
    pub have_topic_alias: bool,
    pub connect_props: PropList,
    pub publish_props: PropList,
    pub subscribe_props: PropList,
    pub unsubscribe_props: PropList,
    pub disconnect_props: PropList,
    pub will_props: PropList,
}

impl Config {
    pub fn new(tool: Tool) -> Config {
        Config {
            tool,
            id: None,
            id_prefix: None,
            protocol: if tool == Tool::Rr || tool == Tool::Ctrl {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V311
            },
            keepalive: 60,
            host: String::new(),
            port: None,
            qos: 0,
            retain: false,
            pub_mode: PubMode::None,
            message: Vec::new(),
            file_input: None,
            topic: None,
            topics: Vec::new(),
            filter_outs: Vec::new(),
            unsub_topics: Vec::new(),
            response_topic: None,
            username: None,
            password: None,
            will_topic: None,
            will_payload: None,
            will_qos: 0,
            will_retain: false,
            clean_session: true,
            session_expiry_interval: -1,
            debug: false,
            quiet: false,
            verbose: false,
            eol: true,
            pretty: false,
            no_retain: false,
            retained_only: false,
            remove_retained: false,
            exit_after_sub: false,
            msg_count: if tool == Tool::Rr { 1 } else { 0 },
            timeout: 0,
            format: None,
            repeat_count: 1,
            repeat_delay: Duration::ZERO,
            max_inflight: 20,
            sub_opts: 0,
            random_filter: 10_000,
            cafile: None,
            capath: None,
            certfile: None,
            keyfile: None,
            ciphers: None,
            tls_version: None,
            tls_alpn: None,
            insecure: false,
            tls_use_os_certs: false,
            websocket: false,
            tcp_nodelay: false,
            bind_address: None,
            have_topic_alias: false,
            connect_props: PropList::default(),
            publish_props: PropList::default(),
            subscribe_props: PropList::default(),
            unsubscribe_props: PropList::default(),
            disconnect_props: PropList::default(),
            will_props: PropList::default(),
        }
    }

    /// TLS is on when a CA is given or an `mqtts://`/`wss://` URL was used.
    pub fn uses_tls(&self) -> bool {
        self.cafile.is_some() || self.capath.is_some() || self.tls_use_os_certs
    }

    /// The port to connect to (Mosquitto's defaults).
    pub fn effective_port(&self) -> u16 {
        match self.port {
            Some(p) => p,
            None if self.cafile.is_some() || self.capath.is_some() => 8883,
            None => 1883,
        }
    }
}

/// How parsing ended when the tool must not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// `--help`: print the usage on stdout, exit 1 (as Mosquitto does).
    Help,
    /// `--version`
    Version,
    /// Print this on stderr, then "\nUse 'midge_x --help' to see usage.\n".
    Usage(String),
}

/// `mosquitto_pub_topic_check`: no '+' or '#', at most 65535 bytes (an
/// empty topic passes here and fails at publish time, as in Mosquitto).
pub fn pub_topic_ok(t: &str) -> bool {
    t.len() <= 65535 && !t.contains(['+', '#'])
}

/// `mosquitto_sub_topic_check`: wildcards only as whole levels, '#' last.
pub fn sub_topic_ok(t: &str) -> bool {
    let b = t.as_bytes();
    let mut prev = 0u8;
    for (i, &c) in b.iter().enumerate() {
        let next = b.get(i + 1).copied().unwrap_or(0);
        if c == b'+' && ((prev != 0 && prev != b'/') || (next != 0 && next != b'/')) {
            return false;
        }
        if c == b'#' && ((prev != 0 && prev != b'/') || next != 0) {
            return false;
        }
        prev = c;
    }
    b.len() <= 65535
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn usage(s: impl Into<String>) -> ParseError {
    ParseError::Usage(s.into())
}

/// Topic argument kinds (`cfg_add_topic`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum TopicKind {
    Tool(Tool),
    Response,
}

fn add_topic(cfg: &mut Config, kind: TopicKind, raw: &[u8], arg: &str) -> Result<(), ParseError> {
    let topic = match std::str::from_utf8(raw) {
        Ok(t) if valid_utf8_mosquitto(t) => t.to_string(),
        _ => {
            return Err(usage(format!(
                "Error: Malformed UTF-8 in {arg} argument.\n\n"
            )))
        }
    };
    match kind {
        TopicKind::Tool(Tool::Pub | Tool::Rr | Tool::Ctrl) => {
            if !pub_topic_ok(&topic) {
                return Err(usage(format!(
                    "Error: Invalid publish topic '{topic}', does it contain '+' or '#'?\n"
                )));
            }
            cfg.topic = Some(topic);
        }
        TopicKind::Response => {
            if !pub_topic_ok(&topic) {
                return Err(usage(format!(
                    "Error: Invalid response topic '{topic}', does it contain '+' or '#'?\n"
                )));
            }
            cfg.response_topic = Some(topic);
        }
        TopicKind::Tool(Tool::Sub) => {
            if !sub_topic_ok(&topic) {
                return Err(usage(format!(
                    "Error: Invalid subscription topic '{topic}', are all '+' and '#' wildcards correct?\n"
                )));
            }
            cfg.topics.push(topic);
        }
    }
    Ok(())
}

/// C's `atof` (leading blanks, then the longest decimal prefix; 0 if none).
fn atof(s: &[u8]) -> f64 {
    let t = lossy(s);
    let t = t.trim_start();
    let mut best = 0.0;
    for end in (1..=t.len()).rev() {
        if let Some(p) = t.get(..end) {
            if let Ok(v) = p.parse::<f64>() {
                if p.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
                {
                    best = v;
                    break;
                }
            }
        }
    }
    best
}

/// `strtol(s, &end, 0)` requiring the whole string: decimal, 0x hex or 0
/// octal, with a sign. None when anything is left over.
fn strtol_whole(s: &[u8]) -> Option<i64> {
    let t = lossy(s);
    let t = t.trim_start();
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (radix, digits) =
        if let Some(h) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            (16, h)
        } else if rest.len() > 1 && rest.starts_with('0') {
            (8, rest.get(1..).unwrap_or(""))
        } else {
            (10, rest)
        };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        v = v
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(d));
    }
    Some(if neg { -v } else { v })
}

/// Parse a `-L` URL into the config.
fn parse_url(cfg: &mut Config, tool: Tool, url: &[u8]) -> Result<(), ParseError> {
    let lower = url.to_ascii_lowercase();
    let rest: &[u8] = if lower.starts_with(b"mqtt://") {
        cfg.port = Some(1883);
        url.get(7..).unwrap_or_default()
    } else if lower.starts_with(b"mqtts://") {
        cfg.port = Some(8883);
        cfg.tls_use_os_certs = true;
        url.get(8..).unwrap_or_default()
    } else if lower.starts_with(b"ws://") {
        cfg.port = Some(80);
        cfg.websocket = true;
        url.get(5..).unwrap_or_default()
    } else if lower.starts_with(b"wss://") {
        cfg.port = Some(443);
        cfg.websocket = true;
        cfg.tls_use_os_certs = true;
        url.get(6..).unwrap_or_default()
    } else {
        return Err(usage("Error: unsupported URL scheme.\n\n"));
    };
    let Some(slash) = rest.iter().position(|&c| c == b'/') else {
        return Err(usage(
            "Error: Invalid URL for -L argument specified - topic missing.\n",
        ));
    };
    let (authority, topic) = (
        rest.get(..slash).unwrap_or_default(),
        rest.get(slash + 1..).unwrap_or_default(),
    );
    add_topic(cfg, TopicKind::Tool(tool), topic, "-L topic")?;
    let mut hostport = authority;
    if let Some(at) = authority.iter().position(|&c| c == b'@') {
        let userinfo = authority.get(..at).unwrap_or_default();
        hostport = authority.get(at + 1..).unwrap_or_default();
        match userinfo.iter().position(|&c| c == b':') {
            Some(colon) => {
                cfg.username = Some(userinfo.get(..colon).unwrap_or_default().to_vec());
                cfg.password = Some(userinfo.get(colon + 1..).unwrap_or_default().to_vec());
            }
            None => cfg.username = Some(userinfo.to_vec()),
        }
    }
    match hostport.iter().position(|&c| c == b':') {
        Some(colon) => {
            cfg.host = lossy(hostport.get(..colon).unwrap_or_default());
            let p = props::atoi(hostport.get(colon + 1..).unwrap_or_default());
            cfg.port = Some(u16::try_from(p).unwrap_or(0));
        }
        None => cfg.host = lossy(hostport),
    }
    Ok(())
}

/// Process one argument list (`argv[1..]`, or one line of the options
/// file). Mosquitto's `client_config_line_proc`.
fn line_proc(cfg: &mut Config, args: &[Vec<u8>]) -> Result<(), ParseError> {
    let tool = cfg.tool;
    let mut i = 0;
    while i < args.len() {
        let arg = args.get(i).map(Vec::as_slice).unwrap_or_default();
        let next = args.get(i + 1);
        let has_next = next.is_some();
        let val = next.map(Vec::as_slice).unwrap_or_default();
        let text = lossy(arg);
        let unknown = || Err(usage(format!("Error: Unknown option '{text}'.\n")));
        macro_rules! need {
            ($msg:expr) => {
                if !has_next {
                    return Err(usage(concat!("Error: ", $msg, "\n\n")));
                }
            };
        }
        match text.as_str() {
            "-A" => {
                need!("-A argument given but no address specified.");
                cfg.bind_address = Some(lossy(val));
                i += 1;
            }
            "--cafile" => {
                need!("--cafile argument given but no file specified.");
                cfg.cafile = Some(lossy(val));
                i += 1;
            }
            "--capath" => {
                need!("--capath argument given but no directory specified.");
                cfg.capath = Some(lossy(val));
                i += 1;
            }
            "--cert" => {
                need!("--cert argument given but no file specified.");
                cfg.certfile = Some(lossy(val));
                i += 1;
            }
            "--ciphers" => {
                need!("--ciphers argument given but no ciphers specified.");
                cfg.ciphers = Some(lossy(val));
                i += 1;
            }
            "-C" => {
                if tool != Tool::Sub {
                    return unknown();
                }
                need!("-C argument given but no count specified.");
                let n = props::atoi(val);
                if n < 1 {
                    return Err(usage(format!("Error: Invalid message count \"{n}\".\n\n")));
                }
                cfg.msg_count = n as u32;
                i += 1;
            }
            "-c" | "--disable-clean-session" => cfg.clean_session = false,
            "-d" | "--debug" => cfg.debug = true,
            "-D" | "--property" => {
                let rest = args.get(i + 1..).unwrap_or_default();
                let p = props::parse_property(rest).map_err(usage)?;
                let list = match p.command {
                    Command::Connect => &mut cfg.connect_props,
                    Command::Publish => {
                        if p.identifier == id::TOPIC_ALIAS {
                            cfg.have_topic_alias = true;
                        }
                        &mut cfg.publish_props
                    }
                    Command::Subscribe => &mut cfg.subscribe_props,
                    Command::Unsubscribe => &mut cfg.unsubscribe_props,
                    Command::Disconnect => &mut cfg.disconnect_props,
                    _ => &mut cfg.will_props,
                };
                list.push(p.identifier, p.value);
                i += p.consumed;
                cfg.protocol = ProtocolVersion::V5;
            }
            "-e" => {
                if tool != Tool::Rr {
                    return unknown();
                }
                need!("-e argument given but no response topic specified.");
                add_topic(cfg, TopicKind::Response, val, "-e")?;
                i += 1;
            }
            "-E" => {
                if tool != Tool::Sub {
                    return unknown();
                }
                cfg.exit_after_sub = true;
            }
            "-f" | "--file" => {
                if tool == Tool::Sub {
                    return unknown();
                }
                if cfg.pub_mode != PubMode::None {
                    return Err(usage(
                        "Error: Only one type of message can be sent at once.\n\n",
                    ));
                }
                need!("-f argument given but no file specified.");
                cfg.pub_mode = PubMode::File;
                cfg.file_input = Some(lossy(val));
                i += 1;
            }
            "-F" => {
                if tool == Tool::Pub {
                    return unknown();
                }
                need!("-F argument given but no format specified.");
                super::format::check_format(val).map_err(|e| usage(format!("{e}\n")))?;
                cfg.format = Some(val.to_vec());
                i += 1;
            }
            "--help" => return Err(ParseError::Help),
            "-h" | "--host" => {
                need!("-h argument given but no host specified.");
                cfg.host = lossy(val);
                i += 1;
            }
            "--insecure" => cfg.insecure = true,
            "-i" | "--id" => {
                if cfg.id_prefix.is_some() {
                    return Err(usage(
                        "Error: -i and -I argument cannot be used together.\n\n",
                    ));
                }
                need!("-i argument given but no id specified.");
                cfg.id = Some(lossy(val));
                i += 1;
            }
            "-I" | "--id-prefix" => {
                if cfg.id.is_some() {
                    return Err(usage(
                        "Error: -i and -I argument cannot be used together.\n\n",
                    ));
                }
                need!("-I argument given but no id prefix specified.");
                cfg.id_prefix = Some(lossy(val));
                i += 1;
            }
            "-k" | "--keepalive" => {
                need!("-k argument given but no keepalive specified.");
                let k = props::atoi(val);
                if !(5..=65535).contains(&k) {
                    return Err(usage(
                        "Error: Invalid keepalive given, it must be between 5 and 65535 inclusive.\n\n",
                    ));
                }
                cfg.keepalive = k as u16;
                i += 1;
            }
            "--key" => {
                need!("--key argument given but no file specified.");
                cfg.keyfile = Some(lossy(val));
                i += 1;
            }
            "--keyform" => {
                need!("--keyform argument given but no keyform specified.");
                return Err(usage(
                    "Error: --keyform is not supported: midge loads PEM keys only.\n",
                ));
            }
            "-L" | "--url" => {
                need!("-L argument given but no URL specified.");
                parse_url(cfg, tool, val)?;
                i += 1;
            }
            "-l" | "--stdin-line" => {
                if tool != Tool::Pub {
                    return unknown();
                }
                if cfg.pub_mode != PubMode::None {
                    return Err(usage(
                        "Error: Only one type of message can be sent at once.\n\n",
                    ));
                }
                cfg.pub_mode = PubMode::StdinLine;
            }
            "-m" | "--message" => {
                if tool == Tool::Sub {
                    return unknown();
                }
                if cfg.pub_mode != PubMode::None {
                    return Err(usage(
                        "Error: Only one type of message can be sent at once.\n\n",
                    ));
                }
                need!("-m argument given but no message specified.");
                if val.len() > 268_435_455 {
                    return Err(usage(
                        "Error: Message length must be less than 268435455 bytes.\n\n",
                    ));
                }
                cfg.message = val.to_vec();
                cfg.pub_mode = PubMode::Cmd;
                i += 1;
            }
            "-M" => {
                need!("-M argument given but max_inflight not specified.");
                let n = props::atoi(val);
                if n < 1 {
                    return Err(usage(
                        "Error: Maximum inflight messages must be greater than 0.\n\n",
                    ));
                }
                cfg.max_inflight = u16::try_from(n).unwrap_or(u16::MAX);
                i += 1;
            }
            "--nodelay" => cfg.tcp_nodelay = true,
            "-n" | "--null-message" => {
                if tool == Tool::Sub {
                    return unknown();
                }
                if cfg.pub_mode != PubMode::None {
                    return Err(usage(
                        "Error: Only one type of message can be sent at once.\n\n",
                    ));
                }
                cfg.pub_mode = PubMode::Null;
            }
            "-N" => {
                if tool == Tool::Pub {
                    return unknown();
                }
                cfg.eol = false;
            }
            "-o" => {
                // Read before anything else (see `load`); skip it here.
                need!("-o argument given but no options file specified.");
                i += 1;
            }
            "-p" | "--port" => {
                need!("-p argument given but no port specified.");
                let p = props::atoi(val);
                if !(0..=65535).contains(&p) {
                    return Err(usage(format!("Error: Invalid port given: {p}\n")));
                }
                cfg.port = Some(p as u16);
                i += 1;
            }
            "--pretty" => {
                if tool == Tool::Pub {
                    return unknown();
                }
                cfg.pretty = true;
            }
            "-P" | "--pw" => {
                need!("-P argument given but no password specified.");
                cfg.password = Some(val.to_vec());
                i += 1;
            }
            "--proxy" => {
                need!("--proxy argument given but no proxy url specified.");
                return Err(usage(
                    "Error: --proxy is not supported: midge has no SOCKS5 client.\n",
                ));
            }
            "--psk" => {
                need!("--psk argument given but no key specified.");
                return Err(usage(
                    "Error: --psk is not supported: rustls has no TLS-PSK.\n",
                ));
            }
            "--psk-identity" => {
                need!("--psk-identity argument given but no identity specified.");
                return Err(usage(
                    "Error: --psk-identity is not supported: rustls has no TLS-PSK.\n",
                ));
            }
            "-q" | "--qos" => {
                need!("-q argument given but no QoS specified.");
                let q = props::atoi(val);
                if !(0..=2).contains(&q) {
                    return Err(usage(format!("Error: Invalid QoS given: {q}\n")));
                }
                cfg.qos = q as u8;
                i += 1;
            }
            "--quiet" => cfg.quiet = true,
            "-r" | "--retain" => {
                if tool != Tool::Pub {
                    return unknown();
                }
                cfg.retain = true;
            }
            "-R" => {
                if tool == Tool::Pub {
                    return unknown();
                }
                cfg.no_retain = true;
                // v5 Retain Handling 2: do not send retained messages.
                cfg.sub_opts |= 0x20;
            }
            "--random-filter" => {
                if tool != Tool::Sub {
                    return unknown();
                }
                need!("--random-filter argument given but no chance specified.");
                let f = (10.0 * atof(val)) as i64;
                if !(1..=10_000).contains(&f) {
                    return Err(usage(
                        "Error: --random-filter chance must be between 0.1-100.0\n\n",
                    ));
                }
                cfg.random_filter = f as u32;
                i += 1;
            }
            "--remove-retained" => {
                if tool != Tool::Sub {
                    return unknown();
                }
                cfg.remove_retained = true;
            }
            "--repeat" => {
                if tool != Tool::Pub {
                    return unknown();
                }
                need!("--repeat argument given but no count specified.");
                let n = props::atoi(val);
                if n < 1 {
                    return Err(usage("Error: --repeat argument must be >0.\n\n"));
                }
                cfg.repeat_count = n as u32;
                i += 1;
            }
            "--repeat-delay" => {
                if tool != Tool::Pub {
                    return unknown();
                }
                need!("--repeat-delay argument given but no time specified.");
                let f = atof(val) as f32;
                if f < 0.0 {
                    return Err(usage("Error: --repeat-delay argument must be >=0.0.\n\n"));
                }
                // Mosquitto converts through a float of microseconds.
                let us = (f * 1.0e6) as i64;
                cfg.repeat_delay = Duration::from_micros(us.max(0) as u64);
                i += 1;
            }
            "--retain-as-published" => {
                if tool == Tool::Pub {
                    return unknown();
                }
                cfg.sub_opts |= 0x08;
            }
            "--retained-only" => {
                if tool != Tool::Sub {
                    return unknown();
                }
                cfg.retained_only = true;
            }
            "-s" | "--stdin-file" => {
                if tool == Tool::Sub {
                    return unknown();
                }
                if cfg.pub_mode != PubMode::None {
                    return Err(usage(
                        "Error: Only one type of message can be sent at once.\n\n",
                    ));
                }
                cfg.pub_mode = PubMode::StdinFile;
            }
            "-t" | "--topic" => {
                need!("-t argument given but no topic specified.");
                add_topic(cfg, TopicKind::Tool(tool), val, "-t")?;
                i += 1;
            }
            "-T" | "--filter-out" => {
                if tool != Tool::Sub {
                    return unknown();
                }
                need!("-T argument given but no topic filter specified.");
                let t = match std::str::from_utf8(val) {
                    Ok(t) if valid_utf8_mosquitto(t) => t.to_string(),
                    _ => return Err(usage("Error: Malformed UTF-8 in -T argument.\n\n")),
                };
                if !sub_topic_ok(&t) {
                    return Err(usage(format!(
                        "Error: Invalid filter topic '{t}', are all '+' and '#' wildcards correct?\n"
                    )));
                }
                cfg.filter_outs.push(t);
                i += 1;
            }
            "--tls-alpn" => {
                need!("--tls-alpn argument given but no protocol specified.");
                cfg.tls_alpn = Some(lossy(val));
                i += 1;
            }
            "--tls-engine" => {
                need!("--tls-engine argument given but no engine_id specified.");
                return Err(usage(
                    "Error: --tls-engine is not supported: rustls has no OpenSSL engines.\n",
                ));
            }
            "--tls-engine-kpass-sha1" => {
                need!("--tls-engine-kpass-sha1 argument given but no kpass sha1 specified.");
                return Err(usage(
                    "Error: --tls-engine-kpass-sha1 is not supported: rustls has no OpenSSL engines.\n",
                ));
            }
            "--tls-use-os-certs" => cfg.tls_use_os_certs = true,
            "--tls-version" => {
                need!("--tls-version argument given but no version specified.");
                cfg.tls_version = Some(lossy(val));
                i += 1;
            }
            "-U" | "--unsubscribe" => {
                if tool != Tool::Sub {
                    return unknown();
                }
                need!("-U argument given but no unsubscribe topic specified.");
                let t = match std::str::from_utf8(val) {
                    Ok(t) if valid_utf8_mosquitto(t) => t.to_string(),
                    _ => return Err(usage("Error: Malformed UTF-8 in -U argument.\n\n")),
                };
                if !sub_topic_ok(&t) {
                    return Err(usage(format!(
                        "Error: Invalid unsubscribe topic '{t}', are all '+' and '#' wildcards correct?\n"
                    )));
                }
                cfg.unsub_topics.push(t);
                i += 1;
            }
            "-u" | "--username" => {
                need!("-u argument given but no username specified.");
                cfg.username = Some(val.to_vec());
                i += 1;
            }
            "--unix" => {
                need!("--unix argument given but no socket path specified.");
                cfg.host = lossy(val);
                cfg.port = Some(0);
                i += 1;
            }
            "-V" | "--protocol-version" => {
                need!("--protocol-version argument given but no version specified.");
                cfg.protocol = match val {
                    b"mqttv31" | b"31" => ProtocolVersion::V31,
                    b"mqttv311" | b"311" => ProtocolVersion::V311,
                    b"mqttv5" | b"5" => ProtocolVersion::V5,
                    _ => return Err(usage("Error: Invalid protocol version argument given.\n\n")),
                };
                i += 1;
            }
            "-v" | "--verbose" => {
                if tool == Tool::Pub {
                    return unknown();
                }
                cfg.verbose = true;
            }
            "--version" => return Err(ParseError::Version),
            "-W" => {
                if tool == Tool::Pub {
                    return unknown();
                }
                need!("-W argument given but no timeout specified.");
                let t = props::atoi(val);
                if t < 1 {
                    return Err(usage(format!("Error: Invalid timeout \"{t}\".\n\n")));
                }
                cfg.timeout = t as u32;
                i += 1;
            }
            "--will-payload" => {
                need!("--will-payload argument given but no will payload specified.");
                cfg.will_payload = Some(val.to_vec());
                i += 1;
            }
            "--will-qos" => {
                need!("--will-qos argument given but no will QoS specified.");
                let q = props::atoi(val);
                if !(0..=2).contains(&q) {
                    return Err(usage(format!("Error: Invalid will QoS {q}.\n\n")));
                }
                cfg.will_qos = q as u8;
                i += 1;
            }
            "--will-retain" => cfg.will_retain = true,
            "--will-topic" => {
                need!("--will-topic argument given but no will topic specified.");
                let t = match std::str::from_utf8(val) {
                    Ok(t) if valid_utf8_mosquitto(t) => t.to_string(),
                    _ => {
                        return Err(usage(
                            "Error: Malformed UTF-8 in --will-topic argument.\n\n",
                        ))
                    }
                };
                if !pub_topic_ok(&t) {
                    return Err(usage(format!(
                        "Error: Invalid will topic '{t}', does it contain '+' or '#'?\n"
                    )));
                }
                cfg.will_topic = Some(t);
                i += 1;
            }
            "-x" => {
                need!("-x argument given but no session expiry interval specified.");
                if val == "∞".as_bytes() {
                    cfg.session_expiry_interval = i64::from(u32::MAX);
                } else {
                    let Some(v) = strtol_whole(val) else {
                        return Err(usage("Error: session-expiry-interval not a number.\n\n"));
                    };
                    if v > i64::from(u32::MAX) || v < -1 {
                        return Err(usage("Error: session-expiry-interval out of range.\n\n"));
                    }
                    cfg.session_expiry_interval = if v == -1 { i64::from(u32::MAX) } else { v };
                }
                i += 1;
            }
            _ => return unknown(),
        }
        i += 1;
    }
    Ok(())
}

/// Where the default options file is: `$XDG_CONFIG_HOME/midge_pub`, or
/// `$HOME/.config/midge_pub` (likewise for sub and rr).
fn default_options_file(tool: Tool) -> Option<String> {
    if let Ok(x) = std::env::var("XDG_CONFIG_HOME") {
        return Some(format!("{x}/{}", tool.name()));
    }
    std::env::var("HOME")
        .ok()
        .map(|h| format!("{h}/.config/{}", tool.name()))
}

/// Split an options file into argument lists: one flag per line, its value
/// is the rest of the line after the first space; '#' starts a comment.
pub fn options_file_lines(text: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for line in text.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'#') {
            continue;
        }
        // strtok(" "): skip leading spaces, flag up to the next space,
        // value is everything after it (strtok "" keeps inner spaces).
        let start = line.iter().position(|&c| c != b' ');
        let Some(start) = start else {
            continue;
        };
        let line = line.get(start..).unwrap_or_default();
        match line.iter().position(|&c| c == b' ') {
            Some(sp) => {
                let flag = line.get(..sp).unwrap_or_default().to_vec();
                let rest = line.get(sp + 1..).unwrap_or_default();
                let rest_start = rest.iter().position(|&c| c != b' ');
                match rest_start {
                    Some(rs) => out.push(vec![flag, rest.get(rs..).unwrap_or_default().to_vec()]),
                    None => out.push(vec![flag]),
                }
            }
            None => out.push(vec![line.to_vec()]),
        }
    }
    out
}

/// Parse the whole command line (`args` without the program name).
/// Mosquitto's `client_config_load`.
pub fn load(tool: Tool, args: &[Vec<u8>]) -> Result<Config, ParseError> {
    let mut cfg = Config::new(tool);
    // -o first: its options come before the command line's.
    let mut options_file: Option<String> = None;
    for (i, a) in args.iter().enumerate() {
        if a.as_slice() == b"-o" {
            if options_file.is_some() {
                return Err(usage("Error: Duplicate -o argument given.\n\n"));
            }
            match args.get(i + 1) {
                Some(f) => options_file = Some(lossy(f)),
                None => {
                    return Err(usage(
                        "Error: -o argument given but no options file specified.\n\n",
                    ))
                }
            }
        }
    }
    let explicit = options_file.is_some();
    let path = options_file.or_else(|| default_options_file(tool));
    if let Some(path) = path {
        match std::fs::read(&path) {
            Ok(text) => {
                for line in options_file_lines(&text) {
                    line_proc(&mut cfg, &line)?;
                }
            }
            Err(e) if explicit => {
                return Err(usage(format!(
                    "Error: Unable to open options file \"{path}\": {}.\n",
                    super::transport::os_error_text(&e)
                )))
            }
            Err(_) => {}
        }
    }
    line_proc(&mut cfg, args)?;

    if cfg.will_payload.is_some() && cfg.will_topic.is_none() {
        return Err(usage(
            "Error: Will payload given, but no will topic given.\n",
        ));
    }
    if cfg.will_retain && cfg.will_topic.is_none() {
        return Err(usage(
            "Error: Will retain given, but no will topic given.\n",
        ));
    }
    if cfg.certfile.is_some() != cfg.keyfile.is_some() {
        return Err(usage(
            "Error: Both certfile and keyfile must be provided if one of them is set.\n",
        ));
    }
    if cfg.protocol == ProtocolVersion::V5 {
        if !cfg.clean_session && cfg.session_expiry_interval == -1 {
            // No -x with -c: a session that never expires.
            cfg.session_expiry_interval = i64::from(u32::MAX);
        }
        if cfg.session_expiry_interval > 0 {
            if cfg.session_expiry_interval == i64::from(u32::MAX)
                && (cfg.id_prefix.is_some() || cfg.id.is_none())
            {
                return Err(usage(
                    "Error: You must provide a client id if you are using an infinite session expiry interval.\n",
                ));
            }
            let v = u32::try_from(cfg.session_expiry_interval).unwrap_or(u32::MAX);
            cfg.connect_props
                .push(id::SESSION_EXPIRY_INTERVAL, Value::U32(v));
        }
    } else if !cfg.clean_session && (cfg.id_prefix.is_some() || cfg.id.is_none()) {
        return Err(usage(
            "Error: You must provide a client id if you are using the -c option.\n",
        ));
    }
    if tool == Tool::Sub && cfg.topics.is_empty() {
        return Err(usage("Error: You must specify a topic to subscribe to.\n"));
    }
    if cfg.host.is_empty() {
        cfg.host = "localhost".to_string();
    }
    for (list, cmd, name) in [
        (&cfg.connect_props, Command::Connect, "CONNECT"),
        (&cfg.publish_props, Command::Publish, "PUBLISH"),
        (&cfg.subscribe_props, Command::Subscribe, "SUBSCRIBE"),
        (&cfg.unsubscribe_props, Command::Unsubscribe, "UNSUBSCRIBE"),
        (&cfg.disconnect_props, Command::Disconnect, "DISCONNECT"),
        (&cfg.will_props, Command::Will, "Will"),
    ] {
        if let Err(e) = list.check_all(cmd) {
            return Err(usage(format!("Error in {name} properties: {}\n", e.text())));
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests;
