//! ctrl::console: where midge_ctrl prints and reads: stdout, stderr and
//! password prompts, behind a trait so the commands can be tested with a
//! scripted console.
//!
//! Owns: the real console (stdout/stderr written and flushed at once,
//! stdin read with terminal echo off, see `client::echo_off`) and
//! mosquitto_ctrl's `get_password` prompt sequence and messages.
//!
//! Must not: know about MQTT or dynsec; never print a password.

use std::io::{self, BufRead, Read, Write};

/// Output and line input for the tool.
pub trait Console {
    /// `printf`: to stdout.
    fn out(&mut self, b: &[u8]);
    /// `fprintf(stderr, ...)`.
    fn err(&mut self, s: &str);
    /// One line of input with echo off, without its line ending. None at
    /// end of input.
    fn read_secret_line(&mut self) -> Option<Vec<u8>>;
}

/// Why `get_password` gave no password.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordError {
    /// Nothing typed (Mosquitto's return value 1).
    Empty,
    /// The two entries differ (return value 2).
    Mismatch,
}

/// mosquitto's `get_password`: prompt (on stdout), read with echo off,
/// then the same again for `verify` if given. `quiet` leaves the error
/// messages to the caller.
pub fn get_password(
    c: &mut dyn Console,
    prompt: &str,
    verify: Option<&str>,
    quiet: bool,
) -> Result<Vec<u8>, PasswordError> {
    let read = |c: &mut dyn Console, prompt: &str| -> Result<Vec<u8>, PasswordError> {
        c.out(prompt.as_bytes());
        match c.read_secret_line() {
            Some(line) if !line.is_empty() => {
                c.out(b"\n");
                Ok(line)
            }
            _ => {
                if !quiet {
                    c.err("Error: Empty password.\n");
                }
                Err(PasswordError::Empty)
            }
        }
    };
    let first = read(c, prompt)?;
    if let Some(v) = verify {
        let second = read(c, v)?;
        if first != second {
            if !quiet {
                c.err("Error: Passwords do not match.\n");
            }
            return Err(PasswordError::Mismatch);
        }
    }
    Ok(first)
}

/// The process's own stdout, stderr and stdin.
pub struct Terminal;

impl Console for Terminal {
    fn out(&mut self, b: &[u8]) {
        let mut o = io::stdout().lock();
        let _ = o.write_all(b).and_then(|()| o.flush());
    }

    fn err(&mut self, s: &str) {
        let mut e = io::stderr().lock();
        let _ = e.write_all(s.as_bytes()).and_then(|()| e.flush());
    }

    fn read_secret_line(&mut self) -> Option<Vec<u8>> {
        let _quiet = super::super::echo_off::EchoOff::new();
        let mut line = Vec::new();
        // Mosquitto reads into a 200-byte buffer; read a sane maximum.
        let limit = 65_536;
        match io::stdin().lock().take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        Some(line)
    }
}

/// A console for tests: collects output, answers prompts from a script.
#[cfg(test)]
#[derive(Default)]
pub struct Scripted {
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub input: std::collections::VecDeque<Vec<u8>>,
}

#[cfg(test)]
impl Scripted {
    pub fn with_input(lines: &[&str]) -> Scripted {
        Scripted {
            input: lines.iter().map(|l| l.as_bytes().to_vec()).collect(),
            ..Scripted::default()
        }
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

#[cfg(test)]
impl Console for Scripted {
    fn out(&mut self, b: &[u8]) {
        self.stdout.extend_from_slice(b);
    }

    fn err(&mut self, s: &str) {
        self.stderr.push_str(s);
    }

    fn read_secret_line(&mut self) -> Option<Vec<u8>> {
        self.input.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_like_mosquitto() {
        let mut c = Scripted::with_input(&["pw", "pw"]);
        let r = get_password(&mut c, "New: ", Some("Again: "), false);
        assert_eq!(r, Ok(b"pw".to_vec()));
        assert_eq!(c.stdout_text(), "New: \nAgain: \n");
        let mut c = Scripted::with_input(&["a", "b"]);
        let r = get_password(&mut c, "New: ", Some("Again: "), false);
        assert_eq!(r, Err(PasswordError::Mismatch));
        assert_eq!(c.stderr, "Error: Passwords do not match.\n");
        let mut c = Scripted::with_input(&[""]);
        let r = get_password(&mut c, "New: ", Some("Again: "), true);
        assert_eq!(r, Err(PasswordError::Empty));
        assert_eq!(c.stdout_text(), "New: ");
        assert_eq!(c.stderr, "");
        let mut c = Scripted::default();
        let r = get_password(&mut c, "P: ", None, false);
        assert_eq!(r, Err(PasswordError::Empty));
        assert_eq!(c.stderr, "Error: Empty password.\n");
    }
}
