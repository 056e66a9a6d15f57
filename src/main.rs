//! The `midge` broker binary: everything lives in the library; see `cli`.

fn main() {
    std::process::exit(midge::cli::main());
}
