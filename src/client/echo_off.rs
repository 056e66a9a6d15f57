//! echo_off: terminal echo switched off while a password is typed, for
//! midge_ctrl's and midge_passwd's prompts.
//!
//! Owns: the termios calls (echo off, line editing kept so backspace
//! works), putting the terminal back when the guard drops, and also when
//! SIGINT/SIGTERM/SIGHUP arrives while a prompt is up (then a newline is
//! printed and the process dies by that signal).
//!
//! Must not: read or print the password; do anything when stdin is not a
//! terminal.

use std::io::Write;

/// While alive, stdin's terminal (if it is one) does not echo.
pub struct EchoOff {
    saved: Option<libc::termios>,
}

impl EchoOff {
    pub fn new() -> EchoOff {
        let mut current = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr writes one termios through the pointer, which
        // points at properly sized and aligned storage owned by this frame.
        let got = unsafe { libc::tcgetattr(libc::STDIN_FILENO, current.as_mut_ptr()) } == 0;
        if !got {
            // Not a terminal (a pipe or a file): read it as it is.
            return EchoOff { saved: None };
        }
        // SAFETY: tcgetattr returned 0, so it filled in the whole struct.
        let saved = unsafe { current.assume_init() };
        restore_on_signal(saved);
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        set_terminal(&quiet);
        EchoOff { saved: Some(saved) }
    }
}

impl Default for EchoOff {
    fn default() -> Self {
        EchoOff::new()
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            set_terminal(saved);
        }
    }
}

fn set_terminal(state: &libc::termios) {
    // SAFETY: `state` is a valid termios from tcgetattr, borrowed for the
    // whole call; tcsetattr only reads it.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, state) };
}

/// Without this, Ctrl-C at the prompt would leave the shell with echo off.
fn restore_on_signal(saved: libc::termios) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("echo-off-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                set_terminal(&saved);
                let mut o = std::io::stdout();
                let _ = o.write_all(b"\n").and_then(|()| o.flush());
                // Die by the signal itself, as if no handler had been set.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        });
    drop(spawned);
}
