//! Fuzz target `dynsec`: a thin wrapper over `midge::fuzzing::dynsec`, which says
//! what the input means and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge::fuzzing::dynsec(data));
