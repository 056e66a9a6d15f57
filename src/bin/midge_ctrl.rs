//! midge_ctrl: a drop-in for mosquitto_ctrl 2.0 (same command line,
//! output and exit codes). Everything lives in `midge::client::ctrl`.
//!
//! Must not: hold logic; it only hands the command line over.

fn main() {
    let args = midge::client::run::args();
    std::process::exit(midge::client::ctrl::main(&args));
}
