//! The table of every `mosquitto.conf` directive Mosquitto 2.0 knows.
//!
//! Owns: one row per directive name (aliases get their own row), saying where
//! it applies and what happens to it: parsed into `Config`, refused with the
//! reason midge cannot honour it, or accepted with a warning because Mosquitto
//! itself only warns. Must not: read files or keep state between lines; the
//! parser in `parse.rs` supplies the current listener/bridge/plugin.
//!
//! This file and `parse.rs` use each other on purpose: the parser dispatches
//! each line through this table, and the table's handlers read values with
//! the parser's helpers and write into its state. They are one mechanism
//! (a table-driven parser) in two files for size; cutting the arrow would
//! mean passing the table in as a value, which hides the same dependency.
//!
//! The names were checked against the Mosquitto 2.0.11 binary: every row is
//! known to it, and its other option-like strings are not directives.

use super::parse::{empty, invalid, parse_port, set_once, Args, ListenerRef, Parser};
use super::{
    BridgeDirection, BridgeProtocol, BridgeRestart, BridgeStartType, BridgeTopic, ListenerProtocol,
    LogDest, LogTypes, Plugin, SocketDomain,
};

/// Reads a directive's value into the parser's configuration.
pub(super) type Handler = fn(&mut Parser, &mut Args<'_>) -> Result<(), String>;

/// Where a directive applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Whole broker (also section starts and the default-listener options).
    Global,
    /// The current listener (the default listener before any `listener` line).
    Listener,
    /// Global security, or the current listener's when `per_listener_settings true`.
    Security,
    /// The current `connection` section; an error outside one.
    Bridge,
}

pub(super) enum Kind {
    Handler(Handler),
    /// Known to Mosquitto but not to midge: a load error giving this reason.
    Refused(&'static str),
    /// Accepted, does nothing, and adds this warning (as Mosquitto does).
    Obsolete(&'static str),
    /// `include_dir`: the parser recurses itself.
    IncludeDir,
}

pub(super) struct Directive {
    pub name: &'static str,
    pub scope: Scope,
    pub kind: Kind,
}

/// How midge treats a directive (for a user-facing check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Parsed into `Config`.
    Supported,
    /// Refused at load time, with the reason.
    Refused(&'static str),
    /// Accepted with a warning; has no effect (as in Mosquitto).
    Obsolete(&'static str),
}

/// Names of every directive in the table, in table order. Prefix directives
/// appear as `auth_opt_*` and `plugin_opt_*`.
pub fn all_directives() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|d| d.name)
}

/// How midge treats `name`; `None` if Mosquitto 2.0 does not know it either.
pub fn directive_support(name: &str) -> Option<Support> {
    lookup(name).map(|d| match d.kind {
        Kind::Refused(reason) => Support::Refused(reason),
        Kind::Obsolete(message) => Support::Obsolete(message),
        Kind::Handler(_) | Kind::IncludeDir => Support::Supported,
    })
}

/// The row for `name`, matching `auth_opt_<key>` / `plugin_opt_<key>` by prefix.
pub(super) fn lookup(name: &str) -> Option<&'static Directive> {
    if let Some(d) = TABLE.iter().find(|d| d.name == name) {
        return Some(d);
    }
    let pattern = if name.starts_with("auth_opt_") {
        "auth_opt_*"
    } else if name.starts_with("plugin_opt_") {
        "plugin_opt_*"
    } else {
        return None;
    };
    TABLE.iter().find(|d| d.name == pattern)
}

const fn h(name: &'static str, scope: Scope, handler: Handler) -> Directive {
    Directive {
        name,
        scope,
        kind: Kind::Handler(handler),
    }
}

const fn refused(name: &'static str, scope: Scope, reason: &'static str) -> Directive {
    Directive {
        name,
        scope,
        kind: Kind::Refused(reason),
    }
}

const PSK: &str = "TLS-PSK is not available in rustls, the TLS library midge uses; \
                   use certificate-based TLS (cafile/certfile/keyfile) instead.";
const ENGINE: &str = "OpenSSL engines (hardware keys) are not available with rustls, the TLS \
                      library midge uses; use a PEM key file instead.";

use Scope::{Bridge as B, Global as G, Listener as L, Security as S};

/// Every Mosquitto 2.0 directive, grouped like mosquitto.conf(5).
static TABLE: &[Directive] = &[
    // ---- General ----
    h("per_listener_settings", G, per_listener_settings),
    h("allow_duplicate_messages", G, |p, a| {
        p.notice(
            "The 'allow_duplicate_messages' option is now deprecated and will be removed in a \
             future version. The behaviour will default to true.",
        );
        p.cfg.allow_duplicate_messages = a.bool()?;
        Ok(())
    }),
    h("autosave_interval", G, |p, a| {
        let v = clamp_negative(p, a, "autosave_interval")?;
        p.cfg.autosave_interval = u32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("autosave_on_changes", G, |p, a| {
        p.cfg.autosave_on_changes = a.bool()?;
        Ok(())
    }),
    // midge-only: `snapshot` (Mosquitto's behaviour) or `journal` (every
    // change appended and fsync'd before it is acknowledged).
    h("persistence_mode", G, |p, a| {
        let v = a.string()?;
        p.cfg.persistence_mode = match v.as_str() {
            "snapshot" => super::PersistenceMode::Snapshot,
            "journal" => super::PersistenceMode::Journal,
            _ => return Err(invalid(a.name, &v)),
        };
        Ok(())
    }),
    // midge-only: v5 CONNACK refusals say why in a Reason String. Off by
    // default so the bytes on the wire are Mosquitto 2.0's.
    h("connack_reason_strings", G, |p, a| {
        p.cfg.connack_reason_strings = a.bool()?;
        Ok(())
    }),
    h("check_retain_source", G, |p, a| {
        // Mosquitto counts this as a security option for the
        // per_listener_settings ordering check.
        p.security_touched = true;
        p.cfg.check_retain_source = a.bool()?;
        Ok(())
    }),
    h("clientid_prefixes", G, |p, a| {
        p.notice(
            "The 'clientid_prefixes' option is now deprecated and will be removed in a future \
             version.",
        );
        let v = a.string()?;
        set_once(&mut p.cfg.clientid_prefixes, v, a.name)
    }),
    Directive {
        name: "include_dir",
        scope: G,
        kind: Kind::IncludeDir,
    },
    h("max_inflight_bytes", G, |p, a| {
        p.cfg.max_inflight_bytes = clamp_negative(p, a, "max_inflight_bytes")?;
        Ok(())
    }),
    h("max_inflight_messages", G, |p, a| {
        let v = a.int()?;
        if v > 65535 {
            return Err("max_inflight_messages must be <= 65535.".to_string());
        }
        // Mosquitto: negative and 65535 both mean "no limit" (0).
        p.cfg.max_inflight_messages = if v < 0 || v == 65535 {
            0
        } else {
            u16::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?
        };
        Ok(())
    }),
    h("max_keepalive", G, |p, a| {
        let v = a.int_in(10, 65535)?;
        p.cfg.max_keepalive = u16::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("max_packet_size", G, |p, a| {
        let v = a.int()?;
        // Mosquitto refuses 0 too; midge takes it as the default "no limit".
        if v != 0 && !(20..=i64::from(u32::MAX)).contains(&v) {
            return Err(invalid(a.name, &v.to_string()));
        }
        p.cfg.max_packet_size = u32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("max_queued_bytes", G, |p, a| {
        p.cfg.max_queued_bytes = clamp_negative(p, a, "max_queued_bytes")?;
        Ok(())
    }),
    h("max_queued_messages", G, |p, a| {
        let v = clamp_negative(p, a, "max_queued_messages")?;
        p.cfg.max_queued_messages =
            u32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("memory_limit", G, |p, a| {
        let v = a.int()?;
        p.cfg.memory_limit = u64::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("message_size_limit", G, |p, a| {
        p.notice("It is recommended to replace `message_size_limit` with `max_packet_size`.");
        let v = a.int_in(0, 268_435_455)?;
        p.cfg.message_size_limit = u32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h(
        "persistent_client_expiration",
        G,
        persistent_client_expiration,
    ),
    h("pid_file", G, |p, a| {
        let v = a.string()?;
        set_once(&mut p.cfg.pid_file, v, a.name)
    }),
    h("queue_qos0_messages", G, |p, a| {
        p.cfg.queue_qos0_messages = a.bool()?;
        Ok(())
    }),
    h("retain_available", G, |p, a| {
        p.cfg.retain_available = a.bool()?;
        Ok(())
    }),
    Directive {
        name: "retry_interval",
        scope: G,
        kind: Kind::Obsolete("The retry_interval option is no longer available."),
    },
    h("set_tcp_nodelay", G, |p, a| {
        p.cfg.set_tcp_nodelay = a.bool()?;
        Ok(())
    }),
    h("sys_interval", G, |p, a| {
        let v = a.int_in(0, 65535)?;
        p.cfg.sys_interval = u32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("upgrade_outgoing_qos", G, |p, a| {
        p.cfg.upgrade_outgoing_qos = a.bool()?;
        Ok(())
    }),
    h("user", G, |p, a| {
        let v = a.string()?;
        if !p.first_time("user".to_string()) {
            return Err("Duplicate user value in configuration.".to_string());
        }
        p.cfg.user = v;
        Ok(())
    }),
    // ---- Persistence ----
    h("persistence", G, persistence),
    h("retained_persistence", G, persistence),
    h("persistence_file", G, |p, a| {
        let v = a.string()?;
        if !p.first_time("persistence_file".to_string()) {
            return Err("Duplicate persistence_file value in configuration.".to_string());
        }
        p.cfg.persistence_file = v;
        Ok(())
    }),
    h("persistence_location", G, |p, a| {
        let v = a.string()?;
        if !p.first_time("persistence_location".to_string()) {
            return Err("Duplicate persistence_location value in configuration.".to_string());
        }
        p.cfg.persistence_location = v;
        Ok(())
    }),
    // ---- Logging ----
    h("log_dest", G, log_dest),
    h("log_type", G, log_type),
    h("log_facility", G, |p, a| {
        let v = a.int_in(0, 7)?;
        p.cfg.log_facility = Some(u8::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?);
        Ok(())
    }),
    h("log_timestamp", G, |p, a| {
        p.cfg.log_timestamp = a.bool()?;
        Ok(())
    }),
    h("log_timestamp_format", G, |p, a| {
        let v = a.string()?;
        set_once(&mut p.cfg.log_timestamp_format, v, a.name)
    }),
    h("connection_messages", G, |p, a| {
        p.cfg.connection_messages = a.bool()?;
        Ok(())
    }),
    h("websockets_log_level", G, |p, a| {
        let v = a.int_in(i64::from(i32::MIN), i64::from(i32::MAX))?;
        p.cfg.websockets_log_level =
            i32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("websockets_headers_size", G, |p, a| {
        let v = a.int()?;
        if !(0..=65535).contains(&v) {
            return Err(
                "Websockets headers size must be between 0 and 65535 inclusive.".to_string(),
            );
        }
        // 0 means libwebsockets' default of 1024; store the effective size.
        p.cfg.websockets_headers_size = if v == 0 {
            1024
        } else {
            u32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?
        };
        Ok(())
    }),
    // ---- Listeners ----
    h("listener", G, listener),
    h("port", G, |p, a| {
        p.notice(
            "The 'port' option is now deprecated and will be removed in a future version. \
             Please use 'listener' instead.",
        );
        p.cfg.local_only = false;
        let w = a.need_word()?;
        let port = parse_port(w, false)?;
        if p.default_port_set {
            p.warn("Default listener port specified multiple times. Only the latest will be used.");
        }
        p.default_port_set = true;
        p.default_listener.port = port;
        p.touch_default("port");
        Ok(())
    }),
    h("bind_address", G, |p, a| {
        p.notice(
            "The 'bind_address' option is now deprecated and will be removed in a future \
             version. Please use 'listener' instead.",
        );
        p.cfg.local_only = false;
        let v = a.string()?;
        set_once(
            &mut p.default_listener.address,
            v,
            "default listener bind_address",
        )?;
        p.touch_default("bind_address");
        Ok(())
    }),
    h("bind_interface", L, |p, a| {
        let v = a.string()?;
        set_once(&mut p.listener()?.bind_interface, v, a.name)
    }),
    h("socket_domain", L, |p, a| {
        let w = a.need_word()?;
        let domain = match w {
            "ipv4" => SocketDomain::Ipv4,
            "ipv6" => SocketDomain::Ipv6,
            _ => {
                return Err(format!(
                    "Invalid socket_domain value \"{w}\" in configuration."
                ))
            }
        };
        p.listener()?.socket_domain = Some(domain);
        Ok(())
    }),
    h("protocol", L, |p, a| {
        let w = a.need_word()?;
        let protocol = match w {
            "mqtt" => ListenerProtocol::Mqtt,
            "websockets" => ListenerProtocol::Websockets,
            _ => return Err(invalid(a.name, w)),
        };
        p.listener()?.protocol = protocol;
        Ok(())
    }),
    h("http_dir", L, |p, a| {
        let v = a.string()?;
        set_once(&mut p.listener()?.http_dir, v, a.name)
    }),
    h("max_connections", L, |p, a| {
        let v = a.int()?;
        // Mosquitto: any negative value means unlimited (-1).
        let v = if v < 0 {
            -1
        } else {
            v.min(i64::from(i32::MAX))
        };
        p.listener()?.max_connections =
            i32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("max_qos", L, max_qos),
    h("maximum_qos", L, max_qos),
    h("max_topic_alias", L, |p, a| {
        let v = a.int_in(0, 65535)?;
        p.listener()?.max_topic_alias =
            u16::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("mount_point", L, |p, a| {
        if p.cfg.listeners.is_empty() {
            return Err(
                "You must create a listener before using the mount_point option in the \
                        configuration file."
                    .to_string(),
            );
        }
        let v = a.string()?;
        if v.contains(['+', '#']) {
            return Err(format!(
                "Invalid mount_point '{v}'. Does it contain a wildcard character?"
            ));
        }
        set_once(&mut p.listener()?.mount_point, v, a.name)
    }),
    h("use_username_as_clientid", L, |p, a| {
        let v = a.bool()?;
        p.listener()?.use_username_as_clientid = v;
        Ok(())
    }),
    // ---- Listener TLS ----
    h("cafile", L, |p, a| {
        let v = a.string()?;
        set_once(&mut p.listener()?.tls.cafile, v, a.name)
    }),
    h("capath", L, |p, a| {
        let v = a.string()?;
        set_once(&mut p.listener()?.tls.capath, v, a.name)
    }),
    h("certfile", L, |p, a| {
        let v = a.string()?;
        set_once(&mut p.listener()?.tls.certfile, v, a.name)
    }),
    h("keyfile", L, |p, a| {
        let v = a.string()?;
        set_once(&mut p.listener()?.tls.keyfile, v, a.name)
    }),
    h("crlfile", L, |p, a| {
        let v = a.string()?;
        set_once(&mut p.listener()?.tls.crlfile, v, a.name)
    }),
    h("ciphers", L, |p, a| {
        let v = a.string()?;
        set_once(&mut p.listener()?.tls.ciphers, v, a.name)
    }),
    h("ciphers_tls1.3", L, |p, a| {
        let v = a.string()?;
        set_once(&mut p.listener()?.tls.ciphers_tls13, v, a.name)
    }),
    h("tls_version", L, |p, a| {
        let v = a.string()?;
        check_tls_version(&v, a.name)?;
        set_once(&mut p.listener()?.tls.tls_version, v, a.name)
    }),
    h("require_certificate", L, |p, a| {
        let v = a.bool()?;
        p.listener()?.tls.require_certificate = v;
        Ok(())
    }),
    h("use_identity_as_username", L, |p, a| {
        let v = a.bool()?;
        p.listener()?.tls.use_identity_as_username = v;
        Ok(())
    }),
    h("use_subject_as_username", L, |p, a| {
        let v = a.bool()?;
        p.listener()?.tls.use_subject_as_username = v;
        Ok(())
    }),
    h("tls_keyform", L, |p, a| {
        let v = a.string()?;
        match v.as_str() {
            "pem" => Ok(()),
            "engine" => Err(format!(
                "tls_keyform engine is not supported by midge: {ENGINE}"
            )),
            _ => {
                // Mosquitto silently treats anything but "engine" as pem.
                p.warn(&format!("tls_keyform {v} is not pem or engine; using pem."));
                Ok(())
            }
        }
    }),
    refused(
        "dhparamfile",
        L,
        "rustls, the TLS library midge uses, does not load Diffie-Hellman parameter files; \
         forward secrecy comes from ECDHE key exchange, which is always on. Remove the line.",
    ),
    refused("psk_hint", L, PSK),
    refused("tls_engine", L, ENGINE),
    refused("tls_engine_kpass_sha1", L, ENGINE),
    // ---- Security ----
    h("allow_anonymous", S, |p, a| {
        let v = a.bool()?;
        p.security()?.allow_anonymous = Some(v);
        Ok(())
    }),
    h("allow_zero_length_clientid", S, |p, a| {
        let v = a.bool()?;
        p.security()?.allow_zero_length_clientid = v;
        Ok(())
    }),
    h("auto_id_prefix", S, |p, a| {
        let v = a.string()?;
        let target = p.security_target();
        if !p.first_time(format!("auto_id_prefix/{target:?}")) {
            return Err("Duplicate auto_id_prefix value in configuration.".to_string());
        }
        p.security_at(target)?.auto_id_prefix = v;
        Ok(())
    }),
    h("password_file", S, |p, a| {
        let v = a.string()?;
        set_once(&mut p.security()?.password_file, v, a.name)
    }),
    h("acl_file", S, |p, a| {
        let v = a.string()?;
        set_once(&mut p.security()?.acl_file, v, a.name)
    }),
    h("auth_plugin", S, plugin),
    h("plugin", S, plugin),
    h("auth_opt_*", S, plugin_opt),
    h("plugin_opt_*", S, plugin_opt),
    h("auth_plugin_deny_special_chars", S, |p, a| {
        let name = a.name;
        let plugin_target = p.cur_plugin;
        let plugin = p.plugin(name)?;
        let v = a.bool()?;
        plugin.deny_special_chars = v;
        if let Some((target, _)) = plugin_target {
            p.security_at(target)?.auth_plugin_deny_special_chars = v;
        }
        Ok(())
    }),
    refused("psk_file", S, PSK),
    // ---- Bridges ----
    h("connection", G, |p, a| {
        let name = a.need_word()?;
        if p.cfg.bridges.iter().any(|b| b.name == name) {
            return Err(format!("Duplicate bridge name \"{name}\"."));
        }
        let mut bridge = super::Bridge::new(name);
        bridge.line = p.line;
        bridge.file = p.file.clone();
        p.cfg.bridges.push(bridge);
        p.cur_bridge = Some(p.cfg.bridges.len().saturating_sub(1));
        Ok(())
    }),
    h("address", B, address),
    h("addresses", B, address),
    h("topic", B, topic),
    h("bridge_protocol_version", B, |p, a| {
        let v = a.rest_string().ok_or_else(|| empty(a.name))?;
        let version = match v {
            "mqttv31" => BridgeProtocol::Mqtt31,
            "mqttv311" => BridgeProtocol::Mqtt311,
            "mqttv50" => BridgeProtocol::Mqtt50,
            _ => return Err(invalid(a.name, v)),
        };
        p.bridge()?.protocol_version = version;
        Ok(())
    }),
    h("cleansession", B, |p, a| {
        let v = a.bool()?;
        p.bridge()?.cleansession = v;
        Ok(())
    }),
    h("local_cleansession", B, |p, a| {
        let v = a.bool()?;
        p.bridge()?.local_cleansession = Some(v);
        Ok(())
    }),
    h("keepalive_interval", B, |p, a| {
        let v = a.int()?;
        if v > 65535 {
            return Err("Bridge keepalive value too high.".to_string());
        }
        let v = if v < 5 {
            p.notice("keepalive interval too low, using 5 seconds.");
            5
        } else {
            v
        };
        p.bridge()?.keepalive_interval =
            u16::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("idle_timeout", B, |p, a| {
        let v = at_least_one(p, a, "idle_timeout interval too low, using 1 second.")?;
        p.bridge()?.idle_timeout = v;
        Ok(())
    }),
    h("restart_timeout", B, restart_timeout),
    h("round_robin", B, |p, a| {
        let v = a.bool()?;
        p.bridge()?.round_robin = v;
        Ok(())
    }),
    h("start_type", B, |p, a| {
        let w = a.need_word()?;
        let start = match w {
            "automatic" => BridgeStartType::Automatic,
            "lazy" => BridgeStartType::Lazy,
            "once" => BridgeStartType::Once,
            "manual" => return Err("Manual start_type not supported.".to_string()),
            _ => return Err(format!("Invalid start_type value in configuration ({w}).")),
        };
        p.bridge()?.start_type = start;
        Ok(())
    }),
    h("threshold", B, |p, a| {
        let v = at_least_one(p, a, "threshold too low, using 1 message.")?;
        p.bridge()?.threshold = v;
        Ok(())
    }),
    h("try_private", B, |p, a| {
        let v = a.bool()?;
        p.bridge()?.try_private = v;
        Ok(())
    }),
    h("notifications", B, |p, a| {
        let v = a.bool()?;
        p.bridge()?.notifications = v;
        Ok(())
    }),
    h("notifications_local_only", B, |p, a| {
        let v = a.bool()?;
        p.bridge()?.notifications_local_only = v;
        Ok(())
    }),
    h("notification_topic", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.notification_topic, v, a.name)
    }),
    h("remote_clientid", B, remote_clientid),
    h("clientid", B, remote_clientid),
    h("remote_username", B, remote_username),
    h("username", B, remote_username),
    h("remote_password", B, remote_password),
    h("password", B, remote_password),
    h("local_clientid", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.local_clientid, v, a.name)
    }),
    h("local_username", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.local_username, v, a.name)
    }),
    h("local_password", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.local_password, v, a.name)
    }),
    h("bridge_attempt_unsubscribe", B, |p, a| {
        let v = a.bool()?;
        p.bridge()?.attempt_unsubscribe = v;
        Ok(())
    }),
    h("bridge_bind_address", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.bind_address, v, a.name)
    }),
    h("bridge_max_packet_size", B, |p, a| {
        let v = clamp_negative(p, a, "bridge_max_packet_size")?;
        p.bridge()?.max_packet_size =
            u32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
        Ok(())
    }),
    h("bridge_outgoing_retain", B, |p, a| {
        let v = a.bool()?;
        p.bridge()?.outgoing_retain = v;
        Ok(())
    }),
    // ---- Bridge TLS ----
    h("bridge_cafile", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.tls.cafile, v, a.name)
    }),
    h("bridge_capath", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.tls.capath, v, a.name)
    }),
    h("bridge_certfile", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.tls.certfile, v, a.name)
    }),
    h("bridge_keyfile", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.tls.keyfile, v, a.name)
    }),
    h("bridge_insecure", B, |p, a| {
        let v = a.bool()?;
        let bridge = p.bridge()?;
        bridge.tls.insecure = v;
        let name = bridge.name.clone();
        if v {
            p.warn(&format!("Bridge {name} using insecure mode."));
        }
        Ok(())
    }),
    h("bridge_require_ocsp", B, |p, a| {
        if a.bool()? {
            return Err(
                "bridge_require_ocsp true is not supported by midge: rustls, the TLS \
                        library midge uses, does not check OCSP responses, so the requirement \
                        could not be enforced."
                    .to_string(),
            );
        }
        p.bridge()?.tls.require_ocsp = false;
        Ok(())
    }),
    h("bridge_tls_version", B, |p, a| {
        let v = a.string()?;
        check_tls_version(&v, a.name)?;
        set_once(&mut p.bridge()?.tls.tls_version, v, a.name)
    }),
    h("bridge_alpn", B, |p, a| {
        let v = a.string()?;
        set_once(&mut p.bridge()?.tls.alpn, v, a.name)
    }),
    refused("bridge_identity", B, PSK),
    refused("bridge_psk", B, PSK),
];

/// An integer where Mosquitto turns negatives into 0; midge does too, with a notice.
fn clamp_negative(p: &mut Parser, a: &mut Args<'_>, name: &str) -> Result<u64, String> {
    let v = a.int()?;
    if v < 0 {
        p.notice(&format!("{name} {v} is negative; using 0."));
        return Ok(0);
    }
    u64::try_from(v).map_err(|_| invalid(name, &v.to_string()))
}

/// A bridge count/interval where Mosquitto raises values below 1 to 1.
fn at_least_one(p: &mut Parser, a: &mut Args<'_>, note: &str) -> Result<u32, String> {
    let v = a.int()?;
    if v < 1 {
        p.notice(note);
        return Ok(1);
    }
    u32::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))
}

/// `tlsv1.2` and `tlsv1.3` are accepted; `tlsv1.1` is refused (rustls has no
/// TLS 1.1); anything else is invalid.
fn check_tls_version(v: &str, name: &str) -> Result<(), String> {
    match v {
        "tlsv1.2" | "tlsv1.3" => Ok(()),
        "tlsv1.1" => Err(format!(
            "{name} tlsv1.1 is not supported by midge: rustls, the TLS library midge uses, \
             implements only TLS 1.2 and 1.3. Use tlsv1.2."
        )),
        _ => Err(invalid(name, v)),
    }
}

fn per_listener_settings(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let v = a.bool()?;
    if p.cfg.per_listener_settings {
        // Mosquitto never unsets it once set; say so instead of staying silent.
        if !v {
            p.warn("per_listener_settings was already set to true and cannot be unset; ignored.");
        }
        return Ok(());
    }
    if v && p.security_touched {
        return Err(
            "per_listener_settings must be set before any other security settings.".to_string(),
        );
    }
    p.cfg.per_listener_settings = v;
    Ok(())
}

fn persistence(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    p.cfg.persistence = a.bool()?;
    Ok(())
}

/// `<n><unit>`, unit one of h d w m y (hour, day, week, 30-day month,
/// 365-day year); a bare number is refused, as by Mosquitto.
fn persistent_client_expiration(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let bad = || "Invalid persistent_client_expiration duration in configuration.".to_string();
    let w = a.need_word()?;
    let unit = match w.as_bytes().last() {
        Some(b'h') => 3600,
        Some(b'd') => 86_400,
        Some(b'w') => 86_400 * 7,
        Some(b'm') => 86_400 * 30,
        Some(b'y') => 86_400 * 365,
        _ => return Err(bad()),
    };
    let digits = w.get(..w.len().saturating_sub(1)).ok_or_else(bad)?;
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let seconds = n.checked_mul(unit).filter(|s| *s > 0).ok_or_else(bad)?;
    p.cfg.persistent_client_expiration = Some(seconds);
    Ok(())
}

/// `log_dest` lines accumulate; the first one replaces the default and
/// `none` clears what came before (Mosquitto's bit mask, as a list).
fn log_dest(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let w = a.need_word()?;
    if !p.log_dest_set {
        p.log_dest_set = true;
        p.cfg.log_dest.clear();
    }
    let dest = match w {
        "none" => {
            p.cfg.log_dest = vec![LogDest::None];
            return Ok(());
        }
        "stdout" => LogDest::Stdout,
        "stderr" => LogDest::Stderr,
        "syslog" => LogDest::Syslog,
        "topic" => LogDest::Topic,
        "dlt" => {
            return Err(
                "log_dest dlt is not supported by midge: it has no Diagnostic Log and \
                        Trace (automotive DLT) support. Use syslog, a file or stderr."
                    .to_string(),
            )
        }
        "file" => {
            if p.cfg.log_file.is_some() {
                return Err("Duplicate \"log_dest file\" value.".to_string());
            }
            let path = a
                .rest_string()
                .ok_or_else(|| "Empty \"log_dest file\" value in configuration.".to_string())?;
            p.cfg.log_file = Some(path.to_string());
            LogDest::File
        }
        _ => return Err(invalid(a.name, w)),
    };
    if a.word().is_some() {
        p.warn("Only the first value of a log_dest line is used (as in Mosquitto); give each destination on its own line.");
    }
    p.cfg.log_dest.retain(|d| *d != LogDest::None);
    if !p.cfg.log_dest.contains(&dest) {
        p.cfg.log_dest.push(dest);
    }
    Ok(())
}

/// `log_type` lines accumulate like `log_dest`: the first replaces the
/// default, `none` clears, `all` sets everything.
fn log_type(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let w = a.need_word()?;
    if !p.log_type_set {
        p.log_type_set = true;
        p.cfg.log_type = LogTypes::none();
    }
    let t = &mut p.cfg.log_type;
    match w {
        "none" => *t = LogTypes::none(),
        "all" => *t = LogTypes::all(),
        "debug" => t.debug = true,
        "error" => t.error = true,
        "warning" => t.warning = true,
        "notice" => t.notice = true,
        "information" => t.information = true,
        "subscribe" => t.subscribe = true,
        "unsubscribe" => t.unsubscribe = true,
        "websockets" => t.websockets = true,
        "internal" => t.internal = true,
        _ => return Err(invalid(a.name, w)),
    }
    if a.word().is_some() {
        p.warn("Only the first value of a log_type line is used (as in Mosquitto); give each type on its own line.");
    }
    Ok(())
}

/// `listener <port> [<bind address> | <unix socket path> (port 0)]`.
fn listener(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    p.cfg.local_only = false;
    let w = a.need_word()?;
    let port = parse_port(w, true)?;
    let second = a.word().filter(|s| !s.starts_with('#'));
    if port == 0 && second.is_none() {
        return Err("A listener with port 0 must provide a Unix socket path.".to_string());
    }
    let mut l = super::Listener {
        port,
        line: p.line,
        file: p.file.clone(),
        ..super::Listener::default()
    };
    if port == 0 {
        l.unix_path = second.map(str::to_string);
    } else {
        l.address = second.map(str::to_string);
    }
    p.cfg.listeners.push(l);
    p.cur_listener = ListenerRef::Explicit(p.cfg.listeners.len().saturating_sub(1));
    Ok(())
}

fn max_qos(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let v = a.int()?;
    if !(0..=2).contains(&v) {
        return Err("max_qos must be between 0 and 2 inclusive.".to_string());
    }
    p.listener()?.max_qos = u8::try_from(v).map_err(|_| invalid(a.name, &v.to_string()))?;
    Ok(())
}

fn plugin(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let path = a.string()?;
    let target = p.security_target();
    let security = p.security_at(target)?;
    security.plugins.push(Plugin {
        path,
        options: Vec::new(),
        deny_special_chars: true,
    });
    let index = security.plugins.len().saturating_sub(1);
    p.cur_plugin = Some((target, index));
    Ok(())
}

/// `auth_opt_<key> <value>` / `plugin_opt_<key> <value>` for the last plugin
/// of this file. (Mosquitto 2.0 also insists on keys of three characters or
/// more, a slip in its length check; midge takes any non-empty key.)
fn plugin_opt(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let name = a.name;
    let prefix = if name.starts_with("auth_opt_") {
        "auth_opt_"
    } else {
        "plugin_opt_"
    };
    let key = name.get(prefix.len()..).unwrap_or("");
    let plugin = p.plugin(prefix)?;
    if key.is_empty() {
        return Err(format!("Invalid {prefix} config option."));
    }
    let value = a.rest_string().ok_or_else(|| empty(name))?;
    plugin.options.push((key.to_string(), value.to_string()));
    Ok(())
}

/// `address host[:port] [host[:port] ...]`; a word starting with `#` ends the list.
fn address(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let mut addresses = Vec::new();
    while let Some(w) = a.word() {
        if w.starts_with('#') {
            break;
        }
        // The port follows the last ':', so an IPv6 address needs an explicit port.
        let entry = match w.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), parse_port(port, false)?),
            None => (w.to_string(), 1883),
        };
        addresses.push(entry);
    }
    if addresses.is_empty() {
        return Err("Empty address value in configuration.".to_string());
    }
    let bridge = p.bridge()?;
    if !bridge.addresses.is_empty() {
        return Err(format!(
            "Invalid bridge configuration: a second address line for bridge \"{}\"; list all \
             addresses on one line.",
            bridge.name
        ));
    }
    bridge.addresses = addresses;
    Ok(())
}

/// `topic <pattern> [[[out|in|both] qos] local-prefix remote-prefix]`, with
/// `""` for an empty pattern or prefix. A word starting with `#` after the
/// pattern starts a comment.
fn topic(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let pattern = a.need_word()?;
    let mut rest = Vec::new();
    while let Some(w) = a.word() {
        if w.starts_with('#') {
            break;
        }
        rest.push(w);
    }
    let mut words = rest.into_iter();
    let direction = match words.next() {
        None => BridgeDirection::Out,
        Some(w) => match w.to_ascii_lowercase().as_str() {
            "out" => BridgeDirection::Out,
            "in" => BridgeDirection::In,
            "both" => BridgeDirection::Both,
            _ => return Err(format!("Invalid bridge topic direction '{w}'.")),
        },
    };
    let qos = match words.next() {
        None => 0,
        Some(w) => match w.parse::<u8>() {
            Ok(q) if q <= 2 => q,
            _ => return Err(format!("Invalid bridge QoS level '{w}'.")),
        },
    };
    let prefix = |w: Option<&str>| w.filter(|s| *s != "\"\"").map(str::to_string);
    let local_prefix = prefix(words.next());
    let remote_prefix = prefix(words.next());
    let pattern = if pattern == "\"\"" { "" } else { pattern };
    if pattern.is_empty() && (local_prefix.is_none() || remote_prefix.is_none()) {
        return Err("Invalid bridge remapping.".to_string());
    }
    for (which, value) in [("local", &local_prefix), ("remote", &remote_prefix)] {
        if let Some(v) = value {
            if v.contains(['+', '#']) {
                return Err(format!("Invalid bridge topic {which} prefix '{v}'."));
            }
        }
    }
    p.bridge()?.topics.push(BridgeTopic {
        pattern: pattern.to_string(),
        direction,
        qos,
        local_prefix,
        remote_prefix,
    });
    Ok(())
}

/// `restart_timeout <constant>` or `restart_timeout <base> <cap>`.
fn restart_timeout(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let first = a.int()?;
    let first = if first < 1 {
        p.notice("restart_timeout interval too low, using 1 second.");
        1
    } else {
        first
    };
    let base = u32::try_from(first).map_err(|_| invalid(a.name, &first.to_string()))?;
    let restart = match a.word() {
        None => BridgeRestart::Constant(base),
        Some(w) => {
            let cap: u32 = w.parse().map_err(|_| invalid(a.name, w))?;
            if cap < base {
                return Err("backoff cap is lower than the base in restart_timeout.".to_string());
            }
            BridgeRestart::Backoff { base, cap }
        }
    };
    p.bridge()?.restart_timeout = restart;
    Ok(())
}

fn remote_clientid(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let v = a.string()?;
    set_once(
        &mut p.bridge()?.remote_clientid,
        v,
        "bridge remote clientid",
    )
}

fn remote_username(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let v = a.string()?;
    set_once(
        &mut p.bridge()?.remote_username,
        v,
        "bridge remote_username",
    )
}

fn remote_password(p: &mut Parser, a: &mut Args<'_>) -> Result<(), String> {
    let v = a.string()?;
    set_once(
        &mut p.bridge()?.remote_password,
        v,
        "bridge remote_password",
    )
}
