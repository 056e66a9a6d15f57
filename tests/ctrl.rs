//! midge_ctrl, black box, next to Mosquitto's own mosquitto_ctrl: the same
//! commands run with both tools against the same kind of broker (midge, and
//! Mosquitto 2.0.11 with its dynamic-security plugin) must print the same
//! bytes on stdout and stderr and exit with the same code (the tool names
//! in the text aside). A fake broker checks the request payloads byte for
//! byte and the printing of malformed replies.
//!
//! Needs mosquitto, mosquitto_ctrl, the dynsec plugin and openssl: a test
//! fails (never skips) when one is missing. Every broker runs on a free
//! loopback port and is killed by the test that started it.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const MIDGE_CTRL: &str = env!("CARGO_BIN_EXE_midge_ctrl");
const MIDGE: &str = env!("CARGO_BIN_EXE_midge");
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_CTRL: &str = "mosquitto_ctrl";
const DYNSEC_SO: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
/// Longer than the tools' own 10 s limit.
const LIMIT: Duration = Duration::from_secs(20);

fn require_tools() {
    assert!(
        Path::new(MOSQUITTO).exists(),
        "{MOSQUITTO} is needed to compare midge_ctrl with Mosquitto"
    );
    assert!(
        Path::new(DYNSEC_SO).exists(),
        "{DYNSEC_SO} (Mosquitto's dynamic-security plugin) is needed"
    );
    assert!(
        have(MOSQUITTO_CTRL),
        "mosquitto_ctrl is needed to compare midge_ctrl with it"
    );
}

/// One finished run of a tool.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `tool args` with `stdin` as input and an empty config directory
/// (so no user's options file is read), killing it after `LIMIT`.
fn run_tool(tool: &str, args: &[&str], stdin: &[u8], config_home: &Path) -> Outcome {
    let mut child = Command::new(tool)
        .args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {tool}: {e}"));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin);
    }
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let o = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = |h: thread::JoinHandle<Vec<u8>>| {
        String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned()
    };
    let r = Outcome {
        code: status.and_then(|s| s.code()),
        stdout: text(o),
        stderr: text(e),
    };
    assert!(
        r.code.is_some(),
        "{tool} {args:?} did not finish within {LIMIT:?}: {r:?}"
    );
    assert!(
        !r.stderr.contains("panicked"),
        "{tool} {args:?} panicked: {}",
        r.stderr
    );
    r
}

/// mosquitto_ctrl's text as midge_ctrl words it: the tool's name, and
/// the version line of the usage text.
fn midge_words(text: &str) -> String {
    let ours = format!(
        "midge_ctrl version {}, compatible with mosquitto_ctrl 2.0.11.",
        env!("CARGO_PKG_VERSION")
    );
    let keep = [
        "https://mosquitto.org/man/mosquitto_ctrl-1.html",
        "compatible with mosquitto_ctrl 2.0.11.",
    ];
    let mut s = text.replace(
        "mosquitto_ctrl version 2.0.11 running on libmosquitto 2.0.11.",
        &ours,
    );
    for (i, k) in keep.iter().enumerate() {
        s = s.replace(k, &format!("\u{0}{i}\u{0}"));
    }
    s = s.replace("mosquitto_ctrl", "midge_ctrl");
    for (i, k) in keep.iter().enumerate() {
        s = s.replace(&format!("\u{0}{i}\u{0}"), k);
    }
    s
}

/// mosquitto_ctrl's output as midge_ctrl is expected to print it.
fn as_midge(mut o: Outcome) -> Outcome {
    o.stdout = midge_words(&o.stdout);
    o.stderr = midge_words(&o.stderr);
    o
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        Scratch(temp_dir(tag))
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Both tools, same arguments and input: identical output and exit code.
fn same(args: &[&str], stdin: &[u8], home: &Path) -> Outcome {
    let theirs = as_midge(run_tool(MOSQUITTO_CTRL, args, stdin, home));
    let ours = run_tool(MIDGE_CTRL, args, stdin, home);
    assert_eq!(ours, theirs, "midge_ctrl vs mosquitto_ctrl {args:?}");
    ours
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Midge,
    Mosquitto,
}

/// A broker of `kind` with the dynsec plugin on a copy of `file`, plus
/// `extra` configuration.
fn dynsec_broker(kind: Kind, file: &str, extra: &str) -> TestBroker {
    let conf = format!("plugin {DYNSEC_SO}\nplugin_opt_config_file {file}\n{extra}");
    match kind {
        Kind::Midge => TestBroker::start_binary(Path::new(MIDGE), &conf),
        // As root Mosquitto would drop to user mosquitto and fail to save.
        Kind::Mosquitto => {
            TestBroker::start_binary(Path::new(MOSQUITTO), &format!("user root\n{conf}"))
        }
    }
}

/// A fresh `dynsec init` file (admin / adminpw) written by midge_ctrl.
fn init_file(dir: &Scratch, name: &str) -> String {
    let file = dir.path(name);
    let r = run_tool(
        MIDGE_CTRL,
        &["dynsec", "init", &file, "admin", "adminpw"],
        b"",
        &dir.0,
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    file
}

fn admin(port: u16, cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "-p",
        &port.to_string(),
        "-u",
        "admin",
        "-P",
        "adminpw",
        "dynsec",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Every dynsec command (mutating ones included), in an order that goes
/// through successes and the plugin's error replies.
const SCRIPT: &[&[&str]] = &[
    &["createClient", "bob", "-p", "bobpw", "-c", "bobid"],
    &["createClient", "bob", "-p", "x"],
    &["createClient", "carol", "-p", "c"],
    &["createRole", "r1"],
    &["createRole", "r2"],
    &["createRole", "r1"],
    &["addRoleACL", "r1", "publishClientSend", "a/#", "allow", "5"],
    &["addRoleACL", "r1", "subscribeLiteral", "b/c", "deny"],
    &[
        "addRoleACL",
        "r1",
        "publishClientReceive",
        "x",
        "allow",
        "-3",
    ],
    &["addRoleACL", "r1", "bogus", "x", "allow"],
    &["addRoleACL", "r1", "publishClientSend", "x", "maybe"],
    &["addRoleACL", "nope", "publishClientSend", "x", "allow"],
    &["createGroup", "g1"],
    &["createGroup", "g2"],
    &["addGroupRole", "g1", "r1", "3"],
    &["addGroupRole", "g1", "r2"],
    &["addGroupClient", "g1", "bob"],
    &["addGroupClient", "g2", "bob", "7"],
    &["addClientRole", "bob", "r1"],
    &["addClientRole", "bob", "r2", "9"],
    &["addClientRole", "nobody", "r2"],
    &["getClient", "bob"],
    &["getClient", "admin"],
    &["getClient", "nobody"],
    &["getGroup", "g1"],
    &["getGroup", "g2"],
    &["getRole", "r1"],
    &["getRole", "admin"],
    &["getRole", "nope"],
    &["listClients"],
    &["listClients", "1"],
    &["listClients", "1", "1"],
    &["listGroups"],
    &["listRoles"],
    &["listRoles", "2", "1"],
    &["getAnonymousGroup"],
    &["setAnonymousGroup", "g2"],
    &["getAnonymousGroup"],
    &["getDefaultACLAccess"],
    &["setClientId", "bob"],
    &["getClient", "bob"],
    &["setClientId", "bob", "newid"],
    &["disableClient", "bob"],
    &["getClient", "bob"],
    &["enableClient", "bob"],
    &["removeRoleACL", "r1", "publishClientSend", "a/#"],
    &["removeRoleACL", "r1", "publishClientSend", "a/#"],
    &["getRole", "r1"],
    &["removeGroupClient", "g1", "bob"],
    &["removeGroupRole", "g1", "r2"],
    &["removeClientRole", "bob", "r1"],
    &["getClient", "bob"],
    &["getGroup", "g1"],
    &["setClientPassword", "carol", "newpw"],
    &["deleteClient", "carol"],
    &["deleteClient", "carol"],
    &["deleteGroup", "g1"],
    &["deleteRole", "r2"],
    &["listClients"],
    &["listGroups"],
    &["listRoles"],
    &["bogus"],
    &["createClient"],
    &["getClient"],
    &["setDefaultACLAccess", "subscribe", "maybe"],
    &["setDefaultACLAccess", "bogus", "allow"],
    &["help"],
];

/// Runs `SCRIPT` with mosquitto_ctrl against one broker and with
/// midge_ctrl against a twin started from the same file: each step must
/// print the same.
fn script_matches(kind: Kind) {
    require_tools();
    let dir = Scratch::new("ctrl-script");
    let file = init_file(&dir, "theirs.json");
    let twin = dir.path("ours.json");
    fs::copy(&file, &twin).expect("copy dynsec file");
    let theirs = dynsec_broker(kind, &file, "");
    let ours = dynsec_broker(kind, &twin, "");
    for step in SCRIPT {
        let a = as_midge(run_tool(
            MOSQUITTO_CTRL,
            &refs(&admin(theirs.port, step)),
            b"",
            &dir.0,
        ));
        let b = run_tool(MIDGE_CTRL, &refs(&admin(ours.port, step)), b"", &dir.0);
        assert_eq!(b, a, "{kind:?} broker, step {step:?}");
    }
    // Read-only commands, both tools against the very same broker.
    for step in [
        &["getClient", "bob"][..],
        &["listClients"],
        &["getRole", "r1"],
        &["getDefaultACLAccess"],
    ] {
        same(&refs(&admin(ours.port, step)), b"", &dir.0);
    }
}

#[test]
fn every_command_prints_like_mosquitto_ctrl_against_midge() {
    script_matches(Kind::Midge);
}

#[test]
fn every_command_prints_like_mosquitto_ctrl_against_mosquitto() {
    script_matches(Kind::Mosquitto);
}

/// A file's text with the values of "password" and "salt" blanked.
fn without_secrets(text: &str) -> String {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("\"password\":") || t.starts_with("\"salt\":") {
                let key = t.split(':').next().unwrap_or_default();
                format!("{}{key}:\t\"-\",", &l[..l.len() - t.len()])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn init_writes_mosquittos_file_and_both_brokers_load_it() {
    require_tools();
    let dir = Scratch::new("ctrl-init");
    let ours = dir.path("ours.json");
    let theirs = dir.path("theirs.json");
    let a = as_midge(run_tool(
        MOSQUITTO_CTRL,
        &["dynsec", "init", &theirs, "boss", "bosspw"],
        b"",
        &dir.0,
    ));
    let b = run_tool(
        MIDGE_CTRL,
        &["dynsec", "init", &ours, "boss", "bosspw"],
        b"",
        &dir.0,
    );
    assert_eq!(b.stdout, a.stdout.replace(&theirs, &ours));
    assert_eq!((b.code, b.stderr.as_str()), (Some(0), ""));
    let a_text = fs::read_to_string(&theirs).unwrap();
    let b_text = fs::read_to_string(&ours).unwrap();
    assert_eq!(without_secrets(&b_text), without_secrets(&a_text));
    assert_ne!(b_text, a_text, "salts must be random");
    // The admin can log in with the hash midge_ctrl wrote, on both brokers.
    for kind in [Kind::Midge, Kind::Mosquitto] {
        let copy = dir.path(&format!("{kind:?}.json"));
        fs::copy(&ours, &copy).unwrap();
        let broker = dynsec_broker(kind, &copy, "");
        let p = broker.port.to_string();
        let args = [
            "-p",
            &p,
            "-u",
            "boss",
            "-P",
            "bosspw",
            "dynsec",
            "listClients",
        ];
        let r = run_tool(MIDGE_CTRL, &args, b"", &dir.0);
        assert_eq!((r.code, r.stdout.as_str()), (Some(0), "boss\n"), "{kind:?}");
        let r = as_midge(run_tool(MOSQUITTO_CTRL, &args, b"", &dir.0));
        assert_eq!((r.code, r.stdout.as_str()), (Some(0), "boss\n"), "{kind:?}");
        let args = [
            "-p",
            &p,
            "-u",
            "boss",
            "-P",
            "wrong",
            "dynsec",
            "listClients",
        ];
        let r = same(&args, b"", &dir.0);
        assert_eq!(r.code, Some(0));
        assert!(
            r.stderr.ends_with("Connection error: Not authorized\n"),
            "{r:?}"
        );
    }
    // An existing file is never overwritten, and both tools say so alike.
    let before = fs::read(&ours).unwrap();
    let r = same(&["dynsec", "init", &ours, "x", "y"], b"", &dir.0);
    assert_eq!(r.code, Some(0));
    assert!(r.stderr.contains("already exists"), "{r:?}");
    assert_eq!(fs::read(&ours).unwrap(), before);
    // Prompted password, then a mismatch.
    let prompted = dir.path("prompted.json");
    let r = run_tool(
        MIDGE_CTRL,
        &["dynsec", "init", &prompted, "boss"],
        b"pw\npw\n",
        &dir.0,
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r
        .stdout
        .starts_with("New password for boss: \nReenter password for boss: \nThe client 'boss'"));
    let r = same(
        &["dynsec", "init", &dir.path("never.json"), "boss"],
        b"a\nb\n",
        &dir.0,
    );
    assert_eq!(r.stderr, "Error: Passwords do not match.\n");
    assert!(!Path::new(&dir.path("never.json")).exists());
}

#[test]
fn bad_input_reads_like_mosquitto_ctrl() {
    require_tools();
    let dir = Scratch::new("ctrl-bad");
    let file = init_file(&dir, "ds.json");
    let broker = dynsec_broker(Kind::Midge, &file, "");
    let p = broker.port.to_string();
    let closed = free_port().to_string();
    let cases: &[(&[&str], Option<i32>)] = &[
        (&[], Some(1)),
        (&["dynsec"], Some(1)),
        (&["--help"], Some(1)),
        (
            &[
                "-p",
                &p,
                "-u",
                "admin",
                "-P",
                "wrong",
                "dynsec",
                "listClients",
            ],
            Some(0),
        ),
        (
            &[
                "-V",
                "311",
                "-p",
                &p,
                "-u",
                "admin",
                "-P",
                "wrong",
                "dynsec",
                "listClients",
            ],
            Some(0),
        ),
        (
            &["-p", &p, "-u", "admin", "-P", "adminpw", "dynsec", "bogus"],
            Some(13),
        ),
        (
            &[
                "-p",
                &p,
                "-u",
                "admin",
                "-P",
                "adminpw",
                "dynsec",
                "getClient",
            ],
            Some(3),
        ),
        (
            &[
                "-p",
                &p,
                "-u",
                "admin",
                "-P",
                "adminpw",
                "bogus",
                "listClients",
            ],
            Some(10),
        ),
        (&["-p", &p, "--bogus", "dynsec", "listClients"], Some(10)),
        (&["-p", "70000", "dynsec", "listClients"], Some(10)),
        (&["-q", "3", "dynsec", "listClients"], Some(10)),
        (&["-V", "6", "dynsec", "listClients"], Some(10)),
        (&["-p"], Some(1)),
        (&["-p", &closed, "dynsec", "listClients"], Some(14)),
        (
            &["-h", "no-such-host.invalid", "dynsec", "listClients"],
            Some(15),
        ),
        (
            &[
                "--cafile",
                "/no/such/ca.crt",
                "-p",
                &p,
                "dynsec",
                "listClients",
            ],
            Some(1),
        ),
        (
            &["-L", "mqtt://localhost", "dynsec", "listClients"],
            Some(10),
        ),
        (&["-p", &p, "-u", "admin", "dynsec", "listClients"], Some(1)),
        // A certificate without a key: said, then no default host.
        (
            &["--cert", "c.pem", "-p", &p, "dynsec", "listClients"],
            Some(3),
        ),
        (
            &[
                "--cert",
                "c.pem",
                "-h",
                "127.0.0.1",
                "-p",
                &p,
                "-u",
                "admin",
                "-P",
                "adminpw",
                "dynsec",
                "listClients",
            ],
            Some(0),
        ),
        (
            &["--keyform", "pem", "-p", &p, "dynsec", "listClients"],
            Some(3),
        ),
        // An anonymous client may not subscribe to the response topic.
        (&["-p", &p, "dynsec", "listClients"], Some(0)),
    ];
    for (args, code) in cases {
        let r = same(args, b"", &dir.0);
        assert_eq!(r.code, *code, "{args:?}: {r:?}");
    }
    // Prompts: a password typed twice differently, an empty one.
    let base = ["-p", &p, "-u", "admin", "-P", "adminpw", "dynsec"];
    let with =
        |cmd: &[&str]| -> Vec<String> { base.iter().chain(cmd).map(|s| s.to_string()).collect() };
    same(&refs(&with(&["createClient", "eve"])), b"a\nb\n", &dir.0);
    same(&refs(&with(&["setClientPassword", "admin"])), b"", &dir.0);
    same(
        &refs(&with(&["setClientPassword", "admin"])),
        b"a\nb\n",
        &dir.0,
    );
    same(
        &["-p", &p, "-u", "admin", "dynsec", "listClients"],
        b"adminpw\n",
        &dir.0,
    );
}

#[test]
fn options_file() {
    require_tools();
    let dir = Scratch::new("ctrl-options");
    let file = init_file(&dir, "ds.json");
    let broker = dynsec_broker(Kind::Midge, &file, "");
    let opts = format!(
        "# midge_ctrl options\n-p {}\n-u admin\n-P adminpw\n",
        broker.port
    );
    // The default file: $XDG_CONFIG_HOME/<tool name>, for both tools.
    let home = Scratch::new("ctrl-home");
    fs::write(home.path("midge_ctrl"), &opts).unwrap();
    fs::write(home.path("mosquitto_ctrl"), &opts).unwrap();
    let r = same(&["dynsec", "listClients"], b"", &home.0);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), "admin\n"));
    // The command line overrides the file.
    let r = same(&["-P", "wrong", "dynsec", "listClients"], b"", &home.0);
    assert!(r.stderr.ends_with("Connection error: Not authorized\n"));
    // -o (mosquitto_ctrl 2.0.11 ignores it, so midge_ctrl alone).
    let explicit = dir.path("ctrl.opts");
    fs::write(&explicit, &opts).unwrap();
    let r = run_tool(
        MIDGE_CTRL,
        &["-o", &explicit, "dynsec", "listClients"],
        b"",
        &dir.0,
    );
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), "admin\n"), "{r:?}");
    let r = run_tool(
        MIDGE_CTRL,
        &["-o", &explicit, "-u", "nobody", "dynsec", "listClients"],
        b"",
        &dir.0,
    );
    assert!(
        r.stderr.ends_with("Connection error: Not authorized\n"),
        "{r:?}"
    );
    let missing = dir.path("missing.opts");
    let r = run_tool(
        MIDGE_CTRL,
        &["-o", &missing, "dynsec", "listClients"],
        b"",
        &dir.0,
    );
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        format!("Error: Unable to open options file \"{missing}\": No such file or directory.\n")
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("openssl is needed for the TLS test: {e}"))
        .success();
    assert!(ok, "openssl {args:?} failed");
}

/// ca.crt, server.crt/key for localhost and 127.0.0.1 signed by it, and
/// other.crt, an unrelated CA.
fn make_ca(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut req = vec!["req", "-x509"];
    req.extend(ec);
    req.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "30",
        "-subj",
        "/CN=midge ctrl CA",
    ]);
    openssl(dir, &req);
    let mut req = vec!["req", "-x509"];
    req.extend(ec);
    req.extend([
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
        "-days",
        "30",
        "-subj",
        "/CN=another CA",
    ]);
    openssl(dir, &req);
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let mut req = vec!["req", "-new"];
    req.extend(ec);
    req.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &req);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "7",
            "-days",
            "30",
            "-out",
            "server.crt",
            "-extfile",
            "server.ext",
        ],
    );
}

fn tls_matches(kind: Kind) {
    require_tools();
    let dir = Scratch::new("ctrl-tls");
    make_ca(&dir.0);
    let file = init_file(&dir, "ds.json");
    let tls_port = free_port();
    let broker = dynsec_broker(
        kind,
        &file,
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            dir.path("ca.crt"),
            dir.path("server.crt"),
            dir.path("server.key")
        ),
    );
    let p = tls_port.to_string();
    let ca = dir.path("ca.crt");
    let base = [
        "--cafile",
        &ca,
        "-h",
        "localhost",
        "-p",
        &p,
        "-u",
        "admin",
        "-P",
        "adminpw",
        "dynsec",
    ];
    let with =
        |cmd: &[&str]| -> Vec<String> { base.iter().chain(cmd).map(|s| s.to_string()).collect() };
    let r = same(&refs(&with(&["listClients"])), b"", &dir.0);
    // No "without encryption" warning over TLS.
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (Some(0), "admin\n", "")
    );
    let r = run_tool(
        MIDGE_CTRL,
        &refs(&with(&["createRole", "tls"])),
        b"",
        &dir.0,
    );
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (Some(0), "", "")
    );
    let r = as_midge(run_tool(
        MOSQUITTO_CTRL,
        &refs(&with(&["createRole", "tls"])),
        b"",
        &dir.0,
    ));
    assert_eq!(r.stderr, "createRole: Error: Role already exists\n");
    let r = same(&refs(&with(&["getRole", "tls"])), b"", &dir.0);
    assert_eq!(r.stdout, "Rolename: tls\n");
    // A server certificate from a CA we do not trust: refused during the
    // connect. (mosquitto_ctrl usually says the same; when the server's
    // answer is slow to arrive it notices only in its loop and stays
    // silent, so only midge_ctrl's answer is pinned here.)
    let other = dir.path("other.crt");
    let args = [
        "--cafile",
        &other,
        "-h",
        "127.0.0.1",
        "-p",
        &p,
        "dynsec",
        "listClients",
    ];
    let r = run_tool(MIDGE_CTRL, &args, b"", &dir.0);
    let refused = Outcome {
        code: Some(8),
        stdout: String::new(),
        stderr: "Unable to connect (A TLS error occurred.).\n".into(),
    };
    assert_eq!(r, refused);
    let theirs = as_midge(run_tool(MOSQUITTO_CTRL, &args, b"", &dir.0));
    let silent = Outcome {
        code: Some(0),
        stdout: String::new(),
        stderr: String::new(),
    };
    assert!(theirs == refused || theirs == silent, "{theirs:?}");
    // TLS to the plain listener: the server hangs up, nothing is printed.
    let plain = broker.port.to_string();
    let args = [
        "--cafile",
        &ca,
        "-h",
        "127.0.0.1",
        "-p",
        &plain,
        "dynsec",
        "listClients",
    ];
    let r = run_tool(MIDGE_CTRL, &args, b"", &dir.0);
    assert_eq!(r, silent);
    drop(broker);
}

#[test]
fn tls_with_cafile_against_midge() {
    tls_matches(Kind::Midge);
}

#[test]
fn tls_with_cafile_against_mosquitto() {
    tls_matches(Kind::Mosquitto);
}

// ---------------------------------------------------------------------------------------------
// A fake broker: records the request, answers with a chosen reply.
// ---------------------------------------------------------------------------------------------

/// What the fake broker does after CONNECT.
#[derive(Clone)]
struct Script {
    /// SUBACK's granted QoS / reason code.
    suback: u8,
    /// PUBACK reason code (v5).
    puback: u8,
    /// The reply published to the response topic; None: never answer.
    reply: Option<Vec<u8>>,
}

fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 1];
    s.read_exact(&mut h).ok()?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).ok()?;
        len |= usize::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some((h[0], body))
}

/// Serves one connection of a tool; returns the request payload it
/// published (empty if none).
fn fake_broker(listener: TcpListener, script: Script) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return Vec::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
        let mut v5 = true;
        let mut request = Vec::new();
        while let Some((header, body)) = read_packet(&mut s) {
            match header >> 4 {
                1 => {
                    v5 = body.get(6) == Some(&5);
                    let ack: &[u8] = if v5 {
                        &[0x20, 3, 0, 0, 0]
                    } else {
                        &[0x20, 2, 0, 0]
                    };
                    let _ = s.write_all(ack);
                }
                8 => {
                    let (a, b) = (body[0], body[1]);
                    let ack = if v5 {
                        vec![0x90, 4, a, b, 0, script.suback]
                    } else {
                        vec![0x90, 3, a, b, script.suback]
                    };
                    let _ = s.write_all(&ack);
                }
                3 => {
                    let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
                    let mut at = 2 + tlen;
                    let qos = (header >> 1) & 3;
                    let pid = if qos > 0 {
                        let p = [body[at], body[at + 1]];
                        at += 2;
                        Some(p)
                    } else {
                        None
                    };
                    if v5 {
                        at += 1 + usize::from(body[at]); // short property lengths only
                    }
                    request = body[at..].to_vec();
                    if let Some([a, b]) = pid {
                        let ack = if v5 {
                            vec![0x40, 4, a, b, script.puback, 0]
                        } else {
                            vec![0x40, 2, a, b]
                        };
                        let _ = s.write_all(&ack);
                    }
                    if let Some(reply) = &script.reply {
                        let topic = b"$CONTROL/dynamic-security/v1/response";
                        let mut p = Vec::new();
                        p.extend_from_slice(&(topic.len() as u16).to_be_bytes());
                        p.extend_from_slice(topic);
                        if v5 {
                            p.push(0);
                        }
                        p.extend_from_slice(reply);
                        let _ = s.write_all(&frame(0x30, &p));
                    }
                }
                14 => break,
                _ => {}
            }
        }
        request
    })
}

/// Runs both tools against the fake broker with `script`: the same
/// output, exit code and request bytes. Returns the request.
fn against_fake(args: &[&str], script: &Script, home: &Path) -> (Outcome, Vec<u8>) {
    let mut results = Vec::new();
    for tool in [MOSQUITTO_CTRL, MIDGE_CTRL] {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake broker");
        let addr = listener.local_addr().unwrap();
        let port = addr.port().to_string();
        let server = fake_broker(listener, script.clone());
        let mut full = vec!["-p", &port];
        full.extend_from_slice(args);
        let r = as_midge(run_tool(tool, &full, b"", home));
        // When the tool never connected, this ends the fake's accept.
        drop(TcpStream::connect_timeout(&addr, Duration::from_secs(2)));
        let request = server.join().unwrap_or_default();
        results.push((r, request));
    }
    let ours = results.pop().unwrap();
    let theirs = results.pop().unwrap();
    assert_eq!(ours.0, theirs.0, "output for {args:?}");
    assert_eq!(
        String::from_utf8_lossy(&ours.1),
        String::from_utf8_lossy(&theirs.1),
        "request for {args:?}"
    );
    ours
}

#[test]
fn requests_are_byte_identical() {
    require_tools();
    let home = Scratch::new("ctrl-fake");
    let ok = Script {
        suback: 1,
        puback: 0,
        reply: Some(br#"{"responses":[{"command":"x"}]}"#.to_vec()),
    };
    for step in SCRIPT.iter().filter(|s| s[0] != "help") {
        let mut args = vec!["dynsec"];
        args.extend_from_slice(step);
        against_fake(&args, &ok, &home.0);
    }
    for step in [
        &["LISTCLIENTS", "3", "-1"][..],
        &["addGroupClient", "g", "u", "-1"],
        &["removeGroupRole", "g", "r", "0"],
        &["createClient", "c\"q\\n\t", "-p", "\u{7f}é", "-x"],
        &["setAnonymousGroup", "g", "extra"],
    ] {
        let mut args = vec!["dynsec"];
        args.extend_from_slice(step);
        against_fake(&args, &ok, &home.0);
    }
    let (r, request) = against_fake(&["dynsec", "getClient", "bob"], &ok, &home.0);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
    assert_eq!(
        String::from_utf8_lossy(&request),
        r#"{"commands":[{"command":"getClient","username":"bob"}]}"#
    );
    let (r, request) = against_fake(&["dynsec", "getClient"], &ok, &home.0);
    assert_eq!(r.code, Some(3));
    assert!(request.is_empty());
    // QoS 0 and MQTT 3.1.1.
    against_fake(
        &["-q", "0", "-V", "311", "dynsec", "getClient", "a"],
        &ok,
        &home.0,
    );
}

#[test]
fn malformed_replies_and_refusals_print_like_mosquitto_ctrl() {
    require_tools();
    let home = Scratch::new("ctrl-replies");
    let reply = |r: &str| Script {
        suback: 1,
        puback: 0,
        reply: Some(r.as_bytes().to_vec()),
    };
    let cases: &[(&str, &str)] = &[
        ("getClient", "not json"),
        ("getClient", "{}"),
        ("getClient", r#"{"responses":{}}"#),
        ("getClient", r#"{"responses":[]}"#),
        ("getClient", r#"{"responses":[{"data":{}}]}"#),
        (
            "getClient",
            r#"{"responses":[{"command":"getClient","error":"Boom"}]}"#,
        ),
        ("getClient", r#"{"responses":[{"command":"getClient"}]}"#),
        (
            "getClient",
            r#"{"responses":[{"command":"getClient","data":{"client":{}}}]}"#,
        ),
        (
            "getClient",
            r#"{"responses":[{"command":"getclient","data":{"client":{"username":"u","clientid":5,"disabled":false,"roles":[{"rolename":"r"},{"x":1},"s",{"rolename":"q","priority":2.9}],"groups":{}}}}]}"#,
        ),
        (
            "getGroup",
            r#"{"responses":[{"command":"getGroup","data":{"group":{"groupname":"g","roles":7,"clients":[{"username":"a"},{"username":3},{"username":"b"}]}}}]}"#,
        ),
        (
            "getRole",
            r#"{"responses":[{"command":"getRole","data":{"role":{"rolename":"r","acls":[{"acltype":"publishClientSend"},{"acltype":"subscribePattern","allow":false,"topic":"t","priority":-7},{"topic":"no type"}]}}}]}"#,
        ),
        (
            "listRoles",
            r#"{"responses":[{"command":"listRoles","data":{"roles":[{"rolename":"a"},"b",3,{"name":"c"}]}}]} trailing"#,
        ),
        (
            "listGroups",
            r#"{"responses":[{"command":"listGroups","data":[]}]}"#,
        ),
        (
            "getDefaultACLAccess",
            r#"{"responses":[{"command":"getDefaultACLAccess","data":{"acls":[{"acltype":"subscribe","allow":true},{"acltype":"unsubscribe"}]}}]}"#,
        ),
        (
            "getAnonymousGroup",
            r#"{"responses":[{"command":"getAnonymousGroup","data":{"group":{"groupname":""}}}]}"#,
        ),
        (
            "getAnonymousGroup",
            r#"{"responses":[{"command":"getAnonymousGroup","data":{}}]}"#,
        ),
        (
            "listClients",
            r#"{"responses":[{"command":"createClient"},{"command":"listClients","data":{"clients":["x"]}}]}"#,
        ),
    ];
    let (r, _) = against_fake(&["dynsec", "getClient", "a"], &reply("not json"), &home.0);
    assert!(
        r.stderr.ends_with("\n\nError: Payload not JSON.\n"),
        "{r:?}"
    );
    for (cmd, payload) in cases {
        let args = ["dynsec", cmd, "a"];
        let n = if cmd.starts_with("list")
            || cmd.starts_with("getDefault")
            || cmd.starts_with("getAnon")
        {
            2
        } else {
            3
        };
        against_fake(&args[..n], &reply(payload), &home.0);
    }
    // A refused subscription (v5 and 3.1.1) and a refused publish.
    let refuse_sub = Script {
        suback: 0x87,
        puback: 0,
        reply: None,
    };
    against_fake(&["dynsec", "listClients"], &refuse_sub, &home.0);
    let refuse_sub3 = Script {
        suback: 0x80,
        ..refuse_sub
    };
    against_fake(
        &["-V", "311", "dynsec", "listClients"],
        &refuse_sub3,
        &home.0,
    );
    let refuse_pub = Script {
        suback: 1,
        puback: 0x87,
        reply: None,
    };
    let (r, _) = against_fake(&["dynsec", "listClients"], &refuse_pub, &home.0);
    assert!(
        r.stderr.ends_with("Publish error: Not authorized\n"),
        "{r:?}"
    );
}

/// The one deliberate difference in what is sent: mosquitto_ctrl 2.0.11's
/// `setDefaultACLAccess` request has no effect on either broker; midge_ctrl's
/// does.
#[test]
fn set_default_acl_access_takes_effect() {
    require_tools();
    let dir = Scratch::new("ctrl-default-acl");
    let file = init_file(&dir, "ds.json");
    for kind in [Kind::Midge, Kind::Mosquitto] {
        let copy = dir.path(&format!("{kind:?}.json"));
        fs::copy(&file, &copy).unwrap();
        let broker = dynsec_broker(kind, &copy, "");
        let get = admin(broker.port, &["getDefaultACLAccess"]);
        let set = admin(broker.port, &["setDefaultACLAccess", "subscribe", "allow"]);
        let before = run_tool(MIDGE_CTRL, &refs(&get), b"", &dir.0);
        assert!(
            before.stdout.contains("subscribe            : deny\n"),
            "{before:?}"
        );
        run_tool(MOSQUITTO_CTRL, &refs(&set), b"", &dir.0);
        let r = run_tool(MIDGE_CTRL, &refs(&get), b"", &dir.0);
        assert_eq!(
            r.stdout, before.stdout,
            "{kind:?}: mosquitto_ctrl 2.0.11 changed it"
        );
        let r = run_tool(MIDGE_CTRL, &refs(&set), b"", &dir.0);
        assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""));
        let r = same(&refs(&get), b"", &dir.0);
        assert!(
            r.stdout.contains("subscribe            : allow\n"),
            "{kind:?}: {r:?}"
        );
    }
}

/// No reply (a broker without the plugin): both tools give up after ten
/// seconds, print nothing more and exit 0. Both run at once to keep the
/// suite short.
#[test]
fn no_reply_gives_up_quietly_after_ten_seconds() {
    require_tools();
    let home = Scratch::new("ctrl-silent");
    let silent = Script {
        suback: 1,
        puback: 0,
        reply: None,
    };
    let runs: Vec<_> = [MOSQUITTO_CTRL, MIDGE_CTRL]
        .into_iter()
        .map(|tool| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake broker");
            let port = listener.local_addr().unwrap().port().to_string();
            let server = fake_broker(listener, silent.clone());
            let home = home.0.clone();
            let tool_run = thread::spawn(move || {
                let started = Instant::now();
                let r = run_tool(tool, &["-p", &port, "dynsec", "listClients"], b"", &home);
                (as_midge(r), started.elapsed())
            });
            (tool_run, server)
        })
        .collect();
    let mut results = Vec::new();
    for (tool_run, server) in runs {
        let (r, took) = tool_run.join().expect("tool thread");
        let request = server.join().unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&request),
            r#"{"commands":[{"command":"listClients"}]}"#
        );
        assert!(took >= Duration::from_secs(8), "gave up after {took:?}");
        results.push(r);
    }
    assert_eq!(results[1], results[0]);
    assert_eq!(results[1].code, Some(0));
    assert_eq!(results[1].stdout, "");
}

/// `-L mqtt://user:password@host:port/topic` and `--unix`, both brokers.
#[test]
fn url_and_unix_socket() {
    require_tools();
    let dir = Scratch::new("ctrl-url");
    let file = init_file(&dir, "ds.json");
    for kind in [Kind::Midge, Kind::Mosquitto] {
        let copy = dir.path(&format!("{kind:?}.json"));
        fs::copy(&file, &copy).unwrap();
        let sock = dir.path(&format!("{kind:?}.sock"));
        let broker = dynsec_broker(kind, &copy, &format!("listener 0 {sock}\n"));
        let url = format!("mqtt://admin:adminpw@127.0.0.1:{}/ignored", broker.port);
        let r = same(&["-L", &url, "dynsec", "getClient", "admin"], b"", &dir.0);
        assert!(r.stdout.starts_with("Username: admin\n"), "{kind:?}: {r:?}");
        let args = [
            "--unix",
            &sock,
            "-u",
            "admin",
            "-P",
            "adminpw",
            "dynsec",
            "listClients",
        ];
        let r = same(&args, b"", &dir.0);
        assert_eq!(r.stdout, "admin\n", "{kind:?}: {r:?}");
        let wrong = format!("mqtt://admin:nope@127.0.0.1:{}/t", broker.port);
        let r = same(&["-L", &wrong, "dynsec", "listClients"], b"", &dir.0);
        assert!(
            r.stderr.ends_with("Connection error: Not authorized\n"),
            "{r:?}"
        );
    }
}
