//! Fuzz target `password_file`: a thin wrapper over `midge::fuzzing::password_file`, which says
//! what the input means and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge::fuzzing::password_file(data));
