//! Unit tests for option parsing. The full comparison against the real
//! mosquitto_pub/sub/rr error messages runs in tests/clients.rs.

use super::*;

fn args(a: &[&str]) -> Vec<Vec<u8>> {
    a.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn load_ok(tool: Tool, a: &[&str]) -> Config {
    // Keep the user's ~/.config files out of the tests.
    match load_with_file(tool, &args(a)) {
        Ok(c) => c,
        Err(e) => panic!("{a:?}: {e:?}"),
    }
}

fn load_with_file(tool: Tool, a: &[Vec<u8>]) -> Result<Config, ParseError> {
    let mut full = a.to_vec();
    if !full.iter().any(|x| x == b"-o") {
        full.push(b"-o".to_vec());
        full.push(b"/dev/null".to_vec());
    }
    load(tool, &full)
}

fn usage_err(tool: Tool, a: &[&str]) -> String {
    match load_with_file(tool, &args(a)) {
        Err(ParseError::Usage(s)) => s,
        other => panic!("{a:?}: {other:?}"),
    }
}

#[test]
fn defaults_per_tool() {
    let p = load_ok(Tool::Pub, &["-t", "a", "-m", "x"]);
    assert_eq!(p.protocol, ProtocolVersion::V311);
    assert_eq!(p.keepalive, 60);
    assert_eq!(p.host, "localhost");
    assert_eq!(p.effective_port(), 1883);
    assert_eq!(p.pub_mode, PubMode::Cmd);
    assert_eq!(p.message, b"x");
    let r = load_ok(Tool::Rr, &["-t", "a", "-e", "b", "-m", "x"]);
    assert_eq!(r.protocol, ProtocolVersion::V5);
    assert_eq!(r.msg_count, 1);
    let s = load_ok(Tool::Sub, &["-t", "a/+", "-t", "b/#", "-q", "2", "-R"]);
    assert_eq!(s.topics, ["a/+", "b/#"]);
    assert_eq!(s.qos | s.sub_opts, 0x22);
}

#[test]
fn urls() {
    let c = load_ok(
        Tool::Pub,
        &["-L", "mqtt://u:p@example.org:1999/a/b", "-m", "x"],
    );
    assert_eq!(c.host, "example.org");
    assert_eq!(c.port, Some(1999));
    assert_eq!(c.username.as_deref(), Some(&b"u"[..]));
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
    assert_eq!(c.topic.as_deref(), Some("a/b"));
    let c = load_ok(Tool::Sub, &["-L", "MQTTS://host/t/#"]);
    assert_eq!((c.port, c.tls_use_os_certs), (Some(8883), true));
    assert_eq!(c.topics, ["t/#"]);
    let c = load_ok(Tool::Pub, &["-L", "ws://h:9001/t", "-n"]);
    assert!(c.websocket && !c.uses_tls());
    assert_eq!(c.port, Some(9001));
    let c = load_ok(Tool::Pub, &["-L", "wss://h/t", "-n"]);
    assert!(c.websocket && c.uses_tls());
    assert_eq!(c.port, Some(443));
    assert_eq!(
        usage_err(Tool::Pub, &["-L", "http://h/t"]),
        "Error: unsupported URL scheme.\n\n"
    );
    assert_eq!(
        usage_err(Tool::Pub, &["-L", "mqtt://h"]),
        "Error: Invalid URL for -L argument specified - topic missing.\n"
    );
}

#[test]
fn session_expiry() {
    let c = load_ok(Tool::Pub, &["-t", "a", "-n", "-V", "5", "-x", "0x10"]);
    assert_eq!(c.session_expiry_interval, 16);
    assert!(c
        .connect_props
        .has(crate::protocol::properties::id::SESSION_EXPIRY_INTERVAL));
    let c = load_ok(Tool::Pub, &["-t", "a", "-n", "-x", "010"]);
    assert_eq!(c.session_expiry_interval, 8);
    // v3: -x is accepted and ignored.
    assert!(c.connect_props.is_empty());
    let c = load_ok(
        Tool::Pub,
        &["-t", "a", "-n", "-V", "5", "-x", "∞", "-i", "me"],
    );
    assert_eq!(c.session_expiry_interval, i64::from(u32::MAX));
    let c = load_ok(Tool::Pub, &["-t", "a", "-n", "-x", "-1"]);
    assert_eq!(c.session_expiry_interval, i64::from(u32::MAX));
    assert_eq!(
        usage_err(Tool::Pub, &["-t", "a", "-n", "-x", "1x"]),
        "Error: session-expiry-interval not a number.\n\n"
    );
    assert_eq!(
        usage_err(Tool::Pub, &["-t", "a", "-n", "-V", "5", "-c"]),
        "Error: You must provide a client id if you are using an infinite session expiry interval.\n"
    );
}

#[test]
fn properties_switch_to_v5_and_land_in_their_lists() {
    let c = load_ok(
        Tool::Sub,
        &[
            "-t",
            "a",
            "-V",
            "311",
            "-D",
            "subscribe",
            "subscription-identifier",
            "7",
            "-D",
            "connect",
            "user-property",
            "k",
            "v",
            "-D",
            "will",
            "will-delay-interval",
            "3",
            "--will-topic",
            "w",
        ],
    );
    assert_eq!(c.protocol, ProtocolVersion::V5);
    assert_eq!(c.subscribe_props.encode(), [0x0B, 7]);
    assert_eq!(c.connect_props.encode(), [0x26, 0, 1, b'k', 0, 1, b'v']);
    assert_eq!(c.will_props.encode(), [0x18, 0, 0, 0, 3]);
    let p = load_ok(
        Tool::Pub,
        &["-t", "a", "-n", "-D", "publish", "topic-alias", "2"],
    );
    assert!(p.have_topic_alias);
}

#[test]
fn flags_belong_to_their_tools() {
    for (tool, flag) in [
        (Tool::Pub, "-v"),
        (Tool::Pub, "-C"),
        (Tool::Pub, "-W"),
        (Tool::Sub, "-m"),
        (Tool::Sub, "-r"),
        (Tool::Sub, "-e"),
        (Tool::Rr, "-C"),
        (Tool::Rr, "-l"),
        (Tool::Rr, "-T"),
    ] {
        assert_eq!(
            usage_err(tool, &[flag, "1"]),
            format!("Error: Unknown option '{flag}'.\n"),
            "{tool:?} {flag}"
        );
    }
}

#[test]
fn bytes_arguments() {
    // A non-UTF-8 payload is fine; a non-UTF-8 topic is not.
    let c = match load_with_file(
        Tool::Pub,
        &[b"-t".to_vec(), b"a".to_vec(), b"-m".to_vec(), vec![0xFF, 0]],
    ) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(c.message, [0xFF, 0]);
    let e = load_with_file(Tool::Pub, &[b"-t".to_vec(), vec![b'a', 0xFF]]);
    assert_eq!(
        e.err(),
        Some(ParseError::Usage(
            "Error: Malformed UTF-8 in -t argument.\n\n".into()
        ))
    );
}

#[test]
fn topic_and_utf8_rules_match_mosquitto() {
    for ok in ["a", "", "a/b/c", "$SYS/x", "a b"] {
        assert!(pub_topic_ok(ok), "{ok}");
    }
    for bad in ["a/+", "#", "a/#/b", "+"] {
        assert!(!pub_topic_ok(bad), "{bad}");
    }
    for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/", "", "$share/g/a/#"] {
        assert!(sub_topic_ok(ok), "{ok}");
    }
    for bad in ["a#", "a/#/b", "a+", "+a", "a/b#", "##"] {
        assert!(!sub_topic_ok(bad), "{bad}");
    }
    assert!(valid_utf8_mosquitto("héllo 😀"));
    assert!(!valid_utf8_mosquitto("a\tb"));
    assert!(!valid_utf8_mosquitto("a\u{85}"));
    assert!(!valid_utf8_mosquitto("a\u{FFFF}"));
    assert!(!valid_utf8_mosquitto("a\u{FDD0}"));
    assert!(!valid_utf8_mosquitto("a\u{7F}"));
}

#[test]
fn options_file() {
    let lines = options_file_lines(b"# comment\n-t a/b\n  -q 1\n-m  two words here\r\n\n-d\n");
    assert_eq!(
        lines,
        vec![
            args(&["-t", "a/b"]),
            args(&["-q", "1"]),
            args(&["-m", "two words here"]),
            args(&["-d"]),
        ]
    );
    let dir = std::env::temp_dir().join(format!("midge-opts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("opts");
    std::fs::write(&f, "-t from/file\n-q 2\n").unwrap();
    let fs = f.to_string_lossy().to_string();
    // The command line comes after the file, so it wins.
    let c = load(Tool::Pub, &args(&["-o", &fs, "-m", "x", "-q", "1"])).unwrap();
    assert_eq!(c.topic.as_deref(), Some("from/file"));
    assert_eq!(c.qos, 1);
    assert_eq!(
        load(Tool::Pub, &args(&["-o", &fs, "-o", &fs])).err(),
        Some(ParseError::Usage(
            "Error: Duplicate -o argument given.\n\n".into()
        ))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_and_version() {
    assert_eq!(
        load_with_file(Tool::Sub, &args(&["--help"])).err(),
        Some(ParseError::Help)
    );
    assert_eq!(
        load_with_file(Tool::Rr, &args(&["--version"])).err(),
        Some(ParseError::Version)
    );
}

#[test]
fn random_argument_lists_never_panic() {
    let words = [
        "-t",
        "-m",
        "-q",
        "-D",
        "publish",
        "user-property",
        "-L",
        "mqtt://h/t",
        "-x",
        "∞",
        "-F",
        "%j",
        "-C",
        "0",
        "-W",
        "5",
        "-p",
        "-1",
        "-V",
        "5",
        "-k",
        "-e",
        "--will-topic",
        "a/#",
        "-T",
        "-U",
        "-i",
        "-I",
        "-c",
        "-o",
        "",
        "%",
        "@",
    ];
    let mut x: u64 = 4242;
    for _ in 0..3000 {
        let n = (x % 8) as usize;
        let mut a = Vec::new();
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            a.push(words[(x % words.len() as u64) as usize].as_bytes().to_vec());
        }
        for tool in [Tool::Pub, Tool::Sub, Tool::Rr] {
            let _ = load_with_file(tool, &a);
        }
    }
}
