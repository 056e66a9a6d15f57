//! Fuzz target `format`: a thin wrapper over `midge::fuzzing::format`, which says
//! what the input means and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge::fuzzing::format(data));
