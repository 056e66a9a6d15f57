//! Black-box start-up behaviour of the broker binary: fatal configuration errors name the file
//! and line and exit non-zero; a port already in use stops start-up with one clear message.

mod common;

use common::*;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

/// Start-up failures must be reported well within this.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

#[test]
fn unknown_directive_is_fatal_with_file_and_line() {
    let dir = temp_dir("cli-unknown");
    let conf = dir.join("broken.conf");
    let port = free_port();
    fs::write(
        &conf,
        format!(
            "# a comment\nlistener {port} 127.0.0.1\nno_such_directive 1\nallow_anonymous true\n"
        ),
    )
    .expect("write config");
    let conf_s = conf.to_string_lossy().into_owned();
    let done = run(&broker_binary(), &["-c", &conf_s], EXIT_LIMIT);
    let _ = fs::remove_dir_all(&dir);

    let status = done
        .status
        .unwrap_or_else(|| panic!("still running after {EXIT_LIMIT:?}: {}", done.output()));
    // midge exits 1; Mosquitto 2.0.11 exits 3 (MOSQ_ERR_INVAL) for the same error.
    let expected = if testing_mosquitto() { 3 } else { 1 };
    assert_eq!(
        status.code(),
        Some(expected),
        "exit status; output:\n{}",
        done.output()
    );
    let out = done.output();
    assert!(
        out.contains(&format!("{conf_s}:3")),
        "output names the file and line ({conf_s}:3):\n{out}"
    );
    assert!(
        out.contains("no_such_directive"),
        "output names the directive:\n{out}"
    );
}

#[test]
fn missing_config_file_is_fatal() {
    let dir = temp_dir("cli-missing");
    let conf = dir.join("does-not-exist.conf");
    let conf_s = conf.to_string_lossy().into_owned();
    let done = run(&broker_binary(), &["-c", &conf_s], EXIT_LIMIT);
    let _ = fs::remove_dir_all(&dir);
    let status = done
        .status
        .unwrap_or_else(|| panic!("still running after {EXIT_LIMIT:?}: {}", done.output()));
    assert!(!status.success(), "exit status {status}");
    assert!(
        done.output().contains(&conf_s),
        "output names the file:\n{}",
        done.output()
    );
}

#[test]
fn port_in_use_exits_nonzero_with_clear_message() {
    // Hold the port for the whole test so the broker cannot bind it.
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = holder.local_addr().expect("local addr").port();
    let dir = temp_dir("cli-inuse");
    let conf = dir.join("midge.conf");
    fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .expect("write config");
    let conf_s = conf.to_string_lossy().into_owned();
    let done = run(&broker_binary(), &["-c", &conf_s], EXIT_LIMIT);
    let _ = fs::remove_dir_all(&dir);
    drop(holder);

    let status = done
        .status
        .unwrap_or_else(|| panic!("still running after {EXIT_LIMIT:?}: {}", done.output()));
    assert!(!status.success(), "exit status {status}");
    let out = done.output();
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("address already in use"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line says the address is in use:\n{out}"
    );
}

/// The README's run command is `cargo run --release`: with several binaries
/// in the package that only works while `default-run` names the broker.
#[test]
fn cargo_run_starts_the_broker() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("read Cargo.toml");
    assert!(
        manifest
            .lines()
            .any(|l| l.replace(' ', "") == "default-run=\"midge\""),
        "Cargo.toml must say default-run = \"midge\""
    );
}
