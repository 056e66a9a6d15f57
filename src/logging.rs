//! logging: Mosquitto-shaped log lines to every `log_dest`.
//!
//! Owns: the `log` backend (env_logger with a fan-out writer), the
//! destinations stdout, stderr, file (reopened on SIGHUP), syslog (the
//! `/dev/log` datagram socket) and topic (lines queued here and published by
//! the event loop under `$SYS/broker/log/<E|W|N|I|D|M>`), and the line
//! format (`<unix time>: message`, or `log_timestamp_format`).
//!
//! Must not: reach into the broker. The topic destination is a queue the
//! event loop drains; nothing here publishes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use log::{Level, LevelFilter};

use crate::config::{Config, LogDest, LogTypes};

/// Lines for the topic destination, waiting for the event loop.
static TOPIC_QUEUE: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static TOPIC_ENABLED: AtomicBool = AtomicBool::new(false);
/// Set by SIGHUP handling: the file destination is reopened on next write.
static REOPEN: AtomicBool = AtomicBool::new(false);

/// Take the queued `$SYS/broker/log/...` lines as (topic, payload).
pub fn drain_topic_lines() -> Vec<(String, String)> {
    if !TOPIC_ENABLED.load(Ordering::Relaxed) {
        return Vec::new();
    }
    match TOPIC_QUEUE.lock() {
        Ok(mut q) => std::mem::take(&mut *q),
        Err(_) => Vec::new(),
    }
}

/// Close and reopen the log file (after logrotate moved it).
pub fn reopen() {
    REOPEN.store(true, Ordering::Relaxed);
}

struct Sinks {
    stdout: bool,
    stderr: bool,
    file_path: Option<String>,
    file: Option<File>,
    /// Opening the file failed once already (said once on stderr).
    open_failed: bool,
    syslog: Option<UnixDatagram>,
    facility: u8,
}

/// The writer env_logger formats into: one formatted line per write call
/// (env_logger writes each record with a single write_all of its buffer).
#[derive(Clone)]
struct FanOut {
    sinks: Arc<Mutex<Sinks>>,
}

impl Write for FanOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Ok(mut s) = self.sinks.lock() else {
            return Ok(buf.len());
        };
        // The first byte is a level tag written by the formatter; strip it.
        let (tag, line) = match buf.split_first() {
            Some((t, rest)) => (*t, rest),
            None => return Ok(0),
        };
        if s.stdout {
            let _ = io::stdout().write_all(line);
        }
        if s.stderr {
            let _ = io::stderr().write_all(line);
        }
        if REOPEN.swap(false, Ordering::Relaxed) && s.file.is_some() {
            // After logrotate: a new file if we may, else keep writing to
            // the old one rather than going silent.
            if let Some(p) = s.file_path.clone() {
                match open_log_file(&p) {
                    Ok(f) => s.file = Some(f),
                    Err(e) => eprintln!(
                        "Error: Unable to reopen log file {}: {}. Still logging to the file opened before.",
                        p, e
                    ),
                }
            }
        }
        if s.file.is_none() {
            if let Some(p) = s.file_path.clone() {
                match open_log_file(&p) {
                    Ok(f) => s.file = Some(f),
                    Err(e) => {
                        if !s.open_failed {
                            eprintln!("Error: Unable to open log file {} for writing: {}.", p, e);
                        }
                        s.open_failed = true;
                    }
                }
            }
        }
        if let Some(f) = s.file.as_mut() {
            let _ = f.write_all(line);
            let _ = f.flush();
        }
        if let Some(sock) = &s.syslog {
            let sev = match tag {
                b'E' => 3,
                b'W' => 4,
                b'N' => 5,
                b'I' => 6,
                _ => 7,
            };
            let pri = u16::from(s.facility) * 8 + sev;
            let body = strip_timestamp(line);
            let msg = format!(
                "<{}>midge[{}]: {}",
                pri,
                std::process::id(),
                String::from_utf8_lossy(body).trim_end()
            );
            let _ = sock.send(msg.as_bytes());
        }
        if TOPIC_ENABLED.load(Ordering::Relaxed) {
            let sub = match tag {
                b'E' => "E",
                b'W' => "W",
                b'N' => "N",
                b'I' => "I",
                b'S' => "M/subscribe",
                b'U' => "M/unsubscribe",
                _ => "D",
            };
            if let Ok(mut q) = TOPIC_QUEUE.lock() {
                if q.len() < 10_000 {
                    q.push((
                        format!("$SYS/broker/log/{}", sub),
                        String::from_utf8_lossy(line).trim_end().to_string(),
                    ));
                }
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The log file, appended to; created owner-only (0600) as Mosquitto does
/// (umask 0077), since lines name clients, users and topics.
pub fn open_log_file(path: &str) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn strip_timestamp(line: &[u8]) -> &[u8] {
    match line.windows(2).position(|w| w == b": ") {
        Some(i) if line[..i].iter().all(u8::is_ascii_digit) => &line[i + 2..],
        _ => line,
    }
}

fn tag_for(level: Level, target: &str) -> u8 {
    match (level, target) {
        (_, "subscribe") => b'S',
        (_, "unsubscribe") => b'U',
        (Level::Info, "information") => b'I',
        (Level::Error, _) => b'E',
        (Level::Warn, _) => b'W',
        (Level::Info, _) => b'N',
        _ => b'D',
    }
}

/// What `init` needs from the config (and `-v`).
pub struct LogSetup {
    pub types: LogTypes,
    pub dests: Vec<LogDest>,
    pub file: Option<String>,
    pub timestamp: bool,
    pub timestamp_format: Option<String>,
    pub facility: Option<u8>,
}

impl LogSetup {
    pub fn from_config(cfg: &Config, verbose: bool) -> LogSetup {
        LogSetup {
            types: if verbose {
                LogTypes::all()
            } else {
                cfg.log_type
            },
            dests: cfg.effective_log_dest(),
            file: cfg.log_file.clone(),
            timestamp: cfg.log_timestamp,
            timestamp_format: cfg.log_timestamp_format.clone(),
            facility: cfg.log_facility,
        }
    }
}

/// The level for ordinary (notice) lines: Mosquitto's error, warning and
/// notice types map to levels; information, subscribe and unsubscribe lines
/// have targets of their own (see `init`).
fn level_for(types: &LogTypes) -> LevelFilter {
    if types.debug {
        LevelFilter::Debug
    } else if types.notice {
        LevelFilter::Info
    } else if types.warning {
        LevelFilter::Warn
    } else if types.error {
        LevelFilter::Error
    } else {
        LevelFilter::Off
    }
}

fn on(enabled: bool) -> LevelFilter {
    if enabled {
        LevelFilter::Info
    } else {
        LevelFilter::Off
    }
}

/// Install the logger. Safe to call once per process; later calls only
/// adjust the level (SIGHUP reload).
pub fn init(setup: &LogSetup) {
    let d = &setup.dests;
    let none = d.contains(&LogDest::None);
    let sinks = Sinks {
        stdout: !none && d.contains(&LogDest::Stdout),
        stderr: !none && d.contains(&LogDest::Stderr),
        file_path: if !none && d.contains(&LogDest::File) {
            setup.file.clone()
        } else {
            None
        },
        file: None,
        open_failed: false,
        syslog: if !none && d.contains(&LogDest::Syslog) {
            UnixDatagram::unbound()
                .ok()
                .filter(|s| s.connect("/dev/log").is_ok())
        } else {
            None
        },
        // LOG_DAEMON unless log_facility picks local<n>.
        facility: setup.facility.map(|n| 16 + n.min(7)).unwrap_or(3),
    };
    TOPIC_ENABLED.store(!none && d.contains(&LogDest::Topic), Ordering::Relaxed);
    let level = if none {
        LevelFilter::Off
    } else {
        level_for(&setup.types)
    };
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    if !none {
        let t = &setup.types;
        b.filter_module("subscribe", on(t.subscribe || t.debug));
        b.filter_module("unsubscribe", on(t.unsubscribe || t.debug));
        b.filter_module("information", on(t.information || t.debug));
    }
    // Libraries log at their own whim; only errors from them are ours to show.
    for noisy in ["rustls", "mio"] {
        b.filter_module(noisy, LevelFilter::Error);
    }
    b.target(env_logger::Target::Pipe(Box::new(FanOut {
        sinks: Arc::new(Mutex::new(sinks)),
    })));
    let timestamp = setup.timestamp;
    let format = setup.timestamp_format.clone();
    b.format(move |buf, record| {
        let tag = tag_for(record.level(), record.target());
        let mut line = Vec::with_capacity(128);
        line.push(tag);
        if timestamp {
            match &format {
                Some(f) => {
                    let _ = write!(line, "{}: ", strftime_now(f));
                }
                None => {
                    let t = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    let _ = write!(line, "{}: ", t);
                }
            }
        }
        let _ = writeln!(line, "{}", record.args());
        buf.write_all(&line)
    });
    if b.try_init().is_err() {
        log::set_max_level(level);
    }
}

/// The local time formatted with strftime (`log_timestamp_format`).
fn strftime_now(fmt: &str) -> String {
    let Ok(cfmt) = std::ffi::CString::new(fmt) else {
        return String::new();
    };
    let mut out = [0u8; 256];
    // SAFETY: time(NULL) has no preconditions; localtime_r writes only into
    // `tm`, which we own; strftime writes at most out.len() bytes into `out`
    // and returns how many it wrote.
    let n = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return String::new();
        }
        libc::strftime(
            out.as_mut_ptr() as *mut libc::c_char,
            out.len(),
            cfmt.as_ptr(),
            &tm,
        )
    };
    String::from_utf8_lossy(&out[..n.min(out.len())]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_stripped_for_syslog() {
        assert_eq!(strip_timestamp(b"1700000000: hello"), b"hello");
        assert_eq!(strip_timestamp(b"no stamp: here"), b"no stamp: here");
    }

    #[test]
    fn strftime_formats_the_year() {
        let y = strftime_now("%Y");
        assert_eq!(y.len(), 4, "{}", y);
        assert!(y.starts_with('2'));
    }

    #[test]
    fn levels_follow_log_types() {
        let mut t = LogTypes::none();
        assert_eq!(level_for(&t), LevelFilter::Off);
        t.error = true;
        assert_eq!(level_for(&t), LevelFilter::Error);
        t.information = true;
        assert_eq!(
            level_for(&t),
            LevelFilter::Error,
            "information has its own target"
        );
        t.notice = true;
        assert_eq!(level_for(&t), LevelFilter::Info);
        assert_eq!(level_for(&LogTypes::all()), LevelFilter::Debug);
    }
}
