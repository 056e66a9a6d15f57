//! `mosquitto.conf` -> [`Config`].
//!
//! Owns: reading the main configuration file and the `*.conf` files of its
//! `include_dir` directories, recognising every one of Mosquitto 2.0's
//! directives (one table, see `directives.rs`), applying Mosquitto's defaults,
//! its section rules (`listener`, `connection`, `per_listener_settings`) and its
//! value checks, and reporting the first problem as a [`ConfigError`] carrying
//! `file:line`, worded like Mosquitto's own messages.
//!
//! Must not: open sockets, resolve host names, load certificates, read
//! password/ACL/plugin files, or log. Anything worth telling the user that is
//! not fatal is returned in [`Config::warnings`] / [`Config::notices`] for
//! `main` to log. Depends on `std` only, nothing else in the crate.
//!
//! Sections work as in Mosquitto 2.0: per-listener options go to the latest
//! `listener` of the same file, or to the implicit default listener before
//! one; bridge options go to the latest `connection` of the same file (an
//! error before one); each included file starts with neither. With
//! `per_listener_settings true`, security options follow the listener rule;
//! setting it to true after any security option (or `check_retain_source`) is
//! an error, and once true it cannot be unset (a warning says so).
//!
//! Where midge parses more leniently than Mosquitto 2.0.11 (leading tabs, a
//! `#` after leading blanks, trailing blanks, `max_packet_size 0`, plugin
//! option keys shorter than three characters) it only accepts lines Mosquitto
//! rejects, so every file Mosquitto accepts means the same thing here. Where it
//! is stricter (integers must be numbers: Mosquitto's `atoi` reads `abc` as 0)
//! the error names the directive and the value.

mod directives;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use directives::{all_directives, directive_support, Support};

/// The first fatal problem found while loading a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// File the problem is in (as given, or as built from `include_dir`).
    pub file: String,
    /// 1-based line number; 0 when the problem is not tied to a line
    /// (e.g. the main file cannot be opened).
    pub line: usize,
    /// Mosquitto-style message without the `Error: ` prefix, e.g.
    /// `Unknown configuration variable "x".`
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// Prints the two lines Mosquitto prints (without its timestamps):
    /// `Error: <message>` and, when tied to a line, `Error found at <file>:<line>.`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {}", self.message)?;
        if self.line > 0 {
            write!(f, "\nError found at {}:{}.", self.file, self.line)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Loads the main configuration file at `path` (and its `include_dir`s).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    parse::load_main(path)
}

/// Parses `text` as the main configuration file named `file_name` (used in
/// messages). `include_dir` paths are resolved against the filesystem as
/// given (relative paths against the current directory, like Mosquitto).
pub fn parse_str(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    parse::parse_main(text.as_bytes(), file_name)
}

/// How persistence writes to disk (midge-only directive `persistence_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistenceMode {
    /// Whole-state snapshots on Mosquitto's triggers.
    Snapshot,
    /// Snapshots plus a journal of every change, fsync'd once per event-loop
    /// pass before acknowledgements leave.
    Journal,
}

/// Everything `mosquitto.conf` can say, with Mosquitto 2.0's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Explicit `listener` lines, in file order.
    pub listeners: Vec<Listener>,
    /// The implicit listener configured by `port`/`bind_address` or by
    /// listener options given before any `listener` line. `None` when
    /// Mosquitto would not create it (see `parse.rs`, `default_listener_needed`).
    /// Mosquitto starts it after the explicit listeners.
    pub default_listener: Option<Listener>,
    pub per_listener_settings: bool,
    /// Security options used when `per_listener_settings` is false.
    pub security: Security,
    /// 20; 0 = unlimited.
    pub max_inflight_messages: u16,
    pub max_inflight_bytes: u64,
    /// 1000; 0 = unlimited.
    pub max_queued_messages: u32,
    pub max_queued_bytes: u64,
    pub queue_qos0_messages: bool,
    /// 0 = no limit; at most 268435455.
    pub message_size_limit: u32,
    /// 0 = no limit; otherwise at least 20.
    pub max_packet_size: u32,
    /// 10..=65535, default 65535.
    pub max_keepalive: u16,
    /// Seconds between `$SYS` updates; 0 disables `$SYS`.
    pub sys_interval: u32,
    pub retain_available: bool,
    /// Seconds; `None` = never expire.
    pub persistent_client_expiration: Option<u64>,
    pub upgrade_outgoing_qos: bool,
    pub set_tcp_nodelay: bool,
    pub check_retain_source: bool,
    /// Bytes; 0 = no limit.
    pub memory_limit: u64,
    /// Deprecated. Mosquitto 2.0's conf.c starts it at false (the manual says true).
    pub allow_duplicate_messages: bool,
    pub clientid_prefixes: Option<String>,
    pub pid_file: Option<String>,
    pub user: String,
    pub autosave_interval: u32,
    pub autosave_on_changes: bool,
    /// midge-only `persistence_mode`: snapshots alone (Mosquitto) or a journal.
    pub persistence_mode: PersistenceMode,
    /// midge-only `connack_reason_strings`: a v5 CONNACK refusal carries a
    /// Reason String (Mosquitto 2.0 sends none, so the default is off).
    pub connack_reason_strings: bool,
    pub persistence: bool,
    pub persistence_file: String,
    /// "" = current directory.
    pub persistence_location: String,
    /// Empty = Mosquitto's default (stderr). Never mixes `None` with others.
    pub log_dest: Vec<LogDest>,
    /// Path for `log_dest file <path>`.
    pub log_file: Option<String>,
    pub log_type: LogTypes,
    pub log_timestamp: bool,
    pub log_timestamp_format: Option<String>,
    /// `local<n>` syslog facility, 0..=7; `None` = daemon.
    pub log_facility: Option<u8>,
    pub connection_messages: bool,
    pub websockets_log_level: i32,
    /// Effective size: `0` in the file means the default 1024.
    pub websockets_headers_size: u32,
    pub bridges: Vec<Bridge>,
    /// Non-fatal problems, each as `file:line: message`, for main to log as warnings.
    pub warnings: Vec<String>,
    /// Deprecation notes and Mosquitto's silent clamps, each as
    /// `file:line: message`, for main to log as notices.
    pub notices: Vec<String>,
    /// True when no `listener`, `port` or `bind_address` line was given.
    /// Mosquitto 2.0 then forces `allow_anonymous true` and, if no listener
    /// exists at all, listens on loopback only.
    pub local_only: bool,
    /// Files loaded through `include_dir`, in load order (Mosquitto logs
    /// `Loading config file <path>` for each).
    pub included_files: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: Vec::new(),
            default_listener: None,
            per_listener_settings: false,
            security: Security::default(),
            max_inflight_messages: 20,
            max_inflight_bytes: 0,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            message_size_limit: 0,
            max_packet_size: 0,
            max_keepalive: 65535,
            sys_interval: 10,
            retain_available: true,
            persistent_client_expiration: None,
            upgrade_outgoing_qos: false,
            set_tcp_nodelay: false,
            check_retain_source: true,
            memory_limit: 0,
            allow_duplicate_messages: false,
            clientid_prefixes: None,
            pid_file: None,
            user: "mosquitto".to_string(),
            autosave_interval: 1800,
            autosave_on_changes: false,
            persistence_mode: PersistenceMode::Snapshot,
            connack_reason_strings: false,
            persistence: false,
            persistence_file: "mosquitto.db".to_string(),
            persistence_location: String::new(),
            log_dest: Vec::new(),
            log_file: None,
            log_type: LogTypes::default(),
            log_timestamp: true,
            log_timestamp_format: None,
            log_facility: None,
            connection_messages: true,
            websockets_log_level: 0,
            websockets_headers_size: 1024,
            bridges: Vec::new(),
            warnings: Vec::new(),
            notices: Vec::new(),
            local_only: true,
            included_files: Vec::new(),
        }
    }
}

impl Config {
    /// Listeners to start, in Mosquitto's order: explicit ones, then the default one.
    pub fn all_listeners(&self) -> Vec<&Listener> {
        self.listeners
            .iter()
            .chain(self.default_listener.as_ref())
            .collect()
    }

    /// The security block that governs clients of `listener`.
    pub fn security_for<'a>(&'a self, listener: &'a Listener) -> &'a Security {
        if self.per_listener_settings {
            &listener.security
        } else {
            &self.security
        }
    }

    /// Mosquitto 2.0's effective `allow_anonymous` for clients of `listener`.
    /// Local-only mode (no `listener`/`port` line) forces the global value to
    /// true, so without per_listener_settings anonymous clients are in, even
    /// on a default listener that options like `max_connections` opened on
    /// all interfaces. With per_listener_settings only an unset listener value
    /// becomes true there: an explicit `allow_anonymous false` still refuses
    /// (checked against mosquitto 2.0.11 with `per_listener_settings true`,
    /// `allow_anonymous false`, `password_file ...`).
    ///
    /// The default listener (`port`) with per_listener_settings and no
    /// `allow_anonymous` of its own allows anonymous clients even when other
    /// listeners exist: Mosquitto 2.0.11 turns every unset per-listener value
    /// into false while reading the file, but builds the default listener
    /// only afterwards (in `config__parse_args`), where its value stays
    /// "unset", which its check (`allow_anonymous != false`) lets in. Its own
    /// test `06-bridge-per-listener-settings` relies on it.
    pub fn allow_anonymous(&self, listener: &Listener) -> bool {
        if self.per_listener_settings {
            let unset = self.local_only || listener.is_default;
            return listener.security.allow_anonymous.unwrap_or(unset);
        }
        if self.local_only {
            return true;
        }
        self.security.allow_anonymous.unwrap_or(false)
    }

    /// Log destinations with the default applied (`[Stderr]` when none given).
    pub fn effective_log_dest(&self) -> Vec<LogDest> {
        if self.log_dest.is_empty() {
            vec![LogDest::Stderr]
        } else {
            self.log_dest.clone()
        }
    }

    /// `persistence_location` joined with `persistence_file`, as Mosquitto builds it.
    pub fn persistence_path(&self) -> String {
        if self.persistence_location.is_empty() {
            self.persistence_file.clone()
        } else {
            format!("{}/{}", self.persistence_location, self.persistence_file)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDest {
    Stdout,
    Stderr,
    Syslog,
    /// `$SYS/broker/log/<severity>`.
    Topic,
    /// Path in [`Config::log_file`].
    File,
    None,
}

/// Which message types are logged (`log_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTypes {
    pub debug: bool,
    pub error: bool,
    pub warning: bool,
    pub notice: bool,
    pub information: bool,
    pub subscribe: bool,
    pub unsubscribe: bool,
    pub websockets: bool,
    pub internal: bool,
}

impl Default for LogTypes {
    /// Mosquitto's default: error, warning, notice, information.
    fn default() -> Self {
        LogTypes {
            error: true,
            warning: true,
            notice: true,
            information: true,
            ..LogTypes::none()
        }
    }
}

impl LogTypes {
    /// `log_type all` (also what `-v` means).
    pub fn all() -> Self {
        LogTypes {
            debug: true,
            error: true,
            warning: true,
            notice: true,
            information: true,
            subscribe: true,
            unsubscribe: true,
            websockets: true,
            internal: true,
        }
    }

    /// `log_type none`.
    pub fn none() -> Self {
        LogTypes {
            debug: false,
            error: false,
            warning: false,
            notice: false,
            information: false,
            subscribe: false,
            unsubscribe: false,
            websockets: false,
            internal: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    Mqtt,
    Websockets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDomain {
    Ipv4,
    Ipv6,
}

/// One listening socket and its per-listener options.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// 0 only together with `unix_path`.
    pub port: u16,
    /// Bind address or host name; `None` = all interfaces.
    pub address: Option<String>,
    /// Unix socket path (`listener 0 <path>`).
    pub unix_path: Option<String>,
    pub protocol: ListenerProtocol,
    pub socket_domain: Option<SocketDomain>,
    pub bind_interface: Option<String>,
    /// -1 = unlimited.
    pub max_connections: i32,
    pub mount_point: Option<String>,
    pub max_qos: u8,
    pub max_topic_alias: u16,
    pub use_username_as_clientid: bool,
    pub http_dir: Option<String>,
    pub tls: Tls,
    /// Used when `per_listener_settings` is true.
    pub security: Security,
    /// Where the listener was defined (`listener` line, or for the default
    /// listener the first line that configured it); 0 if unknown.
    pub line: usize,
    /// File of `line`.
    pub file: String,
    /// Mosquitto's default listener (`port`, or listener options before any
    /// `listener` line), as opposed to a `listener` line.
    pub is_default: bool,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            port: 1883,
            address: None,
            unix_path: None,
            protocol: ListenerProtocol::Mqtt,
            socket_domain: None,
            bind_interface: None,
            max_connections: -1,
            mount_point: None,
            max_qos: 2,
            max_topic_alias: 10,
            use_username_as_clientid: false,
            http_dir: None,
            tls: Tls::default(),
            security: Security::default(),
            line: 0,
            file: String::new(),
            is_default: false,
        }
    }
}

impl Listener {
    /// TLS is on when both a certificate and a key are configured.
    pub fn tls_enabled(&self) -> bool {
        self.tls.certfile.is_some() && self.tls.keyfile.is_some()
    }
}

/// Certificate-based TLS options of a listener.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tls {
    pub cafile: Option<String>,
    pub capath: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    pub crlfile: Option<String>,
    pub ciphers: Option<String>,
    /// `ciphers_tls1.3`.
    pub ciphers_tls13: Option<String>,
    /// Minimum version: `tlsv1.2` or `tlsv1.3`; `None` allows 1.2 and 1.3.
    pub tls_version: Option<String>,
    pub require_certificate: bool,
    pub use_identity_as_username: bool,
    pub use_subject_as_username: bool,
}

/// Authentication and access control options (global or per listener).
#[derive(Debug, Clone, PartialEq)]
pub struct Security {
    /// `None` = not set; see [`Config::allow_anonymous`] for Mosquitto's default.
    pub allow_anonymous: Option<bool>,
    pub allow_zero_length_clientid: bool,
    pub auto_id_prefix: String,
    pub password_file: Option<String>,
    pub acl_file: Option<String>,
    /// `auth_plugin` / `plugin` lines, in order.
    pub plugins: Vec<Plugin>,
    /// Last `auth_plugin_deny_special_chars` value given for a plugin of this
    /// block (the authoritative value is per plugin: [`Plugin::deny_special_chars`]).
    pub auth_plugin_deny_special_chars: bool,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            allow_anonymous: None,
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-".to_string(),
            password_file: None,
            acl_file: None,
            plugins: Vec::new(),
            auth_plugin_deny_special_chars: true,
        }
    }
}

/// One `auth_plugin`/`plugin` line and the `auth_opt_*`/`plugin_opt_*` lines after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plugin {
    pub path: String,
    /// (key without the `auth_opt_`/`plugin_opt_` prefix, value), in order.
    pub options: Vec<(String, String)>,
    pub deny_special_chars: bool,
}

impl Plugin {
    /// Value of the last option named `key`.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeDirection {
    In,
    Out,
    Both,
}

/// One `topic` line of a bridge.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeTopic {
    /// The pattern; empty when given as `""`.
    pub pattern: String,
    pub direction: BridgeDirection,
    pub qos: u8,
    /// `None` when absent or given as `""`.
    pub local_prefix: Option<String>,
    pub remote_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeProtocol {
    Mqtt31,
    Mqtt311,
    Mqtt50,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeStartType {
    Automatic,
    Lazy,
    Once,
}

/// `restart_timeout`: decorrelated-jitter backoff, or a constant delay (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeRestart {
    Backoff { base: u32, cap: u32 },
    Constant(u32),
}

/// TLS options of a bridge (the bridge is the TLS client).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BridgeTls {
    pub cafile: Option<String>,
    pub capath: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    pub insecure: bool,
    pub require_ocsp: bool,
    /// `None` = Mosquitto's default `tlsv1.2`.
    pub tls_version: Option<String>,
    pub alpn: Option<String>,
}

/// One `connection <name>` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Bridge {
    pub name: String,
    /// (host, port); port defaults to 1883.
    pub addresses: Vec<(String, u16)>,
    pub topics: Vec<BridgeTopic>,
    pub protocol_version: BridgeProtocol,
    pub cleansession: bool,
    /// `None` = same as `cleansession`.
    pub local_cleansession: Option<bool>,
    pub keepalive_interval: u16,
    pub idle_timeout: u32,
    pub restart_timeout: BridgeRestart,
    pub round_robin: bool,
    pub start_type: BridgeStartType,
    pub threshold: u32,
    pub try_private: bool,
    pub notifications: bool,
    pub notifications_local_only: bool,
    /// `None` = `$SYS/broker/connection/<remote_clientid>/state`.
    pub notification_topic: Option<String>,
    /// `None` = `<hostname>.<name>` (computed by the bridge code).
    pub remote_clientid: Option<String>,
    pub remote_username: Option<String>,
    pub remote_password: Option<String>,
    /// `None` = `local.<remote_clientid>`.
    pub local_clientid: Option<String>,
    pub local_username: Option<String>,
    pub local_password: Option<String>,
    pub attempt_unsubscribe: bool,
    pub bind_address: Option<String>,
    /// 0 = unlimited.
    pub max_packet_size: u32,
    pub outgoing_retain: bool,
    pub tls: BridgeTls,
    /// Line of the `connection` directive.
    pub line: usize,
    pub file: String,
}

impl Bridge {
    /// A bridge section with Mosquitto's defaults.
    pub fn new(name: &str) -> Bridge {
        Bridge {
            name: name.to_string(),
            addresses: Vec::new(),
            topics: Vec::new(),
            protocol_version: BridgeProtocol::Mqtt311,
            cleansession: false,
            local_cleansession: None,
            keepalive_interval: 60,
            idle_timeout: 60,
            restart_timeout: BridgeRestart::Backoff { base: 5, cap: 30 },
            round_robin: false,
            start_type: BridgeStartType::Automatic,
            threshold: 10,
            try_private: true,
            notifications: true,
            notifications_local_only: false,
            notification_topic: None,
            remote_clientid: None,
            remote_username: None,
            remote_password: None,
            local_clientid: None,
            local_username: None,
            local_password: None,
            attempt_unsubscribe: true,
            bind_address: None,
            max_packet_size: 0,
            outgoing_retain: true,
            tls: BridgeTls::default(),
            line: 0,
            file: String::new(),
        }
    }

    /// `local_cleansession` with its default applied.
    pub fn effective_local_cleansession(&self) -> bool {
        self.local_cleansession.unwrap_or(self.cleansession)
    }
}
