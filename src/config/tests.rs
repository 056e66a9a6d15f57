//! Tests for the configuration parser: defaults, every directive of the
//! table, error texts with `file:line`, sections, include_dir, aliases and
//! line syntax. Temporary files live under `std::env::temp_dir()` in
//! uniquely named directories removed on drop.

use super::parse::include_order;
use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

fn ok(text: &str) -> Config {
    match parse_str(text, "test.conf") {
        Ok(c) => c,
        Err(e) => panic!("unexpected error for {text:?}:\n{e}"),
    }
}

fn err(text: &str) -> ConfigError {
    match parse_str(text, "test.conf") {
        Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
        Err(e) => e,
    }
}

/// Asserts the error message and line.
fn err_at(text: &str, line: usize, message: &str) {
    let e = err(text);
    assert_eq!(e.message, message, "for {text:?}");
    assert_eq!(e.line, line, "line for {text:?}");
    assert_eq!(e.file, "test.conf");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "midge-config-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- defaults

#[test]
fn defaults_are_mosquittos() {
    let c = Config::default();
    assert!(c.listeners.is_empty());
    assert_eq!(c.default_listener, None);
    assert!(!c.per_listener_settings);
    assert_eq!(c.max_inflight_messages, 20);
    assert_eq!(c.max_inflight_bytes, 0);
    assert_eq!(c.max_queued_messages, 1000);
    assert_eq!(c.max_queued_bytes, 0);
    assert!(!c.queue_qos0_messages);
    assert_eq!(c.message_size_limit, 0);
    assert_eq!(c.max_packet_size, 0);
    assert_eq!(c.max_keepalive, 65535);
    assert_eq!(c.sys_interval, 10);
    assert!(c.retain_available);
    assert_eq!(c.persistent_client_expiration, None);
    assert!(!c.upgrade_outgoing_qos);
    assert!(!c.set_tcp_nodelay);
    assert!(c.check_retain_source);
    assert_eq!(c.memory_limit, 0);
    assert!(!c.allow_duplicate_messages);
    assert_eq!(c.clientid_prefixes, None);
    assert_eq!(c.pid_file, None);
    assert_eq!(c.user, "mosquitto");
    assert_eq!(c.autosave_interval, 1800);
    assert!(!c.autosave_on_changes);
    assert!(!c.persistence);
    assert_eq!(c.persistence_file, "mosquitto.db");
    assert_eq!(c.persistence_location, "");
    assert_eq!(c.persistence_path(), "mosquitto.db");
    assert!(c.log_dest.is_empty());
    assert_eq!(c.effective_log_dest(), vec![LogDest::Stderr]);
    assert_eq!(c.log_file, None);
    assert!(c.log_timestamp);
    assert_eq!(c.log_timestamp_format, None);
    assert_eq!(c.log_facility, None);
    assert!(c.connection_messages);
    assert_eq!(c.websockets_log_level, 0);
    assert_eq!(c.websockets_headers_size, 1024);
    assert!(c.bridges.is_empty());
    assert!(c.warnings.is_empty());
    assert!(c.local_only);

    let t = c.log_type;
    assert!(t.error && t.warning && t.notice && t.information);
    assert!(!t.debug && !t.subscribe && !t.unsubscribe && !t.websockets && !t.internal);
    let all = LogTypes::all();
    assert!(all.debug && all.subscribe && all.unsubscribe && all.websockets && all.internal);
    assert_eq!(LogTypes::none(), LogTypes { ..LogTypes::none() });
    assert!(!LogTypes::none().error);

    let s = &c.security;
    assert_eq!(s.allow_anonymous, None);
    assert!(s.allow_zero_length_clientid);
    assert_eq!(s.auto_id_prefix, "auto-");
    assert_eq!(s.password_file, None);
    assert_eq!(s.acl_file, None);
    assert!(s.plugins.is_empty());
    assert!(s.auth_plugin_deny_special_chars);

    let l = Listener::default();
    assert_eq!(l.port, 1883);
    assert_eq!(l.address, None);
    assert_eq!(l.unix_path, None);
    assert_eq!(l.protocol, ListenerProtocol::Mqtt);
    assert_eq!(l.socket_domain, None);
    assert_eq!(l.max_connections, -1);
    assert_eq!(l.mount_point, None);
    assert_eq!(l.max_qos, 2);
    assert_eq!(l.max_topic_alias, 10);
    assert!(!l.use_username_as_clientid);
    assert_eq!(l.tls, Tls::default());
    assert!(!l.tls_enabled());

    let b = Bridge::new("b");
    assert_eq!(b.protocol_version, BridgeProtocol::Mqtt311);
    assert!(!b.cleansession);
    assert_eq!(b.local_cleansession, None);
    assert!(!b.effective_local_cleansession());
    assert_eq!(b.keepalive_interval, 60);
    assert_eq!(b.idle_timeout, 60);
    assert_eq!(
        b.restart_timeout,
        BridgeRestart::Backoff { base: 5, cap: 30 }
    );
    assert!(!b.round_robin);
    assert_eq!(b.start_type, BridgeStartType::Automatic);
    assert_eq!(b.threshold, 10);
    assert!(b.try_private);
    assert!(b.notifications);
    assert!(!b.notifications_local_only);
    assert!(b.attempt_unsubscribe);
    assert!(b.outgoing_retain);
    assert_eq!(b.max_packet_size, 0);
    assert!(!b.tls.insecure);
}

#[test]
fn empty_and_comment_only_files_give_defaults() {
    assert_eq!(ok(""), Config::default());
    assert_eq!(
        ok("\n\n# just a comment\n#listener 1883\n   \n"),
        Config::default()
    );
}

// ---------------------------------------------------------------- the table

/// A valid sample line for every directive of the table. Panics for a name
/// without a sample, so a new table row cannot go untested.
fn sample(name: &str, include_dir: &str) -> String {
    let value = match name {
        "per_listener_settings" => "false",
        "allow_duplicate_messages" => "true",
        "autosave_interval" => "60",
        "autosave_on_changes" => "true",
        "persistence_mode" => "journal",
        "connack_reason_strings" => "true",
        "check_retain_source" => "false",
        "clientid_prefixes" => "secure-",
        "include_dir" => include_dir,
        "max_inflight_bytes" => "100",
        "max_inflight_messages" => "10",
        "max_keepalive" => "60",
        "max_packet_size" => "1000",
        "max_queued_bytes" => "100",
        "max_queued_messages" => "10",
        "memory_limit" => "1000000",
        "message_size_limit" => "1000",
        "persistent_client_expiration" => "2h",
        "pid_file" => "/tmp/midge.pid",
        "queue_qos0_messages" => "true",
        "retain_available" => "false",
        "retry_interval" => "20",
        "set_tcp_nodelay" => "true",
        "sys_interval" => "0",
        "upgrade_outgoing_qos" => "true",
        "user" => "nobody",
        "persistence" | "retained_persistence" => "true",
        "persistence_file" => "x.db",
        "persistence_location" => "/tmp",
        "log_dest" => "stdout",
        "log_type" => "all",
        "log_facility" => "3",
        "log_timestamp" => "false",
        "log_timestamp_format" => "%H:%M",
        "connection_messages" => "false",
        "websockets_log_level" => "255",
        "websockets_headers_size" => "4096",
        "listener" => "1884",
        "port" => "1885",
        "bind_address" => "127.0.0.1",
        "bind_interface" => "lo",
        "socket_domain" => "ipv4",
        "protocol" => "websockets",
        "http_dir" => "/tmp",
        "max_connections" => "10",
        "max_qos" | "maximum_qos" => "1",
        "max_topic_alias" => "5",
        "mount_point" => "m/",
        "use_username_as_clientid" => "true",
        "cafile" | "capath" | "certfile" | "keyfile" | "crlfile" => "/etc/x.pem",
        "ciphers" | "ciphers_tls1.3" => "TLS_AES_256_GCM_SHA384",
        "tls_version" => "tlsv1.3",
        "require_certificate" | "use_identity_as_username" | "use_subject_as_username" => "true",
        "tls_keyform" => "pem",
        "dhparamfile" | "psk_hint" | "tls_engine" => "x",
        "tls_engine_kpass_sha1" => "00",
        "allow_anonymous" => "true",
        "allow_zero_length_clientid" => "false",
        "auto_id_prefix" => "x-",
        "password_file" | "acl_file" | "psk_file" => "/etc/x",
        "auth_plugin" | "plugin" => "/usr/lib/other.so",
        "auth_opt_*" => return "auth_opt_key value".to_string(),
        "plugin_opt_*" => return "plugin_opt_key value".to_string(),
        "auth_plugin_deny_special_chars" => "false",
        "connection" => "c2",
        "address" => "h:1884",
        "addresses" => "h1 h2:1",
        "topic" => "a/# both 2",
        "bridge_protocol_version" => "mqttv50",
        "cleansession" | "local_cleansession" => "true",
        "keepalive_interval" | "idle_timeout" => "30",
        "restart_timeout" => "10 60",
        "round_robin" => "true",
        "start_type" => "lazy",
        "threshold" => "5",
        "try_private" | "notifications" => "false",
        "notifications_local_only" => "true",
        "notification_topic" => "n/t",
        "remote_clientid" | "clientid" | "local_clientid" => "id",
        "remote_username" | "username" | "local_username" => "u",
        "remote_password" | "password" | "local_password" => "p",
        "bridge_attempt_unsubscribe" | "bridge_outgoing_retain" => "false",
        "bridge_bind_address" => "127.0.0.1",
        "bridge_max_packet_size" => "1000",
        "bridge_cafile" | "bridge_capath" | "bridge_certfile" | "bridge_keyfile" => "/etc/x.pem",
        "bridge_insecure" => "true",
        "bridge_require_ocsp" => "false",
        "bridge_tls_version" => "tlsv1.3",
        "bridge_alpn" => "mqtt",
        "bridge_identity" | "bridge_psk" => "x",
        other => panic!("no sample value for directive {other}"),
    };
    format!("{name} {value}")
}

/// The sample line inside a context where it is legal: after a listener, a
/// plugin and a bridge section, with the bridge completed afterwards.
fn in_context(name: &str, line: &str) -> String {
    let mut text = String::from("listener 1883\nplugin /usr/lib/x.so\n");
    if name != "connection" {
        text.push_str("connection b\n");
    }
    text.push_str(line);
    text.push('\n');
    if name != "address" && name != "addresses" {
        text.push_str("address h\n");
    }
    if name != "topic" {
        text.push_str("topic t\n");
    }
    text
}

#[test]
fn table_has_every_mosquitto_2_0_directive_once() {
    let names: Vec<&str> = all_directives().collect();
    // Verified against the mosquitto 2.0.11 binary (see directives.rs),
    // plus midge's own `persistence_mode` and `connack_reason_strings`.
    assert_eq!(names.len(), 116 + 2);
    assert!(names.contains(&"persistence_mode"));
    assert!(names.contains(&"connack_reason_strings"));
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate table rows");
    for alias in [
        "maximum_qos",
        "retained_persistence",
        "addresses",
        "clientid",
        "username",
        "password",
        "plugin",
        "plugin_opt_*",
    ] {
        assert!(names.contains(&alias), "{alias} missing");
    }
    // Directives Mosquitto 2.0 does not know must stay unknown.
    for later in [
        "global_plugin",
        "bridge_max_topic_alias",
        "max_topic_alias_broker",
        "websockets_origin",
        "accept_protocol_versions",
    ] {
        assert_eq!(directive_support(later), None, "{later}");
    }
    assert_eq!(
        directive_support("plugin_opt_anything"),
        Some(Support::Supported)
    );
    assert_eq!(
        directive_support("retry_interval").map(|s| matches!(s, Support::Obsolete(_))),
        Some(true)
    );
}

#[test]
fn every_directive_is_accepted_or_refused_with_a_reason() {
    let dir = TempDir::new("every");
    let include = dir.path();
    let baseline = ok(&in_context("", ""));
    // Samples that set a value equal to the default.
    let no_change = [
        "per_listener_settings",
        "tls_keyform",
        "bridge_require_ocsp",
    ];
    for name in all_directives() {
        let line = sample(name, &include);
        let text = in_context(name, &line);
        match directive_support(name) {
            Some(Support::Refused(reason)) => {
                let e = err(&text);
                assert!(
                    e.message.contains("not supported by midge") && e.message.contains(reason),
                    "{name}: {e}"
                );
                assert!(!reason.is_empty());
                assert_eq!(e.line, 4, "{name}");
            }
            Some(Support::Obsolete(message)) => {
                let c = ok(&text);
                assert_eq!(
                    c.warnings,
                    vec![format!("test.conf:4: {message}")],
                    "{name}"
                );
            }
            Some(Support::Supported) => {
                let c = ok(&text);
                if !no_change.contains(&name) && name != "include_dir" {
                    assert_ne!(c, baseline, "{name}: sample changed nothing");
                }
            }
            None => panic!("{name} from the table is not found by lookup"),
        }
    }
}

#[test]
fn refused_directives_name_the_reason() {
    for (line, needle) in [
        ("listener 8883\npsk_hint hint", "TLS-PSK"),
        ("psk_file /etc/psk", "TLS-PSK"),
        ("listener 8883\ndhparamfile /etc/dh.pem", "Diffie-Hellman"),
        ("listener 8883\ntls_engine pkcs11", "engines"),
        ("listener 8883\ntls_engine_kpass_sha1 00", "engines"),
        ("listener 8883\ntls_keyform engine", "engines"),
        ("listener 8883\ntls_version tlsv1.1", "TLS 1.2 and 1.3"),
        ("log_dest dlt", "Diagnostic Log and Trace"),
        ("connection b\nbridge_identity id", "TLS-PSK"),
        ("connection b\nbridge_psk 0011", "TLS-PSK"),
        (
            "connection b\nbridge_tls_version tlsv1.1",
            "TLS 1.2 and 1.3",
        ),
        ("connection b\nbridge_require_ocsp true", "OCSP"),
    ] {
        let e = err(line);
        assert!(e.message.contains("not supported by midge"), "{line}: {e}");
        assert!(e.message.contains(needle), "{line}: {e}");
        assert_eq!(e.line, line.lines().count(), "{line}");
    }
}

// ---------------------------------------------------------------- errors

#[test]
fn unknown_directive_is_fatal_with_mosquittos_text() {
    let e = err("listener 1883\n\nfoo bar\n");
    assert_eq!(e.message, "Unknown configuration variable \"foo\".");
    assert_eq!(e.line, 3);
    assert_eq!(
        e.to_string(),
        "Error: Unknown configuration variable \"foo\".\nError found at test.conf:3."
    );
    // Tabs do not separate words, as in Mosquitto.
    err_at(
        "allow_anonymous\ttrue",
        1,
        "Unknown configuration variable \"allow_anonymous\ttrue\".",
    );
    // Case matters.
    err_at(
        "Listener 1883",
        1,
        "Unknown configuration variable \"Listener\".",
    );
}

#[test]
fn error_display_without_line() {
    let e = ConfigError {
        file: "x.conf".into(),
        line: 0,
        message: "Unable to open config file x.conf.".into(),
    };
    assert_eq!(e.to_string(), "Error: Unable to open config file x.conf.");
}

#[test]
fn bad_values_name_the_directive_and_value() {
    for (text, line, message) in [
        ("allow_anonymous yes", 1, "Invalid allow_anonymous value (yes)."),
        ("allow_anonymous TRUE", 1, "Invalid allow_anonymous value (TRUE)."),
        ("\nlog_timestamp maybe", 2, "Invalid log_timestamp value (maybe)."),
        ("max_keepalive 5", 1, "Invalid max_keepalive value (5)."),
        ("max_keepalive 65536", 1, "Invalid max_keepalive value (65536)."),
        ("max_keepalive abc", 1, "Invalid max_keepalive value (abc)."),
        ("message_size_limit 268435456", 1, "Invalid message_size_limit value (268435456)."),
        ("message_size_limit -1", 1, "Invalid message_size_limit value (-1)."),
        ("max_packet_size 19", 1, "Invalid max_packet_size value (19)."),
        ("max_packet_size -1", 1, "Invalid max_packet_size value (-1)."),
        ("max_inflight_messages 65536", 1, "max_inflight_messages must be <= 65535."),
        ("max_queued_messages 1x", 1, "Invalid max_queued_messages value (1x)."),
        ("sys_interval 65536", 1, "Invalid sys_interval value (65536)."),
        ("memory_limit -1", 1, "Invalid memory_limit value (-1)."),
        ("log_facility 8", 1, "Invalid log_facility value (8)."),
        ("websockets_headers_size 65536", 1, "Websockets headers size must be between 0 and 65535 inclusive."),
        ("port 0", 1, "Invalid port value (0)."),
        ("port 65536", 1, "Invalid port value (65536)."),
        ("listener 70000", 1, "Invalid port value (70000)."),
        ("listener http", 1, "Invalid port value (http)."),
        ("listener 0", 1, "A listener with port 0 must provide a Unix socket path."),
        ("listener 0 # no path", 1, "A listener with port 0 must provide a Unix socket path."),
        ("listener 1883\nmax_qos 3", 2, "max_qos must be between 0 and 2 inclusive."),
        ("listener 1883\nmax_topic_alias 65536", 2, "Invalid max_topic_alias value (65536)."),
        ("listener 1883\nsocket_domain ipv5", 2, "Invalid socket_domain value \"ipv5\" in configuration."),
        ("listener 1883\nprotocol http", 2, "Invalid protocol value (http)."),
        ("listener 1883\ntls_version tlsv1.0", 2, "Invalid tls_version value (tlsv1.0)."),
        ("listener 1883\nmount_point a/#", 2, "Invalid mount_point 'a/#'. Does it contain a wildcard character?"),
        ("mount_point a/", 1, "You must create a listener before using the mount_point option in the configuration file."),
        ("persistent_client_expiration 100", 1, "Invalid persistent_client_expiration duration in configuration."),
        ("persistent_client_expiration 0d", 1, "Invalid persistent_client_expiration duration in configuration."),
        ("persistent_client_expiration xd", 1, "Invalid persistent_client_expiration duration in configuration."),
        ("persistent_client_expiration 99999999999999999y", 1, "Invalid persistent_client_expiration duration in configuration."),
        ("log_dest somewhere", 1, "Invalid log_dest value (somewhere)."),
        ("log_type chatty", 1, "Invalid log_type value (chatty)."),
        ("log_dest file /a\nlog_dest file /b", 2, "Duplicate \"log_dest file\" value."),
        ("password_file /a\npassword_file /b", 2, "Duplicate password_file value in configuration."),
        ("user a\nuser b", 2, "Duplicate user value in configuration."),
        ("listener 1883\ncafile /a\ncafile /b", 3, "Duplicate cafile value in configuration."),
        ("auth_opt_key value", 1, "An auth_opt_ option exists in the config file without an auth_plugin."),
        ("plugin_opt_key value", 1, "A plugin_opt_ option exists in the config file without an auth_plugin."),
        ("auth_plugin_deny_special_chars false", 1, "An auth_plugin_deny_special_chars option exists in the config file without an auth_plugin."),
        ("plugin /x.so\nplugin_opt_ value", 2, "Invalid plugin_opt_ config option."),
        ("connection a\nconnection a", 2, "Duplicate bridge name \"a\"."),
        ("connection a\nstart_type manual", 2, "Manual start_type not supported."),
        ("connection a\nstart_type sometimes", 2, "Invalid start_type value in configuration (sometimes)."),
        ("connection a\nbridge_protocol_version mqttv5", 2, "Invalid bridge_protocol_version value (mqttv5)."),
        ("connection a\nkeepalive_interval 65536", 2, "Bridge keepalive value too high."),
        ("connection a\nrestart_timeout 10 5", 2, "backoff cap is lower than the base in restart_timeout."),
        ("connection a\naddress h:0", 2, "Invalid port value (0)."),
        ("connection a\ntopic a sideways", 2, "Invalid bridge topic direction 'sideways'."),
        ("connection a\ntopic a in 3", 2, "Invalid bridge QoS level '3'."),
        ("connection a\ntopic \"\" in 1 l/ \"\"", 2, "Invalid bridge remapping."),
        ("connection a\ntopic a in 1 l/+ r/", 2, "Invalid bridge topic local prefix 'l/+'."),
        ("per_listener_settings maybe", 1, "Invalid per_listener_settings value (maybe)."),
    ] {
        err_at(text, line, message);
    }
}

#[test]
fn missing_values_are_errors() {
    for (text, line, message) in [
        (
            "allow_anonymous",
            1,
            "Empty allow_anonymous value in configuration.",
        ),
        (
            "max_inflight_messages",
            1,
            "Empty max_inflight_messages value in configuration.",
        ),
        ("pid_file", 1, "Empty pid_file value in configuration."),
        ("pid_file    ", 1, "Empty pid_file value in configuration."),
        ("listener", 1, "Empty listener value in configuration."),
        ("log_type", 1, "Empty log_type value in configuration."),
        ("log_dest", 1, "Empty log_dest value in configuration."),
        (
            "log_dest file",
            1,
            "Empty \"log_dest file\" value in configuration.",
        ),
        (
            "persistent_client_expiration",
            1,
            "Empty persistent_client_expiration value in configuration.",
        ),
        (
            "include_dir",
            1,
            "Empty include_dir value in configuration.",
        ),
        ("connection", 1, "Empty connection value in configuration."),
        (
            "listener 1883\nmax_connections",
            2,
            "Empty max_connections value in configuration.",
        ),
        ("plugin", 1, "Empty plugin value in configuration."),
        (
            "plugin /x.so\nplugin_opt_key",
            2,
            "Empty plugin_opt_key value in configuration.",
        ),
        (
            "connection a\naddress",
            2,
            "Empty address value in configuration.",
        ),
        (
            "connection a\naddress # comment",
            2,
            "Empty address value in configuration.",
        ),
        (
            "connection a\ntopic",
            2,
            "Empty topic value in configuration.",
        ),
        (
            "connection a\nrestart_timeout",
            2,
            "Empty restart_timeout value in configuration.",
        ),
        (
            "connection a\nbridge_protocol_version",
            2,
            "Empty bridge_protocol_version value in configuration.",
        ),
    ] {
        err_at(text, line, message);
    }
}

// ---------------------------------------------------------------- listeners

#[test]
fn listener_sections_collect_their_options() {
    let c = ok("listener 1883\n\
                max_connections 100\n\
                mount_point tenant-a/\n\
                listener 8883 192.0.2.1\n\
                certfile /etc/c.pem\n\
                keyfile /etc/k.pem\n\
                require_certificate true\n\
                use_identity_as_username true\n\
                tls_version tlsv1.3\n\
                maximum_qos 1\n\
                listener 0 /run/midge.sock\n\
                listener 9001\n\
                protocol websockets\n\
                http_dir /srv/www\n\
                socket_domain ipv6\n\
                max_topic_alias 0\n\
                use_username_as_clientid true\n");
    assert_eq!(c.listeners.len(), 4);
    assert!(!c.local_only);
    assert_eq!(c.default_listener, None);
    let l0 = &c.listeners[0];
    assert_eq!((l0.port, l0.line), (1883, 1));
    assert_eq!(l0.file, "test.conf");
    assert_eq!(l0.max_connections, 100);
    assert_eq!(l0.mount_point.as_deref(), Some("tenant-a/"));
    assert!(!l0.tls_enabled());
    let l1 = &c.listeners[1];
    assert_eq!(l1.port, 8883);
    assert_eq!(l1.address.as_deref(), Some("192.0.2.1"));
    assert!(l1.tls_enabled());
    assert!(l1.tls.require_certificate && l1.tls.use_identity_as_username);
    assert_eq!(l1.tls.tls_version.as_deref(), Some("tlsv1.3"));
    assert_eq!(l1.max_qos, 1);
    assert_eq!(l1.max_connections, -1);
    let l2 = &c.listeners[2];
    assert_eq!(
        (l2.port, l2.unix_path.as_deref(), l2.address.as_deref()),
        (0, Some("/run/midge.sock"), None)
    );
    let l3 = &c.listeners[3];
    assert_eq!(l3.protocol, ListenerProtocol::Websockets);
    assert_eq!(l3.http_dir.as_deref(), Some("/srv/www"));
    assert_eq!(l3.socket_domain, Some(SocketDomain::Ipv6));
    assert_eq!(l3.max_topic_alias, 0);
    assert!(l3.use_username_as_clientid);
    assert_eq!(c.all_listeners().len(), 4);
}

#[test]
fn listener_trailing_comment_and_negative_max_connections() {
    let c = ok("listener 1883 # main\nmax_connections -5\n");
    assert_eq!(c.listeners[0].address, None);
    assert_eq!(c.listeners[0].max_connections, -1);
}

#[test]
fn port_and_bind_address_configure_the_default_listener() {
    let c = ok("port 1884\nbind_address 127.0.0.1\nmax_connections 7\n");
    let d = c.default_listener.clone().expect("default listener");
    assert_eq!(d.port, 1884);
    assert_eq!(d.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(d.max_connections, 7);
    assert_eq!(d.line, 1);
    assert!(c.listeners.is_empty());
    assert!(!c.local_only);
    assert_eq!(c.notices.len(), 2, "{:?}", c.notices);
    assert!(c.notices[0].starts_with("test.conf:1: The 'port' option is now deprecated"));
    // Explicit listeners start first, then the default one.
    let c = ok("port 1884\nlistener 1885\n");
    let ports: Vec<u16> = c.all_listeners().iter().map(|l| l.port).collect();
    assert_eq!(ports, vec![1885, 1884]);
    let c = ok("port 1884\nport 1885\n");
    assert_eq!(c.default_listener.map(|l| l.port), Some(1885));
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn options_before_any_listener_go_to_the_default_listener() {
    // max_connections alone creates the default listener on port 1883, as in
    // Mosquitto 2.0 (which then listens on all interfaces).
    let c = ok("max_connections 5\nlistener 1884\nmax_connections 6\n");
    let d = c.default_listener.clone().expect("default listener");
    assert_eq!((d.port, d.max_connections, d.line), (1883, 5, 1));
    assert_eq!(c.listeners[0].max_connections, 6);
    assert!(!c.local_only);
    // Without any listener/port line Mosquitto stays "local only" and so
    // allows anonymous clients, even on this all-interfaces listener.
    let c = ok("max_connections 5\n");
    let d = c.default_listener.clone().expect("default listener");
    assert!(c.local_only);
    assert!(c.allow_anonymous(&d));

    // max_topic_alias does not create it: the setting is lost, with a warning.
    let c = ok("max_topic_alias 5\nlistener 1884\n");
    assert_eq!(c.default_listener, None);
    assert_eq!(c.listeners[0].max_topic_alias, 10);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].starts_with("test.conf:1: max_topic_alias was given before any listener"));
}

#[test]
fn allow_anonymous_follows_mosquitto_2_0() {
    let c = ok("allow_anonymous false\n");
    // Local-only mode forces anonymous access, as Mosquitto 2.0 does.
    assert!(c.local_only);
    assert!(c.allow_anonymous(&Listener::default()));
    let c = ok("listener 1883\n");
    assert!(!c.allow_anonymous(&c.listeners[0]));
    let c = ok("listener 1883\nallow_anonymous true\n");
    assert!(c.allow_anonymous(&c.listeners[0]));
}

#[test]
fn per_listener_allow_anonymous_false_survives_local_only_mode() {
    // Mosquitto 2.0.11: password_file creates the default listener (1883, all
    // interfaces) while local_only stays true; its own `false` still refuses.
    let c = ok("per_listener_settings true\nallow_anonymous false\npassword_file /etc/pw\n");
    let d = c.default_listener.clone().expect("default listener");
    assert!(c.local_only);
    assert!(!c.allow_anonymous(&d));
    // Unset, it is allowed there, as in Mosquitto.
    let c = ok("per_listener_settings true\npassword_file /etc/pw\n");
    let d = c.default_listener.clone().expect("default listener");
    assert!(c.allow_anonymous(&d));
}

#[test]
fn per_listener_unset_allow_anonymous_on_the_port_listener_is_allowed() {
    // Mosquitto 2.0.11 (its test 06-bridge-per-listener-settings): `port`
    // plus a `listener`, per_listener_settings, no allow_anonymous: the
    // default listener lets anonymous clients in, the `listener` does not.
    let c = ok("per_listener_settings true\nport 1885\nlistener 1886 127.0.0.1\n");
    assert!(!c.local_only);
    let d = c.default_listener.clone().expect("default listener");
    assert!(c.allow_anonymous(&d));
    assert!(!c.allow_anonymous(&c.listeners[0]));
    // Its own explicit false still refuses.
    let c = ok("per_listener_settings true\nport 1885\nallow_anonymous false\nlistener 1886\n");
    let d = c.default_listener.clone().expect("default listener");
    assert!(!c.allow_anonymous(&d));
    // Without per_listener_settings the global rule holds.
    let c = ok("port 1885\nlistener 1886\n");
    let d = c.default_listener.clone().expect("default listener");
    assert!(!c.allow_anonymous(&d));
}

// ---------------------------------------------------------------- security

#[test]
fn security_is_global_without_per_listener_settings() {
    let c = ok("listener 1883\n\
                allow_anonymous true\n\
                password_file /etc/pw\n\
                listener 1884\n\
                acl_file /etc/acl\n\
                auto_id_prefix gen-\n\
                allow_zero_length_clientid false\n");
    assert_eq!(c.security.allow_anonymous, Some(true));
    assert_eq!(c.security.password_file.as_deref(), Some("/etc/pw"));
    assert_eq!(c.security.acl_file.as_deref(), Some("/etc/acl"));
    assert_eq!(c.security.auto_id_prefix, "gen-");
    assert!(!c.security.allow_zero_length_clientid);
    assert_eq!(c.listeners[0].security, Security::default());
    assert_eq!(c.listeners[1].security, Security::default());
    assert!(std::ptr::eq(c.security_for(&c.listeners[0]), &c.security));
}

#[test]
fn per_listener_settings_moves_security_into_listeners() {
    let c = ok("per_listener_settings true\n\
                listener 1883\n\
                allow_anonymous true\n\
                listener 1884\n\
                password_file /etc/pw\n\
                plugin /usr/lib/mosquitto_dynamic_security.so\n\
                plugin_opt_config_file /var/lib/dynsec.json\n\
                auth_plugin_deny_special_chars false\n");
    assert!(c.per_listener_settings);
    assert_eq!(c.security, Security::default());
    let (a, b) = (&c.listeners[0], &c.listeners[1]);
    assert_eq!(a.security.allow_anonymous, Some(true));
    assert_eq!(a.security.password_file, None);
    assert_eq!(b.security.allow_anonymous, None);
    assert_eq!(b.security.password_file.as_deref(), Some("/etc/pw"));
    let plugin = &b.security.plugins[0];
    assert_eq!(plugin.path, "/usr/lib/mosquitto_dynamic_security.so");
    assert_eq!(plugin.option("config_file"), Some("/var/lib/dynsec.json"));
    assert!(!plugin.deny_special_chars);
    assert!(!b.security.auth_plugin_deny_special_chars);
    assert!(c.allow_anonymous(a));
    assert!(!c.allow_anonymous(b));
    assert!(std::ptr::eq(c.security_for(b), &b.security));
}

#[test]
fn per_listener_settings_must_come_before_security_options() {
    err_at(
        "password_file /etc/pw\nper_listener_settings true\n",
        2,
        "per_listener_settings must be set before any other security settings.",
    );
    err_at(
        "check_retain_source true\nper_listener_settings true\n",
        2,
        "per_listener_settings must be set before any other security settings.",
    );
    // Listeners alone are fine, and false is always fine.
    assert!(ok("listener 1883\nper_listener_settings true\n").per_listener_settings);
    assert!(!ok("password_file /p\nper_listener_settings false\n").per_listener_settings);
    // Once set it stays set; unsetting is reported.
    let c = ok("per_listener_settings true\nper_listener_settings false\n");
    assert!(c.per_listener_settings);
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn plugins_and_their_options() {
    let c = ok("auth_plugin /a.so\n\
                auth_opt_host db.example\n\
                auth_opt_query select * from users\n\
                plugin /b.so\n\
                plugin_opt_x 1\n");
    let p = &c.security.plugins;
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].path, "/a.so");
    assert_eq!(
        p[0].options,
        vec![
            ("host".to_string(), "db.example".to_string()),
            ("query".to_string(), "select * from users".to_string())
        ]
    );
    assert!(p[0].deny_special_chars);
    assert_eq!(p[1].option("x"), Some("1"));
    assert_eq!(p[1].option("host"), None);
}

// ---------------------------------------------------------------- bridges

#[test]
fn bridge_sections() {
    let c = ok("connection one\n\
                addresses 192.0.2.1 192.0.2.2:8883 # backups\n\
                topic sensors/# out 1 \"\" site/\n\
                topic cmd/# In 2 local/ remote/\n\
                topic \"\" both 0 a/b c/d\n\
                topic status\n\
                clientid one-id\n\
                username u\n\
                password p\n\
                cleansession true\n\
                keepalive_interval 2\n\
                restart_timeout 20\n\
                start_type once\n\
                bridge_insecure true\n\
                connection two\n\
                address example.org\n\
                topic # both\n\
                local_cleansession false\n\
                restart_timeout 3 9\n");
    assert_eq!(c.bridges.len(), 2);
    let one = &c.bridges[0];
    assert_eq!((one.name.as_str(), one.line), ("one", 1));
    assert_eq!(
        one.addresses,
        vec![
            ("192.0.2.1".to_string(), 1883),
            ("192.0.2.2".to_string(), 8883)
        ]
    );
    assert_eq!(
        one.topics[0],
        BridgeTopic {
            pattern: "sensors/#".into(),
            direction: BridgeDirection::Out,
            qos: 1,
            local_prefix: None,
            remote_prefix: Some("site/".into()),
        }
    );
    assert_eq!(one.topics[1].direction, BridgeDirection::In);
    assert_eq!(one.topics[1].local_prefix.as_deref(), Some("local/"));
    assert_eq!(one.topics[2].pattern, "");
    assert_eq!(one.topics[2].direction, BridgeDirection::Both);
    assert_eq!(
        (one.topics[3].direction, one.topics[3].qos),
        (BridgeDirection::Out, 0)
    );
    assert_eq!(one.remote_clientid.as_deref(), Some("one-id"));
    assert_eq!(one.remote_username.as_deref(), Some("u"));
    assert_eq!(one.remote_password.as_deref(), Some("p"));
    assert!(one.cleansession && one.effective_local_cleansession());
    assert_eq!(one.keepalive_interval, 5, "raised to the minimum");
    assert_eq!(one.restart_timeout, BridgeRestart::Constant(20));
    assert_eq!(one.start_type, BridgeStartType::Once);
    assert!(one.tls.insecure);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("Bridge one using insecure mode.")));
    let two = &c.bridges[1];
    assert_eq!(two.addresses, vec![("example.org".to_string(), 1883)]);
    assert_eq!(two.topics[0].pattern, "#");
    assert_eq!(two.local_cleansession, Some(false));
    assert_eq!(
        two.restart_timeout,
        BridgeRestart::Backoff { base: 3, cap: 9 }
    );
}

#[test]
fn bridge_directive_outside_a_connection_is_an_error() {
    for (text, line) in [
        ("address 192.0.2.1\n", 1),
        ("listener 1883\n\ntopic a/#\n", 3),
        ("remote_clientid x\n", 1),
        ("bridge_cafile /etc/ca.pem\n", 1),
    ] {
        let e = err(text);
        assert_eq!(e.line, line, "{text}");
        assert!(e.message.starts_with("Invalid bridge configuration"), "{e}");
        assert!(e.message.contains("connection <name>"), "{e}");
    }
}

#[test]
fn bridge_checks_after_reading() {
    let e = err("connection a\ntopic x\n");
    assert_eq!(
        e.message,
        "Invalid bridge configuration: no remote addresses defined."
    );
    assert_eq!(e.line, 1);
    let e = err("listener 1883\nconnection a\naddress h\n");
    assert_eq!(
        e.message,
        "Invalid bridge configuration: no topics defined."
    );
    assert_eq!(e.line, 2);
    let e = err("connection a\naddress h\ntopic t\nlocal_clientid same\n\
                 connection b\naddress h\ntopic t\nlocal_clientid same\n");
    assert!(
        e.message
            .starts_with("Bridge local_clientid 'same' is not unique."),
        "{e}"
    );
    assert_eq!(e.line, 5);
    err_at(
        "connection a\naddress h\naddress g\n",
        3,
        "Invalid bridge configuration: a second address line for bridge \"a\"; list all \
         addresses on one line.",
    );
}

#[test]
fn listener_options_after_a_connection_still_reach_the_listener() {
    // Sections are independent in Mosquitto: a connection line does not end
    // the listener section, and listener lines do not end the bridge section.
    let c =
        ok("listener 1883\nconnection a\naddress h\nmax_connections 3\nlistener 1884\ntopic t\n");
    assert_eq!(c.listeners[0].max_connections, 3);
    assert_eq!(c.bridges[0].topics.len(), 1);
}

// ---------------------------------------------------------------- aliases

#[test]
fn aliases_set_the_same_field() {
    let a = ok("listener 1883\nmaximum_qos 1\nretained_persistence true\n");
    let b = ok("listener 1883\nmax_qos 1\npersistence true\n");
    assert_eq!(a, b);
    assert_eq!(a.listeners[0].max_qos, 1);
    assert!(a.persistence);

    let a = ok("connection c\naddresses h\ntopic t\nclientid i\nusername u\npassword p\n");
    let b = ok("connection c\naddress h\ntopic t\nremote_clientid i\nremote_username u\nremote_password p\n");
    assert_eq!(a, b);

    let a = ok("plugin /x.so\nplugin_opt_k v\n");
    let b = ok("auth_plugin /x.so\nauth_opt_k v\n");
    assert_eq!(a, b);

    // An alias and its original are one option: giving both is a duplicate.
    err_at(
        "connection c\nclientid a\nremote_clientid b\n",
        3,
        "Duplicate bridge remote clientid value in configuration.",
    );
}

// ---------------------------------------------------------------- values

#[test]
fn warnings_and_notices_carry_file_and_line() {
    let c = ok("listener 1883\nretry_interval 20\n");
    assert_eq!(
        c.warnings,
        vec!["test.conf:2: The retry_interval option is no longer available.".to_string()]
    );
    let c = ok("max_queued_messages -3\n");
    assert_eq!(c.max_queued_messages, 0);
    assert_eq!(
        c.notices,
        vec!["test.conf:1: max_queued_messages -3 is negative; using 0.".to_string()]
    );
}

#[test]
fn numeric_values_and_mosquitto_clamps() {
    let c = ok(
        "max_inflight_messages 65535\nmax_packet_size 0\nsys_interval 0\n\
                max_keepalive 10\nmessage_size_limit 268435455\nwebsockets_headers_size 0\n\
                autosave_interval -1\nmemory_limit 0\nmax_inflight_bytes 5000000000\n",
    );
    assert_eq!(c.max_inflight_messages, 0, "65535 means no limit");
    assert_eq!(c.max_packet_size, 0);
    assert_eq!(c.sys_interval, 0);
    assert_eq!(c.max_keepalive, 10);
    assert_eq!(c.message_size_limit, 268_435_455);
    assert_eq!(c.websockets_headers_size, 1024);
    assert_eq!(c.autosave_interval, 0);
    assert_eq!(c.max_inflight_bytes, 5_000_000_000);
    assert_eq!(ok("max_inflight_messages -1\n").max_inflight_messages, 0);
    assert_eq!(ok("max_packet_size 20\n").max_packet_size, 20);
    // Extra words after a number are ignored, as with atoi in Mosquitto.
    assert_eq!(ok("sys_interval 30 seconds\n").sys_interval, 30);
    let c =
        ok("connection b\naddress h\ntopic t\nthreshold 0\nidle_timeout -3\nrestart_timeout 0\n");
    assert_eq!(c.bridges[0].threshold, 1);
    assert_eq!(c.bridges[0].idle_timeout, 1);
    assert_eq!(c.bridges[0].restart_timeout, BridgeRestart::Constant(1));
}

#[test]
fn booleans_accept_what_mosquitto_accepts() {
    assert!(ok("queue_qos0_messages true\n").queue_qos0_messages);
    assert!(ok("queue_qos0_messages 1\n").queue_qos0_messages);
    assert!(!ok("retain_available false\n").retain_available);
    assert!(!ok("retain_available 0\n").retain_available);
}

#[test]
fn persistent_client_expiration_units() {
    for (v, s) in [
        ("1h", 3600),
        ("14d", 14 * 86_400),
        ("2w", 14 * 86_400),
        ("2m", 60 * 86_400),
        ("1y", 365 * 86_400),
    ] {
        let c = ok(&format!("persistent_client_expiration {v}\n"));
        assert_eq!(c.persistent_client_expiration, Some(s), "{v}");
    }
}

#[test]
fn log_dest_and_log_type_accumulate() {
    let c = ok("log_dest stdout\nlog_dest syslog\nlog_dest stdout\n");
    assert_eq!(c.log_dest, vec![LogDest::Stdout, LogDest::Syslog]);
    let c = ok("log_dest stdout\nlog_dest none\n");
    assert_eq!(c.log_dest, vec![LogDest::None]);
    let c = ok("log_dest none\nlog_dest file /var/log/m.log  \n");
    assert_eq!(c.log_dest, vec![LogDest::File]);
    assert_eq!(c.log_file.as_deref(), Some("/var/log/m.log"));
    assert_eq!(c.effective_log_dest(), vec![LogDest::File]);

    let c = ok("log_type error\nlog_type subscribe\n");
    assert_eq!(
        c.log_type,
        LogTypes {
            error: true,
            subscribe: true,
            ..LogTypes::none()
        }
    );
    assert_eq!(ok("log_type all\n").log_type, LogTypes::all());
    assert_eq!(
        ok("log_type all\nlog_type none\n").log_type,
        LogTypes::none()
    );
    assert_eq!(
        ok("log_type none\nlog_type debug\n").log_type,
        LogTypes {
            debug: true,
            ..LogTypes::none()
        }
    );
    // Only the first word counts, like Mosquitto, but it is reported.
    let c = ok("log_type error warning\n");
    assert_eq!(
        c.log_type,
        LogTypes {
            error: true,
            ..LogTypes::none()
        }
    );
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn string_values_keep_inner_spaces_and_lose_outer_ones() {
    let c = ok("pid_file    /run/my midge.pid   \nlog_timestamp_format %Y-%m-%d %H:%M:%S\n");
    assert_eq!(c.pid_file.as_deref(), Some("/run/my midge.pid"));
    assert_eq!(c.log_timestamp_format.as_deref(), Some("%Y-%m-%d %H:%M:%S"));
    let c = ok("user midge\npersistence_location /var/lib/midge\npersistence_file m.db\n");
    assert_eq!(c.user, "midge");
    assert_eq!(c.persistence_path(), "/var/lib/midge/m.db");
}

// ---------------------------------------------------------------- line syntax

#[test]
fn comments_blank_lines_and_whitespace() {
    let c = ok("# comment\n\
                \n\
                   \n\
                \t\n\
                   # indented comment\n\
                \t# tab-indented comment\n\
                   sys_interval 5\n\
                \tmax_keepalive 30\t\n\
                allow_duplicate_messages true \n");
    assert_eq!(c.sys_interval, 5);
    assert_eq!(c.max_keepalive, 30);
    assert!(c.allow_duplicate_messages);
    // Comment lines and blank lines still count for line numbers.
    err_at(
        "# a\n\n   \n# b\nnope\n",
        5,
        "Unknown configuration variable \"nope\".",
    );
}

#[test]
fn crlf_line_endings() {
    let c = ok("listener 1883\r\nallow_anonymous true\r\n\r\n# c\r\npassword_file /etc/pw\r\n");
    assert_eq!(c.listeners[0].port, 1883);
    assert_eq!(c.security.allow_anonymous, Some(true));
    assert_eq!(c.security.password_file.as_deref(), Some("/etc/pw"));
    err_at(
        "listener 1883\r\nbogus 1\r\n",
        2,
        "Unknown configuration variable \"bogus\".",
    );
}

#[test]
fn malformed_utf8_is_an_error_except_in_comments() {
    let bad = b"# caf\xe9 in a comment is fine\nlistener 1883\npassword_file /etc/p\xe9\n";
    let e = parse::parse_main(bad, "bad.conf").expect_err("must fail");
    assert_eq!(e.message, "Malformed UTF-8 in configuration.");
    assert_eq!((e.file.as_str(), e.line), ("bad.conf", 3));
}

// ---------------------------------------------------------------- files

#[test]
fn load_reads_a_file_and_reports_missing_ones() {
    let dir = TempDir::new("load");
    let path = dir.write("main.conf", "listener 1883\nfoo 1\n");
    let e = load(&path).expect_err("unknown variable");
    assert_eq!(e.file, path.display().to_string());
    assert_eq!(e.line, 2);
    dir.write("main.conf", "listener 1883\n");
    assert_eq!(load(&path).map(|c| c.listeners.len()), Ok(1));

    let missing = dir.0.join("missing.conf");
    let e = load(&missing).expect_err("missing");
    assert_eq!(e.line, 0);
    assert_eq!(
        e.message,
        format!("Unable to open config file {}.", missing.display())
    );
    let e = load(&dir.0).expect_err("directory");
    assert_eq!(
        e.message,
        format!("Config file {} is a directory.", dir.path())
    );
}

#[test]
fn include_dir_loads_conf_files_in_mosquitto_order() {
    let dir = TempDir::new("include");
    let inc = dir.0.join("conf.d");
    std::fs::create_dir_all(&inc).expect("mkdir");
    std::fs::write(inc.join("a.conf"), "listener 1001\n").expect("write");
    std::fs::write(inc.join("B.conf"), "listener 1002\n").expect("write");
    std::fs::write(inc.join("A.conf"), "listener 1000\n").expect("write");
    std::fs::write(inc.join("notes.txt"), "this is not config\n").expect("write");
    std::fs::write(inc.join("x.CONF"), "nonsense\n").expect("write");
    std::fs::write(inc.join(".conf"), "nonsense\n").expect("write");
    let inc_s = inc.display().to_string();
    let c = ok(&format!(
        "listener 999\ninclude_dir {inc_s}\nmax_connections 9\n"
    ));
    let ports: Vec<u16> = c.listeners.iter().map(|l| l.port).collect();
    // Mosquitto's order: A.conf, a.conf, B.conf (case-insensitive first,
    // upper case before lower case), not plain byte order.
    assert_eq!(ports, vec![999, 1000, 1001, 1002]);
    assert_eq!(
        c.included_files,
        vec![
            format!("{inc_s}/A.conf"),
            format!("{inc_s}/a.conf"),
            format!("{inc_s}/B.conf")
        ]
    );
    assert_eq!(c.listeners[1].file, format!("{inc_s}/A.conf"));
    assert_eq!(c.listeners[1].line, 1);
    // After the include, the main file carries on with its own listener.
    assert_eq!(c.listeners[0].max_connections, 9);
    assert_eq!(c.listeners[3].max_connections, -1);

    // Repeated include_dir lines are processed in order.
    let inc2 = dir.0.join("two.d");
    std::fs::create_dir_all(&inc2).expect("mkdir");
    std::fs::write(inc2.join("0.conf"), "listener 2000\n").expect("write");
    let c = ok(&format!(
        "include_dir {}\ninclude_dir {inc_s}\n",
        inc2.display()
    ));
    let ports: Vec<u16> = c.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, vec![2000, 1000, 1001, 1002]);
}

#[test]
fn include_order_matches_mosquitto() {
    let mut names = vec![
        "b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf", "Ab.conf", "_x.conf",
        "aB.conf",
    ];
    names.sort_by(|a, b| include_order(a, b));
    assert_eq!(
        names,
        vec![
            "00.conf", "01.conf", "A.conf", "Ab.conf", "a.conf", "aB.conf", "B.conf", "b.conf",
            "_x.conf"
        ]
    );
}

#[test]
fn include_dir_errors() {
    let dir = TempDir::new("incerr");
    let inc = dir.0.join("d");
    std::fs::create_dir_all(&inc).expect("mkdir");
    std::fs::write(inc.join("a.conf"), "# ok\n\nfoo 1\n").expect("write");
    let inc_s = inc.display().to_string();
    // An error inside an included file points at that file and line.
    let e = err(&format!("listener 1\ninclude_dir {inc_s}\n"));
    assert_eq!(e.message, "Unknown configuration variable \"foo\".");
    assert_eq!((e.file.clone(), e.line), (format!("{inc_s}/a.conf"), 3));

    // include_dir inside an included file is refused.
    let nested = dir.0.join("nested");
    std::fs::create_dir_all(&nested).expect("mkdir");
    std::fs::write(
        inc.join("a.conf"),
        format!("listener 1883\ninclude_dir {}\n", nested.display()),
    )
    .expect("write");
    let e = err(&format!("include_dir {inc_s}\n"));
    assert!(
        e.message
            .starts_with("include_dir is only allowed in the main configuration file"),
        "{e}"
    );
    assert_eq!((e.file.clone(), e.line), (format!("{inc_s}/a.conf"), 2));

    // A missing directory is reported at the include_dir line.
    err_at(
        &format!("\ninclude_dir {}/none\n", dir.path()),
        2,
        &format!("Unable to open include_dir '{}/none'.", dir.path()),
    );

    // Bridge and listener state does not carry into an included file.
    std::fs::write(inc.join("a.conf"), "topic x\n").expect("write");
    let e = err(&format!("connection b\naddress h\ninclude_dir {inc_s}\n"));
    assert!(e.message.starts_with("Invalid bridge configuration"), "{e}");
    assert_eq!(e.line, 1);
}

// ---------------------------------------------------------------- example file

const EXAMPLE: &str = include_str!("../../conf/midge.conf");

#[test]
fn example_config_parses() {
    let c = ok(EXAMPLE);
    assert_eq!(
        c,
        Config::default(),
        "everything in the example is commented out"
    );
}

#[test]
fn example_config_with_every_option_uncommented_parses() {
    // Every "#name value" line where name is a directive becomes live; the
    // result must be a valid configuration (include_dir excepted: its
    // directory need not exist here).
    let mut text = String::new();
    let mut live = 0;
    for line in EXAMPLE.lines() {
        let candidate = line.strip_prefix('#').unwrap_or("");
        let name = candidate.split(' ').next().unwrap_or("");
        let starts_lower = name
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_lowercase());
        if starts_lower && directive_support(name).is_some() && name != "include_dir" {
            text.push_str(candidate);
            live += 1;
        } else {
            text.push_str(line);
        }
        text.push('\n');
    }
    assert!(live > 100, "only {live} example lines");
    let c = ok(&text);
    assert_eq!(c.listeners.len(), 3);
    assert_eq!(c.bridges.len(), 1);
    assert!(c.default_listener.is_some());
    assert_eq!(c.security.plugins.len(), 1);
}

// ---------------------------------------------------------------- robustness

/// xorshift64* with a fixed seed: deterministic random lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        items[i]
    }
}

#[test]
fn random_input_never_panics() {
    let names: Vec<&str> = all_directives().collect();
    let values = [
        "",
        "0",
        "1",
        "-1",
        "20",
        "65535",
        "65536",
        "99999999999999999999",
        "true",
        "false",
        "#",
        "\"\"",
        "a/#",
        "+",
        "x:1",
        ":",
        "h:",
        "1d",
        "d",
        "é",
        "\t",
        "  ",
        "file",
        "none",
        "in",
        "out",
        "2",
        "3",
        "tlsv1.2",
        "/tmp",
        "\r",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..(rng.next() % 8) {
            match rng.next() % 6 {
                0 => text.push_str(rng.pick(&["listener 1883", "connection b", "plugin /p.so"])),
                1 => text.push_str(rng.pick(&["#", "", " ", "auth_opt_", "plugin_opt_k", "bogus"])),
                _ => {
                    let name = rng.pick(&names).trim_end_matches('*');
                    text.push_str(name);
                }
            }
            for _ in 0..(rng.next() % 5) {
                text.push(' ');
                text.push_str(rng.pick(&values));
            }
            text.push_str(rng.pick(&["\n", "\r\n", "\n\n"]));
        }
        // include_dir of a random value may touch the filesystem: keep it to
        // paths that do not exist or are harmless.
        let text = text.replace("include_dir /tmp", "include_dir /nonexistent-midge");
        let _ = parse_str(&text, "fuzz.conf");
    }
}
