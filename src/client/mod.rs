//! client: a small MQTT client on the crate's own codec, and the
//! command-line tools built on it (`midge_pub`, `midge_sub`, `midge_rr`,
//! `midge_ctrl`, drop-ins for mosquitto_pub/sub/rr/ctrl 2.0).
//!
//! Owns, from the bottom up:
//! - `session`: the client state machine (CONNECT, packet ids, QoS 1/2
//!   handshakes both ways, inflight window, keepalive, debug lines). No
//!   sockets, no clock: bytes and `now` go in, bytes and events come out,
//!   so the bridge can drive it from mio.
//! - `websocket`, `tls`, `transport`: blocking byte streams (TCP, unix
//!   socket, TLS with rustls, WebSocket over either).
//! - `connection`: the blocking driver joining a session to a transport.
//! - `options`, `props`, `help`: the tools' command line, Mosquitto's.
//! - `echo_off`: no terminal echo while a password is typed.
//! - `ctrl`: midge_ctrl (mosquitto_ctrl's drop-in), its own small world.
//! - `format`, `json`, `localtime`: printing messages like mosquitto_sub
//!   (`-v`, `-F`, `%j` JSON with cJSON's layout, local time stamps).
//! - `messages`: libmosquitto's error texts and numbers.
//! - `run`, `run_pub`, `run_sub`, `run_rr`: the tools themselves.
//!
//! Must not: depend on `broker`, `net`, `config` or `auth`; it speaks to a
//! broker only over the wire, through `protocol` (and uses `topic` for
//! `-T` filter matching). Unlike the broker's rooms it does own sockets,
//! rustls and threads: it is a client.

pub mod connection;
pub mod ctrl;
pub mod echo_off;
pub mod format;
pub mod help;
pub mod json;
pub mod localtime;
pub mod messages;
pub mod options;
pub mod props;
pub mod run;
pub mod run_pub;
pub mod run_rr;
pub mod run_sub;
pub mod session;
pub mod tls;
pub mod transport;
pub mod websocket;

pub use connection::{ClientError, Connection, Poll};
pub use session::{Event, Message, Session, SessionConfig, SessionError, State, WillConfig};
pub use transport::{Endpoint, Transport, TransportOptions};
