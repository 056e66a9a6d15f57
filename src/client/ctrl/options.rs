//! ctrl::options: midge_ctrl's connection options, parsed the way
//! mosquitto_ctrl 2.0.11 parses them, into the `options::Config` the other
//! tools use (so connecting, TLS and the session are shared with them).
//!
//! Owns: the flags mosquitto_ctrl accepts before the module name, their
//! error texts, the options file (`-o`, else `$XDG_CONFIG_HOME/midge_ctrl`
//! or `~/.config/midge_ctrl`) and mosquitto_ctrl's odd way of carrying on
//! after most parse errors (see `CommandLine::rest`).
//!
//! Must not: open connections, prompt, or print: messages are returned in
//! `CommandLine::errors` for the caller to print.
//!
//! Differences from mosquitto_ctrl 2.0.11, on purpose:
//! - `-o file` is read (2.0.11 parses the flag but never reads the file;
//!   later releases do). Its options come first and the command line
//!   overrides them, as the manual says; a file that cannot be read is an
//!   error instead of being ignored.
//! - Options midge cannot honour (`--psk`, `--psk-identity`, `--proxy`,
//!   `--tls-engine`, `--tls-engine-kpass-sha1`, `--keyform engine`) stop the
//!   tool with exit code 1 and a message saying why, and so does a
//!   `--keyform` other than `pem`/`engine` (Mosquitto finds that out only
//!   when it connects).

use super::super::options::{Config, Tool};
use super::super::props::atoi;
use crate::protocol::ProtocolVersion;

/// The command line after option parsing.
#[derive(Debug)]
pub struct CommandLine {
    pub cfg: Config,
    /// What mosquitto_ctrl's `main` goes on with: the module name and its
    /// arguments. After a parse error mosquitto_ctrl keeps its original
    /// argument list, shortened by the arguments already used, so the
    /// module name it then sees is usually the first option; this keeps
    /// that behaviour (and its "Module '-p' not supported" message).
    pub rest: Vec<Vec<u8>>,
    /// What mosquitto_ctrl printed on stderr while parsing.
    pub errors: String,
    /// Stop now with this exit code (options midge cannot honour).
    pub fatal: Option<i32>,
}

/// Why `line_proc` stopped early.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Print this; mosquitto_ctrl carries on.
    Error(String),
    /// `--help` / `--version`: mosquitto_ctrl just stops parsing.
    Quiet,
    /// Print this and exit 1 (a feature midge does not offer).
    Unsupported(String),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `-L mqtt://[user[:password]@]host[:port]/topic` (the topic is required
/// and ignored). `mqtts://` only changes the default port: mosquitto_ctrl
/// turns TLS on only for `--cafile`/`--capath`.
fn parse_url(cfg: &mut Config, url: &[u8]) -> Result<(), Stop> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with(b"mqtt://") {
        cfg.port = Some(1883);
        url.get(7..).unwrap_or_default()
    } else if lower.starts_with(b"mqtts://") {
        cfg.port = Some(8883);
        url.get(8..).unwrap_or_default()
    } else {
        return Err(Stop::Error("Error: unsupported URL scheme.\n\n".into()));
    };
    let Some(slash) = rest.iter().position(|&c| c == b'/') else {
        return Err(Stop::Error(
            "Error: Invalid URL for -L argument specified - topic missing.\n".into(),
        ));
    };
    let mut authority = rest.get(..slash).unwrap_or_default();
    if let Some(at) = authority.iter().position(|&c| c == b'@') {
        let userinfo = authority.get(..at).unwrap_or_default();
        match userinfo.iter().position(|&c| c == b':') {
            Some(colon) => {
                cfg.username = Some(userinfo.get(..colon).unwrap_or_default().to_vec());
                cfg.password = Some(userinfo.get(colon + 1..).unwrap_or_default().to_vec());
            }
            None => cfg.username = Some(userinfo.to_vec()),
        }
        authority = authority.get(at + 1..).unwrap_or_default();
    }
    match authority.iter().position(|&c| c == b':') {
        Some(colon) => {
            cfg.host = lossy(authority.get(..colon).unwrap_or_default());
            let p = atoi(authority.get(colon + 1..).unwrap_or_default());
            cfg.port = Some(u16::try_from(p).unwrap_or(0));
        }
        None => cfg.host = lossy(authority),
    }
    Ok(())
}

/// What the command line says that `Config` has no field for.
#[derive(Default)]
struct Seen {
    /// `-o`
    options_file: Option<String>,
    /// `--keyform` (only `pem` gets this far).
    keyform: bool,
}

/// mosquitto_ctrl's `client_config_line_proc`: options up to the first
/// argument not starting with '-'. Returns how many arguments were used,
/// and why it stopped early if it did.
fn line_proc(cfg: &mut Config, seen: &mut Seen, args: &[Vec<u8>]) -> (usize, Result<(), Stop>) {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg.first() != Some(&b'-') {
            break;
        }
        let next = args.get(i + 1);
        let val = next.map(Vec::as_slice).unwrap_or_default();
        macro_rules! need {
            ($msg:expr) => {
                if next.is_none() {
                    return (i, Err(Stop::Error(concat!("Error: ", $msg, "\n\n").into())));
                }
                i += 1;
            };
        }
        match arg.as_slice() {
            b"-A" => {
                need!("-A argument given but no address specified.");
                cfg.bind_address = Some(lossy(val));
            }
            b"--cafile" => {
                need!("--cafile argument given but no file specified.");
                cfg.cafile = Some(lossy(val));
            }
            b"--capath" => {
                need!("--capath argument given but no directory specified.");
                cfg.capath = Some(lossy(val));
            }
            b"--cert" => {
                need!("--cert argument given but no file specified.");
                cfg.certfile = Some(lossy(val));
            }
            b"--ciphers" => {
                need!("--ciphers argument given but no ciphers specified.");
                cfg.ciphers = Some(lossy(val));
            }
            b"-d" | b"--debug" => cfg.debug = true,
            b"--help" | b"--version" => return (i, Err(Stop::Quiet)),
            b"-h" | b"--host" => {
                need!("-h argument given but no host specified.");
                cfg.host = lossy(val);
            }
            b"--insecure" => cfg.insecure = true,
            b"-i" | b"--id" => {
                need!("-i argument given but no id specified.");
                cfg.id = Some(lossy(val));
            }
            b"--key" => {
                need!("--key argument given but no file specified.");
                cfg.keyfile = Some(lossy(val));
            }
            b"--keyform" => {
                need!("--keyform argument given but no keyform specified.");
                if val.eq_ignore_ascii_case(b"engine") {
                    return (
                        i,
                        Err(Stop::Unsupported(
                            "Error: --keyform engine is not supported: midge loads PEM keys only.\n"
                                .into(),
                        )),
                    );
                }
                if !val.eq_ignore_ascii_case(b"pem") {
                    return (
                        i,
                        Err(Stop::Unsupported(
                            "Error: Problem setting key form, it must be one of 'pem' or 'engine'.\n"
                                .into(),
                        )),
                    );
                }
                seen.keyform = true;
            }
            b"-L" | b"--url" => {
                need!("-L argument given but no URL specified.");
                if let Err(e) = parse_url(cfg, val) {
                    return (i - 1, Err(e));
                }
            }
            b"-o" => {
                need!("-o argument given but no options file specified.");
                seen.options_file = Some(lossy(val));
            }
            b"-p" | b"--port" => {
                need!("-p argument given but no port specified.");
                let p = atoi(val);
                if !(0..=65535).contains(&p) {
                    return (
                        i - 1,
                        Err(Stop::Error(format!("Error: Invalid port given: {p}\n"))),
                    );
                }
                cfg.port = Some(p as u16);
            }
            b"-P" | b"--pw" => {
                need!("-P argument given but no password specified.");
                cfg.password = Some(val.to_vec());
            }
            b"--proxy" => {
                need!("--proxy argument given but no proxy url specified.");
                return (
                    i,
                    Err(Stop::Unsupported(
                        "Error: --proxy is not supported: midge has no SOCKS5 client.\n".into(),
                    )),
                );
            }
            b"--psk" => {
                need!("--psk argument given but no key specified.");
                return (
                    i,
                    Err(Stop::Unsupported(
                        "Error: --psk is not supported: rustls has no TLS-PSK.\n".into(),
                    )),
                );
            }
            b"--psk-identity" => {
                need!("--psk-identity argument given but no identity specified.");
                return (
                    i,
                    Err(Stop::Unsupported(
                        "Error: --psk-identity is not supported: rustls has no TLS-PSK.\n".into(),
                    )),
                );
            }
            b"-q" | b"--qos" => {
                need!("-q argument given but no QoS specified.");
                let q = atoi(val);
                if !(0..=2).contains(&q) {
                    return (
                        i - 1,
                        Err(Stop::Error(format!("Error: Invalid QoS given: {q}\n"))),
                    );
                }
                cfg.qos = q as u8;
            }
            b"--quiet" => cfg.quiet = true,
            b"--tls-alpn" => {
                need!("--tls-alpn argument given but no protocol specified.");
                cfg.tls_alpn = Some(lossy(val));
            }
            b"--tls-engine" => {
                need!("--tls-engine argument given but no engine_id specified.");
                return (
                    i,
                    Err(Stop::Unsupported(
                        "Error: --tls-engine is not supported: rustls has no OpenSSL engines.\n"
                            .into(),
                    )),
                );
            }
            b"--tls-engine-kpass-sha1" => {
                need!("--tls-engine-kpass-sha1 argument given but no kpass sha1 specified.");
                return (
                    i,
                    Err(Stop::Unsupported(
                        "Error: --tls-engine-kpass-sha1 is not supported: rustls has no OpenSSL engines.\n"
                            .into(),
                    )),
                );
            }
            b"--tls-version" => {
                need!("--tls-version argument given but no version specified.");
                cfg.tls_version = Some(lossy(val));
            }
            b"-u" | b"--username" => {
                need!("-u argument given but no username specified.");
                cfg.username = Some(val.to_vec());
            }
            b"--unix" => {
                need!("--unix argument given but no socket path specified.");
                cfg.host = lossy(val);
                cfg.port = Some(0);
            }
            b"-V" | b"--protocol-version" => {
                need!("--protocol-version argument given but no version specified.");
                cfg.protocol = match val {
                    b"mqttv31" | b"31" => ProtocolVersion::V31,
                    b"mqttv311" | b"311" => ProtocolVersion::V311,
                    b"mqttv5" | b"5" => ProtocolVersion::V5,
                    _ => {
                        return (
                            i - 1,
                            Err(Stop::Error(
                                "Error: Invalid protocol version argument given.\n\n".into(),
                            )),
                        )
                    }
                };
            }
            b"-v" | b"--verbose" => cfg.verbose = true,
            _ => {
                return (
                    i,
                    Err(Stop::Error(format!(
                        "Error: Unknown option '{}'.\n",
                        lossy(arg)
                    ))),
                )
            }
        }
        i += 1;
    }
    (i, Ok(()))
}

/// Where the default options file is: `$XDG_CONFIG_HOME/midge_ctrl`, or
/// `$HOME/.config/midge_ctrl`.
fn default_options_file() -> Option<String> {
    if let Ok(x) = std::env::var("XDG_CONFIG_HOME") {
        return Some(format!("{x}/midge_ctrl"));
    }
    std::env::var("HOME")
        .ok()
        .map(|h| format!("{h}/.config/midge_ctrl"))
}

/// One options file line as mosquitto_ctrl splits it (`strtok` on spaces
/// twice): the flag and at most one value. Comment lines start with '#'.
fn file_lines(text: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for line in text.split(|&c| c == b'\n') {
        if line.first() == Some(&b'#') {
            continue;
        }
        let args: Vec<Vec<u8>> = line
            .split(|&c| c == b' ' || c == b'\r')
            .filter(|w| !w.is_empty())
            .take(2)
            .map(<[u8]>::to_vec)
            .collect();
        if !args.is_empty() {
            out.push(args);
        }
    }
    out
}

/// Parse the command line (`args` without the program name).
pub fn parse(args: &[Vec<u8>]) -> CommandLine {
    // A first pass only to find -o: the file's options come first.
    let mut first = Seen::default();
    let _ = line_proc(&mut Config::new(Tool::Ctrl), &mut first, args);
    let options_file = first.options_file;
    let mut cfg = Config::new(Tool::Ctrl);
    cfg.qos = 1;
    let mut errors = String::new();
    let unchanged = |cfg: Config, errors: String, fatal: Option<i32>| CommandLine {
        cfg,
        rest: args.to_vec(),
        errors,
        fatal,
    };
    let mut seen = Seen::default();
    let explicit = options_file.is_some();
    if let Some(path) = options_file.or_else(default_options_file) {
        match std::fs::read(&path) {
            Ok(text) => {
                for line in file_lines(&text) {
                    match line_proc(&mut cfg, &mut seen, &line) {
                        (_, Ok(())) => {}
                        (_, Err(Stop::Quiet)) => return unchanged(cfg, errors, None),
                        (_, Err(Stop::Error(e))) => {
                            errors.push_str(&e);
                            return unchanged(cfg, errors, None);
                        }
                        (_, Err(Stop::Unsupported(e))) => {
                            errors.push_str(&e);
                            return unchanged(cfg, errors, Some(1));
                        }
                    }
                }
            }
            Err(e) if explicit => {
                errors.push_str(&format!(
                    "Error: Unable to open options file \"{path}\": {}.\n",
                    super::super::transport::os_error_text(&e)
                ));
                return unchanged(cfg, errors, Some(1));
            }
            Err(_) => {}
        }
    }
    let (used, result) = line_proc(&mut cfg, &mut seen, args);
    match result {
        Ok(()) => {}
        Err(stop @ (Stop::Quiet | Stop::Error(_))) => {
            if let Stop::Error(e) = stop {
                errors.push_str(&e);
            }
            let keep = args.len().saturating_sub(used);
            return CommandLine {
                rest: args.get(..keep).unwrap_or_default().to_vec(),
                cfg,
                errors,
                fatal: None,
            };
        }
        Err(Stop::Unsupported(e)) => {
            errors.push_str(&e);
            return unchanged(cfg, errors, Some(1));
        }
    }
    let rest = args.get(used..).unwrap_or_default().to_vec();
    if cfg.certfile.is_some() != cfg.keyfile.is_some() {
        // mosquitto_ctrl says so and goes on, but without the default
        // host (an empty host then fails to connect, see `request`).
        errors
            .push_str("Error: Both certfile and keyfile must be provided if one of them is set.\n");
    } else if seen.keyform && cfg.keyfile.is_none() {
        errors.push_str("Error: If keyform is set, keyfile must be also specified.\n");
    } else if cfg.host.is_empty() {
        cfg.host = "localhost".to_string();
    }
    CommandLine {
        cfg,
        rest,
        errors,
        fatal: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Vec<u8>> {
        // Keep the default options file out of unit tests.
        let mut v: Vec<Vec<u8>> = vec![b"-o".to_vec(), b"/dev/null".to_vec()];
        v.extend(a.iter().map(|s| s.as_bytes().to_vec()));
        v
    }

    fn rest(c: &CommandLine) -> Vec<String> {
        c.rest.iter().map(|a| lossy(a)).collect()
    }

    #[test]
    fn options_then_module() {
        let c = parse(&args(&[
            "-h",
            "example.org",
            "-p",
            "1884",
            "-u",
            "admin",
            "-P",
            "pw",
            "-q",
            "0",
            "-i",
            "me",
            "-V",
            "311",
            "dynsec",
            "listClients",
        ]));
        assert_eq!(c.errors, "");
        assert_eq!(rest(&c), ["dynsec", "listClients"]);
        assert_eq!(c.cfg.host, "example.org");
        assert_eq!(c.cfg.port, Some(1884));
        assert_eq!(c.cfg.username.as_deref(), Some(&b"admin"[..]));
        assert_eq!(c.cfg.password.as_deref(), Some(&b"pw"[..]));
        assert_eq!(c.cfg.qos, 0);
        assert_eq!(c.cfg.id.as_deref(), Some("me"));
        assert_eq!(c.cfg.protocol, ProtocolVersion::V311);
    }

    #[test]
    fn defaults() {
        let c = parse(&args(&["dynsec", "listClients"]));
        assert_eq!(c.cfg.host, "localhost");
        assert_eq!(c.cfg.qos, 1);
        assert_eq!(c.cfg.protocol, ProtocolVersion::V5);
        assert_eq!(c.cfg.effective_port(), 1883);
    }

    #[test]
    fn errors_keep_the_arguments_like_mosquitto() {
        // Unknown option after -p 1: mosquitto_ctrl then sees "-o" as the
        // module name (here: the -o our helper put first).
        let c = parse(&args(&["-p", "1", "--foo", "dynsec", "listClients"]));
        assert_eq!(c.errors, "Error: Unknown option '--foo'.\n");
        assert_eq!(c.rest.len(), 3);
        assert_eq!(rest(&c)[0], "-o");
        let c = parse(&[b"-q".to_vec(), b"3".to_vec(), b"dynsec".to_vec()]);
        assert_eq!(c.errors, "Error: Invalid QoS given: 3\n");
        assert_eq!(rest(&c), ["-q", "3", "dynsec"]);
        let c = parse(&[b"-p".to_vec()]);
        assert_eq!(
            c.errors,
            "Error: -p argument given but no port specified.\n\n"
        );
        assert_eq!(rest(&c), ["-p"]);
        let c = parse(&args(&["--psk", "00", "dynsec", "listClients"]));
        assert_eq!(c.fatal, Some(1));
    }

    #[test]
    fn keyform() {
        let c = parse(&args(&["--keyform", "pem", "dynsec", "listClients"]));
        assert_eq!(
            c.errors,
            "Error: If keyform is set, keyfile must be also specified.\n"
        );
        assert_eq!(c.cfg.host, "");
        assert_eq!(rest(&c), ["dynsec", "listClients"]);
        let c = parse(&args(&[
            "--keyform",
            "PEM",
            "--key",
            "k",
            "--cert",
            "c",
            "dynsec",
            "x",
        ]));
        assert_eq!((c.errors.as_str(), c.cfg.host.as_str()), ("", "localhost"));
        let c = parse(&args(&["--keyform", "engine", "dynsec", "x"]));
        assert_eq!(c.fatal, Some(1));
        let c = parse(&args(&["--keyform", "der", "dynsec", "x"]));
        assert_eq!(
            (c.fatal, c.errors.as_str()),
            (
                Some(1),
                "Error: Problem setting key form, it must be one of 'pem' or 'engine'.\n"
            )
        );
    }

    #[test]
    fn urls() {
        let c = parse(&args(&["-L", "mqtts://u:p@host:1999/t", "dynsec", "x"]));
        assert_eq!(c.errors, "");
        assert_eq!(c.cfg.host, "host");
        assert_eq!(c.cfg.port, Some(1999));
        assert_eq!(c.cfg.username.as_deref(), Some(&b"u"[..]));
        assert_eq!(c.cfg.password.as_deref(), Some(&b"p"[..]));
        assert!(!c.cfg.uses_tls());
        let c = parse(&args(&["-L", "mqtt://host", "dynsec", "x"]));
        assert_eq!(
            c.errors,
            "Error: Invalid URL for -L argument specified - topic missing.\n"
        );
    }

    #[test]
    fn options_file_lines_take_one_value() {
        let lines = file_lines(b"# comment\n-h  broker\r\n-P two words\n\n   \n--insecure\n");
        assert_eq!(
            lines,
            vec![
                vec![b"-h".to_vec(), b"broker".to_vec()],
                vec![b"-P".to_vec(), b"two".to_vec()],
                vec![b"--insecure".to_vec()],
            ]
        );
    }

    #[test]
    fn options_file_then_command_line() {
        let dir = std::env::temp_dir().join(format!("midge-ctrl-opts-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("opts");
        std::fs::write(&f, "-h filehost\n-p 1999\n-u fileuser\n").unwrap();
        let path = f.to_string_lossy().into_owned();
        let a: Vec<Vec<u8>> = ["-o", &path, "-p", "2000", "dynsec", "listClients"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let c = parse(&a);
        assert_eq!(c.errors, "");
        assert_eq!(c.cfg.host, "filehost");
        assert_eq!(c.cfg.port, Some(2000));
        assert_eq!(c.cfg.username.as_deref(), Some(&b"fileuser"[..]));
        assert_eq!(rest(&c), ["dynsec", "listClients"]);
        let _ = std::fs::remove_dir_all(&dir);
        let c = parse(&a);
        assert_eq!(c.fatal, Some(1));
        assert!(c.errors.starts_with("Error: Unable to open options file"));
    }
}
