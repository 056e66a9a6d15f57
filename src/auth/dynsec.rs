//! auth::dynsec: Mosquitto's dynamic security plugin, sans IO.
//!
//! Owns: the clients / groups / roles / default-ACL model, Mosquitto's JSON
//! file format (`load`, `from_json`, `to_json`, `save`), the control-topic
//! commands (`handle`), password checks (`authenticate`) and ACL checks
//! (`check`).
//!
//! Must not: touch sockets or the clock, or kick sessions itself. Files are
//! read or written only in `load` / `save`; `handle` only reports which
//! usernames the caller must disconnect and whether the caller must save.
//!
//! Behaviour follows Mosquitto 2.0.11 (checked against the installed
//! broker): JSON object keys are looked up case-insensitively (cJSON's
//! `GetObjectItem`), so both `textName` (written by `dynsec init`) and
//! `textname` (written by the broker) load.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::auth::acl::Access;
use crate::auth::password::{os_error_text, DEFAULT_ITERATIONS, HASH_LEN, SALT_LEN};
use crate::protocol::base64;

/// The topic requests arrive on.
pub const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
/// The topic responses go to.
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";

/// The six ACL types, in the order Mosquitto writes them to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AclType {
    PublishClientSend,
    PublishClientReceive,
    SubscribeLiteral,
    SubscribePattern,
    UnsubscribeLiteral,
    UnsubscribePattern,
}

impl AclType {
    fn parse(s: &str) -> Option<AclType> {
        // Mosquitto compares acltypes with strcasecmp.
        let all = [
            AclType::PublishClientSend,
            AclType::PublishClientReceive,
            AclType::SubscribeLiteral,
            AclType::SubscribePattern,
            AclType::UnsubscribeLiteral,
            AclType::UnsubscribePattern,
        ];
        all.into_iter().find(|t| t.name().eq_ignore_ascii_case(s))
    }

    fn name(self) -> &'static str {
        match self {
            AclType::PublishClientSend => "publishClientSend",
            AclType::PublishClientReceive => "publishClientReceive",
            AclType::SubscribeLiteral => "subscribeLiteral",
            AclType::SubscribePattern => "subscribePattern",
            AclType::UnsubscribeLiteral => "unsubscribeLiteral",
            AclType::UnsubscribePattern => "unsubscribePattern",
        }
    }
}

/// One ACL of a role.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Acl {
    acltype: AclType,
    topic: String,
    /// Mosquitto's default for ACL priorities is 0 (role/group links use -1).
    priority: i64,
    allow: bool,
}

/// A link to a role (from a client or group) or to a client (from a group).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Link {
    name: String,
    /// -1 when not given; -1 is not written back.
    priority: i64,
}

/// A stored PBKDF2-SHA512 password.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Password {
    hash: Vec<u8>,
    salt: Vec<u8>,
    iterations: u32,
}

impl Password {
    fn new(password: &str) -> Option<Password> {
        use ring::rand::SecureRandom;
        let mut salt = [0u8; SALT_LEN];
        ring::rand::SystemRandom::new().fill(&mut salt).ok()?;
        Some(Password::with_salt(password, &salt, DEFAULT_ITERATIONS))
    }

    fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Password {
        let mut hash = vec![0u8; HASH_LEN];
        let n = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA512,
            n,
            salt,
            password.as_bytes(),
            &mut hash,
        );
        Password {
            hash,
            salt: salt.to_vec(),
            iterations: n.get(),
        }
    }

    fn matches(&self, password: &[u8]) -> bool {
        let Some(n) = std::num::NonZeroU32::new(self.iterations) else {
            return false;
        };
        // ring's verify compares in constant time.
        ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA512,
            n,
            &self.salt,
            password,
            &self.hash,
        )
        .is_ok()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Client {
    clientid: Option<String>,
    textname: Option<String>,
    textdescription: Option<String>,
    password: Option<Password>,
    disabled: bool,
    roles: Vec<Link>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Group {
    textname: Option<String>,
    textdescription: Option<String>,
    roles: Vec<Link>,
    /// Member usernames with the client's priority for this group.
    clients: Vec<Link>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Role {
    textname: Option<String>,
    textdescription: Option<String>,
    acls: Vec<Acl>,
}

impl Role {
    /// Keeps ACLs grouped by type (file order) and, within a type, by
    /// priority, higher first; ties keep insertion order (Mosquitto's sort
    /// is a stable merge sort on priority only).
    ///
    /// The original position is the last key, so an unstable sort (one
    /// small instantiation instead of the stable sort's, which costs the
    /// aarch64 build several KB each) gives the stable order.
    fn sort(&mut self) {
        let mut keyed: Vec<(usize, Acl)> = std::mem::take(&mut self.acls)
            .into_iter()
            .enumerate()
            .collect();
        keyed.sort_unstable_by(|(i, a), (j, b)| {
            a.acltype
                .cmp(&b.acltype)
                .then(b.priority.cmp(&a.priority))
                .then(i.cmp(j))
        });
        self.acls = keyed.into_iter().map(|(_, a)| a).collect();
    }
}

/// Default access when no ACL matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Defaults {
    publish_client_send: bool,
    publish_client_receive: bool,
    subscribe: bool,
    unsubscribe: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            publish_client_send: false,
            publish_client_receive: true,
            subscribe: false,
            unsubscribe: true,
        }
    }
}

/// The whole dynamic security configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynSec {
    clients: BTreeMap<String, Client>,
    groups: BTreeMap<String, Group>,
    roles: BTreeMap<String, Role>,
    defaults: Defaults,
    anonymous_group: Option<String>,
}

/// cJSON_GetObjectItem: case-insensitive key lookup.
fn get<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn get_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    get(obj, key).and_then(Value::as_str)
}

fn get_bool(obj: &Value, key: &str) -> Option<bool> {
    get(obj, key).and_then(Value::as_bool)
}

/// Numbers are doubles in cJSON; anything not a number gives the default.
fn get_int(obj: &Value, key: &str, default: i64) -> i64 {
    match get(obj, key).and_then(Value::as_f64) {
        Some(f) if f.is_finite() => f.clamp(i32::MIN as f64, i32::MAX as f64) as i64,
        _ => default,
    }
}

/// `Ok(None)` when absent, `Err(())` when present but not a string.
fn opt_str(obj: &Value, key: &str) -> Result<Option<String>, ()> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

fn sort_links(links: &mut [Link]) {
    links.sort_unstable_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
}

/// Mosquitto's `sub_acl_check`: may a subscription to `sub` be granted by
/// the ACL pattern `acl`? A `+` in the ACL covers any level of the
/// subscription except `#`; a literal ACL level needs the same literal.
fn sub_pattern_matches(acl: &str, sub: &str) -> bool {
    let mut a = acl.split('/');
    let mut s = sub.split('/');
    loop {
        match (a.next(), s.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(sl)) => {
                if sl == "#" {
                    return false;
                }
            }
            (Some(al), Some(sl)) => {
                if al != sl {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A filter Mosquitto's `mosquitto_sub_topic_check` accepts.
fn valid_filter(topic: &str) -> bool {
    crate::topic::valid_topic_filter(topic)
}

impl DynSec {
    /// An empty configuration with Mosquitto's default ACL access.
    pub fn new() -> DynSec {
        DynSec::default()
    }

    /// Reads a Mosquitto dynamic-security JSON file.
    pub fn load(path: &Path) -> Result<DynSec, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "Error: Unable to open dynamic security file \"{}\": {}.",
                path.display(),
                os_error_text(&e)
            )
        })?;
        DynSec::from_json(&text)
    }

    /// Parses Mosquitto's file format. Entries with a missing or wrong-typed
    /// name are skipped, as Mosquitto does; links to unknown roles, groups or
    /// clients are dropped.
    pub fn from_json(text: &str) -> Result<DynSec, String> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| format!("Error loading dynamic security config: {e}"))?;
        if !root.is_object() {
            return Err("Error loading dynamic security config: not a JSON object".to_owned());
        }
        let mut ds = DynSec::new();
        if let Some(d) = get(&root, "defaultACLAccess") {
            if let Some(b) = get_bool(d, "publishClientSend") {
                ds.defaults.publish_client_send = b;
            }
            if let Some(b) = get_bool(d, "publishClientReceive") {
                ds.defaults.publish_client_receive = b;
            }
            if let Some(b) = get_bool(d, "subscribe") {
                ds.defaults.subscribe = b;
            }
            if let Some(b) = get_bool(d, "unsubscribe") {
                ds.defaults.unsubscribe = b;
            }
        }
        // Roles first: clients and groups refer to them.
        for r in get(&root, "roles")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = get_str(r, "rolename") else {
                continue;
            };
            let mut role = Role {
                textname: get_str(r, "textname").map(str::to_owned),
                textdescription: get_str(r, "textdescription").map(str::to_owned),
                acls: Vec::new(),
            };
            for a in get(r, "acls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(t), Some(topic)) = (
                    get_str(a, "acltype").and_then(AclType::parse),
                    get_str(a, "topic"),
                ) else {
                    continue;
                };
                if role.acls.iter().any(|x| x.acltype == t && x.topic == topic) {
                    continue;
                }
                role.acls.push(Acl {
                    acltype: t,
                    topic: topic.to_owned(),
                    priority: get_int(a, "priority", 0),
                    allow: get_bool(a, "allow").unwrap_or(false),
                });
            }
            role.sort();
            ds.roles.insert(name.to_owned(), role);
        }
        for c in get(&root, "clients")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = get_str(c, "username") else {
                continue;
            };
            let password = match (
                get_str(c, "password").and_then(base64::decode),
                get_str(c, "salt").and_then(base64::decode),
                get(c, "iterations").and_then(Value::as_u64),
            ) {
                (Some(hash), Some(salt), Some(it))
                    if hash.len() == HASH_LEN && !salt.is_empty() && it > 0 =>
                {
                    u32::try_from(it).ok().map(|iterations| Password {
                        hash,
                        salt,
                        iterations,
                    })
                }
                _ => None,
            };
            let client = Client {
                clientid: get_str(c, "clientid").map(str::to_owned),
                textname: get_str(c, "textname").map(str::to_owned),
                textdescription: get_str(c, "textdescription").map(str::to_owned),
                password,
                disabled: get_bool(c, "disabled").unwrap_or(false),
                roles: ds.links(get(c, "roles"), "rolename", |ds, n| {
                    ds.roles.contains_key(n)
                }),
            };
            ds.clients.insert(name.to_owned(), client);
        }
        for g in get(&root, "groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = get_str(g, "groupname") else {
                continue;
            };
            let group = Group {
                textname: get_str(g, "textname").map(str::to_owned),
                textdescription: get_str(g, "textdescription").map(str::to_owned),
                roles: ds.links(get(g, "roles"), "rolename", |ds, n| {
                    ds.roles.contains_key(n)
                }),
                clients: ds.links(get(g, "clients"), "username", |ds, n| {
                    ds.clients.contains_key(n)
                }),
            };
            ds.groups.insert(name.to_owned(), group);
        }
        if let Some(a) = get_str(&root, "anonymousGroup") {
            if ds.groups.contains_key(a) {
                ds.anonymous_group = Some(a.to_owned());
            }
        }
        Ok(ds)
    }

    /// Reads `[{<key>: name, priority?}]`, keeping names `known` accepts,
    /// without duplicates, sorted by priority then name.
    fn links(
        &self,
        v: Option<&Value>,
        key: &str,
        known: impl Fn(&DynSec, &str) -> bool,
    ) -> Vec<Link> {
        let mut out: Vec<Link> = Vec::new();
        for item in v.and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = get_str(item, key) else {
                continue;
            };
            if !known(self, name) || out.iter().any(|l| l.name == name) {
                continue;
            }
            out.push(Link {
                name: name.to_owned(),
                priority: get_int(item, "priority", -1),
            });
        }
        sort_links(&mut out);
        out
    }

    /// The file form, readable by Mosquitto.
    pub fn to_json(&self) -> String {
        let mut root = Map::new();
        root.insert(
            "defaultACLAccess".into(),
            json!({
                "publishClientSend": self.defaults.publish_client_send,
                "publishClientReceive": self.defaults.publish_client_receive,
                "subscribe": self.defaults.subscribe,
                "unsubscribe": self.defaults.unsubscribe,
            }),
        );
        let clients: Vec<Value> = self
            .clients
            .iter()
            .map(|(name, c)| {
                let mut m = Map::new();
                m.insert("username".into(), json!(name));
                put_opt(&mut m, "clientid", &c.clientid);
                put_opt(&mut m, "textname", &c.textname);
                put_opt(&mut m, "textdescription", &c.textdescription);
                if c.disabled {
                    m.insert("disabled".into(), json!(true));
                }
                m.insert("roles".into(), links_json(&c.roles, "rolename"));
                if let Some(pw) = &c.password {
                    m.insert("password".into(), json!(base64::encode(&pw.hash)));
                    m.insert("salt".into(), json!(base64::encode(&pw.salt)));
                    m.insert("iterations".into(), json!(pw.iterations));
                }
                Value::Object(m)
            })
            .collect();
        root.insert("clients".into(), Value::Array(clients));
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|(name, g)| {
                let mut m = Map::new();
                m.insert("groupname".into(), json!(name));
                put_opt(&mut m, "textname", &g.textname);
                put_opt(&mut m, "textdescription", &g.textdescription);
                m.insert("roles".into(), links_json(&g.roles, "rolename"));
                m.insert("clients".into(), links_json(&g.clients, "username"));
                Value::Object(m)
            })
            .collect();
        root.insert("groups".into(), Value::Array(groups));
        let roles: Vec<Value> = self.roles.iter().map(|(n, r)| role_json(n, r)).collect();
        root.insert("roles".into(), Value::Array(roles));
        if let Some(a) = &self.anonymous_group {
            root.insert("anonymousGroup".into(), json!(a));
        }
        serde_json::to_string_pretty(&Value::Object(root)).unwrap_or_default()
    }

    /// Writes `<path>.new` and renames it over `path`, as Mosquitto does.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, self.to_json()).map_err(|e| {
            format!(
                "Error saving Dynamic security plugin config: File is not writable - {}.",
                os_error_text(&e)
            )
        })?;
        std::fs::rename(&tmp, path).map_err(|e| {
            format!(
                "Error saving Dynamic security plugin config: Unable to rename - {}.",
                os_error_text(&e)
            )
        })
    }

    /// What `mosquitto_ctrl dynsec init <file> <admin> <password>` writes.
    pub fn init(admin: &str, password: &str) -> DynSec {
        let mut ds = DynSec::new();
        let dc = "$CONTROL/dynamic-security/#";
        let acls = [
            (AclType::PublishClientSend, dc),
            (AclType::PublishClientReceive, dc),
            (AclType::SubscribePattern, dc),
            (AclType::PublishClientReceive, "$SYS/#"),
            (AclType::SubscribePattern, "$SYS/#"),
            (AclType::PublishClientReceive, "#"),
            (AclType::SubscribePattern, "#"),
            (AclType::UnsubscribePattern, "#"),
        ];
        let mut role = Role::default();
        for (t, topic) in acls {
            role.acls.push(Acl {
                acltype: t,
                topic: topic.to_owned(),
                priority: 0,
                allow: true,
            });
        }
        role.sort();
        ds.roles.insert("admin".to_owned(), role);
        ds.clients.insert(
            admin.to_owned(),
            Client {
                textname: Some("Dynsec admin user".to_owned()),
                password: Password::new(password),
                roles: vec![Link {
                    name: "admin".to_owned(),
                    priority: -1,
                }],
                ..Client::default()
            },
        );
        ds
    }

    /// Authentication. `Some(true/false)` when `username` is a dynsec client
    /// with a password; `None` (defer to other rules) otherwise.
    pub fn authenticate(&self, username: &str, password: &[u8], client_id: &str) -> Option<bool> {
        let client = self.clients.get(username)?;
        if client.disabled {
            return Some(false);
        }
        if let Some(id) = &client.clientid {
            if id != client_id {
                return Some(false);
            }
        }
        let pw = client.password.as_ref()?;
        Some(pw.matches(password))
    }

    /// The access decision: `Some(allow)` when dynsec decides, `None` when it
    /// defers (unknown username, or a default of deny, or a `$CONTROL` topic
    /// with no matching ACL). Mosquitto denies when every plugin defers.
    pub fn decide(&self, username: Option<&str>, topic: &str, access: Access) -> Option<bool> {
        let mut role_lists: Vec<&[Link]> = Vec::new();
        let mut group_links: Vec<Link>;
        match username {
            Some(u) => {
                let client = self.clients.get(u)?;
                role_lists.push(&client.roles);
                group_links = self
                    .groups
                    .iter()
                    .filter_map(|(gname, g)| {
                        g.clients.iter().find(|l| l.name == u).map(|l| Link {
                            name: gname.clone(),
                            priority: l.priority,
                        })
                    })
                    .collect();
                sort_links(&mut group_links);
                for gl in &group_links {
                    if let Some(g) = self.groups.get(&gl.name) {
                        role_lists.push(&g.roles);
                    }
                }
            }
            None => {
                if let Some(g) = self
                    .anonymous_group
                    .as_ref()
                    .and_then(|a| self.groups.get(a))
                {
                    role_lists.push(&g.roles);
                }
            }
        }
        for list in role_lists {
            for link in list {
                let Some(role) = self.roles.get(&link.name) else {
                    continue;
                };
                if let Some(allow) = role_decision(role, topic, access) {
                    return Some(allow);
                }
            }
        }
        let default = match access {
            Access::Write => self.defaults.publish_client_send,
            Access::Read => self.defaults.publish_client_receive,
            Access::Subscribe => self.defaults.subscribe,
            Access::Unsubscribe => self.defaults.unsubscribe,
        };
        // Fall-through access never covers $CONTROL topics.
        if !default || topic.starts_with("$CONTROL") {
            return None;
        }
        Some(true)
    }

    /// ACL check; a deferred decision counts as a denial. `client_id` is
    /// unused in 2.0 (no `%c` substitution) but kept for the caller's shape.
    pub fn check(
        &self,
        username: Option<&str>,
        client_id: &str,
        topic: &str,
        access: Access,
    ) -> bool {
        let _ = client_id;
        self.decide(username, topic, access).unwrap_or(false)
    }

    /// Whether `username` is a dynsec client.
    pub fn has_client(&self, username: &str) -> bool {
        self.clients.contains_key(username)
    }
}

/// What one command did: `data` or an error string.
type Outcome = Result<Option<Value>, &'static str>;

/// Per-payload side effects collected while handling commands.
#[derive(Default)]
struct Effects {
    changed: bool,
    kick: Vec<String>,
    /// Clients without a username: the anonymous group's rights changed.
    kick_anonymous: bool,
}

impl Effects {
    fn kick(&mut self, u: &str) {
        if !self.kick.iter().any(|k| k == u) {
            self.kick.push(u.to_owned());
        }
    }
}

fn need<'a>(cmd: &'a Value, key: &str, err: &'static str) -> Result<&'a str, &'static str> {
    get_str(cmd, key).ok_or(err)
}

/// Mosquitto's `mosquitto_validate_utf8` beyond what a Rust `str` already
/// guarantees: no U+0000, no control characters (U+0001-U+001F,
/// U+007F-U+009F), no non-characters (U+FDD0-U+FDEF, U+xxFFFE, U+xxFFFF),
/// at most 65536 bytes. JSON escapes such as `\uffff` reach us as such
/// characters.
pub fn valid_utf8(s: &str) -> bool {
    s.len() <= 65536
        && s.chars().all(|c| {
            let cp = u32::from(c);
            !(cp <= 0x1F
                || (0x7F..=0x9F).contains(&cp)
                || (0xFDD0..=0xFDEF).contains(&cp)
                || cp & 0xFFFE == 0xFFFE)
        })
}

/// A required string field that must also pass `valid_utf8`: the first
/// two checks of nearly every Mosquitto command, in that order.
fn need_utf8<'a>(
    cmd: &'a Value,
    key: &str,
    missing: &'static str,
    bad: &'static str,
) -> Result<&'a str, &'static str> {
    let s = need(cmd, key, missing)?;
    if !valid_utf8(s) {
        return Err(bad);
    }
    Ok(s)
}

fn need_user(cmd: &Value) -> Result<&str, &'static str> {
    need_utf8(
        cmd,
        "username",
        "Invalid/missing username",
        "Username not valid UTF-8",
    )
}

fn need_group(cmd: &Value) -> Result<&str, &'static str> {
    need_utf8(
        cmd,
        "groupname",
        "Invalid/missing groupname",
        "Group name not valid UTF-8",
    )
}

fn need_role(cmd: &Value) -> Result<&str, &'static str> {
    need_utf8(
        cmd,
        "rolename",
        "Invalid/missing rolename",
        "Role name not valid UTF-8",
    )
}

/// Why a command's `roles` list was refused (`dynsec_rolelist__load_from_json`).
enum RolesError {
    /// Not an array, or an entry without a string `rolename`.
    Invalid,
    /// An entry names a role that does not exist.
    NotFound,
}

/// The names Mosquitto answers with, whatever case the request used.
const COMMANDS: [&str; 31] = [
    "setDefaultACLAccess",
    "getDefaultACLAccess",
    "createClient",
    "deleteClient",
    "getClient",
    "listClients",
    "modifyClient",
    "setClientPassword",
    "setClientId",
    "addClientRole",
    "removeClientRole",
    "enableClient",
    "disableClient",
    "addGroupClient",
    "createGroup",
    "deleteGroup",
    "getGroup",
    "listGroups",
    "modifyGroup",
    "removeGroupClient",
    "addGroupRole",
    "removeGroupRole",
    "setAnonymousGroup",
    "getAnonymousGroup",
    "createRole",
    "getRole",
    "listRoles",
    "modifyRole",
    "deleteRole",
    "addRoleACL",
    "removeRoleACL",
];

fn list_window(cmd: &Value) -> (usize, Option<usize>) {
    let count = get_int(cmd, "count", -1);
    let offset = get_int(cmd, "offset", 0);
    let offset = usize::try_from(offset).unwrap_or(0);
    let count = usize::try_from(count).ok().filter(|&c| c > 0);
    (offset, count)
}

fn links_from_command(v: Option<&Value>, key: &str) -> Result<Vec<Link>, &'static str> {
    let mut out: Vec<Link> = Vec::new();
    for item in v.and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = get_str(item, key) {
            if !out.iter().any(|l| l.name == name) {
                out.push(Link {
                    name: name.to_owned(),
                    priority: get_int(item, "priority", -1),
                });
            }
        }
    }
    sort_links(&mut out);
    Ok(out)
}

/// What one control payload did (`DynSec::handle_control`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handled {
    /// The payload to publish on `RESPONSE_TOPIC`.
    pub response: String,
    /// The configuration changed: the caller saves it.
    pub changed: bool,
    /// Usernames whose sessions the caller must disconnect.
    pub kick: Vec<String>,
    /// The caller must also disconnect every client without a username:
    /// what the anonymous group may do changed.
    pub kick_anonymous: bool,
}

impl DynSec {
    /// Handles one payload published to `$CONTROL/dynamic-security/v1`.
    /// Returns the response payload, whether the configuration changed (the
    /// caller saves), and usernames whose sessions must be disconnected.
    /// `handle_control` also says when anonymous clients must go.
    pub fn handle(&mut self, payload: &[u8]) -> (String, bool, Vec<String>) {
        let h = self.handle_control(payload);
        (h.response, h.changed, h.kick)
    }

    /// `handle`, with every effect the caller must carry out.
    pub fn handle_control(&mut self, payload: &[u8]) -> Handled {
        let mut fx = Effects::default();
        let mut responses: Vec<Value> = Vec::new();
        let error_only = |msg: &str| Handled {
            response: json!({"responses": [{"command": "Unknown command", "error": msg}]})
                .to_string(),
            ..Handled::default()
        };
        let Ok(root) = serde_json::from_slice::<Value>(payload) else {
            return error_only("Payload not valid JSON");
        };
        let Some(commands) = get(&root, "commands").and_then(Value::as_array) else {
            return error_only("Invalid/missing commands");
        };
        // Like Mosquitto, a command without a usable name is answered with
        // the correlationData of the command before it.
        let mut corr: Option<String> = None;
        for cmd in commands {
            let mut resp = Map::new();
            if !cmd.is_object() {
                resp.insert("command".into(), json!("Unknown command"));
                resp.insert("error".into(), json!("Command not an object"));
            } else if let Some(name) = get_str(cmd, "command") {
                corr = match get(cmd, "correlationData") {
                    None => None,
                    Some(Value::String(c)) => Some(c.clone()),
                    Some(_) => {
                        // Mosquitto answers this and handles no further
                        // command of the payload.
                        responses.push(json!({
                            "command": name,
                            "error": "Invalid correlationData data type."
                        }));
                        break;
                    }
                };
                let shown = COMMANDS
                    .iter()
                    .find(|c| c.eq_ignore_ascii_case(name))
                    .map_or(name, |c| c);
                resp.insert("command".into(), json!(shown));
                match self.command(name, cmd, &mut fx) {
                    Ok(Some(data)) => {
                        resp.insert("data".into(), data);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        resp.insert("error".into(), json!(e));
                    }
                }
            } else {
                resp.insert("command".into(), json!("Unknown command"));
                resp.insert("error".into(), json!("Missing command"));
            }
            if let Some(c) = &corr {
                resp.insert("correlationData".into(), json!(c));
            }
            responses.push(Value::Object(resp));
        }
        Handled {
            response: json!({ "responses": responses }).to_string(),
            changed: fx.changed,
            kick: fx.kick,
            kick_anonymous: fx.kick_anonymous,
        }
    }

    fn command(&mut self, name: &str, cmd: &Value, fx: &mut Effects) -> Outcome {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "getdefaultaclaccess" => Ok(Some(json!({"acls": [
                {"acltype": "publishClientSend", "allow": self.defaults.publish_client_send},
                {"acltype": "publishClientReceive", "allow": self.defaults.publish_client_receive},
                {"acltype": "subscribe", "allow": self.defaults.subscribe},
                {"acltype": "unsubscribe", "allow": self.defaults.unsubscribe},
            ]}))),
            "setdefaultaclaccess" => {
                let acls = get(cmd, "acls")
                    .and_then(Value::as_array)
                    .ok_or("Missing/invalid actions array")?;
                for a in acls {
                    let (Some(t), Some(allow)) = (get_str(a, "acltype"), get_bool(a, "allow"))
                    else {
                        continue;
                    };
                    let d = &mut self.defaults;
                    match t {
                        "publishClientSend" => d.publish_client_send = allow,
                        "publishClientReceive" => d.publish_client_receive = allow,
                        "subscribe" => d.subscribe = allow,
                        "unsubscribe" => d.unsubscribe = allow,
                        _ => {}
                    }
                }
                fx.changed = true;
                Ok(None)
            }
            "createclient" => self.create_client(cmd, fx),
            "deleteclient" => {
                let u = need(cmd, "username", "Invalid/missing username")?;
                if self.clients.remove(u).is_none() {
                    return Err("Client not found");
                }
                for g in self.groups.values_mut() {
                    g.clients.retain(|l| l.name != u);
                }
                fx.changed = true;
                fx.kick(u);
                Ok(None)
            }
            "getclient" => {
                let u = need_user(cmd)?;
                let c = self.clients.get(u).ok_or("Client not found")?;
                Ok(Some(json!({"client": self.client_json(u, c)})))
            }
            "listclients" => {
                let verbose = get_bool(cmd, "verbose").unwrap_or(false);
                let (offset, count) = list_window(cmd);
                let items: Vec<Value> = self
                    .clients
                    .iter()
                    .skip(offset)
                    .take(count.unwrap_or(usize::MAX))
                    .map(|(u, c)| {
                        if verbose {
                            self.client_json(u, c)
                        } else {
                            json!(u)
                        }
                    })
                    .collect();
                Ok(Some(
                    json!({"totalCount": self.clients.len(), "clients": items}),
                ))
            }
            "modifyclient" => self.modify_client(cmd, fx),
            "setclientpassword" => {
                let u = need_user(cmd)?;
                let p = need(cmd, "password", "Invalid/missing password")?;
                if p.is_empty() {
                    return Err("Empty password is not allowed");
                }
                let c = self.clients.get_mut(u).ok_or("Client not found")?;
                c.password = Some(Password::new(p).ok_or("Internal error")?);
                fx.changed = true;
                fx.kick(u);
                Ok(None)
            }
            "setclientid" => {
                let u = need_user(cmd)?;
                let id = opt_str(cmd, "clientid").map_err(|_| "Invalid/missing client ID")?;
                if id.as_deref().is_some_and(|i| !valid_utf8(i)) {
                    return Err("Client ID not valid UTF-8");
                }
                let c = self.clients.get_mut(u).ok_or("Client not found")?;
                c.clientid = id.filter(|s| !s.is_empty());
                fx.changed = true;
                fx.kick(u);
                Ok(None)
            }
            "addclientrole" => {
                let u = need_user(cmd)?;
                let r = need_role(cmd)?;
                if !self.clients.contains_key(u) {
                    return Err("Client not found");
                }
                if !self.roles.contains_key(r) {
                    return Err("Role not found");
                }
                let c = self.clients.get_mut(u).ok_or("Client not found")?;
                if c.roles.iter().any(|l| l.name == r) {
                    // Mosquitto 2.0.11 answers exactly this.
                    return Err("Internal error");
                }
                c.roles.push(Link {
                    name: r.to_owned(),
                    priority: get_int(cmd, "priority", -1),
                });
                sort_links(&mut c.roles);
                fx.changed = true;
                fx.kick(u);
                Ok(None)
            }
            "removeclientrole" => {
                let u = need_user(cmd)?;
                let r = need_role(cmd)?;
                if !self.clients.contains_key(u) {
                    return Err("Client not found");
                }
                if !self.roles.contains_key(r) {
                    return Err("Role not found");
                }
                let c = self.clients.get_mut(u).ok_or("Client not found")?;
                c.roles.retain(|l| l.name != r);
                fx.changed = true;
                fx.kick(u);
                Ok(None)
            }
            "enableclient" | "disableclient" => {
                let u = need_user(cmd)?;
                let c = self.clients.get_mut(u).ok_or("Client not found")?;
                c.disabled = lower == "disableclient";
                fx.changed = true;
                if c.disabled {
                    fx.kick(u);
                }
                Ok(None)
            }
            "creategroup" => {
                let g = need_group(cmd)?;
                if g.is_empty() {
                    return Err("Empty groupname");
                }
                let textname = opt_str(cmd, "textname").map_err(|_| "Invalid/missing textname")?;
                let textdescription = opt_str(cmd, "textdescription")
                    .map_err(|_| "Invalid/missing textdescription")?;
                if self.groups.contains_key(g) {
                    return Err("Group already exists");
                }
                let roles = self.role_links(cmd).map_err(|e| match e {
                    RolesError::NotFound => "Role not found",
                    RolesError::Invalid => "Internal error",
                })?;
                self.groups.insert(
                    g.to_owned(),
                    Group {
                        textname,
                        textdescription,
                        roles,
                        clients: Vec::new(),
                    },
                );
                fx.changed = true;
                Ok(None)
            }
            "deletegroup" => {
                let g = need_group(cmd)?;
                if !self.groups.contains_key(g) {
                    return Err("Group not found");
                }
                // 2.0.11 crashes here; later releases refuse.
                if self.anonymous_group.as_deref() == Some(g) {
                    return Err("Deleting the anonymous group is forbidden");
                }
                self.kick_group(g, fx);
                self.groups.remove(g);
                fx.changed = true;
                Ok(None)
            }
            "getgroup" => {
                let g = need_group(cmd)?;
                let group = self.groups.get(g).ok_or("Group not found")?;
                Ok(Some(json!({"group": group_json(g, group)})))
            }
            "listgroups" => {
                let verbose = get_bool(cmd, "verbose").unwrap_or(false);
                let (offset, count) = list_window(cmd);
                let items: Vec<Value> = self
                    .groups
                    .iter()
                    .skip(offset)
                    .take(count.unwrap_or(usize::MAX))
                    .map(|(n, g)| if verbose { group_json(n, g) } else { json!(n) })
                    .collect();
                Ok(Some(
                    json!({"totalCount": self.groups.len(), "groups": items}),
                ))
            }
            "modifygroup" => {
                let g = need_group(cmd)?;
                if !self.groups.contains_key(g) {
                    return Err("Group not found");
                }
                // Texts of the wrong type are ignored, as in Mosquitto.
                let textname = get_str(cmd, "textname").map(str::to_owned);
                let textdescription = get_str(cmd, "textdescription").map(str::to_owned);
                let roles = get(cmd, "roles").map(|_| self.role_links(cmd));
                let clients = match get(cmd, "clients") {
                    Some(v @ Value::Array(_)) => {
                        let mut l = links_from_command(Some(v), "username")?;
                        l.retain(|x| self.clients.contains_key(&x.name));
                        Some(l)
                    }
                    _ => None,
                };
                let group = self.groups.get_mut(g).ok_or("Group not found")?;
                // Mosquitto has applied the texts when it refuses the roles.
                if textname.is_some() {
                    group.textname = textname;
                }
                if textdescription.is_some() {
                    group.textdescription = textdescription;
                }
                if let Some(r) = roles {
                    match r {
                        Ok(r) => group.roles = r,
                        Err(e) => {
                            fx.changed = true;
                            self.kick_group(g, fx);
                            return Err(match e {
                                RolesError::NotFound => "Role not found",
                                RolesError::Invalid => {
                                    "'roles' not an array or missing/invalid rolename"
                                }
                            });
                        }
                    }
                }
                if let Some(c) = clients {
                    let old = std::mem::replace(&mut group.clients, c);
                    for l in &old {
                        fx.kick(&l.name);
                    }
                }
                self.kick_group(g, fx);
                fx.changed = true;
                Ok(None)
            }
            "addgroupclient" => {
                let u = need_user(cmd)?;
                let g = need_group(cmd)?;
                if !self.clients.contains_key(u) {
                    return Err("Client not found");
                }
                let group = self.groups.get_mut(g).ok_or("Group not found")?;
                if group.clients.iter().any(|l| l.name == u) {
                    return Err("Client is already in this group");
                }
                group.clients.push(Link {
                    name: u.to_owned(),
                    priority: get_int(cmd, "priority", -1),
                });
                sort_links(&mut group.clients);
                fx.changed = true;
                fx.kick(u);
                Ok(None)
            }
            "removegroupclient" => {
                let u = need_user(cmd)?;
                let g = need_group(cmd)?;
                if !self.clients.contains_key(u) {
                    return Err("Client not found");
                }
                let group = self.groups.get_mut(g).ok_or("Group not found")?;
                group.clients.retain(|l| l.name != u);
                fx.changed = true;
                fx.kick(u);
                Ok(None)
            }
            "addgrouprole" => {
                let g = need_group(cmd)?;
                let r = need_role(cmd)?;
                if !self.groups.contains_key(g) {
                    return Err("Group not found");
                }
                if !self.roles.contains_key(r) {
                    return Err("Role not found");
                }
                let group = self.groups.get_mut(g).ok_or("Group not found")?;
                if group.roles.iter().any(|l| l.name == r) {
                    return Err("Internal error");
                }
                group.roles.push(Link {
                    name: r.to_owned(),
                    priority: get_int(cmd, "priority", -1),
                });
                sort_links(&mut group.roles);
                self.kick_group(g, fx);
                fx.changed = true;
                Ok(None)
            }
            "removegrouprole" => {
                let g = need_group(cmd)?;
                let r = need_role(cmd)?;
                if !self.groups.contains_key(g) {
                    return Err("Group not found");
                }
                if !self.roles.contains_key(r) {
                    return Err("Role not found");
                }
                let group = self.groups.get_mut(g).ok_or("Group not found")?;
                group.roles.retain(|l| l.name != r);
                self.kick_group(g, fx);
                fx.changed = true;
                Ok(None)
            }
            "setanonymousgroup" => {
                let g = need_group(cmd)?;
                if !self.groups.contains_key(g) {
                    return Err("Group not found");
                }
                self.anonymous_group = Some(g.to_owned());
                fx.kick_anonymous = true;
                fx.changed = true;
                Ok(None)
            }
            "getanonymousgroup" => {
                let name = self.anonymous_group.clone().unwrap_or_default();
                Ok(Some(json!({"group": {"groupname": name}})))
            }
            "createrole" => {
                let r = need_role(cmd)?;
                if r.is_empty() {
                    return Err("Empty rolename");
                }
                let textname = opt_str(cmd, "textname").map_err(|_| "Invalid/missing textname")?;
                let textdescription = opt_str(cmd, "textdescription")
                    .map_err(|_| "Invalid/missing textdescription")?;
                if self.roles.contains_key(r) {
                    return Err("Role already exists");
                }
                let acls = acls_from_command(cmd)?;
                let mut role = Role {
                    textname,
                    textdescription,
                    acls,
                };
                role.sort();
                self.roles.insert(r.to_owned(), role);
                fx.changed = true;
                Ok(None)
            }
            "getrole" => {
                let r = need_role(cmd)?;
                let role = self.roles.get(r).ok_or("Role not found")?;
                Ok(Some(json!({"role": role_json(r, role)})))
            }
            "listroles" => {
                let verbose = get_bool(cmd, "verbose").unwrap_or(false);
                let (offset, count) = list_window(cmd);
                let items: Vec<Value> = self
                    .roles
                    .iter()
                    .skip(offset)
                    .take(count.unwrap_or(usize::MAX))
                    .map(|(n, r)| if verbose { role_json(n, r) } else { json!(n) })
                    .collect();
                Ok(Some(
                    json!({"totalCount": self.roles.len(), "roles": items}),
                ))
            }
            "modifyrole" => {
                let r = need_role(cmd)?;
                if !self.roles.contains_key(r) {
                    // Sic: 2.0.11 words this one differently.
                    return Err("Role does not exist");
                }
                // Texts of the wrong type are ignored, as in Mosquitto.
                let textname = get_str(cmd, "textname").map(str::to_owned);
                let textdescription = get_str(cmd, "textdescription").map(str::to_owned);
                let acls = match get(cmd, "acls") {
                    Some(Value::Array(_)) => Some(acls_from_command(cmd)?),
                    _ => None,
                };
                let role = self.roles.get_mut(r).ok_or("Role not found")?;
                if textname.is_some() {
                    role.textname = textname;
                }
                if textdescription.is_some() {
                    role.textdescription = textdescription;
                }
                if let Some(a) = acls {
                    role.acls = a;
                    role.sort();
                }
                self.kick_role(r, fx);
                fx.changed = true;
                Ok(None)
            }
            "deleterole" => {
                let r = need_role(cmd)?;
                if !self.roles.contains_key(r) {
                    return Err("Role not found");
                }
                self.kick_role(r, fx);
                self.roles.remove(r);
                for c in self.clients.values_mut() {
                    c.roles.retain(|l| l.name != r);
                }
                for g in self.groups.values_mut() {
                    g.roles.retain(|l| l.name != r);
                }
                fx.changed = true;
                Ok(None)
            }
            "addroleacl" => {
                let r = need_role(cmd)?;
                if !self.roles.contains_key(r) {
                    return Err("Role not found");
                }
                let acl = acl_from_json(cmd)?;
                let role = self.roles.get_mut(r).ok_or("Role not found")?;
                if role
                    .acls
                    .iter()
                    .any(|a| a.acltype == acl.acltype && a.topic == acl.topic)
                {
                    return Err("ACL with this topic already exists");
                }
                role.acls.push(acl);
                role.sort();
                self.kick_role(r, fx);
                fx.changed = true;
                Ok(None)
            }
            "removeroleacl" => {
                let r = need_role(cmd)?;
                if !self.roles.contains_key(r) {
                    return Err("Role not found");
                }
                let t = need(cmd, "acltype", "Invalid/missing acltype")?;
                let t = AclType::parse(t).ok_or("Unknown acltype")?;
                let topic = need(cmd, "topic", "Invalid/missing topic")?;
                if !valid_utf8(topic) {
                    return Err("Topic not valid UTF-8");
                }
                if !valid_filter(topic) {
                    return Err("Invalid ACL topic");
                }
                let role = self.roles.get_mut(r).ok_or("Role not found")?;
                let before = role.acls.len();
                role.acls.retain(|a| !(a.acltype == t && a.topic == topic));
                if role.acls.len() == before {
                    return Err("ACL not found");
                }
                self.kick_role(r, fx);
                fx.changed = true;
                Ok(None)
            }
            _ => Err("Unknown command"),
        }
    }

    /// Kicks every client holding role `r`, directly or through a group.
    fn kick_role(&self, r: &str, fx: &mut Effects) {
        for (u, c) in &self.clients {
            if c.roles.iter().any(|l| l.name == r) {
                fx.kick(u);
            }
        }
        for (name, g) in &self.groups {
            if g.roles.iter().any(|l| l.name == r) {
                self.kick_group(name, fx);
            }
        }
    }

    /// Kicks the members of group `g`, and the anonymous clients when it is
    /// the anonymous group (Mosquitto's `group__kick_all`).
    fn kick_group(&self, g: &str, fx: &mut Effects) {
        if let Some(group) = self.groups.get(g) {
            for l in &group.clients {
                fx.kick(&l.name);
            }
        }
        if self.anonymous_group.as_deref() == Some(g) {
            fx.kick_anonymous = true;
        }
    }

    /// A command's `roles` list, read as `dynsec_rolelist__load_from_json`
    /// reads it: in order, the first entry without a string `rolename`
    /// makes it invalid, the first unknown role makes it not found.
    fn role_links(&self, cmd: &Value) -> Result<Vec<Link>, RolesError> {
        let Some(v) = get(cmd, "roles") else {
            return Ok(Vec::new());
        };
        let items = v.as_array().ok_or(RolesError::Invalid)?;
        let mut out: Vec<Link> = Vec::new();
        for item in items {
            let name = get_str(item, "rolename").ok_or(RolesError::Invalid)?;
            if !self.roles.contains_key(name) {
                return Err(RolesError::NotFound);
            }
            if !out.iter().any(|l| l.name == name) {
                out.push(Link {
                    name: name.to_owned(),
                    priority: get_int(item, "priority", -1),
                });
            }
        }
        sort_links(&mut out);
        Ok(out)
    }

    fn create_client(&mut self, cmd: &Value, fx: &mut Effects) -> Outcome {
        let u = need_user(cmd)?;
        if u.is_empty() {
            return Err("Empty username");
        }
        let password = opt_str(cmd, "password").map_err(|_| "Invalid/missing password")?;
        let clientid = opt_str(cmd, "clientid").map_err(|_| "Invalid/missing client id")?;
        if clientid.as_deref().is_some_and(|i| !valid_utf8(i)) {
            return Err("Client ID not valid UTF-8");
        }
        let textname = opt_str(cmd, "textname").map_err(|_| "Invalid/missing textname")?;
        let textdescription =
            opt_str(cmd, "textdescription").map_err(|_| "Invalid/missing textdescription")?;
        if self.clients.contains_key(u) {
            return Err("Client already exists");
        }
        let roles = self.role_links(cmd).map_err(|e| match e {
            RolesError::NotFound => "Role not found",
            RolesError::Invalid => "'roles' not an array or missing/invalid rolename",
        })?;
        // Every listed group must exist; entries without a string
        // groupname are skipped.
        let groups = links_from_command(get(cmd, "groups"), "groupname")?;
        if groups.iter().any(|l| !self.groups.contains_key(&l.name)) {
            return Err("Group not found");
        }
        let password = match password {
            Some(p) => Some(Password::new(&p).ok_or("Internal error")?),
            None => None,
        };
        self.clients.insert(
            u.to_owned(),
            Client {
                clientid: clientid.filter(|s| !s.is_empty()),
                textname,
                textdescription,
                password,
                disabled: false,
                roles,
            },
        );
        for l in groups {
            if let Some(g) = self.groups.get_mut(&l.name) {
                g.clients.push(Link {
                    name: u.to_owned(),
                    priority: l.priority,
                });
                sort_links(&mut g.clients);
            }
        }
        fx.changed = true;
        Ok(None)
    }

    /// Mosquitto applies the fields in order (client id, password, texts,
    /// roles, groups) and stops at a bad roles list with the earlier ones
    /// already applied. A field of the wrong type, or an empty password, is
    /// ignored.
    fn modify_client(&mut self, cmd: &Value, fx: &mut Effects) -> Outcome {
        let u = need_user(cmd)?;
        if !self.clients.contains_key(u) {
            return Err("Client not found");
        }
        let password = match get_str(cmd, "password") {
            Some(p) if !p.is_empty() => Some(Password::new(p).ok_or("Internal error")?),
            _ => None,
        };
        let roles = self.role_links(cmd);
        let groups = match get(cmd, "groups") {
            Some(v @ Value::Array(_)) => Some(links_from_command(Some(v), "groupname")?),
            _ => None,
        };
        let c = self.clients.get_mut(u).ok_or("Client not found")?;
        if let Some(id) = get_str(cmd, "clientid") {
            c.clientid = Some(id.to_owned()).filter(|s| !s.is_empty());
        }
        if password.is_some() {
            c.password = password;
        }
        if let Some(t) = get_str(cmd, "textname") {
            c.textname = Some(t.to_owned());
        }
        if let Some(t) = get_str(cmd, "textdescription") {
            c.textdescription = Some(t.to_owned());
        }
        fx.changed = true;
        fx.kick(u);
        match roles {
            Ok(r) if get(cmd, "roles").is_some() => c.roles = r,
            Ok(_) => {}
            Err(RolesError::NotFound) => return Err("Role not found"),
            Err(RolesError::Invalid) => {
                return Err("'roles' not an array or missing/invalid rolename")
            }
        }
        if let Some(gs) = groups {
            for g in self.groups.values_mut() {
                g.clients.retain(|l| l.name != u);
            }
            for l in gs {
                if let Some(g) = self.groups.get_mut(&l.name) {
                    g.clients.push(Link {
                        name: u.to_owned(),
                        priority: l.priority,
                    });
                    sort_links(&mut g.clients);
                }
            }
        }
        Ok(None)
    }

    fn client_json(&self, u: &str, c: &Client) -> Value {
        let mut m = Map::new();
        m.insert("username".into(), json!(u));
        put_opt(&mut m, "clientid", &c.clientid);
        put_opt(&mut m, "textname", &c.textname);
        put_opt(&mut m, "textdescription", &c.textdescription);
        if c.disabled {
            m.insert("disabled".into(), json!(true));
        }
        m.insert("roles".into(), links_json(&c.roles, "rolename"));
        let mut groups: Vec<Link> = self
            .groups
            .iter()
            .filter_map(|(gname, g)| {
                g.clients.iter().find(|l| l.name == u).map(|l| Link {
                    name: gname.clone(),
                    priority: l.priority,
                })
            })
            .collect();
        sort_links(&mut groups);
        m.insert("groups".into(), links_json(&groups, "groupname"));
        Value::Object(m)
    }
}

fn group_json(name: &str, g: &Group) -> Value {
    let mut m = Map::new();
    m.insert("groupname".into(), json!(name));
    put_opt(&mut m, "textname", &g.textname);
    put_opt(&mut m, "textdescription", &g.textdescription);
    m.insert("roles".into(), links_json(&g.roles, "rolename"));
    m.insert("clients".into(), links_json(&g.clients, "username"));
    Value::Object(m)
}

/// One ACL from `{acltype, topic, priority?, allow?}`.
fn acl_from_json(v: &Value) -> Result<Acl, &'static str> {
    let t = need(v, "acltype", "Invalid/missing acltype")?;
    let acltype = AclType::parse(t).ok_or("Unknown acltype")?;
    let topic = need(v, "topic", "Invalid/missing topic")?;
    if !valid_utf8(topic) {
        return Err("Topic not valid UTF-8");
    }
    if !valid_filter(topic) {
        return Err("Invalid ACL topic");
    }
    Ok(Acl {
        acltype,
        topic: topic.to_owned(),
        priority: get_int(v, "priority", 0),
        allow: get_bool(v, "allow").unwrap_or(false),
    })
}

/// A command's `acls` list (createRole / modifyRole); duplicates dropped.
fn acls_from_command(cmd: &Value) -> Result<Vec<Acl>, &'static str> {
    let mut out: Vec<Acl> = Vec::new();
    for a in get(cmd, "acls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let acl = acl_from_json(a)?;
        if !out
            .iter()
            .any(|x| x.acltype == acl.acltype && x.topic == acl.topic)
        {
            out.push(acl);
        }
    }
    Ok(out)
}

/// One role's verdict, or `None` if no ACL of the role matches.
fn role_decision(role: &Role, topic: &str, access: Access) -> Option<bool> {
    let of = |t: AclType| role.acls.iter().filter(move |a| a.acltype == t);
    match access {
        Access::Write => of(AclType::PublishClientSend)
            .find(|a| crate::topic::matches(&a.topic, topic))
            .map(|a| a.allow),
        Access::Read => of(AclType::PublishClientReceive)
            .find(|a| crate::topic::matches(&a.topic, topic))
            .map(|a| a.allow),
        Access::Subscribe | Access::Unsubscribe => {
            let (lit, pat) = if access == Access::Subscribe {
                (AclType::SubscribeLiteral, AclType::SubscribePattern)
            } else {
                (AclType::UnsubscribeLiteral, AclType::UnsubscribePattern)
            };
            // Literal ACLs are a hash lookup in Mosquitto: checked first.
            of(lit)
                .find(|a| a.topic == topic)
                .or_else(|| of(pat).find(|a| sub_pattern_matches(&a.topic, topic)))
                .map(|a| a.allow)
        }
    }
}

fn put_opt(m: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(s) = v {
        m.insert(key.to_owned(), json!(s));
    }
}

fn links_json(links: &[Link], key: &str) -> Value {
    Value::Array(
        links
            .iter()
            .map(|l| {
                let mut m = Map::new();
                m.insert(key.to_owned(), json!(l.name));
                if l.priority != -1 {
                    m.insert("priority".into(), json!(l.priority));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

fn role_json(name: &str, r: &Role) -> Value {
    let mut m = Map::new();
    m.insert("rolename".into(), json!(name));
    put_opt(&mut m, "textname", &r.textname);
    put_opt(&mut m, "textdescription", &r.textdescription);
    let acls: Vec<Value> = r
        .acls
        .iter()
        .map(|a| {
            json!({"acltype": a.acltype.name(), "topic": a.topic, "priority": a.priority, "allow": a.allow})
        })
        .collect();
    m.insert("acls".into(), Value::Array(acls));
    Value::Object(m)
}

#[cfg(test)]
mod tests;
