//! midge_sub: a drop-in for mosquitto_sub 2.0 (same flags, output, messages
//! and exit codes). Everything lives in `midge::client::run_sub`.
//!
//! Must not: hold logic; it only hands the command line over.

fn main() {
    let args = midge::client::run::args();
    std::process::exit(midge::client::run_sub::main(&args));
}
