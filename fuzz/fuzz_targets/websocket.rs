//! Fuzz target `websocket`: a thin wrapper over `midge::fuzzing::websocket`, which says
//! what the input means and which invariants are checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge::fuzzing::websocket(data));
