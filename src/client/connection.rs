//! connection: a blocking MQTT client: one `Session` driven over one
//! `Transport`, with deadlines.
//!
//! Owns: the loop that flushes the session's output, waits for input no
//! longer than the next deadline (the caller's, the keepalive's, or a short
//! slice so a signal flag is noticed), feeds what arrives to the session
//! and hands back its events one at a time; reconnecting on request.
//!
//! Must not: decide what the tools do with events, or print anything.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{Event, Session, SessionError, State};
use super::transport::{self, ConnectError, Transport, TransportOptions};

/// Longest single wait, so an interrupt flag is seen promptly.
const SLICE: Duration = Duration::from_millis(100);

/// How long `close` waits for the server to close after DISCONNECT.
const LINGER: Duration = Duration::from_secs(2);

/// Why the connection stopped working.
#[derive(Debug)]
pub enum ClientError {
    /// Could not connect at all.
    Connect(ConnectError),
    /// The server closed the connection.
    ConnectionLost,
    /// A read or write failed.
    Io(io::Error),
    /// TLS failed after the handshake.
    Tls(String),
    /// The session gave up (protocol error, keepalive).
    Session(SessionError),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "{e}"),
            ClientError::ConnectionLost => f.write_str("connection lost"),
            ClientError::Io(e) => f.write_str(&transport::os_error_text(e)),
            ClientError::Tls(s) => write!(f, "TLS error: {s}"),
            ClientError::Session(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<SessionError> for ClientError {
    fn from(e: SessionError) -> Self {
        ClientError::Session(e)
    }
}

fn io_error(e: io::Error) -> ClientError {
    if transport::is_tls_error(&e) {
        ClientError::Tls(transport::os_error_text(&e))
    } else {
        ClientError::Io(e)
    }
}

/// What `poll` saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    Event(Event),
    /// The caller's deadline passed.
    Timeout,
    /// The interrupt flag was raised.
    Interrupted,
    /// The session is closed (DISCONNECT sent or received, CONNACK refused)
    /// and all its events have been handed out.
    Closed,
}

/// A session and the transport it runs over.
pub struct Connection {
    pub session: Session,
    options: TransportOptions,
    transport: Option<Transport>,
    interrupt: Option<Arc<AtomicBool>>,
    /// Read buffer, reused across polls.
    buf: Vec<u8>,
}

impl Connection {
    pub fn new(session: Session, options: TransportOptions) -> Connection {
        Connection {
            session,
            options,
            transport: None,
            interrupt: None,
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// A flag that makes `poll` return `Poll::Interrupted` when set
    /// (SIGINT/SIGTERM in the tools).
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Open the transport and send CONNECT. Replaces any earlier transport
    /// (reconnect); the session keeps its unfinished publishes.
    pub fn connect(&mut self) -> Result<(), ClientError> {
        if let Some(mut t) = self.transport.take() {
            t.shutdown();
        }
        // libmosquitto queues CONNECT before the TLS handshake runs, so a
        // TLS failure comes after the "sending CONNECT" debug line.
        let tls = self.options.tls.is_some();
        if tls {
            self.session.connect(Instant::now());
        }
        let t = match Transport::connect(&self.options) {
            Ok(t) => t,
            Err(e) => {
                if tls {
                    self.session.connection_lost();
                }
                return Err(ClientError::Connect(e));
            }
        };
        self.transport = Some(t);
        if !tls {
            self.session.connect(Instant::now());
        }
        self.flush()
    }

    pub fn is_open(&self) -> bool {
        self.transport.is_some()
    }

    /// Write everything the session has queued.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if !self.session.has_output() {
            return Ok(());
        }
        let out = self.session.take_output();
        let Some(t) = self.transport.as_mut() else {
            return Err(ClientError::ConnectionLost);
        };
        if let Err(e) = t.write_all(&out) {
            self.drop_transport();
            return Err(io_error(e));
        }
        Ok(())
    }

    fn drop_transport(&mut self) {
        if let Some(mut t) = self.transport.take() {
            t.shutdown();
        }
        self.session.connection_lost();
    }

    /// Flush, then close the transport. After our DISCONNECT this waits
    /// (briefly) for the server to close first, so nothing in flight is
    /// lost.
    pub fn close(&mut self) {
        let flushed = self.flush().is_ok();
        if let Some(mut t) = self.transport.take() {
            if flushed && self.session.state() == State::Closed {
                t.linger_close(LINGER);
            } else {
                t.shutdown();
            }
        }
    }

    /// Drop the connection without sending anything more (what
    /// mosquitto_rr does after the response: the server sees the socket
    /// close, and publishes the will if there is one).
    pub fn close_without_disconnect(&mut self) {
        self.drop_transport();
    }

    /// The next event, waiting at most until `deadline` (None: no limit).
    /// The socket is read at least once even when the deadline has already
    /// passed, so `poll(Some(Instant::now()))` takes whatever has arrived.
    /// Errors mean the connection is gone; `connect` may be called again.
    pub fn poll(&mut self, deadline: Option<Instant>) -> Result<Poll, ClientError> {
        let mut read_once = false;
        loop {
            match self.session.next_event(Instant::now()) {
                Ok(Some(e)) => return Ok(Poll::Event(e)),
                Ok(None) => {}
                Err(e) => {
                    let _ = self.flush();
                    self.drop_transport();
                    return Err(e.into());
                }
            }
            self.flush()?;
            if matches!(self.session.state(), State::Closed | State::Refused) {
                return Ok(Poll::Closed);
            }
            if self.interrupted() {
                return Ok(Poll::Interrupted);
            }
            let now = Instant::now();
            if let Err(e) = self.session.tick(now) {
                self.drop_transport();
                return Err(e.into());
            }
            if self.session.has_output() {
                continue;
            }
            let passed = deadline.is_some_and(|d| now >= d);
            if passed && read_once {
                return Ok(Poll::Timeout);
            }
            let mut wait = SLICE;
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(now));
            }
            if let Some(k) = self.session.next_deadline() {
                wait = wait.min(k.saturating_duration_since(now));
            }
            let Some(t) = self.transport.as_mut() else {
                return Err(ClientError::ConnectionLost);
            };
            if let Err(e) = t.set_read_timeout(Some(wait)) {
                self.drop_transport();
                return Err(io_error(e));
            }
            read_once = passed;
            match t.read(&mut self.buf) {
                Ok(0) => {
                    self.drop_transport();
                    return Err(ClientError::ConnectionLost);
                }
                Ok(n) => self.session.feed(self.buf.get(..n).unwrap_or_default()),
                Err(e) if transport::is_timeout(&e) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.drop_transport();
                    return Err(io_error(e));
                }
            }
        }
    }
}
