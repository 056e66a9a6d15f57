//! midge: a Mosquitto-compatible MQTT broker for small boards.
//!
//! One thread, one mio event loop, no async runtime. `../shared/DESIGN.md` in
//! the project workspace is the map; `scripts/check-rooms.sh` keeps the code
//! on it (every `crate::` import must point down an allowed arrow).
//!
//! # Layout
//!
//! The rooms, from the top down (a room never reaches upward or sideways):
//!
//! - `cli`: the `midge` command line, start-up order and exit codes.
//!   - `cli::events`: the broker's events worded as Mosquitto's log lines.
//!   - `cli::plan`: Config -> broker settings, listener specs, security
//!     blocks; pure, unit-tested.
//!   - `cli::policy`: reads the password, ACL and dynamic-security files.
//!   - `cli::os`: daemonising, systemd notification, privilege drop,
//!     writability checks, the random seed.
//!   - `cli::supervisor`: the running process's duties: SIGHUP reload,
//!     autosave and the persistence journal, dynamic-security saves.
//! - `fuzzing`: entry points for the fuzz targets in `fuzz/` and the
//!   corpus replay (`tests/fuzz_corpus.rs`): arbitrary bytes into every
//!   parser of untrusted input, invariants checked after each call. Sits on
//!   top like `cli`; nothing at run time uses it.
//! - `logging`: Mosquitto-shaped log lines to every `log_dest` (used by
//!   `cli`).
//! - `memory`: heap accounting for `memory_limit` (the counting allocator).
//! - `net`: the mio event loop, listeners, the connection slab, timers; the
//!   only room with sockets, TLS and signals.
//!   - `net::tls`: rustls `ServerConfig` from Mosquitto's TLS options.
//!   - `net::bridges`: the bridge links' sockets: nonblocking connect,
//!     name resolution off the loop (woken by a `mio::Waker`), TLS client;
//!     words the links' events as Mosquitto's log lines.
//!   - `net::ws`: one WebSocket server connection (request head, upgrade or
//!     `http_dir`, then the codec in the server role).
//!   - `net::http_dir`: static files for browsers on a websockets listener.
//!   - `net::slow_loop_tests`: the real loop with every pass slowed: reading
//!     must not outrun writing.
//! - `bridge`: outgoing links to other brokers (`connection` sections),
//!   sans IO: a `client::Session` towards the remote, an ordinary broker
//!   connection towards the local broker; `net` owns the sockets.
//!   - `bridge::events`: what a link did (connecting, failed, retrying,
//!     subscribed, lost ...), taken and worded as log lines by `net::bridges`.
//! - `persist`: snapshots and the journal on disk.
//! - `broker`: the sans-IO MQTT core: bytes and `now` in, bytes in outboxes
//!   and requests out.
//!   - `broker::connect`: CONNECT, CONNACK, DISCONNECT, wills.
//!   - `broker::publish`: PUBLISH both ways, QoS flows, retained messages.
//!   - `broker::subscribe`: SUBSCRIBE / UNSUBSCRIBE.
//!   - `broker::router`: subscription tree, shared groups, retained store:
//!     which subscriptions a topic hits.
//!   - `broker::connections`: per-connection state, outboxes and their
//!     buffer pool; one `send` that counts bytes for `$SYS`.
//!   - `broker::session`: sessions that outlive connections.
//!   - `broker::message`: a stored message, one allocation, shared.
//!   - `broker::events`: what happened (connected, refused, dropped ...),
//!     handed to a sink; the core never logs.
//!   - `broker::journal`: the durable-state change feed for `persist`.
//!   - `broker::invariants`: what must hold between calls (for fuzzing).
//!   - `broker::sys`: the `$SYS/broker/...` counters.
//! - `auth`: who may connect and what they may do.
//!   - `auth::password`: Mosquitto password files (`$6$`, `$7$`).
//!   - `auth::acl`: Mosquitto ACL files.
//!   - `auth::dynsec`: the dynamic-security plugin and its JSON file.
//! - `client`: the MQTT client session (sans IO) and the command-line tools
//!   built on it (`midge_pub`, `midge_sub`, `midge_rr`, `midge_ctrl`).
//!   - `client::session`: the client state machine, no socket, no clock.
//!   - `client::connection`, `client::transport`, `client::tls`,
//!     `client::websocket`: blocking transports (TCP, unix, TLS, WebSocket).
//!   - `client::options`, `client::props`, `client::help`,
//!     `client::messages`: the tools' command lines, `-D` properties, help
//!     texts and libmosquitto's messages.
//!   - `client::run`, `client::run_pub`, `client::run_sub`,
//!     `client::run_rr`: the tools' main loops.
//!   - `client::format`, `client::json`, `client::localtime`: printing
//!     messages like `mosquitto_sub -F`.
//!   - `client::ctrl`: `midge_ctrl`, a drop-in for `mosquitto_ctrl`.
//!   - `client::echo_off`: no echo while a password is typed.
//! - `topic`: topic and filter validation, the subscription trie
//!   (`topic::tree`), the retained store (`topic::retained`).
//! - `protocol`: every wire format, depending on nothing in the crate.
//!   - `protocol::decode`, `protocol::encode`: `Packet<'a>` from and to
//!     bytes, zero-copy.
//!   - `protocol::properties`: MQTT 5.0 properties.
//!   - `protocol::field`: the primitive fields both directions build on.
//!   - `protocol::error`: `DecodeError`, named after spec statements, and
//!     its reason codes; `protocol::reason`: the reason codes.
//!   - `protocol::websocket`: the one WebSocket codec (server and client
//!     roles); `protocol::websocket::handshake`: its HTTP upgrade.
//!   - `protocol::base64`: the one base64 (password files, dynsec, keys).
//! - `config`: `mosquitto.conf` -> `Config` (`config::parse` reads lines,
//!   `config::directives` is the table of every directive).

pub mod auth;
pub mod bridge;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod fuzzing;
pub mod logging;
pub mod memory;
pub mod net;
pub mod persist;
pub mod protocol;
pub mod topic;
