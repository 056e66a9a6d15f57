//! cli: the `midge` command line, start-up order and exit codes.
//!
//! Owns: option parsing (getopts, with `mosquitto`'s flags), turning a
//! `config::Config` into broker settings and listener addresses, logging
//! set-up, daemonising, and the exit code.
//!
//! Must not: hold broker logic; it wires the rooms together and gets out of
//! the way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use crate::broker::{Broker, BrokerConfig, ListenerSettings};
use crate::config::{self, Config, Security};
use crate::net::{self, EventLoop, Identity, ListenerSpec};
use crate::protocol::QoS;

const USAGE: &str = "midge is an MQTT v5.0/v3.1.1/v3.1 broker, compatible with Mosquitto.

Usage: midge [-c config_file] [-d] [-h] [-p port] [-v] [--test-config]

 -c : specify the broker config file.
 -d : put the broker into the background after starting.
 -h : display this help.
 -p : start the broker listening on the specified port.
      Not recommended in conjunction with the -c option.
 -v : verbose mode - enable all logging types. This overrides
      any logging options given in the config file.
 --test-config : check the config file and exit (0 = valid, 1 = invalid).

See https://mosquitto.org/ for more information on the configuration syntax.";

pub struct Args {
    pub config_file: Option<String>,
    pub daemon: bool,
    pub ports: Vec<u16>,
    pub verbose: bool,
    pub test_config: bool,
}

/// Parse the command line. Err carries the message and the exit code.
pub fn parse_args(argv: &[String]) -> Result<Args, (String, i32)> {
    let mut opts = getopts::Options::new();
    opts.optopt("c", "config-file", "config file", "FILE");
    opts.optflag("d", "daemon", "run in the background");
    opts.optflag("h", "help", "help");
    opts.optmulti("p", "port", "port", "PORT");
    opts.optflag("v", "verbose", "verbose");
    opts.optflag("", "test-config", "check the config and exit");
    let m = opts
        .parse(argv)
        .map_err(|e| (format!("Error: {}.\n\n{}", e, USAGE), 1))?;
    if m.opt_present("h") {
        return Err((USAGE.to_string(), 0));
    }
    if let Some(extra) = m.free.first() {
        return Err((
            format!("Error: Unknown option '{}'.\n\n{}", extra, USAGE),
            1,
        ));
    }
    let mut ports = Vec::new();
    for p in m.opt_strs("p") {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => ports.push(n),
            _ => return Err((format!("Error: Invalid port specified ({}).", p), 1)),
        }
    }
    if ports.len() > 10 {
        return Err(("Error: Too many ports specified (max 10).".to_string(), 1));
    }
    Ok(Args {
        config_file: m.opt_str("c"),
        daemon: m.opt_present("d"),
        ports,
        verbose: m.opt_present("v"),
        test_config: m.opt_present("test-config"),
    })
}

/// Process entry point; returns the exit code.
pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err((msg, code)) => {
            if code == 0 {
                println!("{}", msg);
            } else {
                eprintln!("{}", msg);
            }
            return code;
        }
    };
    let cfg = match &args.config_file {
        Some(path) => match config::load(Path::new(path)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}", e);
                return 1;
            }
        },
        None => Config::default(),
    };
    if args.test_config {
        // Everything start-up would check, short of binding the ports.
        let checked = plan(&cfg, &args.ports).and_then(|_| {
            security_blocks(&cfg)
                .iter()
                .try_for_each(|s| load_policy(s).map(|_| ()))
        });
        return match checked {
            Ok(()) => {
                for p in test_config_writability(&cfg) {
                    eprintln!("{}", p);
                }
                println!("Configuration file is valid.");
                0
            }
            Err(e) => {
                eprintln!("{}", e);
                1
            }
        };
    }
    crate::logging::init(&crate::logging::LogSetup::from_config(&cfg, args.verbose));
    for f in &cfg.included_files {
        log::info!(target: "information", "Loading config file {}", f);
    }
    for w in &cfg.warnings {
        log::warn!("Warning: {}", w);
    }
    for n in &cfg.notices {
        log::info!("{}", n);
    }

    let (broker_cfg, specs, local_only) = match plan(&cfg, &args.ports) {
        Ok(x) => x,
        Err(msg) => {
            for line in msg.lines() {
                log::error!("{}", line);
            }
            return 1;
        }
    };
    log::info!(target: "information", "midge version {} starting", env!("CARGO_PKG_VERSION"));
    match &args.config_file {
        Some(p) => log::info!(target: "information", "Config loaded from {}.", p),
        None => log::info!(target: "information", "Using default config."),
    }
    if local_only {
        log::warn!("Starting in local only mode. Connections will only be possible from clients running on this machine.");
        log::warn!("Create a configuration file which defines a listener to allow remote access.");
        log::warn!(
            "For more details see https://mosquitto.org/documentation/authentication-methods/"
        );
    }
    let bound = match net::bind(&specs) {
        Ok(b) => b,
        Err(msg) => {
            log::error!("{}", msg);
            return 1;
        }
    };
    if args.daemon {
        if let Err(e) = daemonise() {
            log::error!("Error: Unable to daemonise: {}.", e);
            return 1;
        }
    }
    if let Some(path) = &cfg.pid_file {
        if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
            log::error!("Error: Unable to write pid file {}: {}.", path, e);
            return 1;
        }
    }

    let mut ev = match EventLoop::new(bound) {
        Ok(e) => e,
        Err(e) => {
            log::error!("Error: {}.", e);
            return 1;
        }
    };
    if let Err(e) = ev.install_signals() {
        log::error!("Error: unable to install signal handlers: {}.", e);
        return 1;
    }
    // SAFETY: ignoring SIGPIPE is process-wide and done before any socket
    // write; writes to a closed peer then return EPIPE instead of killing us.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let mut broker = Broker::new(broker_cfg, ev.now());
    for (i, sec) in security_blocks(&cfg).iter().enumerate() {
        match load_policy(sec) {
            Ok(p) => broker.set_security(i, p),
            Err(e) => {
                log::error!("{}", e);
                return 1;
            }
        }
    }
    let persistence = match open_persistence(&cfg, &mut broker, ev.now()) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{}", e);
            return 1;
        }
    };
    let dynsec_files = security_blocks(&cfg)
        .iter()
        .map(|s| dynsec_plugin(s).ok().flatten().and_then(|(_, f)| f))
        .collect();
    let mut control = Reloader {
        config_path: args.config_file.clone(),
        dynsec_files,
        verbose: args.verbose,
        persistence,
    };
    // Files are read as root; from here on midge runs as `user`.
    let run_as = match resolve_user(&cfg.user) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{}", e);
            return 1;
        }
    };
    if let Some(r) = &run_as {
        hand_over_files(&cfg, r);
        if let Err(e) = become_user(r) {
            log::error!("{}", e);
            return 1;
        }
    }
    for p in writability_problems(&cfg, &current_user_name(), false) {
        log::warn!("{}", p);
    }
    log::info!(target: "information", "midge version {} running", env!("CARGO_PKG_VERSION"));
    notify_systemd("READY=1");
    let result = ev.run(&mut broker, &mut control);
    notify_systemd("STOPPING=1");
    let now = ev.now();
    control.save_now(&mut broker, now);
    if let Some(path) = &cfg.pid_file {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            log::error!("Error: {}.", e);
            1
        }
    }
}

/// Broker settings and listener addresses from the config. The third value
/// is true when no listener was configured (loopback-only default).
pub fn plan(
    cfg: &Config,
    ports: &[u16],
) -> Result<(BrokerConfig, Vec<ListenerSpec>, bool), String> {
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
        seed: seed(),
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
        return Ok((bc, specs, true));
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
            let tls =
                net::tls::server_config(&l.tls).map_err(|e| match e.strip_prefix("Error: ") {
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
            None => listener_addrs(l)?,
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
    Ok((bc, specs, false))
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

/// Read the password file and ACL of one security block.
pub fn load_policy(s: &Security) -> Result<crate::auth::Policy, String> {
    use crate::auth::{acl::AclFile, password::PasswordFile, Policy};
    let passwords = match &s.password_file {
        Some(path) => {
            let (pw, notes) = PasswordFile::load(Path::new(path))
                .map_err(|e| format!("Error: Unable to load password file {}: {}", path, e))?;
            for n in notes {
                log::warn!("{}", n);
            }
            Some(pw)
        }
        None => None,
    };
    let acl = match &s.acl_file {
        Some(path) => Some(
            AclFile::load(Path::new(path))
                .map_err(|e| format!("Error: Unable to load ACL file {}: {}", path, e))?,
        ),
        None => None,
    };
    let mut dynsec = None;
    if let Some((plugin, file)) = dynsec_plugin(s)? {
        match file {
            Some(path) => {
                let d = crate::auth::dynsec::DynSec::load(Path::new(&path)).map_err(|e| {
                    format!("Error: Unable to load dynamic security config {}: {}", path, e)
                })?;
                dynsec = Some(d);
            }
            None => log::warn!(
                "Warning: Dynamic security plugin ({}) has no plugin_opt_config_file, and is inactive.",
                plugin
            ),
        }
    }
    Ok(Policy {
        passwords,
        acl,
        deny_special_chars: s.auth_plugin_deny_special_chars,
        dynsec,
    })
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

fn listener_addrs(l: &config::Listener) -> Result<Vec<SocketAddr>, String> {
    match &l.address {
        Some(host) => {
            let addrs: Vec<SocketAddr> = (host.as_str(), l.port)
                .to_socket_addrs()
                .map_err(|e| format!("Error: Unable to resolve {}: {}.", host, e))?
                .collect();
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

fn seed() -> u64 {
    let mut buf = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut buf).is_ok() {
            return u64::from_le_bytes(buf);
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id())
}

fn daemonise() -> std::io::Result<()> {
    // SAFETY: fork() is called before any other thread exists (midge is
    // single-threaded); the parent exits at once without touching shared state.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid > 0 {
        std::process::exit(0);
    }
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::unix::io::AsRawFd;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        unsafe {
            libc::dup2(devnull.as_raw_fd(), fd);
        }
    }
    Ok(())
}

/// SIGHUP: re-read the config file and reload what Mosquitto reloads
/// (password and ACL files, TLS certificates and keys). Listeners stay.
struct Reloader {
    config_path: Option<String>,
    /// Dynamic security config file per security policy (saved on change).
    dynsec_files: Vec<Option<String>>,
    verbose: bool,
    persistence: Option<Persistence>,
}

/// The persistence store and its save triggers.
struct Persistence {
    store: crate::persist::Store,
    /// Seconds between snapshots (0 = never on a timer).
    autosave_interval: u64,
    /// Count changes instead of seconds (`autosave_on_changes`).
    on_changes: bool,
    last_save: u64,
    changes_at_save: u64,
}

/// Load saved state into the broker and decide how to keep saving it.
fn open_persistence(
    cfg: &Config,
    broker: &mut Broker,
    now: u64,
) -> Result<Option<Persistence>, String> {
    if !cfg.persistence {
        return Ok(None);
    }
    let journal = cfg.persistence_mode == config::PersistenceMode::Journal;
    let opts = crate::persist::Options {
        path: cfg.persistence_path().into(),
        journal,
    };
    let path = opts.path.display().to_string();
    let (mut store, state, report) =
        crate::persist::Store::open(opts, now).map_err(|e| e.to_string())?;
    for p in &report.problems {
        log::error!("Error: persistence: {}.", p);
    }
    log::info!(
        target: "information",
        "Restored {} retained messages and {} sessions ({} queued messages) from {}{}.",
        report.retained,
        report.sessions,
        report.messages,
        path,
        if report.journal_records > 0 {
            format!(" and {} journal records", report.journal_records)
        } else {
            String::new()
        }
    );
    broker.import(state, now);
    broker.set_journaling(journal);
    if journal {
        // Start this run's journal on a fresh snapshot of what was loaded.
        let state = broker.export(now);
        store
            .snapshot(&state, now)
            .map_err(|e| format!("Error: Unable to write {}: {}.", path, e))?;
    }
    Ok(Some(Persistence {
        store,
        autosave_interval: u64::from(cfg.autosave_interval),
        on_changes: cfg.autosave_on_changes,
        last_save: now,
        changes_at_save: broker.change_count(),
    }))
}

impl Reloader {
    fn save_now(&mut self, broker: &mut Broker, now: u64) {
        let Some(p) = self.persistence.as_mut() else {
            return;
        };
        if p.store.journaling() {
            if let Err(e) = p.store.append(broker, now) {
                log::error!("Error: persistence journal: {}.", e);
            }
        }
        let state = broker.export(now);
        match p.store.snapshot(&state, now) {
            Ok(()) => {
                log::info!(target: "information", "Saving in-memory database to disk.");
                p.last_save = now;
                p.changes_at_save = broker.change_count();
            }
            Err(e) => log::error!("Error saving in-memory database: {}.", e),
        }
    }
}

impl net::Control for Reloader {
    fn after_pass(&mut self, broker: &mut Broker, now: u64) {
        for (topic, line) in crate::logging::drain_topic_lines() {
            broker.publish_internal(&topic, line.as_bytes(), false, now);
        }
        for idx in broker.take_dynsec_changes() {
            let path = self.dynsec_files.get(idx).and_then(|f| f.clone());
            if let (Some(path), Some(d)) = (path, broker.dynsec(idx)) {
                if let Err(e) = d.save(Path::new(&path)) {
                    log::error!("Error saving Dynamic security plugin config: {}", e);
                }
            }
        }
        let Some(p) = self.persistence.as_mut() else {
            return;
        };
        let mut compact = false;
        if p.store.journaling() {
            // Group commit: one fsync for everything accepted in this pass,
            // before its acknowledgements are flushed to the sockets.
            match p.store.append(broker, now) {
                Ok(c) => compact = c,
                Err(e) => log::error!("Error: persistence journal: {}.", e),
            }
        }
        let changes = broker.change_count() - p.changes_at_save;
        let due = if p.on_changes {
            p.autosave_interval > 0 && changes >= p.autosave_interval
        } else if p.autosave_interval > 0 && now >= p.last_save + p.autosave_interval * 1000 {
            if changes == 0 {
                // Nothing to save: start the next interval from here.
                p.last_save = now;
            }
            changes > 0
        } else {
            false
        };
        if due || compact {
            self.save_now(broker, now);
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        let p = self.persistence.as_ref()?;
        if p.on_changes || p.autosave_interval == 0 {
            return None;
        }
        Some(p.last_save + p.autosave_interval * 1000)
    }

    fn save(&mut self, broker: &mut Broker, now: u64) {
        self.save_now(broker, now);
    }

    fn reload(
        &mut self,
        broker: &mut Broker,
        specs: &[ListenerSpec],
        tls: &mut [Option<std::sync::Arc<rustls::ServerConfig>>],
    ) {
        notify_systemd("RELOADING=1");
        self.reload_files(broker, specs, tls);
        notify_systemd("READY=1");
    }
}

impl Reloader {
    fn reload_files(
        &mut self,
        broker: &mut Broker,
        specs: &[ListenerSpec],
        tls: &mut [Option<std::sync::Arc<rustls::ServerConfig>>],
    ) {
        crate::logging::reopen();
        let Some(path) = &self.config_path else {
            return;
        };
        let cfg = match config::load(Path::new(path)) {
            Ok(c) => c,
            Err(e) => {
                log::error!(
                    "Error reloading {}: {} Keeping the running configuration.",
                    path,
                    e
                );
                return;
            }
        };
        crate::logging::init(&crate::logging::LogSetup::from_config(&cfg, self.verbose));
        match plan(&cfg, &[]) {
            Ok((bc, _, _)) => broker.reload_config(bc),
            Err(e) => log::error!("{} Keeping the running limits.", e),
        }
        for (i, sec) in security_blocks(&cfg).iter().enumerate() {
            match load_policy(sec) {
                Ok(p) => broker.set_security(i, p),
                Err(e) => log::error!("{} Keeping the previous one.", e),
            }
        }
        let listeners = cfg.all_listeners();
        for (spec, slot) in specs.iter().zip(tls.iter_mut()) {
            if slot.is_none() {
                continue;
            }
            let Some(l) = listeners.get(spec.settings) else {
                continue;
            };
            match net::tls::server_config(&l.tls) {
                Ok(c) => *slot = Some(c),
                Err(e) => log::error!(
                    "Error reloading TLS for port {}: {} Keeping the previous certificate.",
                    l.port,
                    e
                ),
            }
        }
    }
}

/// Tell systemd (Type=notify) how we are doing, when started by it.
pub fn notify_systemd(state: &str) {
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        log::warn!("Warning: unable to notify systemd: {}.", e);
    }
}

/// The account midge runs as after start-up.
struct RunAs {
    uid: libc::uid_t,
    gid: libc::gid_t,
    name: String,
}

/// Started as root: the account `user` names (Mosquitto's `user` option,
/// default "mosquitto"), falling back to "nobody" when that user does not
/// exist. None when midge is not root or `user` is empty: it stays as it is.
fn resolve_user(user: &str) -> Result<Option<RunAs>, String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || user.is_empty() {
        return Ok(None);
    }
    let lookup = |name: &str| -> Option<(libc::uid_t, libc::gid_t)> {
        // /etc/passwd first: getpwnam loads the NSS modules (a few hundred
        // KB of resident memory on a Pi) for what is nearly always a local
        // system user.
        if let Some(ids) = passwd_entry(name) {
            return Some(ids);
        }
        let cname = std::ffi::CString::new(name).ok()?;
        // SAFETY: getpwnam returns a pointer to static storage or null; we
        // copy the two fields out before any other call could reuse it.
        unsafe {
            let pw = libc::getpwnam(cname.as_ptr());
            if pw.is_null() {
                None
            } else {
                Some(((*pw).pw_uid, (*pw).pw_gid))
            }
        }
    };
    match lookup(user) {
        Some((uid, gid)) => Ok(Some(RunAs {
            uid,
            gid,
            name: user.to_string(),
        })),
        None => {
            log::warn!(
                "Warning: Unable to drop privileges to '{}' because this user does not exist. Trying 'nobody' instead.",
                user
            );
            match lookup("nobody") {
                Some((uid, gid)) => Ok(Some(RunAs {
                    uid,
                    gid,
                    name: "nobody".to_string(),
                })),
                None => Err("Error: Unable to drop privileges to 'nobody'.".to_string()),
            }
        }
    }
}

/// Become `r`: supplementary groups, gid, then uid.
fn become_user(r: &RunAs) -> Result<(), String> {
    let cname = std::ffi::CString::new(r.name.as_str()).map_err(|_| "bad user name".to_string())?;
    // SAFETY: setgroups reads `g.len()` gids from a live Vec; initgroups,
    // setgid and setuid take plain values and a valid C string; failures
    // are reported through their return values.
    let local_groups = group_entries(&r.name, r.gid);
    unsafe {
        let grouped = match &local_groups {
            Some(g) => libc::setgroups(g.len() as _, g.as_ptr()),
            None => libc::initgroups(cname.as_ptr(), r.gid),
        };
        if grouped != 0 {
            return Err(format!(
                "Error setting groups whilst dropping privileges: {}.",
                std::io::Error::last_os_error()
            ));
        }
        if libc::setgid(r.gid) != 0 {
            return Err(format!(
                "Error setting gid whilst dropping privileges: {}.",
                std::io::Error::last_os_error()
            ));
        }
        if libc::setuid(r.uid) != 0 {
            return Err(format!(
                "Error setting uid whilst dropping privileges: {}.",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The log file when `log_dest file` is in force.
fn log_file_path(cfg: &Config) -> Option<&str> {
    let dests = cfg.effective_log_dest();
    if dests.contains(&config::LogDest::None) || !dests.contains(&config::LogDest::File) {
        return None;
    }
    cfg.log_file.as_deref()
}

/// Files root made at start-up that the run-as user must reopen or replace
/// later: the log file (reopened on SIGHUP, after logrotate), the database
/// and its journal (read at the next start, perhaps by systemd as that
/// user). Root-owned ones are given to the user; others are left alone.
fn hand_over_files(cfg: &Config, r: &RunAs) {
    use std::os::unix::fs::MetadataExt;
    if r.uid == 0 {
        return;
    }
    let mut files: Vec<String> = Vec::new();
    if let Some(log) = log_file_path(cfg) {
        // Created now (0600) if no line was logged yet, so it is there to hand over.
        let _ = crate::logging::open_log_file(log);
        files.push(log.to_string());
    }
    if cfg.persistence {
        let db = cfg.persistence_path();
        files.push(format!("{}.journal", db));
        files.push(db);
    }
    for f in files {
        let Ok(meta) = std::fs::metadata(&f) else {
            continue;
        };
        if meta.uid() != 0 {
            continue;
        }
        if let Err(e) = std::os::unix::fs::chown(&f, Some(r.uid), Some(r.gid)) {
            log::warn!("Warning: Unable to give {} to user {}: {}.", f, r.name, e);
        }
    }
}

/// The name of the account this process runs as (for messages).
fn current_user_name() -> String {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                let _pw = f.next()?;
                (f.next()?.parse::<libc::uid_t>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {}", uid))
}

/// Whether this process may create and replace files in `dir`.
fn dir_writable(dir: &Path) -> Result<(), std::io::Error> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: access(2) reads a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process may append to `file` (or create it).
fn file_writable(file: &Path) -> Result<(), std::io::Error> {
    if !file.exists() {
        return dir_writable(file.parent().unwrap_or(Path::new(".")));
    }
    let c = std::ffi::CString::new(file.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: access(2) reads a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Beyond Mosquitto: everything the broker writes after start-up, checked as
/// the user it runs as (call after the privilege drop). One message per
/// problem, with the path, the user and the fix; empty when all is well.
///
/// `root_creates_log`: the log file does not exist yet, and root will create
/// it and hand it over at start-up (the `--test-config` view).
fn writability_problems(cfg: &Config, user: &str, root_creates_log: bool) -> Vec<String> {
    let mut out = Vec::new();
    let fix = |path: &Path| {
        format!(
            "Fix: chown {} '{}' (or choose a path that user can write).",
            user,
            path.display()
        )
    };
    if let Some(log) = log_file_path(cfg) {
        let p = Path::new(log);
        let handed_over = root_creates_log && !p.exists();
        if let Err(e) = file_writable(p).or_else(|e| if handed_over { Ok(()) } else { Err(e) }) {
            out.push(format!(
                "Warning: log file {} is not writable by user {} ({}): logging to it will stop at the next reload or rotation. {}",
                log,
                user,
                e,
                fix(p)
            ));
        } else {
            // logrotate with `nocreate` (Mosquitto's own rule) moves the file
            // away and leaves the broker to create the next one on SIGHUP.
            let dir = p.parent().unwrap_or(Path::new(""));
            let shown = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Err(e) = dir_writable(dir) {
                out.push(format!(
                    "Warning: log directory {} is not writable by user {} ({}): after logrotate moves {} away, midge cannot create a new one and keeps writing to the moved file. {}",
                    shown.display(),
                    user,
                    e,
                    log,
                    fix(shown)
                ));
            }
        }
    }
    if cfg.persistence {
        let db = cfg.persistence_path();
        let dir = Path::new(&db).parent().unwrap_or(Path::new(""));
        if let Err(e) = dir_writable(dir) {
            let shown = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            out.push(format!(
                "Warning: persistence directory {} is not writable by user {} ({}): {} cannot be saved. {}",
                shown.display(),
                user,
                e,
                db,
                fix(shown)
            ));
        }
    }
    for s in security_blocks(cfg) {
        if let Ok(Some((_, Some(file)))) = dynsec_plugin(&s) {
            let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
            let shown = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Err(e) = dir_writable(dir).and_then(|_| file_writable(Path::new(&file))) {
                out.push(format!(
                    "Warning: dynamic security file {} cannot be rewritten by user {} ({}): changes made with midge_ctrl/mosquitto_ctrl will be lost at restart. {}",
                    file,
                    user,
                    e,
                    fix(shown)
                ));
            }
        }
    }
    out
}

/// `--test-config`: the writability check as the user midge would run as.
/// As root that needs the user's own view of the file system, so a child
/// process drops privileges, checks and reports back through a socket pair.
fn test_config_writability(cfg: &Config) -> Vec<String> {
    use std::io::{Read, Write};
    let r = match resolve_user(&cfg.user) {
        Ok(Some(r)) => r,
        Ok(None) => return writability_problems(cfg, &current_user_name(), false),
        Err(e) => return vec![e],
    };
    let Ok((mut parent, mut child)) = std::os::unix::net::UnixStream::pair() else {
        return vec!["Warning: unable to check which files are writable.".to_string()];
    };
    // SAFETY: --test-config is single-threaded at this point; the child only
    // drops privileges, checks paths, writes to its socket and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(parent);
        let lines = match become_user(&r) {
            Ok(()) => writability_problems(cfg, &r.name, r.uid != 0),
            Err(e) => vec![e],
        };
        let _ = child.write_all(lines.join("\n").as_bytes());
        drop(child);
        // SAFETY: leave the forked child without running the parent's
        // exit handlers or destructors.
        unsafe { libc::_exit(0) };
    }
    drop(child);
    let mut text = String::new();
    if pid > 0 {
        let _ = parent.read_to_string(&mut text);
        let mut status = 0;
        // SAFETY: reaps the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    text.lines().map(str::to_string).collect()
}

/// uid and gid of `name` from /etc/passwd, if it is there.
fn passwd_entry(name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// The supplementary groups of `name` from /etc/group (plus its primary
/// group), or None when the file cannot be read (then NSS is asked).
fn group_entries(name: &str, primary: libc::gid_t) -> Option<Vec<libc::gid_t>> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    let mut gids = vec![primary];
    for line in text.lines() {
        let mut f = line.split(':');
        let (_group, _pw, gid, members) = (f.next(), f.next(), f.next(), f.next());
        let (Some(gid), Some(members)) = (gid, members) else {
            continue;
        };
        if members.split(',').any(|m| m == name) {
            if let Ok(g) = gid.parse() {
                if !gids.contains(&g) {
                    gids.push(g);
                }
            }
        }
    }
    Some(gids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_name_binds_every_address_it_resolves_to_once() {
        let v4: SocketAddr = "127.0.0.1:1883".parse().unwrap_or_else(|_| unreachable!());
        let v6: SocketAddr = "[::1]:1883".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(usable_addrs(vec![v4, v6, v4], None), vec![v4, v6]);
        assert_eq!(
            usable_addrs(vec![v4, v6], Some(config::SocketDomain::Ipv4)),
            vec![v4]
        );
        assert_eq!(
            usable_addrs(vec![v4, v6], Some(config::SocketDomain::Ipv6)),
            vec![v6]
        );
        assert!(usable_addrs(vec![v4], Some(config::SocketDomain::Ipv6)).is_empty());
    }
}
