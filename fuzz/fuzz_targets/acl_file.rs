//! Fuzz target `acl_file`: a thin wrapper over `midge::fuzzing::acl_file`, which says
//! what the input means and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge::fuzzing::acl_file(data));
