//! Fuzz target `client_options`: a thin wrapper over `midge::fuzzing::client_options`, which says
//! what the input means and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge::fuzzing::client_options(data));
