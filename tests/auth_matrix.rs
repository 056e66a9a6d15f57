//! Who may log in, black box, against the real Mosquitto: every combination
//! of username (none / known / unknown) x password (none / right / wrong) x
//! `allow_anonymous` x checker (none, password file, dynamic security, both),
//! on MQTT 3.1.1 and 5.0. Each CONNECT goes to midge and to
//! `/usr/sbin/mosquitto` started with the same configuration, and the answers
//! (CONNACK code, or a close without one) must be equal. A few answers are
//! also pinned outright, so the test cannot pass by both brokers agreeing on
//! something wrong — chiefly the bypass this test was written for: a known
//! dynamic-security username with no password must be refused.
//!
//! Needs `mosquitto`, `mosquitto_passwd` and `mosquitto_ctrl` (installed by
//! `.ci/run`); fails without them.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const DYNSEC_SO: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";

struct Broker {
    port: u16,
    child: Child,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, dir: &Path, name: &str, config: &str) -> Broker {
    for _ in 0..5 {
        let port = free_port();
        let conf = dir.join(format!("{name}.conf"));
        fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nuser root\n{config}"),
        )
        .unwrap();
        let log = fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if TcpStream::connect_timeout(&loopback(port), Duration::from_millis(100)).is_ok() {
                return Broker { port, child };
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    panic!("{} did not start; log:\n{log}", bin.display());
}

fn put(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&(b.len() as u16).to_be_bytes());
    buf.extend_from_slice(b);
}

fn connect_bytes(v5: bool, id: &str, user: Option<&str>, pass: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    put(&mut body, b"MQTT");
    body.push(if v5 { 5 } else { 4 });
    let mut flags = 0x02;
    if user.is_some() {
        flags |= 0x80;
    }
    if pass.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    if v5 {
        body.push(0);
    }
    put(&mut body, id.as_bytes());
    if let Some(u) = user {
        put(&mut body, u.as_bytes());
    }
    if let Some(p) = pass {
        put(&mut body, p.as_bytes());
    }
    frame(0x10, &body)
}

/// The CONNACK code, or None when the broker closed without one.
fn try_login(port: u16, v5: bool, user: Option<&str>, pass: Option<&str>) -> Option<u8> {
    let mut s = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(&connect_bytes(v5, "matrix", user, pass))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&chunk[..n]);
                if got.len() >= 4 {
                    break;
                }
            }
            Err(e) => panic!("no answer within 3 s ({e}); got {got:02x?}"),
        }
    }
    if got.is_empty() {
        return None;
    }
    assert_eq!(got[0], 0x20, "not a CONNACK: {got:02x?}");
    Some(got[3])
}

fn tool(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed by this test (.ci/run installs it): {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
}

/// A dynamic-security file with `admin`/`adminpw` (all roles) and
/// `bob`/`dynpw`, made by mosquitto_ctrl itself.
fn dynsec_file(dir: &Path) -> PathBuf {
    let main = dir.join("dynsec.json");
    let other = dir.join("bob.json");
    tool(
        "mosquitto_ctrl",
        &["dynsec", "init", main.to_str().unwrap(), "admin", "adminpw"],
    );
    tool(
        "mosquitto_ctrl",
        &["dynsec", "init", other.to_str().unwrap(), "bob", "dynpw"],
    );
    // Splice bob's client entry into the first file's client list.
    let a = fs::read_to_string(&main).unwrap();
    let b = fs::read_to_string(&other).unwrap();
    let start = b.find("\"clients\":").unwrap();
    let open = start + b[start..].find('[').unwrap() + 1;
    let close = open + b[open..].find("}],").unwrap() + 1;
    let bob = b[open..close].replace("\"admin\"", "\"nobody-role\"");
    let at = a.find("\"clients\":").unwrap();
    let at = at + a[at..].find('[').unwrap() + 1;
    let merged = format!("{}{}, {}", &a[..at], bob.trim(), &a[at..]);
    fs::write(&main, merged).unwrap();
    main
}

fn password_file(dir: &Path) -> PathBuf {
    let f = dir.join("passwd");
    let p = f.to_str().unwrap();
    tool("mosquitto_passwd", &["-c", "-b", p, "alice", "alicepw"]);
    tool("mosquitto_passwd", &["-b", p, "bob", "filepw"]);
    f
}

type Creds = (Option<&'static str>, Option<&'static str>);

const CREDS: &[Creds] = &[
    (None, None),
    (None, Some("x")),
    (Some("alice"), Some("alicepw")),
    (Some("alice"), None),
    (Some("alice"), Some("wrong")),
    (Some("admin"), Some("adminpw")),
    (Some("admin"), None),
    (Some("admin"), Some("wrong")),
    (Some("bob"), Some("dynpw")),
    (Some("bob"), Some("filepw")),
    (Some("bob"), None),
    (Some("mallory"), Some("x")),
    (Some("mallory"), None),
];

#[test]
fn login_decisions_match_mosquitto() {
    assert!(
        Path::new(MOSQUITTO).exists(),
        "{MOSQUITTO} is needed by this test (.ci/run installs the mosquitto package)"
    );
    assert!(Path::new(DYNSEC_SO).exists(), "{DYNSEC_SO} missing");
    let dir = temp_dir("auth-matrix");
    let pw = password_file(&dir);
    let midge = broker_binary();
    let mut table = Vec::new();
    let mut differences = Vec::new();
    for backend in ["none", "password_file", "dynsec", "both"] {
        for anon in [true, false] {
            // Each broker gets its own copy: both may rewrite the JSON.
            let mut config = format!("allow_anonymous {anon}\n");
            let per = |name: &str| {
                let mut c = config.clone();
                if backend == "password_file" || backend == "both" {
                    c.push_str(&format!("password_file {}\n", pw.display()));
                }
                if backend == "dynsec" || backend == "both" {
                    let d = dir.join(format!("{name}-{backend}-{anon}"));
                    fs::create_dir_all(&d).unwrap();
                    let f = dynsec_file(&d);
                    c.push_str(&format!(
                        "plugin {DYNSEC_SO}\nplugin_opt_config_file {}\n",
                        f.display()
                    ));
                }
                c
            };
            let mq_conf = per("mosquitto");
            let mi_conf = per("midge");
            config.clear();
            let tag = format!("{backend}-{anon}");
            let mq = start(Path::new(MOSQUITTO), &dir, &format!("mosq-{tag}"), &mq_conf);
            let mi = start(&midge, &dir, &format!("midge-{tag}"), &mi_conf);
            for v5 in [false, true] {
                for &(u, p) in CREDS {
                    let want = try_login(mq.port, v5, u, p);
                    let got = try_login(mi.port, v5, u, p);
                    let line = format!(
                        "{backend:13} anon={anon:5} v{} user={:8} pass={:8} mosquitto={want:?} midge={got:?}",
                        if v5 { 5 } else { 4 },
                        u.unwrap_or("-"),
                        p.unwrap_or("-"),
                    );
                    if want != got {
                        differences.push(line.clone());
                    }
                    table.push(((backend, anon, v5, u, p), got, line));
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "midge and Mosquitto disagree:\n{}",
        differences.join("\n")
    );
    let answer = |backend: &str, anon: bool, v5: bool, u: Option<&str>, p: Option<&str>| {
        table
            .iter()
            .find(|(k, _, _)| *k == (backend, anon, v5, u, p))
            .map(|(_, got, _)| *got)
            .unwrap()
    };
    // The bypass: a dynsec user without a password, with anonymous allowed.
    assert_eq!(answer("dynsec", true, false, Some("admin"), None), Some(5));
    assert_eq!(
        answer("dynsec", true, true, Some("admin"), None),
        Some(0x87)
    );
    // An unknown user with a password is refused too.
    assert_eq!(
        answer("dynsec", true, false, Some("mallory"), Some("x")),
        Some(5)
    );
    // The right password gets in; the plugin is asked before the file.
    assert_eq!(
        answer("both", false, false, Some("admin"), Some("adminpw")),
        Some(0)
    );
    assert_eq!(
        answer("both", false, false, Some("bob"), Some("dynpw")),
        Some(0)
    );
    assert_eq!(
        answer("both", false, false, Some("bob"), Some("filepw")),
        Some(5)
    );
    // Anonymous means no username at all.
    assert_eq!(answer("password_file", true, false, None, None), Some(0));
    assert_eq!(answer("password_file", false, false, None, None), Some(5));
    // 3.1.1 forbids a password without a username: closed, no CONNACK.
    assert_eq!(answer("none", true, false, None, Some("x")), None);
    let _ = fs::remove_dir_all(&dir);
}
