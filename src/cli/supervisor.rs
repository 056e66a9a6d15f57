//! cli::supervisor: the process's side of a running broker.
//!
//! Owns: reloading on SIGHUP (config, logging, limits, security policies, TLS
//! certificates), saving dynamic-security changes to their JSON files, and
//! persistence: loading saved state at start-up, the journal's group commit
//! after each pass, autosave by time or by change count, and the final save.
//!
//! Must not: bind or poll sockets (that is `net`, which calls this through
//! `net::Control`) or hold broker logic.

use std::path::Path;

use super::plan::security_blocks;
use super::{os, policy};
use crate::broker::Broker;
use crate::config::{self, Config};
use crate::net::{self, ListenerSpec};

/// The runtime supervisor: what the event loop asks of the process between
/// passes. SIGHUP: re-read the config file and reload what Mosquitto reloads
/// (password and ACL files, TLS certificates and keys; listeners stay).
/// After each pass: save changed dynamic-security files, commit the
/// persistence journal, and take a snapshot when autosave says so.
pub struct Supervisor {
    pub config_path: Option<String>,
    /// Dynamic security config file per security policy (saved on change).
    pub dynsec_files: Vec<Option<String>>,
    pub verbose: bool,
    pub persistence: Option<Persistence>,
}

/// The persistence store and its save triggers.
pub struct Persistence {
    store: crate::persist::Store,
    /// Seconds between snapshots (0 = never on a timer).
    autosave_interval: u64,
    /// Count changes instead of seconds (`autosave_on_changes`).
    on_changes: bool,
    last_save: u64,
    changes_at_save: u64,
}

/// Load saved state into the broker and decide how to keep saving it.
pub fn open_persistence(
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

impl Supervisor {
    pub fn save_now(&mut self, broker: &mut Broker, now: u64) {
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

impl net::Control for Supervisor {
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
        os::notify_systemd("RELOADING=1");
        self.reload_files(broker, specs, tls);
        os::notify_systemd("READY=1");
    }
}

impl Supervisor {
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
        match super::plan_here(&cfg, &[]) {
            Ok(plan) => broker.reload_config(plan.broker),
            Err(e) => log::error!("{} Keeping the running limits.", e),
        }
        for (i, sec) in security_blocks(&cfg).iter().enumerate() {
            match policy::load_policy(sec) {
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
