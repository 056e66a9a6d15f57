//! Fuzz target `packet`: a thin wrapper over `midge::fuzzing::packet`, which says
//! what the input means and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge::fuzzing::packet(data));
