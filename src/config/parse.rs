//! Reading configuration files line by line: comments, tokens, `include_dir`,
//! the section state (current listener, bridge and plugin) and the checks
//! Mosquitto makes once the whole configuration has been read.
//!
//! Owns the parser state and the helpers directive handlers use to read
//! values. Must not know individual directives: those live in the table in
//! `directives.rs`, which this file only dispatches to (and whose handlers
//! use this file's helpers: the two are one table-driven parser, see there).

use std::collections::HashSet;
use std::path::Path;

use super::directives::{lookup, Kind, Scope};
use super::{Bridge, Config, ConfigError, Listener, ListenerProtocol, Plugin, Security};

/// Which listener per-listener options go to. Like Mosquitto, every file
/// starts at the default listener and `listener` lines move it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListenerRef {
    Default,
    Explicit(usize),
}

/// Which security block security options go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SecRef {
    Global,
    Listener(ListenerRef),
}

/// The value part of one configuration line.
///
/// Mosquitto splits lines with `strtok(" ")`: words are separated by runs of
/// spaces only (a tab is part of a word), and string values take the rest of
/// the line with blanks trimmed.
pub(super) struct Args<'a> {
    /// The directive as written (for aliases, the alias).
    pub name: &'a str,
    rest: &'a str,
}

impl<'a> Args<'a> {
    /// Splits `line` (already trimmed, not a comment) into name and rest.
    fn new(line: &'a str) -> Args<'a> {
        match line.split_once(' ') {
            Some((name, rest)) => Args { name, rest },
            None => Args {
                name: line,
                rest: "",
            },
        }
    }

    /// The next space-separated word, if any.
    pub fn word(&mut self) -> Option<&'a str> {
        let s = self.rest.trim_start_matches(' ');
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        match s.split_once(' ') {
            Some((w, r)) => {
                self.rest = r;
                Some(w)
            }
            None => {
                self.rest = "";
                Some(s)
            }
        }
    }

    /// The rest of the line, blanks trimmed; `None` when nothing is left.
    pub fn rest_string(&mut self) -> Option<&'a str> {
        let s = self.rest.trim();
        self.rest = "";
        if s.is_empty() {
            None
        } else {
            Some(s)
        }
    }

    /// A required word.
    pub fn need_word(&mut self) -> Result<&'a str, String> {
        let name = self.name;
        self.word().ok_or_else(|| empty(name))
    }

    /// A required string value (rest of the line).
    pub fn string(&mut self) -> Result<String, String> {
        let name = self.name;
        self.rest_string()
            .map(str::to_string)
            .ok_or_else(|| empty(name))
    }

    /// `true`/`false`; like Mosquitto also `1`/`0`. Anything else is an error.
    pub fn bool(&mut self) -> Result<bool, String> {
        let w = self.need_word()?;
        match w {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(invalid(self.name, w)),
        }
    }

    /// A decimal integer (optional sign). Mosquitto uses `atoi`, which reads
    /// garbage as 0; midge refuses it instead.
    pub fn int(&mut self) -> Result<i64, String> {
        let w = self.need_word()?;
        w.parse::<i64>().map_err(|_| invalid(self.name, w))
    }

    /// An integer that must lie in `min..=max` (error names the value).
    pub fn int_in(&mut self, min: i64, max: i64) -> Result<i64, String> {
        let v = self.int()?;
        if v < min || v > max {
            return Err(invalid(self.name, &v.to_string()));
        }
        Ok(v)
    }
}

/// `Empty <name> value in configuration.`
pub(super) fn empty(name: &str) -> String {
    format!("Empty {name} value in configuration.")
}

/// `Invalid <name> value (<value>).`
pub(super) fn invalid(name: &str, value: &str) -> String {
    format!("Invalid {name} value ({value}).")
}

/// Stores a single-valued string option, refusing a second one like Mosquitto.
pub(super) fn set_once(slot: &mut Option<String>, value: String, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("Duplicate {name} value in configuration."));
    }
    *slot = Some(value);
    Ok(())
}

/// A TCP port 1..=65535 (or 0..=65535 with `allow_zero`).
pub(super) fn parse_port(word: &str, allow_zero: bool) -> Result<u16, String> {
    let min = if allow_zero { 0 } else { 1 };
    match word.parse::<i64>() {
        Ok(v) if v >= min && v <= i64::from(u16::MAX) => {
            u16::try_from(v).map_err(|_| format!("Invalid port value ({word})."))
        }
        _ => Err(format!("Invalid port value ({word}).")),
    }
}

/// The whole parse: configuration built so far plus the state Mosquitto keeps
/// across files (globals) and per file (current listener/bridge/plugin).
pub(super) struct Parser {
    pub cfg: Config,
    /// Mosquitto's `default_listener`, kept aside until the end.
    pub default_listener: Listener,
    /// `port` was given (Mosquitto: `default_listener.port != 0`).
    pub default_port_set: bool,
    /// Where the default listener was first configured.
    default_origin: Option<(String, usize)>,
    /// Directives that configured the default listener, for the warning
    /// given when Mosquitto would not create it.
    default_touches: Vec<(String, usize, &'static str)>,
    /// A security option has been seen (Mosquitto's `cur_security_options`):
    /// `per_listener_settings true` after it is an error.
    pub security_touched: bool,
    /// Single-valued options with a non-`Option` default already given.
    seen: HashSet<String>,
    pub log_dest_set: bool,
    pub log_type_set: bool,
    /// Current file, line and include depth (0 = main file).
    pub file: String,
    pub line: usize,
    level: usize,
    pub cur_listener: ListenerRef,
    pub cur_bridge: Option<usize>,
    pub cur_plugin: Option<(SecRef, usize)>,
}

/// Loads and finishes the main file.
pub(super) fn load_main(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let bytes = read_config_file(&name).map_err(|message| ConfigError {
        file: name.clone(),
        line: 0,
        message,
    })?;
    parse_main(&bytes, &name)
}

/// Parses `bytes` as the main file and finishes the configuration.
pub(super) fn parse_main(bytes: &[u8], file_name: &str) -> Result<Config, ConfigError> {
    let mut p = Parser::new(file_name);
    p.parse_file(bytes, file_name, 0)?;
    p.finish()
}

/// Reads one configuration file, with Mosquitto's messages on failure.
fn read_config_file(name: &str) -> Result<Vec<u8>, String> {
    if Path::new(name).is_dir() {
        return Err(format!("Config file {name} is a directory."));
    }
    std::fs::read(name).map_err(|_| format!("Unable to open config file {name}."))
}

/// Mosquitto's include_dir ordering: letters compared case-insensitively
/// first, and where they match case-insensitively, upper case first
/// (`00 01 A a B b`).
pub(super) fn include_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b.iter()) {
        let ord = x
            .to_ascii_uppercase()
            .cmp(&y.to_ascii_uppercase())
            .then(x.cmp(y));
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// The `*.conf` files of `dir`, as paths `<dir>/<name>`, in Mosquitto's order.
fn include_dir_files(dir: &str) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|_| format!("Unable to open include_dir '{dir}'."))?;
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|_| format!("Unable to open include_dir '{dir}'."))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Mosquitto wants something before the suffix: a file named ".conf" is skipped.
        if name.len() > 5 && name.ends_with(".conf") {
            names.push(name);
        }
    }
    names.sort_unstable_by(|a, b| include_order(a, b));
    let sep = if dir.ends_with('/') { "" } else { "/" };
    Ok(names
        .into_iter()
        .map(|n| format!("{dir}{sep}{n}"))
        .collect())
}

/// Strips what Mosquitto ignores around a line: CR/LF at the end, and (more
/// leniently than Mosquitto) blanks at both ends.
fn trim_line(raw: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| matches!(*b, b' ' | b'\t' | b'\r' | b'\n');
    let start = raw.iter().position(|b| !is_blank(b)).unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |i| i + 1);
    raw.get(start..end).unwrap_or(&[])
}

impl Parser {
    fn new(main_file: &str) -> Parser {
        Parser {
            cfg: Config::default(),
            default_listener: Listener::default(),
            default_port_set: false,
            default_origin: None,
            default_touches: Vec::new(),
            security_touched: false,
            seen: HashSet::new(),
            log_dest_set: false,
            log_type_set: false,
            file: main_file.to_string(),
            line: 0,
            level: 0,
            cur_listener: ListenerRef::Default,
            cur_bridge: None,
            cur_plugin: None,
        }
    }

    /// Parses one file. The per-file state (current listener, bridge and
    /// plugin) starts fresh, as in Mosquitto, and is restored afterwards so
    /// the including file carries on where it was.
    fn parse_file(&mut self, bytes: &[u8], file: &str, level: usize) -> Result<(), ConfigError> {
        let saved = (
            std::mem::replace(&mut self.file, file.to_string()),
            self.line,
            self.level,
            self.cur_listener,
            self.cur_bridge,
            self.cur_plugin,
        );
        self.level = level;
        self.cur_listener = ListenerRef::Default;
        self.cur_bridge = None;
        self.cur_plugin = None;

        for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            self.line = index + 1;
            let line = trim_line(raw);
            if line.is_empty() || line.first() == Some(&b'#') {
                continue;
            }
            let text = std::str::from_utf8(line)
                .map_err(|_| self.error_here("Malformed UTF-8 in configuration.".to_string()))?;
            self.directive(text)?;
        }

        self.file = saved.0;
        self.line = saved.1;
        self.level = saved.2;
        self.cur_listener = saved.3;
        self.cur_bridge = saved.4;
        self.cur_plugin = saved.5;
        Ok(())
    }

    fn error_here(&self, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            message,
        }
    }

    /// Handles one non-comment line.
    fn directive(&mut self, text: &str) -> Result<(), ConfigError> {
        let mut args = Args::new(text);
        let name = args.name;
        if name == "include_dir" {
            // Handled here rather than in the table because it recurses into
            // the parser and reports errors at the included file's lines.
            return self.include_dir(&mut args);
        }
        let result = self.dispatch(&mut args);
        result.map_err(|message| self.error_here(message))
    }

    fn dispatch(&mut self, args: &mut Args<'_>) -> Result<(), String> {
        let name = args.name;
        let Some(d) = lookup(name) else {
            return Err(format!("Unknown configuration variable \"{name}\"."));
        };
        match d.kind {
            Kind::Refused(reason) => Err(format!("{name} is not supported by midge: {reason}")),
            Kind::Obsolete(message) => {
                self.warn(message);
                Ok(())
            }
            Kind::Handler(handler) => {
                match d.scope {
                    Scope::Bridge if self.cur_bridge.is_none() => {
                        return Err(format!(
                            "Invalid bridge configuration: \"{name}\" is a bridge option and must \
                             follow a \"connection <name>\" line."
                        ));
                    }
                    Scope::Listener => self.touch_listener(d.name),
                    Scope::Security if self.cfg.per_listener_settings => {
                        self.touch_listener(d.name)
                    }
                    _ => {}
                }
                handler(self, args)
            }
            Kind::IncludeDir => Err("include_dir is handled by the parser".to_string()),
        }
    }

    /// Records that a per-listener directive went to the default listener.
    fn touch_listener(&mut self, name: &'static str) {
        if self.cur_listener == ListenerRef::Default {
            self.touch_default(name);
        }
    }

    /// Records that `name` configured the default listener here.
    pub fn touch_default(&mut self, name: &'static str) {
        if self.default_origin.is_none() {
            self.default_origin = Some((self.file.clone(), self.line));
        }
        self.default_touches
            .push((self.file.clone(), self.line, name));
    }

    fn include_dir(&mut self, args: &mut Args<'_>) -> Result<(), ConfigError> {
        if self.level > 0 {
            return Err(self.error_here(
                "include_dir is only allowed in the main configuration file \
                 (Mosquitto ignores it in included files)."
                    .to_string(),
            ));
        }
        let dir = args
            .rest_string()
            .ok_or_else(|| self.error_here(empty("include_dir")))?;
        let files = include_dir_files(dir).map_err(|m| self.error_here(m))?;
        for file in files {
            let bytes = read_config_file(&file).map_err(|m| self.error_here(m))?;
            self.cfg.included_files.push(file.clone());
            self.parse_file(&bytes, &file, self.level + 1)?;
        }
        Ok(())
    }

    /// Adds `file:line: message` to the warnings.
    pub fn warn(&mut self, message: &str) {
        let w = format!("{}:{}: {}", self.file, self.line, message);
        self.cfg.warnings.push(w);
    }

    /// Adds `file:line: message` to the notices.
    pub fn notice(&mut self, message: &str) {
        let n = format!("{}:{}: {}", self.file, self.line, message);
        self.cfg.notices.push(n);
    }

    /// True the first time `key` is seen; for duplicate checks of options
    /// whose field has a non-`Option` default.
    pub fn first_time(&mut self, key: String) -> bool {
        self.seen.insert(key)
    }

    pub fn listener(&mut self) -> Result<&mut Listener, String> {
        match self.cur_listener {
            ListenerRef::Default => Ok(&mut self.default_listener),
            ListenerRef::Explicit(i) => self.cfg.listeners.get_mut(i).ok_or_else(internal),
        }
    }

    /// Where security options go now (Mosquitto's `conf__set_cur_security_options`).
    pub fn security_target(&mut self) -> SecRef {
        self.security_touched = true;
        if self.cfg.per_listener_settings {
            SecRef::Listener(self.cur_listener)
        } else {
            SecRef::Global
        }
    }

    pub fn security_at(&mut self, target: SecRef) -> Result<&mut Security, String> {
        match target {
            SecRef::Global => Ok(&mut self.cfg.security),
            SecRef::Listener(ListenerRef::Default) => Ok(&mut self.default_listener.security),
            SecRef::Listener(ListenerRef::Explicit(i)) => self
                .cfg
                .listeners
                .get_mut(i)
                .map(|l| &mut l.security)
                .ok_or_else(internal),
        }
    }

    /// The current security block.
    pub fn security(&mut self) -> Result<&mut Security, String> {
        let target = self.security_target();
        self.security_at(target)
    }

    /// The plugin that `auth_opt_*` / `auth_plugin_deny_special_chars` apply to.
    pub fn plugin(&mut self, what: &str) -> Result<&mut Plugin, String> {
        let Some((target, index)) = self.cur_plugin else {
            let article = if what.starts_with('a') { "An" } else { "A" };
            return Err(format!(
                "{article} {what} option exists in the config file without an auth_plugin."
            ));
        };
        self.security_at(target)?
            .plugins
            .get_mut(index)
            .ok_or_else(internal)
    }

    pub fn bridge(&mut self) -> Result<&mut Bridge, String> {
        let index = self.cur_bridge.ok_or_else(|| {
            "Invalid bridge configuration: bridge options must follow a \"connection <name>\" line."
                .to_string()
        })?;
        self.cfg.bridges.get_mut(index).ok_or_else(internal)
    }

    /// Checks Mosquitto makes after reading everything, and the default listener.
    fn finish(mut self) -> Result<Config, ConfigError> {
        self.check_bridges()?;

        if default_listener_needed(&self.default_listener, self.default_port_set) {
            let mut l = self.default_listener;
            l.is_default = true;
            if let Some((file, line)) = self.default_origin.take() {
                l.file = file;
                l.line = line;
            }
            self.cfg.default_listener = Some(l);
        } else {
            for (file, line, name) in std::mem::take(&mut self.default_touches) {
                self.cfg.warnings.push(format!(
                    "{file}:{line}: {name} was given before any listener line in this file, so it \
                     configures the default listener, which is not created (as in Mosquitto, only \
                     port, bind_address and other listener options start it); it has no effect."
                ));
            }
        }
        Ok(self.cfg)
    }

    fn check_bridges(&self) -> Result<(), ConfigError> {
        let at = |b: &Bridge, message: String| ConfigError {
            file: b.file.clone(),
            line: b.line,
            message,
        };
        for b in &self.cfg.bridges {
            if b.addresses.is_empty() {
                return Err(at(
                    b,
                    "Invalid bridge configuration: no remote addresses defined.".to_string(),
                ));
            }
            if b.topics.is_empty() {
                return Err(at(
                    b,
                    "Invalid bridge configuration: no topics defined.".to_string(),
                ));
            }
        }
        // Mosquitto derives missing client ids from the host name; a
        // placeholder stands in for it, which cannot collide with a real id
        // unless someone writes the placeholder literally.
        let local_id = |b: &Bridge| match (&b.local_clientid, &b.remote_clientid) {
            (Some(l), _) => l.clone(),
            (None, Some(r)) => format!("local.{r}"),
            (None, None) => format!("local.<hostname>.{}", b.name),
        };
        for (i, a) in self.cfg.bridges.iter().enumerate() {
            for b in self.cfg.bridges.iter().skip(i + 1) {
                let id = local_id(a);
                if id == local_id(b) {
                    return Err(at(
                        b,
                        format!(
                            "Bridge local_clientid '{id}' is not unique. Try changing or setting \
                             the local_clientid value for one of the bridges."
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn internal() -> String {
    "internal error: configuration section state lost".to_string()
}

/// Mosquitto creates the default listener only when one of these differs from
/// its initial value (`config__parse_args`). `tls_version`, `http_dir`,
/// `max_topic_alias`, `allow_anonymous`, `acl_file` and `auto_id_prefix` alone
/// do not count.
fn default_listener_needed(l: &Listener, port_set: bool) -> bool {
    let t = &l.tls;
    let s = &l.security;
    port_set
        || l.address.is_some()
        || l.bind_interface.is_some()
        || t.cafile.is_some()
        || t.capath.is_some()
        || t.certfile.is_some()
        || t.keyfile.is_some()
        || t.ciphers.is_some()
        || t.ciphers_tls13.is_some()
        || t.crlfile.is_some()
        || t.require_certificate
        || t.use_identity_as_username
        || t.use_subject_as_username
        || l.use_username_as_clientid
        || l.max_connections != -1
        || l.max_qos != 2
        || l.mount_point.is_some()
        || l.protocol != ListenerProtocol::Mqtt
        || l.socket_domain.is_some()
        || s.password_file.is_some()
        || !s.plugins.is_empty()
        || !s.allow_zero_length_clientid
}
