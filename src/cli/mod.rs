//! cli: the `midge` command line, start-up order and exit codes.
//!
//! Owns: option parsing (getopts, with `mosquitto`'s flags), the order of
//! start-up (config, logging, plan, bind, daemonise, pid file, event loop,
//! policies, persistence, privilege drop, ready), and the exit code.
//!
//! Must not: hold broker logic; it wires the rooms together and gets out of
//! the way. Its parts, each with one job:
//!
//! - `plan`: Config -> broker settings, listener specs, security blocks
//!   (pure, unit-tested);
//! - `policy`: reading the password, ACL and dynamic-security files;
//! - `os`: daemonising, systemd notification, privilege drop, writability;
//! - `supervisor`: the runtime side: reload, autosave, dynamic-security saves.

pub mod events;
pub mod os;
pub mod plan;
pub mod policy;
pub mod supervisor;

use std::net::ToSocketAddrs;
use std::path::Path;

use crate::broker::Broker;
use crate::config::{self, Config};
use crate::net::{self, EventLoop};

pub use os::notify_systemd;
pub use plan::{dynsec_plugin, security_blocks, Plan};
pub use policy::load_policy;
use supervisor::Supervisor;

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
        let checked = plan_here(&cfg, &args.ports).and_then(|_| {
            bridge_specs(&cfg, std::time::Instant::now())?;
            security_blocks(&cfg)
                .iter()
                .try_for_each(|s| load_policy(s).map(|_| ()))
        });
        return match checked {
            Ok(()) => {
                for p in os::test_config_writability(&cfg) {
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

    let Plan {
        broker: broker_cfg,
        listeners: specs,
        local_only,
    } = match plan_here(&cfg, &args.ports) {
        Ok(p) => p,
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
        if let Err(e) = os::daemonise() {
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
    let links = match bridge_specs(&cfg, ev.epoch()) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{}", e);
            return 1;
        }
    };
    if let Err(e) = ev.set_bridges(links) {
        log::error!("Error: {}.", e);
        return 1;
    }
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
    broker.set_event_sink(Box::new(events::log_event));
    for (i, sec) in security_blocks(&cfg).iter().enumerate() {
        match load_policy(sec) {
            Ok(p) => broker.set_security(i, p),
            Err(e) => {
                log::error!("{}", e);
                return 1;
            }
        }
    }
    let persistence = match supervisor::open_persistence(&cfg, &mut broker, ev.now()) {
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
    let mut control = Supervisor {
        config_path: args.config_file.clone(),
        dynsec_files,
        verbose: args.verbose,
        persistence,
    };
    // Files are read as root; from here on midge runs as `user`.
    let run_as = match os::resolve_user(&cfg.user) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{}", e);
            return 1;
        }
    };
    if let Some(r) = &run_as {
        os::hand_over_files(&cfg, r);
        if let Err(e) = os::become_user(r) {
            log::error!("{}", e);
            return 1;
        }
    }
    for p in os::writability_problems(&cfg, &os::current_user_name(), false) {
        log::warn!("{}", p);
    }
    log::info!(target: "information", "midge version {} running", env!("CARGO_PKG_VERSION"));
    os::notify_systemd("READY=1");
    let result = ev.run(&mut broker, &mut control);
    os::notify_systemd("STOPPING=1");
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

/// The plan with the real outside world: a seed from the kernel, the system
/// resolver, and certificates read from their files.
/// The bridge links of `cfg`, with their TLS configurations built (an
/// unreadable certificate is an error naming the `connection` section).
pub fn bridge_specs(
    cfg: &Config,
    epoch: std::time::Instant,
) -> Result<Vec<net::bridges::BridgeSpec>, String> {
    let host = os::hostname();
    let mut out = Vec::new();
    for (i, b) in cfg.bridges.iter().enumerate() {
        let at = format!("{}:{}", b.file, b.line);
        let tls = if b.tls.cafile.is_some() || b.tls.capath.is_some() {
            let version = match b.tls.tls_version.as_deref() {
                // Mosquitto's tlsv1.2 is a minimum: 1.3 is allowed too.
                None | Some("tlsv1.2") => None,
                Some(v) => Some(v.to_string()),
            };
            let opts = crate::client::tls::TlsOptions {
                cafile: b.tls.cafile.clone(),
                capath: b.tls.capath.clone(),
                certfile: b.tls.certfile.clone(),
                keyfile: b.tls.keyfile.clone(),
                insecure: b.tls.insecure,
                version,
                alpn: b.tls.alpn.clone(),
                use_os_certs: false,
            };
            match crate::client::tls::client_config(&opts) {
                Ok(c) => Some(c),
                Err(e) => return Err(format!("Error: bridge {} ({at}): {e}", b.name)),
            }
        } else {
            None
        };
        let bind = match &b.bind_address {
            None => None,
            Some(a) => match a.parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    return Err(format!(
                        "Error: bridge {} ({at}): bridge_bind_address {a} is not an IP address.",
                        b.name
                    ))
                }
            },
        };
        let link =
            crate::bridge::Link::new(b.clone(), i as u32, &host, epoch, os::seed() ^ i as u64);
        out.push(net::bridges::BridgeSpec { link, tls, bind });
    }
    Ok(out)
}

pub fn plan_here(cfg: &Config, ports: &[u16]) -> Result<Plan, String> {
    let resolve = |host: &str, port: u16| -> std::io::Result<Vec<std::net::SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    };
    plan::plan(
        cfg,
        ports,
        &plan::Outside {
            seed: os::seed(),
            resolve: &resolve,
            tls: &|t: &config::Tls| net::tls::server_config(t),
        },
    )
}
