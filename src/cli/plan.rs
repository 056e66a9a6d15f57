//! cli::plan: what the broker will be, decided from the configuration alone.
//!
//! Owns: turning a `config::Config` (and the `-p` ports) into the broker's
//! settings (`BrokerConfig`, one `ListenerSettings` per listener), the
//! listener specs `net` binds (addresses, TLS, WebSocket options, which IPv6
//! halves may fail softly), Mosquitto's local-only mode, and which security
//! blocks (password file, ACL, dynamic security) are in force.
//!
//! Must not: do I/O. What it needs from the outside (a random seed, name
//! resolution, loading certificates) comes in through [`Outside`], so the
//! plan is a pure function and is unit-tested with fakes. Reading the
//! policy files a plan names is `cli::policy`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::broker::{BrokerConfig, ListenerSettings};
use crate::config::{self, Config, Security};
use crate::net::{self, Identity, ListenerSpec};
use crate::protocol::QoS;

/// Name resolution: the addresses of a host name and port.
pub type Resolve<'a> = &'a dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

/// Loading a TLS listener's certificates and key.
pub type LoadTls<'a> = &'a dyn Fn(&config::Tls) -> Result<Arc<rustls::ServerConfig>, String>;

/// What a plan needs from the world outside the configuration.
pub struct Outside<'a> {
    /// Seeds the broker's generated client ids and shared-subscription picks.
    pub seed: u64,
    pub resolve: Resolve<'a>,
    pub tls: LoadTls<'a>,
}

/// The broker as the configuration describes it.
pub struct Plan {
    pub broker: BrokerConfig,
    /// What `net` binds; `settings` indexes `broker.listeners`.
    pub listeners: Vec<ListenerSpec>,
    /// No listener was configured: loopback only, on 1883 or the `-p` ports.
    pub local_only: bool,
}

/// Broker settings, listener specs and whether the broker runs in local-only
/// mode, from the config and the `-p` ports.
pub fn plan(cfg: &Config, ports: &[u16], outside: &Outside<'_>) -> Result<Plan, String> {
    let mut bc = BrokerConfig {
        max_inflight_messages: cfg.max_inflight_messages,
        max_inflight_bytes: cfg.max_inflight_bytes,
        max_queued_messages: cfg.max_queued_messages,
        max_queued_bytes: cfg.max_queued_bytes,
        queue_qos0_messages: cfg.queue_qos0_messages,
        message_size_limit: cfg.message_size_limit,
        max_packet_size: cfg.max_packet_size,
        max_keepalive: cfg.max_keepalive,
        sys_interval: cfg.sys_interval,
        retain_available: cfg.retain_available,
        persistent_client_expiration: cfg.persistent_client_expiration,
        upgrade_outgoing_qos: cfg.upgrade_outgoing_qos,
        connection_messages: cfg.connection_messages,
        connack_reason_strings: cfg.connack_reason_strings,
        clientid_prefixes: cfg.clientid_prefixes.clone(),
        check_retain_source: cfg.check_retain_source,
        memory_limit: cfg.memory_limit,
        memory_used: crate::memory::used,
        listeners: Vec::new(),
        seed: outside.seed,
        ..BrokerConfig::default()
    };
    let mut specs = Vec::new();
    let configured = cfg.all_listeners();
    let local_only = configured.is_empty();
    if local_only {
        // Mosquitto 2.0 with no listener opens 127.0.0.1 and ::1 on each port
        // (1883 or every -p), and those listeners always let anonymous
        // clients in, whatever `allow_anonymous` says. Without
        // per_listener_settings the global password file, ACL, plugins,
        // auto_id_prefix and allow_zero_length_clientid still apply; with it,
        // the generated listeners get listener defaults only: no password
        // file, no ACL, and an empty auto_id_prefix (Mosquitto fills in
        // "auto-" only for listeners it read from the file).
        let security = if cfg.per_listener_settings {
            Security {
                allow_anonymous: Some(true),
                auto_id_prefix: String::new(),
                ..Security::default()
            }
        } else {
            Security {
                allow_anonymous: Some(true),
                ..cfg.security.clone()
            }
        };
        // With per_listener_settings there is no security block for them:
        // an index past the configured blocks carries no policy at all.
        let sec_idx = if cfg.per_listener_settings {
            security_blocks(cfg).len()
        } else {
            0
        };
        let ports: Vec<u16> = if ports.is_empty() {
            vec![1883]
        } else {
            ports.to_vec()
        };
        for port in ports {
            let idx = bc.listeners.len();
            bc.listeners
                .push(listener_settings(port, &security, sec_idx, None));
            for ip in [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ] {
                specs.push(ListenerSpec {
                    addr: SocketAddr::new(ip, port),
                    settings: idx,
                    max_connections: -1,
                    tls: None,
                    identity: Identity::Connect,
                    unix_path: None,
                    bind_interface: None,
                    websockets: None,
                    // A host without IPv6 still starts, on 127.0.0.1 alone.
                    optional: ip.is_ipv6(),
                });
            }
        }
        return Ok(Plan {
            broker: bc,
            listeners: specs,
            local_only: true,
        });
    }
    for (i, l) in configured.into_iter().enumerate() {
        let security = Security {
            allow_anonymous: Some(cfg.allow_anonymous(l)),
            ..cfg.security_for(l).clone()
        };
        let sec_idx = if cfg.per_listener_settings { i } else { 0 };
        let idx = bc.listeners.len();
        bc.listeners
            .push(listener_settings(l.port, &security, sec_idx, Some(l)));
        let (tls, identity) = if l.tls_enabled() {
            let tls = (outside.tls)(&l.tls).map_err(|e| match e.strip_prefix("Error: ") {
                // Mosquitto's own line first, the listener after it.
                Some(rest) => match rest.split_once('\n') {
                    Some((first, why)) => {
                        format!(
                            "Error: {}\nError: listener on port {}: {}",
                            first, l.port, why
                        )
                    }
                    None => format!("Error: {}", rest),
                },
                None => format!("Error: listener on port {}: {}", l.port, e),
            })?;
            let identity = if l.tls.use_subject_as_username {
                Identity::Subject
            } else if l.tls.use_identity_as_username {
                Identity::CommonName
            } else {
                Identity::Connect
            };
            (Some(tls), identity)
        } else {
            (None, Identity::Connect)
        };
        let addrs = match &l.unix_path {
            Some(_) => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)],
            None => listener_addrs(l, outside.resolve)?,
        };
        // Only the IPv6 half of an implicit "all interfaces", or of a host
        // name that also resolved to IPv4, may fail softly (a host without
        // IPv6); an IP address or socket_domain asked for must bind.
        let implicit = l.socket_domain.is_none()
            && l.unix_path.is_none()
            && match &l.address {
                None => true,
                Some(host) => host.parse::<IpAddr>().is_err() && addrs.iter().any(|a| a.is_ipv4()),
            };
        for addr in addrs {
            specs.push(ListenerSpec {
                addr,
                optional: implicit && addr.is_ipv6(),
                settings: idx,
                max_connections: l.max_connections,
                tls: tls.clone(),
                identity,
                unix_path: l.unix_path.as_ref().map(Into::into),
                bind_interface: l.bind_interface.clone(),
                websockets: match l.protocol {
                    config::ListenerProtocol::Websockets => Some(net::WsSpec {
                        // Mosquitto documents 1024 but libwebsockets really
                        // allows about 4096 when the option is left alone.
                        headers_limit: match cfg.websockets_headers_size {
                            1024 => 4096,
                            n => n as usize,
                        },
                        http_dir: l.http_dir.as_ref().map(Into::into),
                    }),
                    config::ListenerProtocol::Mqtt => None,
                },
            });
        }
    }
    Ok(Plan {
        broker: bc,
        listeners: specs,
        local_only: false,
    })
}

fn listener_settings(
    port: u16,
    s: &Security,
    security: usize,
    l: Option<&config::Listener>,
) -> ListenerSettings {
    let max_qos = l
        .and_then(|l| QoS::from_u8(l.max_qos))
        .unwrap_or(QoS::ExactlyOnce);
    ListenerSettings {
        port,
        allow_anonymous: s.allow_anonymous.unwrap_or(false),
        allow_zero_length_clientid: s.allow_zero_length_clientid,
        auto_id_prefix: s.auto_id_prefix.clone(),
        max_qos,
        max_topic_alias: l.map(|l| l.max_topic_alias).unwrap_or(10),
        mount_point: l.and_then(|l| l.mount_point.clone()),
        use_username_as_clientid: l.is_some_and(|l| l.use_username_as_clientid),
        use_identity_as_username: l.is_some_and(|l| {
            l.tls_enabled() && (l.tls.use_identity_as_username || l.tls.use_subject_as_username)
        }),
        security,
    }
}

/// The dynamic security plugin line of a security block, if any, with its
/// `plugin_opt_config_file`. midge has that plugin built in; any other
/// plugin (a C shared object for Mosquitto) cannot be loaded.
pub fn dynsec_plugin(s: &Security) -> Result<Option<(String, Option<String>)>, String> {
    let mut found = None;
    for p in &s.plugins {
        let name = Path::new(&p.path)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.contains("dynamic_security") || name.contains("dynsec") {
            if found.is_some() {
                return Err("Error: the dynamic security plugin can only be loaded once.".into());
            }
            found = Some((p.path.clone(), p.option("config_file").map(str::to_string)));
        } else {
            return Err(format!(
                "Error: Unable to load plugin {}: midge cannot load Mosquitto plugins (C shared objects); only the dynamic security plugin is available, built in.",
                p.path
            ));
        }
    }
    Ok(found)
}

/// The security blocks in force: one global block, or one per listener
/// with `per_listener_settings true` (indexes match `ListenerSettings::security`).
pub fn security_blocks(cfg: &Config) -> Vec<Security> {
    if cfg.per_listener_settings {
        cfg.all_listeners()
            .iter()
            .map(|l| l.security.clone())
            .collect()
    } else {
        vec![cfg.security.clone()]
    }
}

fn listener_addrs(l: &config::Listener, resolve: Resolve<'_>) -> Result<Vec<SocketAddr>, String> {
    match &l.address {
        Some(host) => {
            let addrs = resolve(host, l.port)
                .map_err(|e| format!("Error: Unable to resolve {}: {}.", host, e))?;
            let filtered = usable_addrs(addrs, l.socket_domain);
            if filtered.is_empty() {
                return Err(format!("Error: No usable address for {}.", host));
            }
            Ok(filtered)
        }
        None => {
            // No address: all interfaces, as Mosquitto's getaddrinfo(NULL,
            // AI_PASSIVE) gives them: 0.0.0.0 then [::] (the IPv6 socket is
            // IPV6_V6ONLY, so the two never overlap), or one of them with
            // socket_domain.
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), l.port);
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), l.port);
            Ok(match l.socket_domain {
                Some(config::SocketDomain::Ipv4) => vec![v4],
                Some(config::SocketDomain::Ipv6) => vec![v6],
                None => vec![v4, v6],
            })
        }
    }
}

/// The resolved addresses of a listener's host to bind: every one, as
/// Mosquitto binds every getaddrinfo result (`localhost` is 127.0.0.1 and
/// ::1 where /etc/hosts says so), once each, or one family with
/// socket_domain.
fn usable_addrs(addrs: Vec<SocketAddr>, domain: Option<config::SocketDomain>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        let wanted = match domain {
            Some(config::SocketDomain::Ipv4) => a.is_ipv4(),
            Some(config::SocketDomain::Ipv6) => a.is_ipv6(),
            None => true,
        };
        if wanted && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    /// A world with one host name, `broker.lan`, and no certificates.
    fn fake_resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match host {
            "broker.lan" => Ok(vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)), port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)), port),
            ]),
            _ => Err(std::io::Error::other("unknown host")),
        }
    }

    fn no_tls(_: &config::Tls) -> Result<Arc<rustls::ServerConfig>, String> {
        Err("Error: Unable to load server certificate \"x.pem\".\nno such file".into())
    }

    fn plan_of(conf: &str, ports: &[u16]) -> Result<Plan, String> {
        let cfg = config::parse_str(conf, "test.conf").map_err(|e| e.to_string())?;
        let outside = Outside {
            seed: 42,
            resolve: &fake_resolve,
            tls: &no_tls,
        };
        plan(&cfg, ports, &outside)
    }

    fn addrs(p: &Plan) -> Vec<(SocketAddr, bool)> {
        p.listeners.iter().map(|l| (l.addr, l.optional)).collect()
    }

    #[test]
    fn no_listener_is_local_only_on_1883_or_every_port() {
        let p = plan_of("", &[]).unwrap();
        assert!(p.local_only);
        assert_eq!(
            addrs(&p),
            [(v4("127.0.0.1:1883"), false), (v4("[::1]:1883"), true)]
        );
        assert_eq!(p.broker.listeners.len(), 1);
        assert!(p.broker.listeners[0].allow_anonymous);
        assert_eq!(p.broker.seed, 42);

        let p = plan_of("allow_anonymous false\n", &[1884, 1885]).unwrap();
        assert_eq!(p.broker.listeners.len(), 2);
        assert_eq!(p.listeners.len(), 4);
        // Local-only listeners let anonymous clients in regardless.
        assert!(p.broker.listeners.iter().all(|l| l.allow_anonymous));
        assert!(p.listeners.iter().all(|l| l.addr.ip().is_loopback()));
    }

    #[test]
    fn per_listener_local_only_gets_no_security_block() {
        let p = plan_of("per_listener_settings true\n", &[]).unwrap();
        assert!(p.local_only);
        let l = &p.broker.listeners[0];
        // One index past the (zero) configured blocks: no policy at all.
        assert_eq!(l.security, 0);
        assert_eq!(l.auto_id_prefix, "");
        let p = plan_of("", &[]).unwrap();
        assert_eq!(p.broker.listeners[0].auto_id_prefix, "auto-");
    }

    #[test]
    fn a_listener_without_address_binds_both_families_v6_softly() {
        let p = plan_of("listener 1883\nallow_anonymous true\n", &[]).unwrap();
        assert!(!p.local_only);
        assert_eq!(
            addrs(&p),
            [(v4("0.0.0.0:1883"), false), (v4("[::]:1883"), true)]
        );
        let p = plan_of("listener 1883\nsocket_domain ipv6\n", &[]).unwrap();
        assert_eq!(addrs(&p), [(v4("[::]:1883"), false)]);
    }

    #[test]
    fn a_host_name_binds_each_address_once_and_an_ip_binds_hard() {
        let p = plan_of("listener 1883 broker.lan\n", &[]).unwrap();
        assert_eq!(
            addrs(&p),
            [(v4("192.168.1.5:1883"), false), (v4("[::1]:1883"), true)]
        );
        let p = plan_of("listener 1883 ::1\n", &[]).unwrap();
        assert_eq!(addrs(&p), [(v4("[::1]:1883"), false)]);
        let e = plan_of("listener 1883 nowhere.lan\n", &[]).err().unwrap();
        assert_eq!(e, "Error: Unable to resolve nowhere.lan: unknown host.");
    }

    #[test]
    fn listener_settings_follow_the_listener() {
        let conf = "listener 1883\nmax_qos 1\nmount_point m/\nmax_topic_alias 3\n\
                    use_username_as_clientid true\n\
                    listener 8080\nprotocol websockets\nhttp_dir /srv/www\n";
        let p = plan_of(conf, &[]).unwrap();
        let l = &p.broker.listeners[0];
        assert_eq!(l.max_qos, QoS::AtLeastOnce);
        assert_eq!(l.mount_point.as_deref(), Some("m/"));
        assert_eq!(l.max_topic_alias, 3);
        assert!(l.use_username_as_clientid);
        // Without per_listener_settings every listener shares block 0.
        assert!(p.broker.listeners.iter().all(|l| l.security == 0));
        let ws: Vec<_> = p
            .listeners
            .iter()
            .filter_map(|l| l.websockets.as_ref())
            .collect();
        assert_eq!(ws.len(), 2);
        // Mosquitto's documented 1024 is libwebsockets' real ~4096.
        assert_eq!(ws[0].headers_limit, 4096);
        assert_eq!(ws[0].http_dir.as_deref(), Some(Path::new("/srv/www")));
        assert!(p.listeners.iter().all(|l| l.settings < 2));
    }

    #[test]
    fn per_listener_settings_index_their_own_blocks() {
        let conf = "per_listener_settings true\nlistener 1883\nlistener 1884\n";
        let p = plan_of(conf, &[]).unwrap();
        let idx: Vec<usize> = p.broker.listeners.iter().map(|l| l.security).collect();
        assert_eq!(idx, [0, 1]);
        let cfg = config::parse_str(conf, "t").unwrap();
        assert_eq!(security_blocks(&cfg).len(), 2);
    }

    #[test]
    fn a_tls_error_names_mosquittos_line_then_the_listener() {
        let conf = "listener 8883\ncertfile x.pem\nkeyfile k.pem\n";
        let e = plan_of(conf, &[]).err().unwrap();
        assert_eq!(
            e,
            "Error: Unable to load server certificate \"x.pem\".\nError: listener on port 8883: no such file"
        );
    }

    #[test]
    fn only_the_dynamic_security_plugin_loads() {
        let cfg = config::parse_str(
            "plugin /usr/lib/mosquitto_dynamic_security.so\nplugin_opt_config_file /d.json\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            dynsec_plugin(&cfg.security),
            Ok(Some((
                "/usr/lib/mosquitto_dynamic_security.so".to_string(),
                Some("/d.json".to_string())
            )))
        );
        let cfg = config::parse_str("plugin /usr/lib/other.so\n", "t").unwrap();
        assert!(dynsec_plugin(&cfg.security)
            .unwrap_err()
            .contains("cannot load Mosquitto plugins"));
    }

    #[test]
    fn a_host_name_binds_every_address_it_resolves_to_once() {
        let v4a: SocketAddr = v4("127.0.0.1:1883");
        let v6: SocketAddr = v4("[::1]:1883");
        assert_eq!(usable_addrs(vec![v4a, v6, v4a], None), vec![v4a, v6]);
        assert_eq!(
            usable_addrs(vec![v4a, v6], Some(config::SocketDomain::Ipv4)),
            vec![v4a]
        );
        assert_eq!(
            usable_addrs(vec![v4a, v6], Some(config::SocketDomain::Ipv6)),
            vec![v6]
        );
        assert!(usable_addrs(vec![v4a], Some(config::SocketDomain::Ipv6)).is_empty());
    }
}
