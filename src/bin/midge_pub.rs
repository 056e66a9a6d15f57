//! midge_pub: a drop-in for mosquitto_pub 2.0 (same flags, output, messages
//! and exit codes). Everything lives in `midge::client::run_pub`.
//!
//! Must not: hold logic; it only hands the command line over.

fn main() {
    let args = midge::client::run::args();
    std::process::exit(midge::client::run_pub::main(&args));
}
