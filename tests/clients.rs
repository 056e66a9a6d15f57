//! Black-box tests of midge_pub, midge_sub and midge_rr: round trips against the midge
//! broker, and byte-for-byte comparisons with mosquitto_pub/sub/rr 2.0 (and the mosquitto
//! broker) (CI installs them; a missing one fails the comparison).
//!
//! Owns: a small process helper that waits for a debug line (so a subscriber is known to be
//! subscribed before anything is published), a Mosquitto broker launcher, and the tests.
//!
//! Must not: wait without a deadline, use fixed ports, or kill anything but the children it
//! started.

mod common;

use common::*;
use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const PUB: &str = env!("CARGO_BIN_EXE_midge_pub");
const SUB: &str = env!("CARGO_BIN_EXE_midge_sub");
const RR: &str = env!("CARGO_BIN_EXE_midge_rr");
const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A child whose stdout is read line by line (to wait for "Subscribed" etc.) and whose stderr
/// is collected.
struct Proc {
    child: Child,
    lines: Receiver<Vec<u8>>,
    seen: VecDeque<Vec<u8>>,
    out: Vec<u8>,
    err: Option<thread::JoinHandle<Vec<u8>>>,
}

struct Done {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Done {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stdout without the `-d` lines.
    fn messages(&self) -> String {
        self.out()
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed (mid:"))
            .collect()
    }
}

impl Proc {
    fn spawn(program: &str, args: &[&str], stdin: Option<Vec<u8>>) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
            thread::spawn(move || {
                let _ = w.write_all(&data);
            });
        }
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            let mut r = BufReader::new(out);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let err = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        Proc {
            child,
            lines: rx,
            seen: VecDeque::new(),
            out: Vec::new(),
            err: Some(err),
        }
    }

    /// Wait until a stdout line contains `needle`.
    fn wait_for(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        if self
            .seen
            .iter()
            .any(|l| String::from_utf8_lossy(l).contains(needle))
        {
            return;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = String::from_utf8_lossy(&l).contains(needle);
                    self.seen.push_back(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {within:?}; got {:?}",
                    self.seen
                        .iter()
                        .map(|l| String::from_utf8_lossy(l).into_owned())
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    fn finish(mut self, within: Duration) -> Done {
        let deadline = Instant::now() + within;
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        for l in self.seen.drain(..) {
            self.out.extend_from_slice(&l);
        }
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.out.extend_from_slice(&l);
        }
        let err = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Done {
            code,
            stdout: std::mem::take(&mut self.out),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn done(program: &str, args: &[&str]) -> Done {
    Proc::spawn(program, args, None).finish(LIMIT)
}

fn done_stdin(program: &str, args: &[&str], stdin: &[u8]) -> Done {
    Proc::spawn(program, args, Some(stdin.to_vec())).finish(LIMIT)
}

/// `args` with `-p port` in front.
fn at(port: u16, args: &[&str]) -> Vec<String> {
    let mut v = vec!["-p".to_string(), port.to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Start a subscriber with `-d` and wait until its SUBACK arrived. The Mosquitto tools
/// buffer stdout when it is a pipe, so they run under `stdbuf -oL`.
fn subscriber(program: &str, port: u16, args: &[&str]) -> Proc {
    let mut a = at(port, args);
    a.push("-d".into());
    let mut p = if program.starts_with("mosquitto_") {
        let mut full = vec!["-oL".to_string(), program.to_string()];
        full.extend(a);
        Proc::spawn("stdbuf", &refs(&full), None)
    } else {
        Proc::spawn(program, &refs(&a), None)
    };
    p.wait_for("Subscribed (mid:", LIMIT);
    p
}

fn publish(program: &str, port: u16, args: &[&str]) -> Done {
    let d = done(program, &refs(&at(port, args)));
    assert_eq!(d.code, Some(0), "{program} {args:?}: {}", d.stderr);
    d
}

fn installed(tools: &[&str], test: &str) -> bool {
    for t in tools {
        if !have(t) {
            panic!("{test}: {t} is not installed (.ci/run installs it)");
        }
    }
    true
}

/// Time stamps and generated ids, which differ between any two runs.
fn normalize(s: &str) -> String {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        // 2026-11-22T00:35:46[.123456Z]+0000
        if rest.len() >= 24
            && rest[..4].iter().all(u8::is_ascii_digit)
            && rest[4] == b'-'
            && rest[10] == b'T'
        {
            let mut j = 19;
            if rest.get(j) == Some(&b'.') {
                j += 8;
            }
            if matches!(rest.get(j), Some(b'+') | Some(b'-')) && rest.len() >= j + 5 {
                out.extend_from_slice(b"TIME");
                i += j + 5;
                continue;
            }
        }
        if rest.starts_with(b"auto-") && rest.len() >= 41 {
            out.extend_from_slice(b"auto-ID");
            i += 41;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// A real Mosquitto broker, for comparisons
// ---------------------------------------------------------------------------------------------

struct Mosquitto {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Mosquitto {
    fn start(extra: &str) -> Option<Mosquitto> {
        let bin = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        for _ in 0..5 {
            let port = free_port();
            let dir = temp_dir("clients-mosq");
            let conf = dir.join("mosquitto.conf");
            fs::write(
                &conf,
                format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}"),
            )
            .ok()?;
            let mut child = Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let started = Instant::now();
            while started.elapsed() < START_TIMEOUT {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(loopback(port)).is_ok() {
                    return Some(Mosquitto { port, child, dir });
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_dir_all(&dir);
        }
        None
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_flag_and_bad_values_give_mosquittos_messages() {
    let d = done(PUB, &["--bogus"]);
    assert_eq!(d.code, Some(1));
    assert_eq!(
        d.stderr,
        "Error: Unknown option '--bogus'.\n\nUse 'midge_pub --help' to see usage.\n"
    );
    let d = done(SUB, &["-t"]);
    assert_eq!(d.code, Some(1));
    assert_eq!(
        d.stderr,
        "Error: -t argument given but no topic specified.\n\n\nUse 'midge_sub --help' to see usage.\n"
    );
    let d = done(SUB, &["-t", "a/#/b"]);
    assert_eq!(
        d.stderr,
        "Error: Invalid subscription topic 'a/#/b', are all '+' and '#' wildcards correct?\n\nUse 'midge_sub --help' to see usage.\n"
    );
    let d = done(RR, &["-t", "a", "-e", "b"]);
    assert_eq!(d.code, Some(1));
    assert!(d
        .stderr
        .starts_with("Error: All of topic, message, and response topic must be supplied.\n"));
    let d = done(PUB, &["--help"]);
    assert_eq!(d.code, Some(1));
    assert!(d.out().starts_with("midge_pub is a simple mqtt client"));
}

#[test]
fn bad_command_lines_match_the_mosquitto_tools() {
    if !installed(
        &["mosquitto_pub", "mosquitto_sub", "mosquitto_rr"],
        "bad command lines",
    ) {
        return;
    }
    // Nothing listens on port 1, so the few that get past parsing fail the same way too.
    let cases: &[&[&str]] = &[
        &["--bogus"],
        &["-t"],
        &["-p"],
        &["-q", "3", "-t", "a", "-m", "x"],
        &["-k", "4", "-t", "a", "-m", "x"],
        &["-V", "6", "-t", "a", "-m", "x"],
        &["-x", "abc", "-t", "a", "-m", "x"],
        &["-x", "-2", "-t", "a", "-m", "x"],
        &["-i", "a", "-I", "b", "-t", "a", "-m", "x"],
        &["-c", "-t", "a", "-m", "x"],
        &["-c", "-V", "5", "-t", "a", "-m", "x"],
        &["--will-payload", "x", "-t", "a", "-m", "x"],
        &["--will-topic", "w/#", "-t", "a", "-m", "x"],
        &["--cert", "c", "-t", "a", "-m", "x"],
        &["-L", "foo://h/t", "-m", "x"],
        &["-L", "mqtt://h", "-m", "x"],
        &["-t", "a/+", "-m", "x"],
        &["-t", "a\tb", "-m", "x"],
        &["-D", "publish", "foo", "bar"],
        &["-D", "connect", "content-type", "x"],
        &["-D", "publish", "payload-format-indicator", "300"],
        &["-D", "publish", "topic-alias", "0", "-t", "a", "-m", "x"],
        &[
            "-D",
            "publish",
            "content-type",
            "a",
            "-D",
            "publish",
            "content-type",
            "b",
        ],
        &["-t", "a", "-m", "x", "-f", "y"],
        &["-t", "a", "-f", "/nonexistent/file"],
        &["-t", "a", "-m", "x", "-p", "1"],
        &["-t", "a", "-m", "x", "-h", "no-such-host.invalid"],
        &["-t", "a", "-m", "x", "--unix", "/nonexistent/socket"],
        &[
            "-t",
            "a",
            "-m",
            "x",
            "--cafile",
            "/nonexistent/ca.crt",
            "-p",
            "1",
        ],
        &["-t", "a", "-C", "0"],
        &["-t", "a", "-W", "0"],
        &["-t", "a", "-F", "%Z"],
        &["-t", "a", "-F", "%"],
        &["-t", "a", "-R", "--retained-only"],
        &["-t", "a", "-T", "a/#/b"],
        &["-t", "a", "-e", "b/#", "-m", "x"],
        &[],
    ];
    let mut diffs = Vec::new();
    for tool in ["pub", "sub", "rr"] {
        for args in cases {
            let m = done(&format!("mosquitto_{tool}"), args);
            let g = done(
                match tool {
                    "pub" => PUB,
                    "sub" => SUB,
                    _ => RR,
                },
                args,
            );
            let mo = m.stderr.replace("mosquitto_", "midge_");
            let m_out = m.out().replace("mosquitto_", "midge_");
            // Usage texts differ by design (names, version line); compare their presence.
            let same_out = m_out == g.out() || (m_out.len() > 500 && g.out().len() > 500);
            if m.code != g.code || mo != g.stderr || !same_out {
                diffs.push(format!(
                    "{tool} {args:?}\n  mosquitto: {:?} {mo:?}\n  midge:     {:?} {:?}",
                    m.code, g.code, g.stderr
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Against the midge broker
// ---------------------------------------------------------------------------------------------

#[test]
fn round_trips_at_qos_0_1_2() {
    let b = TestBroker::start("");
    for q in ["0", "1", "2"] {
        for v in ["mqttv31", "mqttv311", "mqttv5"] {
            let topic = format!("rt/{q}/{v}");
            let sub = subscriber(
                SUB,
                b.port,
                &["-t", &topic, "-q", q, "-C", "1", "-v", "-V", v],
            );
            let p = publish(
                PUB,
                b.port,
                &["-t", &topic, "-m", "hello", "-q", q, "-V", v, "-d"],
            );
            let d = sub.finish(LIMIT);
            assert_eq!(d.code, Some(0), "{}", d.stderr);
            assert_eq!(d.messages(), format!("{topic} hello\n"));
            let expect: &[&str] = match q {
                "0" => &["sending PUBLISH (d0, q0"],
                "1" => &["sending PUBLISH (d0, q1", "received PUBACK (Mid: 1, RC:0)"],
                _ => &[
                    "sending PUBLISH (d0, q2",
                    "received PUBREC (Mid: 1)",
                    "sending PUBREL (m1)",
                    "received PUBCOMP (Mid: 1, RC:0)",
                ],
            };
            for e in expect {
                assert!(p.out().contains(e), "{v} q{q}: no {e:?} in\n{}", p.out());
            }
            assert!(p.out().ends_with(" sending DISCONNECT\n"), "{}", p.out());
        }
    }
}

#[test]
fn retained_messages_and_their_flags() {
    let b = TestBroker::start("");
    publish(PUB, b.port, &["-t", "ret/a", "-m", "one", "-r", "-q", "1"]);
    publish(PUB, b.port, &["-t", "ret/b", "-m", "two", "-r"]);
    // Retained messages arrive at once: -C 2 needs no publisher.
    let d = done(
        SUB,
        &refs(&at(b.port, &["-t", "ret/#", "-C", "2", "-F", "%t %p %r"])),
    );
    assert_eq!(d.code, Some(0));
    let mut lines: Vec<_> = d.out().lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["ret/a one 1", "ret/b two 1"]);
    // --retained-only stops at the first live message and prints only the stale ones.
    let sub = subscriber(
        SUB,
        b.port,
        &["-t", "ret/#", "--retained-only", "-v", "-W", "10"],
    );
    publish(PUB, b.port, &["-t", "ret/c", "-m", "live"]);
    let d = sub.finish(LIMIT);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    let mut lines: Vec<_> = d.messages().lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["ret/a one", "ret/b two"]);
    // -R skips them.
    let sub = subscriber(SUB, b.port, &["-t", "ret/#", "-R", "-C", "1", "-v"]);
    publish(PUB, b.port, &["-t", "ret/d", "-m", "fresh"]);
    assert_eq!(sub.finish(LIMIT).messages(), "ret/d fresh\n");
    // --remove-retained clears what it sees.
    let d = done(
        SUB,
        &refs(&at(
            b.port,
            &["-t", "ret/#", "--remove-retained", "-C", "2", "-v"],
        )),
    );
    assert_eq!(d.code, Some(0));
    let d = done(SUB, &refs(&at(b.port, &["-t", "ret/#", "-W", "1", "-v"])));
    assert_eq!((d.code, d.out().as_str()), (Some(27), ""));
}

#[test]
fn line_mode_delivers_ten_thousand_lines_in_order() {
    // The subscriber may fall behind; let the broker queue everything.
    let b = TestBroker::start("max_queued_messages 0\n");
    let mut input = Vec::new();
    for i in 1..=10_000 {
        input.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    for q in ["0", "1"] {
        let topic = format!("lines/{q}");
        let sub = subscriber(SUB, b.port, &["-t", &topic, "-q", q, "-C", "10000"]);
        let p = done_stdin(
            PUB,
            &refs(&at(b.port, &["-t", &topic, "-l", "-q", q])),
            &input,
        );
        assert_eq!(p.code, Some(0), "{}", p.stderr);
        let d = sub.finish(Duration::from_secs(60));
        assert_eq!(d.code, Some(0), "{}", d.stderr);
        assert!(
            d.messages().as_bytes() == input.as_slice(),
            "QoS {q}: {} lines received",
            d.messages().lines().count()
        );
    }
    // Empty lines are empty messages; a last line without a newline still counts.
    let sub = subscriber(SUB, b.port, &["-t", "lines/x", "-C", "3", "-F", "[%p]"]);
    let p = done_stdin(PUB, &refs(&at(b.port, &["-t", "lines/x", "-l"])), b"a\n\nb");
    assert_eq!(p.code, Some(0));
    assert_eq!(sub.finish(LIMIT).messages(), "[a]\n[]\n[b]\n");
}

#[test]
fn count_and_timeout() {
    let b = TestBroker::start("");
    let sub = subscriber(SUB, b.port, &["-t", "cw/#", "-C", "2", "-v"]);
    for m in ["1", "2", "3"] {
        publish(PUB, b.port, &["-t", "cw/x", "-m", m]);
    }
    let d = sub.finish(LIMIT);
    assert_eq!(d.code, Some(0));
    assert_eq!(d.messages(), "cw/x 1\ncw/x 2\n");
    let d = done(SUB, &refs(&at(b.port, &["-t", "cw/none", "-W", "1"])));
    assert_eq!(d.code, Some(27));
    assert_eq!(d.stderr, "Timed out\n");
    // -E: exit once subscribed.
    let d = done(SUB, &refs(&at(b.port, &["-t", "cw/#", "-E"])));
    assert_eq!((d.code, d.out().as_str()), (Some(0), ""));
}

#[test]
fn v5_properties_from_the_command_line() {
    let b = TestBroker::start("");
    let sub = subscriber(
        SUB,
        b.port,
        &[
            "-t",
            "props/#",
            "-V",
            "5",
            "-C",
            "1",
            "-F",
            "%t|%C|%D|%E|%F|%P|%R|%p",
        ],
    );
    publish(
        PUB,
        b.port,
        &[
            "-t",
            "props/x",
            "-m",
            "body",
            "-q",
            "1",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "correlation-data",
            "c0rr",
            "-D",
            "publish",
            "message-expiry-interval",
            "3600",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "-D",
            "publish",
            "user-property",
            "k1",
            "v1",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
            "-D",
            "publish",
            "response-topic",
            "props/reply",
        ],
    );
    let d = sub.finish(LIMIT);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    let line = d.messages();
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(fields.len(), 8, "{line}");
    assert_eq!(fields[0], "props/x");
    assert_eq!(fields[1], "text/plain");
    assert_eq!(fields[2], "c0rr");
    // Message expiry counts down while the message waits; it cannot have grown.
    let e: u32 = fields[3].parse().expect("expiry");
    assert!((3590..=3600).contains(&e), "{e}");
    assert_eq!(&fields[4..], ["1", "k1:v1 k2:v2", "props/reply", "body"]);
}

#[test]
fn request_response_with_midge_rr() {
    let b = TestBroker::start("");
    // A responder that shows what the request carried.
    let responder = subscriber(
        SUB,
        b.port,
        &["-t", "svc/req", "-V", "5", "-C", "1", "-F", "%R %p"],
    );
    let mut rr = Proc::spawn(
        RR,
        &refs(&at(
            b.port,
            &[
                "-t", "svc/req", "-e", "svc/resp", "-m", "ping", "-W", "10", "-d",
            ],
        )),
        None,
    );
    rr.wait_for("sending PUBLISH", LIMIT);
    let req = responder.finish(LIMIT);
    assert_eq!(req.messages(), "svc/resp ping\n");
    publish(PUB, b.port, &["-t", "svc/resp", "-m", "pong", "-V", "5"]);
    let d = rr.finish(LIMIT);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    assert_eq!(d.messages(), "pong\n");
    // No answer: mosquitto_rr's timeout.
    let d = done(
        RR,
        &refs(&at(
            b.port,
            &["-t", "svc/req", "-e", "svc/none", "-m", "x", "-W", "1"],
        )),
    );
    assert_eq!((d.code, d.stderr.as_str()), (Some(27), "Timed out\n"));
}

#[test]
fn refused_and_unreachable_connections() {
    let b = TestBroker::start("allow_anonymous false\n");
    let cases: &[(&str, &[&str], i32, &str)] = &[
        (
            PUB,
            &["-t", "a", "-m", "x"],
            5,
            "Connection error: Connection Refused: not authorised.\nError: The connection was refused.\n",
        ),
        (
            PUB,
            &["-t", "a", "-m", "x", "-V", "5"],
            135,
            "Connection error: Not authorized\nError: A network protocol error occurred when communicating with the broker.\n",
        ),
        (SUB, &["-t", "a"], 5, "Connection error: Connection Refused: not authorised.\n"),
        (SUB, &["-t", "a", "-V", "5"], 135, "Connection error: Not authorized\n"),
        (RR, &["-t", "a", "-e", "b", "-m", "x"], 135, "Connection error: Not authorized\n"),
    ];
    for (prog, args, code, err) in cases {
        let d = done(prog, &refs(&at(b.port, args)));
        assert_eq!(
            (d.code, d.stderr.as_str()),
            (Some(*code), *err),
            "{prog} {args:?}"
        );
    }
    // --quiet silences it, the exit code stays.
    let d = done(PUB, &refs(&at(b.port, &["-t", "a", "-m", "x", "--quiet"])));
    assert_eq!((d.code, d.stderr.as_str()), (Some(5), ""));
    drop(b);
    let port = free_port();
    let d = done(PUB, &refs(&at(port, &["-t", "a", "-m", "x"])));
    assert_eq!(
        (d.code, d.stderr.as_str()),
        (Some(1), "Error: Connection refused\n")
    );
    let d = done(SUB, &["-h", "no-such-host.invalid", "-t", "a"]);
    assert_eq!(
        (d.code, d.stderr.as_str()),
        (Some(1), "Unable to connect (Lookup error.).\n")
    );
}

#[test]
fn websocket_transport() {
    let ws = free_port();
    let b = TestBroker::start(&format!("listener {ws} 127.0.0.1\nprotocol websockets\n"));
    let url = |t: &str| format!("ws://127.0.0.1:{ws}/{t}");
    let mut a = vec![
        "-L".to_string(),
        url("ws/#"),
        "-C".into(),
        "3".into(),
        "-v".into(),
    ];
    a.push("-d".into());
    let mut sub = Proc::spawn(SUB, &refs(&a), None);
    sub.wait_for("Subscribed (mid:", LIMIT);
    for (i, q) in ["0", "1", "2"].iter().enumerate() {
        let d = done(
            PUB,
            &["-L", &url(&format!("ws/{i}")), "-m", "over ws", "-q", q],
        );
        assert_eq!(d.code, Some(0), "{}", d.stderr);
    }
    let d = sub.finish(LIMIT);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    assert_eq!(d.messages(), "ws/0 over ws\nws/1 over ws\nws/2 over ws\n");
    // The same message also reaches plain TCP subscribers.
    let sub = subscriber(SUB, b.port, &["-t", "ws/tcp", "-C", "1"]);
    let d = done(PUB, &["-L", &url("ws/tcp"), "-m", "bridged"]);
    assert_eq!(d.code, Some(0));
    assert_eq!(sub.finish(LIMIT).messages(), "bridged\n");
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// ca.crt, server.crt/key for localhost and 127.0.0.1, other.crt/key for another name.
fn make_ca(dir: &Path) -> bool {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ok = openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "30",
                "-subj",
                "/CN=midge test CA",
            ],
        ]
        .concat(),
    );
    for (name, san) in [
        ("server", "DNS:localhost,IP:127.0.0.1"),
        ("other", "DNS:other.invalid"),
    ] {
        let ext = format!("{name}.ext");
        ok &= fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .is_ok();
        ok &= openssl(
            dir,
            &[
                &["req", "-new"][..],
                &ec[..],
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat(),
        );
        ok &= openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "7",
                "-days",
                "30",
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                &ext,
            ],
        );
    }
    ok
}

#[test]
fn tls_with_a_test_ca() {
    if !installed(&["openssl"], "tls_with_a_test_ca") {
        return;
    }
    let dir = temp_dir("clients-tls");
    if !make_ca(&dir) {
        panic!("tls_with_a_test_ca: openssl could not make the test CA");
    }
    let f = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let (good, wrong) = (free_port(), free_port());
    let b = TestBroker::start(&format!(
        "listener {good} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
         listener {wrong} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
        f("ca.crt"),
        f("server.crt"),
        f("server.key"),
        f("ca.crt"),
        f("other.crt"),
        f("other.key"),
    ));
    let ca = f("ca.crt");
    let sub = subscriber(
        SUB,
        good,
        &[
            "-h",
            "localhost",
            "--cafile",
            &ca,
            "-t",
            "tls/#",
            "-C",
            "2",
            "-v",
            "-q",
            "1",
        ],
    );
    publish(
        PUB,
        good,
        &[
            "-h",
            "localhost",
            "--cafile",
            &ca,
            "-t",
            "tls/a",
            "-m",
            "secret",
            "-q",
            "1",
        ],
    );
    publish(
        PUB,
        good,
        &[
            "-h",
            "127.0.0.1",
            "--cafile",
            &ca,
            "-t",
            "tls/b",
            "-m",
            "v13",
            "--tls-version",
            "tlsv1.3",
        ],
    );
    let d = sub.finish(LIMIT);
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    assert_eq!(d.messages(), "tls/a secret\ntls/b v13\n");
    // A certificate for another name is refused, unless --insecure.
    let d = done(
        PUB,
        &refs(&at(
            wrong,
            &["-h", "localhost", "--cafile", &ca, "-t", "x", "-m", "x"],
        )),
    );
    assert_eq!(
        (d.code, d.stderr.as_str()),
        (Some(8), "Error: A TLS error occurred.\n")
    );
    publish(
        PUB,
        wrong,
        &[
            "-h",
            "localhost",
            "--cafile",
            &ca,
            "-t",
            "x",
            "-m",
            "x",
            "--insecure",
        ],
    );
    // TLS to a plain listener, and a CA that does not sign the server.
    let d = done(
        PUB,
        &refs(&at(b.port, &["--cafile", &ca, "-t", "x", "-m", "x"])),
    );
    assert_eq!(
        (d.code, d.stderr.as_str()),
        (Some(8), "Error: A TLS error occurred.\n")
    );
    let d = done(
        PUB,
        &refs(&at(
            good,
            &[
                "-h",
                "localhost",
                "--cafile",
                &f("server.crt"),
                "-t",
                "x",
                "-m",
                "x",
            ],
        )),
    );
    assert_eq!(d.code, Some(8), "{}", d.stderr);
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Side by side with the Mosquitto tools
// ---------------------------------------------------------------------------------------------

const PROPS: &[&str] = &[
    "-D",
    "publish",
    "content-type",
    "text/plain",
    "-D",
    "publish",
    "correlation-data",
    "cd1",
    "-D",
    "publish",
    "payload-format-indicator",
    "1",
    "-D",
    "publish",
    "user-property",
    "k1",
    "v1",
    "-D",
    "publish",
    "user-property",
    "k2",
    "v2",
    "-D",
    "publish",
    "response-topic",
    "resp/x",
];

/// The messages every format comparison prints: v5 properties, JSON payloads, binary, empty.
/// After each one, wait until every subscriber has finished its handshake for it, so the
/// debug lines come out in one order whatever the timing.
fn publish_samples(port: u16, topic: &str, subs: &mut [&mut Proc]) {
    let t = |s: &str| format!("{topic}/{s}");
    let t1 = t("1");
    let mut a = vec!["-V", "5", "-q", "1", "-m", "he\"l\\lo", "-t", &t1];
    a.extend_from_slice(PROPS);
    let samples: Vec<(Vec<String>, String)> = vec![
        (
            a.iter().map(|s| s.to_string()).collect(),
            "sending PUBACK (m1".into(),
        ),
        (
            [
                "-t",
                &t("2"),
                "-q",
                "2",
                "-m",
                "{\"a\": [1, 2.5, -0, 1e300, \"\\u00e9\"], \"b\": {}}",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            "sending PUBCOMP (m2)".into(),
        ),
        (
            ["-t", &t("3"), "-n"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            format!("'{}'", t("3")),
        ),
        (
            ["-t", &t("4"), "-m", "bin\u{1}\u{1f}\u{7f}é\n\tx"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            format!("'{}'", t("4")),
        ),
    ];
    for (args, marker) in samples {
        publish(PUB, port, &refs(&args));
        for s in subs.iter_mut() {
            s.wait_for(&marker, LIMIT);
        }
    }
}

/// Run mosquitto_sub and midge_sub with the same arguments on the same messages.
fn compare_subs(port: u16, topic: &str, args: &[&str]) -> Option<String> {
    let filter = format!("{topic}/#");
    let mut a = vec!["-t", filter.as_str(), "-C", "4", "-V", "5", "-q", "2"];
    a.extend_from_slice(args);
    let mut m = subscriber("mosquitto_sub", port, &a);
    let mut g = subscriber(SUB, port, &a);
    publish_samples(port, topic, &mut [&mut m, &mut g]);
    let (m, g) = (m.finish(LIMIT), g.finish(LIMIT));
    // Whole stdout, debug lines included: they must match too (and with -N
    // the messages are not on lines of their own).
    let (mo, go) = (normalize(&m.out()), normalize(&g.out()));
    let (me, ge) = (normalize(&m.stderr), normalize(&g.stderr));
    if m.code == g.code && mo == go && me == ge {
        None
    } else {
        Some(format!(
            "{args:?}\n mosquitto_sub {:?}\n{mo}{me}\n midge_sub {:?}\n{go}{ge}",
            m.code, g.code
        ))
    }
}

const FORMATS: &[&[&str]] = &[
    &[],
    &["-v"],
    &["-v", "-N"],
    &["-F", "%t|%p|%q|%r|%l|%x|%X|%C|%D|%E|%F|%P|%R|%S|%A|%%|%10t|%-10t|%.2t|%05l|%-5l.|%5p|%-5p|%3x|%6x|%-x|%08p|%-4E|%04S|%3C|\\t\\\\@@|\\e\\a\\v\\r\\0"],
    &["-F", "%j"],
    &["-F", "%j", "--pretty"],
    &["-F", "%J|%t"],
    &["-F", "%J", "--pretty"],
    &["-F", "%I|@Y-@m-@d|%t"],
];

#[test]
fn output_formats_match_mosquitto_sub_on_midge() {
    if !installed(&["mosquitto_sub", "stdbuf"], "output formats on midge") {
        return;
    }
    let b = TestBroker::start("");
    let diffs: Vec<String> = FORMATS
        .iter()
        .enumerate()
        .filter_map(|(i, f)| compare_subs(b.port, &format!("fmt{i}"), f))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn output_formats_and_debug_lines_match_on_mosquitto() {
    if !installed(
        &["mosquitto_sub", "mosquitto_pub", "stdbuf"],
        "formats on mosquitto",
    ) {
        return;
    }
    let Some(m) = Mosquitto::start("") else {
        panic!("formats on mosquitto: the mosquitto broker did not start (is it installed?)");
    };
    let diffs: Vec<String> = FORMATS
        .iter()
        .enumerate()
        .filter_map(|(i, f)| compare_subs(m.port, &format!("fmt{i}"), f))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // Publisher debug lines, QoS 0/1/2, v3.1.1 and v5, with --repeat.
    for args in [
        &["-t", "dbg/a", "-m", "x", "-d"][..],
        &["-t", "dbg/b", "-m", "x", "-d", "-q", "1", "--repeat", "2"],
        &["-t", "dbg/c", "-m", "x", "-d", "-q", "2", "-V", "5", "-r"],
        &[
            "-t",
            "dbg/c",
            "-n",
            "-d",
            "-r",
            "-V",
            "5",
            "-D",
            "publish",
            "topic-alias",
            "1",
            "--repeat",
            "2",
        ],
    ] {
        let a = at(m.port, args);
        let (x, y) = (done("mosquitto_pub", &refs(&a)), done(PUB, &refs(&a)));
        assert_eq!(
            (x.code, normalize(&x.out()), x.stderr),
            (y.code, normalize(&y.out()), y.stderr),
            "{args:?}"
        );
    }
    // Subscriber debug lines at QoS 2 (PUBREC/PUBREL/PUBCOMP order) and -U.
    let a = [
        "-t",
        "dbg2/#",
        "-U",
        "nothing/#",
        "-q",
        "2",
        "-C",
        "2",
        "-v",
    ];
    let mut x = subscriber("mosquitto_sub", m.port, &a);
    let mut y = subscriber(SUB, m.port, &a);
    publish(
        "mosquitto_pub",
        m.port,
        &["-t", "dbg2/a", "-m", "one", "-q", "2"],
    );
    x.wait_for("sending PUBCOMP", LIMIT);
    y.wait_for("sending PUBCOMP", LIMIT);
    publish(
        "mosquitto_pub",
        m.port,
        &["-t", "dbg2/b", "-m", "two", "-q", "1"],
    );
    let (x, y) = (x.finish(LIMIT), y.finish(LIMIT));
    assert_eq!((x.code, normalize(&x.out())), (y.code, normalize(&y.out())));
}
