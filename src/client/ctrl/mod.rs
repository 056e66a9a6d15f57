//! ctrl: midge_ctrl, a drop-in for mosquitto_ctrl 2.0.11: the same command
//! line, output and exit codes, over midge's own client.
//!
//! Owns, in the order a run goes through them:
//! - `options`: connection options before the module name, `-o` and the
//!   default options file, mosquitto_ctrl's error handling quirks.
//! - `dynsec`: the only module: its help, `dynsec init` (in `init`), and the JSON
//!   request for each command.
//! - `request`: connect, subscribe, publish, wait for the reply.
//! - `response`: print the reply.
//! - `console`: stdout, stderr and password prompts (a trait, so the
//!   commands are tested without a terminal).
//!
//! Where it differs from mosquitto_ctrl 2.0.11 (each explained where it
//! is done): `-o` is read; `setDefaultACLAccess` sends what the plugin
//! reads; `dynsec init` creates its file with `O_EXCL`, mode 0640; `-A`,
//! TLS-PSK, SOCKS and OpenSSL engines are refused with the reason; the tool
//! names in its texts are midge's.
//!
//! Must not: depend on `broker`, `auth` or `net` (it is a client: the
//! broker is reached only over MQTT); duplicate what `client::run` already
//! does for the other tools (session and transport set-up, connection
//! error texts).

pub mod console;
pub mod dynsec;
pub mod init;
pub mod options;
pub mod request;
pub mod response;

use super::messages::{self, err};
use super::options::Tool;
use console::{Console, Terminal};

/// Entry point of the binary: returns the exit code.
pub fn main(args: &[Vec<u8>]) -> i32 {
    run(&mut Terminal, args)
}

fn usage(c: &mut dyn Console) -> i32 {
    c.out(super::run::usage_text(Tool::Ctrl).as_bytes());
    1
}

/// mosquitto_ctrl's `main`, on any console.
pub fn run(c: &mut dyn Console, args: &[Vec<u8>]) -> i32 {
    if args.is_empty() {
        return usage(c);
    }
    let mut line = options::parse(args);
    if !line.errors.is_empty() {
        c.err(&line.errors);
    }
    if let Some(code) = line.fatal {
        return code;
    }
    if line.rest.len() < 2 {
        return usage(c);
    }
    let module = line.rest.first().cloned().unwrap_or_default();
    if !module.eq_ignore_ascii_case(b"dynsec") {
        // mosquitto_ctrl would try to load mosquitto_ctrl_<module>.so;
        // midge has no external modules.
        c.err(&format!(
            "Error: Module '{}' not supported.\n",
            String::from_utf8_lossy(&module)
        ));
        return err::NOT_SUPPORTED;
    }
    match dynsec::main(c, line.rest.get(1..).unwrap_or_default()) {
        dynsec::Outcome::Done => 0,
        dynsec::Outcome::Unknown => err::UNKNOWN,
        dynsec::Outcome::Invalid => {
            c.err(&format!("Error: {}\n", messages::strerror(err::INVAL)));
            err::INVAL
        }
        dynsec::Outcome::Request(payload) => request::exchange(
            c,
            &mut line.cfg,
            dynsec::REQUEST_TOPIC,
            dynsec::RESPONSE_TOPIC,
            &payload,
        ),
    }
}
