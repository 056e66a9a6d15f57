//! midge: a Mosquitto-compatible MQTT broker for small boards.
//!
//! One thread, one mio event loop, no async runtime. The rooms, from the
//! bottom up (a room never reaches upward):
//!
//! - `protocol`: MQTT 3.1 / 3.1.1 / 5.0 wire format, zero-copy decoding.
//! - `topic`: topic validation, the subscription trie, the retained store.
//! - `config`: `mosquitto.conf` parsing.
//! - `broker`: the sans-IO core (sessions, QoS, retained, wills, `$SYS`).
//! - `net`: the mio event loop; the only room with sockets and signals.
//! - `cli`: the `midge` command line.
//!
//! See `../shared/DESIGN.md` in the project workspace for the map.

pub mod auth;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod logging;
pub mod memory;
pub mod net;
pub mod persist;
pub mod protocol;
pub mod topic;
